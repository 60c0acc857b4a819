/**
 * Reading a directory for LIST/NLST/MLSD: one lstat per entry (on the main thread, in the stat
 * worker, or both), and symlinks shown by their target only when that target is a file inside the jail.
 */
import type { Stats } from "node:fs";
import { constants, lstat } from "node:fs";
import { isUploadTemp } from "./contain.ts";
import { holdPath } from "./pin.ts";
import { lateCall, quickEnabled, readdirNames, readdirTook } from "./quick.ts";
import { FIELDS, packLstat, packStats } from "./rawstat.ts";
import { type LstatBinding, lstatBinding } from "../native.ts";
import { lstatInWorker, NO_TEMPS, readInWorker, statWorkerAvailable } from "./statworker.ts";
import type { DirEntry, EntryStat, RealPath } from "./types.ts";
import { UNNAMEABLE } from "./vpath.ts";

const { S_IFMT, S_IFREG, S_IFDIR, S_IFLNK } = constants;

/** Entries stat'ed synchronously between two turns of the event loop (about 1 ms on a local disk). */
const SYNC_BATCH = 256;
/** A batch slower than this (ms) is late (fs/quick.ts lateCall): when that means a slow disk, the
 * rest of the listing, and every small file call for a while, go through the pool. */
const SLOW_BATCH_MS = 20;
/** How many lstat calls one listing keeps in flight in the pool (libuv runs 4 at a time by default). */
const STAT_CONCURRENCY = 32;

/** Node Stats → EntryStat; `type` overrides what the stats say (used for links). */
export function toEntryStat(s: StatLike, type?: EntryStat["type"]): EntryStat {
  const t = type ?? typeOf(s);
  return {
    type: t,
    size: s.size,
    mtimeMs: Math.floor(s.mtimeMs),
    mode: s.mode & (t === "other" ? S_IFMT | 0o7777 : 0o7777),
    nlink: s.nlink,
    uid: s.uid,
    gid: s.gid,
  };
}

/** The entries of the real directory `dir`, sorted by name, upload temp files hidden, each an
 * object of its own (readListing keeps them packed). */
export async function readDirectory(root: RealPath, dir: RealPath, dirBytes = Infinity, useWorker = true): Promise<DirEntry[]> {
  return (await readListing(root, dir, dirBytes, useWorker)).toArray();
}

/** What a listing found besides its entries: the names of the upload temp files in the directory
 * (hidden from the listing), in the directory's order; empty when there are none. */
export interface ListingExtras {
  temps: readonly string[];
}

/** No names: what ListingExtras.temps starts as (one array for every listing). */
export { NO_TEMPS };

/** The entries of the real directory `dir`, sorted by name, upload temp files hidden (their names
 * go to `extras`, when given). A directory
 * whose size (`dirBytes`, its st_size) says it holds at most a few hundred entries is read and
 * stat'ed by the stat worker: the main thread only sends the request and takes the answer. A
 * larger one, or where the worker cannot take it (`useWorker` false, its queue full, or failed),
 * is read on this thread, and lstatAll decides where the stats are made (a large directory from
 * both ends at once: reading it here first starts the worker on its half soonest). */
export async function readListing(
  root: RealPath,
  dir: RealPath,
  dirBytes = Infinity,
  useWorker = true,
  extras?: ListingExtras,
): Promise<Entries> {
  const byWorker = useWorker && dirBytes <= WORKER_READ_MAX_BYTES && statWorkerAvailable(WORKER_QUEUE);
  const read = byWorker ? await readInWorker(dir, SPLIT_MIN) : null;
  let visible: string[];
  let own: PackedStats;
  if (read) {
    readdirTook(read.ms, read.read);
    visible = read.names;
    if (extras) extras.temps = read.temps;
    own = await statsFrom(dir, read.names, read.from, read.stats, SLOW_BATCH_MS, lstatBinding());
  } else {
    // Names only: every entry is lstat'ed anyway, and a Dirent per entry costs more than the call.
    const all = await readdirNames(dir);
    visible = all.filter(isListable);
    if (extras && visible.length !== all.length) extras.temps = all.filter(isUploadTemp);
    own = await lstatPacked(dir, visible, SLOW_BATCH_MS, useWorker);
  }
  // The entries stay as the names and their packed numbers: no object per entry (two per entry,
  // about 160 bytes, and the young generation grown to hold them while they were made).
  const { here, from, there } = own;
  const order: number[] = [];
  let links: Set<number> | null = null;
  let undecoded = false;
  for (let i = 0; i < visible.length; i++) {
    const a = i < from ? here : there;
    const o = (i < from ? i : i - from) * FIELDS;
    if (a[o] !== 1) continue; // vanished or unreadable: the rest goes on
    const name = visible[i] as string;
    if (!undecoded && name.includes("\ufffd")) undecoded = true;
    // A link shown by its target has the target's numbers in its place.
    if (((a[o + 1] as number) & S_IFMT) === S_IFLNK) {
      await linkStat(root, dir + "/" + name, a, o);
      (links ??= new Set()).add(i);
    }
    order.push(i);
  }
  order.sort((x, y) => byName(visible[x] as string, visible[y] as string));
  const entries = new Entries(visible, order, own, links);
  return undecoded ? entries.withoutRepeats() : entries;
}

