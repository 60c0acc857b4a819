/**
 * A table of jail attacks over FTP (SPEC: no path, "..", absolute path, backslash, NUL or symlink
 * lets a user read, write, list or rename anything outside their home). Every command that takes a
 * path is tried with every attack; afterwards nothing outside the home has changed, no data or
 * reply carried anything from outside, and no reply named a real server path.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { createServer } from "node:net";
import { lstat, mkdir, readdir, readFile, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { RawClient, Reply } from "./helpers/raw.ts";
import { listedText, readAll, retrieveText, writeAll } from "./helpers/raw.ts";
import { startSwapper } from "./helpers/swapper.ts";
import { rawLogin, withServer } from "./helpers/run.ts";
import type { TestServer } from "./helpers/server.ts";

const SECRET = "TOPSECRET-outside-the-jail";
/** The uid and gid of "nobody", an account that owns nothing here. */
const NOBODY = 65534;
/** A name no fixture uses: if it shows up anywhere outside the home, a write escaped. */
const MARK = "pwned-by-jail-test";

/** Paths that try to leave the home. `link`: names a symlink planted in the home ("self") or goes
 * through one ("through"). */
const ATTACKS: readonly { path: string; link?: "self" | "through" }[] = [
  { path: ".." },
  { path: "../.." },
  { path: "../../outside/secret.txt" },
  { path: "../../../../../../../../etc/passwd" },
  { path: "/../../outside/secret.txt" },
  { path: "/etc/passwd" },
  { path: "..\\..\\outside\\secret.txt" },
  { path: "\\..\\..\\outside" },
  { path: "%2e%2e/%2e%2e/outside/secret.txt" },
  { path: "..%2f..%2foutside" },
  { path: "dir/../../../outside/secret.txt" },
  { path: "....//....//outside" },
  { path: "./../.././outside/" },
  { path: "~" },
  { path: "~root/.ssh" },
  { path: "~/../../outside/secret.txt" },
  { path: "~/../bob/bob.txt" },
  { path: `~\\..\\..\\${MARK}` },
  { path: "../bob/bob.txt" },
  { path: `../../${MARK}` },
  { path: `..\\..\\..\\${MARK}` },
  { path: "x".repeat(300) },
  { path: "a/".repeat(1900) + MARK },
  { path: "evil-file", link: "self" },
  { path: "evil-dir", link: "self" },
  { path: "evil-dir/secret.txt", link: "through" },
  { path: `evil-dir/${MARK}`, link: "through" },
  { path: "evil-abs/secret.txt", link: "through" },
  { path: "evil-parent/outside/secret.txt", link: "through" },
  { path: "evil-bob/bob.txt", link: "through" },
  { path: "evil-dangling", link: "self" },
  { path: "evil-loop", link: "self" },
  { path: "dir/evil-up/outside", link: "through" },
];

/** Lays out: <root>/outside (secret), bob's home, and alice's home with links pointing out. */
async function plant(t: TestServer): Promise<void> {
  const outside = join(t.root, "outside");
  await mkdir(outside, { recursive: true });
  await writeFile(join(outside, "secret.txt"), SECRET);
  await writeFile(join(t.home("bob"), "bob.txt"), "bob's");
  const home = t.home("alice");
  await writeFile(join(home, "inside.txt"), "inside");
  await mkdir(join(home, "dir"));
  await symlink("../../outside/secret.txt", join(home, "evil-file"));
  await symlink("../../outside", join(home, "evil-dir"));
  await symlink(outside, join(home, "evil-abs"));
  await symlink("../..", join(home, "evil-parent"));
  await symlink("../bob", join(home, "evil-bob"));
  await symlink(join(outside, MARK), join(home, "evil-dangling"));
  await symlink("evil-loop", join(home, "evil-loop"));
  await symlink("../../..", join(home, "dir", "evil-up"));
}

/** Everything outside alice's home (names, sizes, contents of small files). */
async function snapshot(t: TestServer): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const p = join(dir, name);
      if (p === t.home("alice")) continue;
      const st = await lstat(p);
      out.push(`${p} ${st.mode} ${st.size} ${st.mtimeMs}`);
      if (st.isDirectory()) await walk(p);
      else if (st.isFile()) out.push(await readFile(p, "utf8"));
    }
  };
  await walk(t.root);
  return out;
}

/** Every reply and data byte one command produced. */
interface Outcome {
  readonly replies: Reply[];
  readonly data: string;
}

