/**
 * Containment: the map from a VirtualPath to a RealPath under a jail root. Every result has been
 * through `realpath`, so a symlink anywhere on the way that leads out of the root is refused. A
 * result is a path, checked at one moment: what acts on it holds the directory it checked open
 * (fs/pin.ts), and the jail's common operations do the resolution and the check there in one go.
 */
import type { Stats } from "node:fs";
import path from "node:path";
import { FtpError, NameNotAllowed } from "../protocol/errors.ts";
import { mapFsError } from "./errors.ts";
import { lstat, lstatOrNull, realpath } from "./quick.ts";
import type { RealPath, VirtualPath } from "./types.ts";
import { basename, dirname, hasControlChar, isPlainPath, ROOT, splitVirtual } from "./vpath.ts";

/** Names of the temp files that a replacing upload writes; hidden from clients and not addressable. */
export const UPLOAD_TEMP_PREFIX = ".berth-upload-";
/** Whether `name` is one of an upload temp file (UPLOAD_TEMP_PREFIX; the stat worker's source text,
 * which cannot import, tests the prefix itself). */
export function isUploadTemp(name: string): boolean {
  return name.startsWith(UPLOAD_TEMP_PREFIX);
}
/** A path segment that starts with UPLOAD_TEMP_PREFIX. */
const TEMP_SEGMENT = "/" + UPLOAD_TEMP_PREFIX;

/** Where a virtual path lands: its real path and whether something is there. */
export interface Located {
  readonly real: RealPath;
  readonly exists: boolean;
}

/** Like Located, for an entry looked at without following its final component. */
export interface LocatedEntry extends Located {
  /** The entry's own lstat, or null when nothing is there. */
  readonly lstat: Stats | null;
}

/** True when `real` is the root or lies below it. */
export function isInside(root: RealPath, real: string): boolean {
  if (real === root) return true;
  const prefix = root.endsWith(path.sep) ? root : root + path.sep;
  return real.startsWith(prefix);
}

/** The real path `vpath` names below `root`, links not yet resolved (never use it unchecked). */
export function toReal(root: RealPath, vpath: VirtualPath): string {
  // The usual path (plainUnder): the real path as path.join would make it.
  if (plainUnder(root, vpath)) return root + vpath;
  const segments = splitVirtual(vpath);
  for (const seg of segments) checkSegment(seg);
  return path.join(root, ...segments);
}

/** `vpath` relative to the root for an open below it (fs/beneath.ts): "." for the root itself, the
 * names without the leading slash where toReal would take its usual path, else null (the caller
 * takes the way that checks every segment). */
export function relBelow(root: RealPath, vpath: VirtualPath): string | null {
  if (vpath === ROOT) return ".";
  return plainUnder(root, vpath) ? vpath.slice(1) : null;
}

/** Plain names, no temp name among them, under a root without a final slash (a real path has
 * none, but "/" itself): a path taken as it is, by toReal and relBelow. */
function plainUnder(root: RealPath, vpath: VirtualPath): boolean {
  return isPlainPath(vpath) && !root.endsWith("/") && !vpath.includes(TEMP_SEGMENT);
}

/** Longest real path the kernel takes in one call, in bytes (Linux PATH_MAX, less its NUL). */
const MAX_REAL_PATH_BYTES = 4095;

/** True when the real path of `vpath` below `root` is longer than the kernel takes. The virtual
 * path is held to MAX_PATH_BYTES (fs/vpath.ts), but on the disk the home's own path comes before
 * it: an entry made there would be refused (ENAMETOOLONG) by every command that names it by its
 * real path (a stat, CWD, a listing of it), so the commands that make one refuse it first
 * (tooDeepToMake). */
export function beyondPathMax(root: RealPath, vpath: VirtualPath): boolean {
  // A UTF-16 unit is at most three bytes: the usual path needs no count.
  if ((root.length + vpath.length) * 3 <= MAX_REAL_PATH_BYTES) return false;
  return Buffer.byteLength(path.join(root, vpath)) > MAX_REAL_PATH_BYTES;
}

/** The refusal of a new entry whose real path would be too long (beyondPathMax): 553, as for a
 * virtual path too long. */
export function tooDeepToMake(): FtpError {
  return new FtpError(553, "File name not allowed", "real path longer than PATH_MAX");
}

/** Resolves `vpath` through every symlink; refuses it when the result would be outside `root`.
 * A missing final part is fine (exists: false) as long as no dangling link stands in its place. */
