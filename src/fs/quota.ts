/**
 * Storage quotas (issue "Abuse resistance" part 4): bytes and regular files per home. A home is
 * counted once, when first needed (one scan shared by every session of the server), then kept up
 * to date by the commands that change it: uploads (what their own file holds at their end, less
 * what was counted of it: LiveFile), DELE, and RNTO over an existing file. It is recounted in the background at a login once the count is older than
 * `quota.rescanAfter`, which also picks up changes made outside FTP. Nothing is persisted: a count
 * kept on disk would go stale exactly when the home is changed behind the server's back, and the
 * first scan after a start costs one walk of the home, with bounded concurrency.
 */
import type { Stats } from "node:fs";
import type { Config } from "../config/schema.ts";
import { formatSize } from "../config/units.ts";
import { FtpError } from "../protocol/errors.ts";
import { holdEntry, holdTarget } from "./pin.ts";
import type { RealPath, VirtualPath } from "./types.ts";
import { Limiter, scanUsage, type Usage } from "./usage.ts";

/** Filesystem calls in flight across every scan of the server. */
const SCANS_CONCURRENCY = 16;
/** A first count that raced with changes is taken again, at most this many times. */
const SCAN_RETRIES = 3;

/** The quota of one user; 0 = unlimited. */
export interface QuotaLimits {
  readonly bytes: number;
  readonly files: number;
}

/** What an upload is about to do to its home, known before its first byte. */
export interface UploadIntent {
  /** Bytes of the target that the upload drops (a replaced file's size; beyond a REST offset). */
  readonly freed: number;
  /** The upload adds a file to the home (its target does not exist yet). */
  readonly newFile: boolean;
  /** The size announced by ALLO, if any. */
  readonly announced: number | null;
  /** The file whose bytes `freed` counts (the target as it was at the admission); null when none. */
  readonly target: Stats | null;
  /** The upload frees that file by renaming over its name (a replacing STOR), rather than by
   * cutting the file itself (REST+STOR, written in place). */
  readonly byName: boolean;
}

/** One admitted upload's share of its home's quota. */
export interface Reservation {
  /** Counts `n` more bytes received; throws FtpError 552 once the home would exceed its quota. */
  take(n: number): void;
  /** The upload is over; `change` is what it really did to the home. Idempotent. */
  finish(change: Usage): void;
}

/**
 * A file that running uploads write, from their open to their end, by inode: what of it the count
 * holds (`base`: its size and 1 when it existed before, nothing for a new or temp file). Another
 * session's DELE, RNTO or replacing upload that removes it takes only that out, since the bytes
 * written meanwhile were never counted, and the uploads then add nothing for it: the count
 * follows the file, wherever it is renamed to and whoever removes it.
 */
export class LiveFile {
  /** Uploads writing it now (two APPEs, say). */
  users = 1;
  /** Removed (unlinked) by another command while written: its uploads add nothing for it. */
  removed = false;
  /** The largest size its ended uploads saw (each measures before it closes). */
  size = 0;
  /** Two uploads have written it at once (two APPEs, say): one stopped by the quota cannot cut it
   * back to where it began without cutting away what the other wrote after that point. */
  shared = false;

  constructor(
    readonly key: string,
    readonly base: Usage,
  ) {}

  /** One of its uploads ended, leaving it `size` bytes long and with `nlink` links (0: removed). */
  ended(size: number, nlink: number): void {
    if (size > this.size) this.size = size;
    if (nlink === 0) this.removed = true;
  }
}

/**
 * What a running upload counts on freeing of one file (UploadIntent.freed), by the file's inode.
 * It is given up when another command removes that file first (DELE, RNTO onto it, another upload
 * renamed over it) or, for an upload that frees it by renaming over its name, moves it to another
 * name: the upload frees nothing then, and its bytes count in full, so that no session stores past
 * the quota on the strength of a file that stays or was taken out of the count already.
 */
class Credit {
  constructor(
    readonly key: string,
    /** Bytes still credited; 0 once given up. */
    public bytes: number,
    readonly byName: boolean,
  ) {}
}

const NOTHING: Usage = { bytes: 0, files: 0 };

/** The key of a file in the registry of live files. */
function inodeKey(s: Stats): string {
  return `${s.dev}:${s.ino}`;
}

/** The counted usage of one home. */
export class HomeUsage {
  private counted: Usage | null = null;
  /** When the count was taken, on the monotonic clock: the wall clock set back (NTP, a restored
   * virtual machine) would put the recount at login off for as long as it went back. */
  private scannedAt = 0;
  private scanning: Promise<void> | null = null;
  /** Bumped by every change, so a count that raced with one is known to be stale. */
  private changes = 0;
  /** Bytes received by running uploads minus what they free; files they add. */
  private inflight = { bytes: 0, files: 0 };
  private uploads = 0;
  /** A recount was asked for while uploads ran: it starts when the last one ends. */
  private recountWanted = false;
  /** The files running uploads write (LiveFile), by inode. */
  private readonly live = new Map<string, LiveFile>();
  /** What running uploads count on freeing (Credit), by inode. */
  private readonly credits = new Map<string, Credit[]>();

