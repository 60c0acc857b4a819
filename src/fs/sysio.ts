/**
 * open, read, write and close of a descriptor on the calling thread, through the addon
 * (native/io.c) where it is built and through Node's fs.*Sync where it is not. Node's calls cost
 * about 2,500 instructions each on top of the system call (a tracing category looked up by name
 * twice, a request set up, the arguments validated in JavaScript), and a small upload makes eight
 * of them. The throwing forms throw what Node's call would (same code, errno, syscall, path and
 * message); tryRead and tryWrite return a failure's -errno instead, since EAGAIN on a socket is
 * no error.
 */
import * as fs from "node:fs";
import { constants } from "node:os";
import { getSystemErrorMap } from "node:util";
import { ioBinding } from "../native.ts";

/** -EAGAIN, as tryRead and tryWrite return it when a non-blocking socket has nothing to read. */
export const NEG_EAGAIN = -constants.errno.EAGAIN;
const NEG_EINVAL = -constants.errno.EINVAL;

const io = ioBinding();

let errorMap: Map<number, [string, string]> | null = null;

/** The error Node's own call would throw for result `rc` (-errno) of `syscall` on `path`. */
export function sysError(rc: number, syscall: string, path?: string): NodeJS.ErrnoException {
  errorMap ??= getSystemErrorMap();
  const [code, text] = errorMap.get(rc) ?? [`Unknown system error ${rc}`, `unknown error ${rc}`];
  const err: NodeJS.ErrnoException = new Error(`${code}: ${text}, ${syscall}${path === undefined ? "" : ` '${path}'`}`);
  err.errno = rc;
  err.code = code;
  err.syscall = syscall;
  if (path !== undefined) err.path = path;
  return err;
}

/** open(2) of `path` (close-on-exec): the descriptor; throws as fs.openSync does. */
export function openNow(path: string, flags: number, mode = 0o666): number {
  if (io === null) return fs.openSync(path, flags, mode);
  const fd = io.ioOpen(path, flags, mode);
  if (fd >= 0) return fd;
  // A NUL in the path (-EINVAL from the addon): Node refuses such a path with an error of its own.
  if (fd === NEG_EINVAL && path.includes("\0")) return fs.openSync(path, flags, mode);
  throw sysError(fd, "open", path);
}

/** close(2); throws as fs.closeSync does. */
export function closeNow(fd: number): void {
  if (io === null) return fs.closeSync(fd);
  const rc = io.ioClose(fd);
  if (rc < 0) throw sysError(rc, "close");
}

/** write(2) of `buf[offset, offset + length)`, at `position` (pwrite) unless it is null: bytes
 * written; throws as fs.writeSync does. */
export function writeNowAt(fd: number, buf: Uint8Array, offset: number, length: number, position: number | null): number {
  if (io === null) return fs.writeSync(fd, buf, offset, length, position);
  const n = io.ioWrite(fd, buf, offset, length, position ?? -1);
  if (n < 0) throw sysError(n, "write");
  return n;
}

/** read(2) into `buf[offset, offset + length)`: bytes read (0 at the end), or -errno. */
export function tryRead(fd: number, buf: Uint8Array, offset: number, length: number): number {
  if (io !== null) return io.ioRead(fd, buf, offset, length);
  try {
    return fs.readSync(fd, buf, offset, length, null);
  } catch (err) {
    return negErrno(err);
  }
}

/** write(2) of `buf[offset, offset + length)`: bytes written, or -errno. */
export function tryWrite(fd: number, buf: Uint8Array, offset: number, length: number): number {
  if (io !== null) return io.ioWrite(fd, buf, offset, length, -1);
  try {
    return fs.writeSync(fd, buf, offset, length, null);
  } catch (err) {
    return negErrno(err);
  }
}

const statOut = new Float64Array(2);
const { S_IFMT, S_IFREG } = fs.constants;

/** fstat(2) of `fd`: its size when it is a regular file, else -1 (a directory, a FIFO, a device);
 * throws as fs.fstatSync does. */
export function regularFileSize(fd: number): number {
  if (io === null) {
    const st = fs.fstatSync(fd);
    return st.isFile() ? st.size : -1;
  }
  const rc = io.ioFstat(fd, statOut);
  if (rc < 0) throw sysError(rc, "fstat");
  return ((statOut[0] as number) & S_IFMT) === S_IFREG ? (statOut[1] as number) : -1;
}

/** The longest text writeText takes, in UTF-16 code units (native/io.c TEXT_UNITS). */
export const WRITE_TEXT_UNITS = 1365;

/**
 * send(2) of the UTF-8 form of `text` (at most WRITE_TEXT_UNITS code units) to socket `fd`, on
 * the calling thread: the bytes left unwritten (0 when all went; the caller queues the rest), or
 * -errno when none went (EAGAIN included). -ENOSYS without the addon: the caller writes it its
 * own way.
 */
export function writeText(fd: number, text: string): number {
  return io === null ? NEG_ENOSYS : io.ioWriteText(fd, text);
}

/** Whether writeText can write at all (the addon is there): where it cannot, callers need not
 * try it for each reply. */
export const WRITES_TEXT = io !== null;

const NEG_ENOSYS = -constants.errno.ENOSYS;

/** A system call's error from Node as -errno (Node's errno is negative); anything else thrown on. */
function negErrno(err: unknown): number {
  const errno = (err as NodeJS.ErrnoException).errno;
  if (typeof errno === "number" && errno < 0) return errno;
  throw err;
}