async function attempt(raw: RawClient, line: string, data: "read" | "write" | "none"): Promise<Outcome> {
  const sock = data === "none" ? null : await raw.pasv();
  const first = await raw.cmd(line);
  const replies = [first];
  let got = "";
  if (first.code === 150 && sock) {
    if (data === "write") sock.end(`${MARK} ${SECRET}`);
    got = (await readAll(sock)).toString("utf8");
    replies.push(await raw.reply());
  }
  sock?.destroy();
  return { replies, data: got };
}

/** Checks what a client saw: nothing from outside, no real path. */
function assertClean(t: TestServer, line: string, o: Outcome): void {
  const all = o.replies.flatMap((r) => r.lines).join("\n") + o.data;
  for (const bad of [t.root, SECRET, "root:x:0:0", "bob's", "bob.txt"]) {
    assert.ok(!all.includes(bad), `${JSON.stringify(line)} revealed ${JSON.stringify(bad)}:\n${all}`);
  }
}

/** Checks the code: symlinks out of the jail are refused (except verbs that act on the link itself). */
function assertRefused(line: string, o: Outcome): void {
  const last = o.replies[o.replies.length - 1] as Reply;
  assert.ok(last.code >= 400, `${JSON.stringify(line)} was allowed: ${o.replies.map((r) => r.lines.join("|")).join(" / ")}`);
}

type Runner = (raw: RawClient, path: string, home: string) => Promise<Outcome>;

/** Commands that take a path, each with how it is run and whether it may act on a link itself
 * (delete or rename the link, never its target). */
const COMMANDS: Record<string, { run: Runner; onLink?: true }> = {
  LIST: { run: (r, p) => attempt(r, `LIST ${p}`, "read") },
  NLST: { run: (r, p) => attempt(r, `NLST ${p}`, "read") },
  MLSD: { run: (r, p) => attempt(r, `MLSD ${p}`, "read") },
  MLST: { run: (r, p) => attempt(r, `MLST ${p}`, "none") },
  STAT: { run: (r, p) => attempt(r, `STAT ${p}`, "none") },
  RETR: { run: (r, p) => attempt(r, `RETR ${p}`, "read") },
  SIZE: { run: (r, p) => attempt(r, `SIZE ${p}`, "none") },
  MDTM: { run: (r, p) => attempt(r, `MDTM ${p}`, "none") },
  STOR: { run: (r, p) => attempt(r, `STOR ${p}`, "write") },
  APPE: { run: (r, p) => attempt(r, `APPE ${p}`, "write") },
  MKD: { run: (r, p) => attempt(r, `MKD ${p}`, "none") },
  RMD: { run: (r, p) => attempt(r, `RMD ${p}`, "none") },
  MFMT: { run: (r, p) => attempt(r, `MFMT 20000101000000 ${p}`, "none") },
  "MDTM (set)": { run: (r, p) => attempt(r, `MDTM 20000101000000 ${p}`, "none") },
  CHMOD: { run: (r, p) => attempt(r, `SITE CHMOD 777 ${p}`, "none") },
  UTIME: { run: (r, p) => attempt(r, `SITE UTIME 20000101000000 ${p}`, "none") },
  DELE: { run: (r, p) => attempt(r, `DELE ${p}`, "none"), onLink: true },
  CWD: { run: cwdThenLook },
  RNFR: { run: renameFrom, onLink: true },
  RNTO: { run: renameTo, onLink: true },
};

