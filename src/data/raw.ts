/**
 * A passive data connection as accepted, before any `net.Socket` is made for it (data/accept.ts
 * takeConnections). A plain download or listing that the socket's buffer takes whole is written
 * from the descriptor and closed here (data/transfer.ts), and a small plain upload is read from it
 * while the addon watches it (`watch()`, native/watch.c; data/receive.ts receiveRaw): no stream,
 * no events and no `Socket` at all. Anything else asks for the `Socket` (`socket()`), which owns
 * the connection from then on: the same socket the listener would have made, so every other path
 * is unchanged.
 */
import type { Server, Socket } from "node:net";
import { watchBinding, type Watcher } from "../native.ts";
import { socketFor, type ClientHandle } from "./accept.ts";
import { prematureClose } from "./failure.ts";

export class RawData {
  private sock: Socket | null = null;
  private closed = false;
  private watcher: Watcher | null = null;
  /** Called once when it is closed (destroy()) while watched. */
  private onGone: (() => void) | null = null;

  constructor(
    private readonly server: Server,
    private readonly handle: ClientHandle,
  ) {}

  /** The descriptor to write to while no `Socket` owns the connection; -1 after that, or once
   * closed. */
  get fd(): number {
    return this.sock === null && !this.closed ? this.handle.fd : -1;
  }

  /**
   * Calls `onReadable(status)` each time the descriptor can be read (native/watch.c), and `onGone`
   * if it is closed meanwhile, until unwatch(). False where the addon cannot watch it (the caller
   * then uses the `Socket`).
   */
  watch(onReadable: (status: number) => void, onGone: () => void): boolean {
    const b = watchBinding();
    const fd = this.fd;
    if (b === null || fd < 0 || this.watcher !== null) return false;
    const w = b.watchReadable(fd, onReadable);
    if (typeof w === "number") return false;
    this.watcher = w;
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
    const s = socketFor(this.server, this.handle);
    s.on("error", ignore);
    this.sock = s;
    return s;
  }

  /** Closes it when no `Socket` was made for it (a Socket ends its own way); after a transfer's
   * reply, for an upload read to its end (data/receive.ts receiveRaw). Harmless twice. */
  release(): void {
    if (this.sock === null) this.destroy();
  }

  /** Closes it at once: the handle, or the socket made for it. Harmless twice. A watch ends
   * first (the descriptor must outlive it), and its `onGone` is called. */
  destroy(): void {
    const gone = this.onGone;
    this.unwatch();
    if (this.sock !== null) this.sock.destroy();
    else if (!this.closed) this.handle.close();
    this.closed = true;
    gone?.();
  }
}

/** A passive channel's connection: as accepted, or already a `Socket`. */
export type DataConnection = Socket | RawData;

/** `c` as a `Socket`, made now if it is still raw. */
export function asSocket(c: DataConnection): Socket {
  return c instanceof RawData ? c.socket() : c;
}

function ignore(): void {}
