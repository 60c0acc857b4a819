/**
 * Packed lstat for listings (fs/rawstat.ts, fs/statpack.cjs): on this Node it reads the fs binding,
 * and it gives exactly what fs.lstatSync gives, on the main thread and in the stat worker.
 */
import assert from "node:assert/strict";
import { lstatSync } from "node:fs";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { FIELDS, packLstat, rawLstatAvailable } from "../src/fs/rawstat.ts";
import { lstatInWorker, stopStatWorker } from "../src/fs/statworker.ts";

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
});
