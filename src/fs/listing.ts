/**
 * Reading a directory for LIST/NLST/MLSD: one lstat per entry, run concurrently in a bounded pool,
 * and symlinks shown by their target only when that target stays inside the jail.
 */
import type { Dirent, Stats } from "node:fs";
import { lstat, lstatSync } from "node:fs";
import { readdir, realpath, stat } from "node:fs/promises";
import { isInside, UPLOAD_TEMP_PREFIX } from "./contain.ts";
import type { DirEntry, EntryStat, RealPath } from "./types.ts";
import { hasControlChar } from "./vpath.ts";

/** Entries stat'ed synchronously between two turns of the event loop (about 1 ms on a local disk). */
const SYNC_BATCH = 256;
/** A batch slower than this (ms) means a slow disk: the rest of the listing goes through the pool. */
const SLOW_BATCH_MS = 20;
/** How many lstat calls one listing keeps in flight in the pool (libuv runs 4 at a time by default). */
const STAT_CONCURRENCY = 32;

/** Node Stats → EntryStat; `type` overrides what the stats say (used for links). */
export function toEntryStat(s: Stats, type?: EntryStat["type"]): EntryStat {
  return {
    type: type ?? typeOf(s),
    size: s.size,
    mtime: s.mtime,
    mode: s.mode & 0o7777,
    nlink: s.nlink,
    uid: s.uid,
    gid: s.gid,
  };
}

/** The entries of the real directory `dir`, sorted by name, upload temp files hidden. */
export async function readDirectory(root: RealPath, dir: RealPath): Promise<DirEntry[]> {
  const dirents = await readdir(dir, { withFileTypes: true });
  const visible = dirents.filter((d) => isListable(d.name));
  const own = await lstatAll(dir, visible);
  const entries: DirEntry[] = [];
  for (let i = 0; i < visible.length; i++) {
    const st = own[i];
    if (st === undefined || st === null) continue; // vanished or unreadable: the rest goes on
    const name = (visible[i] as Dirent).name;
    const info = st.isSymbolicLink() ? await linkStat(root, dir + "/" + name, st) : toEntryStat(st);
    entries.push({ name, stat: info });
  }
  return entries.sort(byName);
}

/**
 * lstat of every entry, in order; null where it failed. Synchronous calls in batches, yielding to
 * the event loop between batches: on a local disk an lstatSync costs a fraction of a promise or
 * callback round trip through libuv's pool. When a batch is slow (a network or failing disk), the
 * rest goes through the pool instead, so other sessions never wait on this directory.
 */
export async function lstatAll(dir: string, dirents: readonly Dirent[], slowBatchMs = SLOW_BATCH_MS): Promise<(Stats | null)[]> {
  const out = new Array<Stats | null>(dirents.length).fill(null);
  let i = 0;
  while (i < dirents.length) {
    const end = Math.min(i + SYNC_BATCH, dirents.length);
    const started = performance.now();
    for (; i < end; i++) out[i] = lstatOrNull(dir + "/" + (dirents[i] as Dirent).name);
    if (i >= dirents.length) break;
    if (performance.now() - started > slowBatchMs) {
      await lstatPooled(dir, dirents, i, out);
      break;
    }
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
  return out;
}

function lstatOrNull(file: string): Stats | null {
  try {
    return lstatSync(file, { throwIfNoEntry: false }) ?? null;
  } catch {
    return null; // unreadable: left out, the rest of the listing goes on
  }
}

/** lstat of entries `from`… through libuv's pool (callbacks, a bounded number in flight) into `out`. */
function lstatPooled(dir: string, dirents: readonly Dirent[], from: number, out: (Stats | null)[]): Promise<void> {
  return new Promise((resolve) => {
    let next = from;
    let pending = 0;
    const launch = (): void => {
      while (pending < STAT_CONCURRENCY && next < dirents.length) {
        const i = next++;
        pending++;
        lstat(dir + "/" + (dirents[i] as Dirent).name, (err, st) => {
          pending--;
          out[i] = err ? null : st;
          if (pending === 0 && next >= dirents.length) resolve();
          else launch();
        });
      }
    };
    launch();
  });
}

/** True for a name a client may see: no upload temp file, nothing no command could address. */
export function isListable(name: string): boolean {
  return !name.startsWith(UPLOAD_TEMP_PREFIX) && !hasControlChar(name);
}

function typeOf(s: Stats): EntryStat["type"] {
  if (s.isFile()) return "file";
  if (s.isDirectory()) return "dir";
  if (s.isSymbolicLink()) return "link";
  return "other";
}

/** A link inside the jail shows its target; one that leaves it or dangles shows only itself. */
async function linkStat(root: RealPath, real: string, own: Stats): Promise<EntryStat> {
  try {
    const target = await realpath(real);
    if (isInside(root, target)) return toEntryStat(await stat(target));
  } catch {
    // dangling or looping: fall through and report the link itself
  }
  return toEntryStat(own, "link");
}

function byName(a: DirEntry, b: DirEntry): number {
  if (a.name === b.name) return 0;
  return a.name < b.name ? -1 : 1;
}
