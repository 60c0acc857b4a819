/**
 * JailedFs: a user's filesystem, rooted at their home. It takes VirtualPaths only and is the one
 * place in berth that touches real paths; every error leaves it as an FtpError whose message never
 * shows a real path.
 */
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import type { Stats } from "node:fs";
import { mkdir, readdir, rmdir, utimes } from "node:fs/promises";
import path from "node:path";
import { FtpError, isFtpError } from "../protocol/errors.ts";
import { beneathNow, holdRoot, openBeneath, releaseRoot, type HeldRoot } from "./beneath.ts";
import { beyondPathMax, locate, relBelow, tooDeepToMake } from "./contain.ts";
import { errnoOf, mapFsError } from "./errors.ts";
import { makeDirs } from "./mkdirs.ts";
import { DEFAULT_UMASK, fixDirMode, modesFor, type CreateModes } from "./modes.ts";
import { chmodNoFollow, holdEntry, holdTarget, locateHeld, pinDir, pinParent, type HeldTarget } from "./pin.ts";
import { Entries, NO_TEMPS, readListing, toEntryStat, type ListingExtras } from "./listing.ts";
import type { ListingTicket } from "./listgate.ts";
import type { DirEntry, Download, EntryStat, RealPath, Upload, UploadOptions, VirtualPath } from "./types.ts";
import { lstat, open, quickFile, realpath, regularSize, rename, renameNoReplace, stat, unlink } from "./quick.ts";
import { FILE_EXISTS, isStaleTemp, openUpload, STALE_TEMP_AGE_MS, sweepStaleTemps } from "./upload.ts";
import { basename, isPlainName, joinVirtual, MAX_NAME_BYTES, ROOT } from "./vpath.ts";

const { O_RDONLY, O_NOFOLLOW, O_NONBLOCK } = constants;
/** How many numbered names (`base.1` …) STOU tries before it picks a random one. */
const UNIQUE_TRIES = 99;
/** Names openUnique tries when each is taken by another session before it can create it. */
const UNIQUE_RACES = 20;
/** STOU's upload: a new file, never one that is there. */
const UNIQUE_UPLOAD: UploadOptions = { kind: "store", offset: 0, exclusive: true };

/** How a jail creates entries. */
export interface JailOptions {
  /** Umask of new files and directories (config `storage.umask`); default 022. */
  readonly umask?: number;
  /** Where the jail tells what it does by itself (a session's log): each upload temp file a
   * listing removed as left behind (fs/upload.ts sweepStaleTemps), at info. */
  readonly log?: JailLog;
  /** How long an upload temp file must have gone unwritten before a listing removes it (ms; never
   * less than fs/upload.ts STALE_TEMP_AGE_MS, the default). */
  readonly staleTempMs?: number;
  /** An upload's file and its directory are flushed to the disk before the upload ends (config
   * `transfer.fsync`); default false. */
  readonly fsync?: boolean;
}

/** What a jail needs of a log. */
export interface JailLog {
  info(fields: object, msg: string): void;
}

/** Random names uniqueName draws before it gives up on the name rules. */
const RANDOM_NAME_TRIES = 20;

/** Whether a name may be made (STOU's names). */
export type NameFilter = (name: string) => boolean;

/** `base` with `suffix` after it, `base` cut short (never inside a character) where the whole
 * would be longer than a name may be (MAX_NAME_BYTES): a STOU of a name that long, when it is
 * taken, still gets a name, as it would of a shorter one. */
function suffixed(base: string, suffix: string): string {
  const room = MAX_NAME_BYTES - Buffer.byteLength(suffix);
  if (Buffer.byteLength(base) <= room) return base + suffix;
  let kept = "";
  let bytes = 0;
  for (const ch of base) {
    const n = Buffer.byteLength(ch);
    if (bytes + n > room) break;
    kept += ch;
    bytes += n;
  }
  return kept + suffix;
}

function anyName(): boolean {
  return true;
}

/** A user's filesystem, jailed to their home directory. */
export class JailedFs {
  /** The real, canonical path of the home (for log lines only; never send it to a client). */
  readonly root: RealPath;
  /** Modes of new files and directories. */
  readonly modes: CreateModes;

  /** The home's root held open for opens below it (fs/beneath.ts), until close(). */
  private held: HeldRoot | null;
  private readonly log: JailLog | null;
  private readonly staleTempMs: number;
  private readonly fsync: boolean;

