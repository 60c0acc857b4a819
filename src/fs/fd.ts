/** Descriptor helpers shared by the parts that hold bare descriptors (the transfer log, raw data
 * connections, the addon's listeners). */
import { closeNow } from "./sysio.ts";

/** Closes a descriptor that is ours alone, where a failure (none is expected: EBADF would be a
 * bug, EIO on close of a socket or a file only written to changes nothing) has no one to tell. */
export function closeQuietly(fd: number): void {
  try {
    closeNow(fd);
  } catch {
    // nothing to do
  }
}
