/**
 * Holding on to what was checked. Containment (fs/contain.ts) resolves a path with realpath and
 * checks that the result is inside the jail; but a path used afterwards is walked again by the
 * kernel, and a directory on the way that was renamed away and replaced by a symlink in between
 * (by this user, another session, or anyone else who can write there) would lead wherever the
 * link points. So what an operation acts on is opened first, the kernel's own path of that
 * descriptor (/proc/self/fd/N) is checked to be inside the jail, and the operation then names the
 * entry through the descriptor (`/proc/self/fd/N/name`): that path reaches the directory that was
 * checked, whatever its old path leads to by then. Directories are opened with O_PATH, which needs
 * no read permission (an upload-only directory) and opens nothing but the name.
 *
 * Where /proc/self/fd cannot be read (not Linux, or /proc not mounted) the real paths are used as
 * they are, as containment alone would.
 *
 * A path with no link on the way is opened below the home's root held open instead, in one call
 * (fs/beneath.ts: openat2, which refuses links and ways up itself); whatever that refuses comes
 * here.
 */
import * as fs from "node:fs";
import path from "node:path";
import { FtpError } from "../protocol/errors.ts";
import { beneathNow, openBeneath } from "./beneath.ts";
import { escaped, isInside, locate, locateEntry, relBelow, toReal, type Located } from "./contain.ts";
import { errnoOf, mapFsError } from "./errors.ts";
import { closeFd, lstatOrNull, O_PATH, openFd, procFdPaths as pinning, realpath, stat } from "./quick.ts";
import type { RealPath, VirtualPath } from "./types.ts";

const { O_DIRECTORY, O_NOFOLLOW } = fs.constants;

/** Whether descriptors can be checked and named through /proc/self/fd (fs/quick.ts finds out, for
 * its realpath too); the setter is for tests. */
export { procFdPaths as pinning, setProcFdPathsForTest as setPinningForTest } from "./quick.ts";

/** The path the kernel has for open descriptor `fd`, which must be inside `root` (else the reply
 * for a missing file). A directory removed since it was opened reads "… (deleted)", and is judged
 * by where it was. */
function insidePath(root: RealPath, fd: number): string {
  const at = fs.readlinkSync(`/proc/self/fd/${fd}`);
  if (!path.isAbsolute(at) || !isInside(root, at)) throw escaped(at);
  return at;
}

/** A directory held open and checked to be inside the jail. */
export interface PinnedDir {
  /** Its real path when it was opened (as given where pinning is off). */
  readonly real: string;
  /** A path to entry `name` of the directory (the directory itself without a name). */
  at(name?: string): string;
  /** Closes the descriptor (harmless twice). */
  release(): void;
}

/** Opens directory `dir` (a path under the root, through containment or as the client named it:
 * the kernel resolves it once) and checks where it landed. `follow` false: a symlink as its last
 * part is refused (ENOTDIR). */
export async function pinDir(root: RealPath, dir: RealPath, follow = true): Promise<PinnedDir> {
  if (!pinning()) return new ByPath(dir);
  const fd = await openFd(dir, O_PATH | O_DIRECTORY | (follow ? 0 : O_NOFOLLOW));
  let real: string;
  try {
    real = insidePath(root, fd);
  } catch (err) {
    closeFd(fd);
    throw err;
  }
  return new ThroughFd(fd, real);
}

/** Directory `name` of held directory `dir`, opened through it without following a link (ENOTDIR
 * for one): below `dir` whatever happens to paths meanwhile, so its real path is `dir`'s and the
 * name, with no /proc look, which fails for a path longer than PATH_MAX (a directory renamed into
 * a deep one). Where pinning is off, that path itself. A name given as bytes (one that is not
 * UTF-8, which no string names) is opened by them; the real path then holds its decoded form,
 * which names nothing, so what is below it is reached through it too. */
export async function pinChild(dir: PinnedDir, name: string | Buffer): Promise<PinnedDir> {
  const real = path.join(dir.real, name.toString());
  if (!pinning()) return new ByPath(real);
  const flags = O_PATH | O_DIRECTORY | O_NOFOLLOW;
  if (typeof name === "string") return new ThroughFd(await openFd(dir.at(name), flags), real);
  const fd = await new Promise<number>((resolve, reject) => fs.open(entryBytes(dir, name), flags, (err, n) => (err ? reject(err) : resolve(n))));
  return new ThroughFd(fd, real);
}

