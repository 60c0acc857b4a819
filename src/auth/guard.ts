/**
 * Per-address failed-login policy (SPEC: repeated failures from one address are slowed and then
 * refused for a while). Failures are counted within a window of `banSeconds`; once an address
 * reaches `maxFailures` it is refused for `banSeconds`. Memory is bounded: past `maxEntries`
 * addresses the least recently touched one is forgotten.
 */
import type { LoginGuard } from "./types.ts";

/** Options of FailureGuard. */
export interface FailureGuardOptions {
  /** Failures within the window that trigger a ban. */
  readonly maxFailures: number;
  /** Length of the counting window and of a ban, in seconds. */
  readonly banSeconds: number;
  /** Clock in milliseconds; default Date.now. */
  readonly now?: (() => number) | undefined;
  /** Most addresses remembered at once; default 100,000. */
  readonly maxEntries?: number | undefined;
}

interface Entry {
  failures: number;
  /** When the first failure of the current window happened (ms). */
  windowStart: number;
  /** Refused until this time (ms); 0 when not banned. */
  bannedUntil: number;
}

/** Counts failed logins per address and bans an address that fails too often. */
export class FailureGuard implements LoginGuard {
  readonly #max: number;
  readonly #windowMs: number;
  readonly #now: () => number;
  readonly #cap: number;
  readonly #entries = new Map<string, Entry>();

  /** Creates a guard with the given thresholds. */
  constructor(opts: FailureGuardOptions) {
    this.#max = Math.max(1, opts.maxFailures);
    this.#windowMs = Math.max(0, opts.banSeconds) * 1000;
    this.#now = opts.now ?? Date.now;
    this.#cap = Math.max(1, opts.maxEntries ?? 100_000);
  }

  /** True while `address` is refused. */
  isBanned(address: string): boolean {
    const entry = this.#current(normalizeAddress(address));
    return entry !== undefined && entry.bannedUntil > this.#now();
  }

  /** Counts one failed login from `address`; bans it when it reaches the maximum. */
  recordFailure(address: string): void {
    const key = normalizeAddress(address);
    const now = this.#now();
    const entry = this.#current(key) ?? { failures: 0, windowStart: now, bannedUntil: 0 };
    entry.failures += 1;
    if (entry.failures >= this.#max && entry.bannedUntil <= now) entry.bannedUntil = now + this.#windowMs;
    this.#entries.delete(key);
    this.#entries.set(key, entry);
    this.#evict();
  }

  /** Clears the failure count of `address` after a good login (an active ban stays). */
  recordSuccess(address: string): void {
    const key = normalizeAddress(address);
    const entry = this.#current(key);
    if (entry !== undefined && entry.bannedUntil <= this.#now()) this.#entries.delete(key);
  }

  /** Failures of `address` in the current window (to slow down repeated failures). */
  failureCount(address: string): number {
    return this.#current(normalizeAddress(address))?.failures ?? 0;
  }

  /** Number of addresses remembered (for tests and metrics). */
  get size(): number {
    return this.#entries.size;
  }

  /** The entry of `key` if its window or ban is still running; drops it otherwise. */
  #current(key: string): Entry | undefined {
    const entry = this.#entries.get(key);
    if (entry === undefined) return undefined;
    const now = this.#now();
    const windowOver = now - entry.windowStart >= this.#windowMs;
    if (windowOver && entry.bannedUntil <= now) {
      this.#entries.delete(key);
      return undefined;
    }
    return entry;
  }

  /** Forgets the least recently touched addresses beyond the cap. */
  #evict(): void {
    for (const key of this.#entries.keys()) {
      if (this.#entries.size <= this.#cap) return;
      this.#entries.delete(key);
    }
  }
}

/** "::ffff:1.2.3.4" and "1.2.3.4" are the same client. */
export function normalizeAddress(address: string): string {
  return address.toLowerCase().startsWith("::ffff:") && address.includes(".") ? address.slice(7) : address;
}
