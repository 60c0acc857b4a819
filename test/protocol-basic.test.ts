/**
 * Client flows with a real FTP client (basic-ftp) against a real server: login, listings, binary
 * and UTF-8 uploads and downloads, directory and file commands, resume both ways, APPE, STOU,
 * TYPE A, and the read-only user.
 */
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { Readable } from "node:stream";
import { after, describe, it } from "node:test";
import type { FTPError } from "basic-ftp";
import { backOff } from "../src/fs/quick.ts";
import { listedText, readAll, retrieveText, writeAll, type Reply } from "./helpers/raw.ts";
import { download, ftpLogin, payload, rawLogin, upload, withServer } from "./helpers/run.ts";
import { RawClient } from "./helpers/raw.ts";

/** Directories made outside the test servers' roots, removed once the file's tests are done. */
const outsides: string[] = [];
after(async () => {
  for (const d of outsides) await rm(d, { recursive: true, force: true });
});

/** A fresh directory outside every home (what a link in a home may lead to). */
async function outsideDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  outsides.push(dir);
  return dir;
}

const UTF8_NAME = "Grüße 日本.txt";

describe("login and listings", () => {
  it("logs in, lists with MLSD and shows the facts", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "a.bin"), payload(1234));
      const client = await ftpLogin(t);
      try {
        assert.equal(await client.pwd(), "/");
        await client.ensureDir("/sub");
        await client.cd("/");
        const list = await client.list();
        const names = list.map((f) => f.name).sort();
        assert.deepEqual(names, ["a.bin", "sub"]);
        const file = list.find((f) => f.name === "a.bin");
        assert.equal(file?.size, 1234);
        assert.ok(file?.isFile);
        assert.ok(list.find((f) => f.name === "sub")?.isDirectory);
      } finally {
        client.close();
      }
    });
  });

  it("MLSD sends type, size, modify, perm and unix.mode for each entry", async () => {
    await withServer(async (t) => {
      const f = join(t.home("alice"), "x.txt");
      await writeFile(f, "hello");
      await utimes(f, new Date("2020-01-02T03:04:05Z"), new Date("2020-01-02T03:04:05Z"));
      const raw = await rawLogin(t);
      try {
        const data = await raw.pasv();
        raw.send("MLSD");
        await raw.expectReply(150);
        const text = (await readAll(data)).toString("utf8");
        await raw.expectReply(226);
        const mode = ((await stat(f)).mode & 0o777).toString(8).padStart(4, "0");
        assert.equal(text, `type=file;size=5;modify=20200102030405;perm=rawdf;unix.mode=${mode}; x.txt\r\n`);
      } finally {
        await raw.close();
      }
    });
  });

  it("MLSD of a file is 501, of a missing path or one outside the jail 550; the session goes on", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "x.txt"), "hello");
      const raw = await rawLogin(t);
      try {
        for (const [arg, code] of [
          ["x.txt", 501],
          ["missing", 550],
          ["/../../etc", 550],
          ["../../../../../tmp", 550],
        ] as const) {
          const data = await raw.pasv();
          const r = await raw.cmd(`MLSD ${arg}`);
          assert.equal(r.code, code, `MLSD ${arg}: ${r.message}`);
          data.destroy();
        }
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
    });
  });

  it("LIST shows ls-style lines and NLST plain names", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "one.txt"), "1");
      const raw = await rawLogin(t);
      try {
        let data = await raw.pasv();
        raw.send("LIST");
        await raw.expectReply(150);
        const list = (await readAll(data)).toString();
        await raw.expectReply(226);
        assert.match(list, /^-rw.{7}\s+1 ftp\s+ftp\s+1 \w{3} [ \d]\d .{5} one\.txt\r\n$/);
        data = await raw.pasv();
        raw.send("NLST");
        await raw.expectReply(150);
        assert.equal((await readAll(data)).toString(), "one.txt\r\n");
        await raw.expectReply(226);
      } finally {
        await raw.close();
      }
    });
  });

  it("LIST and NLST take a pattern in the last component (mget *.txt); a name that exists as written is that name", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await mkdir(join(home, "sub"));
      for (const f of ["a.txt", "b.txt", "c.log", ".dot.txt", "[1].txt"]) await writeFile(join(home, f), f);
      const outside = await outsideDir("berth-glob-outside-");
      await writeFile(join(outside, "secret.txt"), "secret");
      await writeFile(join(home, "sub", "s.txt"), "s");
      const raw = await rawLogin(t);
      const listing = async (line: string): Promise<string[]> => (await listedText(raw, line)).split("\r\n").filter(Boolean).sort();
      try {
        assert.deepEqual(await listing("NLST *.txt"), ["[1].txt", "a.txt", "b.txt"]);
        assert.deepEqual(await listing("NLST ?.t*"), ["a.txt", "b.txt"]);
        assert.deepEqual(await listing("NLST [ab].txt"), ["a.txt", "b.txt"]);
        assert.deepEqual(await listing("NLST .*.txt"), [".dot.txt"]);
        assert.deepEqual(await listing("NLST sub/*.txt"), ["sub/s.txt"]);
        assert.deepEqual(await listing("NLST /sub/*"), ["/sub/s.txt"]);
        assert.deepEqual(await listing("NLST *.none"), []);
        // "[1].txt" exists: it is that file, not the pattern "1.txt".
        assert.deepEqual(await listing("NLST [1].txt"), ["[1].txt"]);
        const long = await listing("LIST -l *.log");
        assert.equal(long.length, 1);
        assert.match(long[0] ?? "", /^-rw.* c\.log$/);
        await raw.expect("NLST missing/*.txt", 550);
        await raw.expect("NLST a.txt/*", 550);
        // Patterns stay in the jail: ".." stops at the home, a link to outside is refused.
        assert.deepEqual(await listing("NLST ../../*.log"), ["../../c.log"]);
        assert.deepEqual(await listing("LIST /../../*.log").then((l) => l.length), 1);
        await symlink(outside, join(home, "out"));
        await raw.expect("NLST out/*", 550);
        await raw.expect("LIST out/*.txt", 550);
        // A pattern made to backtrack, as long as a name may be, is answered like any other; a longer
        // one is a name no file can have.
        assert.deepEqual(await listing(`NLST ${"*a".repeat(127)}b`), []);
        await raw.expect(`NLST ${"*a".repeat(128)}b`, 550);
        // Every name NLST gave is one RETR takes.
        await raw.expect("TYPE I", 200);
        for (const name of await listing("NLST *.txt")) assert.equal(await retrieveText(raw, name), basename(name));
      } finally {
        await raw.close();
      }
    });
  });

  it('a pattern after a backslash is the last component, as "\\" is "/" in every path (sub\\*.txt)', async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      // sub/x is a directory: a ".." steps back out of a directory only.
      await mkdir(join(home, "sub", "x"), { recursive: true });
      for (const f of ["a.txt", "b.txt", "c.log"]) await writeFile(join(home, "sub", f), f);
      const raw = await rawLogin(t);
      const listing = async (line: string): Promise<string[]> => (await listedText(raw, line)).split("\r\n").filter(Boolean).sort();
      try {
        assert.deepEqual(await listing("NLST sub\\*.txt"), ["sub\\a.txt", "sub\\b.txt"]);
        assert.deepEqual(await listing("NLST /sub/x\\..\\*.log"), ["/sub/x\\..\\c.log"]);
        const long = await listing("LIST sub\\*.log");
        assert.equal(long.length, 1);
        assert.match(long[0] ?? "", /^-rw.* c\.log$/);
        // Each name is one RETR takes, as the client was given it.
        await raw.expect("TYPE I", 200);
        for (const name of await listing("NLST sub\\*.txt")) assert.equal(await retrieveText(raw, name), basename(name.replaceAll("\\", "/")));
      } finally {
        await raw.close();
      }
    });
  });

  it("NLST names can be used from where the client is: after a directory argument, as written", async () => {
    await withServer(async (t) => {
      await mkdir(join(t.home("alice"), "sub", "in"), { recursive: true });
      await writeFile(join(t.home("alice"), "sub", "f.txt"), "f");
      await writeFile(join(t.home("alice"), "top.txt"), "t");
      const raw = await rawLogin(t);
      const nlst = async (line: string): Promise<string[]> => {
        const data = await raw.pasv();
        raw.send(line);
        await raw.expectReply(150);
        const names = (await readAll(data)).toString().split("\r\n").filter(Boolean).sort();
        await raw.expectReply(226);
        return names;
      };
      try {
        assert.deepEqual(await nlst("NLST"), ["sub", "top.txt"]);
        assert.deepEqual(await nlst("NLST ."), ["sub", "top.txt"]);
        assert.deepEqual(await nlst("NLST sub"), ["sub/f.txt", "sub/in"]);
        assert.deepEqual(await nlst("NLST sub/"), ["sub/f.txt", "sub/in"]);
        assert.deepEqual(await nlst("NLST /sub"), ["/sub/f.txt", "/sub/in"]);
        assert.deepEqual(await nlst("NLST -a sub"), ["sub/f.txt", "sub/in"]);
        assert.deepEqual(await nlst("NLST sub/f.txt"), ["sub/f.txt"]);
        await raw.expect("CWD sub", 250);
        assert.deepEqual(await nlst("NLST .."), ["../sub", "../top.txt"]);
        // Each name listed is one RETR can take from here.
        await raw.expect("TYPE I", 200);
        for (const name of await nlst("NLST ..")) if (name.endsWith(".txt")) assert.equal(await retrieveText(raw, name), "t");
      } finally {
        await raw.close();
      }
    });
  });
});

