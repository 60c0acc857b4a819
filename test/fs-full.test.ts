/**
 * A real full file system (a small tmpfs, out of blocks or out of inodes) under a home, the users
 * file or the xferlog: uploads that run out of space are answered 452 and keep a file they were
 * replacing byte for byte, with no temp file left and the space given back; commands that make an
 * entry say why they could not, and those that need no room still work; the user commands fail
 * with one line and leave the users file as it was; the xferlog keeps one entry per line. The
 * session goes on, and the teardown of every server checks that no descriptor or passive port is
 * left held. Needs tmpfs mounts (root); skipped where one cannot be made.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdir, readdir, readFile, rm, statfs, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import * as quick from "../src/fs/quick.ts";
import { assertOneLineError, berth, workdir } from "./helpers/cli.ts";
import { FtpsControl } from "./helpers/ftps.ts";
import { retrieve, storeReply, type RawClient } from "./helpers/raw.ts";
import { payload, rawLogin, withServer } from "./helpers/run.ts";
import { waitFor, type TestServer } from "./helpers/server.ts";

const probe = spawnSync("id", ["-u"], { encoding: "utf8" }).stdout.trim();
const skip = process.platform !== "linux" || probe !== "0" ? "needs root to mount a tmpfs" : false;

/** Mounts a tmpfs with `options` (size=…, nr_inodes=…) on `dir`; false where it cannot. */
function mount(dir: string, options: string): boolean {
  return spawnSync("mount", ["-t", "tmpfs", "-o", options, "tmpfs", dir], { stdio: "ignore" }).status === 0;
}

/** Unmounts `dir`; lazily where something still holds it, so that no mount outlives the test. */
function umount(dir: string): void {
  if (spawnSync("umount", [dir], { stdio: "ignore" }).status !== 0) spawnSync("umount", ["-l", dir], { stdio: "ignore" });
}

/** Unmounts a home once the server's sessions, which hold it open, have gone. */
async function umountHome(t: TestServer, dir: string): Promise<void> {
  await waitFor(() => t.server.sessions.size === 0, 5000);
  umount(dir);
}

/** Free bytes of the file system at `dir`. */
async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

/** Fills the file system at `dir` with files of `size` bytes named fill-0, fill-1…, until it
 * takes no more (a file it could not write whole is removed); returns how many there are. */
async function fill(dir: string, size = 4096): Promise<number> {
  for (let n = 0; ; n++) {
    try {
      await writeFile(join(dir, `fill-${n}`), Buffer.alloc(size));
    } catch {
      await rm(join(dir, `fill-${n}`), { force: true });
      return n;
    }
  }
}

/** alice's home on a fresh tmpfs mounted with `options`, and a session logged in (TYPE I) there. */
async function withFullHome(options: string, body: (raw: RawClient, home: string, t: TestServer) => Promise<void>): Promise<void> {
  await withServer(async (t) => {
    const home = t.home("alice");
    assert.ok(mount(home, options), `mount of a tmpfs (${options})`);
    try {
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        await body(raw, home, t);
      } finally {
        await raw.close();
      }
    } finally {
      await umountHome(t, home);
    }
  });
}

/** The transfer log lines of `path`. */
function transferLogs(t: TestServer, path: string): Record<string, unknown>[] {
  return t.logs.filter((l) => l.event === "transfer" && l.path === path);
}

