/**
 * Storage quotas against a real server (issue "Abuse resistance" part 4): refused with 552 before
 * 150 (ALLO size, or already full), stopped with 552 mid-way with the partial data removed and a
 * replaced file intact, the file-count quota, DELE giving space back, and `berth user list`.
 */
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { mkdir, readFile, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { FTPError } from "basic-ftp";
import { ConfigError, loadConfig } from "../src/config/load.ts";
import { backOff } from "../src/fs/quick.ts";
import { HomeUsage } from "../src/fs/quota.ts";
import { Limiter, scanUsage } from "../src/fs/usage.ts";
import { dataConnect, readAll, storeCode, storeReply, type RawClient } from "./helpers/raw.ts";
import { download, ftpLogin, payload, rawLogin, upload, withServer } from "./helpers/run.ts";
import { endUpload, pasvPort, portsFree, sizeReached, startUpload, tempFiles, twoSessions } from "./helpers/uploads.ts";
import type { TestServer } from "./helpers/server.ts";

const KIB = 1024;
/** The uid and gid of "nobody", an account that owns nothing here. */
const NOBODY = 65534;

/** carol has her own quota of 100 KiB and 3 files. */
const CAROL = { name: "carol", password: "carol-pw", quotaBytes: 100 * KIB, quotaFiles: 3 };

/** Runs `body` with carol's home and two raw sessions of hers on one server, both closed after. */
async function withTwoSessions(body: (on: { t: TestServer; home: string; a: RawClient; b: RawClient }) => Promise<void>): Promise<void> {
  await withServer(
    async (t) => {
      const [a, b] = await twoSessions(t);
      try {
        await body({ t, home: t.home("carol"), a, b });
      } finally {
        await a.close();
        await b.close();
      }
    },
    { users: [CAROL] },
  );
}

/** STOR (or APPE) through the raw client (storeCode): the final reply's code, or the refusal's. */
async function rawStore(c: RawClient, verb: string, name: string, data: Buffer): Promise<number> {
  return storeCode(c, `${verb} ${name}`, data);
}

async function expect552(p: Promise<unknown>): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof FTPError, String(err));
    assert.equal(err.code, 552);
    assert.match(err.message, /Quota exceeded/);
    return true;
  });
}

