/**
 * Passive data connections (PASV, EPSV). A listener on one pool port accepts exactly one connection
 * from the control connection's IP (SPEC: no FXP, no port stealing); connections from any other IP
 * are dropped and the listener keeps waiting, so a third party cannot kill the real client's
 * transfer. Waiting is on events, never timers polling.
 */
import { createServer, type Server, type Socket } from "node:net";
import { FtpError } from "../protocol/errors.ts";
import { sameHost, unmapIPv4 } from "./address.ts";
import type { DataChannel } from "./channel.ts";
import type { PortPool } from "./ports.ts";

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
}

/** How long a channel refused before use keeps listening for a client already connecting (ms):
 * such a client sent its connect together with the refused command, so it arrives within about
 * one round trip of the refusal. */
const RETIRE_GRACE_MS = 1000;

/** A listening passive port holding at most one accepted connection. */
export class PassiveChannel implements DataChannel {
  readonly kind = "passive" as const;
  private accepted: Socket | null = null;
  private waiter: { resolve: (s: Socket) => void; reject: (e: Error) => void } | null = null;
  private closed = false;
  private handedOut = false;
  /** Refused before use: a connection still accepted is ended cleanly, then the port goes back. */
  private retired = false;
  /** A port nobody connects to within the data timeout is given back, so PASV without a
   * connection cannot hold the range (issue "Abuse resistance"). */
  private readonly deadline: NodeJS.Timeout;
  private retireTimer: NodeJS.Timeout | null = null;

  private constructor(
    private readonly server: Server,
    /** The port clients connect to. */
    readonly port: number,
    private readonly opts: PassiveOptions,
  ) {
    server.on("connection", (s) => this.onConnection(s));
    server.on("error", () => this.close());
    this.deadline = setTimeout(() => this.expire(), opts.timeoutMs);
    this.deadline.unref();
  }

  /** Binds a free pool port; FtpError 425 when the range is exhausted. */
  static async open(opts: PassiveOptions): Promise<PassiveChannel> {
    const host = unmapIPv4(opts.bindHost);
    for (const port of opts.pool.candidates()) {
      if (!opts.pool.hold(port)) continue;
      const server = createServer({ noDelay: true, pauseOnConnect: true });
      const ok = await listenOnce(server, port, host);
      if (ok) return new PassiveChannel(server, port, opts);
      opts.pool.release(port);
    }
    throw new FtpError(425, "Can't open passive connection: no free data port");
  }

  /** Resolves with the client's data connection. */
  connect(): Promise<Socket> {
    if (this.handedOut) return Promise.reject(new FtpError(425, "Data connection already used"));
    if (this.closed) return Promise.reject(new FtpError(425, "Data connection closed"));
    if (this.accepted) return Promise.resolve(this.handOut(this.accepted));
    return new Promise<Socket>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new FtpError(425, "Can't open data connection: timed out waiting for the client"));
        this.close();
      }, this.opts.timeoutMs);
      timer.unref();
      this.waiter = {
        resolve: (s) => {
          clearTimeout(timer);
          resolve(this.handOut(s));
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
    });
  }

  /** Stops listening, frees the port, destroys a connection nobody took. The transfer that took
   * the connection calls this when it ends: the port is held until then (issue: PASV ports are held
   * until the transfer ends, so the range bounds concurrent transfers). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.deadline);
    if (this.retireTimer) clearTimeout(this.retireTimer);
    this.stopListening();
    this.opts.pool.release(this.port);
    if (this.accepted && !this.handedOut) this.accepted.destroy();
    if (!this.accepted) this.opts.onUnused?.(this.port);
    const w = this.waiter;
    this.waiter = null;
    w?.reject(new FtpError(425, "Data connection closed"));
  }

  /**
   * The command this channel was opened for was refused before 150. A client connects right after
   * PASV, often before that reply reaches it: closing the listener at once would refuse or reset its
   * connection, and FileZilla would retry the refused command as if the network had failed (vsftpd
   * and pure-ftpd keep the listener too). So the listener stays for up to RETIRE_GRACE_MS (never past
   * the data timeout); a connection that comes is ended with a FIN, then the port goes back.
   */
  retire(): void {
    if (this.closed || this.retired) return;
    if (this.handedOut) {
      this.close();
      return;
    }
    this.retired = true;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(new FtpError(425, "Data connection closed"));
    if (this.accepted) {
      this.endGently(this.accepted);
      return;
    }
    clearTimeout(this.deadline);
    const grace = setTimeout(() => this.close(), Math.min(RETIRE_GRACE_MS, this.opts.timeoutMs));
    grace.unref();
    this.retireTimer = grace;
  }

  /** Ends an accepted connection nobody will use: FIN, then it is destroyed when the client closes
   * (or after a moment); the listener and port go now. */
  private endGently(socket: Socket): void {
    this.handedOut = true; // close() must not reset it
    this.close();
    socket.setTimeout(RETIRE_GRACE_MS, () => socket.destroy());
    socket.once("end", () => socket.destroy());
    socket.resume();
    socket.end();
  }

  /** Nobody connected within the data timeout: a waiting transfer gets 425, the port goes back. */
  private expire(): void {
    if (this.accepted || this.closed) return;
    const w = this.waiter;
    this.waiter = null;
    w?.reject(new FtpError(425, "Can't open data connection: timed out waiting for the client"));
    this.close();
  }

  private handOut(s: Socket): Socket {
    this.handedOut = true;
    // One connection per PASV: no more listening; the port stays held until close().
    this.stopListening();
    return s;
  }

  private stopListening(): void {
    if (this.server.listening) this.server.close();
  }

  private onConnection(socket: Socket): void {
    const remote = socket.remoteAddress ?? "";
    if (this.accepted || this.closed || !sameHost(remote, this.opts.allowedRemote)) {
      if (!this.accepted && !this.closed) this.opts.onForeign?.(remote);
      socket.destroy();
      return;
    }
    socket.setNoDelay(true);
    socket.on("error", () => undefined);
    this.accepted = socket;
    clearTimeout(this.deadline);
    if (this.retired) {
      this.endGently(socket);
      return;
    }
    const w = this.waiter;
    this.waiter = null;
    w?.resolve(socket);
  }
}

function listenOnce(server: Server, port: number, host: string): Promise<boolean> {
  return new Promise((resolve) => {
    const onError = (): void => {
      server.removeListener("listening", onListening);
      resolve(false);
    };
    const onListening = (): void => {
      server.removeListener("error", onError);
      resolve(true);
    };
    server.once("error", onError);
    server.once("listening", onListening);
    server.listen({ port, host, exclusive: true, backlog: 8 });
  });
}
