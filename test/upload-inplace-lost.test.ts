/**
 * An upload that writes in place (a new file, APPE, REST+STOR) whose file another session replaces
 * (a replacing STOR renamed over it), deletes or renames away while it runs: its bytes are then not
 * at the name the client gave, so it is not answered 226, and the count matches the disk.
 */
import assert from "node:assert/strict";
import fsDefault, { mkdirSync, readdirSync, readFileSync, realpathSync, writeFileSync } from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import path from "node:path";
import { describe, it } from "node:test";
import { setBeneathForTest } from "../src/fs/beneath.ts";
import { backOff } from "../src/fs/quick.ts";
import { storeCode, type RawClient } from "./helpers/raw.ts";
import { payload, withServer } from "./helpers/run.ts";
import type { TestServer } from "./helpers/server.ts";
import { diskUsage, endUpload, portsFree, sizeReached, startUpload, tempFiles, twoSessions } from "./helpers/uploads.ts";

const KIB = 1024;
const CAROL = { name: "carol", password: "carol-pw", quotaBytes: 1000 * KIB, quotaFiles: 20 };


function countMatches(t: TestServer, home: string): void {
  assert.deepEqual(t.server.context.quotas.tracked(realpathSync(home))?.current, diskUsage(home));
}

for (const way of ["shortcut", "held directory", "slow disk"] as const) {
  describe(`an upload written in place whose name another session takes (${way})`, () => {
    async function run(body: (t: TestServer, a: RawClient, b: RawClient, home: string) => Promise<void>): Promise<void> {
      await withServer(
        async (t) => {
          const home = t.home("carol");
          mkdirSync(home, { recursive: true });
          const [a, b] = await twoSessions(t);
          if (way === "held directory") setBeneathForTest(false);
          if (way === "slow disk") backOff(60_000);
          try {
            await body(t, a, b, home);
            await a.expect("NOOP", 200);
            await b.expect("NOOP", 200);
          } finally {
            setBeneathForTest(undefined);
            backOff(0);
            await a.close();
            await b.close();
          }
          await portsFree(t);
        },
        { users: [CAROL] },
      );
    }

    it("a new name stored by two sessions, the replacing one ending first: the first is not told 226", async () => {
      await run(async (t, a, b, home) => {
        const sa = await startUpload(a, "STOR", "n", payload(10 * KIB, 1));
        await sizeReached(path.join(home, "n"), 10 * KIB);
        const sb = await startUpload(b, "STOR", "n", payload(20 * KIB, 2));
        await sizeReached(home, 20 * KIB);
        assert.equal(await endUpload(b, sb, Buffer.alloc(0)), 226);
        assert.equal(await endUpload(a, sa, payload(5 * KIB, 3)), 451);
        assert.deepEqual(readFileSync(path.join(home, "n")), payload(20 * KIB, 2));
        assert.deepEqual(await tempFiles(home), []);
        countMatches(t, home);
      });
    });

    it("APPE and REST+STOR whose file a replacing STOR takes the name of: not told 226", async () => {
      await run(async (t, a, b, home) => {
        assert.equal(await storeCode(a, "STOR log", payload(4 * KIB, 1)), 226);
        let sa = await startUpload(a, "APPE", "log", payload(10 * KIB, 2));
        await sizeReached(path.join(home, "log"), 14 * KIB);
        assert.equal(await storeCode(b, "STOR log", payload(3 * KIB, 3)), 226);
        assert.equal(await endUpload(a, sa, payload(KIB, 4)), 451);
        assert.deepEqual(readFileSync(path.join(home, "log")), payload(3 * KIB, 3));
        countMatches(t, home);
        await a.expect(`REST ${KIB}`, 350);
        sa = await startUpload(a, "STOR", "log", payload(10 * KIB, 5));
        await sizeReached(path.join(home, "log"), 11 * KIB);
        assert.equal(await storeCode(b, "STOR log", payload(2 * KIB, 6)), 226);
        assert.equal(await endUpload(a, sa, payload(KIB, 7)), 451);
        assert.deepEqual(readFileSync(path.join(home, "log")), payload(2 * KIB, 6));
        countMatches(t, home);
      });
    });

    it("deleted or renamed away meanwhile: not told 226; a renamed file keeps its bytes at its new name", async () => {
      await run(async (t, a, b, home) => {
        let sa = await startUpload(a, "STOR", "gone", payload(10 * KIB, 1));
        await sizeReached(path.join(home, "gone"), 10 * KIB);
        await b.expect("DELE gone", 250);
        assert.equal(await endUpload(a, sa, payload(KIB, 2)), 451);
        assert.deepEqual(readdirSync(home), []);
        countMatches(t, home);
        sa = await startUpload(a, "STOR", "moved", payload(10 * KIB, 1));
        await sizeReached(path.join(home, "moved"), 10 * KIB);
        await b.expect("RNFR moved", 350);
        await b.expect("RNTO there", 250);
        assert.equal(await endUpload(a, sa, payload(KIB, 2)), 451);
        assert.deepEqual(readFileSync(path.join(home, "there")), Buffer.concat([payload(10 * KIB, 1), payload(KIB, 2)]));
        assert.deepEqual(readdirSync(home), ["there"]);
        countMatches(t, home);
      });
    });

    it("its directory renamed meanwhile: the file went with it, under the name given, and 226", async () => {
      await run(async (t, a, b, home) => {
        await a.expect("MKD d", 257);
        const sa = await startUpload(a, "STOR", "d/n", payload(10 * KIB, 1));
        await sizeReached(path.join(home, "d", "n"), 10 * KIB);
        await b.expect("RNFR d", 350);
        await b.expect("RNTO e", 250);
        assert.equal(await endUpload(a, sa, payload(KIB, 2)), 226);
        assert.deepEqual(readFileSync(path.join(home, "e", "n")), Buffer.concat([payload(10 * KIB, 1), payload(KIB, 2)]));
        countMatches(t, home);
      });
    });

    it("moved into another directory under the same name: not told 226, the file kept there", async () => {
      await run(async (t, a, b, home) => {
        await a.expect("MKD d", 257);
        await a.expect("MKD e", 257);
        const sa = await startUpload(a, "STOR", "d/n", payload(10 * KIB, 1));
        await sizeReached(path.join(home, "d", "n"), 10 * KIB);
        await b.expect("RNFR d/n", 350);
        await b.expect("RNTO e/n", 250);
        assert.equal(await endUpload(a, sa, payload(KIB, 2)), 451);
        assert.deepEqual(readFileSync(path.join(home, "e", "n")), Buffer.concat([payload(10 * KIB, 1), payload(KIB, 2)]));
        assert.deepEqual(readdirSync(path.join(home, "d")), []);
        countMatches(t, home);
      });
    });

    it("the upload ends before the replacing one, or appends beside another in-place upload: both 226, true", async () => {
      await run(async (t, a, b, home) => {
        const sa = await startUpload(a, "STOR", "n", payload(10 * KIB, 1));
        await sizeReached(path.join(home, "n"), 10 * KIB);
        const sb = await startUpload(b, "STOR", "n", payload(20 * KIB, 2));
        await sizeReached(home, 20 * KIB);
        assert.equal(await endUpload(a, sa, payload(5 * KIB, 3)), 226);
        assert.equal(await endUpload(b, sb, Buffer.alloc(0)), 226);
        assert.deepEqual(readFileSync(path.join(home, "n")), payload(20 * KIB, 2));
        const sc = await startUpload(a, "APPE", "n", payload(KIB, 4));
        await sizeReached(path.join(home, "n"), 21 * KIB);
        assert.equal(await storeCode(b, "APPE n", payload(KIB, 5)), 226);
        assert.equal(await endUpload(a, sc, Buffer.alloc(0)), 226);
        assert.equal(readFileSync(path.join(home, "n")).length, 22 * KIB);
        countMatches(t, home);
      });
    });
  });
}

