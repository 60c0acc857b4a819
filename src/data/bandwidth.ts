/**
 * Bandwidth limits (issue "Abuse resistance" part 5): token buckets per transfer, per user, per
 * client address and for the whole server, up and down separately. A transfer takes its bytes
 * from every bucket that applies, so the slowest level wins; buckets shared by several transfers
 * are shared fairly, because each transfer waits out the debt it added, in turn.
 *
 * Rates are read from the live config on every refill, so a reload (SIGHUP) changes the pace of
 * running transfers. A transfer that starts with no limit at any level gets no pacing at all
 * (zero cost on the data path) and stays unlimited until it ends.
 */
import type { Config } from "../config/schema.ts";
import { MAX_TIMER_MS } from "../config/units.ts";
import type { TransferHook } from "./hook.ts";

/** Read size of an unlimited transfer (the transfer loop's own chunk). */
const MAX_CHUNK = 1 << 20;
/** Smallest paced chunk: below this, syscalls cost more than smoothness gains. */
const MIN_CHUNK = 1024;
/** A bucket holds at most this many seconds' worth of tokens: the burst after an idle spell. */
const BURST_SECONDS = 0.1;

/** Direction of a transfer: "up" = upload (client to server), "down" = download. */
export type Direction = "up" | "down";

/** A token bucket whose rate (bytes/s, 0 = unlimited) is read anew on every use. Tokens may go
 * negative: a chunk larger than the burst is let through after a wait that repays the debt. */
export class TokenBucket {
  /** null until first used: a new bucket starts full. */
  private tokens: number | null = null;
  private last = 0;

  constructor(
    /** The current rate in bytes per second; 0 = unlimited. */
    readonly rate: () => number,
    private readonly now: () => number = performance.now.bind(performance),
  ) {}

  /** Takes `n` bytes' worth of tokens; returns the ms to wait before they may move (0 = now), at
   * most the longest timer Node keeps (a longer one fires at once, with a warning each time): a
   * reload lowering the rate while many transfers owe a shared bucket can make the debt last
   * longer. A caller that waited that long asks again with take(0), which takes nothing more and
   * returns what is left of the wait. */
  take(n: number): number {
    const rate = this.rate();
    const now = this.now();
    if (rate <= 0) {
      this.tokens = 0;
      this.last = now;
      return 0;
    }
    const burst = rate * BURST_SECONDS;
    const tokens = this.tokens === null ? burst : Math.min(burst, this.tokens + ((now - this.last) / 1000) * rate);
    this.last = now;
    this.tokens = tokens - n;
    return this.tokens >= 0 ? 0 : Math.min((-this.tokens / rate) * 1000, MAX_TIMER_MS);
  }

  /** True when the bucket holds its whole burst again (or was never used, or is unlimited): a
   * bucket made afresh now would be the same. */
  full(): boolean {
    const rate = this.rate();
    if (this.tokens === null || rate <= 0) return true;
    return this.tokens + ((this.now() - this.last) / 1000) * rate >= rate * BURST_SECONDS;
  }
}

/** Who is transferring, for the shared buckets. */
export interface TransferOwner {
  /** The user's name. */
  readonly user: string;
  /** The user's own rate for this direction (0 = the config's default). */
  readonly userRate: number;
  /** The client's IP address. */
  readonly address: string;
  /** When the session logged in (ms on a monotonic clock): of two sessions of the user, the one
   * logged in later read the users file later, and its own rate is the user's. */
  readonly loggedInAt: number;
}

/** A bucket shared by the transfers of one user or one address; dropped once none uses it and it is
 * full again. */
interface Shared {
  readonly bucket: TokenBucket;
  users: number;
  /** The user-specific rate of the latest login among the transfers seen (per-user buckets only). */
  override: number;
  /** When the session whose rate `override` is logged in. */
  since: number;
}

/** The server's buckets; one per server, kept across reloads. */
export class Bandwidth {
  private readonly users = new Map<string, Shared>();
  private readonly addresses = new Map<string, Shared>();
  private readonly global: Record<Direction, TokenBucket>;