describe("quota refused before 150", () => {
  it("ALLO larger than the room left: 552, no 150, the passive port is released", async () => {
    await withServer(
      async (t) => {
        const c = await rawLogin(t, "carol");
        try {
          await c.expect("TYPE I", 200);
          const port = pasvPort((await c.expect("PASV", 227)).message);
          const sock = await dataConnect(port);
          const gone = readAll(sock);
          await c.expect(`ALLO ${200 * KIB}`, 202);
          const r = await c.expect("STOR big.bin", 552);
          assert.match(r.message, /^Quota exceeded: 0 B of 100 KiB used/);
          await gone; // the server closed the data connection it never used
          await portsFree(t);
          await c.expect("NOOP", 200); // no stray 150 or 226 in between
          await assert.rejects(stat(path.join(t.home("carol"), "big.bin")), { code: "ENOENT" });
          // An ALLO that fits lets the upload through (and ALLO is one-shot).
          assert.equal(await rawStore(c, "STOR", "fits.bin", payload(50 * KIB)), 226);
          await c.expect("EPSV", 229);
          await c.expect(`ALLO ${60 * KIB}`, 202);
          assert.equal((await c.expect("STOR more.bin", 552)).code, 552);
          await portsFree(t);
        } finally {
          await c.close();
        }
      },
      { users: [CAROL] },
    );
  });

  it("the size an ALLO announced is held for its upload: another session's ALLO that would not fit beside it is refused before 150", async () => {
    await withServer(
      async (t) => {
        const [a, b] = await twoSessions(t);
        try {
          await a.expect(`ALLO ${60 * KIB}`, 202);
          const sock = await startUpload(a, "STOR", "a.bin", payload(KIB, 1));
          await b.expect(`ALLO ${60 * KIB}`, 202);
          const unused = readAll(await b.epsv());
          await b.expect("STOR b.bin", 552);
          await unused;
          assert.equal(await endUpload(a, sock, payload(59 * KIB, 2)), 226);
          // What a holds now is what is counted: 40 KiB more fit.
          await b.expect(`ALLO ${40 * KIB}`, 202);
          assert.equal(await rawStore(b, "STOR", "b.bin", payload(40 * KIB)), 226);
          await portsFree(t);
        } finally {
          await a.close();
          await b.close();
        }
      },
      { users: [CAROL] },
    );
  });

  it("an ALLO of more bytes than a number holds exactly is refused (501), and leaves the count another user's quota is checked against as it was", async () => {
    // dan has only a file-count quota and shares carol's home, so his uploads are counted there
    // with no size check of their own.
    const DAN = { name: "dan", password: "dan-pw", root: "carol", quotaFiles: 50 };
    await withServer(
      async (t) => {
        mkdirSync(t.home("carol"), { recursive: true });
        const dan = await rawLogin(t, "dan");
        const carol = await rawLogin(t, "carol");
        try {
          await dan.expect("TYPE I", 200);
          await carol.expect("TYPE I", 200);
          await dan.expect(`ALLO ${"9".repeat(400)}`, 501);
          await dan.expect("ALLO 9007199254740993", 501);
          assert.equal(await rawStore(dan, "STOR", "d.bin", payload(KIB)), 226);
          // carol's own quota of 100 KiB still holds.
          assert.equal(await rawStore(carol, "STOR", "big.bin", payload(200 * KIB)), 552);
          await dan.expect(`ALLO ${Number.MAX_SAFE_INTEGER}`, 202);
        } finally {
          await dan.close();
          await carol.close();
        }
      },
      { users: [CAROL, DAN] },
    );
  });

  it("a user already at the quota is refused before 150; the config default applies to users without their own", async () => {
    await withServer(
      async (t) => {
        const client = await ftpLogin(t, "alice");
        try {
          await upload(client, payload(10 * KIB), "full.bin"); // exactly the quota
          await expect552(upload(client, "x", "one-more.bin"));
          await assert.rejects(stat(path.join(t.home("alice"), "one-more.bin")), { code: "ENOENT" });
          // Replacing a file with one of the same size still fits: the old bytes are freed.
          await upload(client, payload(10 * KIB, 2), "full.bin");
          assert.deepEqual(await readFile(path.join(t.home("alice"), "full.bin")), payload(10 * KIB, 2));
        } finally {
          client.close();
        }
        // dave's own, larger quota wins over the config's default.
        const dave = await ftpLogin(t, "dave");
        try {
          await upload(dave, payload(30 * KIB), "d.bin");
        } finally {
          dave.close();
        }
        await portsFree(t);
      },
      { config: { quota: { bytes: 10 * KIB, files: 0, rescanAfter: 600 } }, users: [{ name: "dave", password: "dave-pw", quotaBytes: 50 * KIB }] },
    );
  });
});

describe("quota crossed mid-way", () => {
  it("552, partial data removed, the replaced file intact, an appended file cut back", async () => {
    await withServer(
      async (t) => {
        const home = t.home("carol");
        mkdirSync(home, { recursive: true });
        const original = payload(10 * KIB, 7);
        await writeFile(path.join(home, "keep.bin"), original); // counted by the first scan
        const c = await rawLogin(t, "carol");
        try {
          await c.expect("TYPE I", 200);
          const big = payload(300 * KIB, 3);
          assert.equal(await rawStore(c, "STOR", "new.bin", big), 552);
          await assert.rejects(stat(path.join(home, "new.bin")), { code: "ENOENT" });

          assert.equal(await rawStore(c, "STOR", "keep.bin", big), 552);
          assert.deepEqual(await readFile(path.join(home, "keep.bin")), original);
          assert.deepEqual(await tempFiles(home), []);

          // The reply says what became of the file: an upload into a file that was there (APPE,
          // REST+STOR) is cut back to where it began, the file itself stays.
          const appended = await storeReply(c, "APPE keep.bin", big);
          assert.equal(appended.code, 552);
          assert.match(appended.message, /the file ends where this upload began \(10240 bytes\)$/);
          assert.doesNotMatch(appended.message, /upload removed/);
          assert.deepEqual(await readFile(path.join(home, "keep.bin")), original);

          await c.expect("REST 5000", 350);
          const restarted = await storeReply(c, "STOR keep.bin", big);
          assert.equal(restarted.code, 552);
          assert.match(restarted.message, /the file ends where this upload began \(5000 bytes\)$/);
          assert.deepEqual(await readFile(path.join(home, "keep.bin")), original.subarray(0, 5000));
          // A new file is removed whole, and an APPE that made its file as well.
          assert.match((await storeReply(c, "STOR new.bin", big)).message, /; upload removed$/);
          assert.match((await storeReply(c, "APPE new.bin", big)).message, /; upload removed$/);
          await assert.rejects(stat(path.join(home, "new.bin")), { code: "ENOENT" });
          await portsFree(t);

          // The failed attempts left nothing behind in the count: 95 KiB still fit.
          assert.equal(await rawStore(c, "STOR", "ok.bin", payload(95 * KIB)), 226);
          await c.expect("NOOP", 200);
        } finally {
          await c.close();
        }
      },
      { users: [CAROL] },
    );
  });
});