/** One entry of Entries, filled in place by Entries.at: read it before the next call. */
export class EntryView implements DirEntry {
  name = "";
  readonly stat = { type: "file" as EntryStat["type"], size: 0, mtimeMs: 0, mode: 0, nlink: 0, uid: 0, gid: 0 };
}

/** A listing's entries in order: their names and packed lstats (fs/rawstat.ts), no object per
 * entry. `order` holds, for each entry shown, the index of its name in `names` and of its numbers
 * in `stats`. */
export class Entries {
  constructor(
    private readonly names: readonly string[],
    private readonly order: readonly number[],
    private readonly stats: PackedStats,
    /** Indexes in `names` of the entries that are symbolic links (shown by their target when it
     * is a file inside the jail); null when there are none. */
    private readonly links: ReadonlySet<number> | null = null,
  ) {}

  /** One entry: `name`, with the facts of `stat` (LIST of a file, LIST -d). */
  static one(name: string, stat: EntryStat): Entries {
    const a = new Float64Array(FIELDS);
    const typeBits = stat.type === "file" ? S_IFREG : stat.type === "dir" ? S_IFDIR : stat.type === "link" ? S_IFLNK : 0;
    a.set([1, typeBits | stat.mode, stat.nlink, stat.uid, stat.gid, stat.size, stat.mtimeMs]);
    return new Entries([name], [0], { here: a, from: 1, there: a });
  }

  get length(): number {
    return this.order.length;
  }

  /** True when entry `k` is a symbolic link (one to a file is shown as that file). */
  isLink(k: number): boolean {
    return this.links !== null && this.links.has(this.order[k] as number);
  }

  /** The name of entry `k`. */
  name(k: number): string {
    return this.names[this.order[k] as number] as string;
  }

  /** Entry `k`, written into `view` (returned). */
  at(k: number, view: EntryView): EntryView {
    const i = this.order[k] as number;
    const { here, from, there } = this.stats;
    const a = i < from ? here : there;
    const o = (i < from ? i : i - from) * FIELDS;
    const mode = a[o + 1] as number;
    const fmt = mode & S_IFMT;
    const t = fmt === S_IFREG ? "file" : fmt === S_IFDIR ? "dir" : fmt === S_IFLNK ? "link" : "other";
    view.name = this.names[i] as string;
    const st = view.stat;
    st.type = t;
    st.size = a[o + 5] as number;
    st.mtimeMs = Math.floor(a[o + 6] as number);
    st.mode = mode & (t === "other" ? S_IFMT | 0o7777 : 0o7777);
    st.nlink = a[o + 2] as number;
    st.uid = a[o + 3] as number;
    st.gid = a[o + 4] as number;
    return view;
  }

  /** The entries whose names `keep` takes. */
  filter(keep: (name: string) => boolean): Entries {
    return new Entries(
      this.names,
      this.order.filter((i) => keep(this.names[i] as string)),
      this.stats,
      this.links,
    );
  }

  /** Each name once. A directory holds a name once, but readdir decodes the bytes of a name that
   * is not UTF-8 to U+FFFD: such a name reads as one that has a real U+FFFD where its bad bytes
   * are, and its lstat finds that entry. The entry is shown once, as itself. */
  withoutRepeats(): Entries {
    const names = this.names;
    return new Entries(
      names,
      this.order.filter((i, k) => k === 0 || names[this.order[k - 1] as number] !== names[i]),
      this.stats,
      this.links,
    );
  }

  /** Each entry as an object of its own. */
  toArray(): DirEntry[] {
    const out: DirEntry[] = [];
    for (let k = 0; k < this.order.length; k++) {
      const v = this.at(k, new EntryView());
      out.push({ name: v.name, stat: v.stat });
    }
    return out;
  }
}

/** What a listing reads of an lstat: fs.Stats (through the pool), or the same numbers packed
 * (fs/rawstat.ts), on this thread or in the stat worker. */
export type StatLike = Pick<Stats, "size" | "mtimeMs" | "mode" | "nlink" | "uid" | "gid" | "isFile" | "isDirectory" | "isSymbolicLink">;

