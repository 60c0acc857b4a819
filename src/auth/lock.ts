/**
 * An exclusive lock on a file shared by processes, as `vipw`, `passwd` and `pure-pw` take one on
 * their password files: `FILE.lock` beside it, created with O_EXCL and holding the owner's pid and,
 * where /proc tells them, when that process started and its pid namespace.
 * Every read-modify-write of the users file holds it, so two `berth user …` commands (or one and a
 * server writing BERTH_USER or the demo user) never write from the same old copy and lose a change.
 *
 * A lock whose process is gone (killed mid-write) is stale and taken over (one holding this
 * process's own pid that this process does not hold is such a one: see heldHere; and so is one whose
 * pid is now another process's, which started at another time than the one recorded); so is one that
 * holds no pid (its owner died between creating and writing it) or that is older than any write
 * can take (or dated as far ahead of the clock, which was set back since it was written). One made
 * in another pid namespace (another container) is stale only by that age: its pid means nothing here.
 * A live lock is waited for, a bounded time. The lock is removed on every way out: when the work
 * ends or throws, at process exit, and on a signal that would otherwise kill the process.
 */
import { constants, lstatSync, unlinkSync } from "node:fs";
import { lstat, open, readFile, readlink, unlink } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { errnoCode, systemErrorText } from "../config/syserr.ts";

/** How long to wait for a live lock by default (ms). */
export const LOCK_WAIT_MS = 10_000;
/** A lock older than this is stale whoever holds it: a write takes well under a second (ms). */
export const LOCK_STALE_MS = 120_000;
/** A lock with no pid in it yet is given this long for its owner to write one (ms). */
const LOCK_EMPTY_GRACE_MS = 5_000;
/** Signals whose default action kills the process; a lock held then is removed first. */
const FATAL_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/** Why the lock could not be had: held by a live process all along, or the directory refused it. */
export class LockError extends Error {
  /** "busy": another process held it for the whole wait; "io": the lock file could not be made. */
  readonly kind: "busy" | "io";

  /** Builds an error with a one-line message. */
  constructor(kind: "busy" | "io", message: string) {
    super(message);
    this.name = "LockError";
    this.kind = kind;
  }
}

/** Options of withFileLock. */
export interface LockOptions {
  /** How long to wait for a live lock (ms). */
  readonly waitMs?: number | undefined;
  /** Age past which any lock is stale (ms). */
  readonly staleMs?: number | undefined;
}

/** The locks (by absolute path) this process holds, or is making, now. A lock file holding this
 * process's own pid that is not one of them was left by an earlier process that had the same pid:
 * a container's server is started with the same pid each time (under tini, say), and a lock it
 * left when killed mid-write would otherwise count as live, held by itself, and refuse every start
 * and change until it was two minutes old. */
const heldHere = new Set<string>();

/** Identity of one lock file: a lock removed and made anew is another one. */
interface LockId {
  readonly dev: bigint;
  readonly ino: bigint;
  readonly ctimeNs: bigint;
}

/** Runs `work` holding the lock `lockPath`, and removes the lock however `work` ends. */
export async function withFileLock<T>(lockPath: string, work: () => Promise<T>, opts: LockOptions = {}): Promise<T> {
  const id = await acquire(lockPath, opts.waitMs ?? LOCK_WAIT_MS, opts.staleMs ?? LOCK_STALE_MS);
  const release = (): void => {
    releaseSync(lockPath, id);
    heldHere.delete(path.resolve(lockPath));
  };
  const onSignal = (signal: NodeJS.Signals): void => {
    release();
    detach();
    // Default action again, now that the lock is gone: the process ends as the signal meant.
    process.kill(process.pid, signal);
  };
  // Only where nobody handles the signal (a `berth user` command): the server drains on its own.
  const watched = FATAL_SIGNALS.filter((s) => process.listenerCount(s) === 0);
  const detach = (): void => {
    process.off("exit", release);
    for (const s of watched) process.off(s, onSignal);
  };
  process.on("exit", release);
  for (const s of watched) process.on(s, onSignal);
  try {
    return await work();
  } finally {
    detach();
    release();
  }
}

