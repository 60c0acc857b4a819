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
  const walk = missingDirs(dir);
  let step = walk.next();
  while (!step.done) step = walk.next(await stat(step.value).catch(absentAsNull));
  let first: string | undefined;
  for (const d of step.value) {
    const made = await mkdir(d, { mode }).then(() => true, existedAlready);
    if (made) first ??= d;
  }
  return first;
}

/** makeDirs, synchronously (start-up only). */
export function makeDirsSync(dir: string, mode?: number): string | undefined {
  const walk = missingDirs(dir);
  let step = walk.next();
  while (!step.done) {
    let st: Stats | null;
    try {
      st = statSync(step.value);
    } catch (err) {
      st = absentAsNull(err);
    }
    step = walk.next(st);
  }
  let first: string | undefined;
  for (const d of step.value) {
    let made: boolean;
    try {
      mkdirSync(d, { mode });
      made = true;
    } catch (err) {
      made = existedAlready(err);
    }
    if (made) first ??= d;
  }
  return first;
}

/** The walk up from `dir`: yields each path to look at and takes its stats (null when absent),
 * up to the first that exists; returns the missing ones, top first. */
function* missingDirs(dir: string): Generator<string, string[], Stats | null> {
  const missing: string[] = [];
  for (let at = path.resolve(dir); ; at = path.dirname(at)) {
    const st = yield at;
    if (st !== null) {
      mustBeDirectory(st, at);
      break;
    }
    missing.push(at);
    if (path.dirname(at) === at) break;
  }
  return missing.reverse();
}

function absentAsNull(err: unknown): null {
  if (errnoCode(err) === "ENOENT") return null;
  throw err;
}

/** A mkdir that failed because someone made the directory meanwhile is no failure: false. */
function existedAlready(err: unknown): false {
  if (errnoCode(err) === "EEXIST") return false;
  throw err;
}

/** As mkdir would say of a path whose existing part is not a directory. */
function mustBeDirectory(st: Stats, at: string): void {
  if (st.isDirectory()) return;
  throw Object.assign(new Error(`ENOTDIR: not a directory, mkdir '${at}'`), { code: "ENOTDIR", syscall: "mkdir", path: at });
}