describe("uploads and downloads", () => {
  it("round-trips a binary file and a UTF-8 name", async () => {
    await withServer(async (t) => {
      const client = await ftpLogin(t);
      try {
        const bin = payload(300_000);
        await upload(client, bin, "data.bin");
        assert.deepEqual(await readFile(join(t.home("alice"), "data.bin")), bin);
        assert.deepEqual(await download(client, "data.bin"), bin);
        await upload(client, "ü日本", UTF8_NAME);
        assert.equal(await readFile(join(t.home("alice"), UTF8_NAME), "utf8"), "ü日本");
        assert.equal((await download(client, UTF8_NAME)).toString(), "ü日本");
        const names = (await client.list()).map((f) => f.name);
        assert.ok(names.includes(UTF8_NAME), names.join(","));
        assert.equal(await client.size(UTF8_NAME), Buffer.byteLength("ü日本"));
      } finally {
        client.close();
      }
    });
  });

  it("replaces an existing file", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "r.txt"), "old content");
      const client = await ftpLogin(t);
      try {
        await upload(client, "new", "r.txt");
        assert.equal(await readFile(join(t.home("alice"), "r.txt"), "utf8"), "new");
        assert.deepEqual((await client.list()).map((f) => f.name), ["r.txt"]);
      } finally {
        client.close();
      }
    });
  });

  it("resumes a download with REST + RETR", async () => {
    await withServer(async (t) => {
      const bin = payload(10_000);
      await writeFile(join(t.home("alice"), "d.bin"), bin);
      const client = await ftpLogin(t);
      try {
        assert.deepEqual(await download(client, "d.bin", 4321), bin.subarray(4321));
        assert.deepEqual(await download(client, "d.bin", 10_000), Buffer.alloc(0));
      } finally {
        client.close();
      }
    });
  });

  it("resumes an upload with REST + STOR and with APPE", async () => {
    await withServer(async (t) => {
      const bin = payload(20_000);
      const target = join(t.home("alice"), "u.bin");
      await writeFile(target, bin.subarray(0, 5000));
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        await raw.expect("REST 3000", 350);
        let data = await raw.pasv();
        raw.send("STOR u.bin");
        await raw.expectReply(150);
        await writeAll(data, bin.subarray(3000, 12_000));
        await raw.expectReply(226);
        assert.deepEqual(await readFile(target), bin.subarray(0, 12_000));
        data = await raw.pasv();
        raw.send("APPE u.bin");
        await raw.expectReply(150);
        await writeAll(data, bin.subarray(12_000));
        await raw.expectReply(226);
        assert.deepEqual(await readFile(target), bin);
      } finally {
        await raw.close();
      }
    });
  });

  it("APPE creates a missing file and appends to an existing one (basic-ftp)", async () => {
    await withServer(async (t) => {
      const client = await ftpLogin(t);
      try {
        await client.appendFrom(Readable.from([Buffer.from("ab")]), "ap.txt");
        await client.appendFrom(Readable.from([Buffer.from("cd")]), "ap.txt");
        assert.equal(await readFile(join(t.home("alice"), "ap.txt"), "utf8"), "abcd");
      } finally {
        client.close();
      }
    });
  });

  it("STOU stores under a unique name and says which", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "up.txt"), "taken");
      const raw = await rawLogin(t);
      try {
        const data = await raw.pasv();
        raw.send("STOU up.txt");
        const opening = await raw.expectReply(150);
        const m = /FILE: (\S+)/.exec(opening.message);
        assert.ok(m, opening.message);
        assert.notEqual(m[1], "up.txt");
        await writeAll(data, "unique");
        const done = await raw.expectReply(226);
        assert.ok(done.message.includes(m[1] as string), done.message);
        assert.equal(await readFile(join(t.home("alice"), m[1] as string), "utf8"), "unique");
        assert.equal(await readFile(join(t.home("alice"), "up.txt"), "utf8"), "taken");
      } finally {
        await raw.close();
      }
    });
  });

  it("STOU with a path stores in that path's directory, named by its whole path when not the cwd", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await mkdir(join(home, "sub"));
      await writeFile(join(home, "sub", "up.txt"), "taken");
      const raw = await rawLogin(t);
      const stou = async (line: string, body: string): Promise<string> => {
        const data = await raw.pasv();
        raw.send(line);
        const m = /FILE: (\S+)/.exec((await raw.expectReply(150)).message);
        assert.ok(m);
        await writeAll(data, body);
        const done = await raw.expectReply(226);
        assert.ok(done.message.includes(m[1] as string), done.message);
        return m[1] as string;
      };
      try {
        const named = await stou("STOU sub/up.txt", "in sub");
        assert.equal(named, "/sub/up.txt.1");
        assert.equal(await readFile(join(home, "sub", "up.txt.1"), "utf8"), "in sub");
        assert.equal(await readFile(join(home, "sub", "up.txt"), "utf8"), "taken");
        await assert.rejects(readFile(join(home, "up.txt")), { code: "ENOENT" });
        // From inside the directory, the bare name.
        await raw.expect("CWD sub", 250);
        assert.equal(await stou("STOU up.txt", "here"), "up.txt.2");
        assert.equal(await stou("STOU /new.txt", "top"), "/new.txt");
        assert.equal(await readFile(join(home, "new.txt"), "utf8"), "top");
        // Into a directory that does not exist: a plain refusal, no data connection used.
        await raw.pasv();
        await raw.expect("STOU /missing/x", 550);
        // Out of the jail: ".." stops at the home; a link to outside is refused, and so is an
        // overlong name; nothing is made outside and the session goes on.
        assert.equal(await stou("STOU ../../../esc.txt", "kept in"), "/esc.txt");
        assert.equal(await readFile(join(home, "esc.txt"), "utf8"), "kept in");
        const outside = await outsideDir("berth-stou-outside-");
        await symlink(outside, join(home, "out"));
        await raw.pasv();
        await raw.expect("STOU /out/x", 550);
        await raw.pasv();
        await raw.expect(`STOU ${"n".repeat(300)}`, 553);
        assert.deepEqual(await readdir(outside), []);
        await raw.expect("PWD", 257);
      } finally {
        await raw.close();
      }
    });
  });

  it("LIST -d and NLST -d give a directory itself, not its entries; other options are ignored", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await mkdir(join(home, "sub"));
      await writeFile(join(home, "sub", "inner.txt"), "i");
      await writeFile(join(home, "f.txt"), "f");
      const raw = await rawLogin(t);
      const listing = async (line: string): Promise<string[]> => (await listedText(raw, line)).split("\r\n").filter(Boolean).sort();
      try {
        const sub = await listing("LIST -ld sub");
        assert.equal(sub.length, 1);
        assert.match(sub[0] ?? "", /^d.* sub$/);
        const here = await listing("LIST -d");
        assert.equal(here.length, 1);
        assert.match(here[0] ?? "", /^d.* \.$/);
        assert.match((await listing("LIST -a -d /sub"))[0] ?? "", /^d.* \/sub$/);
        assert.deepEqual(await listing("NLST -d sub"), ["sub"]);
        // A file is itself either way; a pattern picks entries without going into directories.
        assert.match((await listing("LIST -d f.txt"))[0] ?? "", /^-.* f\.txt$/);
        assert.deepEqual((await listing("LIST -d s*")).map((l) => l.replace(/^d.* /, "")), ["sub"]);
        // Without -d, the entries.
        assert.match((await listing("LIST -la sub"))[0] ?? "", /inner\.txt$/);
        // "--" ends the options, as in ls: what follows is a name, even one that starts with "-".
        await mkdir(join(home, "-dash"));
        await writeFile(join(home, "-dash", "in-dash.txt"), "d");
        await writeFile(join(home, "-l"), "l");
        assert.deepEqual((await listing("LIST -- -dash")).map((l) => l.replace(/^-.* /, "")), ["in-dash.txt"]);
        assert.deepEqual((await listing("LIST -la -- -dash")).map((l) => l.replace(/^-.* /, "")), ["in-dash.txt"]);
        assert.match((await listing("LIST -ld -- -dash"))[0] ?? "", /^d.* -dash$/);
        assert.deepEqual((await listing("LIST -- -l")).map((l) => l.replace(/^-.* /, "")), ["-l"]);
        assert.deepEqual(await listing("NLST -- -dash"), ["-dash/in-dash.txt"]);
        await raw.pasv();
        await raw.expect("LIST -d missing", 550);
        // Out of the jail: ".." stops at the home, a link to outside is refused, an overlong name too.
        assert.match((await listing("LIST -d ../../.."))[0] ?? "", /^d.* \.\.\/\.\.\/\.\.$/);
        const outside = await outsideDir("berth-listd-outside-");
        await symlink(outside, join(home, "out"));
        await raw.pasv();
        await raw.expect("LIST -d out", 550);
        await raw.pasv();
        await raw.expect(`LIST -d ${"n".repeat(300)}`, 550);
        await raw.expect("STAT -d out", 550);
        // STAT -d over the control connection too.
        const st = await raw.expect("STAT -d sub", 213);
        assert.equal(st.lines.length, 3, st.lines.join("\n"));
        assert.match(st.lines[1] ?? "", /^ d.* sub$/);
      } finally {
        await raw.close();
      }
    });
  });

  it("STOU from sessions at once on a slow disk (file calls through the thread pool): each gets a name of its own, none 550 File exists", async () => {
    await withServer(async (t) => {
      const clients = await Promise.all([1, 2, 3, 4].map(() => rawLogin(t)));
      try {
        const names: string[] = [];
        for (let round = 0; round < 3; round++) {
          // A slow disk turns the synchronous file calls off, so sessions' look and create interleave.
          backOff(5000);
          const socks = await Promise.all(clients.map((c) => c.pasv()));
          for (const c of clients) c.send("STOU up.txt");
          const openings = await Promise.all(clients.map((c) => c.reply()));
          for (const [i, c] of clients.entries()) {
            const opening = openings[i] as Reply;
            assert.equal(opening.code, 150, opening.lines.join(" | "));
            const name = /FILE: (\S+)/.exec(opening.message)?.[1] ?? "";
            await writeAll(socks[i] as Socket, `from ${round}.${i}`);
            assert.ok((await c.expectReply(226)).message.includes(name));
            assert.equal(await readFile(join(t.home("alice"), name), "utf8"), `from ${round}.${i}`);
            names.push(name);
          }
        }
        assert.equal(new Set(names).size, 12);
      } finally {
        backOff(0);
        for (const c of clients) await c.close();
      }
    });
  });

  it("TYPE A converts LF to CRLF on RETR and CRLF to LF on STOR", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "unix.txt"), "a\nb\r\nc\n");
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE A", 200);
        assert.equal(await retrieveText(raw, "unix.txt"), "a\r\nb\r\nc\r\n");
        const data = await raw.pasv();
        raw.send("STOR dos.txt");
        await raw.expectReply(150);
        await writeAll(data, "x\r\ny\r\n\r\nz");
        await raw.expectReply(226);
        assert.equal(await readFile(join(t.home("alice"), "dos.txt"), "utf8"), "x\ny\n\nz");
        await raw.expect("TYPE I", 200);
        assert.equal(await retrieveText(raw, "unix.txt"), "a\nb\r\nc\n");
      } finally {
        await raw.close();
      }
    });
  });
});

