/**
 * Listings of large directories, bounded server-wide. A listing holds all of its directory in
 * memory (the entries, then the lines) until it is sent: a directory of 200,000 files costs tens of
 * megabytes per listing, and dozens of sessions listing it at once exhausted the heap and took the
 * process down. A directory whose size on disk (st_size, which grows with its entries) is above
 * `largeBytes` is listed only within a budget of such bytes in flight; a listing that cannot get
 * its share within `waitMs` is refused with 450 (try again), never left to wait unbounded. Small
 * directories, nearly every listing, never wait.
 */
import { FtpError } from "../protocol/errors.ts";

/** The gate's settings (tests change them). */
export const listingLimits = {
  /** Directories larger than this (st_size, bytes) go through the gate. */
  largeBytes: 64 * 1024,
  /** Directory bytes of large listings in flight at once; one larger than this runs alone. */
  budgetBytes: 16 * 1024 * 1024,
  /** Longest wait for a share (ms) before 450. */
  waitMs: 30_000,
};

interface Waiter {
  readonly weight: number;
  readonly grant: (release: () => void) => void;
  timer: NodeJS.Timeout | null;
}

let inFlight = 0;
const queue: Waiter[] = [];

const NO_RELEASE = (): void => undefined;

/**
 * Waits for a share for a directory of `dirBytes`; resolves with its release (to call once the
 * listing is sent, or has failed). Immediate, with nothing to release, for a small directory.
 * First come, first served: a large listing is not overtaken by later smaller ones.
 */
export function admitListing(dirBytes: number): Promise<() => void> {
  const { largeBytes, budgetBytes, waitMs } = listingLimits;
  if (dirBytes <= largeBytes) return Promise.resolve(NO_RELEASE);
  const weight = Math.min(dirBytes, budgetBytes);
  if (queue.length === 0 && inFlight + weight <= budgetBytes) return Promise.resolve(take(weight));
  return new Promise((resolve, reject) => {
    const waiter: Waiter = { weight, grant: resolve, timer: null };
    waiter.timer = setTimeout(() => {
      const i = queue.indexOf(waiter);
      if (i >= 0) queue.splice(i, 1);
      reject(new FtpError(450, "Too many large directory listings in progress; try again later"));
      grantWaiting();
    }, waitMs);
    queue.push(waiter);
  });
}

/** One listing's share: JailedFs.list calls `admit` with the directory's size before reading it;
 * `release` (once the listing is sent or has failed) gives the share back. A class, not closures,
 * since it is made per listing (test/hotpath.test.ts). */
export class ListingTicket {
  #release: (() => void) | null = null;

  /** Nothing to wait for (undefined) for a small directory; else resolves once admitted. */
  admit(dirBytes: number): Promise<void> | undefined {
    if (dirBytes <= listingLimits.largeBytes) return undefined;
    return admitListing(dirBytes).then((release) => void (this.#release = release));
  }

  release(): void {
    const r = this.#release;
    this.#release = null;
    r?.();
  }
}

/** Large-directory bytes being listed now (for tests). */
export function listingBytesInFlight(): number {
  return inFlight;
}

function take(weight: number): () => void {
  inFlight += weight;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    inFlight -= weight;
    grantWaiting();
  };
}

function grantWaiting(): void {
  const { budgetBytes } = listingLimits;
  while (queue.length > 0) {
    const next = queue[0] as Waiter;
    if (inFlight > 0 && inFlight + next.weight > budgetBytes) return;
    queue.shift();
    if (next.timer) clearTimeout(next.timer);
    next.grant(take(next.weight));
  }
}
