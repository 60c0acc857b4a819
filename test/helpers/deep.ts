/** Directory trees whose paths come near PATH_MAX (4,096 bytes with the NUL), for tests of the
 * length checks. */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { join } from "node:path";

/** Directories under `base` whose path is `bytes` long, the last one named from `last` (a
 * one-character string). The first level below `base` is "d" × 200: renaming it to something
 * short (shallowDeep) lets the tree be removed by path again. */
export function deepDir(base: string, bytes: number, last: string): string {
  let p = base;
  while (bytes - p.length > 250) {
    p = join(p, "d".repeat(200));
    fs.mkdirSync(p);
  }
  p = join(p, last.repeat(bytes - p.length - 1));
  fs.mkdirSync(p);
  assert.equal(Buffer.byteLength(p), bytes);
  return p;
}

/** Makes the tree deepDir built under `base` shallow enough to be removed by path. */
export function shallowDeep(base: string): void {
  fs.renameSync(join(base, "d".repeat(200)), join(base, "d"));
}
