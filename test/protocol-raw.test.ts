/**
 * The control connection byte by byte, with a raw socket: reply formats (RFC 959 §4.2, RFC 2389),
 * command sequencing (RNFR/RNTO, REST), login guards, malformed and odd input, pipelining.
 */
import assert from "node:assert/strict";
import { chmod, mkdir, readdir, readFile, stat, symlink, unlink, utimes, writeFile } from "node:fs/promises";
import { once } from "node:events";
import { connect } from "node:net";
import { join } from "node:path";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { listedText, RawClient, readAll, retrieveText } from "./helpers/raw.ts";
import { rawLogin, withServer } from "./helpers/run.ts";

describe("sequencing", () => {
  it("RNTO without RNFR is 503; RNFR then another command (an overlong line too) then RNTO is 503", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "a.txt"), "a");
      const raw = await rawLogin(t);
      try {
        await raw.expect("RNTO b.txt", 503);
        await raw.expect("RNFR a.txt", 350);
        await raw.expect("NOOP", 200);
        await raw.expect("RNTO b.txt", 503);
        await raw.expect("RNFR a.txt", 350);
        await raw.expect("XYZZ", 502);
        await raw.expect("RNTO b.txt", 503);
        await raw.expect("RNFR a.txt", 350);
        await raw.expect("SIZE", 501);
        await raw.expect("RNTO b.txt", 503);
        // A line too long to be read is a command too, refused with 500.
        await raw.expect("RNFR a.txt", 350);
        await raw.expect(`NOOP ${"x".repeat(t.config.limits.maxLineLength)}`, 500);
        await raw.expect("RNTO b.txt", 503);
        await raw.expect("RNFR missing.txt", 550);
        await raw.expect("RNTO b.txt", 503);
        await raw.expect("RNFR a.txt", 350);
        await raw.expect("RNTO b.txt", 250);
        await raw.expect("RNTO c.txt", 503);
        assert.equal(await readFile(join(t.home("alice"), "b.txt"), "utf8"), "a");
      } finally {
        await raw.close();
      }
    });
  });

  it("the home cannot be renamed, nor a directory moved below itself; each refusal says why", async () => {
    await withServer(async (t) => {
      await mkdir(join(t.home("alice"), "d", "sub"), { recursive: true });
      const raw = await rawLogin(t);
      try {
        for (const home of ["/", ".", "..", "/d/.."]) {
          assert.equal((await raw.expect(`RNFR ${home}`, 550)).message, "Can't rename the home directory");
        }
        await raw.expect("RNFR d", 350);
        assert.equal((await raw.expect("RNTO d/sub/d", 550)).message, "Can't move a name below itself");
        await raw.expect("RNFR /d", 350);
        assert.equal((await raw.expect("RNTO /d/x", 550)).message, "Can't move a name below itself");
        // Below itself by way of a link to it, or to a directory below it: the kernel's EINVAL.
        await symlink("d", join(t.home("alice"), "dl"));
        await symlink("d/sub", join(t.home("alice"), "sl"));
        for (const to of ["dl/x", "dl/sub/x", "sl/x"]) {
          await raw.expect("RNFR d", 350);
          assert.equal((await raw.expect(`RNTO ${to}`, 550)).message, "Can't move a name below itself", to);
        }
        await unlink(join(t.home("alice"), "dl"));
        await unlink(join(t.home("alice"), "sl"));
        // A sibling whose name starts with the same letters is not below it.
        await raw.expect("RNFR d", 350);
        await raw.expect("RNTO d2", 250);
        await raw.expect("RNFR d2/sub", 350);
        await raw.expect("RNTO d2/sub2", 250);
        await raw.expect("CWD d2/sub2", 250);
      } finally {
        await raw.close();
      }
    });
  });

  it("a name ending in / is a directory's: a file is neither renamed from nor onto one, and a directory is", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await writeFile(join(home, "f.txt"), "f");
      await writeFile(join(home, "g.txt"), "g");
      await mkdir(join(home, "d"));
      const raw = await rawLogin(t);
      try {
        // rename(2) says ENOTDIR for each: g.txt/ is no file g.txt to replace.
        for (const to of ["g.txt/", "g.txt\\", "new/", "f.txt/"]) {
          await raw.expect("RNFR f.txt", 350);
          assert.match((await raw.expect(`RNTO ${to}`, 550)).message, /Not a directory/, to);
        }
        assert.match((await raw.expect("RNFR f.txt/", 550)).message, /Not a directory/);
        await raw.expect("RNTO h.txt", 503);
        await raw.expect("RNFR d/", 350);
        await raw.expect("RNTO e/", 250);
        await raw.expect("RNFR e", 350);
        await raw.expect("RNTO d/", 250);
      } finally {
        await raw.close();
      }
      assert.equal(await readFile(join(home, "f.txt"), "utf8"), "f");
      assert.equal(await readFile(join(home, "g.txt"), "utf8"), "g");
      assert.deepEqual((await readdir(home)).sort(), ["d", "f.txt", "g.txt"]);
    });
  });

  it("DELE of a name ending in / removes nothing: such a name is a directory's, not the file's", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await writeFile(join(home, "g.txt"), "g");
      await mkdir(join(home, "d"));
      const raw = await rawLogin(t);
      try {
        for (const name of ["g.txt/", "g.txt\\", "/g.txt/", "d/"]) await raw.expect(`DELE ${name}`, 550);
        await raw.expect("DELE g.txt", 250);
      } finally {
        await raw.close();
      }
      assert.deepEqual(await readdir(home), ["d"]);
    });
  });

  it("SIZE, MDTM, MFMT, SITE CHMOD and SITE UTIME of a name ending in / act on a directory only, never on the file", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await writeFile(join(home, "g.txt"), "g");
      await utimes(join(home, "g.txt"), new Date("2020-01-01T00:00:00Z"), new Date("2020-01-01T00:00:00Z"));
      await mkdir(join(home, "d"));
      const before = await stat(join(home, "g.txt"));
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        for (const line of ["SIZE g.txt/", "MDTM g.txt/", "MFMT 20240101000000 g.txt/", "MDTM 20240101000000 g.txt/", "SITE CHMOD 600 g.txt/", "SITE UTIME 202401010000 g.txt/", "SITE UTIME g.txt/ 20240101000000 20240101000000 20240101000000 UTC", "MFMT 20240101000000 g.txt\\"]) {
          assert.match((await raw.expect(line, 550)).message, /Not a directory/, line);
        }
        assert.equal((await raw.expect("MDTM missing/", 550)).message, "No such file or directory");
        await raw.expect("MDTM d/", 213);
        await raw.expect("MFMT 20240101000000 d/", 213);
        await raw.expect("SITE CHMOD 755 d/", 200);
      } finally {
        await raw.close();
      }
      const after = await stat(join(home, "g.txt"));
      assert.equal(after.mtimeMs, before.mtimeMs);
      assert.equal(after.mode, before.mode);
    });
  });

  it("REST is consumed by the next transfer, even a failed one", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "f.txt"), "0123456789");
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        await raw.expect("REST 4", 350);
        assert.equal(await retrieveText(raw, "f.txt"), "456789");
        assert.equal(await retrieveText(raw, "f.txt"), "0123456789");
        await raw.expect("REST 3", 350);
        await raw.expect("RETR missing.txt", 550);
        assert.equal(await retrieveText(raw, "f.txt"), "0123456789");
      } finally {
        await raw.close();
      }
    });
  });

  it("REST beyond the end of the file is 554; REST without a number is 501", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "f.txt"), "0123");
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        await raw.expect("REST abc", 501);
        await raw.expect("REST -1", 501);
        await raw.expect("REST 99", 350);
        const data = await raw.pasv();
        await raw.expect("RETR f.txt", 554);
        data.destroy();
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
    });
  });

  it("REST takes an offset written with leading zeros, and any offset up to 2^53 - 1; one past that is 501", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "f.txt"), "0123456789");
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        assert.match((await raw.expect("REST 0000000000000000005", 350)).message, /Restarting at 5\b/);
        assert.equal(await retrieveText(raw, "f.txt"), "56789");
        assert.match((await raw.expect(`REST ${Number.MAX_SAFE_INTEGER}`, 350)).message, new RegExp(`Restarting at ${Number.MAX_SAFE_INTEGER}\\b`));
        await raw.expect("REST 0", 350);
        for (const offset of ["9007199254740992", "9007199254740993", "00000009007199254740993", "1".repeat(400)]) await raw.expect(`REST ${offset}`, 501);
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
    });
  });

  it("commands that need a login are 530 before it; PASS without USER is 503", async () => {
    await withServer(async (t) => {
      const raw = await RawClient.connect(t.port);
      try {
        for (const line of ["PWD", "CWD /", "LIST", "RETR x", "STOR x", "PASV", "EPSV", "MKD d", "DELE x", "SIZE x", "TYPE I", "REST 1"]) {
          await raw.expect(line, 530);
        }
        await raw.expect("PASS x", 503);
        await raw.expect("NOOP", 200);
        await raw.expect("SYST", 215);
        await raw.login();
        await raw.expect("PWD", 257);
        await raw.expect("USER bob", 530);
      } finally {
        await raw.close();
      }
    });
  });

  it("unknown verbs are 502, garbage is 500, an empty line is 500", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        await raw.expect("XYZZ", 502);
        await raw.expect("FOO bar", 502);
        await raw.expect("THISISNOTAVERB", 500);
        await raw.expect("", 500);
        await raw.expect("   ", 500);
        // A line that starts with a space has no verb, but it is not empty: the reply says so.
        for (const line of [" NOOP", "  PWD"]) {
          assert.equal((await raw.expect(line, 500)).message, "Syntax error, command unrecognized", line);
        }
        await raw.expect("noop", 200);
      } finally {
        await raw.close();
      }
    });
  });

  it("QUIT says 221 and closes; nothing pipelined after it runs", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      raw.sendRaw("QUIT\r\nMKD after-quit\r\n");
      await raw.expectReply(221);
      await raw.closed();
      await assert.rejects(readFile(join(t.home("alice"), "after-quit")), { code: "ENOENT" });
    });
  });

  it("a client that sends its commands and then closes its sending side (TCP half-close, as nc -N and ncat do) gets every reply, and the connection closes after the last", async () => {
    await withServer(async (t) => {
      // Written at once and ended: the FIN arrives while the password is still being checked.
      const script = async (lines: string): Promise<string[]> => {
        const socket = connect({ port: t.port, host: "127.0.0.1", allowHalfOpen: true });
        await once(socket, "connect");
        const parts: Buffer[] = [];
        socket.on("data", (b: Buffer) => parts.push(b));
        const closed = once(socket, "close");
        socket.end(lines);
        const outcome = await Promise.race([closed.then(() => "closed"), sleep(4000).then(() => "still open")]);
        socket.destroy();
        assert.equal(outcome, "closed");
        return Buffer.concat(parts).toString().split("\r\n").filter((l) => l !== "");
      };
      const withQuit = await script("USER alice\r\nPASS alice-pw\r\nPWD\r\nMKD made\r\nQUIT\r\n");
      assert.deepEqual(
        withQuit.map((l) => l.slice(0, 3)),
        ["220", "331", "230", "257", "257", "221"],
        withQuit.join("\n"),
      );
      assert.ok((await stat(join(t.home("alice"), "made"))).isDirectory());
      // Without QUIT: the commands are answered, then the server closes its side too.
      const withoutQuit = await script("USER alice\r\nPASS alice-pw\r\nRMD made\r\n");
      assert.deepEqual(
        withoutQuit.map((l) => l.slice(0, 3)),
        ["220", "331", "230", "250"],
        withoutQuit.join("\n"),
      );
      await assert.rejects(stat(join(t.home("alice"), "made")), { code: "ENOENT" });
    });
  });
});

