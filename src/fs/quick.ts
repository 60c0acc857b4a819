/**
 * Small file-system calls made synchronously while the disk answers fast.
 *
 * A promise call goes through libuv's thread pool: on a virtual machine each one costs 30–50 µs
 * of hand-over between threads, where the system call itself takes 3–5 µs. A transfer of a small
 * file makes several (realpath, stat, rename, a read or a write), and they add up to most of its
 * latency. So these calls run on the main thread, timed; calls that take longer than SLOW_MS (a
 * network file system, a failing or busy disk: two within a second, or one far slower) send every
 * later call to the thread pool for a while (lateCall, slowCall), so one slow disk never stalls the
 * other sessions for long. A call that was late because the machine's CPUs were busy, not the
 * disk, is told apart by how long the main thread has been waiting for a CPU (CPU_WAIT_SHARE), and
 * a large read or write that took long because the kernel was busy with it (copying into memory
 * the host had taken back, say) by the CPU time it used (RAN_SHARE).
 * Errors are the same errno errors either way. A file opened while calls are synchronous is a
 * QuickFile (a descriptor with the few FileHandle methods the data path uses, `FileLike`);
 * otherwise a FileHandle.
 */
import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import { constants } from "node:os";
import { renameBinding, threadCpuBinding } from "../native.ts";
import { closeNow, openNow, regularFileSize, sysError, writeNowAt } from "./sysio.ts";

/** A synchronous call slower than this (ms) is late: the disk may be slow, or the thread only
 * waited for a CPU (on a busy machine a thread is preempted for a few ms now and then). */
export const SLOW_MS = 4;
/** A late call this slow (ms) turns synchronous calls off at once; a less late one only when
 * another call was late within LATE_WINDOW_MS. A slow disk is slow call after call, while a
 * preemption is a lone accident: under 500 clients on two cores it happened a few times a minute,
 * and each back-off that followed sent the server's file calls through the pool for seconds. */
export const VERY_SLOW_MS = 50;
/** See VERY_SLOW_MS (ms). */
export const LATE_WINDOW_MS = 1000;
/** The first back-off after a quiet spell (ms). A lone slow call is often not the disk: the process
 * was preempted on a busy machine, or a cache was cold; it costs a second of pooled calls. */
export const BACKOFF_MIN_MS = 1000;
/** Each slow call within BACKOFF_MAX_MS of the last back-off doubles the next one, up to this (ms):
 * a disk that stays slow is left to the pool, with one timed call every 30 s to notice it recover. */
export const BACKOFF_MAX_MS = 30_000;
/** Reads and writes up to this size are made synchronously; larger ones overlap with the network.
 * A transfer reads and writes its data in pieces of up to this size: on this kind of machine a
 * read from the page cache or a write into it costs less than its hand-over to the thread pool. */
export const QUICK_IO_MAX = 512 << 10;

let asyncUntil = 0;
/** When the last late call that did not back off was made. */
let lastLate = -Infinity;
/** Back-offs in a row (each within BACKOFF_MAX_MS of the one before), and when the last one ends. */
let strikes = 0;
let lastUntil = -Infinity;

/** Whether synchronous calls are on (no back-off in effect). */
export function quickEnabled(): boolean {
  if (asyncUntil === 0) return true;
  if (performance.now() < asyncUntil) return false;
  asyncUntil = 0;
  return true;
}

/** A synchronous call (or a listing batch) was slow: synchronous calls go off, for BACKOFF_MIN_MS
 * after a quiet spell and twice as long as the last time when it comes soon after one. */
export function slowCall(): void {
  const now = performance.now();
  strikes = now - lastUntil < BACKOFF_MAX_MS ? strikes + 1 : 0;
  const ms = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** Math.min(strikes, 8));
  asyncUntil = lastUntil = now + ms;
}

/** The main thread's share of time spent waiting for a CPU (runnable, not running) above which a
 * late call under VERY_SLOW_MS is taken for a preemption, not a slow disk. Idle, a thread that
 * wakes runs at once (under 1 %); with 500 clients and the load generator on two cores the main
 * thread waited 9–35 % of the time, and late calls came a few times a second. Counted as a slow
 * disk, they kept synchronous calls off most of the time, and the pooled calls cost so much more
 * CPU that sessions/s fell by a quarter to two fifths. */
