/**
 * Passive data connections (PASV, EPSV). A listener on one pool port accepts exactly one connection
 * from the control connection's IP (SPEC: no FXP, no port stealing); connections from any other IP
 * are dropped and the listener keeps waiting, so a third party cannot kill the real client's
 * transfer. Waiting is on events, never timers polling.
 *
 * After a transfer, the session keeps the listener for its next PASV/EPSV for up to SPARE_MS (a
 * spare, one per session): a client that moves many files asks for a data port before each, and
 * opening and closing a listening socket is a good part of the cost of a small file. Only the port
 * of a transfer that succeeded, and that nobody else has touched, is kept: a connection to a spare
 * closes it, and a listener that saw any connection besides its transfer's own (from a foreign
 * address, a second one) is not kept, so probing for the port a session will use next finds
 * nothing to use (the next PASV gets a fresh random port). Another session that finds the range
 * full takes a spare (PortPool.reclaim).
 */
import { createServer, type Server, type Socket } from "node:net";
import { constants } from "node:os";
import { getSystemErrorName } from "node:util";
import { errnoCode, systemErrorText } from "../config/syserr.ts";
import { closeQuietly } from "../fs/fd.ts";
import { FtpError } from "../protocol/errors.ts";
import { acceptCheaply, peerAddress, takeConnections, type ClientHandle } from "./accept.ts";
import { sameHost, unmapIPv4 } from "./address.ts";
import type { DataChannel } from "./channel.ts";
import { endUnused } from "./linger.ts";
import type { PortPool } from "./ports.ts";
import { listenBinding, watchBinding, type ListenBinding, type WatchBinding, type Watcher } from "../native.ts";
import { asSocket, RawData, type DataConnection } from "./raw.ts";

/** What a passive listener needs to know. */
export interface PassiveOptions {
  readonly pool: PortPool;
  /** Local address to bind: the control connection's local address. */
  readonly bindHost: string;
  /** The only remote IP allowed to connect. */
  readonly allowedRemote: string;
  /** How long connect() waits for the client, in ms. */
  readonly timeoutMs: number;
  /** Called for each refused connection (for the log). */
  readonly onForeign?: (remote: string) => void;
  /** Called when the channel closes without the client ever connecting (for the log). */
  readonly onUnused?: (port: number) => void;
  /** Where the session keeps its listener between transfers. */
  readonly spare: SpareSlot;
}

/** How long a session keeps its listener after a transfer for its next PASV/EPSV (ms). */
export const SPARE_MS = 2000;

/**
 * A listening socket on a held pool port: a `net.Server` (Listener) or, where the addon is built, a
 * bare descriptor (NativeListener). While no channel owns it, a connection closes it.
 */
abstract class DataListener {
  owner: PassiveChannel | null = null;
  /** Saw a connection that was not its transfer's own: not to be kept. */
  touched = false;
  /** Called when a connection comes while no channel owns it (the spare slot closes it). */
  onProbe: (() => void) | null = null;
  /** The socket failed (an accept error): not to be kept. */
  protected failed = false;
  private released = false;

  constructor(
    readonly port: number,
    private readonly pool: PortPool,
  ) {}

  /** Still listening, never failed, and no connection but its transfer's own: fit to be kept. */
  get reusable(): boolean {
    return this.listening && !this.failed && !this.touched;
  }

  protected abstract get listening(): boolean;

  /** Stops listening (harmless twice). */
  protected abstract stop(): void;

  /** Stops listening and gives the port back (once: the port may be someone else's afterwards). */
  close(): void {
    this.stop();
    if (this.released) return;
    this.released = true;
    this.pool.release(this.port);
  }

  /** A connection came while no channel owns it (and was closed): so is the listener, or the
   * spare slot that holds it. */
  protected probed(): void {
    this.touched = true;
    if (this.onProbe) this.onProbe();
    else this.close();
  }

  /** The socket failed: the transfer waiting on it, or the listener, ends. */
  protected failedNow(): void {
    this.failed = true;
    if (this.owner) this.owner.close();
    else this.close();
  }
}

