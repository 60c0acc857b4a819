/**
 * A worker thread that reads directories and lstat's their entries, so that a listing's system
 * calls run beside the event loop instead of on it: under many sessions the main thread keeps
 * serving, and a large listing is stat'ed from both ends at once. Results come back packed in one
 * transferred Float64Array, names as one string (no object per entry crosses threads).
 *
 * The worker is started at the first listing and does not keep the process alive (fs/requestworker.ts).
 * If it fails or exits, its pending requests reject or answer null (the caller reads and stats on the
 * main thread instead) and the next request starts a new one; after a few failures it is not
 * started again.
 */
import { lstatBinding, NATIVE_ADDON_PATH } from "../native.ts";
import { UPLOAD_TEMP_PREFIX } from "./contain.ts";
import { FIELDS, STATPACK_PATH } from "./rawstat.ts";
import { RequestWorker, type PendingRequest } from "./requestworker.ts";
import { UNNAMEABLE } from "./vpath.ts";

/** The worker's code, plain CommonJS (no loader): it stats with the addon's lstatNames where this
 * thread could load it (src/native.ts), else packs with the same statpack.cjs as the main thread.
 * A request with names stats them; one without reads the directory first, leaving out what no
 * listing shows (upload temp files, names with control characters or backslashes: fs/listing.ts
 * isListable), and from `splitMin` entries answers twice: the names and where its half starts, then its half's stats. */
function workerSource(): string {
  const addon = lstatBinding() ? NATIVE_ADDON_PATH : null;
  return `
const { parentPort } = require("node:worker_threads");
const { lstatSync, readdirSync } = require("node:fs");
const { makeStatPacker } = require(${JSON.stringify(STATPACK_PATH)});
const pack = makeStatPacker(lstatSync, process.execPath);
const ADDON = ${JSON.stringify(addon)};
const TEMP = ${JSON.stringify(UPLOAD_TEMP_PREFIX)};
const UNNAMEABLE = new RegExp(${JSON.stringify(UNNAMEABLE.source)});
let native = null;
if (ADDON) {
  try {
    const a = require(ADDON);
    if (typeof a.lstatNames === "function") native = a;
  } catch {}
}
function statNames(id, dir, names, from, extra) {
  const out = new Float64Array((names.length - from) * ${FIELDS});
  const byAddon = native !== null && native.lstatNames(dir, names, from, names.length, out, 0) >= 0;
  if (!byAddon) {
    for (let i = from; i < names.length; i++) pack(dir + "/" + names[i], out, (i - from) * ${FIELDS});
  }
  parentPort.postMessage({ id, out, native: byAddon, ...extra }, [out.buffer]);
}
parentPort.on("message", ({ id, dir, names, splitMin }) => {
  if (names) return statNames(id, dir, names, 0, {});
  let all;
  const t0 = performance.now();
  try {
    all = readdirSync(dir);
  } catch (err) {
    parentPort.postMessage({ id, error: { code: err.code, message: err.message } });
    return;
  }
  const ms = performance.now() - t0;
  const listable = all.filter((n) => !n.startsWith(TEMP) && !UNNAMEABLE.test(n));
  const temps = listable.length === all.length ? undefined : all.filter((n) => n.startsWith(TEMP));
  const from = listable.length >= splitMin ? listable.length >> 1 : 0;
  const read = { names: listable.join("/"), count: listable.length, from, ms, read: all.length, temps };
  if (from > 0) parentPort.postMessage({ id, names: read.names, count: read.count, from, ms, read: read.read, temps, more: true });
  statNames(id, dir, listable, from, from > 0 ? {} : read);
});
`;
}

/** An answer of the worker. */
interface Answer {
  readonly id: number;
  readonly out?: Float64Array;
  readonly native?: boolean;
  readonly error?: { readonly code?: string; readonly message: string };
  readonly names?: string;
  readonly count?: number;
  readonly from?: number;
  readonly ms?: number;
  readonly read?: number;
  /** The upload temp files among the names read (left out of `names`); absent when none. */
  readonly temps?: string[];
  /** Another answer (the stats) follows. */
  readonly more?: boolean;
}

