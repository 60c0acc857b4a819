/**
 * A passive data connection as accepted, before any `net.Socket` is made for it (data/accept.ts
 * takeConnections). A plain download or listing that the socket's buffer takes whole is written
 * from the descriptor and ended here (data/transfer.ts: closed at once when the client has
 * acknowledged every byte, else after a FIN, `linger()`), and a small plain upload is read from it
 * while the addon watches it (`watch()`, native/watch.c; data/receive.ts receiveRaw): no stream,
 * no events and no `Socket` at all. Anything else asks for the `Socket` (`socket()`), which owns
 * the connection from then on: the same socket the listener would have made, so every other path
 * is unchanged.
 */
import type { Server, Socket } from "node:net";
import { closeQuietly } from "../fs/fd.ts";
import { NEG_EAGAIN, tryRead } from "../fs/sysio.ts";
import { pendingBinding, watchBinding, type Watcher } from "../native.ts";
import { socketFor, socketForFd, type ClientHandle } from "./accept.ts";
import { prematureClose } from "./failure.ts";

export class RawData {
  private sock: Socket | null = null;
  private closed = false;
  private watcher: Watcher | null = null;
  /** Called once when it is closed (destroy()) while watched. */
  private onGone: (() => void) | null = null;
  /** Its FIN went (linger()): it closes on its own, when the client closes or at this deadline. */
  private lingering: NodeJS.Timeout | null = null;

  /** A connection a `net.Server` accepted (`server` and its libuv handle), or one accepted by the
   * addon (no server, and its bare descriptor: data/passive.ts NativeListener). */
  constructor(
    private readonly server: Server | null,
    private readonly handle: ClientHandle | number,
  ) {}

  /** The descriptor to write to while no `Socket` owns the connection; -1 after that, or once
   * closed. */
  get fd(): number {
    if (this.sock !== null || this.closed) return -1;
    const h = this.handle;
    return typeof h === "number" ? h : h.fd;
  }

  /**
   * Calls `onReadable(status)` each time the descriptor can be read (native/watch.c), and `onGone`
   * (if any) if it is closed meanwhile, until unwatch(). False where the addon cannot watch it (the caller
   * then uses the `Socket`).
   */
  watch(onReadable: (status: number) => void, onGone: (() => void) | null): boolean {
    const b = watchBinding();
    const fd = this.fd;
    if (b === null || fd < 0 || this.watcher !== null) return false;
    const w = b.watchReadable(fd, onReadable);
    if (w < 0) return false;
    this.watcher = w as Watcher;
    this.onGone = onGone;
    return true;
  }

  /** Stops watching (harmless when not watched). */
  unwatch(): void {
    const w = this.watcher;
    if (w === null) return;
    this.watcher = null;
    this.onGone = null;
    watchBinding()?.unwatch(w);
  }

  /** The connection as the `Socket` the listener would have made (the same one on every call).
   * Throws a premature close once it was closed without one. */
  socket(): Socket {
    if (this.sock !== null) return this.sock;
    if (this.closed) throw prematureClose();
    // No other poller of the descriptor while the socket reads it.
    this.unwatch();
    // noDelay as the listener gives it (socketFor); errors are the transfer's to see, and none may
    // go unhandled meanwhile.
    const h = this.handle;
    const s = typeof h === "number" ? socketForFd(h) : socketFor(this.server as Server, h);
    s.on("error", ignore);
    this.sock = s;
    return s;
  }

  /**
   * Ends a download's connection whose every byte went, as data/linger.ts endUnused ends a
   * `Socket`, without making one: its FIN goes now (shutdown), what the client still sends is read
   * and dropped, and it closes when the client closes its side, or after `graceMs` whatever the
   * client does. False, and nothing done, where the addon cannot (the caller then ends it as a
   * `Socket`); throws a premature close when the FIN cannot go (the client reset the connection).
   */
  linger(graceMs: number): boolean {
    const sh = pendingBinding();
    const fd = this.fd;
    if (sh === null || watchBinding() === null || fd < 0 || this.watcher !== null) return false;
    if (sh.shutdownWrite(fd) !== 0) throw prematureClose();
    // A watch that cannot start leaves it to the Socket: ending it again there is harmless
    // (shutdown of a side already shut).
    if (!this.watch((status) => this.drop(status), null)) return false;
    this.lingering = setTimeout(() => this.destroy(), graceMs);
    this.lingering.unref();
    return true;
  }

  /** Reads and drops what a lingering connection's client sends, at most DROP_READS reads a turn
   * of the event loop (a client that keeps sending gets no more of the main thread than a `Socket`
   * reading it would give); closes it at the client's end (or an error). */
  private drop(status: number): void {
    const fd = this.fd;
    if (status < 0 || fd < 0) {
      this.destroy();
      return;
    }
    for (let i = 0; i < DROP_READS; i++) {
      const n = tryRead(fd, scratch, 0, scratch.length);
      if (n < 0) {
        if (n !== NEG_EAGAIN) this.destroy();
        return;
      }
      if (n === 0) {
        this.destroy();
        return;
      }
    }
  }

  /** Closes it when no `Socket` was made for it (a Socket ends its own way) and it does not linger
   * (it closes on its own then); after a transfer's reply, for an upload read to its end
   * (data/receive.ts receiveRaw). Harmless twice. */
  release(): void {
    if (this.sock === null && this.lingering === null) this.destroy();
  }

  /** Closes it at once: the handle, or the socket made for it. Harmless twice. A watch ends
   * first (the descriptor must outlive it), and its `onGone` is called. */
  destroy(): void {
    const gone = this.onGone;
    if (this.lingering !== null) clearTimeout(this.lingering);
    this.unwatch();
    if (this.sock !== null) this.sock.destroy();
    else if (!this.closed) {
      const h = this.handle;
      if (typeof h === "number") closeQuietly(h);
      else h.close();
    }
    this.closed = true;
    gone?.();
  }
}

/** Where lingering connections' stray bytes are read to be dropped (never looked at). */
const scratch = Buffer.allocUnsafe(64 * 1024);
/** Reads of a lingering connection per readiness callback: the rest waits for the next turn. */
const DROP_READS = 4;

/** A passive channel's connection: as accepted, or already a `Socket`. */
export type DataConnection = Socket | RawData;

/** `c` as a `Socket`, made now if it is still raw. */
export function asSocket(c: DataConnection): Socket {
  return c instanceof RawData ? c.socket() : c;
}

function ignore(): void {}
