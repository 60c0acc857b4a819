/**
 * STOR, STOU, APPE and REST+STOR on disk. A new file is written in place; replacing an existing
 * file goes through a temp file renamed over it at commit, so an aborted upload never destroys the
 * old content; a resumed upload writes in place from its offset. The target's directory is held
 * open from the start of the upload to its end (fs/pin.ts), and every call names the file through
 * it: what is opened, renamed, truncated or removed is in the directory containment checked. A new
 * file reached from the root through plain names is created below the root held open instead
 * (fs/beneath.ts), in one call, and holds nothing (createdBelow).
 */
import { isUtf8 } from "node:buffer";
import { randomBytes } from "node:crypto";
import { constants, readlinkSync, unlinkSync } from "node:fs";
import { constants as osConstants } from "node:os";
import type { Stats } from "node:fs";
import { lchown } from "node:fs/promises";
import path from "node:path";
import { FtpError } from "../protocol/errors.ts";
import { isInside, isUploadTemp, relBelow, toReal, UPLOAD_TEMP_PREFIX } from "./contain.ts";
import { errnoOf, mapFsError } from "./errors.ts";
import { DEFAULT_UMASK, fixFileMode, modesFor } from "./modes.ts";
import { chmodNoFollow, heldIn, locateHeld, pinDir, pinning, pinParent, type Held, type PinnedDir } from "./pin.ts";
import { createBeneath, beneathNow, NOT_TRIED } from "./beneath.ts";
import { fdOf, fstat, lstat, lstatOrNull, nameChangesSoFar, open, quickFile, rename, unlink, type FileLike } from "./quick.ts";
import { fsyncDirectory, fsyncFd } from "./sync.ts";
import { Replaced, type RealPath, type Upload, type UploadOptions, type VirtualPath } from "./types.ts";

const { O_WRONLY, O_CREAT, O_EXCL, O_APPEND, O_NOFOLLOW, O_NONBLOCK } = constants;
/** New files get 0666 minus `storage.umask` (fs/modes.ts), unless the caller says otherwise. */
const FILE_MODE = modesFor(DEFAULT_UMASK).file;
/** O_NOFOLLOW: a symlink swapped in after the check is refused (ELOOP), never followed.
 * O_NONBLOCK: opening a FIFO can never block a libuv worker forever. */
const SAFE = O_NOFOLLOW | O_NONBLOCK;

/** The reply text of an exclusive upload (STOU) whose name is taken. */
export const FILE_EXISTS = "File exists";

/** Opens the upload target `vpath` inside `root` as `opts` says (see UploadOptions). */
export async function openUpload(root: RealPath, vpath: VirtualPath, opts: UploadOptions, mode = FILE_MODE, fsync = false): Promise<Upload> {
  // Counted before anything is looked at or made: a rename or removal from here on, even one made
  // while the file is being created, makes the upload look whether its file is still at its name.
  const changes = nameChangesSoFar();
  const upload = await opened(root, vpath, opts, mode);
  if (upload instanceof FileUpload) {
    upload.nameChangesAtStart = changes;
    if (fsync) upload.syncIn(path.dirname(toReal(root, vpath)));
  }
  return upload;
}