/** CWD, then PWD and LIST where it landed: still inside, nothing from outside listed. */
async function cwdThenLook(raw: RawClient, path: string): Promise<Outcome> {
  const cwd = await attempt(raw, `CWD ${path}`, "none");
  const pwd = await raw.cmd("PWD");
  const look = await attempt(raw, "LIST -a", "read");
  await raw.expect("CWD /", 250);
  assert.match(pwd.message, /^"\//);
  return { replies: [...look.replies, pwd, ...cwd.replies], data: look.data };
}

/** RNFR <attack> RNTO <inside>: may rename a link itself, never what it points to. */
async function renameFrom(raw: RawClient, path: string): Promise<Outcome> {
  const from = await attempt(raw, `RNFR ${path}`, "none");
  if (from.replies[0]?.code !== 350) return from;
  const to = await attempt(raw, `RNTO moved-${Math.random().toString(36).slice(2)}`, "none");
  return { replies: [...from.replies, ...to.replies], data: "" };
}

/** RNFR <a fresh inside file> RNTO <attack>: the file never lands outside. */
async function renameTo(raw: RawClient, path: string, home: string): Promise<Outcome> {
  await writeFile(join(home, "source.txt"), "source");
  await raw.expect("RNFR source.txt", 350);
  return attempt(raw, `RNTO ${path}`, "none");
}

async function outsideUnchanged(t: TestServer, before: string[]): Promise<void> {
  assert.deepEqual(await snapshot(t), before);
  await assert.rejects(lstat(join("/tmp", MARK)));
  await assert.rejects(lstat(join("/", MARK)));
}

describe("jail: every path command against every attack", () => {
  for (const [verb, cmd] of Object.entries(COMMANDS)) {
    it(verb, async () => {
      await withServer(async (t) => {
        await plant(t);
        const before = await snapshot(t);
        const raw = await rawLogin(t);
        try {
          await raw.expect("TYPE I", 200);
          for (const attack of ATTACKS) {
            const o = await cmd.run(raw, attack.path, t.home("alice"));
            assertClean(t, `${verb} ${attack.path}`, o);
            const mustRefuse = attack.link === "through" || (attack.link === "self" && !cmd.onLink);
            if (mustRefuse) assertRefused(`${verb} ${attack.path}`, verb === "CWD" ? { replies: o.replies.slice(-1), data: "" } : o);
          }
          await raw.expect("NOOP", 200);
        } finally {
          await raw.close();
        }
        await outsideUnchanged(t, before);
      });
    });
  }
});

describe("jail: details", () => {
  it("a NUL byte in a path is refused and the session goes on", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        for (const verb of ["RETR", "STOR", "CWD", "MKD", "DELE", "SIZE", "RNFR"]) {
          raw.sendRaw(Buffer.from(`${verb} inside.txt\0../../outside\r\n`));
          assert.ok((await raw.reply()).code >= 500);
        }
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
    });
  });

  it("a path of thousands of missing segments is answered quickly", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        const started = Date.now();
        raw.sendRaw(`CWD ${"a/".repeat(1900)}x\r\n`.repeat(20));
        for (let i = 0; i < 20; i++) await raw.expectReply(550);
        assert.ok(Date.now() - started < 3000, `${Date.now() - started} ms`);
      } finally {
        await raw.close();
      }
    });
  });

  it("a symlink inside the home that stays inside works (SIZE, RETR, a replacing STOR, CWD); paths under a file or a missing directory are refused", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await writeFile(join(home, "real.txt"), "real");
      await mkdir(join(home, "d"));
      await symlink("real.txt", join(home, "alias.txt"));
      await symlink("d", join(home, "dlink"));
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        await raw.expect("SIZE alias.txt", 213);
        assert.equal(await retrieveText(raw, "alias.txt"), "real");
        // A replacing upload through the link replaces the file it points to; the link stays.
        let data = await raw.pasv();
        raw.send("STOR alias.txt");
        await raw.expectReply(150);
        data.end("new");
        await raw.expectReply(226);
        assert.equal(await readFile(join(home, "real.txt"), "utf8"), "new");
        assert.ok((await lstat(join(home, "alias.txt"))).isSymbolicLink());
        // Under a file, or below a missing directory: a plain refusal, nothing created.
        for (const [cmd, message] of [
          ["STOR real.txt/x", "Not a directory"],
          ["STOR no/such/dir/x", "No such file or directory"],
          ["RETR no/such/dir/x", "No such file or directory"],
        ] as const) {
          data = await raw.pasv();
          assert.equal((await raw.expect(cmd, 550)).message, message, cmd);
          data.destroy();
        }
        assert.deepEqual((await readdir(home)).sort(), ["alias.txt", "d", "dlink", "real.txt"]);
        await raw.expect("CWD dlink", 250);
        assert.equal((await raw.expect("PWD", 257)).message, '"/dlink" is the current directory');
      } finally {
        await raw.close();
      }
    });
  });

  it("MLST of a link to a directory shows the entry MLSD lists: a link, removed by DELE, not RMD", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await mkdir(join(home, "d"));
      await writeFile(join(home, "f.txt"), "f");
      await symlink("d", join(home, "dl"));
      await symlink("f.txt", join(home, "fl"));
      const raw = await rawLogin(t);
      try {
        const listed = (await listedText(raw, "MLSD")).split("\r\n");
        for (const name of ["dl", "fl", "d"]) {
          // The facts, before the name (MLST names the entry by its whole path).
          const mlsd = listed.find((l) => l.endsWith(` ${name}`)) ?? "";
          const mlst = (await raw.expect(`MLST ${name}`, 250)).lines[1] ?? "";
          assert.equal(mlst, ` ${mlsd.slice(0, mlsd.indexOf(" "))} /${name}`, name);
        }
        assert.match(listed.find((l) => l.endsWith(" dl")) ?? "", /^type=OS\.unix=symlink;.*perm=df;/);
        // Named with a slash (or "/."), as `ls -ld dl/` and lstat("dl/."), the directory it leads to;
        // RMD of that name does not remove the link.
        assert.match((await raw.expect("MLST dl/", 250)).lines[1] ?? "", /^ type=dir;.* \/dl$/);
        assert.match((await raw.expect("MLST dl/.", 250)).lines[1] ?? "", /^ type=dir;.* \/dl$/);
        await raw.expect("RMD dl/", 550);
        await raw.expect("RMD dl", 550);
        await raw.expect("DELE dl", 250);
      } finally {
        await raw.close();
      }
      assert.deepEqual((await readdir(home)).sort(), ["d", "f.txt", "fl"]);
    });
  });

  it("MLST with no argument, of \".\" and of \"..\" in a directory reached through a link shows the directory, not the link", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await mkdir(join(home, "d", "sub"), { recursive: true });
      await symlink("d", join(home, "dl"));
      const raw = await rawLogin(t);
      try {
        await raw.expect("CWD dl", 250);
        for (const arg of ["", " .", " ./"]) {
          assert.match((await raw.expect(`MLST${arg}`, 250)).lines[1] ?? "", /^ type=dir;.* \/dl$/, `MLST${arg}`);
        }
        await raw.expect("CWD sub", 250);
        assert.match((await raw.expect("MLST ..", 250)).lines[1] ?? "", /^ type=dir;.* \/dl$/);
        // Named, it is the link still.
        assert.match((await raw.expect("MLST /dl", 250)).lines[1] ?? "", /^ type=OS\.unix=symlink;.* \/dl$/);
      } finally {
        await raw.close();
      }
    });
  });

  it("LIST -d of a link to a directory shows the line LIST of its directory shows: the link", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await mkdir(join(home, "d"));
      await symlink("d", join(home, "dl"));
      const raw = await rawLogin(t);
      try {
        const listed = (await listedText(raw, "LIST")).split("\r\n");
        const line = listed.find((l) => l.endsWith(" dl")) ?? "";
        assert.match(line, /^l/);
        assert.equal(await listedText(raw, "LIST -ld dl"), `${line}\r\n`);
        // With a slash, as `ls -ld dl/`, the directory it leads to.
        assert.match(await listedText(raw, "LIST -ld dl/"), /^d.* dl\/\r\n$/);
        // So is the cwd reached through it, as `ls -ld` and `ls -ld .` show it there.
        await raw.expect("CWD dl", 250);
        assert.match(await listedText(raw, "LIST -ld"), /^d.* \.\r\n$/);
        assert.match(await listedText(raw, "LIST -ld ."), /^d.* \.\r\n$/);
      } finally {
        await raw.close();
      }
    });
  });

  it("the listing of the home shows outward links as links, without their targets", async () => {
    await withServer(async (t) => {
      await plant(t);
      const raw = await rawLogin(t);
      try {
        const o = await attempt(raw, "LIST", "read");
        assertClean(t, "LIST", o);
        assert.match(o.data, /^l.* evil-file\r$/m);
        assert.ok(!o.data.includes("->"), o.data);
        const m = await attempt(raw, "MLSD", "read");
        assert.match(m.data, /type=OS\.unix=symlink;.* evil-dir\r$/m);
      } finally {
        await raw.close();
      }
    });
  });

  it("a directory large enough for the stat worker (the addon's lstatNames where built): LIST and MLSD show every file, inward links by their target, outward ones as links, nothing from outside", async () => {
    await withServer(async (t) => {
      await plant(t);
      const many = join(t.home("alice"), "many");
      await mkdir(many);
      for (let i = 0; i < 40; i++) await writeFile(join(many, `f${String(i).padStart(2, "0")}`), "x".repeat(i));
      await symlink("f07", join(many, "in-link"));
      await symlink("../../../outside/secret.txt", join(many, "evil-file"));
      await symlink("/nowhere/at/all", join(many, "dangling"));
      await symlink("loop", join(many, "loop"));
      await writeFile(join(many, "café"), "utf-8 name");
      // Not UTF-8 (Latin-1 é): no client can name it, and it is left out rather than shown wrong.
      await writeFile(Buffer.concat([Buffer.from(join(many, "caf")), Buffer.from([0xe9, 0x31])]), "latin-1 name");
      const raw = await rawLogin(t);
      try {
        const o = await attempt(raw, "LIST many", "read");
        assertClean(t, "LIST many", o);
        assert.equal(o.replies[o.replies.length - 1]?.code, 226);
        for (let i = 0; i < 40; i++) {
          assert.match(o.data, new RegExp(`^-[rw-]{9} .* ${i} \\w{3} .* f${String(i).padStart(2, "0")}\r$`, "m"), `f${i}`);
        }
        assert.match(o.data, /^-.* 7 \w{3} .* in-link\r$/m);
        assert.match(o.data, /^-.* 10 \w{3} .* café\r$/m);
        assert.ok(!o.data.includes("caf\ufffd"), o.data);
        assert.equal(o.data.split("\r\n").filter(Boolean).length, 40 + 5, o.data);
        assert.match(o.data, /^l.* evil-file\r$/m);
        assert.ok(!o.data.includes("->"), o.data);
        const m = await attempt(raw, "MLSD many", "read");
        assertClean(t, "MLSD many", m);
        assert.equal(m.replies[m.replies.length - 1]?.code, 226);
        assert.match(m.data, /type=file;size=7;.* in-link\r$/m);
        assert.match(m.data, /type=OS\.unix=symlink;.* evil-file\r$/m);
        assert.match(m.data, /type=file;size=39;.* f39\r$/m);
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
    });
  });

  it("upload temp files are neither listed nor addressable", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), ".berth-upload-0123456789abcdef"), "temp");
      const raw = await rawLogin(t);
      try {
        const o = await attempt(raw, "NLST", "read");
        assert.equal(o.data, "");
        // 553 is for the commands that would create one (RFC 959); to any other it is no name.
        await raw.expect("SIZE .berth-upload-0123456789abcdef", 550);
        await raw.expect("DELE .berth-upload-0123456789abcdef", 550);
      } finally {
        await raw.close();
      }
    });
  });
});

