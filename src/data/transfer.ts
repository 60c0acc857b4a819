/**
 * The data path: file → socket (RETR), socket → file (STOR/APPE/STOU) and buffer → socket
 * (listings), with backpressure and large chunks, never the whole file in memory. A transfer
 * settles only when its bytes are handed to the kernel (download: the socket finished writing, TLS
 * close_notify included) or on disk (upload: the last write returned), so the caller can say 226
 * truthfully (DESIGN convention 4).
 */
import { once } from "node:events";
import type { FileLike } from "../fs/quick.ts";
import type { Socket } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { pipeline } from "node:stream/promises";
import type { Readable, Transform, Writable } from "node:stream";
import { FtpError } from "../protocol/errors.ts";
import { fromNetworkAscii, networkAsciiEncoder } from "./ascii.ts";
import { hookStage, type TransferHook } from "./hook.ts";
import { receiveDirect, receiveRaw, type DirectProgress, type RawOutcome, type UploadThread } from "./receive.ts";
import { userBufferReads } from "./userbuffer.ts";
import { QUICK_IO_MAX, SLOW_MS, fdOf, lateCall, quickEnabled, read as quickRead, writeStreamOver } from "../fs/quick.ts";
import { constants as osConstants } from "node:os";
import { endSent, endUnused, settled } from "./linger.ts";
import { jobError, prematureClose } from "./failure.ts";
import { claimThread, releaseThread } from "./threads.ts";
import { plainSocketFd, receiveBinding, sendfileBinding, type SendfileBinding, type TransferJob } from "../native.ts";
import { RawData, type DataConnection } from "./raw.ts";
import { NEG_EAGAIN, sysError, tryWrite } from "../fs/sysio.ts";
import { StallClock } from "./stall.ts";
import { MAX_TIMER_MS } from "../config/units.ts";

/** Read size for downloads: large chunks keep system calls few; at most what may be read at once
 * synchronously (fs/quick.ts). */
export const READ_CHUNK = QUICK_IO_MAX;
/** Smallest download buffer. */
const MIN_CHUNK = 16 << 10;
/** Write buffer for uploads: chunks that arrive while a write is in flight go out in one writev. */
export const WRITE_BUFFER = 4 << 20;

/** Why a transfer stopped early. */
export type AbortReason = "abort" | "stalled" | "shutdown" | "kicked" | "banned" | "client";

/** A running transfer, visible to STAT and ABOR. */
export class Transfer {
  /** When it started (ms since epoch). */
  readonly startedAt = Date.now();
  /** The same moment on the monotonic clock, for how long it took (the wall clock may be set
   * back or forward meanwhile, and a transfer log line would say it took minus an hour). */
  readonly startedTick = performance.now();
  private abortReason: AbortReason | null = null;
  private counter: (() => number) | null = null;
  private socket: DataConnection | null = null;
  private onAbort: (() => void) | null = null;
  private resolveDone: (() => void) | null = null;
  /** Settles once the transfer's final reply (226, 426, …) has been written. */
  readonly done: Promise<void> = new Promise((resolve) => (this.resolveDone = resolve));

  constructor(
    /** "download", "upload" or "list". */
    readonly direction: "download" | "upload" | "list",
    /** The virtual path, for STAT and the log (STOU's is set again if its name changes as its
     * file is created). */
    public path: string,
    /** Total bytes expected, when known (downloads). */
    readonly expected: number | null,
  ) {}

  /** Bytes moved so far. */
  get bytes(): number {
    return this.counter === null ? 0 : this.counter();
  }

  /** Why it was aborted, or null. */
  get aborted(): AbortReason | null {
    return this.abortReason;
  }

  /** Stops the transfer: the data socket is destroyed and the pipeline rejects. */
  abort(reason: AbortReason): void {
    if (this.abortReason) return;
    this.abortReason = reason;
    this.socket?.destroy();
    this.onAbort?.();
  }

  /** Runs `fn` on abort (closing a data channel still waiting to connect). */
  whenAborted(fn: () => void): void {
    this.onAbort = fn;
  }

