/**
 * Uploads undone (552 from the quota, ABOR, a reset data connection) after another session, or
 * someone on the machine, moved their file: the undoing follows the file inside the jail and only
 * there, touches no one else's file, and the quota count stays right.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import fs, { closeSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync, type Mode, type PathLike } from "node:fs";
import { mkdir, readdir, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import { syncBuiltinESMExports } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { setBeneathForTest } from "../src/fs/beneath.ts";
import { JailedFs } from "../src/fs/jail.ts";
import { backOff } from "../src/fs/quick.ts";
import type { VirtualPath } from "../src/fs/types.ts";
import { resolveVirtual, ROOT } from "../src/fs/vpath.ts";
import { storeCode, type RawClient } from "./helpers/raw.ts";
import { payload, rawLogin, withServer } from "./helpers/run.ts";
import { openFds, waitFor, type TestServer, type TestServerOptions } from "./helpers/server.ts";
import { endUpload, openIn, portsFree, sizeReached, startUpload, twoSessions } from "./helpers/uploads.ts";

const KIB = 1024;
const CAROL = { name: "carol", password: "carol-pw", quotaBytes: 100 * KIB, quotaFiles: 10 };

const scratch = mkdtempSync(path.join(tmpdir(), "undo-renamed-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** The count holds `stored` bytes: the rest of the 100 KiB fits, one byte more does not. */
async function countIs(a: RawClient, stored: number): Promise<void> {
  assert.equal(await storeCode(a, "STOR zz-fill.bin", payload(100 * KIB - stored + 1)), 552, `count above ${stored}`);
  assert.equal(await storeCode(a, "STOR zz-fill.bin", payload(100 * KIB - stored)), 226, `count below ${stored}`);
  await a.expect("DELE zz-fill.bin", 250);
}

