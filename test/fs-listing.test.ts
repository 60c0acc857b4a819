import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { lstatAll, readDirectory } from "../src/fs/listing.ts";
import { backOff, quickEnabled } from "../src/fs/quick.ts";
import { statWorkerUsedNative, stopStatWorker } from "../src/fs/statworker.ts";
import type { RealPath } from "../src/fs/types.ts";

void describe("reading a large directory", () => {
  let dir: string;
  const COUNT = 700; // several synchronous batches

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-listing-"));
    for (let i = 0; i < COUNT; i++) await writeFile(join(dir, `f${String(i).padStart(4, "0")}`), "x".repeat(i));
    await symlink("f0001", join(dir, "link-in"));
    await symlink("/etc/passwd", join(dir, "link-out"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  void test("every entry, sorted, with its size; links inside shown by target, outside as links", async () => {
    const entries = await readDirectory(dir as RealPath, dir as RealPath);
    assert.equal(entries.length, COUNT + 2);
    assert.deepEqual(entries.map((e) => e.name), [...entries.map((e) => e.name)].sort());
    assert.equal(entries.find((e) => e.name === "f0699")?.stat.size, 699);
    assert.equal(entries.find((e) => e.name === "link-in")?.stat.type, "file");
    assert.equal(entries.find((e) => e.name === "link-out")?.stat.type, "link");
  });

  /** The facts a listing reads, comparable across the three ways of getting them. */
  const facts = (s: Awaited<ReturnType<typeof lstatAll>>[number]) =>
    s === null
      ? null
      : [s.size, s.mode, s.nlink, s.uid, s.gid, s.mtimeMs, s.isFile(), s.isDirectory(), s.isSymbolicLink()];

  void test("the worker, the main thread (by the addon and by Node) and the pool (taken when a batch is slow) give the same stats; a vanished entry is null", async () => {
    const names = await readdir(dir);
    await rm(join(dir, "f0500"));
    const worker = await lstatAll(dir, names);
    const sync = await lstatAll(dir, names, undefined, false);
    const syncNode = await lstatAll(dir, names, undefined, false, false);
    const pooled = await lstatAll(dir, names, -1, false);
    // A slow batch turned the synchronous file calls off for everyone (fs/quick.ts).
    assert.equal(quickEnabled(), false);
    const whilePooled = await lstatAll(dir, names, undefined, false);
    backOff(0);
    assert.equal(pooled.length, names.length);
    assert.equal(worker.length, names.length);
    const gone = names.indexOf("f0500");
    assert.equal(sync[gone], null);
    assert.equal(syncNode[gone], null);
    assert.equal(pooled[gone], null);
    assert.equal(worker[gone], null);
    for (let i = 0; i < names.length; i++) {
      if (i === gone) continue;
      assert.notEqual(sync[i], null, names[i]);
      assert.deepEqual(facts(worker[i] ?? null), facts(sync[i] ?? null), names[i]);
      assert.deepEqual(facts(syncNode[i] ?? null), facts(sync[i] ?? null), names[i]);
      assert.deepEqual(facts(pooled[i] ?? null), facts(sync[i] ?? null), names[i]);
      assert.deepEqual(facts(whilePooled[i] ?? null), facts(sync[i] ?? null), names[i]);
    }
    assert.ok(worker.some((s) => s?.isSymbolicLink()));
  });

  void test("a directory gone before its entries are stat'ed: every entry null, on the main thread and in the worker", async () => {
    const names = await readdir(dir);
    const gone = join(dir, "..", `${join(dir).split("/").pop() as string}-gone`);
    for (const [useWorker, useNative] of [[false, true], [false, false], [true, true]] as const) {
      const out = await lstatAll(gone, names, undefined, useWorker, useNative);
      assert.equal(out.length, names.length);
      assert.ok(out.every((s) => s === null), `worker ${useWorker}, addon ${useNative}`);
    }
    // The worker fell back to Node's call for it (the addon could not open the directory).
    assert.equal(statWorkerUsedNative(), false);
  });

  void test("a worker that stops mid-request: the listing is stat'ed on the main thread instead", async () => {
    const names = await readdir(dir);
    const expected = (await lstatAll(dir, names, undefined, false)).map(facts);
    const pending = lstatAll(dir, names);
    await stopStatWorker();
    assert.deepEqual((await pending).map(facts), expected);
    // And the next listing starts a new worker.
    assert.deepEqual((await lstatAll(dir, names)).map(facts), expected);
  });
});

void describe("reading a directory too large for one thread", () => {
  let dir: string;
  const COUNT = 2500; // split: the main thread takes the first half, the worker the rest

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-listing-split-"));
    await Promise.all(Array.from({ length: COUNT }, (_, i) => writeFile(join(dir, `g${String(i).padStart(5, "0")}`), "y".repeat(i % 97))));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  void test("every entry, in order, each with its own size", async () => {
    const entries = await readDirectory(dir as RealPath, dir as RealPath);
    assert.equal(entries.length, COUNT);
    entries.forEach((e, i) => {
      assert.equal(e.name, `g${String(i).padStart(5, "0")}`);
      assert.equal(e.stat.size, i % 97, e.name);
      assert.equal(e.stat.type, "file");
    });
  });
});
