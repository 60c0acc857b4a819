/**
 * Paths opened below a jail's root held open, in one system call (native/beneath.c: openat2 with
 * RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS). A path that opens this way went from the root through
 * the names as given, with no symlink and no ".." on the way, so it is inside the jail and its real
 * path is the root's followed by those names: no check is left to make. fs/pin.ts needs four calls
 * for the same (the parent opened, its /proc path read, the entry opened through that path, the
 * parent closed), and the walks through /proc cost more than the rest.
 *
 * Anything else (a symlink anywhere on the way, a missing name, a kernel before Linux 5.6, a
 * seccomp filter that refuses openat2) fails here, and the caller takes fs/pin.ts's way, which
 * decides it as before. So this is a shortcut with the same answers, never a second judge.
 *
 * The root is opened (O_PATH) at login and shared by the sessions of one home: one descriptor per
 * home in use, not one per session (ten thousand idle sessions hold ten thousand sockets already),
 * closed when its last session ends, so that a home nobody uses keeps nothing open. A login
 * compares the root held with what the home's path leads to now (device and inode, from the stat
 * the login makes anyway) and opens a home replaced since (moved away, made again) afresh. Opens
 * look the root up by the home's path, so from then on every session of that home opens below the
 * new one, as its paths lead there too; until a login sees the change, they open below the one
 * they entered, as a chroot would. Either way nothing opens outside a directory that was the home.
 */
import * as fs from "node:fs";
import { beneathBinding, createBeneathBinding } from "../native.ts";
import { lateCall, O_PATH, procFdPaths, quickEnabled, SLOW_MS } from "./quick.ts";

/** A home's root held open, and how many jails use it. */
export interface HeldRoot {
  readonly fd: number;
  readonly dev: number;
  readonly ino: number;
  refs: number;
}

/** The root held for each home in use, by its real path. */
const roots = new Map<string, HeldRoot>();

let usable: boolean | undefined;

/** Whether openBeneath works here: the addon has it and the kernel lets it run (found out once). */
export function beneathAvailable(): boolean {
  return available();
}

function available(): boolean {
  if (usable !== undefined) return usable;
  usable = false;
  const b = beneathBinding();
  if (b === null) return usable;
  let fd = -1;
  try {
    fd = fs.openSync("/", O_PATH | fs.constants.O_DIRECTORY);
    const probe = b.openBeneath(fd, ".", O_PATH | fs.constants.O_DIRECTORY);
    if (probe >= 0) {
      fs.closeSync(probe);
      usable = true;
    }
  } catch {
    usable = false;
  } finally {
    if (fd >= 0) fs.closeSync(fd);
  }
  return usable;
}

/** For tests: take fs/pin.ts's way always (false), or find out again (undefined). */
export function setBeneathForTest(on: boolean | undefined): void {
  usable = on === false ? false : undefined;
}

/** Whether the shortcut is on now: available, descriptors named through /proc (what fs/pin.ts
 * hands out; its test switch turns this off too), and file calls made synchronously (fs/quick.ts:
 * the descriptor looked up is used before anything else runs). */
export function beneathNow(): boolean {
  return available() && procFdPaths() && quickEnabled();
}

/**
 * Holds the root of a home whose real path is `real` for one more jail; `seen` is the stat of the
 * home's path the login made. Returns what `releaseRoot` takes, or null where the shortcut is not
 * available or the home changed under the login (the jail then takes fs/pin.ts's way throughout).
 */
export function holdRoot(real: string, seen: fs.Stats): HeldRoot | null {
  if (!available()) return null;
  const held = roots.get(real);
  if (held !== undefined && held.dev === seen.dev && held.ino === seen.ino) {
    held.refs++;
    return held;
  }
  // Opening one is a synchronous call: not while file calls go through the pool (a slow disk).
  if (!quickEnabled()) return null;
  let fd: number;
  let st: fs.Stats;
  try {
    fd = fs.openSync(real, O_PATH | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW);
  } catch {
    return null;
  }
  try {
    st = fs.fstatSync(fd);
  } catch {
    fs.closeSync(fd);
    return null;
  }
  if (st.dev !== seen.dev || st.ino !== seen.ino) {
    // The home moved between the login's stat and this open: no shortcut for this jail.
    fs.closeSync(fd);
    return null;
  }
  // A root held before under this path is another directory now: the sessions in it keep it
  // until they end (releaseRoot closes it then), new ones get this one.
  if (held !== undefined) roots.delete(real);
  const root: HeldRoot = { fd, dev: st.dev, ino: st.ino, refs: 1 };
  roots.set(real, root);
  return root;
}

/** One jail fewer on `root`; the last one closes it. Harmless with null. */
export function releaseRoot(real: string, root: HeldRoot | null): void {
  if (root === null || root.refs <= 0) return;
  if (--root.refs > 0) return;
  if (roots.get(real) === root) roots.delete(real);
  fs.closeSync(root.fd);
}

/**
 * Opens `rel` (plain names joined by "/", or "." for the root itself) below the root of `real`
 * with `flags` (no O_CREAT): the descriptor, or -1 when the shortcut is off or the path does not
 * open this way (the caller then takes its ordinary way). The root is looked up by its path at the
 * moment of the call, so it is always one a login checked and no jail has released.
 */
export function openBeneath(real: string, rel: string, flags: number): number {
  const root = roots.get(real);
  if (root === undefined) return -1;
  const t0 = performance.now();
  const fd = (beneathBinding() as BeneathFn).openBeneath(root.fd, rel, flags);
  tookSince(t0);
  return fd >= 0 ? fd : -1;
}

type BeneathFn = NonNullable<ReturnType<typeof beneathBinding>>;

/** What createBeneath returns when it did not try: the shortcut is off for this root, or the addon
 * predates the call. */
export const NOT_TRIED = -1;

/**
 * Creates new file `rel` (plain names joined by "/") below the root of `real`, exclusively, with
 * `flags` (O_CREAT and O_EXCL among them) and `mode`: the descriptor, or -errno (-EEXIST when a
 * name is already there, a symlink included), or NOT_TRIED. The caller takes its ordinary way on
 * anything but a descriptor; that way decides a name already there, a link on the way or a missing
 * directory as before. Only while beneathNow() (a synchronous call).
 */
export function createBeneath(real: string, rel: string, flags: number, mode: number): number {
  const root = roots.get(real);
  const b = createBeneathBinding();
  if (root === undefined || b === null) return NOT_TRIED;
  const t0 = performance.now();
  const fd = b.createBeneath(root.fd, rel, flags, mode);
  tookSince(t0);
  return fd;
}

/** A call begun at `t0` timed like fs/quick.ts's own synchronous calls: a slow disk sends file
 * calls to the pool. */
function tookSince(t0: number): void {
  const ms = performance.now() - t0;
  if (ms > SLOW_MS) lateCall(ms);
}

/** How many homes have a root held (tests: all released once their sessions end). */
export function heldRoots(): number {
  return roots.size;
}
