/**
 * sendfile(2) for plain downloads (native/sendfile.c, built at install by native/build.mjs): the
 * file's bytes go from the page cache to the socket inside the kernel, as in vsftpd, ProFTPD and
 * pyftpdlib, instead of being read into a buffer and written out again. Optional: where the addon
 * was not built (no C compiler, not Linux) or does not load, `sendfileBinding()` is null and
 * downloads take the user-space loop (data/transfer.ts).
 */
import { createRequire } from "node:module";

/** What native/sendfile.c exports. */
export interface SendfileBinding {
  /** One non-blocking sendfile on this thread: bytes sent, or -errno (-EAGAIN: socket buffer full). */
  sendNow(socketFd: number, fileFd: number, position: number, count: number): number;
  /** Sends from `position` to the end of the file on a thread of its own (descriptors duplicated
   * first); `done(errno, sent)` once, on the main thread. */
  start(
    socketFd: number,
    fileFd: number,
    position: number,
    stallMs: number,
    progress: BigInt64Array,
    done: (errno: number, sent: number) => void,
  ): SendfileJob;
  /** Ends a job soon (its socket copy is shut down); harmless once it has ended. */
  cancel(job: SendfileJob): void;
}

/** An opaque running job. */
export type SendfileJob = { readonly __brand: "SendfileJob" };

let binding: SendfileBinding | null | undefined;

/** The addon, or null where it is not built or does not load (looked for once). */
export function sendfileBinding(): SendfileBinding | null {
  if (binding !== undefined) return binding;
  binding = null;
  if (process.platform !== "linux") return binding;
  try {
    const require = createRequire(import.meta.url);
    binding = require("../../native/build/berth_native.node") as SendfileBinding;
  } catch {
    binding = null;
  }
  return binding;
}