/** A passive listener on a `net.Server` (where the addon is not built, or cannot bind the host). */
class Listener extends DataListener {
  constructor(
    readonly server: Server,
    port: number,
    pool: PortPool,
  ) {
    super(port, pool);
    // Connections come as accepted (RawData) where data/accept.ts can give them so, as sockets
    // otherwise.
    takeConnections(server, (h: ClientHandle) => {
      if (this.owner) this.owner.onConnection(new RawData(server, h), peerAddress(h));
      else {
        h.close();
        this.probed();
      }
      return true;
    });
    server.on("connection", (s: Socket) => {
      if (this.owner) this.owner.onConnection(s, s.remoteAddress ?? "");
      else {
        s.destroy();
        this.probed();
      }
    });
    server.on("error", () => this.failedNow());
  }

  protected get listening(): boolean {
    return this.server.listening;
  }

  protected stop(): void {
    if (this.server.listening) this.server.close();
  }
}

/** Tries of accept4 per readiness callback of a NativeListener, at most. It stops at the first
 * connection its transfer takes (nearly always the only one: one more call would only say that
 * nobody else waits) and goes on after one it drops; what is left waits for the loop's next turn
 * (the socket is watched level-triggered), so a flood of connections to a data port gets no more of
 * the main thread at a time than this. */
const ACCEPTS_PER_TURN = 16;
/** Where acceptInto puts the descriptor of the connection it accepts (read at once, so one serves
 * every listener). */
const accepted = new Int32Array(1);
const EAGAIN = -(constants.errno.EAGAIN ?? 11);
/** A connection that went away while it waited to be accepted, or one the system refused for
 * itself alone (libuv's accept loop goes on after these too). */
const ACCEPT_SKIP = new Set([constants.errno.ECONNABORTED, constants.errno.EPROTO, constants.errno.EPERM].map((e) => -(e ?? 0)));

/**
 * A passive listener made by the addon (native/listen.c): a bare listening descriptor watched with
 * the other raw sockets (native/watch.c), whose connections are accepted there, each a RawData
 * holding its descriptor. No libuv TCP handle is made for the listener or, unless a transfer asks
 * for a `Socket`, for a connection: a small file's data connection costs an accept4 and a close,
 * where a `net.Server`'s cost a TCP wrap, a getpeername call and a handle close on the next turn.
 * Otherwise it behaves as Listener.
 */
class NativeListener extends DataListener {
  private fd: number;
  private watcher: Watcher | null = null;

  private constructor(
    fd: number,
    port: number,
    pool: PortPool,
    private readonly l: ListenBinding,
    private readonly w: WatchBinding,
  ) {
    super(port, pool);
    this.fd = fd;
  }

  /** Listens on `host`:`port` (the port held by the caller): the listener, or a negative errno. */
  static open(host: string, port: number, pool: PortPool, l: ListenBinding, w: WatchBinding): NativeListener | number {
    const fd = l.listenTcp(host, port, PASSIVE_BACKLOG);
    if (fd < 0) return fd;
    const listener = new NativeListener(fd, port, pool, l, w);
    const id = w.watchReadable(fd, (status) => listener.readable(status));
    if (id < 0) {
      closeQuietly(fd);
      return id;
    }
    listener.watcher = id as Watcher;
    return listener;
  }

  protected get listening(): boolean {
    return this.fd >= 0;
  }

  /** Connections are waiting (or the socket failed): each goes to the owner, or closes a listener
   * nobody owns. */
  private readable(status: number): void {
    for (let i = 0; i < ACCEPTS_PER_TURN && this.fd >= 0; i++) {
      const r = status < 0 ? status : this.l.acceptInto(this.fd, accepted);
      if (typeof r === "number") {
        if (r === EAGAIN) return;
        if (ACCEPT_SKIP.has(r)) continue;
        // Out of descriptors or memory, or a failed socket: the connection stays queued and the
        // socket readable, so the listener goes (as a net.Server's 'error' ends Listener); the
        // system resets what waits in its queue.
        this.failedNow();
        return;
      }
      const conn = new RawData(null, accepted[0] as number);
      if (this.owner === null) {
        conn.destroy();
        this.probed();
        return;
      }
      this.owner.onConnection(conn, r);
      // Taken (the transfer's own): done for this turn. Dropped (from a foreign address, or a
      // second one): more of those may be queued.
      if (conn.fd >= 0) return;
    }
  }