  constructor(
    private readonly root: string,
    private readonly limiter: Limiter,
  ) {}

  /** Resolves once the home has been counted, and any count under way is done. */
  async ready(): Promise<Usage> {
    if (this.scanning) await this.scanning;
    while (this.counted === null) await (this.scanning ?? this.scan(true));
    return this.current;
  }

  /** Counted bytes and files, running uploads included. */
  get current(): Usage {
    const c = this.counted ?? { bytes: 0, files: 0 };
    return { bytes: c.bytes + this.inflight.bytes, files: c.files + this.inflight.files };
  }

  /** Applies a change made by a command (DELE, RNTO over a file, a finished upload). */
  apply(change: Usage): void {
    this.changes++;
    if (this.counted === null) return;
    this.counted = {
      bytes: Math.max(0, this.counted.bytes + change.bytes),
      files: Math.max(0, this.counted.files + change.files),
    };
  }

  /** An upload has opened the file with stats `s` (from its descriptor); `base` is what the count
   * holds of it. A second upload of the same file shares the first one's LiveFile. */
  track(s: Stats, base: Usage): LiveFile {
    const key = inodeKey(s);
    const known = this.live.get(key);
    if (known) {
      known.users++;
      known.shared = true;
      return known;
    }
    const file = new LiveFile(key, base);
    this.live.set(key, file);
    return file;
  }

  /** An upload of `file` is over; true when it was the last one writing it. */
  untrack(file: LiveFile): boolean {
    if (--file.users > 0) return false;
    if (this.live.get(file.key) === file) this.live.delete(file.key);
    return true;
  }

  /** What the count loses now that the entry with lstat `s` is gone (DELE, RNTO or an upload's
   * rename over it): a file running uploads write loses only what was counted of it, and is
   * marked removed; a regular file its size; anything else nothing. */
  removal(s: Stats | null): Usage {
    if (s === null || !s.isFile()) return NOTHING;
    this.forfeit(s, false);
    const file = this.live.get(inodeKey(s));
    if (!file) return { bytes: -s.size, files: -1 };
    file.removed = true;
    return { bytes: -file.base.bytes, files: -file.base.files };
  }

  /** The regular file with lstat `s` has been renamed (RNTO): an upload that was to replace it
   * by its old name frees nothing now. */
  moved(s: Stats): void {
    this.forfeit(s, true);
  }

  /** Gives up the credits running uploads hold on the file with stats `s` (only those that free
   * it by its name when `byNameOnly`): what they write counts in full from now on. */
  private forfeit(s: Stats, byNameOnly: boolean): void {
    const list = this.credits.get(inodeKey(s));
    if (list === undefined) return;
    for (const c of list) {
      if (byNameOnly && !c.byName) continue;
      this.inflight.bytes += c.bytes;
      c.bytes = 0;
    }
  }

  /** Records the credit of an upload that frees `bytes` of the file with stats `s`. */
  private credit(s: Stats, bytes: number, byName: boolean): Credit {
    const c = new Credit(inodeKey(s), bytes, byName);
    const list = this.credits.get(c.key);
    if (list === undefined) this.credits.set(c.key, [c]);
    else list.push(c);
    return c;
  }

  /** Forgets a credit whose upload is over. */
  private uncredit(c: Credit): void {
    const list = this.credits.get(c.key);
    if (list === undefined) return;
    const rest = list.filter((x) => x !== c);
    if (rest.length === 0) this.credits.delete(c.key);
    else this.credits.set(c.key, rest);
  }

  /** Recounts in the background when the count is older than `maxAgeMs` (once no upload runs:
   * a running upload's bytes are not on disk under their final name yet). */
  refreshIfOlder(maxAgeMs: number): void {
    if (this.scanning || this.counted === null) return;
    if (performance.now() - this.scannedAt < maxAgeMs) return;
    if (this.uploads > 0) this.recountWanted = true;
    else void this.scan(false);
  }

  /** Admits an upload or throws FtpError 552 (before any byte moves: RFC 959 §4.2.2). */
  admit(limits: QuotaLimits, intent: UploadIntent): Reservation {
    const now = this.current;
    const base = now.bytes - intent.freed;
    if (limits.bytes > 0 && (intent.announced !== null ? base + intent.announced > limits.bytes : base >= limits.bytes)) {
      throw new FtpError(552, `Quota exceeded: ${formatSize(now.bytes)} of ${formatSize(limits.bytes)} used`);
    }
    if (limits.files > 0 && intent.newFile && now.files >= limits.files) {
      throw new FtpError(552, `Quota exceeded: ${now.files} of ${limits.files} files stored`);
    }
    return this.reserve(limits, intent);
  }