export const CPU_WAIT_SHARE = 0.05;
/** Two samples of the wait further apart than this (ms) say nothing about the moment. */
const WAIT_SAMPLE_SPAN_MS = 2000;

/** How the waiting for a CPU is measured: the share of the time since the last sample (when it
 * was recent) that the main thread spent waiting, 0–1, or -1 when unknown. Tests replace `share`. */
export const cpuWait = { share: cpuWaitShare };

/** Where the calling thread's scheduler statistics are (Linux): the second field is the nanoseconds
 * it has spent runnable but waiting for a CPU. Read only when a call was late, so it costs nothing
 * while the disk is fast; opened and closed each time (no descriptor held for the process's life). */
const SCHEDSTAT = "/proc/thread-self/schedstat";
/** False once the file turned out missing or unreadable (not Linux, no schedstats). */
let schedstatHere = process.platform === "linux";
let lastWaitNs = 0;
let lastWaitAt = -Infinity;

/** See `cpuWait`. */
function cpuWaitShare(now: number): number {
  if (!schedstatHere) return -1;
  let waitNs: number;
  try {
    const text = fs.readFileSync(SCHEDSTAT, "latin1");
    const sp = text.indexOf(" ");
    waitNs = Number(text.slice(sp + 1, text.indexOf(" ", sp + 1)));
  } catch (err) {
    // Out of descriptors is a moment; anything else will stay so.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "EMFILE" && code !== "ENFILE") schedstatHere = false;
    return -1;
  }
  if (!Number.isFinite(waitNs)) return -1;
  const span = now - lastWaitAt;
  const waited = (waitNs - lastWaitNs) / 1e6;
  lastWaitNs = waitNs;
  lastWaitAt = now;
  return span > 0 && span <= WAIT_SAMPLE_SPAN_MS ? waited / span : -1;
}

/** A late read or write of at least RAN_CHECK_MIN bytes that ran on a CPU for this share of its
 * time or more was not waiting for the disk: the kernel was busy with the call itself. On this kind
 * of virtual machine a 256 KiB write into the page cache took 20 ms at times, 19.9 of them running
 * (memory the host had taken back being touched again); two such in a second sent uploads through
 * the pool for seconds, with 1 MiB staged writes that touch fresh memory more slowly still. Such a
 * call is not counted, unless it took VERY_SLOW_MS. A slow disk puts the thread to sleep instead. */
export const RAN_SHARE = 0.8;
/** Reads and writes from this size up are checked for RAN_SHARE (smaller calls are
 * metadata-sized, and late ones among them are rare). */
export const RAN_CHECK_MIN = 64 << 10;

const threadCpu = threadCpuBinding();

/** The calling thread's CPU time in ns, or -1 where it cannot be read (no addon). Tests replace
 * `now`. */
export const threadClock = { now: (): number => (threadCpu === null ? -1 : threadCpu()) };

/** Until when data calls read the thread clock before they run: for LATE_WINDOW_MS after a late
 * one, the window in which a second late call would back off. Only then does the reading pay (a
 * system call of about 1.7 µs here, against 10–12 µs for a 256 KiB write into warm page cache). */
let clockUntil = -Infinity;

/** A read or write of RAN_CHECK_MIN bytes or more took `ms`; `cpu0` is the thread clock read
 * before it, or -1 (outside the window after a late one, or no clock). Late unless it ran on a CPU for RAN_SHARE of that time
 * (and was under VERY_SLOW_MS). Exported for tests. */
export function dataCallTook(ms: number, cpu0: number): void {
  if (ms <= SLOW_MS) return;
  if (cpu0 >= 0 && ms < VERY_SLOW_MS) {
    const cpu1 = threadClock.now();
    if (cpu1 >= 0 && (cpu1 - cpu0) / 1e6 >= ms * RAN_SHARE) return;
  }
  clockUntil = performance.now() + LATE_WINDOW_MS;
  lateCall(ms);
}