/** The path of entry `name` (its bytes) of held directory `dir`. */
export function entryBytes(dir: PinnedDir, name: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${dir.at()}/`), name]);
}

/** Paths through open descriptor `fd` (`at()` itself, `at(name)` an entry of a directory), and
 * its closing (harmless twice). A class, not an object of closures: one is made per file an
 * upload or a download touches (see test/hotpath.test.ts). */
class ThroughFd implements PinnedDir {
  private readonly base: string;
  private open = true;

  constructor(
    private readonly fd: number,
    readonly real: string,
  ) {
    this.base = `/proc/self/fd/${fd}`;
  }

  at(name?: string): string {
    return name === undefined ? this.base : `${this.base}/${name}`;
  }

  release(): void {
    if (this.open) closeFd(this.fd);
    this.open = false;
  }
}

/** A target held open (holdPath), with its stat. */
class TargetThroughFd extends ThroughFd implements HeldTarget {
  constructor(
    fd: number,
    real: string,
    readonly stats: fs.Stats,
  ) {
    super(fd, real);
  }
}

/** Where pinning is off: the checked real path itself, and nothing to release. */
class ByPath implements PinnedDir {
  constructor(readonly real: string) {}

  at(name?: string): string {
    return name === undefined ? this.real : path.join(this.real, name);
  }

  release(): void {}
}

/** A target by its checked real path (holdPath where pinning is off), with its stat. */
class TargetByPath extends ByPath implements HeldTarget {
  constructor(
    real: string,
    readonly stats: fs.Stats,
  ) {
    super(real);
  }
}

/** Where `vpath` lands (as `locate` says) and the directory it lies in, held open. */
export interface Held extends Located {
  readonly dir: PinnedDir;
  /** The entry's name in `dir`. */
  readonly name: string;
  /** Its lstat through `dir` (not a symlink: the way here followed any); null when missing. */
  readonly lstat: fs.Stats | null;
}

/**
 * locate (fs/contain.ts) with the directory of the result held open: the parent is opened by its
 * path (the kernel resolves it once, and its /proc path is its real path, checked inside the jail)
 * and the final name is looked at through it. A final symlink, or a parent that does not open (a
 * missing part, a dangling link), takes locate's way and then holds the directory it found.
 * Not for the root itself.
 */
export async function locateHeld(root: RealPath, vpath: VirtualPath): Promise<Held> {
  const parent = await pinParent(root, vpath);
  const held = parent !== null ? await heldIn(parent) : null;
  if (held !== null) return held;
  // locate says whether the path is missing or leaves the jail; what is there is then looked at
  // again through the directory held, not taken from locate's look by path.
  const found = await locate(root, vpath);
  const entry = await lookAt(await pinDir(root, path.dirname(found.real) as RealPath), path.basename(found.real));
  return { real: found.real, exists: entry.lstat !== null, dir: entry.dir, name: entry.name, lstat: entry.lstat };
}

/** Entry `parent.name` looked at through `parent.dir`, already held (pinParent): the Held for it,
 * or null, the directory let go, when it is a symlink (locateHeld's way then follows it inside
 * the jail). */
export async function heldIn(parent: { dir: PinnedDir; name: string }): Promise<Held | null> {
  const { dir, name, lstat } = await lookAt(parent.dir, parent.name);
  if (lstat !== null && lstat.isSymbolicLink()) {
    dir.release();
    return null;
  }
  return { real: path.join(dir.real, name) as RealPath, exists: lstat !== null, dir, name, lstat };
}

/** Entry `name` of held directory `dir`, with its lstat through it (null when missing); on a
 * failure the directory is let go. */
async function lookAt(dir: PinnedDir, name: string): Promise<HeldEntry> {
  try {
    return { dir, name, lstat: await lstatOrNull(dir.at(name)) };
  } catch (err) {
    dir.release();
    throw mapFsError(err);
  }
}

/** The parent of `vpath` held open, by its path as it stands (the kernel resolves it once; its
 * /proc path is checked inside the jail), and the final name; null where pinning is off, for the
 * root, or when the parent does not open (a missing part or a dangling link: locate's way says
 * which). */
export async function pinParent(root: RealPath, vpath: VirtualPath): Promise<{ dir: PinnedDir; name: string } | null> {
  const real = toReal(root, vpath);
  if (!pinning() || real === root) return null;
  const below = beneathNow() ? relBelow(root, vpath) : null;
  if (below !== null) {
    // One openat2 below the root held open (fs/beneath.ts); a link on the way takes the path below.
    const cut = below.lastIndexOf("/");
    const dirRel = cut < 0 ? "." : below.slice(0, cut);
    const fd = openBeneath(root, dirRel, O_PATH | O_DIRECTORY);
    if (fd >= 0) return { dir: new ThroughFd(fd, cut < 0 ? root : `${root}/${dirRel}`), name: below.slice(cut + 1) };
  }
  try {
    return { dir: await pinDir(root, path.dirname(real) as RealPath), name: path.basename(real) };
  } catch (err) {
    const e = errnoOf(err);
    if (e === "ENOENT" || e === "ENOTDIR" || e === "ELOOP") return null;
    throw err;
  }
}

/** `vpath` itself (a final symlink not followed) in its parent held open. */
export interface HeldEntry {
  readonly dir: PinnedDir;
  readonly name: string;
  /** Its lstat, through the held parent; null when nothing is there. */
  readonly lstat: fs.Stats | null;
}

/**
 * The parent of `vpath` held open and its final name looked at through it, for what acts on an
 * entry itself (MKD, RMD, DELE, RNFR/RNTO, SITE CHMOD): one resolution of the parent, whose
 * result is what is used. A parent that does not open takes locateEntry's way (which says whether
 * it is missing or leads out of the jail). Not for the root.
 */
export async function holdEntry(root: RealPath, vpath: VirtualPath): Promise<HeldEntry> {
  const parent = await pinParent(root, vpath);
  if (parent !== null) return lookAt(parent.dir, parent.name);
  // locateEntry says whether the parent is missing or leaves the jail; the entry is then looked
  // at through the parent held, not taken from locateEntry's lstat by path.
  const { real } = await locateEntry(root, vpath);
  return lookAt(await pinDir(root, path.dirname(real) as RealPath), path.basename(real));
}

/** What a path leads to, held open (O_PATH) and checked inside the jail, with its stat. */
export interface HeldTarget {
  readonly stats: fs.Stats;
  /** A path to it (`name` omitted) or, for a directory, to its entry `name`. */
  at(name?: string): string;
  release(): void;
}

/**
 * Opens what `vpath` leads to, every link on the way followed by the kernel in one walk, checks
 * that it landed inside the jail and stats it: containment and the stat in four system calls
 * (open, readlink of its /proc path, fstat, close), and what was checked is what is used. A path
 * that does not resolve (missing, a dangling or looping link, a file on the way) is the reply for
 * a missing file. Where pinning is off: realpath, the check, then a stat of the checked path
 * (holdPath). A path with no link on the way opens below the root held open instead (fs/beneath.ts):
 * openat2 and fstat, nothing left to check.
 */
export function holdTarget(root: RealPath, vpath: VirtualPath): Promise<HeldTarget> {
  const below = beneathNow() ? relBelow(root, vpath) : null;
  if (below !== null) {
    // One openat2 below the root held open (fs/beneath.ts) and the fstat; a link on the way (a
    // link as the target included) takes holdPath's way, which follows it inside the jail.
    const fd = openBeneath(root, below, O_PATH);
    if (fd >= 0) {
      try {
        return Promise.resolve(new TargetThroughFd(fd, below === "." ? root : `${root}/${below}`, fs.fstatSync(fd)));
      } catch (err) {
        closeFd(fd);
        return Promise.reject(err);
      }
    }
  }
  return holdPath(root, toReal(root, vpath));
}

/**
 * holdTarget for a path on the disk (the jail's own, or one through a held directory such as a
 * listed link's): what `p` leads to, opened, checked inside the jail and stat'ed. Where pinning is
 * off: realpath, the check, then a stat of the checked path.
 */
export async function holdPath(root: RealPath, p: string): Promise<HeldTarget> {
  if (!pinning()) {
    let real: string;
    try {
      real = await realpath(p);
    } catch (err) {
      const e = errnoOf(err);
      if (e === "ENOENT" || e === "ENOTDIR" || e === "ELOOP") throw new FtpError(550, "No such file or directory", `does not resolve: ${e}`);
      throw err;
    }
    if (!isInside(root, real)) throw escaped(real);
    return new TargetByPath(real, await stat(real));
  }
  let fd: number;
  try {
    fd = await openFd(p, O_PATH);
  } catch (err) {
    const e = errnoOf(err);
    if (e === "ENOENT" || e === "ENOTDIR" || e === "ELOOP") throw new FtpError(550, "No such file or directory", `does not resolve: ${e}`);
    throw err;
  }
  try {
    return new TargetThroughFd(fd, insidePath(root, fd), fs.fstatSync(fd));
  } catch (err) {
    closeFd(fd);
    throw err;
  }
}

/** chmod of `p` itself, never through a symlink in its place: Linux has no lchmod, so the entry is
 * opened without following (O_PATH | O_NOFOLLOW), refused if it is a link, and changed through its
 * descriptor's /proc path (what glibc's fchmodat does for AT_SYMLINK_NOFOLLOW). */
export async function chmodNoFollow(p: string, mode: number): Promise<void> {
  if (!pinning()) {
    const s = await fs.promises.lstat(p);
    if (s.isSymbolicLink()) throw new FtpError(550, "Not allowed on a symbolic link");
    return fs.promises.chmod(p, mode);
  }
  const fd = await openFd(p, O_PATH | O_NOFOLLOW);
  try {
    if (fs.fstatSync(fd).isSymbolicLink()) throw new FtpError(550, "Not allowed on a symbolic link");
    await fs.promises.chmod(`/proc/self/fd/${fd}`, mode);
  } finally {
    closeFd(fd);
  }
}
