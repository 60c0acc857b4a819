/**
 * storage.umask is independent of the process umask: this file runs with a process umask of 077
 * (set before anything is created), so every mode below that keeps group or other bits can only
 * come from berth setting it explicitly.
 */
import assert from "node:assert/strict";
import { chmod, lstat, mkdtemp, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { UserStore } from "../src/auth/store.ts";
import { loadConfig } from "../src/config/load.ts";
import { JailedFs } from "../src/fs/jail.ts";
import { modesFor } from "../src/fs/modes.ts";
import type { VirtualPath } from "../src/fs/types.ts";
import { RawClient, readAll, writeAll } from "./helpers/raw.ts";
import { rawLogin, withServer } from "./helpers/run.ts";

process.umask(0o077);

const modeOf = async (p: string): Promise<number> => (await stat(p)).mode & 0o777;

async function store(raw: RawClient, line: string, body: string): Promise<void> {
  const data = await raw.pasv();
  raw.send(line);
  await raw.expectReply(150);
  await writeAll(data, body);
  await raw.expectReply(226);
}

void describe("umask under a stricter process umask (077)", () => {
  let base = "";
  before(async () => {
    base = await mkdtemp(join(tmpdir(), "berth-umask-"));
  });
  after(async () => {
    await rm(base, { recursive: true, force: true });
  });

  void it("modesFor gives 0666/0777 minus the umask", () => {
    assert.deepEqual(modesFor(0o022), { file: 0o644, dir: 0o755 });
    assert.deepEqual(modesFor(0o077), { file: 0o600, dir: 0o700 });
    assert.deepEqual(modesFor(0o002), { file: 0o664, dir: 0o775 });
  });

  void it("the default 022 still gives 0644 files and 0755 directories over FTP", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        await store(raw, "STOR new.txt", "n");
        await store(raw, "STOR new.txt", "replaced through a temp file");
        await store(raw, "APPE app.txt", "a");
        await raw.expect("MKD dir", 257);
      } finally {
        await raw.close();
      }
      const home = t.home("alice");
      assert.equal(await modeOf(join(home, "new.txt")), 0o644);
      assert.equal(await modeOf(join(home, "app.txt")), 0o644);
      assert.equal(await modeOf(join(home, "dir")), 0o755);
    });
  });

  void it("a file replaced by an upload keeps its mode (SITE CHMOD 600, a 0755 script); a new one takes the umask's", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        await store(raw, "STOR private.txt", "p");
        await raw.expect("SITE CHMOD 600 private.txt", 200);
        await store(raw, "STOR private.txt", "a new version, through a temp file");
        await store(raw, "STOR run.sh", "#!/bin/sh");
        await raw.expect("SITE CHMOD 755 run.sh", 200);
        await store(raw, "STOR run.sh", "#!/bin/sh\necho new");
        await store(raw, "STOR other.txt", "o");
      } finally {
        await raw.close();
      }
      const home = t.home("alice");
      assert.equal(await modeOf(join(home, "private.txt")), 0o600);
      assert.equal(await modeOf(join(home, "run.sh")), 0o755);
      assert.equal(await modeOf(join(home, "other.txt")), 0o644);
      // Through a link to a file in the home: the mode is the file's, never the link's own 0777.
      await writeFile(join(home, "target.txt"), "t", { mode: 0o640 });
      await chmod(join(home, "target.txt"), 0o640);
      await symlink("target.txt", join(home, "alias.txt"));
      const again = await rawLogin(t);
      try {
        await store(again, "STOR alias.txt", "through the link");
      } finally {
        await again.close();
      }
      const written = (await lstat(join(home, "alias.txt"))).isSymbolicLink() ? join(home, "target.txt") : join(home, "alias.txt");
      assert.equal(await modeOf(written), 0o640);
    });
  });

  void it("002 gives group-writable files and directories, including a new anonymous root", async () => {
    await withServer(
      async (t) => {
        const raw = await RawClient.connect(t.port);
        try {
          await raw.expect("USER anonymous", 331);
          await raw.expect("PASS x@example.com", 230);
          const data = await raw.pasv();
          raw.send("NLST");
          await raw.expectReply(150);
          await readAll(data);
          await raw.expectReply(226);
          await store(raw, "STOR f.txt", "f");
          await raw.expect("MKD d", 257);
        } finally {
          await raw.close();
        }
        const root = join(t.dataRoot, "pub");
        assert.equal(await modeOf(root), 0o775);
        assert.equal(await modeOf(join(root, "f.txt")), 0o664);
        assert.equal(await modeOf(join(root, "d")), 0o775);
      },
      { config: { storage: { umask: "002" }, anonymous: { enabled: true, root: "pub", perms: "all" } } },
    );
  });

  void it("an unquoted umask in the config file is the octal digits written, YAML's 0o077 too", async () => {
    for (const [written, expected] of [
      ["0o077", 0o600],
      ["077", 0o600],
      ["0o027", 0o640],
      ['"027"', 0o640],
    ] as const) {
      const file = join(base, "berth.yaml");
      await writeFile(file, `storage:\n  umask: ${written}\n`);
      const { umask } = loadConfig({ file, env: {}, cwd: base }).storage;
      await withServer(
        async (t) => {
          const raw = await rawLogin(t);
          try {
            await store(raw, "STOR private.txt", "p");
          } finally {
            await raw.close();
          }
          assert.equal(await modeOf(join(t.home("alice"), "private.txt")), expected, `umask: ${written}`);
        },
        { config: { storage: { umask } } },
      );
    }
  });

  void it("homes made by JailedFs.open and by the user store follow the umask", async () => {
    const jail = await JailedFs.open(join(base, "jail-home"), { umask: 0o022 });
    assert.equal(await modeOf(join(base, "jail-home")), 0o755);
    await jail.mkdir("/sub" as VirtualPath);
    assert.equal(await modeOf(join(base, "jail-home", "sub")), 0o755);
    const users = new UserStore({ file: join(base, "users.json"), storageRoot: join(base, "data"), bcryptCost: 4, umask: 0o027 });
    const u = await users.add("carol", "carol-pw");
    assert.equal(await modeOf(u.home), 0o750);
  });
});