async function opened(root: RealPath, vpath: VirtualPath, opts: UploadOptions, mode: number): Promise<Upload> {
  checkOffset(opts.offset);
  if (toReal(root, vpath) === root) throw new FtpError(550, "Is a directory");
  let target: Held | null = null;
  if (opts.kind === "store" && opts.offset === 0) {
    // The usual upload, a new file: created at once below the root held open, in one call
    // (fs/beneath.ts), with no lstat first and no directory held (createdBelow). Where that does
    // not create it, through its directory held open; when something is already there (EEXIST),
    // it is looked at through the same directory; a symlink takes locateHeld's way, which follows
    // it inside the jail.
    const below = beneathNow() ? relBelow(root, vpath) : null;
    const fd = below !== null ? createBeneath(root, below, O_WRONLY | O_CREAT | O_EXCL | SAFE, mode) : NOT_TRIED;
    if (fd >= 0) return createdBelow(root, vpath, quickFile(fd), mode);
    const parent = await pinParent(root, vpath);
    if (parent !== null) {
      let created: Upload | null = null;
      try {
        if (fd !== NEG_EEXIST) created = await tryCreate(root, parent, mode);
      } catch (err) {
        parent.dir.release();
        throw err;
      }
      if (created !== null) return created;
      target = await heldIn(parent);
    }
  }
  target ??= await locateHeld(root, vpath);
  const dir = target.dir;
  try {
    const at: Target = { dir, name: target.name };
    // The lstat made through the held directory (never of a symlink) says what is there.
    if (target.lstat !== null) checkTarget(target.lstat, opts);
    if (opts.kind === "append") return await openAppend(root, at, target.exists, mode, opts.exclusive);
    if (opts.offset > 0) return await openAtOffset(root, at, target.exists, opts.offset);
    // A replaced file keeps its permission bits (a private 0600 file, a 0755 script), as it would
    // written in place; only a new file takes the umask's.
    if (target.lstat !== null) {
      await mayWrite(at);
      return await openTemp(at, target.lstat.mode & 0o777);
    }
    return await createNew(root, at, opts.exclusive, mode);
  } catch (err) {
    dir.release();
    throw err;
  }
}

/** An upload's file: its name in its directory, held open until the upload ends. */
interface Target {
  readonly dir: PinnedDir;
  readonly name: string;
}

function checkOffset(offset: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0) {
    throw new FtpError(501, "Invalid restart offset", `offset ${offset}`);
  }
}

function checkTarget(s: Stats, opts: UploadOptions): void {
  if (s.isDirectory()) throw new FtpError(550, "Is a directory");
  if (!s.isFile()) throw new FtpError(550, "Not a regular file");
  if (opts.exclusive) throw new FtpError(550, FILE_EXISTS);
}

/** A target that did not exist: created exclusively. If it appeared in the meantime, a
 * non-exclusive upload falls back to replacing it through a temp file. */
async function createNew(root: RealPath, t: Target, exclusive: boolean, mode: number): Promise<Upload> {
  const created = await tryCreate(root, t, mode);
  if (created !== null) return created;
  if (exclusive) throw new FtpError(550, FILE_EXISTS);
  return openTemp(t, mode);
}

/** -EEXIST, as the addon's calls return it. */
const NEG_EEXIST = -osConstants.errno.EEXIST;

/** A new file's directory, not held: a file created below the root (createdBelow) names it again
 * by its path (atParentAgain) in the rare case of an upload undone. */
const NOT_HELD: PinnedDir = {
  real: "",
  at(): string {
    throw new Error("a directory not held");
  },
  release(): void {},
};

/**
 * The upload of a file just created below the root (fs/beneath.ts). Nothing is held for it: its
 * directory was reached from the root through plain names, and the file is written through its
 * own descriptor. An upload that is undone (abort, rollback) finds its file where it is now
 * (WhereNow, undoInPlace), or else by the path, through its parent opened again and checked
 * (pinParent).
 */
async function createdBelow(root: RealPath, vpath: VirtualPath, handle: FileLike, mode: number): Promise<Upload> {
  try {
    await fixFileMode(handle, mode);
  } catch (err) {
    await handle.close().catch(noop);
    throw mapFsError(err);
  }
  return inPlace(root, { dir: NOT_HELD, name: "" }, handle, 0, removeIfEmpty, unlinkIfOwn, (step, own) => atParentAgain(root, vpath, own, step), null, true, () =>
    createdNameNow(handle, toReal(root, vpath)),
  );
}

/** Where the name of a file created below the root is now, read from its descriptor just before
 * its upload closes it (no directory is held for it): its path where it is still in its directory
 * under the name it was created with (that directory may have been renamed, and took it along, as
 * a directory held open would); null when it is not (deleted, renamed, moved into another
 * directory); `file`, its path, where /proc cannot say. */