describe("restart markers and TYPE A", () => {
  it("TYPE A refuses SIZE and resuming (they would count the file's bytes, not the stream's); TYPE I allows both", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "a.txt"), "hello\nworld\n");
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE A", 200);
        assert.match((await raw.expect("SIZE a.txt", 550)).message, /ASCII mode/);
        await raw.expect("SIZE missing.txt", 550);
        assert.match((await raw.expect("REST 7", 501)).message, /ASCII mode/);
        await raw.expect("REST 0", 350);
        assert.equal(await retrieveText(raw, "a.txt"), "hello\r\nworld\r\n");
        // A marker set in TYPE I does not carry into a TYPE A transfer.
        await raw.expect("TYPE I", 200);
        await raw.expect("SIZE a.txt", 213);
        await raw.expect("REST 7", 350);
        await raw.expect("TYPE A", 200);
        const data = await raw.pasv();
        assert.match((await raw.expect("RETR a.txt", 554)).message, /ASCII mode/);
        data.destroy();
        await raw.expect("TYPE I", 200);
        await raw.expect("REST 7", 350);
        assert.equal(await retrieveText(raw, "a.txt"), "orld\n");
      } finally {
        await raw.close();
      }
    });
  });

  it("APPE after REST acts exactly as STOR (RFC 3659 §5.3); APPE alone appends", async () => {
    await withServer(async (t) => {
      const file = join(t.home("alice"), "r.txt");
      await writeFile(file, "123456");
      const raw = await rawLogin(t);
      const send = async (line: string, body: string): Promise<void> => {
        const data = await raw.pasv();
        raw.send(line);
        await raw.expectReply(150);
        await writeAll(data, body);
        await raw.expectReply(226);
      };
      try {
        await raw.expect("TYPE I", 200);
        await raw.expect("REST 2", 350);
        await send("APPE r.txt", "XY");
        assert.equal(await readFile(file, "utf8"), "12XY");
        await send("APPE r.txt", "Z");
        assert.equal(await readFile(file, "utf8"), "12XYZ");
        // Past the end, as for STOR: 554 before any data, the file untouched.
        await raw.expect("REST 99", 350);
        const data = await raw.pasv();
        await raw.expect("APPE r.txt", 554);
        data.destroy();
        assert.equal(await readFile(file, "utf8"), "12XYZ");
      } finally {
        await raw.close();
      }
    });
  });
});