describe("quota and TYPE A", () => {
  it("an ASCII upload counts the bytes it stores (LF), not those sent (CRLF): a text file that fits is kept, one that does not is refused", async () => {
    await withServer(
      async (t) => {
        const home = t.home("carol");
        const c = await rawLogin(t, "carol");
        try {
          await c.expect("TYPE A", 200);
          // 100,000 bytes on disk under a quota of 102,400; 105,000 on the wire.
          const line = `${"x".repeat(19)}\r\n`;
          assert.equal(await rawStore(c, "STOR", "fits.txt", Buffer.from(line.repeat(5000))), 226);
          assert.deepEqual(await readFile(path.join(home, "fits.txt"), "latin1"), `${"x".repeat(19)}\n`.repeat(5000));
          // 2,000 more on disk do not fit: the quota still holds in TYPE A.
          assert.equal(await rawStore(c, "STOR", "more.txt", Buffer.from(line.repeat(150))), 552);
          await assert.rejects(stat(path.join(home, "more.txt")), { code: "ENOENT" });
          await portsFree(t);
          await c.expect("NOOP", 200);
        } finally {
          await c.close();
        }
      },
      { users: [CAROL] },
    );
  });
});

describe("file-count quota and DELE", () => {
  it("a new file past the count is refused; replacing one is not; DELE gives room back", async () => {
    await withServer(
      async (t) => {
        const client = await ftpLogin(t, "carol");
        try {
          await upload(client, "a", "a.txt");
          await upload(client, "b", "b.txt");
          await client.ensureDir("/sub");
          await upload(client, "c", "c.txt");
          await expect552(upload(client, "d", "/d.txt"));
          await upload(client, "c, again", "c.txt"); // replaces: no new file
          await client.remove("c.txt");
          await upload(client, "d", "d.txt");
          assert.equal((await download(client, "/sub/d.txt")).toString(), "d");

          // Bytes: fill to the quota, be refused, delete, and fit again.
          await client.cd("/");
          await client.remove("/a.txt");
          await upload(client, payload(100 * KIB - 2), "big.bin"); // b and d hold 1 byte each
          await expect552(upload(client, "x", "x.txt"));
          await client.remove("big.bin");
          await upload(client, "x", "x.txt");
          // RNTO over an existing file removes that file from the count.
          await client.rename("x.txt", "b.txt");
          await upload(client, payload(100 * KIB - 2), "big.bin");
        } finally {
          client.close();
        }
        await portsFree(t);
      },
      { users: [CAROL] },
    );
  });

  it("RNTO onto the very entry it renames (through a link to its directory) leaves the count as it was", async () => {
    await withServer(
      async (t) => {
        const home = t.home("carol");
        mkdirSync(path.join(home, "d"), { recursive: true });
        writeFileSync(path.join(home, "d", "f.bin"), payload(60 * KIB));
        await symlink("d", path.join(home, "ln"));
        const raw = await rawLogin(t, "carol");
        try {
          await raw.expect("TYPE I", 200);
          assert.equal(await rawStore(raw, "STOR", "x.bin", payload(60 * KIB)), 552);
          // rename(2) of a name onto itself does nothing: no file left the home.
          await raw.expect("RNFR d/f.bin", 350);
          await raw.expect("RNTO ln/f.bin", 250);
          assert.equal((await stat(path.join(home, "d", "f.bin"))).size, 60 * KIB);
          assert.equal(await rawStore(raw, "STOR", "x.bin", payload(60 * KIB)), 552);
        } finally {
          await raw.close();
        }
        await portsFree(t);
      },
      { users: [CAROL] },
    );
  });

  it("changes made outside FTP are picked up by the recount at login", async () => {
    await withServer(
      async (t) => {
        const first = await ftpLogin(t, "carol");
        try {
          await upload(first, "x", "x.txt");
        } finally {
          first.close();
        }
        await writeFile(path.join(t.home("carol"), "outside.bin"), payload(100 * KIB));
        const second = await ftpLogin(t, "carol"); // rescanAfter 0: every login recounts
        try {
          await expect552(upload(second, "y", "y.txt"));
        } finally {
          second.close();
        }
      },
      { config: { quota: { bytes: 0, files: 0, rescanAfter: 0 } }, users: [CAROL] },
    );
  });

  it("a recount at login counts a file and a directory whose names are not UTF-8 (made outside FTP), and all that directory holds", async () => {
    await withServer(
      async (t) => {
        // Names as bytes: 0xff, 0xfe and 0xfd are never part of UTF-8.
        const at = (...names: Buffer[]): Buffer => Buffer.concat([Buffer.from(t.home("carol")), ...names.flatMap((n) => [Buffer.from("/"), n])]);
        const [file, dir, bad, sub] = [Buffer.from("\xff.bin", "latin1"), Buffer.from("d\xfe", "latin1"), Buffer.from("\xfd", "latin1"), Buffer.from("s")];
        await writeFile(at(file), payload(30 * KIB));
        await mkdir(at(dir, sub), { recursive: true });
        await mkdir(at(dir, bad, sub), { recursive: true });
        await writeFile(at(dir, Buffer.from("in.bin")), payload(40 * KIB));
        await writeFile(at(dir, sub, Buffer.from("deeper.bin")), payload(20 * KIB));
        await writeFile(at(dir, bad, sub, Buffer.from("c.bin")), payload(KIB));
        assert.deepEqual(await scanUsage(t.home("carol")), { bytes: 91 * KIB, files: 4 });
        const raw = await rawLogin(t, "carol"); // rescanAfter 0: every login recounts
        try {
          await raw.expect("TYPE I", 200);
          assert.equal(await rawStore(raw, "STOR", "x.bin", payload(20 * KIB)), 552, "91 KiB held, 20 more do not fit in 100");
        } finally {
          await raw.close();
        }
      },
      { config: { quota: { bytes: 0, files: 0, rescanAfter: 0 } }, users: [CAROL] },
    );
  });

  it("a directory the client made unreadable or unsearchable (SITE CHMOD 000, 600) keeps what it holds in the count at a recount", async () => {
    await withServer(
      async (t) => {
        mkdirSync(path.join(t.home("carol"), "d"), { recursive: true });
        // As root every directory is readable: the server is run as another account meanwhile,
        // which owns the files, as a server that is not root does.
        const asRoot = process.geteuid?.() === 0;
        if (asRoot) execFileSync("chown", ["-R", `${NOBODY}:${NOBODY}`, t.root]);
        if (asRoot) execFileSync("chmod", ["0755", t.root]);
        if (asRoot) process.setegid?.(NOBODY);
        if (asRoot) process.seteuid?.(NOBODY);
        try {
          let c = await rawLogin(t, "carol");
          await c.expect("TYPE I", 200);
          assert.equal(await rawStore(c, "STOR", "d/a.bin", payload(90 * KIB)), 226);
          for (const mode of ["000", "600"]) {
            await c.expect(`SITE CHMOD ${mode} d`, 200);
            await c.close();
            c = await rawLogin(t, "carol"); // rescanAfter 0: every login recounts
            await c.expect("TYPE I", 200);
            assert.equal(await rawStore(c, "STOR", "b.bin", payload(90 * KIB)), 552, `with d ${mode}`);
            await c.expect("SITE CHMOD 755 d", 200);
          }
          await c.close();
        } finally {
          if (asRoot) process.seteuid?.(0);
          if (asRoot) process.setegid?.(0);
        }
      },
      { config: { quota: { bytes: 0, files: 0, rescanAfter: 0 } }, users: [CAROL] },
    );
  });

  it("a recount at login counts the files of a directory renamed deeper than a path can name", async () => {
    await withServer(
      async (t) => {
        const name = "n".repeat(250);
        const chain = Array.from({ length: 15 }, () => name).join("/"); // 3,765 bytes
        let raw = await rawLogin(t, "carol");
        try {
          await raw.expect("TYPE I", 200);
          for (const top of ["/A", "/B"]) {
            await raw.expect(`MKD ${top}`, 257);
            for (let i = 1; i <= 15; i++) await raw.expect(`MKD ${top}/${chain.slice(0, i * 251 - 1)}`, 257);
          }
          assert.equal(await rawStore(raw, "STOR", `/B/${chain}/f.bin`, payload(60 * KIB)), 226);
          // f.bin is now some 7,600 bytes below the home: no path reaches it, only its directories.
          await raw.expect("RNFR /B", 350);
          await raw.expect(`RNTO /A/${chain}/B`, 250);
        } finally {
          await raw.close();
        }
        raw = await rawLogin(t, "carol"); // rescanAfter 0: every login recounts
        let stored: number;
        try {
          await raw.expect("TYPE I", 200);
          stored = await rawStore(raw, "STOR", "x.bin", payload(60 * KIB));
          // Back up where the test's clean-up can remove it.
          await raw.expect(`RNFR /A/${chain}/B`, 350);
          await raw.expect("RNTO /B", 250);
        } finally {
          await raw.close();
        }
        assert.equal(stored, 552, "60 KiB stored, 60 more do not fit in 100");
      },
      { config: { quota: { bytes: 0, files: 0, rescanAfter: 0 } }, users: [CAROL] },
    );
  });
});

