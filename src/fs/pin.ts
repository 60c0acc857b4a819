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
 */
import * as fs from "node:fs";
import path from "node:path";
import { FtpError } from "../protocol/errors.ts";
import { escaped, isInside } from "./contain.ts";
import { closeFd, O_PATH, openFd, procFdPaths, setProcFdPathsForTest } from "./quick.ts";
import type { RealPath } from "./types.ts";

const { O_DIRECTORY, O_NOFOLLOW } = fs.constants;

/** Whether descriptors can be checked and named through /proc/self/fd. */
export function pinning(): boolean {
  return procFdPaths();
}

/** For tests: pretend /proc/self/fd is (not) there; undefined finds out again. */
export function setPinningForTest(on: boolean | undefined): void {
  setProcFdPathsForTest(on);
}

/** The path the kernel has for open descriptor `fd`. */
function fdPath(fd: number): string {
  return fs.readlinkSync(`/proc/self/fd/${fd}`);
}

/** Throws (the reply for a missing file) unless open descriptor `fd` is inside `root`. A file or
 * directory removed since it was opened reads "… (deleted)", and is judged by where it was. */
export function checkOpened(root: RealPath, fd: number): void {
  if (!pinning()) return;
  const at = fdPath(fd);
  if (!path.isAbsolute(at) || !isInside(root, at)) throw escaped(at);
}

/** A directory held open and checked to be inside the jail. */
export interface PinnedDir {
  /** A path to entry `name` of the directory (the directory itself without a name). */
  at(name?: string): string;
  /** Closes the descriptor (harmless twice). */
  release(): void;
}

/** Opens directory `dir` (a real path, already through containment) and checks where it is. */
export async function pinDir(root: RealPath, dir: RealPath): Promise<PinnedDir> {
  if (!pinning()) return { at: (name) => (name === undefined ? dir : path.join(dir, name)), release: () => undefined };
  const fd = await openFd(dir, O_PATH | O_DIRECTORY);
  try {
    checkOpened(root, fd);
  } catch (err) {
    closeFd(fd);
    throw err;
  }
  const base = `/proc/self/fd/${fd}`;
  let open = true;
  return {
    at: (name) => (name === undefined ? base : `${base}/${name}`),
    release: () => {
      if (open) closeFd(fd);
      open = false;
    },
  };
}

/** Runs `step` in directory `dir` held open (pinDir), and lets it go after. */
export async function inPinned<T>(root: RealPath, dir: RealPath, step: (d: PinnedDir) => Promise<T>): Promise<T> {
  const d = await pinDir(root, dir);
  try {
    return await step(d);
  } finally {
    d.release();
  }
}

/** stat of `real` (links followed), from a descriptor checked to be inside the jail. */
export async function statInside(root: RealPath, real: RealPath): Promise<fs.Stats> {
  if (!pinning()) return fs.promises.stat(real);
  const fd = await openFd(real, O_PATH);
  try {
    checkOpened(root, fd);
    return fs.fstatSync(fd);
  } finally {
    closeFd(fd);
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