async function createdNameNow(handle: FileLike, file: string): Promise<string | null> {
  const p = realPathOf(handle);
  if (p === null || p === file) return file;
  if (path.basename(p) !== path.basename(file)) return null;
  // The same name in a directory at another path: its own directory renamed (nothing is at the old
  // path now, or the same directory is), or the file moved into another one (RNTO d/n to e/n),
  // which leaves its bytes at a name the client did not give. Only this rare case looks further.
  const was = await lstatOrNull(path.dirname(file));
  const now = await lstatOrNull(path.dirname(p));
  return was === null || (now !== null && sameFile(now, was)) ? p : null;
}

/** Where an undone upload that writes in place finds its file when WhereNow cannot say: `step` on
 * it the way it was opened (byPath, atParentAgain). */
type AsOpened = (step: UndoStep, own: Stats | null) => Promise<void>;

/** An upload that writes in place (makeUpload), undone on its own file where that file is then
 * (WhereNow, undoInPlace), else where `asOpened` finds it: `onAbort` on abort (null: nothing, the
 * partial data stays), `onRollback` on rollback. */
function inPlace(
  root: RealPath,
  t: Target,
  handle: FileLike,
  position: number,
  onAbort: UndoStep | null,
  onRollback: UndoStep,
  asOpened: AsOpened,
  opened: Stats | null,
  created: boolean,
  nameNow: (() => string | null | Promise<string | null>) | null = null,
): Upload {
  const where = new WhereNow(handle);
  return makeUpload(
    t,
    handle,
    position,
    noop,
    onAbort === null ? noop : (own) => undoInPlace(root, where, own, onAbort, asOpened),
    (own) => undoInPlace(root, where, own, onRollback, asOpened),
    opened,
    created,
    (undone) => where.note(undone),
    null,
    null,
    // Its name in the directory held open; a file created below the root says where it is itself.
    nameNow ?? (() => t.dir.at(t.name)),
  );
}

/**
 * Where the file of an upload that writes in place is, read from its descriptor just before it
 * closes on abort or rollback (nothing is read for an upload that commits). Another session may
 * have renamed the file, or a directory on its way, while it was written: its undoing (removing a
 * new file, cutting an appended one back) follows it there, as far as it stays inside the jail, so
 * that the rollback of an upload stopped by the quota does not leave its bytes uncounted under
 * another name.
 */
class WhereNow {
  /** A real path; null where it cannot be told (no /proc, a descriptor already closed). */
  seen: string | null = null;

  constructor(private readonly handle: FileLike) {}

  /** makeUpload's beforeClose. */
  note(undone: boolean): void {
    if (undone) this.seen = realPathOf(this.handle);
  }
}

/** The path /proc/self/fd gives for `handle`'s descriptor, or null. A file removed meanwhile reads
 * "… (deleted)", a name its own identity is then not found under. A path that is not UTF-8 (a
 * directory named on the machine in another encoding) is null too: as a string it would name
 * another entry, or none. */
function realPathOf(handle: FileLike): string | null {
  const fd = fdOf(handle);
  if (fd === null) return null;
  try {
    const p = readlinkSync(`/proc/self/fd/${fd}`, { encoding: "buffer" });
    return isUtf8(p) && p[0] === SLASH ? p.toString("utf8") : null;
  } catch {
    return null;
  }
}

const SLASH = 0x2f;

/** An undoing step on the upload's file: the path, and the file's identity (own). */
type UndoStep = (file: string, own: Stats | null) => Promise<void>;

/** `step` on the upload's file where WhereNow read it to be, through its directory opened again and
 * checked to be inside the jail, when the file's own identity is known (the step then touches that
 * file alone); nothing when it is outside the jail now (moved out by someone on the machine: a
 * directory held open would lead there); otherwise, or where that directory does not open,
 * `asOpened` runs `step` the way the file was opened (byPath, atParentAgain). */
async function undoInPlace(root: RealPath, where: WhereNow, own: Stats | null, step: UndoStep, asOpened: AsOpened): Promise<void> {
  const known = where.seen !== null && own !== null;
  if (known && !isInside(root, path.dirname(where.seen as string))) return;
  const parent = known ? await pinWhereNow(root, where.seen as string) : null;
  if (parent === null) return asOpened(step, own);
  try {
    await step(parent.dir.at(parent.name), own);
  } finally {
    parent.dir.release();
  }
}