  /** Marks the final reply written; ABOR waits for this before its own 226. */
  settle(): void {
    this.resolveDone?.();
  }

  /** Ties the transfer to its data connection before it moves a byte (during a TLS handshake):
   * an abort destroys it. */
  hold(socket: DataConnection): void {
    this.socket = socket;
    if (this.abortReason) socket.destroy();
  }

  /** Ties the transfer to its data connection and its byte counter. */
  attach(socket: DataConnection, counter: () => number): void {
    this.socket = socket;
    this.counter = counter;
    if (this.abortReason) socket.destroy();
  }
}

/**
 * Sends `handle` from `start` to its end to the socket, then ends it (close_notify for TLS).
 *
 * A connection as accepted (data/raw.ts) takes the file by sendfile(2) from its descriptor first;
 * when that sends the whole file, the connection ends there and no `Socket` is ever made: closed
 * at once if the client has acknowledged it all, else after its FIN, as a `Socket` would end
 * (endRawSent). Otherwise it becomes a `Socket` and the rest goes as below.
 *
 * A plain binary download without a hook goes by sendfile(2) where the addon is built
 * (sendKernel). Otherwise, and for what sendfile cannot send, a loop over two reused buffers rather
 * than a stream pipeline: the next chunk is read while the socket writes the current one, and a
 * buffer is read into again only once the socket is done with it (its write callback). Buffers are
 * sized to what is left of the file, so a small file costs one small buffer and one read. With a
 * hook (data/hook.ts), reads are at most `chunkSize()` bytes and each chunk waits for `take()`
 * before it goes to the socket.
 */
export async function sendFile(
  t: Transfer,
  conn: DataConnection,
  handle: FileLike,
  start: number,
  ascii: boolean,
  stalledMs: number,
  hook: TransferHook | null = null,
  sendfile = true,
): Promise<number> {
  const at: Cursor = { sent: 0, position: start };
  const native = sendfile && !ascii && !hook ? sendfileBinding() : null;
  // The size known at open: a short read at or past it is the end; before it, reading goes on.
  const end = t.expected === null ? Infinity : start + t.expected;
  let done = false;
  let socket: Socket;
  if (conn instanceof RawData) {
    try {
      // Aborted before it began (a Socket would have been destroyed by attach()).
      if (t.aborted !== null) throw prematureClose();
      if (native !== null && sendRawAtOnce(conn, native, handle, at, start, end)) {
        if (endRawSent(conn, stalledMs)) return at.sent;
        done = true;
      }
      socket = conn.socket();
    } catch (err) {
      conn.destroy();
      throw abortError(t, err);
    }
  } else socket = conn;
  const fds = native && !done ? kernelCopyFds(socket, handle) : null;
  // Bytes the addon's thread has sent so far (it writes them here); added to `sent` when it ends.
  const progress = fds ? new BigInt64Array(1) : null;
  t.attach(socket, progress ? () => at.sent + Number(progress[0]) : () => at.sent);
  const watch = new SocketWatch(socket);
  const cap = hook ? Math.min(READ_CHUNK, Math.max(MIN_CHUNK, hook.chunkSize())) : READ_CHUNK;
  const encode = ascii ? networkAsciiEncoder() : null;
  let reader: ReadAhead | null = null;
  let clock: StallClock | null = null;

  try {
    if (native && fds && progress) {
      const errno = await sendKernel(socket, watch, native, fds, at, end, stalledMs, progress);
      if (errno === ETIMEDOUT) t.abort("stalled");
      if (errno === 0) done = true;
      // sendfile refused the file before its first byte, or no thread could be started: the rest
      // goes through user space, from where sendfile stopped.
      else if (!(errno === EAGAIN || (UNSUPPORTED.has(errno) && at.position === start))) throw jobError(errno, "sendfile");
    }
    if (!done) {
      clock = new StallClock(socket, stalledMs, t.abort.bind(t, "stalled"));
      reader = new ReadAhead(handle, hook, end, readBufferSize(end - at.position, cap));
      let slot = 0;
      let next = reader.read(slot, at.position);
      for (;;) {
        const { n, last } = await watch.wait(next);
        if (n === 0) break;
        const buf = reader.buffers[slot] as Buffer;
        at.position += n;
        if (!last) {
          next = reader.read(1 - slot, at.position);
          next.catch(() => undefined); // awaited on the next turn; a failure there is handled then
        }
        if (hook) {
          let ms = hook.take(n);
          if (ms >= 1) {
            // Waiting for the bandwidth limit is not the client's stall.
            clock.hold(true);
            await watch.wait(sleep(ms));
            // A wait as long as the longest timer may not be all of it (data/hook.ts).
            while (ms >= MAX_TIMER_MS && (ms = hook.take(0)) >= 1) await watch.wait(sleep(ms));
            clock.hold(false);
          }
        }
        const chunk = encode ? encode(buf.subarray(0, n)) : buf.subarray(0, n);
        let release!: () => void;
        reader.inUse[slot] = new Promise<void>((resolve) => (release = resolve));
        const ok = socket.write(chunk, () => release());
        at.sent += n;
        if (!ok) await watch.wait(watch.drained());
        if (last) break;
        slot = 1 - slot;
      }
    }
    socket.end();
    await watch.wait(watch.finished());
  } catch (err) {
    socket.destroy();
    throw abortError(t, err);
  } finally {
    clock?.stop();
    watch.detach();
    // No read may still be filling a buffer when the caller closes the handle.
    await reader?.stop();
  }
  endTransferSocket(socket, stalledMs, true);
  return at.sent;
}