  protected stop(): void {
    if (this.fd < 0) return;
    if (this.watcher !== null) this.w.unwatch(this.watcher);
    this.watcher = null;
    closeQuietly(this.fd);
    this.fd = -1;
  }
}

/** The listen backlog of a data port: one connection is used, the rest are refused or probes. */
const PASSIVE_BACKLOG = 8;

/** One session's spare listener (see the top of this file). */
export class SpareSlot {
  private held: DataListener | null = null;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(
    private readonly pool: PortPool,
    private readonly keepMs = SPARE_MS,
  ) {}

  /** Keeps `l` (listening, port held, no owner) for the next PASV/EPSV. */
  keep(l: DataListener): void {
    this.drop();
    if (this.closed) {
      l.close();
      return;
    }
    this.held = l;
    l.onProbe = () => this.drop();
    this.pool.spare(l.port, () => this.drop());
    this.timer = setTimeout(() => this.drop(), this.keepMs);
    this.timer.unref();
  }

  /** The kept listener, if it still listens; the slot is empty afterwards. */
  take(): DataListener | null {
    const l = this.held;
    if (!l) return null;
    this.held = null;
    l.onProbe = null;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    this.pool.unspare(l.port);
    if (l.reusable) return l;
    l.close();
    return null;
  }

  /** Closes the kept listener and gives its port back. */
  drop(): void {
    this.take()?.close();
  }

  /** The session ended: nothing is kept any more. */
  close(): void {
    this.closed = true;
    this.drop();
  }
}

/** How long a channel refused before use keeps listening for a client already connecting (ms):
 * such a client sent its connect together with the refused command, so it arrives within about
 * one round trip of the refusal. */
const RETIRE_GRACE_MS = 1000;

/** A listening passive port holding at most one accepted connection. */
export class PassiveChannel implements DataChannel {
  readonly kind = "passive" as const;
  private accepted: DataConnection | null = null;
  /** A connect() waiting for the client, and its timer; `raw` takes the connection as accepted. */
  private waiter: { resolve: (c: DataConnection) => void; reject: (e: Error) => void; timer: NodeJS.Timeout; raw: boolean } | null = null;
  private closed = false;
  private handedOut = false;
  /** Its transfer succeeded (finish()): the listener may be kept. */
  private succeeded = false;
  /** Refused before use: a connection still accepted is ended cleanly, then the port goes back. */
  private retired = false;
  /** Refused before use while data connections are TLS: a connection is kept, not ended
   * (holdForClient). */
  private holdOnRetire = false;
  /** A port no transfer command takes within the data timeout is given back, with a connection
   * accepted on it meanwhile, so PASV without a transfer cannot hold the range (issue "Abuse
   * resistance"). */
  private readonly deadline: NodeJS.Timeout;
  private retireTimer: NodeJS.Timeout | null = null;

  /** The port clients connect to. */
  readonly port: number;

  /** Not closed yet (see DataChannel.open). */
  get open(): boolean {
    return !this.closed;
  }

  private constructor(
    private readonly listener: DataListener,
    private readonly opts: PassiveOptions,
  ) {
    this.port = listener.port;
    listener.owner = this;
    this.deadline = setTimeout(() => this.expire(), opts.timeoutMs);
    this.deadline.unref();
  }

  /** The session's spare listener, or a free pool port newly bound (when the range is full, after
   * taking another session's spare); FtpError 425 when the range is exhausted. */
  static open(opts: PassiveOptions): PassiveChannel | Promise<PassiveChannel> {
    const kept = opts.spare.take();
    if (kept) return new PassiveChannel(kept, opts);
    return PassiveChannel.openNew(opts);
  }

