/**
 * makeDirs (src/fs/mkdirs.ts): mkdir -p that ends where Node's recursive mkdir spins forever.
 */
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { makeDirs, makeDirsSync } from "../src/fs/mkdirs.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function workdir(): string {
  const d = mkdtempSync(path.join(tmpdir(), "berth-mkdirs-"));
  dirs.push(d);
  return d;
}

for (const [name, make] of [
  ["makeDirs", makeDirs],
  ["makeDirsSync", (dir: string, mode?: number) => new Promise<string | undefined>((resolve) => resolve(makeDirsSync(dir, mode)))],
] as const) {
  describe(name, () => {
    it("makes the missing directories, says which was first, and nothing when all are there", async () => {
      const root = workdir();
      const leaf = path.join(root, "a", "b", "c");
      assert.equal(await make(leaf, 0o750), path.join(root, "a"));
      assert.ok(statSync(leaf).isDirectory());
      assert.equal(statSync(path.join(root, "a", "b")).mode & 0o777, 0o750 & ~process.umask());
      assert.equal(await make(leaf), undefined);
      assert.equal(await make(`${leaf}/`), undefined);
    });

    it("refuses a path through a file, or ending at one", async () => {
      const root = workdir();
      writeFileSync(path.join(root, "f"), "x");
      await assert.rejects(make(path.join(root, "f", "sub")), { code: "ENOTDIR" });
      await assert.rejects(make(path.join(root, "f")), { code: "ENOTDIR" });
    });

    it("ends with ENOENT through a dangling link", async () => {
      const root = workdir();
      symlinkSync(path.join(root, "gone"), path.join(root, "dangling"));
      await assert.rejects(make(path.join(root, "dangling", "x", "y")), { code: "ENOENT" });
      assert.ok(!existsSync(path.join(root, "gone")));
    });

    // Where Node's recursive mkdir never returns (procfs answers ENOENT for any new name).
    it("ends with an error below /proc", { skip: process.platform !== "linux" && "Linux only" }, async () => {
      await assert.rejects(make("/proc/berth-no-such-dir/home"), { code: "ENOENT" });
      await assert.rejects(make("/proc/berth-no-such-dir"), { code: "ENOENT" });
    });
  });
}