/** Where a download stands: bytes sent, and the file position of the next byte. */
interface Cursor {
  sent: number;
  position: number;
}

/**
 * The reads of a download's user-space loop: two buffers of `size` bytes, each read into again
 * only once the socket is done with it (`inUse[slot]` settles from its write's callback).
 * Synchronous while the disk answers fast (fs/quick.ts); otherwise through the pool. A class, not
 * closures (test/hotpath.test.ts).
 */
class ReadAhead {
  readonly buffers: (Buffer | null)[] = [null, null];
  /** Settles when the socket no longer needs the buffer (its last write's callback ran). */
  readonly inUse: (Promise<void> | null)[] = [null, null];
  private stopped = false;
  private reading: Promise<unknown> | null = null;

  constructor(
    private readonly handle: FileLike,
    private readonly hook: TransferHook | null,
    /** The size known at open. */
    private readonly end: number,
    private readonly size: number,
  ) {}

  /** Reads the next chunk at `from` into buffer `slot`. */
  async read(slot: number, from: number): Promise<Chunk> {
    await this.inUse[slot];
    if (this.stopped) return { n: 0, last: true };
    const buf = (this.buffers[slot] ??= Buffer.allocUnsafe(this.size));
    const hook = this.hook;
    const want = hook ? Math.min(buf.length, Math.max(1, hook.chunkSize())) : buf.length;
    const read = quickRead(this.handle, buf, 0, want, from);
    this.reading = read;
    const n = (await read).bytesRead;
    // A short read that reaches the size known at open is the end: no extra read to see EOF.
    return { n, last: n === 0 || (n < want && from + n >= this.end) };
  }

  /** No read starts any more; settles once none is in flight. */
  async stop(): Promise<void> {
    this.stopped = true;
    await this.reading?.catch(() => undefined);
  }
}

const { EAGAIN, ETIMEDOUT, EINVAL, ENOSYS, EOPNOTSUPP } = osConstants.errno;
/** sendfile's answers for a file it cannot send (a file system without splice, say). */
const UNSUPPORTED = new Set([EINVAL, ENOSYS, EOPNOTSUPP]);
/** Bytes a download sends from the main thread before it hands the rest to a thread of its own: a
 * small file goes out in one call, a large one fills the socket buffer and moves on. */
const SEND_NOW_MAX = 1 << 20;

/** The descriptors of a plain TCP socket and of a file, for a transfer thread of the addon; null
 * for TLS or a stand-in handle. */