/** `step` on `file`, the path the upload's file was opened by. */
function byPath(file: string): AsOpened {
  return (step, own) => step(file, own);
}

/** `step` on `vpath` through its parent opened again and checked (pinParent); nothing where that
 * does not open (gone, or a link out now). */
async function atParentAgain(root: RealPath, vpath: VirtualPath, own: Stats | null, step: UndoStep): Promise<void> {
  const parent = await pinParent(root, vpath);
  if (parent === null) return;
  try {
    await step(parent.dir.at(parent.name), own);
  } finally {
    parent.dir.release();
  }
}

/** The parent of `file` (a real path read from an upload's descriptor) held open and checked, and
 * its name; null when that path is not inside the jail or its parent does not open there. */
async function pinWhereNow(root: RealPath, file: string): Promise<{ dir: PinnedDir; name: string } | null> {
  const dir = path.dirname(file);
  if (dir === file || !isInside(root, dir)) return null;
  try {
    return { dir: await pinDir(root, dir as RealPath), name: path.basename(file) };
  } catch {
    return null;
  }
}

/** Creates the target exclusively; null when something is already there. */
async function tryCreate(root: RealPath, t: Target, mode: number): Promise<Upload | null> {
  const file = t.dir.at(t.name);
  try {
    const handle = await openCreated(file, O_WRONLY | O_CREAT | O_EXCL | SAFE, mode);
    return inPlace(root, t, handle, 0, removeIfEmpty, unlinkIfOwn, byPath(file), null, true);
  } catch (err) {
    if (errnoOf(err) === "EEXIST") return null;
    throw mapFsError(err);
  }
}

/** The temp files of this process's replacing uploads, from just before each is created until
 * its upload has settled: name (random) → path through the directory held open. RMD leaves these
 * names alone (isStaleTemp); an exit removes these paths (removeLiveTempsSync). */
const runningTemps = new Map<string, string>();

/**
 * Removes, at once, the temp files of replacing uploads still running: for a process that exits
 * before they end (a second SIGINT or SIGTERM, a shutdown past its backstop, a fatal error). Left
 * there, each would stay on disk for good, hidden from every listing, not addressable by any
 * command and outside every quota. The files they were to replace are untouched.
 */
export function removeLiveTempsSync(): void {
  for (const temp of runningTemps.values()) {
    try {
      unlinkSync(temp);
    } catch {
      // Not made yet, renamed into place or gone with its directory: nothing is left behind.
    }
  }
  runningTemps.clear();
}

/** Replace: write `.berth-upload-<random>` beside the target; commit renames it over the target.
 * Both are named through the directory held open, so a directory renamed meanwhile gets the file
 * under its new name, as a download or a resumed upload in it would. */
async function openTemp(t: Target, mode: number): Promise<Upload> {
  const name = UPLOAD_TEMP_PREFIX + randomBytes(8).toString("hex");
  const temp = t.dir.at(name);
  runningTemps.set(name, temp);
  let handle: FileLike;
  try {
    handle = await openCreated(temp, O_WRONLY | O_CREAT | O_EXCL | SAFE, mode);
  } catch (err) {
    runningTemps.delete(name);
    throw err;
  }
  // Without a directory held open (no /proc/self/fd) the names are paths: if the directory was
  // renamed meanwhile, the rename into place fails (the target moved too), and the temp file is
  // removed where it now is.
  const where = { now: temp };
  const replaces = new Replaced();
  return makeUpload(
    t,
    handle,
    0,
    () => renameOver(temp, t.dir.at(t.name), replaces, mode),
    () => removeTemp(temp, where.now),
    () => removeTemp(temp, where.now),
    null,
    false,
    pinning() ? nothing : () => void (where.now = pathNow(handle, temp)),
    replaces,
    name,
  );
}

/** Refuses (EACCES, 550) to replace a file the server may not write. The temp file is renamed
 * over it, which rename(2) allows wherever the directory is writable, whatever the file's own
 * mode: a file made 0444 (SITE CHMOD) or another account's would be replaced where APPE and
 * REST+STOR, which open it for writing, are refused, and where vsftpd and ProFTPD, which open it
 * with O_TRUNC, refuse the upload. So it is opened for writing first, as they do, and closed:
 * the kernel decides, ACLs and all, and nothing is written to it. */