describe("quota recount at login", () => {
  it("is timed on a steady clock: the wall clock set back does not put it off for as long", async () => {
    const home = mkdtempSync(path.join(tmpdir(), "berth-quota-clock-"));
    const realNow = Date.now;
    try {
      writeFileSync(path.join(home, "a"), "x".repeat(10));
      const usage = new HomeUsage(home, new Limiter(4));
      assert.equal((await usage.ready()).bytes, 10);
      writeFileSync(path.join(home, "b"), "x".repeat(90));
      // NTP, or a virtual machine restored, sets the clock back an hour; a login with rescanAfter 0.
      Date.now = () => realNow() - 3_600_000;
      usage.refreshIfOlder(0);
      Date.now = realNow;
      assert.equal((await usage.ready()).bytes, 100);
    } finally {
      Date.now = realNow;
      rmSync(home, { recursive: true, force: true });
    }
  });
});

describe("berth user list", () => {
  const dirs: string[] = [];
  after(() => {
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it("shows what each home holds next to the quota, and - for a missing home", async () => {
    const cwd = mkdtempSync(path.join(tmpdir(), "berth-quota-cli-"));
    dirs.push(cwd);
    const run = (args: string[], input = ""): Promise<{ code: number | null; stdout: string; stderr: string }> =>
      new Promise((resolve, reject) => {
        const main = fileURLToPath(new URL("../src/cli/main.ts", import.meta.url));
        const env = { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", BERTH_USERS_BCRYPT_COST: "4" };
        const child = spawn(process.execPath, ["--import", import.meta.resolve("tsx"), main, ...args], { cwd, env, timeout: 60_000 });
        let stdout = "";
        let stderr = "";
        child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
        child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
        child.on("error", reject);
        child.on("close", (code) => resolve({ code, stdout, stderr }));
        child.stdin.end(input);
      });
    assert.equal((await run(["user", "add", "erin", "--password-stdin"], "erin-pw\n")).code, 0);
    assert.equal((await run(["user", "add", "gone", "--password-stdin"], "gone-pw\n")).code, 0);
    assert.equal((await run(["user", "set", "erin", "--quota-bytes", "1M", "--quota-files", "10"])).code, 0);
    const home = path.join(cwd, "data", "erin");
    mkdirSync(path.join(home, "deep", "er"), { recursive: true });
    writeFileSync(path.join(home, "a.bin"), Buffer.alloc(1024));
    writeFileSync(path.join(home, "deep", "er", "b.bin"), Buffer.alloc(512));
    rmSync(path.join(cwd, "data", "gone"), { recursive: true });
    const list = await run(["user", "list"]);
    assert.equal(list.code, 0, list.stderr);
    const rows = list.stdout.trim().split("\n");
    assert.match(rows[0] ?? "", /^NAME\s+HOME\s+READ-ONLY\s+PERMS\s+USED\s+LIMITS$/);
    assert.match(rows[1] ?? "", /^erin\s+\S+\s+no\s+all\s+1\.5 KiB, 2 files\s+quota 1 MiB\/10 files$/);
    assert.match(rows[2] ?? "", /^gone\s+\S+\s+no\s+all\s+-\s+-$/);
  });
});

describe("quota and bandwidth config", () => {
  it("takes sizes like 10M from the file and BERTH_QUOTA_* / BERTH_BANDWIDTH_* variables", () => {
    const cwd = mkdtempSync(path.join(tmpdir(), "berth-quota-config-"));
    try {
      mkdirSync(path.join(cwd, "config"));
      writeFileSync(path.join(cwd, "config", "berth.yaml"), "quota:\n  bytes: 1.5G\nbandwidth:\n  globalDown: 512K\n");
      const env = { BERTH_QUOTA_FILES: "100", BERTH_QUOTA_RESCAN_AFTER: "0", BERTH_BANDWIDTH_USER_UP: "10M", BERTH_BANDWIDTH_TRANSFER_DOWN: "65536" };
      const c = loadConfig({ cwd, env });
      assert.deepEqual(c.quota, { bytes: 1.5 * 1024 ** 3, files: 100, rescanAfter: 0 });
      assert.equal(c.bandwidth.globalDown, 512 * KIB);
      assert.equal(c.bandwidth.userUp, 10 * KIB * KIB);
      assert.equal(c.bandwidth.transferDown, 65536);
      assert.throws(() => loadConfig({ cwd, env: { BERTH_BANDWIDTH_ADDRESS_UP: "fast" } }), (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        assert.equal(err.key, "bandwidth.addressUp");
        assert.match(err.message, /bandwidth\.addressUp must be a size >= 0 like 0, 4096, "512K" or "10M" \(got "fast"\) \[from BERTH_BANDWIDTH_ADDRESS_UP\]/);
        return true;
      });
      assert.throws(() => loadConfig({ cwd, env: { BERTH_QUOTA_FILES: "-1" } }), /quota\.files must be an integer >= 0/);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  });
});

describe("quota count with other sessions at work on the same file", () => {
  /** Starts an upload through the raw client: PASV, the command, its 150; returns the data socket. */
  it("an upload renamed by another session while it runs is counted under its new name", async () => {
    await withTwoSessions(async ({ t, home, a, b }) => {
      const sock = await startUpload(a, "STOR", "up.bin", payload(30 * KIB, 1));
      await sizeReached(path.join(home, "up.bin"), 30 * KIB);
      await b.expect("RNFR up.bin", 350);
      await b.expect("RNTO moved.bin", 250);
      // Its bytes are not at the name it was given: not 226 (see upload-inplace-lost.test.ts).
      assert.equal(await endUpload(a, sock, payload(30 * KIB, 2)), 451);
      assert.equal((await stat(path.join(home, "moved.bin"))).size, 60 * KIB);
      // 60 KiB are stored: 50 more would make 110 of 100 KiB.
      assert.equal(await rawStore(a, "STOR", "more.bin", payload(50 * KIB)), 552);
      assert.equal(await rawStore(a, "STOR", "fits.bin", payload(40 * KIB)), 226);
      await portsFree(t);
    });
  });

  it("a file deleted by another session while uploaded leaves the count of the other files as it was", async () => {
    await withTwoSessions(async ({ t, home, a, b }) => {
      assert.equal(await rawStore(a, "STOR", "keep.bin", payload(40 * KIB)), 226);
      const sock = await startUpload(a, "STOR", "gone.bin", payload(30 * KIB, 1));
      await sizeReached(path.join(home, "gone.bin"), 30 * KIB);
      await b.expect("DELE gone.bin", 250);
      assert.equal(await endUpload(a, sock, payload(10 * KIB, 2)), 451);
      await assert.rejects(stat(path.join(home, "gone.bin")), { code: "ENOENT" });
      // keep.bin's 40 KiB are still stored: 70 more would make 110 of 100 KiB; 60 fit.
      assert.equal(await rawStore(a, "STOR", "big.bin", payload(70 * KIB)), 552);
      assert.equal(await rawStore(a, "STOR", "big.bin", payload(60 * KIB)), 226);
      await portsFree(t);
    });
  });

  it("two sessions storing one new name at once count the one file that stays, whichever ends first", async () => {
    await withTwoSessions(async ({ t, home, a, b }) => {
      for (const firstEnds of ["new", "replacing"]) {
        // a creates the file and writes it in place; b, coming second, replaces it through a temp file.
        const sa = await startUpload(a, "STOR", "same.bin", payload(10 * KIB, 1));
        await sizeReached(path.join(home, "same.bin"), 10 * KIB);
        const sb = await startUpload(b, "STOR", "same.bin", payload(20 * KIB, 2));
        await sizeReached(home, 20 * KIB);
        if (firstEnds === "new") {
          assert.equal(await endUpload(a, sa, payload(5 * KIB, 3)), 226);
          assert.equal(await endUpload(b, sb, Buffer.alloc(0)), 226);
        } else {
          assert.equal(await endUpload(b, sb, Buffer.alloc(0)), 226);
          // a's file lost its name to b's: a is not told its bytes are stored.
          assert.equal(await endUpload(a, sa, payload(5 * KIB, 3)), 451);
        }
        assert.deepEqual(await readFile(path.join(home, "same.bin")), payload(20 * KIB, 2));
        assert.deepEqual(await tempFiles(home), []);
        // 20 KiB stored: 80 more fill the quota exactly, one byte more does not fit.
        assert.equal(await rawStore(a, "STOR", "fill.bin", payload(80 * KIB + 1)), 552, firstEnds);
        assert.equal(await rawStore(a, "STOR", "fill.bin", payload(80 * KIB)), 226, firstEnds);
        await a.expect("DELE fill.bin", 250);
        await a.expect("DELE same.bin", 250);
      }
      await portsFree(t);
    });
  });

  for (const disk of ["fast", "slow"]) {
    // A slow disk turns the synchronous file calls off (fs/quick.ts): uploads then go through
    // FileHandles, which their streams close with themselves before the upload has ended.
    const slow = disk === "slow";
    it(`an upload stopped by the quota leaves alone the file another session stored under its name meanwhile (${disk} disk)`, async () => {
      await withServer(
        async (t) => {
          const home = t.home("carol");
          const [a, b] = await twoSessions(t);
          try {
            if (slow) backOff(60_000);
            // A new file written in place, replaced whole by b, then a crosses the quota: its
            // rollback removes what it wrote, not b's file.
            let sa = await startUpload(a, "STOR", "new.bin", payload(50 * KIB, 1));
            await sizeReached(path.join(home, "new.bin"), 50 * KIB);
            assert.equal(await rawStore(b, "STOR", "new.bin", payload(10 * KIB, 2)), 226);
            assert.equal(await endUpload(a, sa, payload(60 * KIB, 3)), 552);
            assert.deepEqual(await readFile(path.join(home, "new.bin")), payload(10 * KIB, 2));
            // An APPE cut back to where it started: not b's file, put in its place meanwhile.
            sa = await startUpload(a, "APPE", "new.bin", payload(50 * KIB, 4));
            await sizeReached(path.join(home, "new.bin"), 60 * KIB);
            assert.equal(await rawStore(b, "STOR", "new.bin", payload(5 * KIB, 5)), 226);
            assert.equal(await endUpload(a, sa, payload(60 * KIB, 6)), 552);
            assert.deepEqual(await readFile(path.join(home, "new.bin")), payload(5 * KIB, 5));
            assert.deepEqual(await tempFiles(home), []);
            // The count holds b's 5 KiB only.
            assert.equal(await rawStore(a, "STOR", "fill.bin", payload(95 * KIB + 1)), 552);
            assert.equal(await rawStore(a, "STOR", "fill.bin", payload(95 * KIB)), 226);
            await portsFree(t);
          } finally {
            backOff(0);
            await a.close();
            await b.close();
          }
        },
        { users: [CAROL] },
      );
    });

    it(`an upload the client cuts off keeps its partial data, and the count holds it (${disk} disk)`, async () => {
      await withServer(
        async (t) => {
          const home = t.home("carol");
          const [a, b] = await twoSessions(t);
          await b.close();
          try {
            if (slow) backOff(60_000);
            const sa = await startUpload(a, "STOR", "part.bin", payload(60 * KIB, 1));
            await sizeReached(path.join(home, "part.bin"), 60 * KIB);
            sa.resetAndDestroy();
            assert.equal((await a.reply()).code, 426);
            assert.equal((await stat(path.join(home, "part.bin"))).size, 60 * KIB);
            // 60 KiB are stored: 50 more would make 110 of 100 KiB; 40 fit.
            assert.equal(await rawStore(a, "STOR", "more.bin", payload(50 * KIB)), 552);
            assert.equal(await rawStore(a, "STOR", "more.bin", payload(40 * KIB)), 226);
            await portsFree(t);
          } finally {
            backOff(0);
            await a.close();
          }
        },
        { users: [CAROL] },
      );
    });
  }

  it("two sessions appending to one file at once count the bytes both added", async () => {
    await withTwoSessions(async ({ t, home, a, b }) => {
      const sa = await startUpload(a, "APPE", "log.bin", payload(10 * KIB, 1));
      await sizeReached(path.join(home, "log.bin"), 10 * KIB);
      const sb = await startUpload(b, "APPE", "log.bin", payload(10 * KIB, 2));
      await sizeReached(path.join(home, "log.bin"), 20 * KIB);
      assert.equal(await endUpload(a, sa, Buffer.alloc(0)), 226);
      assert.equal(await endUpload(b, sb, payload(10 * KIB, 3)), 226);
      assert.equal((await stat(path.join(home, "log.bin"))).size, 30 * KIB);
      assert.equal(await rawStore(a, "STOR", "fill.bin", payload(70 * KIB + 1)), 552);
      assert.equal(await rawStore(a, "STOR", "fill.bin", payload(70 * KIB)), 226);
      await portsFree(t);
    });
  });

  it("an APPE stopped by the quota while another session appends to the same file keeps that session's bytes", async () => {
    await withServer(
      async (t) => {
        const home = t.home("carol");
        const file = path.join(home, "log.bin");
        const [a, b] = await twoSessions(t);
        try {
          for (const made of [true, false]) {
            // The file is made by the APPE that is stopped, or was there before both.
            if (!made) assert.equal(await rawStore(a, "STOR", "log.bin", payload(5 * KIB)), 226);
            const start = made ? 0 : 5 * KIB;
            const sa = await startUpload(a, "APPE", "log.bin", payload(10 * KIB, 1));
            await sizeReached(file, start + 10 * KIB);
            const sb = await startUpload(b, "APPE", "log.bin", payload(10 * KIB, 2));
            await sizeReached(file, start + 20 * KIB);
            // a crosses the quota: 552, and what it wrote stays, since cutting the file back to
            // where a began would cut away what b appended meanwhile.
            const closed = new Promise<void>((resolve) => sa.once("close", () => resolve()));
            sa.end(payload(90 * KIB, 3));
            sa.resume();
            const stopped = await a.reply(10_000);
            await closed;
            assert.equal(stopped.code, 552);
            assert.doesNotMatch(stopped.message, /upload removed/);
            assert.equal(await endUpload(b, sb, payload(5 * KIB, 4)), 226);
            // b's 15 KiB are all there, with a's first 10 KiB and what was there before.
            const size = (await stat(file)).size;
            assert.ok(size >= start + 35 * KIB, `log.bin holds ${size} bytes`);
            await b.expect("DELE log.bin", 250);
          }
          // The count follows the disk: the home is empty again.
          assert.equal(await rawStore(a, "STOR", "fill.bin", payload(100 * KIB)), 226);
          await portsFree(t);
        } finally {
          await a.close();
          await b.close();
        }
      },
      { users: [CAROL] },
    );
  });

  it("a file deleted by another session while an upload replaces it frees nothing for that upload: it is stopped at the quota", async () => {
    await withTwoSessions(async ({ t, home, a, b }) => {
      assert.equal(await rawStore(a, "STOR", "old.bin", payload(80 * KIB)), 226);
      const sock = await startUpload(a, "STOR", "old.bin", payload(10 * KIB, 1));
      await sizeReached(home, 10 * KIB);
      await b.expect("DELE old.bin", 250);
      // The 80 KiB it was to replace are gone already: 150 KiB would be 150 of 100 KiB.
      assert.equal(await endUpload(a, sock, payload(140 * KIB, 2)), 552);
      await assert.rejects(stat(path.join(home, "old.bin")), { code: "ENOENT" });
      assert.deepEqual(await tempFiles(home), []);
      assert.equal(await rawStore(a, "STOR", "fill.bin", payload(100 * KIB)), 226);
      await portsFree(t);
    });
  });

  it("a file renamed away by another session while an upload replaces it frees nothing for that upload: it is stopped at the quota", async () => {
    await withTwoSessions(async ({ t, home, a, b }) => {
      assert.equal(await rawStore(a, "STOR", "old.bin", payload(80 * KIB)), 226);
      const sock = await startUpload(a, "STOR", "old.bin", payload(10 * KIB, 1));
      await sizeReached(home, 10 * KIB);
      await b.expect("RNFR old.bin", 350);
      await b.expect("RNTO kept.bin", 250);
      // kept.bin still holds its 80 KiB: 50 more would be 130 of 100 KiB.
      assert.equal(await endUpload(a, sock, payload(40 * KIB, 2)), 552);
      assert.equal((await stat(path.join(home, "kept.bin"))).size, 80 * KIB);
      await assert.rejects(stat(path.join(home, "old.bin")), { code: "ENOENT" });
      assert.deepEqual(await tempFiles(home), []);
      assert.equal(await rawStore(a, "STOR", "fill.bin", payload(20 * KIB + 1)), 552);
      assert.equal(await rawStore(a, "STOR", "fill.bin", payload(20 * KIB)), 226);
      await portsFree(t);
    });
  });
});