// The three ways an upload's file is made and written: created in one call below the root and
// written synchronously; through its directory held open; and on a slow disk, where file calls go
// through the thread pool (a FileHandle and its write stream).
for (const way of ["shortcut", "held directory", "slow disk"] as const) {
  describe(`an upload undone after a rename (${way})`, () => {
    function setup(): void {
      if (way === "held directory") setBeneathForTest(false);
      if (way === "slow disk") backOff(60_000);
    }
    function teardown(): void {
      setBeneathForTest(undefined);
      backOff(0);
    }

    async function run(body: (t: TestServer, a: RawClient, b: RawClient, home: string) => Promise<void>, users: TestServerOptions["users"] = [CAROL]): Promise<void> {
      await withServer(
        async (t) => {
          const home = t.home("carol");
          mkdirSync(home, { recursive: true });
          const [a, b] = await twoSessions(t);
          setup();
          try {
            await body(t, a, b, home);
            await a.expect("NOOP", 200);
            await b.expect("NOOP", 200);
          } finally {
            teardown();
            await a.close();
            await b.close();
          }
          // The sessions' spare listeners went with them: every port is back at once; and nothing
          // in the home stays open (the upload's file, its directory, the home's root).
          await portsFree(t);
          assert.ok(await waitFor(() => openIn(home).length === 0, 2000), `still open: ${openIn(home).join(", ")}`);
        },
        { users },
      );
    }

    it("STOR renamed into another directory, then 552: removed there, count empty", async () => {
      await run(async (_t, a, b, home) => {
        await a.expect("MKD d", 257);
        await a.expect("MKD e", 257);
        const sock = await startUpload(a, "STOR", "d/new.bin", payload(60 * KIB, 1));
        await sizeReached(path.join(home, "d", "new.bin"), 60 * KIB);
        await b.expect("RNFR d/new.bin", 350);
        await b.expect("RNTO e/far.bin", 250);
        assert.equal(await endUpload(a, sock, payload(60 * KIB, 2)), 552);
        assert.deepEqual(await readdir(path.join(home, "d")), []);
        assert.deepEqual(await readdir(path.join(home, "e")), []);
        await countIs(a, 0);
      });
    });

    it("STOR whose directory another session renames, then 552: removed where it went, count empty", async () => {
      await run(async (_t, a, b, home) => {
        await a.expect("MKD d", 257);
        const sock = await startUpload(a, "STOR", "d/new.bin", payload(60 * KIB, 1));
        await sizeReached(path.join(home, "d", "new.bin"), 60 * KIB);
        await b.expect("RNFR d", 350);
        await b.expect("RNTO e", 250);
        assert.equal(await endUpload(a, sock, payload(60 * KIB, 2)), 552);
        // The file went with its directory, and its rollback removes it there.
        assert.deepEqual(await readdir(path.join(home, "e")), []);
        // Nothing is stored: the whole quota is free.
        assert.equal(await storeCode(a, "STOR fill.bin", payload(100 * KIB)), 226);
        await a.expect("DELE fill.bin", 250);
        await countIs(a, 0);
      });
    });

    it("STOR renamed to a name ending ' (deleted)', then 552: removed, count empty", async () => {
      await run(async (_t, a, b, home) => {
        const sock = await startUpload(a, "STOR", "new.bin", payload(60 * KIB, 1));
        await sizeReached(path.join(home, "new.bin"), 60 * KIB);
        await b.expect("RNFR new.bin", 350);
        await b.expect("RNTO x (deleted)", 250);
        assert.equal(await endUpload(a, sock, payload(60 * KIB, 2)), 552);
        assert.deepEqual(await readdir(home), []);
        await countIs(a, 0);
      });
    });

    it("STOR deleted, a file of another session put at ' (deleted)' name: that file stays", async () => {
      await run(async (_t, a, b, home) => {
        const sock = await startUpload(a, "STOR", "new.bin", payload(40 * KIB, 1));
        await sizeReached(path.join(home, "new.bin"), 40 * KIB);
        await b.expect("DELE new.bin", 250);
        assert.equal(await storeCode(b, "STOR new.bin (deleted)", payload(10 * KIB, 3)), 226);
        assert.equal(await storeCode(b, "STOR new.bin", payload(5 * KIB, 4)), 226);
        assert.equal(await endUpload(a, sock, payload(80 * KIB, 2)), 552);
        assert.deepEqual(await readFile(path.join(home, "new.bin (deleted)")), payload(10 * KIB, 3));
        assert.deepEqual(await readFile(path.join(home, "new.bin")), payload(5 * KIB, 4));
        await countIs(a, 15 * KIB);
      });
    });

    it("STOR renamed, then another session replaces the file at its new name: its file stays", async () => {
      await run(async (_t, a, b, home) => {
        const sock = await startUpload(a, "STOR", "new.bin", payload(40 * KIB, 1));
        await sizeReached(path.join(home, "new.bin"), 40 * KIB);
        await b.expect("RNFR new.bin", 350);
        await b.expect("RNTO moved.bin", 250);
        assert.equal(await storeCode(b, "STOR moved.bin", payload(10 * KIB, 3)), 226);
        assert.equal(await storeCode(b, "STOR new.bin", payload(5 * KIB, 4)), 226);
        assert.equal(await endUpload(a, sock, payload(80 * KIB, 2)), 552);
        assert.deepEqual(await readFile(path.join(home, "moved.bin")), payload(10 * KIB, 3));
        assert.deepEqual(await readFile(path.join(home, "new.bin")), payload(5 * KIB, 4));
        await countIs(a, 15 * KIB);
      });
    });

    it("STOR renamed over a stored file, then 552: removed under that name, and the file it replaced leaves the count", async () => {
      await run(async (_t, a, b, home) => {
        assert.equal(await storeCode(b, "STOR z.bin", payload(30 * KIB, 3)), 226);
        const sock = await startUpload(a, "STOR", "new.bin", payload(40 * KIB, 1));
        await sizeReached(path.join(home, "new.bin"), 40 * KIB);
        await b.expect("RNFR new.bin", 350);
        await b.expect("RNTO z.bin", 250);
        assert.equal(await endUpload(a, sock, payload(80 * KIB, 2)), 552);
        assert.deepEqual(await readdir(home), []);
        await countIs(a, 0);
      });
    });

    it("STOR renamed, then ABOR: kept with its bytes under the new name, and counted", async () => {
      await run(async (_t, a, b, home) => {
        const sock = await startUpload(a, "STOR", "new.bin", payload(30 * KIB, 1));
        await sizeReached(path.join(home, "new.bin"), 30 * KIB);
        await b.expect("RNFR new.bin", 350);
        await b.expect("RNTO kept.bin", 250);
        const closed = new Promise<void>((resolve) => sock.once("close", () => resolve()));
        sock.on("error", () => undefined);
        const r = await a.cmd("ABOR");
        assert.ok(r.code === 426 || r.code === 226, r.lines.join("|"));
        if (r.code === 426) await a.expectReply(226);
        sock.destroy();
        await closed;
        assert.deepEqual(await readFile(path.join(home, "kept.bin")), payload(30 * KIB, 1));
        assert.deepEqual(await readdir(home), ["kept.bin"]);
        await countIs(a, 30 * KIB);
      });
    });

    it("STOR renamed, then the client resets the data connection: kept, counted", async () => {
      await run(async (_t, a, b, home) => {
        const sock = await startUpload(a, "STOR", "new.bin", payload(30 * KIB, 1));
        await sizeReached(path.join(home, "new.bin"), 30 * KIB);
        await b.expect("RNFR new.bin", 350);
        await b.expect("RNTO kept.bin", 250);
        sock.resetAndDestroy();
        assert.equal((await a.reply()).code, 426);
        assert.deepEqual(await readFile(path.join(home, "kept.bin")), payload(30 * KIB, 1));
        await countIs(a, 30 * KIB);
      });
    });

    it("STOR renamed before any byte, then the client resets: the empty file goes under its new name", async () => {
      await run(async (_t, a, b, home) => {
        await a.expect("MKD e", 257);
        const sock = await startUpload(a, "STOR", "new.bin", Buffer.alloc(0));
        await sizeReached(path.join(home, "new.bin"), 0);
        await b.expect("RNFR new.bin", 350);
        await b.expect("RNTO e/empty.bin", 250);
        sock.resetAndDestroy();
        assert.equal((await a.reply()).code, 426);
        assert.deepEqual(await readdir(path.join(home, "e")), []);
        assert.deepEqual(await readdir(home), ["e"]);
        await countIs(a, 0);
      });
    });

    it("APPE renamed into another directory, then 552: cut back there", async () => {
      await run(async (_t, a, b, home) => {
        await a.expect("MKD sub", 257);
        assert.equal(await storeCode(a, "STOR log.bin", payload(20 * KIB)), 226);
        const sock = await startUpload(a, "APPE", "log.bin", payload(40 * KIB, 1));
        await sizeReached(path.join(home, "log.bin"), 60 * KIB);
        await b.expect("RNFR log.bin", 350);
        await b.expect("RNTO sub/log2.bin", 250);
        assert.equal(await endUpload(a, sock, payload(60 * KIB, 2)), 552);
        assert.deepEqual(await readFile(path.join(home, "sub", "log2.bin")), payload(20 * KIB));
        await countIs(a, 20 * KIB);
      });
    });

    it("APPE that made the file, renamed, then 552: removed under its new name", async () => {
      await run(async (_t, a, b, home) => {
        const sock = await startUpload(a, "APPE", "made.bin", payload(40 * KIB, 1));
        await sizeReached(path.join(home, "made.bin"), 40 * KIB);
        await b.expect("RNFR made.bin", 350);
        await b.expect("RNTO made2.bin", 250);
        assert.equal(await endUpload(a, sock, payload(80 * KIB, 2)), 552);
        assert.deepEqual(await readdir(home), []);
        await countIs(a, 0);
      });
    });

    it("REST+STOR renamed, then 552: cut back to the offset under its new name", async () => {
      await run(async (_t, a, b, home) => {
        assert.equal(await storeCode(a, "STOR r.bin", payload(30 * KIB)), 226);
        await a.expect(`REST ${10 * KIB}`, 350);
        const sock = await startUpload(a, "STOR", "r.bin", payload(40 * KIB, 1));
        await sizeReached(path.join(home, "r.bin"), 50 * KIB);
        await b.expect("RNFR r.bin", 350);
        await b.expect("RNTO r2.bin", 250);
        assert.equal(await endUpload(a, sock, payload(80 * KIB, 2)), 552);
        assert.deepEqual(await readFile(path.join(home, "r2.bin")), payload(10 * KIB));
        await countIs(a, 10 * KIB);
      });
    });

    it("STOR renamed into a directory then swapped for a link out of the jail: nothing outside is touched", async () => {
      await run(async (_t, a, b, home) => {
        const outside = mkdtempSync(path.join(scratch, "out-"));
        await writeFile(path.join(outside, "far.bin"), "outside");
        await a.expect("MKD e", 257);
        const sock = await startUpload(a, "STOR", "new.bin", payload(60 * KIB, 1));
        await sizeReached(path.join(home, "new.bin"), 60 * KIB);
        await b.expect("RNFR new.bin", 350);
        await b.expect("RNTO e/far.bin", 250);
        await rename(path.join(home, "e"), path.join(home, "e2"));
        await symlink(outside, path.join(home, "e"));
        assert.equal(await endUpload(a, sock, payload(60 * KIB, 2)), 552);
        assert.equal(await readFile(path.join(outside, "far.bin"), "utf8"), "outside");
        assert.deepEqual(await readdir(path.join(home, "e2")), []);
        await countIs(a, 0);
      });
    });

    it("APPE whose directory another user moves out of the jail, then 552: the file there is left as it is", async () => {
      // boss's home is the storage root, which holds carol's home.
      await withServer(
        async (t) => {
          const home = t.home("carol");
          mkdirSync(path.join(home, "sub"), { recursive: true });
          const [a] = await twoSessions(t);
          const boss = await rawLogin(t, "boss");
          setup();
          try {
            assert.equal(await storeCode(a, "STOR sub/log.bin", payload(20 * KIB)), 226);
            const sock = await startUpload(a, "APPE", "sub/log.bin", payload(40 * KIB, 1));
            await sizeReached(path.join(home, "sub", "log.bin"), 60 * KIB);
            await boss.expect(`RNFR ${path.basename(home)}/sub`, 350);
            await boss.expect("RNTO boss-sub", 250);
            assert.equal(await endUpload(a, sock, payload(60 * KIB, 2)), 552);
            assert.equal((await readFile(path.join(path.dirname(home), "boss-sub", "log.bin"))).length, 60 * KIB);
            await a.expect("NOOP", 200);
          } finally {
            teardown();
            await a.close();
            await boss.close();
          }
          await portsFree(t);
        },
        { users: [CAROL, { name: "boss", password: "boss-pw", root: "." }] },
      );
    });

    it("the home is a symlink: the rollback follows the renamed file", async () => {
      const real = mkdtempSync(path.join(scratch, "real-"));
      const link = path.join(scratch, `link-${way.replace(/ /g, "-")}`);
      await symlink(real, link);
      await withServer(
        async (t) => {
          const [a, b] = await twoSessions(t, "linked");
          setup();
          try {
            const sock = await startUpload(a, "STOR", "new.bin", payload(60 * KIB, 1));
            await sizeReached(path.join(real, "new.bin"), 60 * KIB);
            await b.expect("RNFR new.bin", 350);
            await b.expect("RNTO moved.bin", 250);
            assert.equal(await endUpload(a, sock, payload(60 * KIB, 2)), 552);
            assert.deepEqual(await readdir(real), []);
            await countIs(a, 0);
            await a.expect("NOOP", 200);
          } finally {
            teardown();
            await a.close();
            await b.close();
          }
          await portsFree(t);
        },
        { users: [{ name: "linked", password: "linked-pw", quotaBytes: 100 * KIB, root: link }] },
      );
    });

    it("the upload cannot be moved into a read-only area; its rollback removes it where it is", async () => {
      await run(
        async (_t, a, b, home) => {
          await mkdir(path.join(home, "ro"));
          await a.expect("MKD w", 257);
          const sock = await startUpload(a, "STOR", "w/new.bin", payload(60 * KIB, 1));
          await sizeReached(path.join(home, "w", "new.bin"), 60 * KIB);
          await b.expect("RNFR w/new.bin", 350);
          await b.expect("RNTO ro/new.bin", 550);
          await b.expect("RNFR ro", 550);
          await b.expect("RNFR w", 350);
          await b.expect("RNTO ro/w", 550);
          await b.expect("RNFR w", 350);
          await b.expect("RNTO w2", 250);
          assert.equal(await endUpload(a, sock, payload(60 * KIB, 2)), 552);
          assert.deepEqual(await readdir(path.join(home, "w2")), []);
          assert.deepEqual(await readdir(path.join(home, "ro")), []);
          await countIs(a, 0);
        },
        [{ ...CAROL, dirs: { "/ro": ["list", "download"] } }],
      );
    });
  });
}