async function mayWrite(t: Target): Promise<void> {
  const handle = await open(t.dir.at(t.name), O_WRONLY | SAFE);
  await handle.close();
}

/** What follows the prefix in a temp file's name as openTemp makes it: 16 hex digits. Anything
 * else that begins with the prefix (put there by other means: restored from a backup, say) is
 * left alone, by a listing's sweep and by RMD alike. */
const TEMP_SUFFIX = /^[0-9a-f]{16}$/;

/** True for the name of an upload temp file, as openTemp names them, that no running upload of
 * this process writes: one left by a server that was killed mid-upload, which nothing will ever
 * rename or remove. */
export function isStaleTemp(name: string): boolean {
  return isUploadTemp(name) && TEMP_SUFFIX.test(name.slice(UPLOAD_TEMP_PREFIX.length)) && !runningTemps.has(name);
}

/** How long, at least, an upload temp file that no upload of this process writes must have gone
 * unwritten before a listing of its directory removes it. A running upload writes to its temp file
 * far more often (one stalled for `limits.stalledTimeout` is aborted, its temp file removed; the
 * jail is given twice that where it is longer than this), so a temp file this old was left by a
 * server that was killed: this one before a restart, or another sharing the disk. */
export const STALE_TEMP_AGE_MS = 24 * 3600_000;

/** How long (ms) a sweep works between two turns of the event loop: its calls are synchronous
 * while the disk answers fast (fs/quick.ts), and a directory may hold thousands of temp files
 * left behind (some 30 µs each to remove), which would otherwise keep every other session
 * waiting for the whole sweep. */
const SWEEP_SLICE_MS = 2;

/**
 * Removes, from the directory `dir` (its path through the directory held open), those of `names`
 * that are upload temp files left behind: each is named as openTemp names them (TEMP_SUFFIX), no
 * running upload of this process writes it (isStaleTemp), each is a regular file (never a link or
 * a directory), and none was written for `ageMs`. Each removal is told to `removed`, with the
 * bytes it frees. Never throws: a file that cannot be looked at or removed stays, for the next
 * listing. Other sessions get their turn every SWEEP_SLICE_MS.
 */
export async function sweepStaleTemps(
  dir: string,
  names: readonly string[],
  ageMs: number,
  removed: (name: string, bytes: number) => void,
  now = Date.now(),
): Promise<void> {
  let slice = performance.now();
  for (const name of names) {
    if (performance.now() - slice > SWEEP_SLICE_MS) {
      await new Promise<void>((resolve) => setImmediate(resolve));
      slice = performance.now();
    }
    if (!isStaleTemp(name)) continue;
    const at = `${dir}/${name}`;
    try {
      const st = await lstatOrNull(at);
      if (st === null || !st.isFile() || now - st.mtimeMs < ageMs) continue;
      await unlink(at);
      removed(name, st.size);
    } catch {
      // Gone meanwhile, or not ours to remove: it stays for the next listing.
    }
  }
}

/** Renames a replacing upload's temp file (made with `mode`) over its target, noting what was
 * there (another session may have replaced or removed the target since the upload began). */
async function renameOver(temp: string, target: string, replaces: Replaced, mode: number): Promise<void> {
  const was = await lstatOrNull(target);
  replaces.stats = was;
  if (was !== null && was.isFile()) await keepOwner(temp, was);
  // The replaced file's mode is the one it has now: a SITE CHMOD made while the upload ran (answered
  // 200) sticks, as it would on a file written in place, instead of the mode it had when the
  // upload began, which the temp file was made with.
  if (was !== null && was.isFile() && (was.mode & 0o777) !== mode) await chmodNoFollow(temp, was.mode & 0o777);
  await rename(temp, target);
}

/** Gives a replacing upload's temp file the owner and group of the file `was` it replaces, where
 * they are not already the process's own (what the temp file was made with): a server running as
 * root would otherwise hand every file it replaces to root, and its owner could no longer write
 * it, where a file written in place keeps both. Anyone else cannot give a file away (EPERM), nor
 * take a group they are not in, and root in a container may lack the right (EPERM) or see an owner
 * its user namespace does not map (EINVAL): the temp file then stays the process's, as it always
 * was, and the upload goes on. */
