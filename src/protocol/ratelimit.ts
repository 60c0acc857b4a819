/**
 * A token bucket (issue "Abuse resistance": command-rate limit): `burst` tokens at most, refilled at
 * `rate` per second. Pure apart from the clock, which tests may pass in.
 */

import { MAX_TIMER_MS } from "../config/units.ts";

/** The default clock: one function for every bucket (two per session), not a closure each. */
const clock = (): number => performance.now();

/** Tokens refilled over time, taken one per command. */
export class TokenBucket {
  #tokens: number;
  #last: number;

  /** A full bucket of `burst` tokens refilling at `rate` per second. */
  constructor(
    private readonly rate: number,
    private readonly burst: number,
    private readonly now: () => number = clock,
  ) {
    this.#tokens = burst;
    this.#last = now();
  }

  /** Takes one token; false (taking nothing) when the bucket is empty. */
  take(): boolean {
    this.#refill();
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Milliseconds until one token is there (0 when one is there now), at most the longest timer
   * Node keeps (a longer one fires at once, with a warning each time): a caller that waits this
   * long checks again. */
  msUntilToken(): number {
    this.#refill();
    return this.#tokens >= 1 ? 0 : Math.min(Math.ceil(((1 - this.#tokens) / this.rate) * 1000), MAX_TIMER_MS);
  }

  #refill(): void {
    const t = this.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((t - this.#last) / 1000) * this.rate);
    this.#last = t;
  }
}