describe("an upload's directory renamed by another session while it runs", () => {
  it("STOR over an existing file: the directory is held, so the upload replaces the file where the directory went (226), no temp file left", async () => {
    await withServer(async (t) => {
      await mkdir(join(t.home("alice"), "x"));
      await writeFile(join(t.home("alice"), "x", "f.txt"), "OLD");
      const up = await rawLogin(t);
      const other = await rawLogin(t);
      try {
        await up.expect("TYPE I", 200);
        const data = await up.epsv();
        await up.expect("STOR /x/f.txt", 150);
        data.write(Buffer.alloc(50_000, 0x61));
        await other.expect("RNFR /x", 350);
        await other.expect("RNTO /y", 250);
        data.end(Buffer.alloc(1000, 0x62));
        await up.expectReply(226);
        const got = await readFile(join(t.home("alice"), "y", "f.txt"));
        assert.equal(got.length, 51_000);
        assert.ok(got.subarray(0, 50_000).every((b) => b === 0x61) && got.subarray(50_000).every((b) => b === 0x62));
        assert.deepEqual(await readdir(join(t.home("alice"), "y")), ["f.txt"]);
        await assert.rejects(readdir(join(t.home("alice"), "x")), { code: "ENOENT" });
        await other.expect("RMD /y/f.txt", 550);
        await other.expect("DELE /y/f.txt", 250);
        await other.expect("RMD /y", 250);
      } finally {
        await up.close();
        await other.close();
      }
    });
  });
});

describe("RMD of a directory a replacing upload is writing in", () => {
  it("with the replaced file deleted meanwhile, the directory lists empty but is not removed under the upload, which lands (226)", async () => {
    await withServer(async (t) => {
      const dir = join(t.home("alice"), "x");
      await mkdir(dir);
      await writeFile(join(dir, "f.txt"), "OLD");
      const up = await rawLogin(t);
      const other = await rawLogin(t);
      try {
        await up.expect("TYPE I", 200);
        const data = await up.epsv();
        await up.expect("STOR /x/f.txt", 150);
        data.write(Buffer.alloc(50_000, 0x61));
        for (let i = 0; i < 100 && (await readdir(dir)).length < 2; i++) await new Promise((r) => setTimeout(r, 20));
        await other.expect("DELE /x/f.txt", 250);
        assert.equal((await readdir(dir)).length, 1, "the upload's temp file");
        await other.expect("RMD /x", 550);
        data.end();
        await up.expectReply(226);
        assert.deepEqual(await readdir(dir), ["f.txt"]);
        assert.equal((await readFile(join(dir, "f.txt"))).length, 50_000);
      } finally {
        await up.close();
        await other.close();
      }
    });
  });
});