describe("a directory swapped for a link out of the home while the server works in it", () => {
  it("RETR, LIST, SIZE, STOR, a listed link and RNFR's existence check never reach outside while another process swaps it as fast as it can", async () => {
    await withServer(async (t) => {
      const inside = "inside the home, and longer than the secret";
      const outside = join(t.root, "outside");
      await mkdir(outside, { recursive: true });
      await writeFile(join(outside, "secret.txt"), SECRET);
      await writeFile(join(outside, "outside-only.txt"), "");
      const home = t.home("alice");
      await mkdir(join(home, "race"));
      await writeFile(join(home, "race", "secret.txt"), inside);
      await symlink(outside, join(home, "race-evil"));
      // A link listed elsewhere whose target lies in the swapped directory.
      await mkdir(join(home, "links"));
      await symlink(join(home, "race", "secret.txt"), join(home, "links", "to-secret"));
      const raw = await rawLogin(t);
      const swapper = startSwapper(join(home, "race"), join(home, "race-evil"), join(home, "race-away"));
      const got = { retr: 0, list: 0, size: 0, stor: 0, link: 0, rnfr: 0 };
      try {
        await raw.expect("TYPE I", 200);
        // At least 1.5 s, and on until each kind has got through once (a busy machine may fit only
        // a round or two into 1.5 s, with the swap in the way of some), at most 20 s.
        const start = Date.now();
        const more = (): boolean => Date.now() - start < 1500 || (Object.values(got).some((n) => n === 0) && Date.now() - start < 20_000);
        for (let i = 0; more(); i++) {
          const r = await transfer(raw, "RETR race/secret.txt");
          if (r.code === 226) {
            assert.equal(r.data.toString(), inside, "RETR read outside the home");
            got.retr++;
          }
          const l = await transfer(raw, "LIST race");
          assert.ok(!l.data.toString().includes("outside-only"), "LIST showed what is outside the home");
          if (l.code === 226) got.list++;
          const size = await raw.cmd("SIZE race/secret.txt");
          if (size.code === 213) {
            assert.equal(size.message, String(Buffer.byteLength(inside)), "SIZE saw outside the home");
            got.size++;
          }
          const s = await transfer(raw, `STOR race/${MARK}-${i}`, Buffer.from("x"));
          if (s.code === 226) got.stor++;
          // The link shows its inside target's size, or itself (a link) while the swap is on.
          const ll = await transfer(raw, "LIST links");
          const line = ll.data.toString().split("\r\n").find((x) => x.endsWith("to-secret") || x.includes("to-secret ->"));
          if (ll.code === 226 && line !== undefined) {
            if (line.startsWith("-")) assert.equal(line.split(/\s+/)[4], String(Buffer.byteLength(inside)), `a listed link showed outside the home: ${line}`);
            else assert.ok(line.startsWith("l"), line);
            got.link++;
          }
          // outside-only.txt exists only outside the home: RNFR never finds it.
          const rn = await raw.cmd("RNFR race/outside-only.txt");
          assert.equal(rn.code, 550, "RNFR saw a name outside the home");
          if (rn.message === "No such file or directory") got.rnfr++;
        }
      } finally {
        await swapper.stop();
        await raw.close();
      }
      assert.deepEqual((await readdir(outside)).sort(), ["outside-only.txt", "secret.txt"]);
      assert.equal(await readFile(join(outside, "secret.txt"), "utf8"), SECRET);
      for (const [what, n] of Object.entries(got)) assert.ok(n > 0, `${what} never got through: ${JSON.stringify(got)}`);
    });
  });
});