describe("an upload undone finds its file under odd names, and nothing else there", () => {
  const vp = (a: string): VirtualPath => resolveVirtual(ROOT, a);

  it("its directory moved out of the jail: nothing there is removed or cut back, whichever way it was made", async () => {
    const home = mkdtempSync(path.join(scratch, "out-"));
    const outside = mkdtempSync(path.join(scratch, "away-"));
    const jail = await JailedFs.open(home);
    const at = (...p: string[]): string => path.join(jail.root, ...p);
    const store = { kind: "store", offset: 0, exclusive: false } as const;
    const fds = openFds();
    try {
      for (const shortcut of [true, false]) {
        setBeneathForTest(shortcut ? undefined : false);
        await mkdir(at("m"));
        await writeFile(at("m", "log.txt"), "old");
        await writeFile(at("m", "rest.txt"), "abcdef");
        const ap = await jail.openUpload(vp("/m/log.txt"), { kind: "append", offset: 0, exclusive: false });
        await ap.handle.write(Buffer.from("more"), 0, 4, 3);
        const re = await jail.openUpload(vp("/m/rest.txt"), { kind: "store", offset: 2, exclusive: false });
        await re.handle.write(Buffer.from("XY"), 0, 2, 2);
        const nw = await jail.openUpload(vp("/m/new.txt"), store);
        await nw.handle.write(Buffer.from("new"), 0, 3, 0);
        const em = await jail.openUpload(vp("/m/empty.txt"), store);
        const away = path.join(outside, `m-${shortcut}`);
        await rename(at("m"), away);
        await ap.rollback();
        await re.rollback();
        await nw.rollback();
        await em.abort();
        assert.equal(await readFile(path.join(away, "log.txt"), "utf8"), "oldmore", `shortcut ${shortcut}`);
        assert.equal(await readFile(path.join(away, "rest.txt"), "utf8"), "abXY", `shortcut ${shortcut}`);
        assert.equal(await readFile(path.join(away, "new.txt"), "utf8"), "new", `shortcut ${shortcut}`);
        assert.equal(await readFile(path.join(away, "empty.txt"), "utf8"), "", `shortcut ${shortcut}`);
      }
      assert.equal(openFds(), fds);
    } finally {
      setBeneathForTest(undefined);
      jail.close();
    }
  });

  it("in a directory whose name is not UTF-8 (made on the machine), reached through a link: undone there, not in its look-alike", async () => {
    const home = mkdtempSync(path.join(scratch, "latin-"));
    const latin = Buffer.concat([Buffer.from(`${home}/caf`), Buffer.from([0xe9])]);
    mkdirSync(latin);
    symlinkSync(Buffer.from([0x63, 0x61, 0x66, 0xe9]), path.join(home, "docs"));
    // The name a client sees for it, and can make: U+FFFD in place of the byte.
    mkdirSync(path.join(home, "caf\ufffd"));
    const jail = await JailedFs.open(home);
    const fds = openFds();
    try {
      for (const shortcut of [true, false]) {
        setBeneathForTest(shortcut ? undefined : false);
        const n = await jail.openUpload(vp("/docs/new.bin"), { kind: "store", offset: 0, exclusive: false });
        await n.handle.write(Buffer.from("new"), 0, 3, 0);
        await n.rollback();
        assert.deepEqual(readdirSync(latin), [], `shortcut ${shortcut}`);
        writeFileSync(Buffer.concat([latin, Buffer.from("/log.txt")]), "old");
        const ap = await jail.openUpload(vp("/docs/log.txt"), { kind: "append", offset: 0, exclusive: false });
        await ap.handle.write(Buffer.from("more"), 0, 4, 3);
        await ap.rollback();
        assert.equal(readFileSync(Buffer.concat([latin, Buffer.from("/log.txt")]), "utf8"), "old", `shortcut ${shortcut}`);
        rmSync(Buffer.concat([latin, Buffer.from("/log.txt")]));
      }
      assert.deepEqual(readdirSync(path.join(home, "caf\ufffd")), []);
      assert.equal(openFds(), fds);
    } finally {
      setBeneathForTest(undefined);
      jail.close();
    }
  });

  it("a directory renamed to a name with a newline; a FIFO or a directory at the ' (deleted)' name of its removed file", async () => {
    const home = mkdtempSync(path.join(scratch, "odd-"));
    const jail = await JailedFs.open(home);
    const at = (...p: string[]): string => path.join(jail.root, ...p);
    const fds = openFds();
    try {
      for (const shortcut of [true, false]) {
        setBeneathForTest(shortcut ? undefined : false);
        // Its directory renamed to a name no FTP client can give: the rollback removes it there.
        await mkdir(at("d"));
        const n = await jail.openUpload(vp("/d/new.bin"), { kind: "store", offset: 0, exclusive: false });
        await n.handle.write(Buffer.from("new"), 0, 3, 0);
        await rename(at("d"), at("d\nx"));
        await n.rollback();
        assert.deepEqual(readdirSync(at("d\nx")), [], `shortcut ${shortcut}`);
        await rm(at("d\nx"), { recursive: true });
        // APPE whose file was removed, a FIFO with a reader at "log.txt (deleted)": left alone, and
        // the rollback does not wait on it.
        await writeFile(at("log.txt"), "old");
        const ap = await jail.openUpload(vp("/log.txt"), { kind: "append", offset: 0, exclusive: false });
        await ap.handle.write(Buffer.from("more"), 0, 4, 3);
        await rm(at("log.txt"));
        execFileSync("mkfifo", [at("log.txt (deleted)")]);
        const reader = openSync(at("log.txt (deleted)"), constants.O_RDONLY | constants.O_NONBLOCK);
        try {
          await ap.rollback();
        } finally {
          closeSync(reader);
        }
        await rm(at("log.txt (deleted)"));
        // REST+STOR whose file was removed, a directory at "rest.txt (deleted)": left alone.
        await writeFile(at("rest.txt"), "abcdef");
        const r = await jail.openUpload(vp("/rest.txt"), { kind: "store", offset: 2, exclusive: false });
        await r.handle.write(Buffer.from("XY"), 0, 2, 2);
        await rm(at("rest.txt"));
        await mkdir(at("rest.txt (deleted)"));
        await writeFile(at("rest.txt (deleted)", "inside"), "x");
        await r.rollback();
        assert.deepEqual(readdirSync(at("rest.txt (deleted)")), ["inside"]);
        await rm(at("rest.txt (deleted)"), { recursive: true });
        // A new file renamed, an empty file of someone else's put at its old name, then aborted
        // with bytes: both stay.
        const s = await jail.openUpload(vp("/s.txt"), { kind: "store", offset: 0, exclusive: false });
        await s.handle.write(Buffer.from("s"), 0, 1, 0);
        await rename(at("s.txt"), at("s2.txt"));
        await writeFile(at("s.txt"), "");
        await s.abort();
        assert.equal(await readFile(at("s2.txt"), "utf8"), "s");
        assert.equal(existsSync(at("s.txt")), true);
        await rm(at("s.txt"));
        await rm(at("s2.txt"));
      }
      assert.deepEqual(readdirSync(home), []);
      assert.equal(openFds(), fds);
    } finally {
      setBeneathForTest(undefined);
      jail.close();
    }
  });
});

