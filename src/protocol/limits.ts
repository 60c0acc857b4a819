/**
 * Where sessions meet the server's quotas and bandwidth buckets (issue "Abuse resistance", parts
 * 4 and 5): what an upload or a download may do, and how the home's counted usage follows DELE,
 * RNTO and uploads. Everything here is skipped, at the cost of a map lookup, for a user with no
 * quota and a transfer with no rate limit.
 */
import type { Stats } from "node:fs";
import { formatSize } from "../config/units.ts";
import type { Direction } from "../data/bandwidth.ts";
import type { TransferHook } from "../data/hook.ts";
import { READ_CHUNK, type Transfer } from "../data/transfer.ts";
import { fileStatsAt, type HomeUsage, type LiveFile, type QuotaLimits, type Reservation, type UploadIntent } from "../fs/quota.ts";
import { fstat, type FileLike } from "../fs/quick.ts";
import type { Replaced, Upload, UploadOptions, VirtualPath } from "../fs/types.ts";
import type { Usage } from "../fs/usage.ts";
import { FtpError } from "./errors.ts";
import type { Session } from "./session.ts";

/** The limits of one upload, from its admission (before 150) to its end. */
export interface UploadLimits {
  /** The transfer loop's hook, or null when nothing limits this upload. */
  readonly hook: TransferHook | null;
  /** The upload's file is open: a counted home follows that file (by its descriptor) to the end,
   * wherever another session renames it and whoever removes it. `t` counts the bytes written. */
  opened(up: Upload, t: Transfer): Promise<void>;
  /** Whether opened() has anything to do (a counted home): without, it need not be awaited. */
  readonly follows: boolean;
  /** Makes the upload final (Upload.commit), the size of its file noted first. */
  commit(up: Upload): Promise<void>;
  /** Cleans up after a failed upload. One stopped by the quota loses what it wrote (RFC 959
   * §4.2.2: 552 exceeded storage allocation): a new file goes, an appended or resumed one is cut
   * back to where it started, a replacing temp file goes and the replaced file stays. */
  abort(up: Upload): Promise<void>;
  /** The upload is over: the home's count takes what it really changed; buckets are released. */
  finish(): Promise<void>;
}

/** Starts a session's quota count at login, when the user has a quota (or recounts an old one). */
export function primeQuota(s: Session): void {
  if (!s.user || !s.fs) return;
  const limits = s.ctx.quotas.limitsFor(s.user.limits);
  if (limits.bytes > 0 || limits.files > 0) s.ctx.quotas.prime(s.fs.root);
}

/** The pacing of a download, or null when no rate applies. The caller releases it. */
export function downloadHook(s: Session): TransferHook | null {
  return pace(s, "down");
}

/** Admits an upload of `path`: throws FtpError 552 when it cannot fit (before 150, so no data
 * connection is used for nothing). `announced` is the ALLO size, if any. */