  private constructor(root: RealPath, modes: CreateModes, held: HeldRoot | null, opts: JailOptions) {
    this.root = root;
    this.modes = modes;
    this.held = held;
    this.log = opts.log ?? null;
    this.staleTempMs = Math.max(STALE_TEMP_AGE_MS, opts.staleTempMs ?? 0);
    this.fsync = opts.fsync === true;
  }

  /** Lets go of the root held open (the session has ended); the jail still works, by its paths.
   * Harmless twice. */
  close(): void {
    releaseRoot(this.root, this.held);
    this.held = null;
  }

  /** Opens the jail at `home` (made absolute), creating it like `mkdir -p` when missing. */
  static async open(home: string, opts: JailOptions = {}): Promise<JailedFs> {
    const modes = modesFor(opts.umask ?? DEFAULT_UMASK);
    return guard(async () => {
      const abs = path.resolve(home);
      // A home that is there (every login but the first) costs one stat, not a mkdir.
      let there = await stat(abs).catch(() => null);
      if (!there?.isDirectory()) {
        const created = await makeDirs(abs, modes.dir);
        if (created !== undefined) await fixDirMode(abs, modes.dir);
        there = await stat(abs);
      }
      const real = (await realpath(abs)) as RealPath;
      return new JailedFs(real, modes, holdRoot(real, there), opts);
    });
  }

  /** Stat of `v`, following symlinks that stay inside the jail. */
  stat(v: VirtualPath): Promise<EntryStat> {
    return guard(async () => {
      const held = await holdTarget(this.root, v);
      held.release();
      return toEntryStat(held.stats);
    });
  }

  /** Stat of the entry `v` itself, a symlink not followed (links on the way to it are, as for
   * stat). The root is a directory. */
  entryStat(v: VirtualPath): Promise<EntryStat> {
    if (v === ROOT) return this.stat(v);
    return guard(async () => {
      const e = await holdEntry(this.root, v);
      e.dir.release();
      return toEntryStat(present(e.lstat));
    });
  }

  /** The path `v` leads to, every link on the way resolved (links inside the jail are followed
   * everywhere): `/pub/2024/a.txt` for `/latest/a.txt` when `/latest` is a link to `pub/2024`. A
   * missing tail stays as written. Refused as everywhere when a link on the way leads out. */
  canonical(v: VirtualPath): Promise<VirtualPath> {
    return guard(async () => {
      if (v === ROOT) return ROOT;
      const { real } = await locate(this.root, v);
      const rel = path.relative(this.root, real);
      return (rel === "" ? ROOT : `/${rel.split(path.sep).join("/")}`) as VirtualPath;
    });
  }

  /** True when `v` is a directory inside the jail; false when it is missing, a file or refused. */
  async isDirectory(v: VirtualPath): Promise<boolean> {
    try {
      return (await this.stat(v)).type === "dir";
    } catch (err) {
      if (isFtpError(err) && (err.code === 550 || err.code === 553)) return false;
      throw err;
    }
  }

  /** For CWD: true when `v` is a directory the server may enter; false when it is missing, a file
   * or refused (as isDirectory). One whose mode denies the server the search (x) bit is 550
   * Permission denied, as chdir(2) would be: entered, it would leave the session where every
   * command fails, each as if nothing were there. */
  async canEnter(v: VirtualPath): Promise<boolean> {
    let held: HeldTarget;
    try {
      held = await guard(() => holdTarget(this.root, v));
    } catch (err) {
      if (isFtpError(err) && (err.code === 550 || err.code === 553)) return false;
      throw err;
    }
    try {
      if (!held.stats.isDirectory()) return false;
      // A name looked up in it, "." itself, needs the search bit (the descriptor held is O_PATH,
      // which needs none).
      await guard(() => stat(`${held.at()}/.`));
      return true;
    } finally {
      held.release();
    }
  }

  /** The entries of directory `v` (sorted by name), or the single entry when `v` is a file.
   * `ticket` is admitted with the directory's size on disk before it is read (fs/listgate.ts). */
  async list(v: VirtualPath, ticket?: ListingTicket): Promise<DirEntry[]> {
    return (await this.listing(v, ticket)).toArray();
  }

