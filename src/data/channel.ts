import type { Socket } from "node:net";
import type { DataConnection } from "./raw.ts";

/** A data connection in the making, passive or active (DESIGN: one small interface for both). */
export interface DataChannel {
  /** "passive" for PASV/EPSV, "active" for PORT/EPRT. */
  readonly kind: "passive" | "active";
  /** Not closed yet: a passive channel closes by itself when no transfer command takes it within
   * the data timeout, and the session then has no data connection to speak of (STAT). */
  readonly open: boolean;
  /** Resolves with the connected TCP socket: accepted from the client (passive) or dialled to it
   * (active). Rejects with FtpError 425 on timeout, refusal or close(). Called at most once. */
  connect(): Promise<Socket>;
  /** The same, but a passive connection may come as accepted, not yet a `Socket` (data/raw.ts),
   * for a transfer that can use it so. */
  connect(raw: true): Promise<DataConnection>;
  /** A transfer command took the channel: from now on only connect()'s own wait limits it. */
  taken(): void;
  /** Releases everything: listener, port, a socket not yet handed out. Idempotent. */
  close(): void;
  /** Like close(), after a transfer that succeeded: a passive listener may then be kept for the
   * session's next PASV/EPSV (data/passive.ts). */
  finish(): void;
  /** Like close(), for a channel whose command was refused before 150: a client that is connecting
   * at that moment gets a connection that ends cleanly rather than a refused or reset one, which
   * some clients (FileZilla) would take for a network error and retry. With `tls` (PROT P), a
   * passive connection is kept open instead, until its client closes it: ended, it would fail the
   * client's TLS handshake before the client reads the refusal. */
  retire(tls?: boolean): void;
}
