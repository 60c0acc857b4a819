import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { lstatAll, readDirectory } from "../src/fs/listing.ts";
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

  void test("the pool path (taken when a batch is slow) gives the same stats; a vanished entry is null", async () => {
    const dirents = await readdir(dir, { withFileTypes: true });
    await rm(join(dir, "f0500"));
    const sync = await lstatAll(dir, dirents);
    const pooled = await lstatAll(dir, dirents, -1);
    assert.equal(pooled.length, dirents.length);
    const gone = dirents.findIndex((d) => d.name === "f0500");
    assert.equal(sync[gone], null);
    assert.equal(pooled[gone], null);
    for (let i = 0; i < dirents.length; i++) {
      assert.equal(pooled[i]?.size, sync[i]?.size, dirents[i]?.name);
      assert.equal(pooled[i]?.ino, sync[i]?.ino, dirents[i]?.name);
    }
  });
});