/** One transfer on a new passive connection: the final reply's code and the bytes that came (a
 * refusal before 150 is fine: the swap was in progress). `send` is uploaded. */
async function transfer(raw: RawClient, command: string, send?: Buffer): Promise<{ code: number; data: Buffer }> {
  const sock = await raw.pasv();
  const first = await raw.cmd(command);
  if (first.code !== 150 && first.code !== 125) {
    sock.destroy();
    return { code: first.code, data: Buffer.alloc(0) };
  }
  let data: Buffer = Buffer.alloc(0);
  if (send) await writeAll(sock, send);
  else data = await readAll(sock);
  return { code: (await raw.reply()).code, data };
}

describe("odd paths inside the home: each command answers with a clear reply, and the session goes on", () => {
  it("a path through a file, a looping or dangling link, a FIFO, the root itself, an over-long name", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await mkdir(join(home, "odd", "d"), { recursive: true });
      await writeFile(join(home, "odd", "f"), "file");
      await symlink("loop", join(home, "odd", "loop"));
      await symlink("nowhere", join(home, "odd", "dangle"));
      execFileSync("mkfifo", [join(home, "odd", "fifo")]);
      // A Unix socket: open(2) of it fails (ENXIO), where a FIFO's open succeeds.
      const sock = createServer();
      await new Promise<void>((resolve) => sock.listen(join(home, "odd", "sock"), resolve));
      const raw = await rawLogin(t);
      try {
        const table: readonly [string, number, string?][] = [
          ["SIZE odd/f/x", 550, "No such file or directory"],
          ["SIZE odd/loop", 550, "No such file or directory"],
          ["SIZE odd/dangle", 550, "No such file or directory"],
          ["SIZE odd/fifo", 550, "Not a regular file"],
          ["SIZE odd/sock", 550, "Not a regular file"],
          ["XCRC odd/sock", 550, "Not a regular file"],
          ["SIZE odd/d", 550, "Not a regular file"],
          ["MDTM odd/loop", 550],
          ["MLST odd/f/x", 550],
          ["CWD odd/f", 550],
          ["CWD odd/loop", 550],
          ["STAT odd/dangle", 550],
          ["MKD odd/f/x", 550, "Not a directory"],
          ["MKD odd/loop", 550, "File exists"],
          ["MKD /", 550, "File exists"],
          [`MKD odd/${"n".repeat(300)}`, 550, "File name not allowed"],
          ["RMD odd/f", 550, "Not a directory"],
          ["RMD odd/nothing", 550, "No such file or directory"],
          ["RMD /", 550],
          ["DELE /", 550, "Is a directory"],
          ["DELE odd/d", 550, "Is a directory"],
          ["DELE odd/f/x", 550],
          ["SITE CHMOD 600 odd/loop", 550],
          ["SITE CHMOD 600 odd/dangle", 550],
          ["SITE CHMOD 600 odd/nothing", 550, "No such file or directory"],
          ["MFMT 20200101000000 odd/loop", 550],
          ["MFMT 20200101000000 odd/f/x", 550],
          ["RNFR odd/nothing", 550],
        ];
        for (const [command, code, message] of table) {
          const r = await raw.cmd(command);
          assert.equal(r.code, code, `${command} → ${r.lines.join(" | ")}`);
          if (message !== undefined) assert.equal(r.message, message, command);
          assert.ok(!r.lines.join(" ").includes(t.root), `${command}: a real path in the reply`);
        }
        await raw.expect("RNFR odd/f", 350);
        await raw.expect("RNTO odd/f/x", 550);
        await raw.expect("RNFR odd/f", 350);
        await raw.expect("RNTO odd/loop/x", 550);
        await raw.expect("RNFR /", 550); // it is there; renaming it is refused at once
        await raw.expect("RNTO odd/root", 503);
        await raw.expect("TYPE I", 200);
        for (const [command, code] of [
          ["RETR odd/fifo", 550],
          ["RETR odd/sock", 550],
          ["RETR odd/d", 550],
          ["RETR odd/loop", 550],
          ["RETR odd/f/x", 550],
          ["LIST odd/loop", 550],
          ["MLSD odd/f/x", 550],
          ["STOR odd/d", 550],
          ["STOR odd/loop", 550],
          ["STOR odd/f/x", 550],
          ["APPE odd/dangle", 550],
        ] as const) {
          const r = await transfer(raw, command, command.startsWith("RETR") || command.startsWith("LIST") || command.startsWith("MLSD") ? undefined : Buffer.from("x"));
          assert.equal(r.code, code, command);
        }
        // Uploads onto what is already there and cannot take a file: the reply says what it is,
        // without a data connection used (a FIFO is never opened, so nothing blocks).
        for (const [commands, message] of [
          [["STOR odd/fifo"], "Not a regular file"],
          [["APPE odd/fifo"], "Not a regular file"],
          [["APPE odd/d"], "Is a directory"],
          [["REST 1", "STOR odd/d"], "Is a directory"],
          [["REST 1", "STOR odd/fifo"], "Not a regular file"],
        ] as const) {
          const sock = await raw.pasv();
          for (const c of commands.slice(0, -1)) await raw.expect(c, 350);
          const r = await raw.cmd(commands[commands.length - 1] as string);
          sock.destroy();
          assert.equal(r.code, 550, `${commands.join(", ")} → ${r.lines.join(" | ")}`);
          assert.equal(r.message, message, commands.join(", "));
        }
        // LIST shows what they are, as ls -l does: a FIFO and a socket are no empty regular files.
        const listed = (await transfer(raw, "LIST odd")).data.toString();
        assert.match(listed, /^prw-r--r-- .* fifo$/m, listed);
        assert.match(listed, /^s[rwx-]{9} .* sock$/m, listed);
        assert.match(listed, /^-rw-r--r-- .* f$/m, listed);
        // Their perm fact says what DELE and RNFR/RNTO do with them: they are removed and renamed
        // as entries, as a link is.
        const facts = (await transfer(raw, "MLSD odd")).data.toString();
        assert.match(facts, /^type=OS\.unix=special;[^\r]*perm=df;[^\r]* fifo\r$/m, facts);
        assert.match(facts, /^type=OS\.unix=special;[^\r]*perm=df;[^\r]* sock\r$/m, facts);
        assert.match((await raw.expect("MLST odd/fifo", 250)).lines[1] ?? "", /;perm=df;/);
        const long = await raw.cmd(`STOR odd/${"n".repeat(300)}`);
        assert.equal(long.code, 553, `over-long name → ${long.lines.join(" | ")}`);
        await raw.expect("NOOP", 200);
        assert.equal(await readFile(join(home, "odd", "f"), "utf8"), "file");
        assert.deepEqual((await readdir(join(home, "odd"))).sort(), ["d", "dangle", "f", "fifo", "loop", "sock"]);
        assert.deepEqual(await readdir(join(home, "odd", "d")), [], "nothing written into the directory");
        assert.ok(!t.logs.some((l) => l.level === 40 || l.level === 50), "a client's odd path is no trouble of the server's");
      } finally {
        await raw.close();
        await new Promise((resolve) => sock.close(resolve));
      }
    });
  });

  it("an upload to a name ending in a slash (a directory's name) is 553: no file is made or changed under the name without it; a download of one is 550", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await writeFile(join(home, "f"), "file");
      await mkdir(join(home, "d"));
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        for (const commands of [["STOR new/"], ["STOR new\\"], ["APPE new/"], ["STOR f/"], ["APPE f/"], ["REST 1", "STOR f/"], ["STOR d/"]]) {
          const sock = await raw.pasv();
          for (const c of commands.slice(0, -1)) await raw.expect(c, 350);
          const r = await raw.cmd(commands[commands.length - 1] as string);
          sock.destroy();
          assert.equal(r.code, 553, `${commands.join(", ")} → ${r.lines.join(" | ")}`);
        }
        await raw.expect("NOOP", 200);
        assert.deepEqual((await readdir(home)).sort(), ["d", "f"]);
        assert.equal(await readFile(join(home, "f"), "utf8"), "file");
        assert.deepEqual(await readdir(join(home, "d")), []);
        // A download of such a name is refused too: "f/" is no file, as open(2) has it (ENOTDIR).
        for (const name of ["f/", "f\\", "d/"]) {
          const sock = await raw.pasv();
          const r = await raw.cmd(`RETR ${name}`);
          sock.destroy();
          assert.equal(r.code, 550, `RETR ${name} → ${r.lines.join(" | ")}`);
        }
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
    });
  });

  it("names and paths at the length limits, either side of where paths are taken in one pass", async () => {
    // Paths of plain names up to 85 UTF-16 units per name and 1,365 in all are taken as they
    // stand (fs/vpath.ts); longer ones are measured in UTF-8 bytes (255 per name, 4,096 in all).
    await withServer(async (t) => {
      const home = t.home("alice");
      const raw = await rawLogin(t);
      try {
        const three = "日"; // three bytes in UTF-8, one unit
        const four = "😀"; // four bytes, two units
        const table: readonly [string, number][] = [
          [`MKD ${three.repeat(85)}`, 257], // 255 bytes, in one pass
          [`MKD ${three.repeat(86)}`, 550], // 258 bytes
          [`MKD /./${"a".repeat(255)}`, 257], // 255 bytes, step by step
          [`MKD ${"b".repeat(256)}`, 550],
          [`MKD ${four.repeat(63)}`, 257], // 252 bytes, 126 units
          [`MKD ${four.repeat(64)}`, 550], // 256 bytes
          [`CWD ${"a".repeat(255)}`, 250],
          [`MKD ${"c".repeat(85)}`, 257], // relative, joined to a cwd of 256 units
          [`SIZE ${"c".repeat(85)}/x`, 550],
          ["CWD /", 250],
          [`SIZE /${Array.from({ length: 15 }, () => "d".repeat(250)).join("/")}`, 550], // 3,765 bytes
          [`SIZE /${Array.from({ length: 17 }, () => "d".repeat(250)).join("/")}`, 550], // 4,267 bytes: no such name
          [`SIZE /${Array.from({ length: 5 }, () => three.repeat(80)).join("/")}/../../x`, 550], // 1,209 units
          ["SIZE ../../../etc/passwd", 550],
          ["SIZE a\\..\\..\\etc\\passwd", 550],
          ["MKD .berth-upload-0123456789abcdef", 550],
          [`SIZE ${three.repeat(85)}/.berth-upload-1`, 550],
        ];
        for (const [command, code] of table) {
          const r = await raw.cmd(command);
          assert.equal(r.code, code, `${command.slice(0, 60)}… → ${r.lines.join(" | ")}`);
          assert.ok(!r.lines.join(" ").includes(t.root), `${command.slice(0, 40)}: a real path in the reply`);
        }
        const made = (await readdir(home)).sort();
        assert.deepEqual(made, ["a".repeat(255), four.repeat(63), three.repeat(85)].sort());
        assert.deepEqual(await readdir(join(home, "a".repeat(255))), ["c".repeat(85)]);
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
    }, { config: { limits: { maxLineLength: 8192 } } }); // paths longer than the default line
  });
});