function plainFds(socket: Socket, handle: FileLike): { socket: number; file: number } | null {
  const sfd = plainSocketFd(socket);
  const ffd = fdOf(handle);
  return sfd === null || ffd === null ? null : { socket: sfd, file: ffd };
}

/** The descriptors sendfile needs: a plain TCP socket nothing else is writing to, and a file
 * descriptor; null where the user-space loop must do (TLS, a stand-in handle, pending writes). */
function kernelCopyFds(socket: Socket, handle: FileLike): { socket: number; file: number } | null {
  if (socket.destroyed || socket.connecting || socket.writableLength !== 0 || socket.writableEnded) return null;
  return plainFds(socket, handle);
}

/**
 * Sends the file from `at.position` to its end by sendfile(2) (src/native.ts): from the page cache
 * to the socket without passing through user space. While the disk answers fast the first megabyte
 * goes out at once from this thread (all of a small file, ending at `end`, the size known at open,
 * without a call that finds nothing more); the rest is sent by a thread of the
 * addon, which gives up after `stalledMs` without progress (ETIMEDOUT), writing its count into
 * `progress` as it goes. `at` follows every byte sent. The job corks the socket (full segments
 * only) and, when this thread is not reading it (notReading), makes it blocking so that the kernel
 * waits for room inside sendfile; otherwise it waits with poll().
 * Abort (ABOR, a closed control connection, shutdown) destroys the socket, which cancels the job;
 * the job works on copies of both descriptors, so closing ours never hands it someone else's.
 *
 * Returns 0 at the end of the file, or the errno that stopped it; EAGAIN when no thread could be
 * started (or every slot of data/threads.ts is taken). Throws when the socket fails or closes first.
 */
async function sendKernel(
  socket: Socket,
  watch: SocketWatch,
  native: SendfileBinding,
  fds: { socket: number; file: number },
  at: Cursor,
  end: number,
  stalledMs: number,
  progress: BigInt64Array,
): Promise<number> {
  // Aborted before it began: attach() has destroyed the socket, and its descriptor is closed.
  if (socket.destroyed) throw prematureClose();
  if (quickEnabled()) {
    const errno = sendAtOnce(native, fds.socket, fds.file, at, end);
    if (errno !== EAGAIN) return errno;
  }
  // Every thread slot taken: the rest goes out from the event loop.
  if (!claimThread()) return EAGAIN;
  let ended!: (r: { errno: number; n: number }) => void;
  const result = new Promise<{ errno: number; n: number }>((resolve) => (ended = resolve));
  let job: TransferJob;
  try {
    job = native.start(
      fds.socket,
      fds.file,
      at.position,
      stalledMs,
      progress,
      (errno, n) => {
        releaseThread();
        ended({ errno, n });
      },
      notReading(socket),
    );
  } catch {
    releaseThread();
    return EAGAIN;
  }
  // Harmless once the job has ended; it never throws (a throw in a 'close' listener would be uncaught).
  // Bound, not an arrow: no named closure per download (test/hotpath.test.ts).
  const cancel = native.cancel.bind(null, job);
  socket.once("close", cancel);
  try {
    const r = await watch.wait(result);
    progress[0] = 0n;
    at.position += r.n;
    at.sent += r.n;
    return r.errno;
  } catch (err) {
    cancel();
    throw err;
  } finally {
    socket.removeListener("close", cancel);
  }
}

/**
 * Sends from `at.position` by sendfile(2) on this thread, up to SEND_NOW_MAX bytes (all of a small
 * file, ending at `end`, the size known at open, without a call that finds nothing more). 0 at the
 * end of the file, EAGAIN when the socket's buffer is full (or the budget spent), or the errno that
 * stopped it. `at` follows every byte sent.
 */