describe("PORT, EPRT and EPSV arguments", () => {
  it("malformed PORT and EPRT are 501, an unknown EPRT family is 522", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        for (const arg of ["1,2,3", "127,0,0,1,300,1", "a,b,c,d,e,f", "127,0,0,1,4,", "127.0.0.1,4,1", "256,0,0,1,4,1"]) {
          await raw.expect(`PORT ${arg}`, 501);
        }
        for (const arg of ["|1|127.0.0.1|", "|1|not-an-ip|5000|", "|1|127.0.0.1|0|", "|1|127.0.0.1|70000|", "1|127.0.0.1|5000|", "|2|127.0.0.1|5000|", "||||", "||127.0.0.1|5000|", "|x|127.0.0.1|5000|", "|1a|127.0.0.1|5000|"]) {
          await raw.expect(`EPRT ${arg}`, 501);
        }
        await raw.expect("EPRT |3|127.0.0.1|5000|", 522);
        // RFC 2428 §3: a protocol other than the connection's is 522 (naming it), whatever its number.
        assert.equal((await raw.expect("EPSV 3", 522)).message, "Network protocol not supported, use (1)");
        await raw.expect("EPSV 2", 522);
        await raw.expect("EPSV x", 501);
        await raw.expect("EPSV -1", 501);
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
    });
  });

  it("numbers written with leading zeros mean those numbers, the EPRT family as PORT's and EPSV's", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        await raw.expect("PORT 127,000,0,001,004,000", 200);
        await raw.expect("EPRT |01|127.0.0.1|01024|", 200);
        // Family 2 on an IPv4 connection: not supported, whatever its spelling (RFC 2428 §2).
        assert.equal((await raw.expect("EPRT |002|::1|5000|", 522)).message, "Network protocol not supported, use (1)");
        await raw.expect("EPSV 01", 229);
      } finally {
        await raw.close();
      }
    });
  });

  it("PORT/EPRT to a foreign IP is 500 and to a port below 1024 is 504", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        await raw.expect("PORT 10,0,0,1,39,16", 500);
        await raw.expect("EPRT |1|192.0.2.7|5000|", 500);
        await raw.expect("PORT 127,0,0,1,0,21", 504);
        await raw.expect("EPRT |1|127.0.0.1|1023|", 504);
        await raw.expect("PORT 127,0,0,1,4,0", 200);
        await raw.expect("LIST", 425);
      } finally {
        await raw.close();
      }
    });
  });

  it("after EPSV ALL, PASV, PORT and EPRT are refused and EPSV works", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        await raw.expect("EPSV ALL", 200);
        for (const line of ["PASV", "PORT 127,0,0,1,39,16", "EPRT |1|127.0.0.1|10000|"]) {
          const r = await raw.cmd(line);
          assert.ok(r.code >= 500, `${line} → ${r.lines.join("|")}`);
        }
        const data = await raw.epsv();
        raw.send("NLST");
        await raw.expectReply(150);
        await readAll(data);
        await raw.expectReply(226);
      } finally {
        await raw.close();
      }
    });
  });
});