  /** list(), with the entries kept packed (fs/listing.ts Entries): what the listing commands read.
   * Upload temp files that a killed server left in the directory go (fs/upload.ts sweepStaleTemps). */
  listing(v: VirtualPath, ticket?: ListingTicket): Promise<Entries> {
    return guard(async () => {
      // Read through the directory held open (fs/pin.ts): names and stats come from the one checked.
      const held = await holdTarget(this.root, v);
      try {
        if (held.stats.isDirectory()) {
          const waiting = ticket?.admit(held.stats.size);
          if (waiting) await waiting;
          const extras: ListingExtras = { temps: NO_TEMPS };
          const entries = await readListing(this.root, held.at() as RealPath, held.stats.size, true, extras);
          if (extras.temps.length > 0) await this.sweepTemps(v, held.at(), extras.temps);
          return entries;
        }
        return Entries.one(basename(v), toEntryStat(held.stats));
      } finally {
        held.release();
      }
    });
  }

  /** Removes what of `names` in directory `v` (`at`: its path through the directory held open)
   * are upload temp files left behind, and logs each. */
  private sweepTemps(v: VirtualPath, at: string, names: readonly string[]): Promise<void> {
    return sweepStaleTemps(at, names, this.staleTempMs, (name, bytes) =>
      this.log?.info({ event: "stale-temp", dir: v, name, bytes }, "removed an upload temp file left behind by a server that was killed"),
    );
  }

  /** Opens regular file `v` for reading: through its directory held open and checked (fs/pin.ts),
   * with O_NOFOLLOW, so that neither a directory swapped for a link nor a symlink swapped in for
   * the file after the check is followed. A path with no link on the way opens below the root held
   * open instead, in one call (fs/beneath.ts). O_NONBLOCK keeps a FIFO from blocking the open, and
   * the fstat of what was opened decides whether it is a regular file; a socket does not open at
   * all (ENXIO), and is not one either. */
  openDownload(v: VirtualPath): Promise<Download> {
    return guard(async () => {
      if (v === ROOT) throw new FtpError(550, "Not a regular file");
      const below = beneathNow() ? relBelow(this.root, v) : null;
      const fd = below !== null ? openBeneath(this.root, below, O_RDONLY | O_NOFOLLOW | O_NONBLOCK) : -1;
      const handle = fd >= 0 ? quickFile(fd) : await this.openHeld(v, O_RDONLY | O_NOFOLLOW | O_NONBLOCK).catch(notAFileOnEnxio);
      let size: number;
      try {
        size = await regularSize(handle);
      } catch (err) {
        await handle.close().catch(() => undefined);
        throw err;
      }
      if (size >= 0) return { handle, size };
      await handle.close();
      throw new FtpError(550, "Not a regular file");
    });
  }

  /** Opens `v` for an upload (STOR, STOU, APPE, REST+STOR; see UploadOptions and Upload). A new
   * file too deep for its real path to be named (beyondPathMax) is not made. */
  openUpload(v: VirtualPath, opts: UploadOptions): Promise<Upload> {
    return guard(async () => {
      if (beyondPathMax(this.root, v) && !(await this.exists(v))) throw tooDeepToMake();
      return await openUpload(this.root, v, opts, this.modes.file, this.fsync);
    });
  }

  /** Creates directory `v`; its parent must exist. Not one too deep for its real path to be named
   * (beyondPathMax). */
  mkdir(v: VirtualPath): Promise<void> {
    return guard(async () => {
      if (v === ROOT) throw new FtpError(550, "File exists");
      await this.atEntry(v, async (at, lst) => {
        if (lst !== null) throw new FtpError(550, "File exists");
        if (beyondPathMax(this.root, v)) throw tooDeepToMake();
        await mkdir(at, this.modes.dir);
        await fixDirMode(at, this.modes.dir);
      });
    });
  }

  /** Removes empty directory `v`; never the root, never through a symlink. */
  rmdir(v: VirtualPath): Promise<void> {
    return guard(async () => {
      if (v === ROOT) throw new FtpError(550, "Permission denied", "rmdir of the jail root");
      await this.atEntry(v, async (at, lst) => {
        if (!present(lst).isDirectory()) throw new FtpError(550, "Not a directory");
        try {
          await rmdir(at);
        } catch (err) {
          // A directory that lists empty but holds temp files of uploads cut off by a killed
          // server: nobody can see or name them, so they would keep it forever.
          if (errnoOf(err) !== "ENOTEMPTY" || !(await this.removeStaleTemps(at))) throw err;
          await rmdir(at);
        }
      });
    });
  }