function sendAtOnce(native: SendfileBinding, socketFd: number, fileFd: number, at: Cursor, end: number): number {
  const t0 = performance.now();
  let errno = EAGAIN;
  let now = 0;
  while (now < SEND_NOW_MAX) {
    const want = SEND_NOW_MAX - now;
    const n = native.sendNow(socketFd, fileFd, at.position, want);
    if (n <= 0) {
      errno = -n;
      break;
    }
    at.position += n;
    at.sent += n;
    now += n;
    // A short send that reaches the size known at open is the end, as a short read is in the
    // user-space loop: no further call to find it.
    if (n < want && at.position >= end) {
      errno = 0;
      break;
    }
  }
  // The budget sent in full and the size known at open reached with it (a file of exactly the
  // budget): one more call says whether that was the end (0) before a thread is started for it.
  if (errno === EAGAIN && now >= SEND_NOW_MAX && at.position >= end) {
    const n = native.sendNow(socketFd, fileFd, at.position, SEND_NOW_MAX);
    if (n <= 0) errno = -n;
    else {
      // The file grew since it was opened: the thread sends the rest.
      at.position += n;
      at.sent += n;
    }
  }
  const ms = performance.now() - t0;
  if (ms > SLOW_MS) lateCall(ms);
  return errno;
}

/**
 * A download on a connection as accepted: sendAtOnce from its descriptor while the disk answers
 * fast. True when the whole file went; false when the rest is for the `Socket` (the socket's
 * buffer filled, or sendfile cannot send this file: the user-space loop does then). Throws what
 * stopped it otherwise (the client gone: EPIPE, ECONNRESET).
 */
function sendRawAtOnce(conn: RawData, native: SendfileBinding, handle: FileLike, at: Cursor, start: number, end: number): boolean {
  const file = fdOf(handle);
  if (file === null || conn.fd < 0 || !quickEnabled()) return false;
  const errno = sendAtOnce(native, conn.fd, file, at, end);
  if (errno === 0) return true;
  if (errno === EAGAIN || (UNSUPPORTED.has(errno) && at.position === start)) return false;
  throw jobError(errno, "sendfile");
}

/**
 * Ends a connection as accepted whose bytes all went, as endTransferSocket ends a `Socket`: closed
 * at once when the client has acknowledged every byte and sent nothing (native/sockopt.c
 * nothingPending; the kernel sends the FIN after the close, and nothing can be lost: data/linger.ts
 * endSent says why), else its FIN sent and the client's end awaited (RawData.linger). False where
 * the `Socket` must do it.
 */
function endRawSent(conn: RawData, stalledMs: number): boolean {
  if (!settled(conn.fd)) return conn.linger(finishGrace(stalledMs));
  conn.destroy();
  return true;
}

/**
 * Writes `data` to a connection as accepted until the socket's buffer is full; returns how much
 * went (data.length: all of it). Throws what stopped it otherwise (the client gone).
 */
function writeRawAtOnce(conn: RawData, data: Buffer): number {
  let at = 0;
  const fd = conn.fd;
  if (fd < 0) return 0;
  while (at < data.length) {
    const n = tryWrite(fd, data, at, data.length - at);
    if (n === NEG_EAGAIN) break;
    if (n < 0) throw sysError(n, "write");
    at += n;
  }
  return at;
}

/** Whether the event loop is not reading `socket` and nothing has asked it to: a passive data
 * connection is accepted paused, an active one dialled paused (data/active.ts), and a download
 * never reads it before its end (data/linger.ts does, afterwards). The sendfile job may then make
 * the socket blocking while it runs (sendKernel); a blocking read on this thread would stall every
 * session. */
function notReading(socket: Socket): boolean {
  const handle = (socket as unknown as { _handle?: { reading?: unknown } | null })._handle;
  return handle?.reading === false && socket.readableFlowing === false;
}

/** One read of a download. */
interface Chunk {
  /** Bytes read. */
  readonly n: number;
  /** Nothing is left after it. */
  readonly last: boolean;
}

/** Download buffer for `remaining` bytes: the smallest power of two above it (so that the first
 * read of a file that did not change comes back short and is known to be the last), between
 * MIN_CHUNK and `cap`. */
export function readBufferSize(remaining: number, cap = READ_CHUNK): number {
  let size = MIN_CHUNK;
  while (size <= remaining && size < cap) size *= 2;
  return Math.min(size, cap);
}