  constructor(
    /** The live config's bandwidth section (the reloaded one once a reload happened). */
    private readonly settings: () => Config["bandwidth"],
  ) {
    this.global = {
      up: new TokenBucket(() => this.settings().globalUp),
      down: new TokenBucket(() => this.settings().globalDown),
    };
  }

  /** A hook pacing one transfer, or null when no level limits it now. */
  open(dir: Direction, owner: TransferOwner): TransferHook | null {
    const c = this.settings();
    const up = dir === "up";
    const limited =
      (up ? c.transferUp : c.transferDown) > 0 ||
      owner.userRate > 0 ||
      (up ? c.userUp : c.userDown) > 0 ||
      (up ? c.addressUp : c.addressDown) > 0 ||
      (up ? c.globalUp : c.globalDown) > 0;
    // Every transfer asks: the unlimited case makes no closure (test/hotpath.test.ts).
    if (!limited) return null;
    return this.paced(dir, owner);
  }

  /** open() for a transfer that some level limits. */
  private paced(dir: Direction, owner: TransferOwner): TransferHook {
    const key = dir === "up" ? "Up" : "Down";
    const rateOf = (level: "transfer" | "user" | "address"): (() => number) => () => this.settings()[`${level}${key}`];
    const userKey = `${dir}:${owner.user}`;
    const addressKey = `${dir}:${owner.address}`;
    const buckets = [
      new TokenBucket(rateOf("transfer")),
      this.join(this.users, userKey, rateOf("user"), owner.userRate, owner.loggedInAt),
      this.join(this.addresses, addressKey, rateOf("address"), 0, 0),
      this.global[dir],
    ];
    let released = false;
    return {
      chunkSize: () => chunkFor(buckets),
      take: (n) => buckets.reduce((wait, b) => Math.max(wait, b.take(n)), 0),
      release: () => {
        if (released) return;
        released = true;
        this.leave(this.users, userKey);
        this.leave(this.addresses, addressKey);
      },
    };
  }

  /** Shared buckets in use, or idle but not yet full again (for tests and diagnostics). */
  get sharedBuckets(): number {
    sweep(this.users);
    sweep(this.addresses);
    return this.users.size + this.addresses.size;
  }

  /** Joins the shared bucket `key` (made on first use); `override` > 0 replaces the config's rate.
   * `since`: when the session that brings `override` logged in. */
  private join(map: Map<string, Shared>, key: string, rate: () => number, override: number, since: number): TokenBucket {
    sweep(map);
    let shared = map.get(key);
    if (!shared) {
      const entry: Shared = { bucket: new TokenBucket(() => (entry.override > 0 ? entry.override : rate())), users: 0, override, since };
      shared = entry;
      map.set(key, shared);
    }
    shared.users++;
    // The latest login's own limit is the one in effect for the user (the users file may have
    // changed): a transfer of a session that logged in before it does not bring its older limit
    // back for all of the user's transfers (`berth user set` lowering a rate would otherwise be
    // undone by the next transfer of any session open since before the change).
    if (since >= shared.since) {
      shared.override = override;
      shared.since = since;
    }
    return shared.bucket;
  }

  private leave(map: Map<string, Shared>, key: string): void {
    const shared = map.get(key);
    if (!shared) return;
    // The bucket outlives its last transfer until it is full again: the next transfer of the same
    // user or address (the next of a series of small files, a REST for the next piece) pays what
    // this one left owing, instead of starting from a full burst (join sweeps it out later).
    if (--shared.users <= 0 && shared.bucket.full()) map.delete(key);
  }
}

/** Forgets the shared buckets no transfer uses that are full again. */
function sweep(map: Map<string, Shared>): void {
  for (const [key, shared] of map) if (shared.users <= 0 && shared.bucket.full()) map.delete(key);
}

/** About a tenth of a second at the slowest limited rate, within [MIN_CHUNK, MAX_CHUNK]. */
function chunkFor(buckets: readonly TokenBucket[]): number {
  let slowest = Infinity;
  for (const b of buckets) {
    const r = b.rate();
    if (r > 0 && r < slowest) slowest = r;
  }
  if (slowest === Infinity) return MAX_CHUNK;
  return Math.min(MAX_CHUNK, Math.max(MIN_CHUNK, Math.floor(slowest * BURST_SECONDS)));
}