describe("odd input", () => {
  it("answers pipelined commands in order", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "p.txt"), "12345");
      const raw = await RawClient.connect(t.port);
      try {
        raw.sendRaw("USER alice\r\nPASS alice-pw\r\nPWD\r\nMKD d\r\nTYPE I\r\nSIZE p.txt\r\nCWD d\r\nPWD\r\nBOGUS\r\nSYST\r\nNOOP\r\n");
        const codes: number[] = [];
        for (let i = 0; i < 11; i++) codes.push((await raw.reply()).code);
        assert.deepEqual(codes, [331, 230, 257, 257, 200, 213, 250, 257, 500, 215, 200]);
      } finally {
        await raw.close();
      }
    });
  });

  it("answers a pipelined burst in order without losing any (more than the queue holds)", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        const n = 200;
        raw.sendRaw(Array.from({ length: n }, (_, i) => (i % 2 === 0 ? "NOOP\r\n" : "PWD\r\n")).join(""));
        for (let i = 0; i < n; i++) assert.equal((await raw.reply()).code, i % 2 === 0 ? 200 : 257);
      } finally {
        await raw.close();
      }
    });
  });

  it("an overlong line gets 500 and the session still works", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        raw.sendRaw(`CWD ${"a".repeat(20_000)}\r\nPWD\r\n`);
        await raw.expectReply(500);
        await raw.expectReply(257);
        raw.sendRaw(`STOR ${"b".repeat(t.config.limits.maxLineLength)}\r\n`);
        await raw.expectReply(500);
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
    });
  });

  it("NUL, CR and other control characters in a path are refused and never forge a reply", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        await raw.expect("MKD a\0b", 501);
        await raw.expect("MKD a\rb", 501);
        raw.sendRaw("CWD x\r200 forged\r\n");
        await raw.expectReply(501);
        await raw.expect("MKD tab\there", 501);
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
    });
  });

  it("bare LF line ends are accepted", async () => {
    await withServer(async (t) => {
      const raw = await RawClient.connect(t.port);
      try {
        raw.sendRaw("USER alice\nPASS alice-pw\nPWD\n");
        assert.equal((await raw.reply()).code, 331);
        assert.equal((await raw.reply()).code, 230);
        assert.equal((await raw.reply()).code, 257);
      } finally {
        await raw.close();
      }
    });
  });

  it("telnet IAC IP / IAC DM before ABOR is stripped", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        raw.sendRaw(Buffer.concat([Buffer.from([0xff, 0xf4, 0xff, 0xf2]), Buffer.from("ABOR\r\n")]));
        const r = await raw.reply();
        assert.ok(r.code === 225 || r.code === 226, r.lines.join("|"));
        raw.sendRaw(Buffer.concat([Buffer.from([0xff, 0xfb, 0x01]), Buffer.from("NOOP\r\n")]));
        await raw.expectReply(200);
      } finally {
        await raw.close();
      }
    });
  });


  it("a verb is matched in ASCII only: a letter that upper-cases to ASCII (ſ to S, ı to I) makes no command", async () => {
    // RFC 959 §5.3: a command code is alphabetic ASCII. String.prototype.toUpperCase() maps the
    // long s to S and the dotless i to I, so "ſTOR" and "lıst" would run as STOR and LIST past
    // anything that looks for the commands by their letters.
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        for (const line of ["\u017ftor x.txt", "l\u0131st", "DELE\u0131", "\u017fIZE x.txt"]) {
          assert.equal((await raw.expect(line, 500)).message, "Syntax error, command unrecognized");
        }
        await raw.expect("stor", 501);
        await raw.expect("noop", 200);
      } finally {
        await raw.close();
      }
      assert.deepEqual(await readdir(t.home("alice")), []);
    });
  });
  it("a refused AUTH holds nothing back: the commands after it, in its packet or later, all run", async () => {
    await withServer(async (t) => {
      const raw = await RawClient.connect(t.port);
      try {
        // This server has no TLS: AUTH is 502 (501 without an argument).
        raw.sendRaw("AUTH FOO\r\nUSER alice\r\nNOOP\r\n");
        await raw.expectReply(502);
        await raw.expectReply(331);
        await raw.expectReply(200);
        raw.sendRaw("AUTH TLS\r\nPASS al");
        raw.sendRaw("ice-pw\r\nPWD\r\n");
        await raw.expectReply(502);
        await raw.expectReply(230);
        await raw.expectReply(257);
        raw.sendRaw("AUTH\r\nNOOP\r\n");
        await raw.expectReply(501);
        await raw.expectReply(200);
      } finally {
        await raw.close();
      }
    });
  });

  it("input sent while an AUTH waits its turn is held for its outcome, and past 64 KiB it is a flood (421)", async () => {
    await withServer(
      async (t) => {
        // A failed login answers after limits.failedLoginDelay: the AUTH behind it waits that long.
        const raw = await RawClient.connect(t.port);
        try {
          raw.sendRaw("USER alice\r\nPASS wrong\r\nAUTH TLS\r\n");
          await raw.expectReply(331);
          await new Promise((r) => setTimeout(r, 200));
          raw.sendRaw("USER alice\r\nPASS alice-pw\r\n");
          // Apart, so that the server reads them apart: each read held keeps its own bytes.
          await new Promise((r) => setTimeout(r, 100));
          raw.sendRaw("PWD\r\n");
          // Held while the AUTH is pending, then run in order once it is refused (no TLS here).
          for (const code of [530, 502, 331, 230, 257]) await raw.expectReply(code, 10_000);
        } finally {
          await raw.close();
        }
        const flood = await RawClient.connect(t.port);
        try {
          flood.sendRaw("USER alice\r\nPASS wrong\r\nAUTH TLS\r\n");
          await flood.expectReply(331);
          await new Promise((r) => setTimeout(r, 200));
          for (let i = 0; i < 5; i++) flood.sendRaw(`NOOP ${"x".repeat(16 * 1024)}\r\n`);
          assert.match((await flood.expectReply(421, 10_000)).message, /Too many commands/);
          await flood.closed();
        } finally {
          await flood.close();
        }
      },
      { config: { limits: { failedLoginDelay: 2 } } },
    );
  });

  it("a command that is not valid UTF-8 is 501 and touches nothing: two names never become one", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await writeFile(join(home, "a.txt"), "a");
      const raw = await RawClient.connect(t.port);
      const line = (...parts: (string | number[])[]): Buffer =>
        Buffer.concat([...parts.map((p) => (typeof p === "string" ? Buffer.from(p) : Buffer.from(p))), Buffer.from("\r\n")]);
      try {
        raw.sendRaw(line("USER alice"));
        await raw.expectReply(331);
        raw.sendRaw(line("PASS alice", [0xe9]));
        assert.match((await raw.expectReply(501)).message, /not valid UTF-8/);
        await raw.login();
        await raw.expect("TYPE I", 200);
        // r\xe9 and r\xe8 (Latin-1) would both read as "r\ufffd".
        for (const bad of [[0xe9], [0xe8], [0xc3], [0xff, 0xff]]) {
          for (const verb of ["MKD r", "STOR r", "CWD r", "DELE r", "SIZE r"]) {
            raw.sendRaw(line(verb, bad));
            await raw.expectReply(501);
          }
        }
        // The one-shot state goes as for any refused command.
        await raw.expect("RNFR a.txt", 350);
        raw.sendRaw(line("RNTO b", [0xe9]));
        await raw.expectReply(501);
        await raw.expect("RNTO b.txt", 503);
        // A verb that is not one stays 500; a real U+FFFD (valid UTF-8) is a name like any other.
        raw.sendRaw(line([0xe9], "XX"));
        await raw.expectReply(500);
        assert.equal((await raw.expect("MKD x\ufffdy", 257)).message, '"/x\ufffdy" created');
        assert.deepEqual((await readdir(home)).sort(), ["a.txt", "x\ufffdy"]);
        // A name on disk that is not UTF-8 cannot be named by a client: it is not listed either.
        await writeFile(Buffer.concat([Buffer.from(home + "/latin"), Buffer.from([0xe9])]), "latin-1");
        for (const verb of ["NLST", "LIST", "MLSD"]) {
          const data = await raw.pasv();
          raw.send(verb);
          await raw.expectReply(150);
          const got = (await readAll(data)).toString();
          await raw.expectReply(226);
          assert.equal(got.split("\r\n").filter(Boolean).length, 2, `${verb}: ${got}`);
          assert.doesNotMatch(got, /latin/);
        }
      } finally {
        await raw.close();
      }
    });
  });

  it("a name on disk with a backslash (which every command reads as a slash) is not listed: the listed names are the ones the commands reach", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await mkdir(join(home, "a"));
      await writeFile(join(home, "a", "b"), "inner");
      // Made on the server's side (an unpacked Windows archive, say): no client can name it.
      await writeFile(join(home, "a\\b"), "outer");
      await mkdir(join(home, "many"));
      for (let i = 0; i < 40; i++) await writeFile(join(home, "many", `f${i}`), "x");
      await writeFile(join(home, "many", "x\\y"), "outer");
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        // What the name would reach is the other file: a/b.
        assert.equal(await retrieveText(raw, "a\\b"), "inner");
        const listed = async (verb: string, arg: string): Promise<string> => {
          const data = await raw.pasv();
          raw.send(`${verb} ${arg}`.trim());
          await raw.expectReply(150);
          const got = (await readAll(data)).toString();
          await raw.expectReply(226);
          return got;
        };
        // Small and large directories (the stat worker reads the large one), every listing verb.
        for (const [dir, count] of [["", 2], ["many", 40]] as const) {
          for (const verb of ["NLST", "LIST", "MLSD"]) {
            const got = await listed(verb, dir);
            assert.ok(!got.includes("\\"), `${verb} ${dir}: ${got}`);
            assert.equal(got.split("\r\n").filter(Boolean).length, count, `${verb} ${dir}: ${got}`);
          }
        }
        assert.equal(await listed("NLST", "*b"), "");
        const stat = await raw.expect("STAT .", 213);
        assert.ok(!stat.lines.some((l) => l.includes("\\")), stat.lines.join("\n"));
      } finally {
        await raw.close();
      }
    });
  });

  it("a name on disk that is not UTF-8 beside one with a real U+FFFD in its place: the real one is listed once, never repeated", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      const notUtf8 = (dir: string, last: number): Buffer => Buffer.concat([Buffer.from(`${dir}/x`), Buffer.from([last])]);
      await writeFile(join(home, "x\ufffd"), "1");
      // Latin-1 é and è: read from the directory, both decode to "x\ufffd" as well.
      await writeFile(notUtf8(home, 0xe9), "22");
      await writeFile(notUtf8(home, 0xe8), "333");
      // A directory large enough for the stat worker.
      await mkdir(join(home, "many"));
      for (let i = 0; i < 40; i++) await writeFile(join(home, "many", `f${i}`), "x");
      await writeFile(join(home, "many", "x\ufffd"), "1");
      await writeFile(notUtf8(join(home, "many"), 0xe9), "22");
      const raw = await rawLogin(t);
      try {
        for (const [dir, count] of [["", 2], ["many", 41]] as const) {
          for (const verb of ["NLST", "LIST", "MLSD"]) {
            const data = await raw.pasv();
            raw.send(`${verb} ${dir}`.trim());
            await raw.expectReply(150);
            const lines = (await readAll(data)).toString().split("\r\n").filter(Boolean);
            await raw.expectReply(226);
            assert.equal(lines.length, count, `${verb} ${dir}: ${lines.join("\n")}`);
            const named = lines.filter((l) => l.endsWith("x\ufffd"));
            assert.equal(named.length, 1, `${verb} ${dir}: ${lines.join("\n")}`);
            if (verb === "MLSD") assert.match(named[0] as string, /;size=1;/);
          }
        }
        await raw.expect("TYPE I", 200);
        assert.equal(await retrieveText(raw, "x\ufffd"), "1");
      } finally {
        await raw.close();
      }
    });
  });

  it("UTF-8 names come back intact in replies", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        await raw.expect("OPTS UTF8 ON", 200);
        const r = await raw.expect("MKD Grüße 日本", 257);
        assert.equal(r.message, '"/Grüße 日本" created');
        await raw.expect("CWD Grüße 日本", 250);
        assert.equal((await raw.expect("PWD", 257)).message, '"/Grüße 日本" is the current directory');
      } finally {
        await raw.close();
      }
    });
  });
});