/** Receives the socket's bytes into `handle` at `position` until the client closes the connection:
 * through a reused buffer when it can (data/receive.ts), the rest of a large plain upload on a
 * thread of its own (`threads`, where the addon is built), else through a stream pipeline. A
 * binary upload without limits on a connection as accepted (data/raw.ts) is read from its
 * descriptor first (receiveRaw): a small one ends there, with no `Socket` made; a larger one goes
 * on as a `Socket` after the first READ_SIZE bytes. */
export async function receiveFile(
  t: Transfer,
  conn: DataConnection,
  handle: FileLike,
  start: number,
  ascii: boolean,
  stalledMs: number,
  hook: TransferHook | null = null,
  threads = true,
): Promise<number> {
  let before = 0;
  let socket: Socket;
  if (conn instanceof RawData) {
    try {
      if (!hook && !ascii) {
        const received: DirectProgress = { written: 0, running: null };
        t.attach(conn, () => received.written);
        const r: RawOutcome = await receiveRaw(conn, handle, start, received, stalledMs, t.abort.bind(t, "stalled"));
        // Aborted while the last bytes went to the file: the connection is gone, and so is the upload.
        if (t.aborted !== null) throw prematureClose();
        if (r.ended) return r.written;
        before = r.written;
      }
      socket = conn.socket();
    } catch (err) {
      conn.destroy();
      throw abortError(t, err);
    }
  } else socket = conn;
  const position = start + before;
  const notReset = resetCheck(socket);
  if (!hook && !ascii && userBufferReads(socket)) {
    const progress: DirectProgress = { written: 0, running: null };
    t.attach(socket, () => before + progress.written + Number(progress.running?.[0] ?? 0n));
    socket.setTimeout(stalledMs, () => t.abort("stalled"));
    try {
      await receiveDirect(socket, handle, position, progress, threads ? uploadThread(socket, handle, stalledMs) : null);
      await notReset();
    } catch (err) {
      // The thread gave up waiting for data.
      if ((err as NodeJS.ErrnoException).syscall === "recv" && (err as NodeJS.ErrnoException).code === "ETIMEDOUT") t.abort("stalled");
      socket.destroy();
      throw abortError(t, err);
    }
    endTransferSocket(socket, stalledMs);
    return before + progress.written;
  }
  const ws = writeStreamOver(handle, {
    start: position,
    highWaterMark: WRITE_BUFFER,
    autoClose: false,
    // 'close' comes only once a write in flight has returned: run() waits for it.
    emitClose: true,
  });
  t.attach(socket, () => ws.bytesWritten);
  const stages: (Readable | Transform | Writable)[] = [socket];
  // Limits (data/hook.ts) count what goes to the file: in TYPE A, after CRLF became LF, so a text
  // file that fits the quota on disk is not refused for its size on the wire. Pacing here pauses
  // the data socket (through the conversion), and TCP slows the client down.
  if (ascii) stages.push(fromNetworkAscii());
  // While the stage waits for the bandwidth limit, the paused socket moves nothing: that is no
  // stall, so its idle timer (run) is off for the wait and runs again, from zero, after it.
  if (hook) stages.push(hookStage(hook, (waiting) => socket.setTimeout(waiting ? 0 : stalledMs)));
  stages.push(ws);
  await run(t, socket, stages, stalledMs, notReset);
  return ws.bytesWritten;
}

/** What an upload needs to go on in a thread of the addon: a plain TCP socket and a file
 * descriptor; null where the event loop must do (TLS, a stand-in handle, no addon). */
function uploadThread(socket: Socket, handle: FileLike, stalledMs: number): UploadThread | null {
  const binding = receiveBinding();
  const fds = binding === null ? null : plainFds(socket, handle);
  return binding === null || fds === null ? null : { binding, socketFd: fds.socket, fileFd: fds.file, stalledMs };
}

const NOTHING = Buffer.alloc(0);

function ignoreError(): void {}

