/**
 * The one hook point of the transfer loop for limits (issue "Abuse resistance", parts 4 and 5):
 * bandwidth pacing and the mid-transfer quota check. A transfer without any limit gets no hook, so
 * its data path is exactly the unlimited one: no extra stage, no per-chunk call.
 *
 * Contract for any transfer loop: read at most `chunkSize()` bytes at a time; before a chunk of
 * `n` bytes moves on (to the socket for a download, to the file for an upload) call `take(n)`,
 * wait the milliseconds it returns, and stop the transfer with the error it throws (an FtpError,
 * such as 552 for a quota). A wait is at most MAX_TIMER_MS; after a wait that long, call `take(0)`
 * and wait again what it returns, until it returns less (a debt can last longer than a timer).
 * When the loop's promise settles, no write to the file may be in flight.
 */
import { Transform, type TransformCallback } from "node:stream";
import { MAX_TIMER_MS } from "../config/units.ts";

/** Limits of one running transfer. */
export interface TransferHook {
  /** Largest chunk worth moving at once (about a tenth of a second at the slowest rate). */
  chunkSize(): number;
  /** Accounts for `n` bytes about to move; returns how many ms to wait before moving them, at most
   * MAX_TIMER_MS (take(0) then says what is left). Throws (an FtpError) when they must not move
   * at all. */
  take(n: number): number;
  /** The transfer is over (done, failed or aborted): shared state forgets it. Idempotent. */
  release(): void;
}

/** A pass-through stage that applies `hook` to every chunk, splitting large ones: delaying the
 * callback is what pauses the upstream side (the file read, or the data socket and with it TCP). */
export function hookStage(hook: TransferHook, waiting?: (on: boolean) => void): Transform {
  return new HookStage(hook, waiting);
}

class HookStage extends Transform {
  private timer: NodeJS.Timeout | null = null;

  /** `waiting(true)` when a chunk starts waiting for the hook, `waiting(false)` when it goes on. */
  constructor(
    private readonly hook: TransferHook,
    private readonly waiting?: (on: boolean) => void,
  ) {
    // A small writable buffer: the upstream is paused as soon as one chunk waits here.
    super({ writableHighWaterMark: 1, readableHighWaterMark: 1 });
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.pass(chunk, 0, cb);
  }

  override _destroy(err: Error | null, cb: (error?: Error | null) => void): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    cb(err);
  }

  private pass(chunk: Buffer, offset: number, cb: TransformCallback): void {
    let at = offset;
    while (at < chunk.length) {
      const piece = chunk.subarray(at, at + Math.max(1, this.hook.chunkSize()));
      at += piece.length;
      let wait: number;
      try {
        wait = this.hook.take(piece.length);
      } catch (err) {
        cb(err as Error);
        return;
      }
      if (wait >= 1) {
        this.waiting?.(true);
        this.hold(wait, piece, chunk, at, cb);
        return;
      }
      this.push(piece);
    }
    cb();
  }

  /** Waits `wait` ms, then moves `piece` and goes on with `chunk` from `next`. A wait as long as the
   * longest timer may not be all of it: the hook is asked again, and the piece waits on. */
  private hold(wait: number, piece: Buffer, chunk: Buffer, next: number, cb: TransformCallback): void {
    this.timer = setTimeout(() => {
      this.timer = null;
      if (this.destroyed) return;
      if (wait >= MAX_TIMER_MS) {
        let more: number;
        try {
          more = this.hook.take(0);
        } catch (err) {
          cb(err as Error);
          return;
        }
        if (more >= 1) {
          this.hold(more, piece, chunk, next, cb);
          return;
        }
      }
      this.waiting?.(false);
      this.push(piece);
      this.pass(chunk, next, cb);
    }, wait);
  }
}