  private reserve(limits: QuotaLimits, intent: UploadIntent): Reservation {
    const files = intent.newFile ? 1 : 0;
    const credit = intent.target !== null && intent.freed > 0 ? this.credit(intent.target, intent.freed, intent.byName) : null;
    // RFC 959 §4.1.3: ALLO reserves storage for the file to come. The size it announced is held
    // from the admission, so that no other session's upload is admitted into that room meanwhile;
    // what the upload receives counts once it goes past it.
    const announced = intent.announced ?? 0;
    let taken = 0;
    let done = false;
    this.uploads++;
    this.inflight.bytes += announced - intent.freed;
    this.inflight.files += files;
    return {
      take: (n) => {
        this.inflight.bytes += Math.max(announced, taken + n) - Math.max(announced, taken);
        taken += n;
        if (limits.bytes > 0 && this.current.bytes > limits.bytes) {
          throw new FtpError(552, `Quota exceeded: storage limit of ${formatSize(limits.bytes)} reached; upload removed`);
        }
      },
      finish: (change) => {
        if (done) return;
        done = true;
        this.uploads--;
        // What this upload holds of inflight: its bytes (or the size its ALLO announced, if more),
        // less the credit it still has (a credit given up went back to inflight already).
        this.inflight.bytes -= Math.max(announced, taken) - (credit !== null ? credit.bytes : intent.freed);
        if (credit !== null) this.uncredit(credit);
        this.inflight.files -= files;
        this.apply(change);
        if (this.uploads === 0 && this.recountWanted && !this.scanning) {
          this.recountWanted = false;
          void this.scan(false);
        }
      },
    };
  }

  /** Counts the home. A first count is retried when changes raced with it; a recount that raced
   * with changes is dropped (the incremental count stays, and is checked again at a later login).
   * A walk that stopped part-way (out of descriptors, or at a directory of the server's own it may
   * not read or search: fs/usage.ts) is no count: a first one is a 451 for the upload
   * that waits for it (the next one counts again), a recount keeps the count there was. */
  private scan(first: boolean): Promise<void> {
    const run = async (): Promise<void> => {
      for (let tries = 0; ; tries++) {
        const before = this.changes;
        const usage = await scanUsage(this.root, this.limiter);
        if (usage.partial) {
          if (!first) return;
          const why = usage.unreadable ? "a directory of the server's own in the home may not be read or searched (its mode)" : "out of descriptors, or nested too deep";
          throw new FtpError(451, "Local error: the home's usage could not be counted", `the walk of the home stopped part-way: ${why}`);
        }
        if (before === this.changes || (first && tries >= SCAN_RETRIES)) {
          this.counted = usage;
          this.scannedAt = performance.now();
          return;
        }
        if (!first) return;
      }
    };
    this.scanning = run().finally(() => (this.scanning = null));
    return this.scanning;
  }
}

/** The per-server registry of counted homes, shared by all sessions (kept across reloads). */
export class Quotas {
  private readonly homes = new Map<string, HomeUsage>();
  private readonly limiter = new Limiter(SCANS_CONCURRENCY);

  constructor(
    /** The live config's quota section. */
    private readonly settings: () => Config["quota"],
  ) {}

  /** The quota of a user: their own limits where > 0, else the config's defaults. */
  limitsFor(own: { readonly quotaBytes: number; readonly quotaFiles: number }): QuotaLimits {
    const s = this.settings();
    return { bytes: own.quotaBytes > 0 ? own.quotaBytes : s.bytes, files: own.quotaFiles > 0 ? own.quotaFiles : s.files };
  }

  /** The usage of the home at real path `root`, counted on first need. */
  home(root: string): HomeUsage {
    let h = this.homes.get(root);
    if (!h) {
      h = new HomeUsage(root, this.limiter);
      this.homes.set(root, h);
    }
    return h;
  }

  /** The usage of `root` if it is being tracked; null otherwise, so homes without a quota cost nothing. */
  tracked(root: string): HomeUsage | null {
    return this.homes.get(root) ?? null;
  }

  /** At a login with a quota: starts the first count, or a recount when the count is too old. */
  prime(root: string): void {
    const h = this.home(root);
    h.refreshIfOlder(this.settings().rescanAfter * 1000);
    void h.ready().catch(() => undefined);
  }
}

/** The stats of the regular file at `v` in the jail `root`, or null when there is none (missing,
 * a directory, refused). `follow`: through a final symlink, as an upload writes; without it, the
 * entry itself, as DELE and RNTO act on it (a symlink is not a counted file). */
export async function fileStatsAt(root: RealPath, v: VirtualPath, follow: boolean): Promise<Stats | null> {
  try {
    const s = follow ? await holdTarget(root, v).then((h) => (h.release(), h.stats)) : await holdEntry(root, v).then((e) => (e.dir.release(), e.lstat));
    return s?.isFile() ? s : null;
  } catch {
    return null;
  }
}