describe("directory and file commands", () => {
  it("mkdir, cwd, pwd, rename, delete, rmdir", async () => {
    await withServer(async (t) => {
      const client = await ftpLogin(t);
      try {
        await client.send("MKD Ordner ü");
        await client.cd("Ordner ü");
        assert.equal(await client.pwd(), "/Ordner ü");
        await upload(client, "x", "f.txt");
        await client.rename("f.txt", "g.txt");
        assert.deepEqual((await client.list()).map((f) => f.name), ["g.txt"]);
        await client.rename("g.txt", "/top.txt");
        await client.cdup();
        assert.equal(await client.pwd(), "/");
        await client.remove("top.txt");
        await client.removeEmptyDir("Ordner ü");
        assert.deepEqual(await client.list(), []);
        await assert.rejects(client.cd("nope"), (e: FTPError) => e.code === 550);
        await assert.rejects(client.remove("nope"), (e: FTPError) => e.code === 550);
      } finally {
        client.close();
      }
    });
  });

  it("SIZE, MDTM and MFMT", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "s.bin"), payload(777));
      const client = await ftpLogin(t);
      try {
        assert.equal(await client.size("s.bin"), 777);
        const r = await client.send("MFMT 20210304050607 s.bin");
        assert.equal(r.code, 213);
        assert.match(r.message, /^213 Modify=20210304050607; s\.bin/);
        assert.equal((await client.lastMod("s.bin")).toISOString(), "2021-03-04T05:06:07.000Z");
        const st = await stat(join(t.home("alice"), "s.bin"));
        assert.equal(st.mtime.toISOString(), "2021-03-04T05:06:07.000Z");
        await assert.rejects(client.size("missing"), (e: FTPError) => e.code === 550);
        await assert.rejects(client.send("MFMT 2021 s.bin"), (e: FTPError) => e.code === 501);
      } finally {
        client.close();
      }
    });
  });

  it("MFMT with a time and no path is 501 and sets the time of nothing (not the current directory's)", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await mkdir(join(home, "d"));
      const then = new Date("2010-01-01T00:00:00Z");
      await utimes(home, then, then);
      await utimes(join(home, "d"), then, then);
      const raw = await rawLogin(t);
      try {
        await raw.expect("MFMT 20000101000000 ", 501);
        await raw.expect("CWD d", 250);
        await raw.expect("MFMT 20000101000000 ", 501);
        assert.equal((await stat(home)).mtime.toISOString(), then.toISOString());
        assert.equal((await stat(join(home, "d"))).mtime.toISOString(), then.toISOString());
      } finally {
        await raw.close();
      }
    });
  });

  it("MFMT and MDTM with a time answer the time the file now has, which is what MDTM then says, also where the filesystem cannot keep the time asked for", async () => {
    await withServer(async (t) => {
      const file = join(t.home("alice"), "t.bin");
      await writeFile(file, "t");
      const raw = await rawLogin(t);
      try {
        // Year 1000 and 9999 are valid times (RFC 3659 §2.3); ext4 keeps 1901..2446, tmpfs all.
        for (const command of ["MFMT 10000101000000 t.bin", "MFMT 99991231235959 t.bin", "MDTM 10000101000000 t.bin", "MFMT 20200101000000.999 t.bin"]) {
          const set = await raw.expect(command, 213);
          const now = (await raw.expect("MDTM t.bin", 213)).message;
          assert.equal(set.message, `Modify=${now}; t.bin`, command);
          const kept = (await stat(file)).mtime;
          assert.equal(now, kept.toISOString().replace(/[-T:]/g, "").slice(0, 14), command);
        }
      } finally {
        await raw.close();
      }
    });
  });

  it("MDTM with a time sets it, as MFMT and SITE UTIME do; anything else asks for the time of the whole argument", async () => {
    await withServer(async (t) => {
      // Before login: 530, nothing touched.
      const early = await RawClient.connect(t.port);
      try {
        await early.expect("MDTM 20200101000000 s.bin", 530);
        await early.expect("SITE UTIME 20200101000000 s.bin", 530);
      } finally {
        await early.close();
      }
      const home = t.home("alice");
      await writeFile(join(home, "s.bin"), payload(10));
      await writeFile(join(home, "with space.txt"), "x");
      await writeFile(join(home, "2021 notes.txt"), "y");
      const raw = await rawLogin(t);
      try {
        assert.match((await raw.expect("MDTM 20210304050607 s.bin", 213)).message, /^Modify=20210304050607; s\.bin$/);
        assert.equal((await stat(join(home, "s.bin"))).mtime.toISOString(), "2021-03-04T05:06:07.000Z");
        assert.equal((await raw.expect("MDTM s.bin", 213)).message, "20210304050607");
        // Milliseconds, and a path with a space.
        await raw.expect("MDTM 19991231235959.5 with space.txt", 213);
        assert.equal((await stat(join(home, "with space.txt"))).mtime.toISOString(), "1999-12-31T23:59:59.500Z");
        assert.equal((await raw.expect("MDTM with space.txt", 213)).message, "19991231235959");
        // Not a valid time (a 13th month, too few digits): the whole argument is a name.
        await raw.expect("MDTM 20211304050607 s.bin", 550);
        assert.match((await raw.expect("MDTM 2021 notes.txt", 213)).message, /^\d{14}/);
        // The set form on a missing file, or outside the jail, changes nothing.
        await raw.expect("MDTM 20210304050607 missing.bin", 550);
        await raw.expect("MDTM 20210304050607 ../../etc/passwd", 550);
      } finally {
        await raw.close();
      }
      // SITE UTIME, in ProFTPD's and pure-ftpd's two forms (UTC; only the modification time).
      const raw2 = await rawLogin(t);
      try {
        await raw2.expect("SITE UTIME 202202030405 s.bin", 200);
        assert.equal((await stat(join(home, "s.bin"))).mtime.toISOString(), "2022-02-03T04:05:00.000Z");
        await raw2.expect("SITE UTIME 20230405060708 with space.txt", 200);
        assert.equal((await stat(join(home, "with space.txt"))).mtime.toISOString(), "2023-04-05T06:07:08.000Z");
        await raw2.expect("SITE UTIME with space.txt 20000101000000 20240506070809 20000101000000 UTC", 200);
        assert.equal((await stat(join(home, "with space.txt"))).mtime.toISOString(), "2024-05-06T07:08:09.000Z");
        // A time that is none (month 13, February 30) is refused in any place, not only the one set.
        const invalid = ["20221301000000", "20230230000000"];
        for (const bad of ["SITE UTIME", "SITE UTIME s.bin", "SITE UTIME 2022 s.bin", "SITE UTIME 20221301000000 s.bin", "SITE UTIME s.bin 1 2 3 UTC"]
          .concat(invalid.map((t) => `SITE UTIME s.bin ${t} 20240506070809 20000101000000 UTC`))
          .concat(invalid.map((t) => `SITE UTIME s.bin 20000101000000 20240506070809 ${t} UTC`))) {
          await raw2.expect(bad, 501);
        }
        assert.equal((await stat(join(home, "s.bin"))).mtime.toISOString(), "2022-02-03T04:05:00.000Z");
        await raw2.expect("SITE UTIME 20230405060708 missing.bin", 550);
        // Bad names, as for every path command: too long (no such file), a control character.
        for (const verb of ["MDTM", "SITE UTIME"]) {
          await raw2.expect(`${verb} 20230405060708 ${"x".repeat(300)}`, 550);
          await raw2.expect(`${verb} 20230405060708 a\u0000b`, 501);
        }
        await raw2.expect("SITE UTIME 20230405060708 ../../etc/passwd", 550);
        const help = await raw2.expect("SITE HELP", 214);
        assert.match(help.lines.join("\n"), /UTIME YYYYMMDDhhmm\[ss\] <path>/);
      } finally {
        await raw2.close();
      }
      // Setting needs overwrite: bob (read-only) may ask but not set.
      const bob = await rawLogin(t, "bob");
      try {
        await writeFile(join(t.home("bob"), "b.txt"), "b");
        await bob.expect("MDTM b.txt", 213);
        await bob.expect("MDTM 20200101000000 b.txt", 550);
        await bob.expect("SITE UTIME 20200101000000 b.txt", 550);
        assert.notEqual((await stat(join(t.home("bob"), "b.txt"))).mtime.getUTCFullYear(), 2020);
      } finally {
        await bob.close();
      }
    });
  });

  it("MDTM of a name that itself starts with a time and a space answers its time and sets no other file's time", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      const named = join(home, "20240101120000 clip.mp4");
      const other = join(home, "clip.mp4");
      await writeFile(named, "a");
      await writeFile(other, "b");
      await utimes(named, new Date("2022-02-02T02:02:02Z"), new Date("2022-02-02T02:02:02Z"));
      await utimes(other, new Date("2021-01-01T00:00:00Z"), new Date("2021-01-01T00:00:00Z"));
      const raw = await rawLogin(t);
      try {
        // curl -R and lftp's mirror ask this way for the time of the file they fetch.
        assert.equal((await raw.expect("MDTM 20240101120000 clip.mp4", 213)).message, "20220202020202");
        assert.equal((await stat(other)).mtime.toISOString(), "2021-01-01T00:00:00.000Z");
        assert.equal((await stat(named)).mtime.toISOString(), "2022-02-02T02:02:02.000Z");
        // With no such name, the same form sets the time of the path after the time.
        await rm(named);
        assert.match((await raw.expect("MDTM 20240101120000 clip.mp4", 213)).message, /^Modify=20240101120000; clip\.mp4$/);
        assert.equal((await stat(other)).mtime.toISOString(), "2024-01-01T12:00:00.000Z");
      } finally {
        await raw.close();
      }
      // A read-only user may ask for the time of such a name (no overwrite needed), and still
      // cannot set one.
      const bobNamed = join(t.home("bob"), "20240101120000 b.txt");
      await writeFile(bobNamed, "b");
      await writeFile(join(t.home("bob"), "b.txt"), "b");
      await utimes(bobNamed, new Date("2022-02-02T02:02:02Z"), new Date("2022-02-02T02:02:02Z"));
      const bob = await rawLogin(t, "bob");
      try {
        assert.equal((await bob.expect("MDTM 20240101120000 b.txt", 213)).message, "20220202020202");
        await bob.expect("MDTM 20200101000000 b.txt", 550);
      } finally {
        await bob.close();
      }
    });
    // A hidden name is no name: the set form goes on to the file after the time, as if it were
    // not there.
    await withServer(
      async (t) => {
        const home = t.home("alice");
        await writeFile(join(home, "20240101120000 clip.mp4.part"), "a");
        await writeFile(join(home, "clip.mp4.part"), "b");
        const raw = await rawLogin(t);
        try {
          await raw.expect("MDTM 20240101120000 clip.mp4.part", 213);
          assert.equal((await stat(join(home, "clip.mp4.part"))).mtime.toISOString(), "2024-01-01T12:00:00.000Z");
        } finally {
          await raw.close();
        }
      },
      { config: { storage: { hide: "20*" } } },
    );
  });
});