describe("reply formats", () => {
  it("FEAT lists exactly the working features, one space before each, in the multi-line form", async () => {
    await withServer(async (t) => {
      const raw = await RawClient.connect(t.port);
      try {
        const r = await raw.expect("FEAT", 211);
        assert.deepEqual(r.lines, [
          "211-Features:",
          " CLNT",
          " EPRT",
          " EPSV",
          " HASH SHA-1;SHA-256*;SHA-512;MD5;CRC32",
          " HOST",
          " LANG EN*",
          " MDTM",
          " MFMT",
          " MLST type*;size*;modify*;perm*;unix.mode*;",
          " PASV",
          " REST STREAM",
          " SIZE",
          " TVFS",
          " UTF8",
          " XCRC",
          " XMD5",
          " XSHA1",
          " XSHA256",
          " XSHA512",
          "211 End",
        ]);
        await raw.login();
        assert.equal((await raw.expect("OPTS MLST type;size;", 200)).message, "MLST OPTS type;size;");
        const after = await raw.expect("FEAT", 211);
        assert.ok(after.lines.includes(" MLST type*;size*;modify;perm;unix.mode;"), after.lines.join("\n"));
        // RFC 3659 §7.9: a list not in the form fact;fact; is 501 and keeps the selection.
        for (const bad of ["unique type;", "type", "type;size", ";", "type;;"]) await raw.expect(`OPTS MLST ${bad}`, 501);
        assert.ok((await raw.expect("FEAT", 211)).lines.includes(" MLST type*;size*;modify;perm;unix.mode;"));
        // Facts berth lacks are left out; an empty list selects none, and the reply has no trailing space.
        assert.equal((await raw.expect("OPTS MLST unique;Size;", 200)).message, "MLST OPTS size;");
        assert.equal((await raw.expect("OPTS MLST", 200)).message, "MLST OPTS");
        const bare = await raw.expect("MLST /", 250);
        assert.equal(bare.lines[1], "  /");
      } finally {
        await raw.close();
      }
    });
  });

  it("OPTS UTF8: ON (or no value) is 200, OFF is 504, any other value is 501 and claims nothing", async () => {
    await withServer(async (t) => {
      const raw = await RawClient.connect(t.port);
      try {
        for (const on of ["OPTS UTF8 ON", "OPTS utf8 on", "OPTS UTF8", "OPTS UTF-8 ON"]) await raw.expect(on, 200);
        await raw.expect("OPTS UTF8 OFF", 504);
        for (const bad of ["OPTS UTF8 YES", "OPTS UTF8 NLST", "OPTS UTF8 ON OFF", "OPTS UTF8 1"]) {
          assert.doesNotMatch((await raw.expect(bad, 501)).message, /always on/i, bad);
        }
      } finally {
        await raw.close();
      }
    });
  });

  it("HOST (RFC 7151): before USER only, a host name or an IP literal, 501 for anything else", async () => {
    await withServer(async (t) => {
      const raw = await RawClient.connect(t.port);
      try {
        for (const ok of ["ftp.example.com", "ftp.example.com.", "localhost", "127.0.0.1", "[::1]", "[2001:db8::7]", "xn--bcher-kva.example", "bücher.example", `${"a".repeat(63)}.example`]) {
          await raw.expect(`HOST ${ok}`, 220);
        }
        for (const bad of ["bad host", "-lead.example", "trail-.example", "a..b", "[not-an-ip]", "::1", "under_score.example", `${"a".repeat(64)}.example`, `${"abcdefghi.".repeat(26)}com`, "a/b", "host:21"]) {
          await raw.expect(`HOST ${bad}`, 501);
        }
        await raw.expect("HOST", 501);
        await raw.expect("USER alice", 331);
        await raw.expect("HOST ftp.example.com", 503);
        await raw.expect("PASS alice-pw", 230);
        await raw.expect("HOST ftp.example.com", 503);
        await raw.expect("PWD", 257);
      } finally {
        await raw.close();
      }
    });
  });

  it("LANG (RFC 2640 §4.1): English and the default are taken, before and after login; others are 504, bad tags 501", async () => {
    await withServer(async (t) => {
      const raw = await RawClient.connect(t.port);
      try {
        await raw.expect("LANG", 200);
        await raw.expect("LANG EN", 200);
        await raw.expect("LANG en-US", 200);
        await raw.expect("LANG fr", 504);
        await raw.expect("LANG eng", 504);
        await raw.expect("LANG en_US", 501);
        await raw.expect("LANG -en", 501);
        await raw.expect("LANG toolongtag", 501);
        await raw.login();
        await raw.expect("LANG EN-gb", 200);
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
    });
  });

  it("HELP lists the commands; HELP <verb> gives its syntax", async () => {
    await withServer(async (t) => {
      const raw = await RawClient.connect(t.port);
      try {
        const all = await raw.expect("HELP", 214);
        assert.ok(all.multiline);
        const verbs = all.lines.slice(1, -1).join(" ");
        for (const v of ["RETR", "STOR", "EPSV", "MLSD", "FEAT", "ABOR"]) assert.match(verbs, new RegExp(`\\b${v}\\b`));
        for (const l of all.lines.slice(1, -1)) assert.ok(l.startsWith(" "), l);
        const one = await raw.expect("HELP retr", 214);
        assert.match(one.message, /RETR/);
        // The command is the first word; what follows it (a SITE command's name, a TYPE's code)
        // does not make a known command unknown.
        assert.match((await raw.expect("HELP SITE CHMOD", 214)).message, /SITE/);
        assert.match((await raw.expect("HELP TYPE A", 214)).message, /TYPE/);
        await raw.expect("HELP XYZZ", 502);
      } finally {
        await raw.close();
      }
    });
  });

  it("STAT without a path is 211, with a path is 213 with the listing", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "s.txt"), "abc");
      const raw = await rawLogin(t);
      try {
        const st = await raw.expect("STAT", 211);
        assert.ok(st.multiline);
        assert.ok(st.lines.some((l) => l.includes("alice")), st.lines.join("\n"));
        const p = await raw.expect("STAT /", 213);
        assert.ok(p.multiline);
        assert.equal(p.lines.length, 3, p.lines.join("\n"));
        assert.match(p.lines[1] ?? "", /^ -rw.* 3 .* s\.txt$/);
        await raw.expect("STAT /missing", 550);
      } finally {
        await raw.close();
      }
    });
  });

  it("STAT, LIST and NLST of a name ending in / list a directory only, never the file (ls says Not a directory)", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "s.txt"), "abc");
      await mkdir(join(t.home("alice"), "d"));
      await writeFile(join(t.home("alice"), "d", "in.txt"), "i");
      const raw = await rawLogin(t);
      try {
        for (const name of ["s.txt/", "/s.txt/", "s.txt\\", "-l s.txt/", "-d s.txt/"]) {
          assert.match((await raw.expect(`STAT ${name}`, 550)).message, /Not a directory/, name);
        }
        for (const verb of ["LIST", "NLST"]) {
          const data = await raw.pasv();
          assert.match((await raw.expect(`${verb} s.txt/`, 550)).message, /Not a directory/, verb);
          data.destroy();
        }
        assert.equal((await raw.expect("STAT missing/", 550)).message, "No such file or directory");
        assert.match((await raw.expect("STAT d/", 213)).lines.join("\n"), /in\.txt/);
        assert.deepEqual((await listedText(raw, "NLST d/")).split("\r\n").filter(Boolean), ["d/in.txt"]);
        await raw.expect("STAT s.txt", 213);
      } finally {
        await raw.close();
      }
    });
  });

  it("MLST answers on the control connection with one fact line", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "m.txt"), "abcd");
      const raw = await rawLogin(t);
      try {
        const r = await raw.expect("MLST m.txt", 250);
        assert.equal(r.lines.length, 3);
        assert.match(r.lines[1] ?? "", /^ type=file;size=4;modify=\d{14};perm=rawdf;unix\.mode=0\d{3}; \/m\.txt$/);
        const d = await raw.expect("MLST", 250);
        // The root itself can be neither removed nor renamed: no d, no f.
        assert.match(d.lines[1] ?? "", /^ type=dir;modify=\d{14};perm=elcmp;unix\.mode=0\d{3}; \/$/);
      } finally {
        await raw.close();
      }
    });
  });

  it("MLST of a name ending in / describes a directory only, never the file (stat(2) says ENOTDIR)", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "m.txt"), "abcd");
      await mkdir(join(t.home("alice"), "d"));
      const raw = await rawLogin(t);
      try {
        for (const name of ["m.txt/", "/m.txt/", "m.txt\\"]) {
          assert.match((await raw.expect(`MLST ${name}`, 550)).message, /Not a directory/, name);
        }
        assert.equal((await raw.expect("MLST missing/", 550)).message, "No such file or directory");
        assert.match((await raw.expect("MLST d/", 250)).lines[1] ?? "", /^ type=dir;.* \/d$/);
        assert.match((await raw.expect("MLST /", 250)).lines[1] ?? "", /^ type=dir;.* \/$/);
      } finally {
        await raw.close();
      }
    });
  });

  it("a name ending in /. or /.. is a directory's, as one ending in / is: never the file before it (ls a.txt/. says Not a directory)", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await writeFile(join(home, "a.txt"), "abc");
      await mkdir(join(home, "sub"));
      await writeFile(join(home, "sub", "in.txt"), "i");
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        for (const name of ["a.txt/.", "/a.txt/.", "a.txt\\.", "sub/../a.txt/."]) {
          for (const verb of ["SIZE", "MDTM", "MLST", "STAT", "RNFR", "SITE CHMOD 600", "MFMT 20240101000000"]) {
            assert.match((await raw.expect(`${verb} ${name}`, 550)).message, /Not a directory/, `${verb} ${name}`);
          }
          for (const verb of ["RETR", "DELE", "XCRC"]) await raw.expect(`${verb} ${name}`, 550);
          await raw.expect(`HASH ${name}`, 553); // as for a directory
          for (const verb of ["LIST", "NLST"]) {
            const data = await raw.pasv();
            assert.match((await raw.expect(`${verb} ${name}`, 550)).message, /Not a directory/, `${verb} ${name}`);
            data.destroy();
          }
          const data = await raw.pasv();
          await raw.expect(`STOR ${name}`, 553);
          data.destroy();
        }
        // A directory is named so as it is without them.
        await raw.expect("CWD sub/..", 250);
        await raw.expect("CWD sub/.", 250);
        assert.match((await raw.expect("PWD", 257)).message, /^"\/sub" /);
        assert.match((await raw.expect("STAT ..", 213)).lines.join("\n"), /a\.txt/);
        assert.match((await raw.expect("STAT .", 213)).lines.join("\n"), /in\.txt/);
        await raw.expect("CDUP", 200);
        assert.match((await raw.expect("MLST sub/.", 250)).lines[1] ?? "", /^ type=dir;.* \/sub$/);
        assert.match((await raw.expect("SIZE sub/.", 550)).message, /Not a regular file/);
        assert.deepEqual((await listedText(raw, "NLST sub/.")).split("\r\n").filter(Boolean), ["sub/./in.txt"]);
        assert.match(await listedText(raw, "LIST sub/."), /in\.txt/);
        assert.match(await listedText(raw, "LIST ."), /a\.txt/);
      } finally {
        await raw.close();
      }
      assert.deepEqual((await readdir(home)).sort(), ["a.txt", "sub"]);
      assert.equal(await readFile(join(home, "a.txt"), "utf8"), "abc");
    });
  });

  it("a .. after a file or a missing name on the way is refused as the kernel's walk refuses it (ENOTDIR, ENOENT), never collapsed away", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await writeFile(join(home, "a.txt"), "abc");
      await writeFile(join(home, "b.txt"), "bcd");
      await mkdir(join(home, "sub"));
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        for (const [through, why] of [["a.txt", /^Not a directory/], ["missing", /^No such file or directory/]] as const) {
          for (const name of [`${through}/..`, `${through}/../sub`, `/${through}/../sub/..`, `sub/../${through}/..`]) {
            assert.match((await raw.expect(`CWD ${name}`, 550)).message, why, `CWD ${name}`);
          }
          for (const verb of ["SIZE", "MDTM", "MLST", "STAT", "RNFR", "DELE", "RETR", "XCRC", "SITE CHMOD 600", "MFMT 20240101000000"]) {
            assert.match((await raw.expect(`${verb} ${through}/../b.txt`, 550)).message, why, `${verb} ${through}/../b.txt`);
          }
          assert.match((await raw.expect(`MKD ${through}/../new`, 550)).message, why);
          assert.match((await raw.expect(`RMD ${through}/../sub`, 550)).message, why);
          await raw.expect("RNFR b.txt", 350);
          assert.match((await raw.expect(`RNTO ${through}/../c.txt`, 550)).message, why);
          for (const verb of ["LIST", "NLST", "STOR"]) {
            const data = await raw.pasv();
            assert.match((await raw.expect(`${verb} ${through}/../b.txt`, 550)).message, why, verb);
            data.destroy();
          }
        }
        assert.match((await raw.expect("PWD", 257)).message, /^"\/" /);
        // Through a directory, the same names are as before.
        await raw.expect("SIZE sub/../b.txt", 213);
        // MDTM with a time sets it: the whole argument, whose first name is "20240101000000 sub",
        // names nothing, as there is no such directory to step back out of.
        assert.equal((await raw.expect("MDTM 20240101000000 sub/../b.txt", 213)).message, "Modify=20240101000000; sub/../b.txt");
        assert.equal((await stat(join(home, "b.txt"))).mtime.toISOString(), "2024-01-01T00:00:00.000Z");
        assert.match((await raw.expect("MDTM 20240101000000 a.txt/../b.txt", 550)).message, /^Not a directory/);
        await raw.expect("CWD sub/../sub", 250);
        // Two names stepped back out of: the deeper one is looked at, and a missing one refused.
        await raw.expect("MKD inner", 257);
        await raw.expect("SIZE /sub/inner/../../b.txt", 213);
        assert.equal((await raw.expect("SIZE /sub/nothing/../../b.txt", 550)).message, "No such file or directory");
        await raw.expect("RMD inner", 250);
        // The cwd's own names are not looked at again: they were directories when entered.
        await raw.expect("SIZE ../b.txt", 213);
        await raw.expect("CDUP", 200);
      } finally {
        await raw.close();
      }
      assert.deepEqual((await readdir(home)).sort(), ["a.txt", "b.txt", "sub"]);
      assert.equal(await readFile(join(home, "b.txt"), "utf8"), "bcd");
    });
  });

  it("CWD says why it refuses: a file is not a directory, a missing name is missing; the directory stays", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "f.txt"), "f");
      await mkdir(join(t.home("alice"), "d"));
      const raw = await rawLogin(t);
      try {
        await raw.expect("CWD d", 250);
        for (const file of ["/f.txt", "../f.txt"]) assert.equal((await raw.expect(`CWD ${file}`, 550)).message, "Not a directory", file);
        assert.equal((await raw.expect("CWD /missing", 550)).message, "No such directory");
        assert.match((await raw.expect("PWD", 257)).message, /^"\/d" /);
      } finally {
        await raw.close();
      }
    });
  });

  it("257 doubles a quote in the directory name (RFC 959 appendix II)", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        assert.equal((await raw.expect('MKD say "hi"', 257)).message, '"/say ""hi""" created');
        await raw.expect('CWD say "hi"', 250);
        assert.equal((await raw.expect("PWD", 257)).message, '"/say ""hi""" is the current directory');
        assert.equal((await raw.expect("XPWD", 257)).message, '"/say ""hi""" is the current directory');
      } finally {
        await raw.close();
      }
    });
  });

  it("TYPE, MODE, STRU, ALLO, SYST, NOOP", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        await raw.expect("TYPE A N", 200);
        await raw.expect("TYPE L 8", 200);
        // L's byte size is a decimal number: "08" is 8; another size is not implemented, and no
        // size, or one that is no number, is a syntax error (RFC 959 §5.3.2: L <SP> <byte-size>).
        await raw.expect("TYPE A", 200);
        await raw.expect("TYPE L 08", 200);
        assert.match((await raw.expect("STAT", 211)).lines.join("\n"), /TYPE: BINARY/);
        await raw.expect("TYPE L 16", 504);
        for (const bad of ["TYPE L", "TYPE L x", "TYPE L -8", "TYPE L 8.0"]) await raw.expect(bad, 501);
        await raw.expect("TYPE E", 504);
        await raw.expect("TYPE Q", 501);
        // RFC 959 §5.3.2: A and E take one form code, L one byte size, I nothing; more words are
        // a syntax error, and the type stays what it was.
        await raw.expect("TYPE I", 200);
        for (const bad of ["TYPE A N x", "TYPE L 8 8", "TYPE I N", "TYPE A B C D E", "TYPE E N x"]) await raw.expect(bad, 501);
        assert.match((await raw.expect("STAT", 211)).lines.join("\n"), /TYPE: BINARY/);
        await raw.expect("MODE S", 200);
        await raw.expect("MODE B", 504);
        await raw.expect("STRU F", 200);
        await raw.expect("STRU R", 504);
        await raw.expect("ALLO 100", 202);
        // RFC 959: ALLO <decimal-integer> [<SP> R <SP> <decimal-integer>]; anything else is a syntax error.
        await raw.expect("ALLO 100 R 512", 202);
        await raw.expect("ALLO 10abc", 501);
        await raw.expect("ALLO 100 R", 501);
        await raw.expect("ALLO -5", 501);
        await raw.expect("SYST", 215);
        await raw.expect("ABOR", 225);
      } finally {
        await raw.close();
      }
    });
  });
});

