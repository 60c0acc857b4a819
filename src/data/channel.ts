import type { Socket } from "node:net";

/** A data connection in the making, passive or active (DESIGN: one small interface for both). */
export interface DataChannel {
  /** "passive" for PASV/EPSV, "active" for PORT/EPRT. */
  readonly kind: "passive" | "active";
  /** Resolves with the connected TCP socket: accepted from the client (passive) or dialled to it
   * (active). Rejects with FtpError 425 on timeout, refusal or close(). Called at most once. */
  connect(): Promise<Socket>;
  /** Releases everything: listener, port, a socket not yet handed out. Idempotent. */
  close(): void;
}