/** A synchronous call (or a listing batch) took `ms`, more than it should have: a back-off
 * (slowCall) if it took VERY_SLOW_MS or more, or if another call was late within LATE_WINDOW_MS.
 * A late call made while the main thread was waiting for a CPU much of the time (the machine is
 * busy, not the disk) is not counted unless it took VERY_SLOW_MS. */
export function lateCall(ms: number): void {
  const now = performance.now();
  if (ms < VERY_SLOW_MS && cpuWait.share(now) >= CPU_WAIT_SHARE) return;
  if (ms >= VERY_SLOW_MS || now - lastLate < LATE_WINDOW_MS) {
    lastLate = -Infinity;
    slowCall();
  } else {
    lastLate = now;
  }
}

/** How long (ms) the back-off in effect still lasts; 0 when synchronous calls are on. */
export function backOffLeft(): number {
  return quickEnabled() ? 0 : asyncUntil - performance.now();
}

/** Tests: turns synchronous calls off for `ms`, or back on with 0 (which also forgets past
 * back-offs). */
export function backOff(ms: number): void {
  asyncUntil = ms > 0 ? performance.now() + ms : 0;
  if (ms <= 0) {
    strikes = 0;
    lastUntil = -Infinity;
    lastLate = -Infinity;
    clockUntil = -Infinity;
  }
}

/** Runs a synchronous call, timed; `length` is the byte count of a read or write (dataCallTook),
 * 0 for any other call. */
function timed<T>(fn: () => T, length = 0): T {
  const t0 = performance.now();
  const data = length >= RAN_CHECK_MIN;
  const cpu0 = data && t0 < clockUntil ? threadClock.now() : -1;
  try {
    return fn();
  } finally {
    const ms = performance.now() - t0;
    if (ms > SLOW_MS) {
      if (data) dataCallTook(ms, cpu0);
      else lateCall(ms);
    }
  }
}

/** The entries of a directory. A large one may take longer than SLOW_MS without meaning a slow
 * disk: the allowance grows by 2 µs per entry. */
export async function readdirNames(p: string): Promise<string[]> {
  if (!quickEnabled()) return fsp.readdir(p);
  const t0 = performance.now();
  const out = fs.readdirSync(p);
  readdirTook(performance.now() - t0, out.length);
  return out;
}

/** A directory of `count` entries was read in `ms` (here or in the stat worker): late when slower
 * than SLOW_MS beyond an allowance for its size. */
export function readdirTook(ms: number, count: number): void {
  const late = ms - count * 0.002;
  if (late > SLOW_MS) lateCall(late);
}

/** Linux's O_PATH (Node does not export it; the same value on every architecture Node runs on). */
export const O_PATH = 0o10000000;

let procFd: boolean | undefined;

/** Whether an open descriptor's path can be read from /proc/self/fd (found out once). */
export function procFdPaths(): boolean {
  if (procFd === undefined) {
    procFd = false;
    if (process.platform === "linux") {
      let fd = -1;
      try {
        fd = fs.openSync("/", O_PATH | fs.constants.O_DIRECTORY);
        procFd = fs.readlinkSync(`/proc/self/fd/${fd}`) === "/";
      } catch {
        procFd = false;
      } finally {
        if (fd >= 0) fs.closeSync(fd);
      }
    }
  }
  return procFd;
}

/** For tests: pretend /proc/self/fd is (not) there; undefined finds out again. */
export function setProcFdPathsForTest(on: boolean | undefined): void {
  procFd = on;
}

/** realpath in three system calls whatever the depth: the kernel resolves `p` once in an O_PATH
 * open and says where it landed (libc's realpath makes a readlink per component). */
function realpathByFd(p: string): string {
  const fd = fs.openSync(p, O_PATH);
  try {
    return fs.readlinkSync(`/proc/self/fd/${fd}`);
  } finally {
    fs.closeSync(fd);
  }
}

export async function realpath(p: string): Promise<string> {
  if (!quickEnabled()) return fsp.realpath(p);
  return timed(() => (procFdPaths() ? realpathByFd(p) : fs.realpathSync.native(p)));
}