describe("names too long to exist", () => {
  it("are 553 only for the commands that would create one and may answer it (STOR, APPE, STOU, RNTO), 550 File name not allowed for MKD; any other command finds nothing there (550)", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await writeFile(join(home, "f.txt"), "f");
      const long = "n".repeat(256); // over NAME_MAX
      const deep = `/${Array.from({ length: 17 }, () => "d".repeat(250)).join("/")}`; // over 4,096 bytes
      // 4,080 bytes: a virtual path within the limit, whose real path below any home is too long
      // for the kernel (ENAMETOOLONG).
      const real = `/${Array.from({ length: 16 }, () => "r".repeat(254)).join("/")}`;
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        for (const name of [long, `sub/${long}/x`, deep, real]) {
          for (const verb of ["CWD", "DELE", "RMD", "SIZE", "MDTM", "MLST", "STAT", "RNFR", "SITE CHMOD 600", "HASH", "XCRC", "MFMT 20240101000000"]) {
            // CWD says "No such directory" for a name the disk itself finds too long.
            assert.match((await raw.expect(`${verb} ${name}`, 550)).message, /^No such (file or )?directory$/, verb);
          }
          for (const verb of ["RETR", "LIST", "NLST", "MLSD"]) {
            const data = await raw.pasv();
            assert.equal((await raw.expect(`${verb} ${name}`, 550)).message, "No such file or directory", verb);
            data.destroy();
          }
          if (name === real) continue; // its parent is missing: 550 for those that create too
          // RFC 959 §5.4 gives MKD no 553: its refusal is 550, as vsftpd, ProFTPD and pure-ftpd answer it.
          for (const verb of ["MKD", "XMKD"]) assert.equal((await raw.expect(`${verb} ${name}`, 550)).message, "File name not allowed", verb);
          for (const verb of ["STOR", "APPE", "STOU"]) {
            const data = await raw.pasv();
            assert.equal((await raw.expect(`${verb} ${name}`, 553)).message, "File name not allowed", verb);
            data.destroy();
          }
          await raw.expect("RNFR f.txt", 350);
          assert.equal((await raw.expect(`RNTO ${name}`, 553)).message, "File name not allowed");
        }
      } finally {
        await raw.close();
      }
      assert.deepEqual(await readdir(home), ["f.txt"]);
    }, { config: { limits: { maxLineLength: 8192 } } }); // a path longer than the default line
  });
});

