/**
 * Reading a directory for LIST/NLST/MLSD: one lstat per entry, run concurrently in a bounded pool,
 * and symlinks shown by their target only when that target stays inside the jail.
 */
import type { Dirent, Stats } from "node:fs";
import { lstat, readdir, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { isInside, UPLOAD_TEMP_PREFIX } from "./contain.ts";
import type { DirEntry, EntryStat, RealPath } from "./types.ts";
import { hasControlChar } from "./vpath.ts";

/** How many stat calls one listing keeps in flight (libuv's pool runs 4 at a time by default;
 * a few more keep it busy without flooding it for other sessions). */
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
  const entries = await mapLimit(visible, STAT_CONCURRENCY, (d) => statEntry(root, dir, d));
  return entries.filter((e): e is DirEntry => e !== null).sort(byName);
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

/** One entry; null when it vanished or cannot be looked at (the rest of the listing goes on). */
async function statEntry(root: RealPath, dir: RealPath, d: Dirent): Promise<DirEntry | null> {
  const real = path.join(dir, d.name);
  try {
    const own = await lstat(real);
    const info = own.isSymbolicLink() ? await linkStat(root, real, own) : toEntryStat(own);
    return { name: d.name, stat: info };
  } catch {
    return null;
  }
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

/** Maps `items` through `fn` with at most `limit` calls in flight; keeps the order. */
export async function mapLimit<T, R>(
  items: readonly T[],
  limit: number,
  fn: (item: T) => Promise<R>,
): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}
