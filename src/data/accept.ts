/**
 * Sockets made without a new hidden class each.
 *
 * Node 20's `net.Socket` copies its options with an object spread and then adds `emitClose`,
 * `autoDestroy` and `decodeStrings` to the copy. In V8 11 (Node 20), once the spread's inline cache
 * has warmed up, the copy's map stands outside the transition tree, so each property added to it
 * makes a new map: every socket's options object gets maps of its own, and each of the two dozen
 * option reads in the Socket, Duplex, Readable, Writable and EventEmitter constructors misses its
 * inline cache and goes to V8's runtime. About 13 µs per socket on the benchmark machine, against
 * 0.4 µs when the options passed in already hold those three properties (the spread then copies a
 * map that needs no additions).
 *
 * A listening server's sockets are made by Node's `onconnection`, whose options lack them.
 * `acceptCheaply` puts a function in its place that passes them (with the values the constructor
 * sets anyway) and otherwise does what Node's does: the same options, `noDelay` and `keepAlive`
 * set the same way, the connection counted for `server.close()`, `socket.server`, the
 * `connection` event and the `net.server.socket` diagnostics channel. An accept error, the
 * `maxConnections` refusal and a server with a `blockList` go to Node's own function.
 * `SOCKET_DEFAULTS` does the same for a socket berth dials (active mode).
 *
 * Where the native part is built, the server's `noDelay` and `keepAlive` are set once on the
 * listening socket instead of on each accepted one: Linux gives a listener's TCP_NODELAY and
 * keep-alive settings to every socket it accepts (native/sockopt.c). The socket is then made
 * knowing it has them, so Node's setters, called with the same values later, make no system call.
 * A control connection made five `setsockopt` calls before its greeting, a data connection one.
 *
 * A server may also take its connections as they come, before any `Socket` is made
 * (`takeConnections`): a passive data listener does, so that a small download, sent whole and closed
 * from the accepted descriptor, never builds one (data/passive.ts RawData). The taker turns a
 * connection into the `Socket` this file would have made (`socketFor`) when it needs one.
 *
 * This rests on internals of `net.Server` (`_handle.onconnection`, `_connections`); where they are
 * missing, the server keeps Node's own function (and test/accept.test.ts fails so it is noticed).
 */
import { channel } from "node:diagnostics_channel";
import { Socket, type Server } from "node:net";
import { sockoptBinding } from "../native.ts";

/** What the Socket constructor sets on its copy of the options, given up front with the values it
 * sets (spread them into `net.connect()` options; `allowHalfOpen` as Node's default). */
export const SOCKET_DEFAULTS = { allowHalfOpen: false, emitClose: false, autoDestroy: true, decodeStrings: false } as const;

/** The libuv TCP handle Node passes to `onconnection` (Node's `TCP` wrap), as far as berth uses it
 * before a `Socket` owns it. */
export interface ClientHandle {
  /** Its descriptor (-1 where there is none, as on Windows). */
  readonly fd: number;
  /** Fills `out.address` (and port, family); 0 or a negative libuv error. */
  getpeername(out: { address?: string }): number;
  close(): void;
}

/** Takes a connection before any `Socket` is made for it; false leaves it to the usual way. */
export type ConnectionTaker = (handle: ClientHandle) => boolean;

type OnConnection = (this: ListenHandle, err: number, clientHandle: ClientHandle) => void;

const SERVER = Symbol("berth.acceptServer");
const NODE_ONCONNECTION = Symbol("berth.nodeOnconnection");
const INHERITED = Symbol("berth.optionsInherited");
const TAKER = Symbol("berth.connectionTaker");

interface ListenHandle {
  onconnection: OnConnection;
  /** The listening socket's descriptor (-1 or missing where there is none, as on Windows). */
  fd?: number;
  [SERVER]: ServerInternals;
  [NODE_ONCONNECTION]: OnConnection;
  /** The listening socket has the server's noDelay and keepAlive, so its connections have them. */
  [INHERITED]: boolean;
  [TAKER]?: ConnectionTaker;
}