/** No upload temp files (one array for every answer without any). */
export const NO_TEMPS: readonly string[] = Object.freeze([]);

/** Whether the worker's last answer came from the addon's lstatNames (tests). */
let workerNative = false;

const worker = new RequestWorker<Answer>("stat worker", workerSource, (msg) => {
  if (msg.native !== undefined) workerNative = msg.native;
});

/** Whether the worker can take a request now: it has not failed for good and fewer than
 * `maxPending` requests wait (a slow disk makes the queue grow; callers then stat themselves). */
export function statWorkerAvailable(maxPending: number): boolean {
  return worker.waiting < maxPending && worker.usable;
}

/** lstat of `dir/name` for every name, packed FIELDS numbers per entry (ok = 0 where it failed);
 * rejects when no worker can do it. */
export function lstatInWorker(dir: string, names: readonly string[]): Promise<Float64Array> {
  return new Promise<Float64Array>((resolve, reject) => {
    const sent = ask({ dir, names }, {
      answer(msg) {
        resolve(msg.out ?? new Float64Array(0));
        return true;
      },
      reject,
    });
    if (!sent) reject(new Error("stat worker unavailable"));
  });
}

/** A directory read by the worker: its listable names (in the directory's order), and the packed
 * stats of names[from..] (from 0 unless the directory was split, when names[..from] are the
 * caller's to stat); `stats` rejects if the worker fails before it has them. */
export interface WorkerRead {
  readonly names: string[];
  readonly from: number;
  readonly stats: Promise<Float64Array>;
  /** ms the worker's readdir took, and how many entries it read (hidden ones too). */
  readonly ms: number;
  readonly read: number;
  /** The upload temp files the directory holds (not among `names`). */
  readonly temps: readonly string[];
}

/** Reads directory `dir` and stats its listable entries in the worker (the second half only from
 * `splitMin` entries). Null when the worker cannot take it or fails before the names come back
 * (the caller does it all itself); rejects with the readdir error (its `code` as Node's) when the
 * directory cannot be read. */
export function readInWorker(dir: string, splitMin: number): Promise<WorkerRead | null> {
  return new Promise<WorkerRead | null>((resolve, reject) => {
    let rest: { resolve(out: Float64Array): void; reject(err: Error): void } | null = null;
    // Methods, not named arrows: one listing each (test/hotpath.test.ts).
    const sent = ask({ dir, splitMin }, {
      answer(msg) {
        if (msg.error) {
          reject(Object.assign(new Error(msg.error.message), { code: msg.error.code }));
          return true;
        }
        if (msg.names !== undefined) {
          const names = msg.count === 0 ? [] : msg.names.split("/");
          const stats = new Promise<Float64Array>((res, rej) => (rest = { resolve: res, reject: rej }));
          stats.catch(() => undefined); // awaited by the caller; a failure meanwhile is not unhandled
          resolve({ names, from: msg.from ?? 0, stats, ms: msg.ms ?? 0, read: msg.read ?? names.length, temps: msg.temps ?? NO_TEMPS });
        }
        if (msg.more) return false;
        rest?.resolve(msg.out ?? new Float64Array(0));
        return true;
      },
      reject(err) {
        if (rest) rest.reject(err);
        else resolve(null);
      },
    });
    if (!sent) resolve(null);
  });
}

/** Sends a request to the worker (started if needed); false when none can take it. */
function ask(request: { dir: string; names?: readonly string[]; splitMin?: number }, p: PendingRequest<Answer>): boolean {
  return worker.ask(request, p);
}

/** Whether the worker's last answer came from the addon (native/lstat.c) rather than Node's lstat. */
export function statWorkerUsedNative(): boolean {
  return workerNative;
}

/** Stops the worker (tests, shutdown); the next request starts a new one. */
export function stopStatWorker(): Promise<void> {
  return worker.stop();
}