export async function admitUpload(
  s: Session,
  path: VirtualPath,
  opts: UploadOptions,
  announced: number | null,
): Promise<UploadLimits> {
  const limits = s.ctx.quotas.limitsFor(userLimits(s));
  const root = s.requireFs().root;
  const home = quotaHome(s, limits, root);
  if (home) await home.ready();
  const before = home ? await fileStatsAt(root, path, true) : null;
  const reservation = home?.admit(limits, intentOf(opts, before, announced)) ?? null;
  const pacing = pace(s, "up");
  let exceeded = false;
  // A home only tracked (its quota was lifted) is counted at the end, with no per-chunk check.
  const checked = limits.bytes > 0 ? reservation : null;
  const end = new UploadEnd();
  const hook = combine(pacing, checked, (err) => {
    exceeded = true;
    if (end.file?.shared === true) return keptOverQuota(limits);
    // The quota's own text says the upload was removed, true of a file it made or a temp file; a
    // file that was there (APPE, REST+STOR) is cut back to where the upload began, and stays.
    return end.inPlace ? cutOverQuota(limits, end.position) : err;
  });
  // Methods, not named arrows: see test/hotpath.test.ts.
  return {
    hook,
    follows: home !== null && reservation !== null,
    async opened(up, t) {
      if (!home || !reservation) return;
      const st = await fstatOrNull(up.handle);
      if (st === null) return;
      // What the count holds of the file: nothing of a file the upload made (its inode may be that
      // of one deleted since the admission); of one it writes into, the size it had when opened,
      // counted already: by the last count, or by the upload that made it, also when another
      // session made or replaced it after this upload's admission.
      const held = up.sizeAtOpen;
      end.file = home.track(st, held !== null ? { bytes: held, files: 1 } : NO_CHANGE);
      end.replaces = up.replaces;
      end.inPlace = held !== null;
      end.position = up.position;
      end.transfer = t;
    },
    async commit(up) {
      if (end.file) await end.measure(up);
      await up.commit();
      end.committed = true;
    },
    async abort(up) {
      if (end.file) await end.measure(up);
      // The transfer loop has settled, so no write is in flight: cutting the file back is final.
      // Not of a file another upload writes as well (two APPEs): what it wrote after this one began
      // would go too, though its client is told 226; what this one wrote stays, counted.
      if (exceeded && end.file?.shared !== true) {
        end.rolledBack = true;
        await up.rollback();
      } else await up.abort();
    },
    async finish() {
      pacing?.release();
      if (!home || !reservation) return;
      reservation.finish(end.file ? end.change(home, end.file) : NO_CHANGE);
    },
  };
}

const NO_CHANGE: Usage = { bytes: 0, files: 0 };

/** How an upload ended, for the quota count: what it did to the home is read from its own file
 * (its descriptor's size before it closed) and from what its commit replaced, never from the path
 * at the end, which other sessions may have changed meanwhile. */
class UploadEnd {
  file: LiveFile | null = null;
  replaces: Replaced | null = null;
  transfer: Transfer | null = null;
  /** The file's size when the upload ended, and whether it still had a name (nlink > 0). */
  size: number | null = null;
  linked = true;
  /** Where its data started (a rollback cuts the file back to it). */
  position = 0;
  /** It writes into a file that was there before it (APPE, REST+STOR): a rollback keeps the file. */
  inPlace = false;
  committed = false;
  rolledBack = false;

  /** Notes the file's size before it is closed: its fstat, or where the descriptor is gone already
   * (a stream through the thread pool closes it with itself) where its data started plus what the
   * upload wrote. */
  async measure(up: Upload): Promise<void> {
    if (this.size !== null) return;
    const st = await fstatOrNull(up.handle);
    this.size = st !== null ? st.size : this.position + (this.transfer?.bytes ?? 0);
    this.linked = st === null || st.nlink > 0;
  }

  change(home: HomeUsage, file: LiveFile): Usage {
    const size = this.size;
    if (size !== null) file.ended(this.rolledBack ? this.position : size, this.linked ? 1 : 0);
    const last = home.untrack(file);
    if (this.replaces !== null) {
      // A temp file: nothing of it stays unless the commit renamed it over the target, which then
      // leaves the count (whatever was there by then).
      if (!this.committed) return NO_CHANGE;
      const gone = home.removal(this.replaces.stats);
      if (file.removed || size === null) return gone;
      return { bytes: size + gone.bytes, files: 1 + gone.files };
    }
    // Written in place: the last upload of the file counts what it holds now, unless it was
    // removed meanwhile (the remover took out what was counted of it) or by its upload (a
    // rollback of a new file; an aborted new file that got nothing).
    if (!last || file.removed || size === null) return NO_CHANGE;
    if (!this.committed && file.base.files === 0 && (this.rolledBack || file.size === 0)) return NO_CHANGE;
    return { bytes: file.size - file.base.bytes, files: 1 - file.base.files };
  }
}

async function fstatOrNull(handle: FileLike): Promise<Stats | null> {
  try {
    return await fstat(handle);
  } catch {
    return null;
  }
}