describe("names of upload temp files", () => {
  it("are 553 only for the commands that would create one and may answer it (STOR, APPE, RNTO), 550 File name not allowed for MKD; any other command finds nothing there (550)", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await writeFile(join(home, "f.txt"), "f");
      // A temp file a replacing upload left, and a directory so named (made outside FTP).
      await writeFile(join(home, ".berth-upload-0123456789abcdef"), "partial");
      await mkdir(join(home, ".berth-upload-dir"));
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        for (const name of [".berth-upload-0123456789abcdef", ".berth-upload-dir", "/.berth-upload-dir/x", ".berth-upload-missing"]) {
          for (const verb of ["CWD", "DELE", "RMD", "SIZE", "MDTM", "MLST", "STAT", "RNFR", "SITE CHMOD 600", "HASH", "XCRC", "MFMT 20240101000000"]) {
            assert.match((await raw.expect(`${verb} ${name}`, 550)).message, /^No such (file or )?directory$/, `${verb} ${name}`);
          }
          for (const verb of ["RETR", "LIST", "NLST", "MLSD"]) {
            const data = await raw.pasv();
            assert.equal((await raw.expect(`${verb} ${name}`, 550)).message, "No such file or directory", `${verb} ${name}`);
            data.destroy();
          }
          for (const verb of ["MKD", "XMKD"]) assert.equal((await raw.expect(`${verb} ${name}`, 550)).message, "File name not allowed", `${verb} ${name}`);
          for (const verb of ["STOR", "APPE"]) {
            const data = await raw.pasv();
            assert.equal((await raw.expect(`${verb} ${name}`, 553)).message, "File name not allowed", `${verb} ${name}`);
            data.destroy();
          }
          await raw.expect("RNFR f.txt", 350);
          assert.equal((await raw.expect(`RNTO ${name}`, 553)).message, "File name not allowed", `RNTO ${name}`);
        }
      } finally {
        await raw.close();
      }
      assert.deepEqual((await readdir(home)).sort(), [".berth-upload-0123456789abcdef", ".berth-upload-dir", "f.txt"]);
      assert.equal(await readFile(join(home, ".berth-upload-0123456789abcdef"), "utf8"), "partial");
    });
  });
});

