/**
 * Active data connections (PORT, EPRT): berth dials the client. The target was checked when the
 * command arrived (the client's own IP, port ≥ 1024: SPEC, no bounce); here we only connect, from
 * the control connection's local address, with a timeout.
 */
import { connect, type Socket } from "node:net";
import { FtpError } from "../protocol/errors.ts";
import { SOCKET_DEFAULTS } from "./accept.ts";
import { unmapIPv4, type HostPort } from "./address.ts";
import type { DataChannel } from "./channel.ts";

/** A PORT/EPRT target to be dialled when the transfer command comes. */
export class ActiveChannel implements DataChannel {
  readonly kind = "active" as const;
  private socket: Socket | null = null;
  /** Rejects the connect() still dialling: close() settles it (a destroyed socket emits no error). */
  private failDial: ((err: Error) => void) | null = null;
  private closed = false;

  /** @param localHost the control connection's local address, used as the source address. */
  constructor(
    readonly target: HostPort,
    private readonly localHost: string,
    private readonly timeoutMs: number,
  ) {}

  /** Not closed yet (see DataChannel.open). */
  get open(): boolean {
    return !this.closed;
  }

  /** Dials the client; FtpError 425 on refusal or timeout. */
  connect(): Promise<Socket> {
    if (this.closed || this.socket) return Promise.reject(new FtpError(425, "Data connection already used"));
    return new Promise<Socket>((resolve, reject) => {
      const socket = connect({
        host: unmapIPv4(this.target.host),
        port: this.target.port,
        localAddress: unmapIPv4(this.localHost),
        noDelay: true,
        ...SOCKET_DEFAULTS,
      });
      // Paused before it connects, so nothing is read until a transfer asks, as a passive
      // connection is accepted (pauseOnConnect): a download's client that half-closes its side
      // at once would otherwise have its FIN read, and Node would end our side mid-file.
      socket.pause();
      this.socket = socket;
      this.failDial = reject;
      socket.setTimeout(this.timeoutMs, () => failConnect(socket, reject, "timed out"));
      socket.once("error", (err: NodeJS.ErrnoException) => failConnect(socket, reject, err.code === "ECONNREFUSED" ? "refused" : "failed"));
      socket.once("connect", () => {
        this.failDial = null;
        socket.setTimeout(0);
        socket.removeAllListeners("error");
        socket.on("error", () => undefined);
        resolve(socket);
      });
    });
  }

  /** Nothing to do: nothing is dialled before connect(). */
  taken(): void {}

  /** Nothing was dialled yet: the same as close(). */
  retire(): void {
    this.close();
  }

  /** The same as close(). */
  finish(): void {
    this.close();
  }

  /** Forgets the target; a socket still connecting is destroyed, and the connect() waiting on it
   * rejected (an ABOR, or the session's end, while the client's side does not answer). */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const fail = this.failDial;
    this.failDial = null;
    if (this.socket && this.socket.connecting && fail !== null) failConnect(this.socket, fail, "closed");
  }
}

/** An active connection that did not come up: 425, and the socket goes. A function of its own, not
 * a closure per connect (test/hotpath.test.ts). */
function failConnect(socket: Socket, reject: (err: Error) => void, why: string): void {
  socket.destroy();
  reject(new FtpError(425, `Can't open data connection: ${why}`));
}