describe("an upload written in place while no session renames or removes a name", () => {
  it("does not look at its name at its end; once a name was removed meanwhile, it does", async () => {
    await withServer(
      async (t) => {
        const home = t.home("carol");
        mkdirSync(home, { recursive: true });
        writeFileSync(path.join(home, "other"), "x");
        const [a, b] = await twoSessions(t);
        const realLstat = fsDefault.lstatSync;
        const looks: string[] = [];
        // node:fs's own object, whose lstatSync src/fs/quick.ts calls through its import once synced.
        const setLstat = (fn: typeof realLstat): void => {
          (fsDefault as { lstatSync: typeof realLstat }).lstatSync = fn;
          syncBuiltinESMExports();
        };
        const spy = ((p: Parameters<typeof realLstat>[0], o?: Parameters<typeof realLstat>[1]) => {
          if (String(p).endsWith("/quiet") || String(p).endsWith("/busy")) looks.push(String(p));
          return realLstat(p, o);
        }) as typeof realLstat;
        try {
          const quiet = await startUpload(a, "STOR", "quiet", payload(10 * KIB, 1));
          await sizeReached(path.join(home, "quiet"), 10 * KIB);
          setLstat(spy);
          assert.equal(await endUpload(a, quiet, payload(KIB, 2)), 226);
          assert.deepEqual(looks, []);
          setLstat(realLstat);
          // Another file deleted while an upload runs: the upload looks, and finds its file there.
          const busy = await startUpload(a, "STOR", "busy", payload(10 * KIB, 1));
          await sizeReached(path.join(home, "busy"), 10 * KIB);
          await b.expect("DELE other", 250);
          setLstat(spy);
          assert.equal(await endUpload(a, busy, payload(KIB, 2)), 226);
          assert.ok(looks.length > 0, "the upload did not look at its name after a DELE");
        } finally {
          setLstat(realLstat);
          await a.close();
          await b.close();
        }
        assert.equal(readFileSync(path.join(home, "quiet")).length, 11 * KIB);
        assert.equal(readFileSync(path.join(home, "busy")).length, 11 * KIB);
      },
      { users: [CAROL] },
    );
  });
});