/** Before DELE or RNTO onto `path`: returns what to run once the entry is gone, so the count
 * loses the file that was there (nothing to do for an untracked home). */
export function beforeRemoving(s: Session, path: VirtualPath): Promise<() => void> {
  return beforeChanging(s, path, (home, st) => home.apply(home.removal(st)));
}

/** Before RNTO renames `from`: returns what to run once it has, so that an upload about to replace
 * the file by its old name no longer counts on freeing it (nothing to do for an untracked home). */
export function beforeMoving(s: Session, from: VirtualPath): Promise<() => void> {
  return beforeChanging(s, from, (home, st) => home.moved(st));
}

/** The file at `path` as it is before a command changes it, and `then` to run on it once it has;
 * nothing to run for a home no count tracks, or for no file there. */
async function beforeChanging(s: Session, path: VirtualPath, then: (home: HomeUsage, st: Stats) => void): Promise<() => void> {
  const fs = s.requireFs();
  const home = s.ctx.quotas.tracked(fs.root);
  if (!home) return () => undefined;
  const st = await fileStatsAt(fs.root, path, false);
  if (st === null) return () => undefined;
  return () => then(home, st);
}

/** The home's usage when a quota applies (counted first if need be) or it is tracked already. */
/** The count of the home an upload goes to: one with a quota, or one still counted since its
 * quota was lifted; null when nothing counts it. */
function quotaHome(s: Session, limits: QuotaLimits, root: string): HomeUsage | null {
  return limits.bytes > 0 || limits.files > 0 ? s.ctx.quotas.home(root) : s.ctx.quotas.tracked(root);
}

function userLimits(s: Session): { quotaBytes: number; quotaFiles: number } {
  return s.user?.limits ?? { quotaBytes: 0, quotaFiles: 0 };
}

function intentOf(opts: UploadOptions, before: Stats | null, announced: number | null): UploadIntent {
  const size = before?.size ?? null;
  if (opts.kind === "append") return { freed: 0, newFile: size === null, announced, target: null, byName: false };
  if (opts.offset > 0) return { freed: Math.max(0, (size ?? 0) - opts.offset), newFile: false, announced, target: before, byName: false };
  return { freed: size ?? 0, newFile: size === null, announced, target: before, byName: true };
}

function pace(s: Session, dir: Direction): TransferHook | null {
  const user = s.user;
  if (!user) return null;
  const userRate = dir === "up" ? user.limits.bandwidthUp : user.limits.bandwidthDown;
  return s.ctx.bandwidth.open(dir, { user: user.name, userRate, address: s.remoteAddress, loggedInAt: s.loggedInAt });
}

/** The 552 of an upload stopped by the quota whose bytes are kept (see UploadLimits.abort). */
function keptOverQuota(limits: QuotaLimits): FtpError {
  return new FtpError(552, `Quota exceeded: storage limit of ${formatSize(limits.bytes)} reached; what was received is kept, as another upload writes the same file`);
}

/** The 552 of an upload stopped by the quota that wrote into a file that was there: the file is
 * cut back to `position`, where the upload began, not removed. */
function cutOverQuota(limits: QuotaLimits, position: number): FtpError {
  return new FtpError(552, `Quota exceeded: storage limit of ${formatSize(limits.bytes)} reached; the data received was removed: the file ends where this upload began (${position} bytes)`);
}

/** One hook for pacing and quota; null when there is neither. `onExceeded` gets the quota's error
 * and returns the one the transfer fails with. */
function combine(pacing: TransferHook | null, quota: Reservation | null, onExceeded: (err: unknown) => unknown): TransferHook | null {
  if (!quota) return pacing;
  return {
    chunkSize() {
      return pacing?.chunkSize() ?? READ_CHUNK;
    },
    take(n) {
      try {
        quota.take(n);
      } catch (err) {
        throw onExceeded(err);
      }
      return pacing?.take(n) ?? 0;
    },
    release() {
      pacing?.release();
    },
  };
}