/** Creates the lock, waiting while a live process holds it; resolves to its identity. */
async function acquire(lockPath: string, waitMs: number, staleMs: number): Promise<LockId> {
  // On a monotonic clock: a wall clock set back meanwhile would hold the command for as long again.
  const deadline = performance.now() + waitMs;
  let pause = 10;
  for (;;) {
    const made = await tryCreate(lockPath);
    if (made !== null) return made;
    const holder = await inspect(lockPath, staleMs);
    if (holder.stale) {
      await removeIf(lockPath, holder.id);
      continue;
    }
    if (performance.now() >= deadline) {
      const who = holder.pid === null ? "another process" : `process ${holder.pid}`;
      throw new LockError("busy", `${lockPath} is held by ${who}; try again, or remove it if no berth command is running`);
    }
    await sleep(Math.min(pause, Math.max(1, deadline - performance.now())));
    pause = Math.min(pause * 2, 200);
  }
}

/** Makes the lock file with this process's pid; null when it exists already. */
async function tryCreate(lockPath: string): Promise<LockId | null> {
  let handle;
  try {
    handle = await open(lockPath, "wx", 0o600);
  } catch (err) {
    if (errnoCode(err) === "EEXIST") return null;
    throw new LockError("io", `cannot create lock ${lockPath}: ${systemErrorText(err)}`);
  }
  // Before the pid is in it: from then on another change of this process sees it held here.
  heldHere.add(path.resolve(lockPath));
  try {
    const started = await startTime(process.pid);
    const ns = await pidNamespace();
    await handle.writeFile(`${process.pid}${started === null || ns === null ? "" : ` ${started} ${ns}`}\n`, "utf8");
    const s = await handle.stat({ bigint: true });
    return { dev: s.dev, ino: s.ino, ctimeNs: s.ctimeNs };
  } catch (err) {
    await unlink(lockPath).catch(() => undefined);
    heldHere.delete(path.resolve(lockPath));
    throw new LockError("io", `cannot write lock ${lockPath}: ${systemErrorText(err)}`);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** Who holds the lock and whether it is stale; a lock gone meanwhile is "stale" with no identity. */
async function inspect(lockPath: string, staleMs: number): Promise<{ stale: boolean; pid: number | null; id: LockId | null }> {
  let handle;
  try {
    // O_NONBLOCK: a FIFO in the lock's place must not hold the command for good. O_NOFOLLOW: a
    // symbolic link there is no lock either, and, never removed (removeIf looks at the link, not at
    // what it leads to) nor made again (O_EXCL), it would have the command try again for good.
    handle = await open(lockPath, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY | constants.O_NOFOLLOW);
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return { stale: true, pid: null, id: null };
    if (errnoCode(err) === "ELOOP") throw new LockError("io", `${lockPath} is a symbolic link, not a lock file; remove it`);
    throw new LockError("io", `cannot read lock ${lockPath}: ${systemErrorText(err)}`);
  }
  try {
    const s = await handle.stat({ bigint: true });
    if (!s.isFile()) {
      // Not a lock any berth command makes: nothing to wait for, and not for berth to remove.
      const what = s.isDirectory() ? "a directory" : s.isFIFO() ? "a FIFO" : "a special file";
      throw new LockError("io", `${lockPath} is ${what}, not a lock file; remove it`);
    }
    const text = await handle.readFile("utf8").catch((err: unknown) => {
      throw new LockError("io", `cannot read lock ${lockPath}: ${systemErrorText(err)}`);
    });
    const id = { dev: s.dev, ino: s.ino, ctimeNs: s.ctimeNs };
    // On the wall clock, as the mtime is. A lock written ahead of it was written before the clock was
    // set back, by how much is not known: how far ahead it is counts as its age, so that one
    // written before a clock set back by hours is not taken as fresh for those hours.
    const age = Math.abs(Date.now() - Number(s.mtimeMs));
    // The pid, then when its process started and its pid namespace (absent in a lock made without /proc).
    const match = /^(\d{1,10})(?: (\d{1,20}) (pid:\[\d{1,20}\]))?\n?$/.exec(text);
    const pid = match === null ? null : Number(match[1]);
    if (pid === null) return { stale: age > LOCK_EMPTY_GRACE_MS, pid, id };
    const ns = match?.[3];
    // Made in another pid namespace (another container sharing the volume, whose pids start from 1
    // as this one's do): its pid names another process here, or none, this one even, and tells
    // nothing of whether its owner lives. Its age alone does.
    if (ns !== undefined && ns !== (await pidNamespace() ?? ns)) return { stale: age > staleMs, pid, id };
    const live = pid === process.pid ? heldHere.has(path.resolve(lockPath)) : alive(pid) && (await startedAt(pid, match?.[2]));
    return { stale: age > staleMs || !live, pid, id };
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** Whether a process with this pid exists (one of another user counts: EPERM). */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return errnoCode(err) !== "ESRCH";
  }
}

/** Whether the process `pid` started at `recorded` (as startTime gives it): false when it started
 * at another time, so the pid is now another process's (pid reuse, common in a container, whose
 * pids start again from 1); true when nothing was recorded or the start cannot be read. */
async function startedAt(pid: number, recorded: string | undefined): Promise<boolean> {
  if (recorded === undefined) return true;
  const now = await startTime(pid);
  return now === null || now === recorded;
}

/** This process's pid namespace ("pid:[4026531836]"), the one the pids of its locks mean something
 * in; null where /proc does not tell. */
let ownNamespace: Promise<string | null> | undefined;
function pidNamespace(): Promise<string | null> {
  ownNamespace ??= readlink("/proc/self/ns/pid").then(
    (ns) => (/^pid:\[\d{1,20}\]$/.test(ns) ? ns : null),
    () => null,
  );
  return ownNamespace;
}

/** When the process `pid` started, in clock ticks after boot (field 22 of /proc/PID/stat); null
 * where that cannot be read (no /proc, the process gone). */
async function startTime(pid: number): Promise<string | null> {
  try {
    const stat = await readFile(`/proc/${pid}/stat`, "utf8");
    // Fields are counted after the command name, which may hold spaces and parentheses itself.
    const start = stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19];
    return start !== undefined && /^\d{1,20}$/.test(start) ? start : null;
  } catch {
    return null;
  }
}

/** Removes the stale lock `id`, unless another process has replaced it by a fresh one meanwhile. */
async function removeIf(lockPath: string, id: LockId | null): Promise<void> {
  if (id === null) return;
  const now = await lstat(lockPath, { bigint: true }).catch(() => null);
  if (now === null || !sameLock(now, id)) return;
  await unlink(lockPath).catch((err: unknown) => {
    if (errnoCode(err) !== "ENOENT") throw new LockError("io", `cannot remove stale lock ${lockPath}: ${systemErrorText(err)}`);
  });
}

/** Removes the lock if it is still the one this process made (never someone else's). */
function releaseSync(lockPath: string, id: LockId): void {
  try {
    // Looked at by path: the lock may have been judged stale and replaced by another process.
    const now = lstatSync(lockPath, { bigint: true });
    if (sameLock(now, id)) unlinkSync(lockPath);
  } catch {
    // Already gone.
  }
}

/** Whether a stat is of the lock file `id`. */
function sameLock(s: { dev: bigint; ino: bigint; ctimeNs: bigint }, id: LockId): boolean {
  return s.dev === id.dev && s.ino === id.ino && s.ctimeNs === id.ctimeNs;
}
