/**
 * APPE over real connections, on a fast and a slow disk: a file it makes is counted once, REST+APPE
 * and FileZilla's resume (APPE of a partial upload) stay byte-exact, links are followed only inside
 * the jail, and a file another session makes between the look and the open is refused without
 * overwrite, and kept whole (and counted right) when the APPE onto it is stopped by the quota.
 */
import assert from "node:assert/strict";
import fs, { constants, mkdirSync, readdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync, mkdtempSync, type Mode, type PathLike } from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, it } from "node:test";
import type { Perm } from "../src/auth/types.ts";
import { backOff } from "../src/fs/quick.ts";
import { storeCode, type RawClient } from "./helpers/raw.ts";
import { payload, rawLogin, withServer } from "./helpers/run.ts";
import type { TestServer } from "./helpers/server.ts";
import { diskUsage, endUpload, portsFree, sizeReached, startUpload } from "./helpers/uploads.ts";

const KIB = 1024;


function counted(t: TestServer, home: string): unknown {
  return t.server.context.quotas.tracked(realpathSync(home))?.current;
}

/**
 * Runs `body` with `meanwhile` run once, right before the first open of a file named `name` whose
 * flags `flags` match (on a slow disk the server's opens go through fs.promises.open): what another
 * session does between an upload's look at its file and its open. Throws unless it ran.
 */
async function withOpenHook(name: string, flags: (f: number) => boolean, meanwhile: () => Promise<void>, body: () => Promise<void>): Promise<void> {
  const realOpen = fs.promises.open;
  let armed = true;
  fs.promises.open = (async (p: PathLike, f?: string | number, mode?: Mode) => {
    if (armed && String(p).endsWith(`/${name}`) && typeof f === "number" && flags(f)) {
      armed = false;
      await meanwhile();
    }
    return realOpen(p, f, mode);
  }) as typeof fs.promises.open;
  syncBuiltinESMExports();
  try {
    await body();
  } finally {
    fs.promises.open = realOpen;
    syncBuiltinESMExports();
  }
  assert.equal(armed, false, `no open of ${name} was seen`);
}

const appending = (f: number): boolean => (f & constants.O_APPEND) !== 0;

