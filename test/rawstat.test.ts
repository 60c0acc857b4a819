/**
 * Packed lstat for listings (fs/rawstat.ts, fs/statpack.cjs, and the addon's lstatNames,
 * native/lstat.c): on this Node it reads the fs binding, and every way gives exactly what
 * fs.lstatSync gives, on the main thread and in the stat worker.
 */
import assert from "node:assert/strict";
import { lstatSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { FIELDS, packLstat, rawLstatAvailable } from "../src/fs/rawstat.ts";
import { lstatInWorker, statWorkerUsedNative, stopStatWorker } from "../src/fs/statworker.ts";
import { lstatBinding } from "../src/native.ts";
import { deepDir, shallowDeep } from "./helpers/deep.ts";

const NO_ADDON = lstatBinding() === null && "native part not built (native/)";

void describe("packed lstat", () => {
  let dir: string;
  const names = ["file", "sub", "link-in", "dangling", "big", "missing", "file/below-a-file"];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-rawstat-"));
    await writeFile(join(dir, "file"), "12345");
    await mkdir(join(dir, "sub"), { mode: 0o750 });
    await symlink("file", join(dir, "link-in"));
    await symlink("nowhere", join(dir, "dangling"));
    await writeFile(join(dir, "big"), Buffer.alloc(3 * 1024 * 1024 + 7));
  });
  after(async () => {
    await stopStatWorker();
    await rm(dir, { recursive: true, force: true });
  });

  /** What lstatSync says, in packed order; null where it finds nothing or fails. */
  const expected = (name: string): number[] | null => {
    try {
      const s = lstatSync(join(dir, name), { throwIfNoEntry: false });
      return s ? [1, s.mode, s.nlink, s.uid, s.gid, s.size, s.mtimeMs] : null;
    } catch {
      return null;
    }
  };

  void it("reads the fs binding on this Node (the fast path must stay available)", () => {
    assert.equal(rawLstatAvailable(), true);
  });

  void it("on the main thread: every field as lstatSync has it; nothing written for a missing entry or a path under a file", () => {
    for (const name of names) {
      const out = new Float64Array(FIELDS + 2).fill(-1);
      const ok = packLstat(join(dir, name), out, 1);
      const want = expected(name);
      assert.equal(ok, want !== null, name);
      if (want) assert.deepEqual(Array.from(out.subarray(1, 1 + FIELDS)), want, name);
      else assert.ok(out.every((x) => x === -1), name);
      assert.equal(out[0], -1, name);
      assert.equal(out[FIELDS + 1], -1, name);
    }
  });

  void it("in the stat worker: the same numbers, 0 where the entry is missing", async () => {
    const packed = await lstatInWorker(dir, names);
    names.forEach((name, i) => {
      const want = expected(name);
      const got = Array.from(packed.subarray(i * FIELDS, (i + 1) * FIELDS));
      if (want) assert.deepEqual(got, want, name);
      else assert.equal(got[0], 0, name);
    });
  });

  void it("the addon's lstatNames: every field as lstatSync has it, 0 where missing or not an entry name, nothing written outside its range", { skip: NO_ADDON }, () => {
    const native = lstatBinding();
    assert.ok(native);
    const odd = ["", "sub/../file", "file\0x", "x".repeat(256), "."];
    const all = [...names, ...odd];
    // Offset 3 and one guard slot after: lstatNames must write exactly its own slots.
    const out = new Float64Array(3 + all.length * FIELDS + 1).fill(-1);
    const found = native.lstatNames(dir, all, 0, all.length, out, 3);
    assert.equal(found, names.filter((n) => expected(n) !== null).length + 1); // + "." (the directory itself, as lstat has it)
    assert.deepEqual(Array.from(out.subarray(0, 3)), [-1, -1, -1]);
    assert.equal(out[out.length - 1], -1);
    all.forEach((name, i) => {
      const got = Array.from(out.subarray(3 + i * FIELDS, 3 + (i + 1) * FIELDS));
      const want = odd.includes(name) && name !== "." ? null : expected(name);
      if (want) assert.deepEqual(got, want, JSON.stringify(name));
      else assert.equal(got[0], 0, JSON.stringify(name));
    });
    // A sub-range, written from the offset given.
    const part = new Float64Array(2 * FIELDS).fill(-1);
    assert.equal(native.lstatNames(dir, names, 4, 6, part, 0), 1);
    assert.deepEqual(Array.from(part.subarray(0, FIELDS)), expected("big"));
    assert.equal(part[FIELDS], 0);
  });

  void it("the addon's lstatNames: a directory path over 4095 bytes is ENAMETOOLONG, never a shorter path that names another directory", { skip: NO_ADDON }, async () => {
    const native = lstatBinding();
    assert.ok(native);
    // A real directory whose path is 4,093 bytes, holding "f": the path given is that one, then
    // "€" (3 bytes, across byte 4,095) and more. Copied into a 4,096-byte buffer, the copy ends at
    // the last whole character, which is the real directory's path.
    const base = join(dir, "deep");
    await mkdir(base);
    const deep = deepDir(base, 4093, "e");
    await writeFile(join(deep, "f"), "x");
    try {
      const out = new Float64Array(FIELDS).fill(-1);
      assert.equal(native.lstatNames(`${deep}€${"z".repeat(10)}`, ["f"], 0, 1, out, 0), -36); // ENAMETOOLONG
      assert.ok(out.every((x) => x === -1), "nothing written");
      // The real directory itself still lists.
      assert.equal(native.lstatNames(deep, ["f"], 0, 1, out, 0), 1);
    } finally {
      shallowDeep(base);
      await rm(base, { recursive: true });
    }
  });

  void it("the addon's lstatNames: -errno for a directory it cannot open, writing nothing; a TypeError for bad arguments", { skip: NO_ADDON }, () => {
    const native = lstatBinding();
    assert.ok(native);
    const out = new Float64Array(FIELDS).fill(-1);
    assert.equal(native.lstatNames(join(dir, "missing"), ["file"], 0, 1, out, 0), -2); // ENOENT
    assert.equal(native.lstatNames(join(dir, "file"), ["file"], 0, 1, out, 0), -20); // ENOTDIR
    assert.ok(out.every((x) => x === -1));
    const bad: unknown[][] = [
      [dir, ["file"], 0, 2, out, 0], // beyond the names
      [dir, ["file"], 0, 1, out, 1], // beyond the array
      [dir, ["file"], 1, 0, out, 0], // from after to
      [dir, ["file"], -1, 1, out, 0],
      [dir, "file", 0, 1, out, 0],
      [dir, ["file"], 0, 1, new Uint8Array(64), 0],
      [42, ["file"], 0, 1, out, 0],
      [dir, ["file"], 0, 1, out],
    ];
    for (const args of bad) {
      assert.throws(() => (native.lstatNames as (...a: unknown[]) => number)(...args), TypeError, JSON.stringify(args.slice(1, 4)));
    }
  });

  void it("the stat worker uses the addon where it is built", { skip: NO_ADDON }, async () => {
    await lstatInWorker(dir, names);
    assert.equal(statWorkerUsedNative(), true);
  });
});