export async function lstat(p: string): Promise<fs.Stats> {
  return quickEnabled() ? timed(() => fs.lstatSync(p)) : fsp.lstat(p);
}

/** lstat, with null for a missing entry (ENOENT) instead of an error: a missing name is the usual
 * case for an upload, and an error object costs more than the call. */
export async function lstatOrNull(p: string): Promise<fs.Stats | null> {
  if (quickEnabled()) return timed(() => fs.lstatSync(p, { throwIfNoEntry: false }) ?? null);
  try {
    return await fsp.lstat(p);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw err;
  }
}

export async function stat(p: string): Promise<fs.Stats> {
  return quickEnabled() ? timed(() => fs.statSync(p)) : fsp.stat(p);
}

/** Renames and removals made through this file so far (every one berth makes of a name in a home
 * goes through rename, renameNoReplace and unlink here). An upload writing in place notes the count
 * when it begins: while it is unchanged at its end, no session can have replaced, removed or moved
 * the upload's file, and the upload need not look (fs/upload.ts stillNamed). */
let nameChanges = 0;

/** How many renames and removals of names were made through this file so far. */
export function nameChangesSoFar(): number {
  return nameChanges;
}

export async function rename(from: string, to: string): Promise<void> {
  nameChanges++;
  if (quickEnabled()) timed(() => fs.renameSync(from, to));
  else await fsp.rename(from, to);
}

/** What renameNoReplace hears where the kernel or the filesystem lacks RENAME_NOREPLACE, or a
 * seccomp filter refuses renameat2 (ENOSYS, or EPERM as the older container profiles answer calls
 * they do not list). */
const NO_FLAG = new Set([-constants.errno.ENOSYS, -constants.errno.EINVAL, -constants.errno.EPERM]);

/**
 * Renames `from` to `to` unless something is at `to`, the kernel checking and renaming in one step
 * (renameat2 with RENAME_NOREPLACE, native/rename.c): true when renamed; throws EEXIST when `to`
 * is taken, other errors as rename would. False, with nothing done, where that step is not to be
 * had (no addon, or a kernel, filesystem or seccomp filter that refuses the flag): the caller
 * checks and renames itself.
 * Synchronous and timed like the others while the disk is fast; on the thread pool (the addon's
 * own asynchronous form, Node having none) while calls go there.
 */
export async function renameNoReplace(from: string, to: string): Promise<boolean> {
  const b = renameBinding();
  if (b === null) return false;
  nameChanges++;
  const rc = quickEnabled() ? timed(() => b.renameNoReplace(from, to)) : await b.renameNoReplaceAsync(from, to);
  if (rc === 0) return true;
  // EINVAL is also a directory moved below itself, and EPERM a rename the kernel refuses (a
  // sticky directory, an immutable file): the plain rename then says so itself.
  if (NO_FLAG.has(rc)) return false;
  throw sysError(rc, "rename", from);
}

export async function unlink(p: string): Promise<void> {
  nameChanges++;
  if (quickEnabled()) timed(() => fs.unlinkSync(p));
  else await fsp.unlink(p);
}

