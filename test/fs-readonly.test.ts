/**
 * A home on a read-only file system (a volume mounted read-only by mistake, say): the client is told
 * why its change was refused, and the operator sees a warning, for commands and uploads alike.
 * Needs a tmpfs mount (root); skipped where one cannot be made.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { rawLogin, withServer } from "./helpers/run.ts";

function mount(dir: string): boolean {
  return spawnSync("mount", ["-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", dir], { stdio: "ignore" }).status === 0;
}

const probe = spawnSync("id", ["-u"], { encoding: "utf8" }).stdout.trim();
const skip = process.platform !== "linux" || probe !== "0" ? "needs root to mount a read-only tmpfs" : false;

void describe("a read-only file system", { skip }, () => {
  void it("is answered 550 Read-only file system and logged as a warning, for MKD and STOR", async () => {
    await withServer(async (t) => {
      const ro = join(t.home("alice"), "ro");
      await mkdir(ro);
      assert.ok(mount(ro), "mount of a read-only tmpfs");
      try {
        const raw = await rawLogin(t);
        assert.equal((await raw.expect("MKD ro/new", 550)).message, "Read-only file system");
        const data = await raw.pasv();
        assert.equal((await raw.expect("STOR ro/f.bin", 550)).message, "Read-only file system");
        data.destroy();
        await raw.close();
        const warned = t.logs.filter((l) => l.level === 40 && String(l.detail).startsWith("EROFS "));
        assert.deepEqual(
          warned.map((l) => l.verb ?? l.event),
          ["MKD", "transfer"],
          `a warning naming the errno per refusal: ${JSON.stringify(t.logs.filter((l) => Number(l.level) >= 40))}`,
        );
      } finally {
        // A descriptor the server still holds below the mount (the session is ending) makes the
        // plain umount EBUSY: then detached, so that no mount outlives the test or blocks its cleanup.
        if (spawnSync("umount", [ro], { stdio: "ignore" }).status !== 0) spawnSync("umount", ["-l", ro], { stdio: "ignore" });
      }
    });
  });
});
