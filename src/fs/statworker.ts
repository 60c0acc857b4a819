/**
 * A worker thread that lstat's many entries of one directory, so that a listing's system calls
 * run beside the event loop instead of on it: under many sessions the main thread keeps serving,
 * and a large listing is stat'ed from both ends at once. Results come back packed in one
 * transferred Float64Array (no object per entry crosses threads).
 *
 * The worker is started at the first large listing and does not keep the process alive. If it
 * fails or exits, its pending requests reject (the caller stats on the main thread instead) and
 * the next request starts a new one; after MAX_FAILURES it is not started again.
 */
import { Worker } from "node:worker_threads";
import { lstatBinding, NATIVE_ADDON_PATH } from "../native.ts";
import { FIELDS, STATPACK_PATH } from "./rawstat.ts";

const MAX_FAILURES = 3;

/** The worker's code, plain CommonJS (no loader): it stats with the addon's lstatNames where this
 * thread could load it (src/native.ts), else packs with the same statpack.cjs as the main thread. */
function workerSource(): string {
  const addon = lstatBinding() ? NATIVE_ADDON_PATH : null;
  return `
const { parentPort } = require("node:worker_threads");
const { lstatSync } = require("node:fs");
const { makeStatPacker } = require(${JSON.stringify(STATPACK_PATH)});
const pack = makeStatPacker(lstatSync, process.execPath);
const ADDON = ${JSON.stringify(addon)};
let native = null;
if (ADDON) {
  try {
    const a = require(ADDON);
    if (typeof a.lstatNames === "function") native = a;
  } catch {}
}
parentPort.on("message", ({ id, dir, names }) => {
  const out = new Float64Array(names.length * ${FIELDS});
  const byAddon = native !== null && native.lstatNames(dir, names, 0, names.length, out, 0) >= 0;
  if (!byAddon) {
    for (let i = 0; i < names.length; i++) pack(dir + "/" + names[i], out, i * ${FIELDS});
  }
  parentPort.postMessage({ id, out, native: byAddon }, [out.buffer]);
});
`;
}

interface Pending {
  resolve(out: Float64Array): void;
  reject(err: Error): void;
}

let worker: Worker | null = null;
/** Whether the worker's last answer came from the addon's lstatNames (tests). */
let workerNative = false;
let failures = 0;
let nextId = 1;
const pending = new Map<number, Pending>();

function fail(w: Worker, err: Error): void {
  if (worker !== w) return;
  worker = null;
  failures++;
  for (const p of pending.values()) p.reject(err);
  pending.clear();
}

function start(): Worker | null {
  if (worker) return worker;
  if (failures >= MAX_FAILURES) return null;
  try {
    const w = new Worker(workerSource(), { eval: true, execArgv: [], stdout: false, stderr: false });
    w.unref();
    w.on("message", (msg: { id: number; out: Float64Array; native: boolean }) => {
      workerNative = msg.native;
      const p = pending.get(msg.id);
      if (!p) return;
      pending.delete(msg.id);
      p.resolve(msg.out);
      if (pending.size === 0) w.unref();
    });
    w.on("error", (err) => fail(w, err));
    w.on("exit", (code) => fail(w, new Error(`stat worker exited (${code})`)));
    worker = w;
    return w;
  } catch {
    failures++;
    return null;
  }
}

/** Whether the worker can take a request now: it has not failed for good and fewer than
 * `maxPending` requests wait (a slow disk makes the queue grow; callers then stat themselves). */
export function statWorkerAvailable(maxPending: number): boolean {
  return pending.size < maxPending && failures < MAX_FAILURES;
}

/** lstat of `dir/name` for every name, packed FIELDS numbers per entry (ok = 0 where it failed);
 * rejects when no worker can do it. */
export function lstatInWorker(dir: string, names: readonly string[]): Promise<Float64Array> {
  const w = start();
  if (!w) return Promise.reject(new Error("stat worker unavailable"));
  const id = nextId++;
  return new Promise<Float64Array>((resolve, reject) => {
    pending.set(id, { resolve, reject });
    // Referenced while it has work, so a listing in progress is never cut short by an idle exit.
    w.ref();
    w.postMessage({ id, dir, names });
  });
}

/** Whether the worker's last answer came from the addon (native/lstat.c) rather than Node's lstat. */
export function statWorkerUsedNative(): boolean {
  return workerNative;
}

/** Stops the worker (tests, shutdown); the next request starts a new one. */
export async function stopStatWorker(): Promise<void> {
  const w = worker;
  if (!w) return;
  worker = null;
  for (const p of pending.values()) p.reject(new Error("stat worker stopped"));
  pending.clear();
  await w.terminate();
}