/** What the data path uses of an open file: a FileHandle, or a QuickFile. */
export interface FileLike {
  readonly fd: number;
  read(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  write(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }>;
  stat(): Promise<fs.Stats>;
  chmod(mode: number): Promise<void>;
  truncate(len: number): Promise<void>;
  close(): Promise<void>;
  createWriteStream(opts: { start: number; highWaterMark: number; autoClose: false; emitClose: true }): fs.WriteStream;
}

/** Opens `p`: synchronously into a QuickFile while the disk is fast, else a FileHandle. */
export async function open(p: string, flags: number, mode?: number): Promise<FileLike> {
  if (!quickEnabled()) return fsp.open(p, flags, mode);
  return new QuickFile(timed(() => openNow(p, flags, mode)));
}

/** A descriptor opened synchronously elsewhere (fs/beneath.ts) as a FileLike. */
export function quickFile(fd: number): FileLike {
  return new QuickFile(fd);
}

/** Opens `p` as a bare descriptor (fs/pin.ts: O_PATH directories and entries). */
export async function openFd(p: string, flags: number): Promise<number> {
  if (quickEnabled()) return timed(() => openNow(p, flags));
  return new Promise((resolve, reject) => fs.open(p, flags, (err, fd) => (err ? reject(err) : resolve(fd))));
}

/** Closes a bare descriptor from openFd. Closing an O_PATH descriptor touches no disk. */
export function closeFd(fd: number): void {
  closeNow(fd);
}

/** File calls of a QuickFile's write stream: its own writes, and no close. */
const STREAM_FS = {
  write: fs.write,
  writev: fs.writev,
  close: (_fd: number, cb: (err: NodeJS.ErrnoException | null) => void): void => cb(null),
};

/** A descriptor opened synchronously. fstat, fchmod, ftruncate and close are synchronous while the
 * disk is fast (small reads and writes too, through read() and write() below); the rest goes
 * through the thread pool by callback. Closing twice is harmless: the descriptor is forgotten at
 * the first close. */
class QuickFile implements FileLike {
  #fd: number;

  constructor(fd: number) {
    this.#fd = fd;
  }

  get fd(): number {
    return this.#fd;
  }

  /** Through the pool; read() below makes small reads synchronously before it gets here. */
  async read(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
    const fd = this.#open();
    return new Promise((resolve, reject) => {
      fs.read(fd, buf, offset, length, position, (err, bytesRead) => (err ? reject(err) : resolve({ bytesRead })));
    });
  }