async function keepOwner(temp: string, was: Stats): Promise<void> {
  if (was.uid === process.geteuid?.() && was.gid === process.getegid?.()) return;
  await lchown(temp, was.uid, was.gid).catch(noop);
}

/** Removes a replacing upload's temp file, and where it is now if it moved. */
async function removeTemp(temp: string, now: string): Promise<void> {
  await unlinkQuietly(temp);
  if (now !== temp) await unlinkQuietly(now);
}

/** Where the file open as `handle` (opened as `opened`) is now, read from /proc/self/fd; `opened`
 * where that cannot be told, or names another file (one removed meanwhile reads "… (deleted)"). */
function pathNow(handle: FileLike, opened: string): string {
  const p = realPathOf(handle);
  return p !== null && path.basename(p) === path.basename(opened) ? p : opened;
}

/** REST n + STOR (RFC 3659 §5.5): keep bytes [0, n), drop the rest, write from n. */
async function openAtOffset(root: RealPath, t: Target, exists: boolean, offset: number): Promise<Upload> {
  if (!exists) throw new FtpError(550, "No such file or directory", "restart on a missing file");
  const file = t.dir.at(t.name);
  const handle = await open(file, O_WRONLY | SAFE);
  try {
    const opened = await regularStats(handle);
    const size = opened.size;
    if (offset > size) throw new FtpError(554, "Restart offset beyond end of file", `offset ${offset} > ${size}`);
    // Truncating at the offset makes the file after an abort exactly "resumable from its size".
    await handle.truncate(offset);
    return inPlace(root, t, handle, offset, null, cutTo(offset), byPath(file), opened, false);
  } catch (err) {
    await handle.close().catch(noop);
    throw err;
  }
}

/** Opens APPE tries when its file keeps appearing and going between them. */
const APPEND_TRIES = 3;

/** APPE (RFC 959 §4.1.3): create when missing; data goes to the end. `exclusive`: only create (a
 * file that appeared since the look is not appended to). */
async function openAppend(root: RealPath, t: Target, existed: boolean, mode: number, exclusive: boolean): Promise<Upload> {
  const file = t.dir.at(t.name);
  // Whether the upload makes the file is what the kernel says, not the look before: the file is
  // made exclusively where nothing was there, and one that was there is opened without O_CREAT.
  // Only a file this upload made is removed when it is undone, and counted as a new one: one
  // another session made meanwhile is appended to (or refused without overwrite, `exclusive`), and
  // one removed meanwhile is made anew.
  let made = !existed;
  let handle: FileLike | null = null;
  for (let tries = 0; handle === null; tries++) {
    try {
      handle = await open(file, O_WRONLY | O_APPEND | SAFE | (made ? O_CREAT | O_EXCL : 0), mode);
    } catch (err) {
      const code = errnoOf(err);
      if (tries >= APPEND_TRIES || code !== (made ? "EEXIST" : "ENOENT")) throw err;
      if (made && exclusive) throw new FtpError(550, FILE_EXISTS);
      made = !made;
    }
  }
  try {
    if (made) await fixFileMode(handle, mode);
    const opened = await regularStats(handle);
    const start = opened.size;
    return inPlace(root, t, handle, start, made ? removeIfEmpty : null, made ? unlinkIfOwn : cutTo(start), byPath(file), opened, made);
  } catch (err) {
    await handle.close().catch(noop);
    throw err;
  }
}

/** Opens a file that `flags` (O_EXCL) make new, with exactly `mode` whatever the process umask. */
async function openCreated(file: string, flags: number, mode: number): Promise<FileLike> {
  const handle = await open(file, flags, mode);
  try {
    await fixFileMode(handle, mode);
    return handle;
  } catch (err) {
    await handle.close().catch(noop);
    throw err;
  }
}

/** The stats of an open regular file; anything else (FIFO, device) is refused. */
async function regularStats(handle: FileLike): Promise<Stats> {
  const s = await fstat(handle);
  if (!s.isFile()) throw new FtpError(550, "Not a regular file");
  return s;
}