describe("read-only user", () => {
  it("refuses every write verb with 550 and leaves the files alone", async () => {
    await withServer(async (t) => {
      const home = t.home("bob");
      await writeFile(join(home, "keep.txt"), "keep");
      const raw = await rawLogin(t, "bob");
      try {
        for (const line of [
          "STOR new.txt",
          "APPE keep.txt",
          "STOU",
          "DELE keep.txt",
          "MKD d",
          "XMKD d",
          "RMD /",
          "XRMD x",
          "RNFR keep.txt",
          "RNTO other.txt",
          "MFMT 20200101000000 keep.txt",
          "MDTM 20200101000000 keep.txt",
          "SITE UTIME 20200101000000 keep.txt",
          "SITE CHMOD 777 keep.txt",
        ]) {
          // RNTO after the refused RNFR has nothing to rename: a bad sequence, as for anyone.
          await raw.expect(line, line.startsWith("RNTO") ? 503 : 550);
        }
        assert.equal(await retrieveText(raw, "keep.txt"), "keep");
        assert.equal(await readFile(join(home, "keep.txt"), "utf8"), "keep");
      } finally {
        await raw.close();
      }
    });
  });

  it("basic-ftp sees 550 on upload", async () => {
    await withServer(async (t) => {
      const client = await ftpLogin(t, "bob");
      try {
        await assert.rejects(upload(client, "x", "x.txt"), (e: FTPError) => e.code === 550);
        assert.equal(await client.pwd(), "/");
      } finally {
        client.close();
      }
    });
  });
});