export async function locate(root: RealPath, vpath: VirtualPath): Promise<Located> {
  return locateReal(root, toReal(root, vpath));
}

/** Resolves the parent of `vpath` (which must exist, inside `root`) but not its final component,
 * so that unlink and rename act on a symlink itself. The root is returned as is. */
export async function locateEntry(root: RealPath, vpath: VirtualPath): Promise<LocatedEntry> {
  toReal(root, vpath); // validates every segment
  if (vpath === ROOT) return { real: root, exists: true, lstat: await lstat(root) };
  const parent = await locate(root, dirname(vpath));
  if (!parent.exists) throw new FtpError(550, "No such file or directory", "parent missing");
  const real = path.join(parent.real, basename(vpath)) as RealPath;
  const stats = await lstatEntry(real);
  return { real, exists: stats !== null, lstat: stats };
}

/** The refusal for a path that leads outside the jail or through a link that does not resolve.
 * It is the same reply as for a missing file, so nothing about the outside target leaks. */
export function escaped(real: string): FtpError {
  return new FtpError(550, "No such file or directory", `refused: leaves the jail or dangles: ${real}`);
}

/** The parent is resolved first, then the final name is looked at with one lstat: a name that is
 * missing (an upload) or not a link (most files) needs no second realpath and raises no error. */
async function locateReal(root: RealPath, real: string): Promise<Located> {
  if (real === root) {
    const resolved = await resolveInside(root, real);
    if (resolved === null) throw new FtpError(550, "No such file or directory", "jail root missing");
    return { real: resolved, exists: true };
  }
  const parent = await resolveInside(root, path.dirname(real));
  if (parent === null) return locateMissing(root, real);
  const child = path.join(parent, path.basename(real)) as RealPath;
  const stats = await lstatEntry(child);
  if (stats === null) return { real: child, exists: false };
  if (!stats.isSymbolicLink()) return { real: child, exists: true };
  const resolved = await resolveInside(root, child);
  // A link that does not resolve: dangling or looping (maybe aimed outside).
  if (resolved === null) throw escaped(real);
  return { real: resolved, exists: true };
}

/** realpath of `real` when it resolves inside `root`; null when it does not resolve; FtpError when it
 * resolves outside. */
async function resolveInside(root: RealPath, real: string): Promise<RealPath | null> {
  let resolved: string;
  try {
    resolved = await realpath(real);
  } catch {
    return null;
  }
  if (!isInside(root, resolved)) throw escaped(real);
  return resolved as RealPath;
}

/** The parent did not resolve: find the deepest ancestor that does, then look at the first missing
 * component itself. Prefixes resolve up to some depth and fail below it, so the search tries the
 * grandparent first and then bisects: a long missing tail ("a/a/a/…") costs O(log n) realpath
 * calls, not O(n) calls of O(n) each. */
async function locateMissing(root: RealPath, real: string): Promise<Located> {
  const tail = path.relative(root, real).split(path.sep);
  const prefix = (n: number): string => path.join(root, ...tail.slice(0, n));
  let lo = 0;
  let base: RealPath = root;
  let hi = Math.max(0, tail.length - 2); // the parent itself is known not to resolve
  for (let probe = hi; lo < hi; probe = (lo + hi + 1) >> 1) {
    const found = await resolveInside(root, prefix(probe));
    if (found === null) hi = probe - 1;
    else [lo, base] = [probe, found];
  }
  const child = path.join(base, tail[lo] as string) as RealPath;
  if ((await lstatEntry(child)) !== null) {
    // Something is there yet does not resolve: a dangling or looping link (maybe aimed outside).
    throw escaped(real);
  }
  return { real: path.join(child, ...tail.slice(lo + 1)) as RealPath, exists: false };
}

/** lstat of an entry: null when nothing is there, any other failure as its FTP reply. */
async function lstatEntry(real: string): Promise<Stats | null> {
  try {
    return await lstatOrNull(real);
  } catch (err) {
    throw mapFsError(err);
  }
}

function checkSegment(seg: string): void {
  // VirtualPath is a brand, not a proof: refuse what resolveVirtual could never have produced.
  if (seg === "." || seg === ".." || hasControlChar(seg)) {
    throw new FtpError(553, "File name not allowed", `bad segment in virtual path: ${JSON.stringify(seg)}`);
  }
  if (isUploadTemp(seg)) {
    throw new NameNotAllowed("upload temp file name");
  }
}