/** truncateAt `len`, as an undoing step. */
function cutTo(len: number): UndoStep {
  return (file, own) => truncateAt(file, len, own);
}

/** Truncates the file at `file` (never through a symlink in its place) to `len` bytes, if it is
 * still the upload's own file `own`. */
async function truncateAt(file: string, len: number, own: Stats | null): Promise<void> {
  const handle = await open(file, O_WRONLY | SAFE);
  try {
    if (sameFile(await fstat(handle), own)) await handle.truncate(len);
  } finally {
    await handle.close();
  }
}

/** True when `s` is the file `own` (an upload's, fstat'ed before it closed); true as well when
 * `own` is not known. By the time an upload that writes in place is undone, another session may
 * have put a file of its own under that name (a replacing upload, RNTO), never to be touched. */
function sameFile(s: Stats, own: Stats | null): boolean {
  return own === null || (s.ino === own.ino && s.dev === own.dev);
}

/** Wraps a handle so that commit/abort/rollback run once: a second call gets the first's outcome.
 * `beforeClose` runs first in each, while the handle is still open; the target's directory is let
 * go last. `cleanup` (abort) and `undo` (rollback) get the file's fstat, taken before it closed,
 * so that what they remove or cut back by name is the upload's own file and no other. */
function makeUpload(
  t: Target,
  handle: FileLike,
  position: number,
  finish: () => Promise<void>,
  cleanup: (own: Stats | null) => Promise<void>,
  undo: (own: Stats | null) => Promise<void>,
  opened: Stats | null,
  created: boolean,
  beforeClose: (undone: boolean) => void = nothing,
  replaces: Replaced | null = null,
  tempName: string | null = null,
  nameNow: (() => string | null | Promise<string | null>) | null = null,
): Upload {
  return new FileUpload(t, handle, position, finish, cleanup, undo, opened, created, beforeClose, replaces, tempName, nameNow);
}

/** makeUpload's upload. A class, not an object of closures: one is made per upload (see
 * test/hotpath.test.ts). */
class FileUpload implements Upload {
  private settled: Promise<void> | null = null;
  /** The count of renames and removals when the upload began (quick.ts nameChangesSoFar); -1 when
   * not known, and the upload then looks at its end in any case. */
  nameChangesAtStart = -1;
  /** With transfer.fsync, the directory of a file created below the root (no directory held for
   * it): flushed with the file at the end. Null: transfer.fsync is off. */
  private syncDir: string | null = null;

  constructor(
    private readonly t: Target,
    readonly handle: FileLike,
    readonly position: number,
    private readonly finishStep: () => Promise<void>,
    private readonly cleanupStep: (own: Stats | null) => Promise<void>,
    private readonly undoStep: (own: Stats | null) => Promise<void>,
    /** The file's stats taken when it was opened (APPE, REST+STOR), or null: read before it closes. */
    private readonly opened: Stats | null,
    readonly created: boolean,
    /** Runs first in commit (false), abort and rollback (true), while the handle is open. */
    private readonly beforeClose: (undone: boolean) => void,
    readonly replaces: Replaced | null,
    /** A replacing upload's temp file name, in runningTemps until the upload has settled. */
    private readonly tempName: string | null,
    /** For an upload that writes in place: the path its name has now (null: none), read while the
     * file is still open, to tell at commit whether the file is still at that name. */
    private readonly nameNow: (() => string | null | Promise<string | null>) | null,
  ) {}

  commit(): Promise<void> {
    return (this.settled ??= this.release(this.committed()));
  }

  abort(): Promise<void> {
    return (this.settled ??= this.release(this.aborted())).catch(noop);
  }

  rollback(): Promise<void> {
    return (this.settled ??= this.release(this.rolledBack())).catch(noop);
  }

  private release(step: Promise<void>): Promise<void> {
    return step.finally(() => {
      if (this.tempName !== null) runningTemps.delete(this.tempName);
      this.t.dir.release();
    });
  }