/**
 * Node takes a client's reset for a clean end when the reset comes while data is still unread (a
 * paused upload: slow disk, bandwidth limit; or the reset right behind the last bytes): libuv ends a
 * short read on the hang-up without reading the error behind it. An upload the client cut off would
 * be published as complete. Over TLS, close_notify tells the two apart (data/tls.ts); on a plain
 * connection the kernel is asked once the end has been read: our side is kept open past the
 * client's FIN (Node would end it at once), and a write of no bytes fails on a connection the
 * client reset (ECONNRESET) and goes through, sending nothing, on one it ended.
 *
 * Call before the socket's end can have been read; the returned check runs after it.
 */
function resetCheck(socket: Socket): () => Promise<void> {
  if ((socket as Socket & { encrypted?: boolean }).encrypted || socket.readableEnded || socket.writableEnded) {
    return () => Promise.resolve();
  }
  socket.allowHalfOpen = true;
  return () =>
    new Promise<void>((resolve, reject) => {
      if (socket.destroyed || socket.writableEnded) return reject(prematureClose());
      // A failed write calls back first, then destroys the socket with the error.
      socket.on("error", ignoreError);
      socket.write(NOTHING, (err) => {
        if (err) return reject(err);
        socket.removeListener("error", ignoreError);
        resolve();
      });
    });
}

/** Pooled memory a listing is in (data/listbuf.ts): given back once nothing can read it. */
interface Pooled {
  release(): void;
  releaseAfter(socket: Socket): void;
}

/**
 * Sends a prepared buffer (a listing) and ends the socket. A connection as accepted (data/raw.ts)
 * takes what its buffer can from its descriptor; one that took all of it ends there (endRawSent),
 * without a `Socket`. `pooled`, where the buffer lives, is given back as
 * soon as the bytes are in the kernel, or once the socket closes.
 */
export async function sendBuffer(t: Transfer, conn: DataConnection, data: Buffer, stalledMs: number, pooled: Pooled | null = null): Promise<number> {
  let from = 0;
  let socket: Socket;
  if (conn instanceof RawData) {
    try {
      if (t.aborted !== null) throw prematureClose();
      from = writeRawAtOnce(conn, data);
      if (from === data.length) {
        // All of it is in the kernel: the memory can go back now.
        pooled?.release();
        pooled = null;
        if (endRawSent(conn, stalledMs)) return data.length;
      }
      socket = conn.socket();
    } catch (err) {
      conn.destroy();
      pooled?.release();
      throw abortError(t, err);
    }
  } else socket = conn;
  pooled?.releaseAfter(socket);
  const rest = from === 0 ? data : data.subarray(from);
  t.attach(socket, () => Math.min(data.length, from + socket.bytesWritten));
  const clock = new StallClock(socket, stalledMs, () => socket.destroy(new FtpError(426, "Transfer stalled")));
  await new Promise<void>((resolve, reject) => {
    let sent = false;
    socket.once("error", reject);
    // The socket closes after a good send too: no error (and its stack trace) is made for that.
    socket.once("close", () => {
      if (!sent) reject(new FtpError(426, "Connection closed; transfer aborted"));
    });
    // The callback gets the write's error, if any, before the 'error' event is emitted: a
    // listing the client reset is not a listing sent.
    socket.end(rest, (err?: Error | null) => {
      if (err) return reject(err);
      sent = true;
      resolve();
    });
  }).finally(() => clock.stop());
  endTransferSocket(socket, stalledMs, true);
  return data.length;
}

async function run(
  t: Transfer,
  socket: Socket,
  stages: (Readable | Transform | Writable)[],
  stalledMs: number,
  notReset: () => Promise<void>,
): Promise<void> {
  socket.setTimeout(stalledMs, () => t.abort("stalled"));
  try {
    await pipeline(stages);
    await notReset();
  } catch (err) {
    socket.destroy();
    throw abortError(t, err);
  } finally {
    // The file stream leaves its descriptor open (fs/quick.ts writeStreamOver): the upload closes
    // it when it settles. pipeline() rejects as soon as a stage fails, while the file stream may
    // still have a write in flight: settle only after every stage has closed, so that a rollback
    // (quota: truncate and remove) runs after the last write, never before it (data/hook.ts).
    const closing: Promise<unknown>[] = [];
    for (const st of stages) {
      if (st === socket) continue;
      if (!st.closed) closing.push(once(st, "close").catch(() => undefined));
      st.destroy();
    }
    await Promise.all(closing);
  }
  endTransferSocket(socket, stalledMs);
}