  /** open() without a listener kept from the last transfer. */
  private static async openNew(opts: PassiveOptions): Promise<PassiveChannel> {
    const host = unmapIPv4(opts.bindHost);
    // The addon's listener needs its watcher too; null: a net.Server.
    const watch = watchBinding();
    let native = watch !== null ? listenBinding() : null;
    // Ports the system would not let us bind (EACCES: below 1024 without the right to): a range
    // of those is no full range, and the operator must hear of it.
    let denied = false;
    do {
      for (const port of opts.pool.candidates()) {
        if (!opts.pool.hold(port)) continue;
        if (native !== null) {
          const l = NativeListener.open(host, port, opts.pool, native, watch as WatchBinding);
          if (typeof l !== "number") return new PassiveChannel(l, opts);
          opts.pool.release(port);
          const code = getSystemErrorName(l);
          denied ||= code === "EACCES";
          if (code === "EADDRINUSE" || code === "EACCES") continue;
          // A host the addon cannot take (not a numeric address): a net.Server, as without it.
          if (code !== "EINVAL") throw new FtpError(425, `Can't open passive connection: ${systemErrorText({ code })}`);
          native = null;
          if (!opts.pool.hold(port)) continue;
        }
        const server = createServer({ noDelay: true, pauseOnConnect: true });
        const err = await listenOnce(server, port, host);
        if (err === null) return new PassiveChannel(new Listener(server, port, opts.pool), opts);
        opts.pool.release(port);
        // A port taken by someone else: the next one. Anything else (out of descriptors, the
        // address gone) would fail on every port alike.
        const code = errnoCode(err);
        denied ||= code === "EACCES";
        if (code !== "EADDRINUSE" && code !== "EACCES") throw new FtpError(425, `Can't open passive connection: ${systemErrorText(err)}`);
      }
    } while (opts.pool.reclaim());
    if (denied) {
      const { min, max } = opts.pool.range;
      throw new FtpError(
        425,
        "Can't open passive connection: permission denied",
        `passive.ports ${min}-${max}: the system refused to bind its ports (a port below 1024 needs root or the capability NET_BIND_SERVICE)`,
        true,
      );
    }
    throw new FtpError(425, "Can't open passive connection: no free data port");
  }