describe("a directory the server may not search", () => {
  it("CWD into it is 550 Permission denied, as chdir(2) would be, and the session stays where it was", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await mkdir(join(home, "locked", "sub"), { recursive: true });
      await mkdir(join(home, "open"));
      // No search (x) bit for anyone; as root every directory is searchable, so the server is
      // run as another account meanwhile, which owns the rest of the home.
      const asRoot = process.geteuid?.() === 0;
      if (asRoot) execFileSync("chown", ["-R", `${NOBODY}:${NOBODY}`, t.root]);
      if (asRoot) execFileSync("chmod", ["0755", t.root]);
      if (asRoot) execFileSync("chown", ["0:0", join(home, "locked")]);
      execFileSync("chmod", ["0600", join(home, "locked")]);
      if (asRoot) process.setegid?.(NOBODY);
      if (asRoot) process.seteuid?.(NOBODY);
      try {
        const raw = await rawLogin(t);
        try {
          await raw.expect("CWD open", 250);
          assert.equal((await raw.expect("CWD ../locked", 550)).message, "Permission denied");
          assert.equal((await raw.expect("PWD", 257)).message, '"/open" is the current directory');
          await raw.expect("CWD /locked/sub", 550);
          await raw.expect("CDUP", 200);
          await raw.expect("CWD nothing-here", 550);
        } finally {
          await raw.close();
        }
      } finally {
        if (asRoot) process.seteuid?.(0);
        if (asRoot) process.setegid?.(0);
        execFileSync("chmod", ["0755", join(home, "locked")]);
      }
    });
  });
});
