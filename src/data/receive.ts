/**
 * Binary uploads without limits, plain or over TLS: the data socket is read into one reused buffer
 * and written to the file in large chunks, with no stream in between.
 *
 * Node reads a socket into a fresh 64 KiB buffer per read; an upload's socket is switched to reads
 * into a reused buffer instead (./userbuffer.ts, as the control connections are). Where that is not
 * possible (another runtime, a changed Node), `userBufferReads()` is false and uploads go through
 * the stream pipeline as before: slower, never wrong.
 *
 * While the disk answers fast, each read is written to the file at once, synchronously, from the
 * read buffer (fs/quick.ts writeNow): one system call per read, no copy, no hand-over to the thread
 * pool. Otherwise (a write was slow lately, or the handle is no descriptor) each read is copied into
 * a staging buffer, written through the pool as soon as no other write is in flight; what arrives
 * meanwhile fills the other staging buffer, and reading pauses (TCP then slows the client) when that
 * one is full. The promise settles only once the last write has returned, so 226 follows bytes that
 * are in the file.
 *
 * Once a plain upload has written HANDOFF_AT bytes this way, the rest goes to a thread of the addon
 * (native/receive.c) where it is built: the event loop stops reading the socket, and the thread
 * reads it with blocking calls of a megabyte and writes each read to the file, until the client's
 * end; the promise settles when the thread is done. A large upload then costs the event loop
 * nothing per chunk, and a slow disk holds up only the thread.
 */
import type { Socket } from "node:net";
import { handleOf, readIntoBuffer, type UserBufferHandle } from "./userbuffer.ts";
import type { FileLike } from "../fs/quick.ts";
import { canNow, write as quickWrite, writeNow, writtenBefore, wroteFirst } from "../fs/quick.ts";
import { NEG_EAGAIN, sysError, tryRead, writeNowAt } from "../fs/sysio.ts";
import type { RawData } from "./raw.ts";
import type { ReceiveBinding, TransferJob } from "../native.ts";
import { constants as osConstants } from "node:os";
import { jobError, prematureClose } from "./failure.ts";
import { claimThread, releaseThread } from "./threads.ts";

/** Bytes a socket read may return at once (a loopback read can bring a few hundred KiB). */
const READ_SIZE = 256 << 10;
/** Bytes written to the file at once through the pool (when reads cannot be written at once). */
const STAGE_SIZE = 1 << 20;
/** A read at least this large is written from the read buffer itself (when nothing is staged). */
const DIRECT_MIN = 64 << 10;
/** Smaller reads (TLS records of 16 KiB, a slow client's pieces) are staged and written together:
 * at once when this much is staged, otherwise after the reads of this turn of the event loop. */
const FLUSH_AT = 256 << 10;
/** Buffer sets kept for later uploads (reused memory takes no page faults). */
const POOL_MAX = 4;
/** Bytes an upload writes from the event loop before the rest goes to a thread (a small file never
 * pays for one). */
export const HANDOFF_AT = 4 << 20;

const { ECANCELED } = osConstants.errno;

interface Buffers {
  readonly read: Buffer;
  readonly stages: [Buffer, Buffer];
}

const pool: Buffers[] = [];

function takeBuffers(): Buffers {
  return pool.pop() ?? { read: Buffer.allocUnsafe(READ_SIZE), stages: [Buffer.allocUnsafe(STAGE_SIZE), Buffer.allocUnsafe(STAGE_SIZE)] };
}

function giveBack(b: Buffers): void {
  if (pool.length < POOL_MAX) pool.push(b);
}

/** What receiveDirect reports while it runs. */
export interface DirectProgress {
  /** Bytes written to the file so far (the thread's count is added when it ends). */
  written: number;
  /** While the upload thread runs: the bytes it has written so far (in [0]). */
  running?: BigInt64Array | null;
}

/** An upload's way to a thread of the addon (native/receive.c): the socket's and the file's
 * descriptors, and how long it waits for data before it gives up (ETIMEDOUT). */
export interface UploadThread {
  readonly binding: ReceiveBinding;
  readonly socketFd: number;
  readonly fileFd: number;
  readonly stalledMs: number;
}