  /** Through the pool; write() below makes small writes synchronously before it gets here. */
  async write(buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> {
    const fd = this.#open();
    return new Promise((resolve, reject) => {
      fs.write(fd, buf, offset, length, position, (err, bytesWritten) => (err ? reject(err) : resolve({ bytesWritten })));
    });
  }

  async stat(): Promise<fs.Stats> {
    const fd = this.#open();
    if (quickEnabled()) return timed(() => fs.fstatSync(fd));
    return new Promise((resolve, reject) => fs.fstat(fd, (err, st) => (err ? reject(err) : resolve(st))));
  }

  async chmod(mode: number): Promise<void> {
    const fd = this.#open();
    if (quickEnabled()) return timed(() => fs.fchmodSync(fd, mode));
    return new Promise((resolve, reject) => fs.fchmod(fd, mode, (err) => (err ? reject(err) : resolve())));
  }

  async truncate(len: number): Promise<void> {
    const fd = this.#open();
    if (quickEnabled()) return timed(() => fs.ftruncateSync(fd, len));
    return new Promise((resolve, reject) => fs.ftruncate(fd, len, (err) => (err ? reject(err) : resolve())));
  }

  async close(): Promise<void> {
    const fd = this.#fd;
    if (fd < 0) return;
    this.#fd = -1;
    if (quickEnabled()) return timed(() => closeNow(fd));
    return new Promise((resolve, reject) => fs.close(fd, (err) => (err ? reject(err) : resolve())));
  }

  createWriteStream(opts: { start: number; highWaterMark: number; autoClose: false; emitClose: true }): fs.WriteStream {
    // With `fd` the path is not used. destroy() closes a stream's descriptor even with autoClose
    // off: the stream gets a close that does nothing, and the descriptor stays ours to close.
    // (Named keys before the spread: in Node 20 an object spread followed by more keys gets a new
    // hidden class each time; see data/accept.ts.)
    return fs.createWriteStream("", { fd: this.#open(), fs: STREAM_FS, ...opts });
  }

  #open(): number {
    if (this.#fd < 0) throw Object.assign(new Error("file already closed"), { code: "EBADF" });
    return this.#fd;
  }
}

/** A write stream over `handle` from `opts.start` that leaves the descriptor open when it ends or is
 * destroyed: the owner closes it. A FileHandle's own stream closes the FileHandle when destroyed,
 * autoClose or not; an upload undone needs its descriptor until then (fs/upload.ts WhereNow, and
 * the file's identity). Writes go through the thread pool as a FileHandle's would. */
export function writeStreamOver(handle: FileLike, opts: { start: number; highWaterMark: number; autoClose: false; emitClose: true }): fs.WriteStream {
  const fd = fdOf(handle);
  // Stand-ins in tests have no descriptor (nor has a closed file): their own stream.
  return fd === null ? handle.createWriteStream(opts) : fs.createWriteStream("", { fd, fs: STREAM_FS, ...opts });
}

/** The descriptor behind `handle`, or null where there is none (stand-ins in tests have none and
 * take the promise path). */
export function fdOf(handle: FileLike): number | null {
  const fd = (handle as { fd?: unknown }).fd;
  return typeof fd === "number" && fd >= 0 ? fd : null;
}

export async function fstat(handle: FileLike): Promise<fs.Stats> {
  const fd = fdOf(handle);
  return fd !== null && quickEnabled() ? timed(() => fs.fstatSync(fd)) : handle.stat();
}

/** The size of what `handle` has open when it is a regular file, else -1: an fstat that builds
 * no Stats (four Dates each) where the descriptor is known. */
export async function regularSize(handle: FileLike): Promise<number> {
  const fd = fdOf(handle);
  if (fd !== null && quickEnabled()) return timed(() => regularFileSize(fd));
  const st = await handle.stat();
  return st.isFile() ? st.size : -1;
}

/** handle.read, synchronous for a read of up to QUICK_IO_MAX. */
export async function read(handle: FileLike, buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesRead: number }> {
  const fd = fdOf(handle);
  if (fd !== null && length <= QUICK_IO_MAX && quickEnabled()) {
    return { bytesRead: timed(() => fs.readSync(fd, buf, offset, length, position), length) };
  }
  return handle.read(buf, offset, length, position);
}

/** handle.write, synchronous for a write of up to QUICK_IO_MAX. */
export async function write(handle: FileLike, buf: Buffer, offset: number, length: number, position: number): Promise<{ bytesWritten: number }> {
  const fd = fdOf(handle);
  if (fd !== null && length <= QUICK_IO_MAX && quickEnabled()) {
    return { bytesWritten: timed(() => writeNowAt(fd, buf, offset, length, position), length) };
  }
  return handle.write(buf, offset, length, position);
}

/** Whether writeNow would act on `handle` now (for a size it takes). */
export function canNow(handle: FileLike): boolean {
  return fdOf(handle) !== null && quickEnabled();
}

/**
 * Writes all of `buf[offset, offset + length)` at `position` now, synchronously, when synchronous
 * calls are on, `handle` is a descriptor and `length` is at most QUICK_IO_MAX; returns false,
 * having written nothing, otherwise. Throws the write's error (a short write that makes no
 * progress is EIO), which tells how many bytes were written before it (writtenBefore). write()
 * with an answer the caller has before it returns: an upload writes each socket read from the
 * read buffer itself, which is free again once the callback returns.
 */
export function writeNow(handle: FileLike, buf: Uint8Array, offset: number, length: number, position: number): boolean {
  const fd = fdOf(handle);
  if (fd === null || length > QUICK_IO_MAX || !quickEnabled()) return false;
  timed(() => {
    let done = 0;
    while (done < length) {
      let n: number;
      try {
        n = writeNowAt(fd, buf, offset + done, length - done, position + done);
      } catch (err) {
        throw wroteFirst(err, done);
      }
      if (n <= 0) throw wroteFirst(Object.assign(new Error("short write"), { code: "EIO" }), done);
      done += n;
    }
  }, length);
  return true;
}

/** `err`, noting that `bytes` had been written before it. A full disk takes the part of a write
 * that fits and fails the rest: those bytes are in the file, and an upload counts them (its log
 * line, STAT). */
export function wroteFirst(err: unknown, bytes: number): unknown {
  return bytes > 0 && typeof err === "object" && err !== null ? Object.assign(err, { writtenBefore: bytes }) : err;
}

/** The bytes a write that failed with `err` had written before it (wroteFirst); 0 when none. */
export function writtenBefore(err: unknown): number {
  const n = typeof err === "object" && err !== null ? (err as { writtenBefore?: unknown }).writtenBefore : undefined;
  return typeof n === "number" ? n : 0;
}
