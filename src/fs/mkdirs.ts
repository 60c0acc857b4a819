/**
 * `mkdir -p` that always ends. Node's `mkdir(dir, { recursive: true })` steps back to the parent on
 * ENOENT and forward again on EEXIST, so where a parent exists but refuses children with ENOENT
 * (procfs and sysfs: `/proc/x/home`) it spins forever, the synchronous call blocking the process
 * and the asynchronous one a thread of the pool. Here the missing directories are found first,
 * walking up with `stat`, then made one `mkdir` each from the top: a refusal is an error at once.
 */
import { mkdirSync, statSync, type Stats } from "node:fs";
import { mkdir, stat } from "node:fs/promises";
import path from "node:path";
import { errnoCode } from "../config/syserr.ts";

/** Makes `dir` and any missing parents with `mode` (the umask applies). Resolves to the first
 * directory made, or undefined when `dir` was there already, as Node's recursive mkdir does. */
export async function makeDirs(dir: string, mode?: number): Promise<string | undefined> {
  const missing: string[] = [];
  for (let at = path.resolve(dir); ; at = path.dirname(at)) {
    const st = await stat(at).catch(absentAsNull);
    if (st !== null) {
      mustBeDirectory(st, at);
      break;
    }
    missing.push(at);
    if (path.dirname(at) === at) break;
  }
  let first: string | undefined;
  for (const d of missing.reverse()) {
    try {
      await mkdir(d, { mode });
      first ??= d;
    } catch (err) {
      if (errnoCode(err) !== "EEXIST") throw err; // made meanwhile by someone else: fine
    }
  }
  return first;
}

/** makeDirs, synchronously (start-up only). */
export function makeDirsSync(dir: string, mode?: number): string | undefined {
  const missing: string[] = [];
  for (let at = path.resolve(dir); ; at = path.dirname(at)) {
    let st: Stats | null;
    try {
      st = statSync(at);
    } catch (err) {
      st = absentAsNull(err);
    }
    if (st !== null) {
      mustBeDirectory(st, at);
      break;
    }
    missing.push(at);
    if (path.dirname(at) === at) break;
  }
  let first: string | undefined;
  for (const d of missing.reverse()) {
    try {
      mkdirSync(d, { mode });
      first ??= d;
    } catch (err) {
      if (errnoCode(err) !== "EEXIST") throw err;
    }
  }
  return first;
}

function absentAsNull(err: unknown): null {
  if (errnoCode(err) === "ENOENT") return null;
  throw err;
}

/** As mkdir would say of a path whose existing part is not a directory. */
function mustBeDirectory(st: Stats, at: string): void {
  if (st.isDirectory()) return;
  throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${at}'`), { code: "ENOTDIR", syscall: "mkdir", path: at });
}