describe("names with spaces at their start or end", () => {
  it("LIST, NLST and STAT take a path as written, its leading and trailing spaces included, as SIZE and MLST do", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await writeFile(join(home, " lead"), "abc");
      await writeFile(join(home, "trail "), "de");
      await mkdir(join(home, " sp dir "));
      await writeFile(join(home, " sp dir ", "in.txt"), "x");
      const raw = await rawLogin(t);
      try {
        const listed = async (line: string): Promise<string[]> => (await listedText(raw, line)).split("\r\n").filter(Boolean);
        const lead = await listed("LIST  lead");
        assert.equal(lead.length, 1, lead.join("\n"));
        assert.match(lead[0] as string, /^-rw-\S+\s+1 ftp\s+ftp\s+3 \w{3} [ \d]\d [ \d]\d:\d\d {2}lead$/);
        const trail = await listed("LIST trail ");
        assert.equal(trail.length, 1, trail.join("\n"));
        assert.match(trail[0] as string, /\s2 \w{3} [ \d]\d [ \d]\d:\d\d trail $/);
        assert.deepEqual(await listed("NLST  lead"), [" lead"]);
        assert.deepEqual(await listed("NLST trail "), ["trail "]);
        assert.deepEqual(await listed("NLST  sp dir "), [" sp dir /in.txt"]);
        const inDir = await listed("LIST  sp dir ");
        assert.equal(inDir.length, 1, inDir.join("\n"));
        assert.match(inDir[0] as string, / in\.txt$/);
        const stat = await raw.expect("STAT  lead", 213);
        assert.equal(stat.lines.length, 3, stat.lines.join("\n"));
        assert.match(stat.lines[1] as string, /^ -rw-.* {2}lead$/);
        // Only spaces: no argument, the current directory.
        assert.equal((await listed("NLST  ")).length, 3);
        assert.equal((await listed("LIST -la ")).length, 3);
      } finally {
        await raw.close();
      }
    });
  });

  it("a name of other spaces only (no-break, ideographic) is a name: listed, and every command reaches it by that name", async () => {
    // Only ASCII spaces make an argument none; String.prototype.trim() also drops U+00A0, U+3000,
    // U+2028 and U+FEFF, so such a name was listed and then "argument required" to every command.
    await withServer(async (t) => {
      const home = t.home("alice");
      await writeFile(join(home, "\u3000"), "ideographic");
      await writeFile(join(home, "other.txt"), "x");
      const raw = await rawLogin(t);
      try {
        const listed = async (line: string): Promise<string[]> => (await listedText(raw, line)).split("\r\n").filter(Boolean);
        assert.deepEqual((await listed("NLST")).sort(), ["other.txt", "\u3000"].sort());
        await raw.expect("TYPE I", 200);
        assert.equal((await raw.expect("SIZE \u3000", 213)).message, "11");
        assert.equal(await retrieveText(raw, "\u3000"), "ideographic");
        assert.deepEqual(await listed("NLST \u3000"), ["\u3000"]);
        const one = await listed("LIST \u3000");
        assert.equal(one.length, 1, one.join("\n"));
        assert.equal((await raw.expect("STAT \u3000", 213)).lines.length, 3);
        await raw.expect("MKD \u00a0", 257);
        await raw.expect("CWD \u00a0", 250);
        assert.equal((await raw.expect("PWD", 257)).message, '"/\u00a0" is the current directory');
        await raw.expect("CWD /", 250);
        await raw.expect("RMD \u00a0", 250);
        await raw.expect("DELE \u3000", 250);
        // ASCII spaces alone are still no argument.
        await raw.expect("DELE  ", 501);
      } finally {
        await raw.close();
      }
      assert.deepEqual(await readdir(home), ["other.txt"]);
    });
  });

  it("SITE CHMOD takes the path after the mode's one space as written: a leading space is part of the name", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await writeFile(join(home, " lead"), "abc");
      await writeFile(join(home, "lead"), "abc");
      await chmod(join(home, " lead"), 0o644);
      await chmod(join(home, "lead"), 0o644);
      const raw = await rawLogin(t);
      try {
        // FileZilla sends the name after one space: " lead" is "SITE CHMOD 600  lead".
        await raw.expect("SITE CHMOD 600  lead", 200);
        assert.equal((await stat(join(home, " lead"))).mode & 0o777, 0o600);
        assert.equal((await stat(join(home, "lead"))).mode & 0o777, 0o644, "the mode of another file was changed");
        await raw.expect("SITE CHMOD 640 lead", 200);
        assert.equal((await stat(join(home, "lead"))).mode & 0o777, 0o640);
      } finally {
        await raw.close();
      }
    });
  });

  it("SITE CHMOD takes a mode written with leading zeros, as chmod does, and still refuses setuid, setgid and sticky", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await writeFile(join(home, "f"), "abc");
      await chmod(join(home, "f"), 0o600);
      const raw = await rawLogin(t);
      try {
        await raw.expect("SITE CHMOD 00644 f", 200);
        assert.equal((await stat(join(home, "f"))).mode & 0o7777, 0o644);
        await raw.expect("SITE CHMOD 0000000640 f", 200);
        assert.equal((await stat(join(home, "f"))).mode & 0o7777, 0o640);
        for (const mode of ["01644", "004755", "0000002755", "1777"]) await raw.expect(`SITE CHMOD ${mode} f`, 501);
        assert.equal((await stat(join(home, "f"))).mode & 0o7777, 0o640);
      } finally {
        await raw.close();
      }
    });
  });
});

describe("times of a file modified in the last fraction of a millisecond of a minute", () => {
  it("MDTM, MLST, MLSD and LIST give the second and minute the file has, not the next ones", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      const file = join(home, "late.txt");
      await writeFile(file, "x");
      // A day ago, 0.3 ms before a whole minute: second 59 of the minute before it.
      const minute = Math.floor(Date.now() / 60_000) * 60_000 - 86_400_000;
      await utimes(file, minute / 1000 - 0.0003, minute / 1000 - 0.0003);
      assert.ok((await stat(file)).mtimeMs % 1000 > 999, "the filesystem keeps the fraction");
      const before = new Date(minute - 1000);
      const pad = (n: number): string => String(n).padStart(2, "0");
      const mdtm =
        `${before.getUTCFullYear()}${pad(before.getUTCMonth() + 1)}${pad(before.getUTCDate())}` +
        `${pad(before.getUTCHours())}${pad(before.getUTCMinutes())}${pad(before.getUTCSeconds())}`;
      const raw = await rawLogin(t);
      try {
        assert.equal((await raw.expect("MDTM late.txt", 213)).message, mdtm);
        const mlst = await raw.expect("MLST late.txt", 250);
        assert.match(mlst.lines[1] as string, new RegExp(`;modify=${mdtm};`));
        const listed = (line: string): Promise<string> => listedText(raw, line);
        assert.match(await listed("MLSD"), new RegExp(`;modify=${mdtm};.* late\\.txt\r\n`));
        const hhmm = `${pad(before.getUTCHours())}:${pad(before.getUTCMinutes())}`;
        assert.match(await listed("LIST late.txt"), new RegExp(` ${hhmm} late\\.txt\r\n$`));
      } finally {
        await raw.close();
      }
    });
  });
});

describe("replies to a client that stops reading its control connection", () => {
  it("fill its socket, then wait in the server: none is lost, doubled or reordered when it reads again", async () => {
    await withServer(
      async (t) => {
        // Eight directories with long names, so that each PWD reply is about 270 bytes.
        const names = Array.from({ length: 8 }, (_, i) => `${i}${"é".repeat(120)}`);
        for (const n of names) await mkdir(join(t.home("alice"), n));
        const raw = await rawLogin(t);
        try {
          const session = [...t.server.sessions][0];
          assert.ok(session);
          raw.socket.pause();
          // Pairs of CWD and PWD in batches until the server's socket buffer is full and replies
          // wait in the server (its stream holds bytes), then a few batches more.
          let pairs = 0;
          let after = -1;
          while (pairs < 200_000 && after !== 0) {
            let batch = "";
            for (let i = 0; i < 500; i++, pairs++) batch += `CWD /${names[pairs % 8]}\r\nPWD\r\n`;
            raw.sendRaw(batch);
            await sleep(10);
            if (after > 0) after--;
            else if (after < 0 && session.socket.writableLength > 0) after = 4;
          }
          assert.equal(after, 0, `replies never waited in the server (${pairs} pairs sent)`);
          raw.socket.resume();
          for (let i = 0; i < pairs; i++) {
            const cwd = await raw.reply();
            const pwd = await raw.reply();
            if (cwd.code !== 250 || pwd.message !== `"/${names[i % 8]}" is the current directory`) {
              assert.fail(`pair ${i} of ${pairs}: ${cwd.code} ${cwd.message} / ${pwd.code} ${pwd.message}`);
            }
          }
          await raw.expect("NOOP", 200);
        } finally {
          await raw.close();
        }
      },
      { config: { limits: { commandRate: 0 } } },
    );
  });

  it("a reply never overtakes bytes waiting in the connection's stream, even with room in the socket", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        const session = [...t.server.sessions][0];
        assert.ok(session);
        // Bytes held in the stream while the socket has room (corked), then a reply.
        session.socket.cork();
        session.socket.write("211 held in the stream\r\n");
        session.reply(200, "after it");
        setImmediate(() => session.socket.uncork());
        assert.deepEqual([(await raw.reply()).message, (await raw.reply()).message], ["held in the stream", "after it"]);
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
    });
  });
});