/**
 * Reads `socket` to its end into `handle` from `position`. Rejects with the socket's error, a
 * premature close (the socket closed without a FIN: reset or destroyed by an abort) or the file's
 * write error; in every case only after no write is in flight. With `thread`, the rest of a large
 * upload goes to a thread of the addon, which rejects with ETIMEDOUT (code) when no data came for
 * `thread.stalledMs`: the caller then disarms the socket's idle timer (thread.stalledMs) for the
 * thread's time. Call only when `userBufferReads(socket)` is true.
 */
export function receiveDirect(
  socket: Socket,
  handle: FileLike,
  position: number,
  progress: DirectProgress,
  thread: UploadThread | null = null,
): Promise<void> {
  return new Promise<void>((resolve, reject) => new DirectReceive(socket, handle, position, progress, thread, resolve, reject).start());
}

/** One receiveDirect. A class rather than a function of closures: one is made per upload, and
 * named closures cost a slow runtime call each (test/hotpath.test.ts). */
class DirectReceive {
  private readonly h: UserBufferHandle;
  private readonly bufs = takeBuffers();
  /** The staging buffer being filled, and how much of it is. */
  private cur = 0;
  private fill = 0;
  private pos: number;
  private writing = false;
  private paused = false;
  private ended = false;
  private failure: unknown = null;
  private settled = false;
  private started = false;
  /** A network failure (reset, abort) still lands what was received; a disk failure stops. */
  private diskFailed = false;
  /** A flush after the reads of this turn of the event loop (each brings a TLS record or two). */
  private deferred: NodeJS.Immediate | null = null;
  /** The buffers went back to the pool when the thread took over. */
  private returned = false;
  /** Cancels the running upload thread (native cancel bound to its job). */
  private cancelThread: (() => void) | null = null;
  /** Where the upload started: the thread takes over HANDOFF_AT bytes after it. */
  private readonly from: number;
  private readonly onEnd: () => void;
  private readonly onError: (err: Error) => void;
  private readonly onClose: () => void;

  constructor(
    private readonly socket: Socket,
    private readonly handle: FileLike,
    position: number,
    private readonly progress: DirectProgress,
    private thread: UploadThread | null,
    private readonly resolve: () => void,
    private readonly reject: (err: unknown) => void,
  ) {
    this.h = handleOf(socket) as UserBufferHandle;
    this.pos = position;
    this.from = position;
    this.onEnd = () => this.end();
    this.onError = (err) => this.fail(err);
    this.onClose = () => {
      if (!this.ended) this.fail(prematureClose());
    };
  }