/** The fields of `net.Server` Node's `onconnection` reads (all set by its constructor). */
interface ServerInternals extends Server {
  _handle: ListenHandle | null;
  _connections: number;
  allowHalfOpen: boolean;
  pauseOnConnect: boolean;
  noDelay: boolean;
  keepAlive: boolean;
  /** In seconds (the constructor divides the option by 1,000). */
  keepAliveInitialDelay: number;
  highWaterMark: number;
  blockList?: unknown;
}

interface AcceptedSocket extends Socket {
  server: Server;
  _server: Server;
}

const serverSocketChannel = channel("net.server.socket");

/**
 * Makes `server`'s accepted sockets through berth's `onconnection`. Call it once the server is
 * listening (its handle exists then; no connection is accepted before the `listening` event).
 * False, and nothing changed, when the internals it needs are not there.
 */
export function acceptCheaply(server: Server): boolean {
  const s = server as ServerInternals;
  const handle = s._handle;
  if (handle === null || typeof handle !== "object" || typeof handle.onconnection !== "function") return false;
  if (typeof s._connections !== "number" || typeof s.keepAliveInitialDelay !== "number") return false;
  if (handle.onconnection === onConnection) return true;
  handle[NODE_ONCONNECTION] = handle.onconnection;
  handle[SERVER] = s;
  handle[INHERITED] = setOnListener(s, handle);
  handle.onconnection = onConnection;
  return true;
}

/** Sets the server's noDelay and keepAlive on its listening socket; false (nothing set, or not
 * all of it: each connection then sets them as Node does) where that cannot be done. A keepAlive
 * without an initial delay is left to Node (libuv then keeps the system's idle time). */
function setOnListener(s: ServerInternals, handle: ListenHandle): boolean {
  if (!s.noDelay && !s.keepAlive) return false;
  if (s.keepAlive && !(s.keepAliveInitialDelay > 0)) return false;
  const fd = handle.fd;
  const binding = sockoptBinding();
  if (binding === null || typeof fd !== "number" || fd < 0) return false;
  return binding.listenerOptions(fd, s.noDelay, s.keepAlive ? s.keepAliveInitialDelay : 0) === 0;
}

/** Keeps TCP urgent data in the stream of every connection `server` accepts (SO_OOBINLINE on its
 * listening socket): the Telnet interrupt a client sends before ABOR, part of it (Python's
 * ftplib: all of "ABOR\r\n") as urgent data, reaches the command reader whole. False where the
 * addon cannot set it (then a lone DM or IAC left by a removed urgent byte is still skipped, but
 * a command sent all urgent loses its last byte). */
export function inlineUrgentData(server: Server): boolean {
  const handle = (server as ServerInternals)._handle;
  const binding = sockoptBinding();
  if (binding === null || handle === null || typeof handle.fd !== "number" || handle.fd < 0) return false;
  return binding.inlineUrgent(handle.fd) === 1;
}

/** True when `server`'s connections get noDelay and keepAlive from its listening socket (for tests). */
export function optionsInherited(server: Server): boolean {
  const handle = (server as ServerInternals)._handle;
  return handle !== null && handle.onconnection === onConnection && handle[INHERITED];
}

/**
 * Offers `server`'s connections to `taker` before a `Socket` is made (after acceptCheaply, which
 * it needs: false, and nothing changed, where that is not in place). A connection the taker turns
 * down goes on as without it. The taker owns what it takes: it closes the handle, or makes it a
 * `Socket` with socketFor.
 */
export function takeConnections(server: Server, taker: ConnectionTaker): boolean {
  const handle = (server as ServerInternals)._handle;
  if (handle === null || handle.onconnection !== onConnection) return false;
  handle[TAKER] = taker;
  return true;
}

