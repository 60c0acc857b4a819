/**
 * Modes of what berth creates (config `storage.umask`), explicit and independent of the process
 * umask: the mode is passed to open/mkdir, and only when the process umask would strip bits the
 * configured one keeps is it set again with chmod. The process umask is never changed: it is
 * process-wide, and other files (users file, logs) rely on it.
 */
import { readFileSync } from "node:fs";
import type { FileLike } from "./quick.ts";
import { chmodNoFollow } from "./pin.ts";

/** The modes of new files and directories under one umask. */
export interface CreateModes {
  /** 0666 minus the umask. */
  readonly file: number;
  /** 0777 minus the umask. */
  readonly dir: number;
}

/** The default, as `storage.umask` "022": files 0644, directories 0755. */
export const DEFAULT_UMASK = 0o022;

/** Modes for `umask` (0..0777). */
export function modesFor(umask: number): CreateModes {
  const u = umask & 0o777;
  return { file: 0o666 & ~u, dir: 0o777 & ~u };
}

let processUmask: number | undefined;

/** The process umask, read once without changing it (Linux: /proc/self/status; elsewhere assumed
 * to strip everything, so every new entry gets an explicit chmod). */
export function currentProcessUmask(): number {
  if (processUmask === undefined) {
    try {
      const m = /^Umask:\s*([0-7]+)$/m.exec(readFileSync("/proc/self/status", "utf8"));
      processUmask = m ? parseInt(m[1] as string, 8) : 0o777;
    } catch {
      processUmask = 0o777;
    }
  }
  return processUmask;
}

/** True when creating with `mode` leaves bits of it off because of the process umask. */
export function umaskStrips(mode: number): boolean {
  return (mode & currentProcessUmask()) !== 0;
}

/** Gives a file just created through `handle` exactly `mode` (no-op in the usual case). */
export async function fixFileMode(handle: FileLike, mode: number): Promise<void> {
  if (umaskStrips(mode)) await handle.chmod(mode);
}

/** Gives a directory just created at `at` exactly `mode` (no-op in the usual case); never through a
 * symlink put in its place meanwhile. */
export async function fixDirMode(at: string, mode: number): Promise<void> {
  if (umaskStrips(mode)) await chmodNoFollow(at, mode);
}