  start(): void {
    const socket = this.socket;
    const readBuf = this.bufs.read;
    readIntoBuffer(socket, readBuf, (n: number): boolean => {
      if (this.failure !== null) return false;
      try {
        if (!this.take(readBuf, n)) return false;
        // Returning false stops the handle reading: the thread reads from here on.
        return this.thread === null || this.pos - this.from < HANDOFF_AT || !this.handOff(false);
      } catch (err) {
        this.fail(err);
        return false;
      }
    });
    socket.on("end", this.onEnd);
    socket.on("error", this.onError);
    socket.on("close", this.onClose);

    // Whatever the stream read before the switch comes first (read() returns all of it at once).
    try {
      for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) {
        this.take(chunk, chunk.length);
      }
    } catch (err) {
      this.fail(err);
      return;
    }
    if (socket.readableEnded) return this.end();
    // Paused while draining: reading starts once a write has made room.
    if (!this.paused) this.resumeSocket();
  }

  private settle(): void {
    if (this.settled || this.writing) return;
    if (this.failure === null && !(this.ended && this.fill === 0)) return;
    this.settled = true;
    const socket = this.socket;
    socket.removeListener("end", this.onEnd);
    socket.removeListener("error", this.onError);
    socket.removeListener("close", this.onClose);
    // Nothing reads into our buffers any more: the socket ended, or it is destroyed below.
    if (this.failure !== null) socket.destroy();
    if (!this.returned) giveBack(this.bufs);
    if (this.failure !== null) this.reject(this.failure);
    else this.resolve();
  }

  private fail(err: unknown): void {
    this.failure ??= err;
    if (!this.writing && this.fill > 0 && !this.diskFailed) this.flushStaged();
    this.settle();
  }

  private resumeSocket(): void {
    this.started = true;
    this.socket.resume();
  }

  private resumeReading(): void {
    if (!this.paused || this.socket.destroyed) return;
    this.paused = false;
    if (!this.started) return this.resumeSocket();
    // The Readable side believes a read is pending (nothing is pushed in this mode): start the
    // handle again the way Socket#_read does.
    if (!this.h.reading) (this.socket as unknown as { _read(n: number): void })._read(0);
  }

  /** Writes `buf[0, n)` at `pos` now if the disk answers fast (fs/quick.ts writeNow). False if it
   * must go through the pool instead; true once written, or once it failed (the upload then
   * ends with that error). Only while no write is in flight. */
  private writeAtOnce(buf: Uint8Array, n: number): boolean {
    try {
      if (!writeNow(this.handle, buf, 0, n, this.pos)) return false;
    } catch (err) {
      // What a full disk took of the read is in the file: counted, as a write that lands is.
      this.progress.written += writtenBefore(err);
      this.diskFailed = true;
      this.fail(err);
      return true;
    }
    this.pos += n;
    this.progress.written += n;
    return true;
  }

  /** Writes what is staged, at once if the disk answers fast, or through the pool. */
  private flushStaged(): void {
    if (this.writeAtOnce(this.bufs.stages[this.cur] as Buffer, this.fill)) this.fill = 0;
    else this.flush();
  }

  private flushLater(): void {
    this.deferred ??= setImmediate(() => {
      this.deferred = null;
      if (!this.settled && !this.writing && this.fill > 0 && !this.diskFailed) this.flushStaged();
      this.settle();
    });
  }

  /** Writes what is staged through the thread pool, and stages into the other buffer meanwhile. */
  private flush(): void {
    const buf = this.bufs.stages[this.cur] as Buffer;
    const n = this.fill;
    this.cur = 1 - this.cur;
    this.fill = 0;
    this.writing = true;
    void writeAll(this.handle, buf, n, this.pos).then(
      () => {
        this.writing = false;
        this.pos += n;
        this.progress.written += n;
        // What arrived during the write goes out at once, as one write.
        if (this.fill > 0) this.flush();
        // Past HANDOFF_AT with nothing staged: a slow disk is the thread's to wait for.
        else if (this.thread !== null && this.failure === null && this.pos - this.from >= HANDOFF_AT && this.handOff(true)) return;
        if (this.failure === null) this.resumeReading();
        this.settle();
      },
      (err: unknown) => {
        this.writing = false;
        this.progress.written += writtenBefore(err);
        this.diskFailed = true;
        this.fail(err);
      },
    );
  }

  /** Takes `n` bytes of `src` (a read, or data buffered before the switch); false pauses reading. */
  private take(src: Uint8Array, n: number): boolean {
    // Nothing staged or in flight and the disk answers fast: the read goes to the file now, from
    // where it was read (fs/quick.ts writeNow), and the read buffer is free again at once.
    if (this.fill === 0 && !this.writing && !this.diskFailed && n >= DIRECT_MIN && this.writeAtOnce(src, n)) return !this.diskFailed;
    let off = 0;
    while (off < n) {
      const stage = this.bufs.stages[this.cur] as Buffer;
      const k = Math.min(n - off, STAGE_SIZE - this.fill);
      stage.set(src.subarray(off, off + k), this.fill);
      this.fill += k;
      off += k;
      // Only data buffered before the switch can be larger than a read: stage what is left
      // into the other buffer, which is free whenever no write is in flight.
      if (off < n) {
        if (this.writing) throw new Error("upload staging overflow");
        this.flush();
      }
    }
    // Written as soon as the disk is free: a slow client's data is on disk as it arrives, and a
    // fast one's piles up during a write and goes out in one large write. While writes are
    // synchronous, small reads are gathered for the rest of this turn of the event loop.
    if (!this.writing) {
      if (this.fill < FLUSH_AT && canNow(this.handle)) this.flushLater();
      else this.flushStaged();
    }
    if (this.fill + READ_SIZE <= STAGE_SIZE) return true;
    this.paused = true;
    return false;
  }

  /**
   * Hands the rest of the upload to a thread, if one may start: nothing is staged or in flight.
   * From the read callback (`stopReading` false) the callback then returns false, which stops the
   * handle reading; from elsewhere (a write through the pool has returned) the handle is stopped
   * here, as that would. The job starts on the next turn of the event loop, once no read callback
   * is running. The socket's idle timer is disarmed: the thread keeps its own stall clock. Until
   * the job ends, `writing` holds the upload open (settle waits for it).
   */
  private handOff(stopReading: boolean): boolean {
    if (this.writing || this.fill !== 0 || this.diskFailed || this.socket.destroyed || !claimThread()) return false;
    this.writing = true;
    this.paused = true;
    this.socket.setTimeout(0);
    if (stopReading && this.h.reading) {
      this.h.reading = false;
      this.h.readStop();
    }
    setImmediate(() => this.startThread());
    return true;
  }

  private startThread(): void {
    const thread = this.thread as UploadThread;
    this.thread = null;
    if (this.failure !== null || this.socket.destroyed) return this.threadDone(ECANCELED, 0, false);
    const running = new BigInt64Array(1);
    let job: TransferJob;
    try {
      job = thread.binding.receive(thread.socketFd, thread.fileFd, this.pos, thread.stalledMs, running, (errno, n, disk) => this.threadDone(errno, n, disk), true);
    } catch {
      // No thread (EAGAIN, EMFILE): the upload goes on here.
      releaseThread();
      this.writing = false;
      this.socket.setTimeout(thread.stalledMs);
      return this.resumeReading();
    }
    this.progress.running = running;
    // Nothing reads into our buffers until the job ends (and then only the end or nothing).
    giveBack(this.bufs);
    this.returned = true;
    // An abort (ABOR, a closed control connection, shutdown) destroys the socket: the job's copy
    // is shut down, which ends its wait. Bound, not an arrow (test/hotpath.test.ts).
    this.cancelThread = thread.binding.cancel.bind(null, job);
    this.socket.once("close", this.cancelThread);
  }

  /** The thread is done: its bytes are in the file (or it failed), and the socket is ours again. */
  private threadDone(errno: number, n: number, disk: boolean): void {
    releaseThread();
    this.writing = false;
    this.progress.running = null;
    this.pos += n;
    this.progress.written += n;
    if (this.cancelThread !== null) this.socket.removeListener("close", this.cancelThread);
    if (errno === 0) return this.end();
    if (disk) this.diskFailed = true;
    this.fail(jobError(errno, disk ? "write" : "recv"));
  }

  private end(): void {
    this.ended = true;
    if (!this.writing && this.fill > 0 && !this.diskFailed) this.flushStaged();
    this.settle();
  }
}

