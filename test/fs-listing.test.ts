import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { lstatAll, readDirectory } from "../src/fs/listing.ts";
import { backOff, cpuWait, quickEnabled } from "../src/fs/quick.ts";
import { readInWorker, statWorkerUsedNative, stopStatWorker } from "../src/fs/statworker.ts";
import { UPLOAD_TEMP_PREFIX } from "../src/fs/contain.ts";
import { FIELDS } from "../src/fs/rawstat.ts";
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
    // Every batch late; the machine idle as far as the late-call check can tell (a test runner
    // keeping the CPUs busy would otherwise make the late batches count as preemptions).
    const measure = cpuWait.share;
    cpuWait.share = () => 0;
    const pooled = await lstatAll(dir, names, -1, false).finally(() => (cpuWait.share = measure));
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

void describe("a directory read by the stat worker", () => {
  let dir: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-listing-worker-"));
    for (let i = 0; i < 40; i++) await writeFile(join(dir, `h${String(i).padStart(3, "0")}`), "z".repeat(i));
    await mkdir(join(dir, "sub"));
    await symlink("h001", join(dir, "link-in"));
    await symlink("/etc/passwd", join(dir, "link-out"));
    await symlink("nowhere", join(dir, "dangling"));
    // Never shown: an upload in progress, a name no command could address.
    await writeFile(join(dir, `${UPLOAD_TEMP_PREFIX}123`), "partial");
    await writeFile(join(dir, "bad\u0001name"), "");
    await mkdir(join(dir, "empty"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const shown = (entries: Awaited<ReturnType<typeof readDirectory>>) => entries.map((e) => [e.name, e.stat]);

  void test("the same entries as when this thread reads it: links inside by target, outside and dangling as links, temp files and control characters left out", async () => {
    const here = await readDirectory(dir as RealPath, dir as RealPath, Infinity, false);
    const there = await readDirectory(dir as RealPath, dir as RealPath, 4096);
    assert.deepEqual(shown(there), shown(here));
    assert.equal(there.length, 40 + 5); // sub, empty, and three links
    assert.equal(there.find((e) => e.name === "h039")?.stat.size, 39);
    assert.equal(there.find((e) => e.name === "link-in")?.stat.type, "file");
    assert.equal(there.find((e) => e.name === "link-out")?.stat.type, "link");
    assert.equal(there.find((e) => e.name === "dangling")?.stat.type, "link");
    assert.equal(there.find((e) => e.name === "sub")?.stat.type, "dir");
    assert.ok(!there.some((e) => e.name.startsWith(UPLOAD_TEMP_PREFIX) || e.name.includes("\u0001")));
    assert.deepEqual(await readDirectory(dir as RealPath, join(dir, "empty") as RealPath, 4096), []);
  });

  void test("a directory that cannot be read: the same error as on this thread", async () => {
    const missing = join(dir, "missing") as RealPath;
    await assert.rejects(readDirectory(dir as RealPath, missing, 4096), { code: "ENOENT" });
    await assert.rejects(readDirectory(dir as RealPath, missing, Infinity, false), { code: "ENOENT" });
    await assert.rejects(readDirectory(dir as RealPath, join(dir, "h001") as RealPath, 4096), { code: "ENOTDIR" });
  });

  void test("split between the threads: the names first, then the worker's half; every entry has its own stats", async () => {
    const read = await readInWorker(dir, 8);
    assert.ok(read);
    const n = read.names.length;
    assert.equal(read.from, n >> 1);
    assert.deepEqual([...read.names].sort(), (await readdir(dir)).filter((x) => !x.startsWith(UPLOAD_TEMP_PREFIX) && !x.includes("\u0001")).sort());
    const packed = await read.stats;
    const here = await lstatAll(dir, read.names.slice(read.from), undefined, false);
    here.forEach((s, j) => {
      assert.equal(packed[j * FIELDS], 1, read.names[read.from + j]);
      assert.equal(packed[j * FIELDS + 5], s?.size, read.names[read.from + j]);
    });
  });

  void test("a worker that stops mid-request: the directory is read and stat'ed on this thread instead", async () => {
    const expected = shown(await readDirectory(dir as RealPath, dir as RealPath, Infinity, false));
    const pending = readDirectory(dir as RealPath, dir as RealPath, 4096);
    await stopStatWorker();
    assert.deepEqual(shown(await pending), expected);
    assert.deepEqual(shown(await readDirectory(dir as RealPath, dir as RealPath, 4096)), expected);
  });
});