/** A directory with at least this many entries is stat'ed in the worker (fs/statworker.ts). */
const WORKER_MIN = 32;
/** From this many entries, the main thread stats the first half while the worker does the rest. */
const SPLIT_MIN = 2048;
/** A directory at most this large (st_size: ext4 4 KiB per 100–200 entries, tmpfs 20 bytes per
 * entry) is read by the stat worker. */
const WORKER_READ_MAX_BYTES = 32 * 1024;
/** Requests the worker may have queued before listings stat on the main thread instead. */
const WORKER_QUEUE = 8;

/** The packed lstats (fs/rawstat.ts) of a listing's names: entry i's FIELDS numbers at
 * `i * FIELDS` in `here` for i below `from`, at `(i - from) * FIELDS` in `there` from `from` on
 * (the worker's half, kept as it came). An entry's first number is 1 where it was found. */
export interface PackedStats {
  readonly here: Float64Array;
  readonly from: number;
  readonly there: Float64Array;
}

/**
 * lstat of every entry, in order; null where it failed. A directory of WORKER_MIN entries or more
 * goes to the stat worker (all of it, or the second half of a large one while the main thread
 * does the first half). On the main thread: synchronous calls in batches, yielding to the event
 * loop between batches (on a local disk an lstatSync costs a fraction of a promise or callback
 * round trip through libuv's pool); when a batch is slow (a network or failing disk), the rest,
 * and the file calls of fs/quick.ts for a while, go through the pool instead, so other sessions
 * never wait on this directory. Where the addon is built, each thread stats a batch in one call
 * (native/lstat.c: the directory opened once, each name looked up relative to it); `useWorker`
 * and `useNative` false are for tests. Listings read the packed numbers (lstatPacked); this
 * gives them an object per entry (tests).
 */
export async function lstatAll(
  dir: string,
  names: readonly string[],
  slowBatchMs = SLOW_BATCH_MS,
  useWorker = true,
  useNative = true,
): Promise<(StatLike | null)[]> {
  const { here, from, there } = await lstatPacked(dir, names, slowBatchMs, useWorker, useNative);
  const out: (StatLike | null)[] = [];
  for (let i = 0; i < names.length; i++) {
    const a = i < from ? here : there;
    const o = (i < from ? i : i - from) * FIELDS;
    out.push(a[o] === 1 ? new PackedStat(a, o) : null);
  }
  return out;
}

/** lstatAll's stats as they are made: packed, no object per entry. */
export function lstatPacked(
  dir: string,
  names: readonly string[],
  slowBatchMs = SLOW_BATCH_MS,
  useWorker = true,
  useNative = true,
): Promise<PackedStats> {
  const n = names.length;
  let from = n;
  let theirs: Promise<Float64Array> | null = null;
  if (useWorker && n >= WORKER_MIN && statWorkerAvailable(WORKER_QUEUE)) {
    from = n >= SPLIT_MIN ? n >> 1 : 0;
    theirs = lstatInWorker(dir, names.slice(from));
  }
  return statsFrom(dir, names, from, theirs, slowBatchMs, useNative ? lstatBinding() : null);
}

/**
 * The stats of `names`: this thread's for [0, from), the worker's packed answer `theirs` for
 * [from, n) — or this thread's for those too when the worker fails (or there is none). Both parts
 * run at once.
 */
async function statsFrom(
  dir: string,
  names: readonly string[],
  from: number,
  theirs: Promise<Float64Array> | null,
  slowBatchMs: number,
  native: LstatBinding | null,
): Promise<PackedStats> {
  const n = names.length;
  const mine = theirs ? from : n;
  const here = new Float64Array(mine * FIELDS);
  // Caught at once: a failure of the worker while this thread stats its part is not unhandled.
  const answered = theirs?.catch(() => null) ?? null;
  await statRange(dir, names, 0, mine, here, slowBatchMs, native);
  if (answered === null) return { here, from: n, there: here };
  const packed = await answered;
  if (packed !== null) return { here, from, there: packed };
  const rest = new Float64Array((n - from) * FIELDS);
  await statRange(dir, names, from, n, rest, slowBatchMs, native);
  return { here, from, there: rest };
}

/** lstat of entries [from, to) on the main thread, packed into `packed` (entry i at
 * `(i - from) * FIELDS`; the array starts at 0, so an entry not found has 0 as its first number). */