/** Writes all `n` bytes of `buf` at `pos` (a regular file may take fewer at once). Its error tells
 * how many were written before it (fs/quick.ts writtenBefore). */
async function writeAll(handle: FileLike, buf: Buffer, n: number, pos: number): Promise<void> {
  let done = 0;
  while (done < n) {
    let bytesWritten: number;
    try {
      ({ bytesWritten } = await quickWrite(handle, buf, done, n - done, pos + done));
    } catch (err) {
      throw wroteFirst(err, done);
    }
    if (bytesWritten <= 0) throw wroteFirst(Object.assign(new Error("short write"), { code: "EIO" }), done);
    done += bytesWritten;
  }
}

/** What receiveRaw did: bytes written to the file, and whether the client's end came (the
 * caller closes the connection once its reply is out); otherwise the rest is the `Socket`'s to
 * read. */
export interface RawOutcome {
  readonly written: number;
  readonly ended: boolean;
}

/** Read buffers of receiveRaw kept for later uploads. */
const rawPool: Buffer[] = [];
const NO_BYTES = Buffer.alloc(0);

/**
 * A plain upload on a connection as accepted (data/raw.ts), read from its descriptor without a
 * `net.Socket`: the addon says when it can be read (native/watch.c), and each read, into one reused
 * buffer, is written to `handle` at once (fs/quick.ts writeNow), as receiveDirect does. At the
 * client's end the connection is checked not to have been reset (as resetCheck does for a Socket:
 * a write of no bytes fails on a reset connection) and the outcome says `ended`; the connection
 * stays open for the caller to close after its reply, so that the client reads the 226 before our
 * FIN. A small file thus costs no stream, no events and no Socket. After READ_SIZE bytes, or a
 * write that must go through the pool (a slow disk), the rest is left to the `Socket` (`ended`
 * false); likewise, with nothing read, where the addon cannot watch the socket.
 *
 * `progress.written` counts the bytes written (STAT). `stalled()` is called after `stalledMs`
 * without data (the caller aborts the transfer, which closes the connection). Rejects with the
 * socket's error (ECONNRESET), a premature close (the connection closed by an abort) or the file's
 * write error, only once no write is in flight; what was received is in the file by then (an
 * aborted new file is kept for resuming). The caller closes the connection then.
 */
