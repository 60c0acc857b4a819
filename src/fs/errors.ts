/**
 * The one place where Node's errno values become FTP replies. The client sees a short, fixed
 * message; the errno, syscall and real path go to `detail`, which only the log sees.
 */
import { FtpError, isFtpError, NameTooLong } from "../protocol/errors.ts";

/** `serverSide`: the cause is the server's set-up, not the client's request (FtpError.serverSide). */
type Reply = readonly [code: number, message: string, serverSide?: boolean];

/** errno → reply. 550 = "file unavailable" and 553 = "file name not allowed" (RFC 959 §4.2.2);
 * 452/552 = storage problems and 451 = "local error" (RFC 959 §4.2.2). */
const BY_ERRNO: Readonly<Record<string, Reply>> = {
  ENOENT: [550, "No such file or directory"],
  EACCES: [550, "Permission denied"],
  EPERM: [550, "Permission denied"],
  EROFS: [550, "Read-only file system", true],
  EEXIST: [550, "File exists"],
  ENOTDIR: [550, "Not a directory"],
  EISDIR: [550, "Is a directory"],
  ENOTEMPTY: [550, "Directory not empty"],
  EBUSY: [550, "Resource busy"],
  EINVAL: [550, "Invalid argument"],
  EXDEV: [550, "Cannot move across file systems"],
  ENOSPC: [452, "Insufficient storage space"],
  EDQUOT: [552, "Storage quota exceeded"],
  EFBIG: [552, "File too large"],
  ELOOP: [550, "Too many levels of symbolic links"],
  EMFILE: [451, "Local error: too many open files"],
  ENFILE: [451, "Local error: too many open files"],
};

const DEFAULT_REPLY: Reply = [451, "Local error in processing"];

/** Maps any error from a filesystem call to an FtpError; an FtpError passes through unchanged. */
export function mapFsError(err: unknown): FtpError {
  if (isFtpError(err)) return err;
  const code = errnoOf(err);
  // A real path too long for the kernel is a name too long, as a virtual one is: 553 only for a
  // command that would create it (see NameTooLong).
  if (code === "ENAMETOOLONG") return new NameTooLong(describe(err));
  const [reply, message, serverSide] = (code !== undefined ? BY_ERRNO[code] : undefined) ?? DEFAULT_REPLY;
  return new FtpError(reply, message, describe(err), serverSide);
}

/** The errno name of a Node system error (`"ENOENT"`, …), or undefined for anything else. */
export function errnoOf(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const code = (err as { code?: unknown }).code;
  return typeof code === "string" ? code : undefined;
}

/** Log-only text: errno, syscall and the real paths involved. */
function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const e = err as NodeJS.ErrnoException & { dest?: string };
  const parts = [e.code ?? e.name, e.syscall, e.path, e.dest].filter((p) => p !== undefined);
  return parts.length > 1 ? parts.join(" ") : e.message;
}