async function statRange(
  dir: string,
  names: readonly string[],
  from: number,
  to: number,
  packed: Float64Array,
  slowBatchMs: number,
  native: LstatBinding | null,
): Promise<void> {
  let i = from;
  // Packed numbers, as the worker returns them: no Stats object (and four Dates) per entry.
  while (i < to) {
    // The disk was slow lately (fs/quick.ts): the pool, for this listing and every other call.
    if (!quickEnabled()) return lstatPooled(dir, names, i, to, packed, from);
    const end = Math.min(i + SYNC_BATCH, to);
    const started = performance.now();
    // The addon stats each name relative to the directory, opened once (native/lstat.c); where it
    // cannot open the directory, path by path, as Node does.
    if (!native || native.lstatNames(dir, names, i, end, packed, (i - from) * FIELDS) < 0) {
      native = null;
      for (let j = i; j < end; j++) packLstat(dir + "/" + (names[j] as string), packed, (j - from) * FIELDS);
    }
    i = end;
    if (i >= to) break;
    const ms = performance.now() - started;
    if (ms > slowBatchMs) lateCall(ms);
    // Backed off: the loop takes the pool at once; otherwise other sessions get their turn.
    if (quickEnabled()) await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

/** A packed lstat (fs/rawstat.ts) as a StatLike: FIELDS numbers at `o` in `a` (lstatAll). */
class PackedStat implements StatLike {
  constructor(
    private readonly a: Float64Array,
    private readonly o: number,
  ) {}
  get mode(): number {
    return this.a[this.o + 1] as number;
  }
  get nlink(): number {
    return this.a[this.o + 2] as number;
  }
  get uid(): number {
    return this.a[this.o + 3] as number;
  }
  get gid(): number {
    return this.a[this.o + 4] as number;
  }
  get size(): number {
    return this.a[this.o + 5] as number;
  }
  get mtimeMs(): number {
    return this.a[this.o + 6] as number;
  }
  isFile(): boolean {
    return (this.mode & S_IFMT) === S_IFREG;
  }
  isDirectory(): boolean {
    return (this.mode & S_IFMT) === S_IFDIR;
  }
  isSymbolicLink(): boolean {
    return (this.mode & S_IFMT) === S_IFLNK;
  }
}

/** lstat of entries [from, to) through libuv's pool (callbacks, a bounded number in flight),
 * packed into `packed` (entry i at `(i - base) * FIELDS`): each fs.Stats (and its four Dates) is
 * let go as soon as it came. */
function lstatPooled(dir: string, names: readonly string[], from: number, to: number, packed: Float64Array, base: number): Promise<void> {
  return new Promise((resolve) => launchStats({ dir, names, next: from, to, base, pending: 0, packed, resolve }));
}

/** One lstatPooled in progress. */
interface PooledStats {
  readonly dir: string;
  readonly names: readonly string[];
  next: number;
  readonly to: number;
  readonly base: number;
  pending: number;
  readonly packed: Float64Array;
  readonly resolve: () => void;
}

/** Starts lstats until STAT_CONCURRENCY are in flight (a function of its own, not a closure per
 * listing: test/hotpath.test.ts). */
function launchStats(p: PooledStats): void {
  while (p.pending < STAT_CONCURRENCY && p.next < p.to) {
    const i = p.next++;
    p.pending++;
    lstat(p.dir + "/" + (p.names[i] as string), (err, st) => {
      p.pending--;
      if (!err) packStats(st, p.packed, (i - p.base) * FIELDS);
      launchStats(p);
    });
  }
  // All done (or an empty range): settles once, from the last callback.
  if (p.pending === 0 && p.next >= p.to) p.resolve();
}

/** True for a name a client may see: no upload temp file, nothing no command could address. */
export function isListable(name: string): boolean {
  return !isUploadTemp(name) && !UNNAMEABLE.test(name);
}

function typeOf(s: StatLike): EntryStat["type"] {
  if (s.isFile()) return "file";
  if (s.isDirectory()) return "dir";
  if (s.isSymbolicLink()) return "link";
  return "other";
}

/** A link to a file inside the jail shows its target. Any other shows only itself: one that leaves
 * the jail, dangles or loops, and one to a directory, even inside the jail. A client that removes a
 * tree (lftp's `rm -r`, basic-ftp's removeDir) descends into what is listed as a
 * directory, so a link shown as one had the files of the directory it leads to deleted, outside the
 * tree being removed; shown as a link, it is removed as a link (DELE), as with vsftpd and ProFTPD.
 * CWD through it still works. What it leads to is opened and checked before its stat is read
 * (fs/pin.ts holdPath), so a directory on the way swapped for a link out of the jail in between is
 * never what is shown. */
async function linkStat(root: RealPath, link: string, a: Float64Array, o: number): Promise<void> {
  try {
    const held = await holdPath(root, link);
    held.release();
    if (!held.stats.isDirectory()) packStats(held.stats, a, o);
  } catch {
    // leaves the jail, dangles or loops
  }
}

function byName(a: string, b: string): number {
  if (a === b) return 0;
  return a < b ? -1 : 1;
}