  /** Resolves with the client's data connection: a `Socket`, or with `raw`, the connection as
   * accepted (data/raw.ts). */
  connect(): Promise<Socket>;
  connect(raw: true): Promise<DataConnection>;
  connect(raw = false): Promise<DataConnection> {
    if (this.handedOut) return Promise.reject(new FtpError(425, "Data connection already used"));
    if (this.closed) return Promise.reject(new FtpError(425, "Data connection closed"));
    if (this.accepted) return Promise.resolve(this.handOut(this.accepted, raw));
    return new Promise<DataConnection>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new FtpError(425, "Can't open data connection: timed out waiting for the client"));
        this.close();
      }, this.opts.timeoutMs);
      timer.unref();
      this.waiter = { resolve, reject, timer, raw };
    });
  }

  /** Settles the waiting connect(), if any: with the connection, or with a 425 saying `refusal`
   * (made only when someone waits: an error captures a stack, which costs). */
  private answer(conn: DataConnection | null, refusal: string): void {
    const w = this.waiter;
    if (w === null) return;
    this.waiter = null;
    clearTimeout(w.timer);
    if (conn !== null) w.resolve(this.handOut(conn, w.raw));
    else w.reject(new FtpError(425, refusal));
  }

  /** Stops listening, frees the port, destroys a connection nobody took. The transfer that took
   * the connection calls this when it ends: the port is held until then (issue: PASV ports are held
   * until the transfer ends, so the range bounds concurrent transfers). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.deadline);
    if (this.retireTimer) clearTimeout(this.retireTimer);
    this.listener.owner = null;
    // The listener of a transfer that succeeded goes to the session's spare slot. One never used
    // may still see a late connection meant for it, and one whose transfer failed (an abort, a
    // refused TLS session) may have had someone else's connection: they go.
    if (this.succeeded && this.listener.reusable) this.opts.spare.keep(this.listener);
    else this.listener.close();
    if (this.accepted && !this.handedOut) this.accepted.destroy();
    if (!this.accepted) this.opts.onUnused?.(this.port);
    this.answer(null, "Data connection closed");
  }

  /** The transfer on this channel succeeded: close(), keeping the listener if it may be kept. */
  finish(): void {
    this.succeeded = this.handedOut && !this.retired;
    this.close();
  }

  /**
   * The command this channel was opened for was refused before 150. A client connects right after
   * PASV, often before that reply reaches it: closing the listener at once would refuse or reset its
   * connection, and FileZilla would retry the refused command as if the network had failed (vsftpd
   * and pure-ftpd keep the listener too). So the listener stays for up to RETIRE_GRACE_MS (never past
   * the data timeout); a connection that comes is ended with a FIN, then the port goes back. Meanwhile
   * the port counts as a spare: a PASV/EPSV that finds the range full takes it (PortPool.reclaim),
   * so a small range, or the client's own next PASV in a range of one port, is not refused for it.
   * With `tls` (PROT P) a connection is not ended but kept until its client closes it
   * (holdForClient).
   */
  retire(tls = false): void {
    if (this.closed || this.retired) return;
    if (this.handedOut) {
      this.close();
      return;
    }
    this.retired = true;
    this.holdOnRetire = tls;
    this.answer(null, "Data connection closed");
    if (this.accepted) {
      this.endGently(this.accepted);
      return;
    }
    clearTimeout(this.deadline);
    const grace = setTimeout(() => this.close(), Math.min(RETIRE_GRACE_MS, this.opts.timeoutMs));
    grace.unref();
    this.retireTimer = grace;
    this.opts.pool.spare(this.port, () => this.close());
  }

  /** Ends an accepted connection nobody will use: FIN, then it is destroyed when the client closes
   * (or after a moment); the listener and port go now. */
  private endGently(conn: DataConnection): void {
    if (this.holdOnRetire) {
      this.holdForClient(asSocket(conn));
      return;
    }
    this.handedOut = true; // close() must not reset it
    this.close();
    endUnused(asSocket(conn), RETIRE_GRACE_MS);
  }

  /**
   * The connection of a channel refused before use under PROT P: its client may be in its TLS
   * handshake (curl starts it as it connects), and a FIN or a reset would fail that handshake before
   * the client reads the refusal on the control connection; curl then takes the handshake's failure
   * for a failed EPSV, sends PASV and reads the refusal as its reply ("Bad PASV/EPSV response:
   * 550"). So the connection stays as it is, what the client sends read and dropped, until the
   * client closes it, the data timeout passes, or the session lets the channel go (close(): at the
   * next refused transfer, or its end), as vsftpd, which accepts only for a transfer, leaves it
   * waiting. The listener and its port go now.
   */
  private holdForClient(socket: Socket): void {
    this.accepted = socket;
    this.listener.owner = null;
    this.listener.close();
    if (this.retireTimer) clearTimeout(this.retireTimer);
    this.retireTimer = setTimeout(() => this.close(), this.opts.timeoutMs);
    this.retireTimer.unref();
    socket.once("end", () => this.close());
    socket.once("close", () => this.close());
    socket.resume();
  }

  /** A transfer command took the channel: the time it takes to open its file does not count
   * against the client. */
  taken(): void {
    clearTimeout(this.deadline);
  }

  /** No transfer command took the channel within the data timeout: a connection nobody asked
   * for goes, and so does the port. */
  private expire(): void {
    this.close();
  }

  private handOut(c: DataConnection, raw: boolean): DataConnection {
    // One connection per PASV: later ones are dropped (onConnection) and keep the port from being
    // kept; the port stays held until close().
    this.handedOut = true;
    return raw ? c : asSocket(c);
  }

  /** A connection to the listener while this channel owns it, from `remote`. */
  onConnection(conn: DataConnection, remote: string): void {
    if (this.accepted || this.closed || !sameHost(remote, this.opts.allowedRemote)) {
      if (!this.accepted && !this.closed) this.opts.onForeign?.(remote);
      this.listener.touched = true;
      conn.destroy();
      return;
    }
    if (!(conn instanceof RawData)) {
      conn.setNoDelay(true);
      conn.on("error", () => undefined);
    }
    this.accepted = conn;
    if (this.retired) {
      this.endGently(conn);
      return;
    }
    this.answer(conn, "");
  }
}

/** Listens on `port`: null once listening, or the error that stopped it. */
function listenOnce(server: Server, port: number, host: string): Promise<Error | null> {
  return new Promise((resolve) => {
    // The first of the two settles it; the other listener goes with the server (closed on
    // failure) or stays harmless (an 'error' after listening is handled by Listener).
    server.once("error", (err) => resolve(err));
    server.once("listening", () => {
      acceptCheaply(server);
      resolve(null);
    });
    server.listen({ port, host, exclusive: true, backlog: PASSIVE_BACKLOG });
  });
}