/**
 * After a successful transfer the data connection ends our side too (after an upload: TLS
 * close_notify, then FIN; Python's ssl `unwrap()` waits for that close_notify), lets the peer
 * close, and goes by this deadline (or limits.stalledTimeout, if shorter) whatever the client
 * does (data/linger.ts endUnused). After a download or a listing (`sent`), a plain connection whose
 * every byte the client has acknowledged closes at once instead (endSent).
 */
const FINISH_GRACE_MS = 10_000;

/** How long a finished transfer's connection may wait for the client's end (ms). */
function finishGrace(stalledMs: number): number {
  return Math.min(stalledMs, FINISH_GRACE_MS);
}

function endTransferSocket(socket: Socket, stalledMs: number, sent = false): void {
  if (sent) endSent(socket, finishGrace(stalledMs));
  else endUnused(socket, finishGrace(stalledMs));
}

/**
 * Waits of a transfer loop that end early when the socket fails: an error, or a close before the
 * loop is done (Transfer.abort destroys the socket). One listener pair for the whole transfer.
 */
class SocketWatch {
  private failure: unknown = null;
  private reject: ((err: unknown) => void) | null = null;
  // Assigned here, not as class fields: those would be named closures (test/hotpath.test.ts).
  private readonly onError: (err: Error) => void;
  private readonly onClose: () => void;

  constructor(private readonly socket: Socket) {
    this.onError = (err) => this.fail(err);
    this.onClose = () => this.fail(prematureClose());
    socket.on("error", this.onError);
    socket.on("close", this.onClose);
    if (socket.destroyed) this.fail(socket.errored ?? prematureClose());
  }

  /** `p`, or the socket's failure if that comes first. */
  wait<T>(p: Promise<T>): Promise<T> {
    if (this.failure !== null) return Promise.reject(this.failure);
    return new Promise<T>((resolve, reject) => {
      this.reject = reject;
      p.then(resolve, reject);
    });
  }

  /** Settles on the socket's next 'drain'. */
  drained(): Promise<void> {
    return new Promise((resolve) => this.socket.once("drain", resolve));
  }

  /** Settles once the socket has finished writing (after end(): FIN, close_notify first for TLS). */
  finished(): Promise<void> {
    if (this.socket.writableFinished) return Promise.resolve();
    return new Promise((resolve) => this.socket.once("finish", resolve));
  }

  /** Stops watching. */
  detach(): void {
    this.socket.removeListener("error", this.onError);
    this.socket.removeListener("close", this.onClose);
    this.reject = null;
  }

  private fail(err: unknown): void {
    this.failure ??= err;
    this.reject?.(this.failure);
  }
}

/** Errors of the network side; any other errno (ENOSPC, EIO, …) is the disk's and is rethrown as is. */
const NETWORK_CODES = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH"]);

function abortError(t: Transfer, err: unknown): Error {
  if (err instanceof FtpError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (t.aborted === null && code && /^E[A-Z]+$/.test(code) && !NETWORK_CODES.has(code)) return err as Error;
  switch (t.aborted) {
    case "stalled":
      return new FtpError(426, "Transfer aborted: no data moved for too long");
    case "shutdown":
      return new FtpError(426, "Transfer aborted: server shutting down");
    case "kicked":
      return new FtpError(426, "Transfer aborted: disconnected by the administrator");
    case "banned":
      return new FtpError(426, "Transfer aborted: your address is banned");
    case "abort":
      return new FtpError(426, "Transfer aborted");
    default:
      return new FtpError(426, "Connection closed; transfer aborted", (err as Error | undefined)?.message);
  }
}
