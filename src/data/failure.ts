/**
 * The errors a data transfer ends with when its socket goes away or a transfer thread of the addon
 * (native/sendfile.c, native/receive.c) reports an errno: shared by downloads (data/transfer.ts)
 * and uploads (data/receive.ts), so that abortError maps them the same way.
 */
import { constants as osConstants } from "node:os";
import { getSystemErrorName } from "node:util";

const { ECANCELED } = osConstants.errno;

/** The socket closed before the transfer was done (reset, or destroyed by an abort). */
export function prematureClose(): Error {
  return Object.assign(new Error("Premature close"), { code: "ERR_STREAM_PREMATURE_CLOSE" });
}

/** The error for `errno` from a transfer thread's `syscall`: a cancel (the socket destroyed by an
 * abort) is a premature close; anything else keeps its code (ETIMEDOUT for a stall, ENOSPC, …). */
export function jobError(errno: number, syscall: string): Error {
  if (errno === ECANCELED) return prematureClose();
  const code = getSystemErrorName(-errno);
  return Object.assign(new Error(`${syscall}: ${code}`), { code, errno: -errno, syscall });
}