/** The remote address of a connection not yet made a `Socket` ("" when the system cannot say). */
export function peerAddress(handle: ClientHandle): string {
  const out: { address?: string } = {};
  return handle.getpeername(out) === 0 && typeof out.address === "string" ? out.address : "";
}

/** True when `server`'s connections are made by berth's `onconnection` (for tests). */
export function acceptsCheaply(server: Server): boolean {
  const handle = (server as ServerInternals)._handle;
  return handle !== null && handle.onconnection === onConnection;
}

function onConnection(this: ListenHandle, err: number, clientHandle: ClientHandle): void {
  const server = this[SERVER];
  // A `blockList` (a server option of later Node versions) is checked by Node's own function.
  if (err || server.blockList || (server.maxConnections && server._connections >= server.maxConnections)) {
    this[NODE_ONCONNECTION](err, clientHandle);
    return;
  }
  const taker = this[TAKER];
  if (taker !== undefined && taker(clientHandle)) return;
  const socket = makeSocket(server, clientHandle, this[INHERITED]);
  server.emit("connection", socket);
  if (serverSocketChannel.hasSubscribers) serverSocketChannel.publish({ socket });
}

/**
 * The `Socket` Node's `onconnection` would make for `clientHandle`, a connection `server`
 * accepted: counted, tied to the server and published on the diagnostics channel; no `connection`
 * event (whoever calls this has the socket). Only for a server acceptCheaply took.
 */
export function socketFor(server: Server, clientHandle: ClientHandle): Socket {
  const s = server as ServerInternals;
  const handle = s._handle;
  // Once the server has closed, its handle is gone: what the listener gave cannot be told then,
  // and the setters below set both options by hand.
  const socket = makeSocket(s, clientHandle, handle !== null && handle[INHERITED] === true);
  if (serverSocketChannel.hasSubscribers) serverSocketChannel.publish({ socket });
  return socket;
}

/**
 * The `Socket` for a connection the addon accepted as a bare descriptor (data/passive.ts
 * NativeListener): paused, as a passive listener's are made, with noDelay (the listener gave it),
 * and published on the `net.server.socket` diagnostics channel as an accepted socket is. It owns
 * the descriptor from then on.
 */
export function socketForFd(fd: number): Socket {
  const socket = new Socket({
    fd,
    readable: true,
    writable: true,
    pauseOnCreate: true,
    noDelay: true,
    ...SOCKET_DEFAULTS,
  } as ConstructorParameters<typeof Socket>[0]);
  if (serverSocketChannel.hasSubscribers) serverSocketChannel.publish({ socket });
  return socket;
}

function makeSocket(server: ServerInternals, clientHandle: ClientHandle, inherited: boolean): Socket {
  const socket = new Socket({
    handle: clientHandle,
    allowHalfOpen: server.allowHalfOpen,
    pauseOnCreate: server.pauseOnConnect,
    readable: true,
    writable: true,
    readableHighWaterMark: server.highWaterMark,
    writableHighWaterMark: server.highWaterMark,
    emitClose: false,
    autoDestroy: true,
    decodeStrings: false,
    // With a handle, the constructor only records these (as what the socket has): right when the
    // listener gave them, and false otherwise, for the setters below.
    noDelay: inherited && server.noDelay,
    keepAlive: inherited && server.keepAlive,
    keepAliveInitialDelay: inherited && server.keepAlive ? server.keepAliveInitialDelay * 1000 : 0,
  } as ConstructorParameters<typeof Socket>[0]) as AcceptedSocket;
  if (!inherited) {
    // The public setters set the socket's own record of the option and the handle's, as Node's
    // onconnection does by hand.
    if (server.noDelay) socket.setNoDelay(true);
    if (server.keepAlive) socket.setKeepAlive(true, server.keepAliveInitialDelay * 1000);
  }
  server._connections++;
  socket.server = server;
  socket._server = server;
  return socket;
}
