/**
 * What a replacing upload (a temp file renamed over the file at commit) keeps of the file it
 * replaces, when another session changes that file while the upload runs.
 */
import assert from "node:assert/strict";
import { chownSync, linkSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, it } from "node:test";
import { storeCode, type RawClient } from "./helpers/raw.ts";
import { payload, withServer } from "./helpers/run.ts";
import type { TestServer } from "./helpers/server.ts";
import { endUpload, portsFree, sizeReached, startUpload, tempFiles, twoSessions } from "./helpers/uploads.ts";

const KIB = 1024;
const CAROL = { name: "carol", password: "carol-pw" };

async function run(body: (t: TestServer, a: RawClient, b: RawClient, home: string) => Promise<void>): Promise<void> {
  await withServer(
    async (t) => {
      const [a, b] = await twoSessions(t);
      try {
        await body(t, a, b, t.home("carol"));
        await a.expect("NOOP", 200);
        await b.expect("NOOP", 200);
      } finally {
        await a.close();
        await b.close();
      }
      await portsFree(t);
    },
    { users: [CAROL] },
  );
}

const modeOf = (p: string): number => statSync(p).mode & 0o7777;

describe("a file changed while an upload replaces it", () => {
  it("SITE CHMOD from another session mid-upload sticks: the committed file has the new mode", async () => {
    await run(async (_t, a, b, home) => {
      const f = path.join(home, "f.bin");
      writeFileSync(f, "old", { mode: 0o644 });
      const sock = await startUpload(a, "STOR", "f.bin", payload(10 * KIB, 1));
      await sizeReached(home, 10 * KIB);
      await b.expect("SITE CHMOD 600 f.bin", 200);
      assert.equal(await endUpload(a, sock, payload(KIB, 2)), 226);
      assert.deepEqual(readFileSync(f), Buffer.concat([payload(10 * KIB, 1), payload(KIB, 2)]));
      assert.equal(modeOf(f), 0o600);
      assert.deepEqual(await tempFiles(home), []);
    });
  });

  it("a file of another owner replaced by a server running as root keeps its owner, group and mode", { skip: process.geteuid?.() !== 0 && "not root" }, async () => {
    await run(async (_t, a, _b, home) => {
      const f = path.join(home, "theirs.txt");
      writeFileSync(f, "old", { mode: 0o640 });
      chownSync(f, 1234, 2345);
      assert.equal(await storeCode(a, "STOR theirs.txt", "new content"), 226);
      assert.equal(readFileSync(f, "utf8"), "new content");
      const s = statSync(f);
      assert.deepEqual([s.uid, s.gid, s.mode & 0o7777], [1234, 2345, 0o640]);
      assert.deepEqual(await tempFiles(home), []);
    });
  });

  it("a time set mid-upload gives way to the upload's own; a file deleted or renamed away is made anew at the name", async () => {
    await run(async (_t, a, b, home) => {
      const f = path.join(home, "f.bin");
      const body = Buffer.concat([payload(10 * KIB, 1), payload(KIB, 2)]);
      writeFileSync(f, "old");
      let sock = await startUpload(a, "STOR", "f.bin", payload(10 * KIB, 1));
      await sizeReached(home, 10 * KIB);
      await b.expect("MFMT 20000101000000 f.bin", 213);
      assert.equal(statSync(f).mtime.getUTCFullYear(), 2000);
      assert.equal(await endUpload(a, sock, payload(KIB, 2)), 226);
      assert.ok(statSync(f).mtime.getUTCFullYear() > 2000);

      sock = await startUpload(a, "STOR", "f.bin", payload(10 * KIB, 1));
      await sizeReached(home, 10 * KIB);
      await b.expect("DELE f.bin", 250);
      assert.equal(await endUpload(a, sock, payload(KIB, 2)), 226);
      assert.deepEqual(readFileSync(f), body);

      writeFileSync(f, "old");
      sock = await startUpload(a, "STOR", "f.bin", payload(10 * KIB, 1));
      await sizeReached(home, 10 * KIB);
      await b.expect("RNFR f.bin", 350);
      await b.expect("RNTO g.bin", 250);
      assert.equal(await endUpload(a, sock, payload(KIB, 2)), 226);
      assert.deepEqual(readFileSync(f), body);
      assert.equal(readFileSync(path.join(home, "g.bin"), "utf8"), "old");
      assert.deepEqual(readdirSync(home).sort(), ["f.bin", "g.bin"]);
    });
  });

  it("only the name uploaded to is replaced: another hard link keeps the old content; APPE changes both", async () => {
    await run(async (_t, a, _b, home) => {
      writeFileSync(path.join(home, "one"), "old");
      linkSync(path.join(home, "one"), path.join(home, "two"));
      assert.equal(await storeCode(a, "APPE one", "+more"), 226);
      assert.equal(readFileSync(path.join(home, "two"), "utf8"), "old+more");
      assert.equal(await storeCode(a, "STOR one", "new"), 226);
      assert.equal(readFileSync(path.join(home, "one"), "utf8"), "new");
      assert.equal(readFileSync(path.join(home, "two"), "utf8"), "old+more");
    });
  });
});