void describe("a full file system", { skip }, () => {
  void it("STOR of a new file larger than the free space: 452 and a warning; what was written stays for REST, and once removed the space is back", async () => {
    await withFullHome("size=2m", async (raw, home, t) => {
      const free = await freeBytes(home);
      const data = payload(3 << 20);
      const r = await storeReply(raw, "STOR big.bin", data);
      assert.deepEqual([r.code, r.message], [452, "Insufficient storage space"]);
      const [line] = transferLogs(t, "/big.bin");
      assert.deepEqual([line?.level, line?.reply, line?.result], [40, 452, "error"]);
      // A failed new upload keeps its partial data, for REST+STOR or APPE (fs/upload.ts).
      const kept = await readFile(join(home, "big.bin"));
      assert.ok(kept.length > 0 && kept.length < data.length, String(kept.length));
      assert.deepEqual(kept, data.subarray(0, kept.length));
      assert.equal(await freeBytes(home), 0);
      await raw.expect("DELE big.bin", 250);
      assert.equal(await freeBytes(home), free);
      assert.equal((await storeReply(raw, "STOR small.bin", "hello")).code, 226);
      assert.equal(await readFile(join(home, "small.bin"), "utf8"), "hello");
    });
  });

  void it("STOR of a few bytes with no block left: 452, and the empty file it made is gone", async () => {
    await withFullHome("size=64k", async (raw, home) => {
      await fill(home);
      assert.equal((await storeReply(raw, "STOR tiny.txt", "hello")).code, 452);
      assert.ok(!(await readdir(home)).includes("tiny.txt"));
      await raw.expect("NOOP", 200);
    });
  });

  // Written at once from the read buffer (the first read of a connection as accepted, then the
  // reads of the Socket), or through the thread pool while synchronous calls are off.
  for (const [size, pool] of [
    [100_000, false],
    [3 << 20, false],
    [3 << 20, true],
  ] as const) {
    void it(`a new file of ${size} bytes out of space${pool ? " (writes through the pool)" : ""}: the transfer's log line counts every byte that reached the file`, async () => {
      await withFullHome(size < 1 << 20 ? "size=64k" : "size=2m", async (raw, home, t) => {
        if (pool) quick.backOff(600_000);
        try {
          assert.equal((await storeReply(raw, "STOR part.bin", payload(size))).code, 452);
        } finally {
          quick.backOff(0);
        }
        const kept = (await readFile(join(home, "part.bin"))).length;
        assert.ok(kept > 0);
        assert.equal(transferLogs(t, "/part.bin")[0]?.bytes, kept);
      });
    });
  }

  void it("STOR replacing a file that runs out of space keeps the old file byte for byte, leaves no temp file and gives the space back", async () => {
    await withFullHome("size=2m", async (raw, home) => {
      const old = payload(500_000, 7);
      await writeFile(join(home, "keep.bin"), old);
      const free = await freeBytes(home);
      assert.equal((await storeReply(raw, "STOR keep.bin", payload(3 << 20))).code, 452);
      assert.deepEqual(await readFile(join(home, "keep.bin")), old);
      assert.deepEqual(await readdir(home), ["keep.bin"]);
      assert.equal(await freeBytes(home), free);
      assert.equal((await storeReply(raw, "STOR small.bin", "hello")).code, 226);
    });
  });

  void it("APPE that runs out of space: 452; the old bytes are as they were, followed by what fitted, and SIZE says so", async () => {
    await withFullHome("size=2m", async (raw, home) => {
      const old = payload(500_000, 7);
      const more = payload(3 << 20, 9);
      await writeFile(join(home, "log.bin"), old);
      assert.equal((await storeReply(raw, "APPE log.bin", more)).code, 452);
      const now = await readFile(join(home, "log.bin"));
      assert.deepEqual(now.subarray(0, old.length), old);
      assert.deepEqual(now.subarray(old.length), more.subarray(0, now.length - old.length));
      assert.equal(Number((await raw.expect("SIZE log.bin", 213)).message), now.length);
    });
  });

  void it("REST+STOR that runs out of space: 452; the bytes before the offset are as they were", async () => {
    await withFullHome("size=2m", async (raw, home) => {
      const old = payload(1_000_000, 7);
      const rest = payload(3 << 20, 9);
      await writeFile(join(home, "r.bin"), old);
      await raw.expect("REST 400000", 350);
      assert.equal((await storeReply(raw, "STOR r.bin", rest)).code, 452);
      const now = await readFile(join(home, "r.bin"));
      assert.deepEqual(now.subarray(0, 400_000), old.subarray(0, 400_000));
      assert.deepEqual(now.subarray(400_000), rest.subarray(0, now.length - 400_000));
    });
  });

  for (const size of [100_000, 12 << 20]) {
    void it(`a TYPE A upload of ${size} bytes replacing a file, out of space: 452, the old file kept, no temp file`, async () => {
      await withFullHome("size=64k", async (raw, home) => {
        await raw.expect("TYPE A", 200);
        await writeFile(join(home, "t.txt"), "old text\n");
        assert.equal((await storeReply(raw, "STOR t.txt", Buffer.alloc(size, "line\r\n"))).code, 452);
        assert.equal(await readFile(join(home, "t.txt"), "utf8"), "old text\n");
        assert.deepEqual(await readdir(home), ["t.txt"]);
      });
    });
  }

  void it("a large upload (its rest on the upload thread) out of space: 452, a replaced file kept, no temp file, the space back", async () => {
    await withFullHome("size=6m", async (raw, home) => {
      const old = payload(1_000_000, 7);
      await writeFile(join(home, "keep.bin"), old);
      const free = await freeBytes(home);
      assert.equal((await storeReply(raw, "STOR keep.bin", payload(12 << 20), 30_000)).code, 452);
      assert.deepEqual(await readFile(join(home, "keep.bin")), old);
      assert.deepEqual(await readdir(home), ["keep.bin"]);
      assert.equal(await freeBytes(home), free);
      assert.equal((await storeReply(raw, "STOR new.bin", payload(12 << 20), 30_000)).code, 452);
      await raw.expect("DELE new.bin", 250);
      assert.equal(await freeBytes(home), free);
      assert.equal((await storeReply(raw, "STOR small.bin", "hello")).code, 226);
    });
  });

  void it("a large upload over TLS (PROT P) out of space: 452, a replaced file kept, no temp file, the space back", async () => {
    await withServer(
      async (t) => {
        const home = t.home("alice");
        assert.ok(mount(home, "size=6m"), "mount of a tmpfs");
        try {
          const old = payload(1_000_000, 7);
          await writeFile(join(home, "keep.bin"), old);
          const free = await freeBytes(home);
          const c = await FtpsControl.explicit(t.port);
          try {
            await c.login();
            await c.protect();
            await c.expect("TYPE I", 200);
            for (const name of ["keep.bin", "new.bin"]) {
              const d = await c.tlsData(await c.epsv());
              await c.expect(`STOR ${name}`, 150);
              await d.handshake;
              const closed = new Promise<void>((resolve) => d.socket.once("close", () => resolve()));
              d.socket.end(payload(12 << 20));
              d.socket.resume();
              const r = await c.reply(30_000);
              await closed;
              assert.equal(r.code, 452, `${name}: ${r.lines.join("|")}`);
            }
            assert.deepEqual(await readFile(join(home, "keep.bin")), old);
            await c.expect("DELE new.bin", 250);
            assert.deepEqual(await readdir(home), ["keep.bin"]);
            assert.equal(await freeBytes(home), free);
          } finally {
            await c.quit();
          }
        } finally {
          await umountHome(t, home);
        }
      },
      { config: { tls: { mode: "explicit" } } },
    );
  });

  void it("out of inodes: STOU, STOR and APPE of a new name are 452, MKD 550, and make nothing; RNTO, SITE CHMOD, SITE UTIME, MFMT, checksums and downloads work", async () => {
    await withFullHome("size=2m,nr_inodes=16", async (raw, home) => {
      await writeFile(join(home, "a.txt"), "a");
      await fill(home, 0);
      const before = (await readdir(home)).sort();
      // RFC 959 lists 452 for STOR, STOU and APPE only: MKD's failure is 550, as in vsftpd and
      // ProFTPD, with the same words.
      for (const verb of ["MKD sub", "XMKD sub"]) {
        const r = await raw.cmd(verb);
        assert.deepEqual([r.code, r.message], [550, "Insufficient storage space"], verb);
      }
      for (const line of ["STOU", "STOR new.txt", "STOR a.txt", "APPE b.txt"]) assert.equal((await storeReply(raw, line, "x")).code, 452, line);
      assert.deepEqual((await readdir(home)).sort(), before);
      assert.equal((await storeReply(raw, "APPE a.txt", "more")).code, 226);
      await raw.expect("RNFR a.txt", 350);
      await raw.expect("RNTO b.txt", 250);
      await raw.expect("SITE CHMOD 600 b.txt", 200);
      await raw.expect("SITE UTIME 20200101000000 b.txt", 200);
      await raw.expect("MFMT 20200101000000 b.txt", 213);
      const sha = createHash("sha256").update("amore").digest("hex");
      assert.equal((await raw.expect("XSHA256 b.txt", 213)).message.toLowerCase(), sha);
      assert.equal((await raw.expect("HASH b.txt", 213)).message, `SHA-256 0-4 ${sha} b.txt`);
      const { data, reply } = await retrieve(raw, "b.txt");
      assert.deepEqual([reply.code, data.toString()], [226, "amore"]);
    });
  });

  void it("out of blocks: downloads and checksums go on", async () => {
    await withFullHome("size=2m", async (raw, home) => {
      const data = payload(500_000, 3);
      await writeFile(join(home, "d.bin"), data);
      await fill(home);
      assert.equal(await freeBytes(home), 0);
      const { data: got, reply } = await retrieve(raw, "d.bin");
      assert.equal(reply.code, 226, reply.lines.join("|"));
      assert.deepEqual(got, data);
      const sha = createHash("sha256").update(data).digest("hex");
      assert.equal((await raw.expect("XSHA256 d.bin", 213)).message.toLowerCase(), sha);
      assert.equal((await raw.expect("HASH d.bin", 213)).message, `SHA-256 0-499999 ${sha} d.bin`);
    });
  });

  // Full to the last block or inode, or with room for the lock file but not for the users file.
  for (const [options, spare] of [
    ["size=64k", false],
    ["size=64k", true],
    ["size=1m,nr_inodes=4", false],
    ["size=1m,nr_inodes=4", true],
  ] as const) {
    void it(`berth user add and passwd, the users file on a full disk (${options}${spare ? ", room for one more file" : ""}): one line, exit 1, the file intact`, async () => {
      const cwd = workdir();
      const users = join(cwd, "users");
      await mkdir(users);
      assert.ok(mount(users, options), "mount of a tmpfs");
      try {
        assert.equal((await berth(cwd, ["user", "add", "alice", "--password-stdin"], { input: "alice-pw" })).code, 0);
        const file = join(users, "users.json");
        const before = await readFile(file);
        const n = await fill(users, options.includes("nr_inodes") ? 0 : 4096);
        if (spare) await rm(join(users, `fill-${n - 1}`));
        for (const args of [
          ["user", "add", "bob", "--password-stdin"],
          ["user", "passwd", "alice", "--password-stdin"],
        ]) {
          const r = await berth(cwd, args, { input: "new-pw" });
          assertOneLineError(r, 1, "no space left on device");
          assert.deepEqual(await readFile(file), before);
          assert.deepEqual((await readdir(users)).filter((f) => !f.startsWith("fill-")), ["users.json"], "no lock or temp file left");
        }
      } finally {
        umount(users);
      }
    });
  }

  void it("log.xferlog on a full disk: transfers go on, one warning, the count of lines lost once writes land again, and every line whole", async () => {
    const dir = workdir();
    assert.ok(mount(dir, "size=64k"), "mount of a tmpfs");
    try {
      const xferlog = join(dir, "xferlog");
      // The first line (some 80 bytes) is cut where the file's last block ends: the disk is full.
      const first = "x".repeat((await statfs(dir)).bsize - 31) + "\n";
      await writeFile(xferlog, first);
      const n = await fill(dir);
      let logs: Record<string, unknown>[] = [];
      await withServer(
        async (t) => {
          const raw = await rawLogin(t);
          try {
            await raw.expect("TYPE I", 200);
            for (const name of ["a", "b", "c"]) assert.equal((await storeReply(raw, `STOR ${name}.bin`, "1")).code, 226);
            assert.equal((await retrieve(raw, "a.bin")).reply.code, 226);
            for (let i = 0; i < n; i++) await rm(join(dir, `fill-${i}`));
            for (const name of ["d", "e"]) assert.equal((await storeReply(raw, `STOR ${name}.bin`, "1")).code, 226);
            await raw.expect("NOOP", 200);
          } finally {
            await raw.close();
          }
          logs = t.logs;
        },
        { config: { log: { xferlog } } },
      );
      // Looked at once the server has stopped, which waits for the xferlog's writes.
      const events = logs.filter((l) => String(l.event).startsWith("xferlog-"));
      assert.deepEqual(
        events.map((l) => [l.event, l.level]),
        [
          ["xferlog-failed", 40],
          ["xferlog-resumed", 30],
        ],
      );
      assert.equal(events[0]?.code, "ENOSPC");
      const dropped = Number(events[1]?.dropped);
      const lines = (await readFile(xferlog, "utf8")).slice(first.length).split("\n");
      assert.equal(lines.pop(), "", "the file ends with a whole line");
      // The line the disk cut short is ended there; every one after it is whole, on a line of its
      // own, and with those lost they make the six transfers.
      const [cut, ...whole] = lines;
      assert.ok(cut !== undefined && !/ [ci]$/.test(cut) && cut.length < 40, `a cut line first: ${JSON.stringify(lines)}`);
      for (const line of whole) assert.match(line, /^\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4} \d+ 127\.0\.0\.1 1 \/[a-e]\.bin b _ [io] r alice ftp 0 \* c$/);
      assert.deepEqual(whole.slice(-2).map((l) => / (\/\S+) b /.exec(l)?.[1]), ["/d.bin", "/e.bin"]);
      assert.equal(whole.length + dropped, 6, `${whole.length} lines and ${dropped} lost`);
    } finally {
      umount(dir);
    }
  });
});