export function receiveRaw(
  conn: RawData,
  handle: FileLike,
  position: number,
  progress: DirectProgress,
  stalledMs: number,
  stalled: () => void,
): Promise<RawOutcome> {
  return new Promise<RawOutcome>((resolve, reject) => new RawReceive(conn, handle, position, progress, stalledMs, stalled, resolve, reject).start());
}

/** One receiveRaw (a class: see DirectReceive). */
class RawReceive {
  private readonly buf = rawPool.pop() ?? Buffer.allocUnsafe(READ_SIZE);
  private pos: number;
  /** No more reads: the end, the hand-over or a failure came. */
  private stopped = false;
  private timer: NodeJS.Timeout | null = null;
  private readonly onReadable: (status: number) => void;
  private readonly onGone: () => void;

  constructor(
    private readonly conn: RawData,
    private readonly handle: FileLike,
    position: number,
    private readonly progress: DirectProgress,
    private readonly stalledMs: number,
    private readonly stalled: () => void,
    private readonly resolve: (r: RawOutcome) => void,
    private readonly reject: (err: unknown) => void,
  ) {
    this.pos = position;
    this.onReadable = (status) => this.readable(status);
    this.onGone = () => this.stop(prematureClose(), false);
  }

  start(): void {
    if (!this.conn.watch(this.onReadable, this.onGone)) return this.stop(null, false);
    if (this.stalledMs > 0) {
      this.timer = setTimeout(this.stalled, this.stalledMs);
      this.timer.unref();
    }
  }

  /** The socket can be read: bytes, the client's end, or an error. libuv reports an error as
   * EBADF and stops watching: the reads say what it is (the bytes before a reset come first, then
   * ECONNRESET). */
  private readable(status: number): void {
    if (this.stopped) return;
    const fd = this.conn.fd;
    const buf = this.buf;
    for (;;) {
      const n = tryRead(fd, buf, 0, buf.length);
      if (n < 0) {
        if (n !== NEG_EAGAIN) return this.stop(sysError(n, "read"), false);
        // An error reported and none to read (libuv stopped watching): the connection failed.
        if (status < 0) return this.stop(prematureClose(), false);
        break;
      }
      if (n === 0) return this.stop(null, true);
      try {
        if (!writeNow(this.handle, buf, 0, n, this.pos)) return void this.handOver(n);
      } catch (err) {
        // What a full disk took of the read is in the file: counted, as in handOver.
        this.progress.written += writtenBefore(err);
        return this.stop(err, false);
      }
      this.pos += n;
      this.progress.written += n;
      if (this.progress.written >= READ_SIZE) return this.stop(null, false);
    }
    this.timer?.refresh();
  }

  /** A read the disk did not take at once: written through the pool, then the rest is the
   * Socket's (or the write's error). */
  private async handOver(n: number): Promise<void> {
    this.halt();
    try {
      // Counted as each write lands: a failure part-way reports what did.
      for (let at = 0; at < n; ) {
        const { bytesWritten } = await quickWrite(this.handle, this.buf, at, n - at, this.pos + at);
        at += bytesWritten;
        this.progress.written += bytesWritten;
      }
    } catch (err) {
      return this.settle(err, false);
    }
    this.settle(null, false);
  }

  /** No more reads: the client's end (`ended`), the hand-over, or `failure`. */
  private stop(failure: unknown, ended: boolean): void {
    if (this.stopped) return;
    this.halt();
    if (ended && failure === null) {
      try {
        writeNowAt(this.conn.fd, NO_BYTES, 0, 0, null);
      } catch (err) {
        failure = err;
      }
    }
    this.settle(failure, ended);
  }

  private halt(): void {
    this.stopped = true;
    this.conn.unwatch();
    if (this.timer) clearTimeout(this.timer);
  }

  private settle(failure: unknown, ended: boolean): void {
    if (rawPool.length < POOL_MAX) rawPool.push(this.buf);
    if (failure !== null) this.reject(failure);
    else this.resolve({ written: this.progress.written, ended });
  }
}