  /** Removes file or symlink `v` (a symlink itself, never its target). */
  unlink(v: VirtualPath): Promise<void> {
    return guard(async () => {
      if (v === ROOT) throw new FtpError(550, "Is a directory");
      await this.atEntry(v, async (at, lst) => {
        if (present(lst).isDirectory()) throw new FtpError(550, "Is a directory");
        await unlink(at);
      });
    });
  }

  /** Renames `from` to `to`, replacing a file at `to` unless `noReplace`; a symlink is renamed as
   * itself. True when another entry was at `to` and is gone; false when `to` was free or is `from`
   * itself by another path (a link to its directory), which rename(2) leaves as it is. With
   * `noReplace` (a user who may not overwrite) an entry at `to` is 550, and one that appears there
   * after the look is kept too, where the kernel can check and rename in one step (quick.ts
   * renameNoReplace); elsewhere only the look guards it. */
  rename(from: VirtualPath, to: VirtualPath, noReplace = false): Promise<boolean> {
    return guard(async () => {
      if (from === ROOT || to === ROOT) throw new FtpError(550, "Permission denied", "rename of the jail root");
      return await this.atEntry(from, (a, lst) => {
        const source = present(lst);
        return this.atEntry(to, async (b, target) => {
          // A new name too deep to be named by its real path is not made (beyondPathMax).
          if (target === null && beyondPathMax(this.root, to)) throw tooDeepToMake();
          if (noReplace) {
            if (target !== null) throw new FtpError(550, "File exists");
            if (await renameNoReplace(a, b)) return false;
          }
          await rename(a, b).catch(belowItself);
          return target !== null && (target.ino !== source.ino || target.dev !== source.dev);
        });
      });
    });
  }

  /** Sets the modification time of `v` (MFMT, RFC draft-somers-ftp-mfxx), keeping its atime, and
   * returns the time it now has: a filesystem keeps what it can (ext4 clamps to 1901..2446). */
  setMtime(v: VirtualPath, date: Date): Promise<Date> {
    return guard(async () => {
      if (Number.isNaN(date.getTime())) throw new FtpError(501, "Invalid time");
      // Through the descriptor of what was checked (fs/pin.ts holdTarget).
      const held = await holdTarget(this.root, v);
      try {
        await utimes(held.at(), held.stats.atime, date);
        return (await stat(held.at())).mtime;
      } finally {
        held.release();
      }
    });
  }