describe("APPE of a new name and a file made there meanwhile by someone else", () => {
  const vp = (a: string): VirtualPath => resolveVirtual(ROOT, a);

  it("the file is appended to, or refused without overwrite, and an undone APPE cuts it back instead of removing it", async () => {
    const home = mkdtempSync(path.join(scratch, "race-"));
    const jail = await JailedFs.open(home);
    const theirs = path.join(jail.root, "race.txt");
    const fds = openFds();
    // On a slow disk the look (lstat) and the open are apart in time: another session's file is
    // made right before the open, every time.
    const realOpen = fs.promises.open;
    fs.promises.open = (async (p: PathLike, flags?: string | number, mode?: Mode) => {
      if (String(p).endsWith("/race.txt") && typeof flags === "number" && (flags & constants.O_CREAT) !== 0 && !existsSync(theirs)) {
        writeFileSync(theirs, "theirs");
      }
      return realOpen(p, flags, mode);
    }) as typeof fs.promises.open;
    syncBuiltinESMExports();
    backOff(60_000);
    try {
      const append = await jail.openUpload(vp("/race.txt"), { kind: "append", offset: 0, exclusive: false });
      assert.equal(append.created, false);
      await append.handle.write(Buffer.from("+mine"), 0, 5, 6);
      await append.rollback();
      assert.equal(readFileSync(theirs, "utf8"), "theirs");
      rmSync(theirs);
      const aborted = await jail.openUpload(vp("/race.txt"), { kind: "append", offset: 0, exclusive: false });
      await aborted.abort();
      assert.equal(readFileSync(theirs, "utf8"), "theirs");
      rmSync(theirs);
      // Without overwrite: refused, and their file stays as it is.
      await assert.rejects(jail.openUpload(vp("/race.txt"), { kind: "append", offset: 0, exclusive: true }), /File exists/);
      assert.equal(readFileSync(theirs, "utf8"), "theirs");
      assert.equal(openFds(), fds);
    } finally {
      backOff(0);
      fs.promises.open = realOpen;
      syncBuiltinESMExports();
      jail.close();
    }
  });
});
