/**
 * The stall clock of a transfer that writes to its data connection (a download, a listing):
 * limits.stalledTimeout after the socket last moved a byte, the transfer is given up.
 *
 * Not socket.setTimeout: Node passes over a socket's idle timeout when the size of its write
 * queue is not what it was when its latest write was dispatched (its sign of a large write still
 * going out), even when nothing has moved since. A download whose client stopped reading had
 * always moved part of its last write after dispatching it, so it was given up only after about
 * twice the limit, holding its data port, its file and its buffers all that time. Here the
 * socket's counters and queues are looked at every quarter of the limit (at most every second):
 * any change in them since the last look is a move; none for the whole limit is a stall. Timed on
 * the monotonic clock: a wall clock set back (NTP, a restored virtual machine) would otherwise hold
 * a dead transfer, its port and its file for as long again, and one set forward cut a live one.
 */
import type { Socket } from "node:net";

/** Longest time between two looks (ms): a stall is seen at most this long after the limit. */
const LOOK_MAX_MS = 1000;

/** What a socket's handle says of its queue (TCP, or TLS with the TCP handle under it). */
interface QueueHandle {
  readonly writeQueueSize?: number;
  readonly _parent?: { readonly writeQueueSize?: number } | null;
}

/** A running stall clock; stop() once the transfer is over. A class, not closures: one is made
 * per transfer (test/hotpath.test.ts). */
export class StallClock {
  private readonly timer: NodeJS.Timeout;
  /** The socket's counters and queues at the last move seen (see look). */
  private readonly seen = [0, 0, 0, 0, 0];
  private since: number;
  private stopped = false;
  /** The transfer itself is waiting (bandwidth pacing): no stall is counted meanwhile. */
  private held = false;

  constructor(
    private readonly socket: Socket,
    private readonly ms: number,
    private readonly onStall: () => void,
  ) {
    this.moved();
    this.since = performance.now();
    this.timer = setInterval(this.look.bind(this), Math.max(1, Math.min(LOOK_MAX_MS, Math.floor(ms / 4))));
    this.timer.unref();
  }

  /** The transfer is over (or failed): no stall is called any more. */
  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    clearInterval(this.timer);
  }

  /** The transfer waits on its own account (`on`, a bandwidth limit's pacing), or no longer: a
   * wait longer than the limit is no stall, and the limit runs again from its end. */
  hold(on: boolean): void {
    this.held = on;
    if (!on) this.since = performance.now();
  }

  private look(): void {
    if (this.stopped) return;
    if (this.socket.destroyed) return this.stop();
    const now = performance.now();
    if (this.held) {
      this.since = now;
      return;
    }
    if (this.moved()) this.since = now;
    else if (now - this.since >= this.ms) {
      this.stop();
      this.onStall();
    }
  }

  /** Notes the socket's bytes read and written, and what it still holds for sending: in its
   * stream, in its handle's queue and, for TLS, in the queue of the TCP handle under it (which
   * shrinks as the kernel takes the encrypted bytes). True when any of them changed. */
  private moved(): boolean {
    const s = this.socket;
    const h = (s as unknown as { _handle?: QueueHandle | null })._handle;
    const seen = this.seen;
    let changed = false;
    changed = note(seen, 0, s.bytesRead) || changed;
    changed = note(seen, 1, s.bytesWritten ?? 0) || changed;
    changed = note(seen, 2, s.writableLength) || changed;
    changed = note(seen, 3, h?.writeQueueSize ?? 0) || changed;
    changed = note(seen, 4, h?._parent?.writeQueueSize ?? 0) || changed;
    return changed;
  }
}

/** Sets `seen[i]` to `value`; true when it was another. */
function note(seen: number[], i: number, value: number): boolean {
  if (seen[i] === value) return false;
  seen[i] = value;
  return true;
}