  /** Flush the file, and its directory (`createdIn`, where none is held for it), to the disk before
   * the upload ends (transfer.fsync). */
  syncIn(createdIn: string): void {
    this.syncDir = createdIn;
  }

  get sizeAtOpen(): number | null {
    return this.created || this.replaces !== null || this.opened === null ? null : this.opened.size;
  }

  private async committed(): Promise<void> {
    let own: Stats | null = null;
    let name: string | null = null;
    try {
      this.beforeClose(false);
      // No session has renamed or removed a name since the upload began (the usual case): its file
      // is still at its name, and is not looked at.
      if (this.nameNow !== null && nameChangesSoFar() !== this.nameChangesAtStart) {
        own = await this.own();
        name = await this.nameNow();
      }
      // transfer.fsync: the bytes reach the disk before the file is closed (and renamed over its
      // name), and its directory, which holds its name, after: the 226 then outlives a power loss.
      if (this.syncDir !== null) await fsyncFd(fdOf(this.handle));
      await this.handle.close();
      await this.finishStep();
      if (this.syncDir !== null) await fsyncDirectory(this.t.name !== "" ? this.t.dir.at() : this.syncDir);
    } catch (err) {
      await this.cleanupStep(own).catch(noop);
      throw mapFsError(err);
    }
    if (own !== null) await stillNamed(name, own);
  }

  private async aborted(): Promise<void> {
    this.beforeClose(true);
    const own = await this.own();
    await this.handle.close().catch(noop);
    await this.cleanupStep(own).catch(noop);
  }

  private async rolledBack(): Promise<void> {
    this.beforeClose(true);
    const own = await this.own();
    await this.handle.close().catch(noop);
    await this.undoStep(own).catch(noop);
  }

  /** The stats of the upload's file: taken when it was opened, or now while it is still open;
   * null when they cannot be had. */
  private own(): Promise<Stats | null> {
    return this.opened !== null ? Promise.resolve(this.opened) : fstat(this.handle).catch(nullStats);
  }
}

/** The reply to an upload written in place whose file is no longer at its name when it ends. */
const NOT_AT_NAME = "Upload not stored: another session replaced, deleted or renamed the file while it was written; the data is not at that name";

/**
 * Throws (451) unless the file at `name` (null: none) is still `own`, the file an upload wrote in
 * place. Another session may have replaced it meanwhile (a replacing upload renames its temp file
 * over the name, and the file written in place is then left with no name at all), deleted it, or
 * renamed it: the bytes are then nowhere, or at a name the client did not give, and a 226 would be
 * a promise that they are at its name. Nothing is undone: a file renamed away keeps what was
 * written, as after an abort, and one with no name goes as it is closed. Looked at only when some
 * session renamed or removed a name while the upload ran (quick.ts nameChangesSoFar): a readlink
 * and two stats are some 10-20 µs, a tenth of a small upload's whole cost. A change made outside
 * the server (a shell's mv) is not counted, and is not looked for unless one was made through it.
 */
async function stillNamed(name: string | null, own: Stats): Promise<void> {
  const now = name === null ? null : await lstatOrNull(name);
  if (now === null || !sameFile(now, own)) {
    throw new FtpError(451, NOT_AT_NAME, now === null ? "the file's name is gone" : "another file is at the name");
  }
}

/** An aborted new file that got no byte at all (no data connection came) is removed: there is
 * nothing to resume. One with partial data stays for REST+STOR or APPE. */
async function removeIfEmpty(file: string, own: Stats | null): Promise<void> {
  const s = await lstat(file);
  if (s.isFile() && s.size === 0 && sameFile(s, own)) await unlinkQuietly(file);
}

/** Removes a new file an upload made, if it is still the upload's own file `own`. */
async function unlinkIfOwn(file: string, own: Stats | null): Promise<void> {
  const s = await lstatOrNull(file);
  if (s !== null && sameFile(s, own)) await unlinkQuietly(file);
}

function nullStats(): null {
  return null;
}

async function unlinkQuietly(real: string): Promise<void> {
  try {
    await unlink(real);
  } catch (err) {
    if (errnoOf(err) !== "ENOENT") throw err;
  }
}

async function noop(): Promise<void> {}

function nothing(): void {}