for (const slow of [false, true]) {
  describe(`APPE (${slow ? "slow" : "fast"} disk)`, () => {
    const users = [
      { name: "carol", password: "carol-pw", quotaBytes: 1000 * KIB, quotaFiles: 10 },
      { name: "dave", password: "dave-pw", quotaBytes: 1000 * KIB, quotaFiles: 10, perms: ["list", "upload", "download"] as Perm[] },
    ];
    async function run(user: string, body: (t: TestServer, a: RawClient, b: RawClient, home: string) => Promise<void>, prep: (home: string) => void = () => undefined): Promise<void> {
      await withServer(
        async (t) => {
          const home = t.home(user);
          mkdirSync(home, { recursive: true });
          prep(home);
          const a = await rawLogin(t, user);
          const b = await rawLogin(t, user);
          await a.expect("TYPE I", 200);
          await b.expect("TYPE I", 200);
          if (slow) backOff(60_000);
          try {
            await body(t, a, b, home);
            await a.expect("NOOP", 200);
            await b.expect("NOOP", 200);
          } finally {
            backOff(0);
            await a.close();
            await b.close();
          }
          await portsFree(t);
        },
        { users },
      );
    }

    it("APPE that makes its file, appends, REST+APPE: byte-exact, counted as one file", async () => {
      await run("carol", async (t, a, _b, home) => {
        assert.equal(await storeCode(a, "APPE new.bin", payload(10 * KIB)), 226);
        assert.deepEqual(counted(t, home), diskUsage(home));
        assert.equal(await storeCode(a, "APPE new.bin", payload(10 * KIB)), 226);
        assert.deepEqual(counted(t, home), diskUsage(home));
        // REST + APPE
        await a.expect("REST 5000", 350);
        assert.equal(await storeCode(a, "APPE new.bin", payload(1 * KIB, 9)), 226);
        assert.equal(readFileSync(path.join(home, "new.bin")).length, 5000 + KIB);
        assert.ok(readFileSync(path.join(home, "new.bin")).equals(Buffer.concat([payload(10 * KIB).subarray(0, 5000), payload(KIB, 9)])));
        assert.deepEqual(counted(t, home), diskUsage(home));
        // REST + APPE on a missing file
        await a.expect("REST 10", 350);
        assert.equal(await storeCode(a, "APPE none.bin", payload(1 * KIB, 9)), 550);
        assert.deepEqual(counted(t, home), diskUsage(home));
      });
    });

    it("FileZilla resume: partial STOR (reset), SIZE, APPE rest", async () => {
      await run("carol", async (t, a, _b, home) => {
        const data = payload(300 * KIB, 4);
        const sock = await startUpload(a, "STOR", "part.bin", data.subarray(0, 120 * KIB));
        await sizeReached(path.join(home, "part.bin"), 120 * KIB);
        sock.resetAndDestroy();
        assert.equal((await a.reply()).code, 426);
        const size = Number((await a.expect("SIZE part.bin", 213)).message);
        assert.equal(size, 120 * KIB);
        assert.equal(await storeCode(a, "APPE part.bin", data.subarray(size)), 226);
        assert.ok(readFileSync(path.join(home, "part.bin")).equals(data));
        assert.deepEqual(counted(t, home), diskUsage(home));
      });
    });

    it("APPE onto a file another session is still storing: counted once", async () => {
      await run("carol", async (t, a, b, home) => {
        const sock = await startUpload(b, "STOR", "shared.bin", payload(20 * KIB, 1));
        await sizeReached(path.join(home, "shared.bin"), 20 * KIB);
        assert.equal(await storeCode(a, "APPE shared.bin", payload(5 * KIB, 2)), 226);
        assert.equal(await endUpload(b, sock, payload(20 * KIB, 3)), 226);
        // The STOR writes at its own offsets, over the appended bytes: one file, counted once.
        assert.ok(readFileSync(path.join(home, "shared.bin")).equals(Buffer.concat([payload(20 * KIB, 1), payload(20 * KIB, 3)])));
        assert.deepEqual(counted(t, home), diskUsage(home));
      });
    });

    it("APPE through links: into the jail appended, dangling or out of it refused, the count right", async () => {
      const outside = mkdtempSync(path.join(tmpdir(), "appe-out-"));
      await run("carol", async (t, a, _b, home) => {
        assert.equal(await storeCode(a, "APPE in.lnk", "+x"), 226);
        // A dangling link, a link out, a dangling link out: refused, nothing made anywhere.
        for (const n of ["dangle.lnk", "out.lnk", "outdangle.lnk"]) assert.equal(await storeCode(a, `APPE ${n}`, "+x"), 550, n);
        assert.deepEqual(readdirSync(home).sort(), ["dangle.lnk", "in.lnk", "out.lnk", "outdangle.lnk", "target.bin"]);
        assert.deepEqual(readdirSync(outside), ["o.bin"]);
        assert.equal(readFileSync(path.join(home, "target.bin"), "utf8"), "T+x");
        assert.equal(readFileSync(path.join(outside, "o.bin"), "utf8"), "O");
        assert.deepEqual(counted(t, home), diskUsage(home));
      }, (home) => {
        writeFileSync(path.join(home, "target.bin"), "T");
        symlinkSync("target.bin", path.join(home, "in.lnk"));
        symlinkSync("missing.bin", path.join(home, "dangle.lnk"));
        writeFileSync(path.join(outside, "o.bin"), "O");
        symlinkSync(path.join(outside, "o.bin"), path.join(home, "out.lnk"));
        symlinkSync(path.join(outside, "nope.bin"), path.join(home, "outdangle.lnk"));
      });
      fs.rmSync(outside, { recursive: true, force: true });
    });

    it("without overwrite: APPE of a new name made, of an existing one refused, of one made meanwhile refused (File exists)", async () => {
      await run("dave", async (t, a, b, home) => {
        assert.equal(await storeCode(a, "APPE n.bin", payload(KIB)), 226);
        assert.equal(await storeCode(a, "APPE n.bin", payload(KIB)), 550);
        assert.deepEqual(counted(t, home), diskUsage(home));
        if (!slow) return;
        await withOpenHook(
          "r.bin",
          appending,
          async () => assert.equal(await storeCode(b, "STOR r.bin", payload(3 * KIB, 3)), 226),
          async () => assert.equal(await storeCode(a, "APPE r.bin", payload(KIB, 4)), 550),
        );
        assert.ok(readFileSync(path.join(home, "r.bin")).equals(payload(3 * KIB, 3)));
        assert.deepEqual(counted(t, home), diskUsage(home));
      });
    });

    it("another session stores, replaces or removes the file between an upload's look and its open: the count matches the disk", async () => {
      await run("carol", async (t, a, b, home) => {
        if (!slow) return;
        // A free name stored meanwhile, then the APPE is stopped by the quota: their file whole, counted once.
        await withOpenHook(
          "q.bin",
          appending,
          async () => assert.equal(await storeCode(b, "STOR q.bin", payload(30 * KIB, 3)), 226),
          async () => {
            const sock = await startUpload(a, "APPE", "q.bin", payload(10 * KIB, 4));
            await sizeReached(path.join(home, "q.bin"), 40 * KIB);
            // Past the quota of 1000 KiB.
            assert.equal(await endUpload(a, sock, payload(1000 * KIB, 5)), 552);
          },
        );
        assert.ok(readFileSync(path.join(home, "q.bin")).equals(payload(30 * KIB, 3)));
        assert.deepEqual(counted(t, home), diskUsage(home));
        // A free name stored meanwhile, then the APPE ends well: their file once, with the bytes added.
        await withOpenHook(
          "r.bin",
          appending,
          async () => assert.equal(await storeCode(b, "STOR r.bin", payload(30 * KIB, 3)), 226),
          async () => assert.equal(await storeCode(a, "APPE r.bin", payload(5 * KIB, 4)), 226),
        );
        assert.ok(readFileSync(path.join(home, "r.bin")).equals(Buffer.concat([payload(30 * KIB, 3), payload(5 * KIB, 4)])));
        assert.deepEqual(counted(t, home), diskUsage(home));
        // ... or is stopped by ABOR: what it appended stays, counted.
        await withOpenHook(
          "s.bin",
          appending,
          async () => assert.equal(await storeCode(b, "STOR s.bin", payload(30 * KIB, 3)), 226),
          async () => {
            const sock = await startUpload(a, "APPE", "s.bin", payload(5 * KIB, 4));
            await sizeReached(path.join(home, "s.bin"), 35 * KIB);
            a.send("ABOR");
            assert.equal((await a.reply()).code, 426);
            assert.equal((await a.reply()).code, 226);
            sock.destroy();
          },
        );
        assert.deepEqual(counted(t, home), diskUsage(home));
        // A file there, replaced by another session's STOR meanwhile.
        assert.equal(await storeCode(a, "STOR x.bin", payload(10 * KIB, 1)), 226);
        await withOpenHook(
          "x.bin",
          appending,
          async () => assert.equal(await storeCode(b, "STOR x.bin", payload(20 * KIB, 2)), 226),
          async () => assert.equal(await storeCode(a, "APPE x.bin", payload(5 * KIB, 4)), 226),
        );
        assert.equal(readFileSync(path.join(home, "x.bin")).length, 25 * KIB);
        assert.deepEqual(counted(t, home), diskUsage(home));
        // A file there, removed by another session meanwhile: made anew, and counted as a file.
        assert.equal(await storeCode(a, "STOR y.bin", payload(10 * KIB, 1)), 226);
        await withOpenHook(
          "y.bin",
          appending,
          async () => void (await b.expect("DELE y.bin", 250)),
          async () => assert.equal(await storeCode(a, "APPE y.bin", payload(5 * KIB, 4)), 226),
        );
        assert.ok(readFileSync(path.join(home, "y.bin")).equals(payload(5 * KIB, 4)));
        assert.deepEqual(counted(t, home), diskUsage(home));
        // REST+STOR onto a file another session replaced meanwhile.
        assert.equal(await storeCode(a, "STOR z.bin", payload(10 * KIB, 1)), 226);
        await a.expect(`REST ${4 * KIB}`, 350);
        await withOpenHook(
          "z.bin",
          (f) => (f & (constants.O_WRONLY | constants.O_RDWR)) === constants.O_WRONLY && (f & (constants.O_CREAT | constants.O_APPEND)) === 0,
          async () => assert.equal(await storeCode(b, "STOR z.bin", payload(20 * KIB, 2)), 226),
          async () => assert.equal(await storeCode(a, "STOR z.bin", payload(2 * KIB, 4)), 226),
        );
        assert.equal(readFileSync(path.join(home, "z.bin")).length, 6 * KIB);
        assert.deepEqual(counted(t, home), diskUsage(home));
      });
    });
  });
}
