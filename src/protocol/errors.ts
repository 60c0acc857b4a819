/**
 * Typed errors that carry their FTP reply code (RFC 959 §4.2). A handler throws one; the dispatcher
 * turns it into exactly one reply. The message is what the client sees: short, and never a real
 * server path or a secret. `detail` is for the log only.
 */
export class FtpError extends Error {
  /** The three-digit reply code sent to the client. */
  readonly code: number;
  /** Extra context for the log line (errno, real path); never sent to the client. */
  readonly detail: string | undefined;
  /** The server's own trouble, which the operator must see (logged as a warning): every 451 and
   * 452, and a refusal whose cause is the server's set-up (a read-only file system). */
  readonly serverSide: boolean;

  /** Builds an error that the dispatcher answers with `code message`. */
  constructor(code: number, message: string, detail?: string, serverSide = isServerTrouble(code)) {
    super(message);
    this.name = "FtpError";
    this.code = code;
    this.detail = detail;
    this.serverSide = serverSide;
  }
}

/** True for a reply that reports the server's own trouble (RFC 959: 451 local error, 452 storage:
 * an I/O error, a full disk, no descriptors left), which the operator must see: logged as a
 * warning by the dispatcher and the transfers alike. */
function isServerTrouble(code: number): boolean {
  return code === 451 || code === 452;
}

/** True when `err` is an FtpError (also across module copies). */
export function isFtpError(err: unknown): err is FtpError {
  return err instanceof FtpError;
}

/**
 * A name no entry can have that a client may address: RFC 959 lists 553 "File name not allowed"
 * only for the commands that create a name (STOR, STOU, APPE, MKD, RNTO); for any other such a
 * name is one that does not exist, and the dispatcher answers it 550.
 */
export class NameNotAllowed extends FtpError {
  constructor(detail: string) {
    super(553, "File name not allowed", detail);
  }
}

/**
 * A path or name too long to be one: a name over NAME_MAX, a path over PATH_MAX, or the disk's
 * ENAMETOOLONG (vsftpd and ProFTPD answer 550 for it from the system call's ENAMETOOLONG where
 * nothing is created; see NameNotAllowed).
 */
export class NameTooLong extends NameNotAllowed {}
