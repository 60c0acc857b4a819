/**
 * lstat for listings without an `fs.Stats` per entry. On Node 20 `lstatSync` builds a Stats object
 * and four Dates for every call: a listing of 10,000 entries made 50,000 objects to read six numbers
 * of each. Node's fs binding fills one shared array of numbers instead, and that is read here into
 * the caller's Float64Array. The binding is internal (`process.binding`): it is used only after it
 * has answered as `lstatSync` does for a known file, field by field; otherwise packing goes through
 * `lstatSync`. The code is in statpack.cjs, which the stat worker loads too.
 */
import { lstatSync, type Stats } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

/** `(path, out, o)`: writes FIELDS numbers of lstat(path) at out[o]; false if missing or unreadable. */
export type StatPacker = (path: string, out: Float64Array, o: number) => boolean;

interface StatPack {
  readonly FIELDS: number;
  makeStatPacker(lstat: typeof lstatSync, probePath: string): StatPacker;
  packStats(s: Stats, out: Float64Array, o: number): void;
  bindingUsable(lstat: typeof lstatSync, probePath: string): boolean;
}

/** Where statpack.cjs is, for the stat worker's require(). */
export const STATPACK_PATH = fileURLToPath(new URL("./statpack.cjs", import.meta.url));

const pack = createRequire(import.meta.url)(STATPACK_PATH) as StatPack;

/** Numbers per entry: ok (1) or not (0), mode, nlink, uid, gid, size, mtimeMs. */
export const FIELDS: number = pack.FIELDS;

/** An fs.Stats (from a call through the thread pool) packed at `out[o]` as packLstat packs. */
export const packStats: (s: Stats, out: Float64Array, o: number) => void = pack.packStats;

let packer: StatPacker | null = null;

/** lstat of `path` packed at `out[o]` on this thread; false if missing or unreadable. */
export function packLstat(path: string, out: Float64Array, o: number): boolean {
  packer ??= pack.makeStatPacker(lstatSync, process.execPath);
  return packer(path, out, o);
}

/** Whether packing reads Node's fs binding on this Node (tests: the fast path must stay on). */
export function rawLstatAvailable(): boolean {
  return pack.bindingUsable(lstatSync, process.execPath);
}
