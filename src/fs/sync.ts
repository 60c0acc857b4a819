/**
 * Flushing to the disk (fsync), on the thread pool: an upload's file and directory before its 226
 * (transfer.fsync, fs/upload.ts), and the users file's directory after its atomic replacement
 * (auth/atomic.ts).
 */
import { close, constants, fsync, open } from "node:fs";
import { errnoOf } from "./errors.ts";

/** fsync(2) of `fd` on the thread pool (it waits for the disk); nothing where there is no fd. */
export function fsyncFd(fd: number | null): Promise<void> {
  if (fd === null) return Promise.resolve();
  return new Promise((resolve, reject) => fsync(fd, (err) => (err ? reject(err) : resolve())));
}

/** What a directory's fsync answers on a filesystem that cannot flush one (some FUSE and network
 * filesystems): its files' own fsync is all there is. */
const NO_DIRECTORY_SYNC = new Set(["EINVAL", "ENOTSUP", "EOPNOTSUPP", "EBADF"]);

/** Flushes directory `dir` (the names in it) to the disk, on the thread pool. A filesystem that
 * cannot flush a directory is no error; anything else (EIO) is. */
export async function fsyncDirectory(dir: string): Promise<void> {
  const fd = await new Promise<number>((resolve, reject) => open(dir, constants.O_RDONLY | constants.O_DIRECTORY, (err, d) => (err ? reject(err) : resolve(d))));
  try {
    await fsyncFd(fd);
  } catch (err) {
    if (!NO_DIRECTORY_SYNC.has(errnoOf(err) ?? "")) throw err;
  } finally {
    close(fd, () => undefined);
  }
}