  /** Sets the permission bits of `v` (SITE CHMOD): 0..0777 only, never setuid/setgid/sticky, and
   * never through a final symlink (fs/pin.ts chmodNoFollow). */
  chmod(v: VirtualPath, mode: number): Promise<void> {
    return guard(async () => {
      if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) throw new FtpError(501, "Invalid mode");
      if (v === ROOT) return chmodNoFollow(this.root, mode);
      await this.atEntry(v, async (at, lst) => {
        if (present(lst).isSymbolicLink()) {
          await this.existing(v); // a link that leaves the jail is "not found", as everywhere
          throw new FtpError(550, "Not allowed on a symbolic link");
        }
        await chmodNoFollow(at, mode);
      });
    });
  }

  /** True when something (even a dangling symlink) is at `v`; false when missing or refused. The
   * name is looked at through its parent held open (fs/pin.ts holdEntry). */
  async exists(v: VirtualPath): Promise<boolean> {
    try {
      return await guard(async () => {
        if (v === ROOT) return true;
        const e = await holdEntry(this.root, v);
        e.dir.release();
        return e.lstat !== null;
      });
    } catch (err) {
      if (isFtpError(err) && err.code === 550) return false;
      throw err;
    }
  }

  /** STOU's file in `dir`: created at `first` (a name uniqueName gave), or at the next free name
   * when another session created that one between the look and the create (on a slow disk, whose
   * calls go through the thread pool, concurrent STOUs interleave). */
  async openUnique(dir: VirtualPath, base: string, first: string, allowed: NameFilter = anyName): Promise<{ name: string; upload: Upload }> {
    let name = first;
    for (let tries = 1; ; tries++) {
      try {
        return { name, upload: await this.openUpload(joinVirtual(dir, name), UNIQUE_UPLOAD) };
      } catch (err) {
        if (tries >= UNIQUE_RACES || !isFtpError(err) || err.message !== FILE_EXISTS) throw err;
      }
      name = await this.uniqueName(dir, base, allowed);
    }
  }

  /** A name not yet present in `dir` for STOU: `base`, `base.1` … `base.99`, else a random one
   * (a long `base` cut to make room for the suffix: suffixed);
   * only names `allowed` takes (the server's hidden and denied names are not made this way), else
   * 550. openUnique creates it exclusively, and moves on to another name if it was taken meanwhile. */
  async uniqueName(dir: VirtualPath, base: string, allowed: NameFilter = anyName): Promise<string> {
    if (base !== "" && !isPlainName(base)) throw new FtpError(553, "File name not allowed");
    if (base !== "") {
      for (let i = 0; i <= UNIQUE_TRIES; i++) {
        const name = i === 0 ? base : suffixed(base, `.${i}`);
        if (allowed(name) && !(await this.exists(joinVirtual(dir, name)))) return name;
      }
    }
    // Random names drawn until one is allowed (a pattern may match some: "*a*").
    for (let i = 0; i < RANDOM_NAME_TRIES; i++) {
      const name = suffixed(base === "" ? "file" : base, `.${randomBytes(6).toString("hex")}`);
      if (allowed(name)) return name;
    }
    throw new FtpError(550, "Permission denied: name not allowed", "no unique name the name rules allow");
  }

  /** Removes the entries of directory `at` when every one is a stale upload temp file (see
   * isStaleTemp), a regular file as an upload makes it; true when it did. The directory is held
   * open, never followed if a link. */
  private async removeStaleTemps(at: string): Promise<boolean> {
    const dir = await pinDir(this.root, at as RealPath, false);
    try {
      const names = await readdir(dir.at());
      if (!names.every(isStaleTemp)) return false;
      // A directory so named was made by other means, and keeps its parent as anything else does.
      for (const name of names) if (!(await lstat(dir.at(name))).isFile()) return false;
      for (const name of names) await unlink(dir.at(name));
      return true;
    } finally {
      dir.release();
    }
  }

  /** Runs `step` on entry `v` itself (not the root) named through its parent held open and checked
   * (fs/pin.ts holdEntry), with its lstat (null when nothing is there). */
  private async atEntry<T>(v: VirtualPath, step: (at: string, lstat: Stats | null) => Promise<T>): Promise<T> {
    const e = await holdEntry(this.root, v);
    try {
      return await step(e.dir.at(e.name), e.lstat);
    } finally {
      e.dir.release();
    }
  }

  /** Opens `v` (not the root) with `flags` (O_NOFOLLOW among them) through its directory held
   * open. The usual case, a file that is not a link, costs no lstat: the open itself says ELOOP
   * for a link, which then takes locate's way (fs/pin.ts locateHeld). */
  private async openHeld(v: VirtualPath, flags: number): Promise<Awaited<ReturnType<typeof open>>> {
    const quick = await pinParent(this.root, v);
    if (quick !== null) {
      try {
        return await open(quick.dir.at(quick.name), flags);
      } catch (err) {
        if (errnoOf(err) !== "ELOOP") throw err;
      } finally {
        quick.dir.release();
      }
    }
    const held = await locateHeld(this.root, v);
    try {
      if (!held.exists) throw new FtpError(550, "No such file or directory");
      return await open(held.dir.at(held.name), flags);
    } finally {
      held.dir.release();
    }
  }

  /** The fully resolved real path of `v`, which must exist inside the jail. */
  private async existing(v: VirtualPath): Promise<RealPath> {
    const located = await locate(this.root, v);
    if (!located.exists) throw new FtpError(550, "No such file or directory");
    return located.real;
  }
}

/** open(2) of a socket (or of a device node with no device behind it) says ENXIO, "no such device
 * or address": to a client, not a regular file. */
function notAFileOnEnxio(err: unknown): never {
  if (errnoOf(err) === "ENXIO") throw new FtpError(550, "Not a regular file", "ENXIO: a socket or an absent device");
  throw err;
}

/** rename(2)'s EINVAL: a directory moved below itself, by way of a link to it or to a directory
 * below it (the paths as written are checked before: protocol/commands/files.ts). */
function belowItself(err: unknown): never {
  if (errnoOf(err) === "EINVAL") throw new FtpError(550, "Can't move a name below itself", "EINVAL rename");
  throw err;
}

/** The lstat of an entry that must be there. */
function present(lst: Stats | null): Stats {
  if (lst === null) throw new FtpError(550, "No such file or directory");
  return lst;
}

/** Runs a filesystem step; whatever it throws comes out as an FtpError. */
async function guard<T>(step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (err) {
    throw mapFsError(err);
  }
}
