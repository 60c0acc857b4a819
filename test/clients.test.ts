/**
 * Real clients against a real berth: curl (passive and active, plain, explicit and implicit TLS),
 * lftp (mirror of a tree up and down, plain and TLS, passive and active) and Python's ftplib (FTP
 * and FTP_TLS). Each test skips, saying why, when its program is not installed.
 */
import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, readFile, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it, type TestContext } from "node:test";
import { Client } from "basic-ftp";
import { describeRun, exec, treeDigest, which, type ExecResult } from "./helpers/exec.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

const HAVE = { curl: which("curl"), lftp: which("lftp"), python3: which("python3") };

let t: TestServer;
let work: string;
let payload: Buffer;

before(async () => {
  t = await startTestServer({ config: { tls: { mode: "both", implicitPort: 0 } } });
  work = await mkdtemp(join(tmpdir(), "berth-clients-"));
  payload = Buffer.alloc(700_000);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 7919) % 256;
  await writeFile(join(work, "payload.bin"), payload);
});

after(async () => {
  await rm(work, { recursive: true, force: true });
  await t.close();
});

function ok(r: ExecResult, what: string): void {
  assert.equal(r.code, 0, `${what} failed: ${describeRun(r)}`);
}

function skipUnless(ctx: TestContext, tool: keyof typeof HAVE): boolean {
  if (HAVE[tool]) return false;
  ctx.skip(`${tool} is not installed`);
  return true;
}

describe("curl", () => {
  const creds = ["-sS", "--fail", "--max-time", "60", "-u", "alice:alice-pw"];
  const base = (): string => `ftp://127.0.0.1:${t.port}`;

  /** Uploads payload.bin as `name`, downloads it back, lists the directory. */
  async function roundTrip(name: string, extra: readonly string[], url = base()): Promise<void> {
    ok(await exec("curl", [...creds, ...extra, "-T", join(work, "payload.bin"), `${url}/${name}`]), `curl upload ${name}`);
    const back = join(work, `${name}.back`);
    ok(await exec("curl", [...creds, ...extra, "-o", back, `${url}/${name}`]), `curl download ${name}`);
    assert.deepEqual(await readFile(back), payload);
    const list = await exec("curl", [...creds, ...extra, `${url}/`]);
    ok(list, "curl list");
    assert.match(list.stdout, new RegExp(`\\b${name.replace(".", "\\.")}\\b`));
    const refused = t.logs.filter((l) => l.event === "tls-data-refused").length;
    assert.equal(refused, 0, "no data connection was refused");
  }

  it("plain FTP, passive (EPSV)", async (ctx) => {
    if (skipUnless(ctx, "curl")) return;
    await roundTrip("curl-pasv.bin", []);
  });

  it("plain FTP, passive (PASV)", async (ctx) => {
    if (skipUnless(ctx, "curl")) return;
    await roundTrip("curl-pasv4.bin", ["--disable-epsv"]);
  });

  it("plain FTP, 9 MB uploads, passive and active, land byte for byte (past 4 MiB on the upload thread)", async (ctx) => {
    if (skipUnless(ctx, "curl")) return;
    const big = Buffer.alloc(9_000_000);
    for (let i = 0; i < big.length; i++) big[i] = (i * 2654435761) >>> 24;
    await writeFile(join(work, "big.bin"), big);
    for (const [name, extra] of [["big-pasv.bin", []], ["big-port.bin", ["-P", "-"]]] as const) {
      ok(await exec("curl", [...creds, ...extra, "-T", join(work, "big.bin"), `${base()}/${name}`]), `curl upload ${name}`);
      assert.ok((await readFile(join(t.home("alice"), name))).equals(big), name);
    }
  });

  it("plain FTP, active (-P, EPRT and PORT)", async (ctx) => {
    if (skipUnless(ctx, "curl")) return;
    await roundTrip("curl-active.bin", ["-P", "127.0.0.1"]);
    await roundTrip("curl-active4.bin", ["-P", "127.0.0.1", "--disable-eprt"]);
  });

  for (const version of ["1.2", "1.3"]) {
    it(`explicit FTPS (--ssl-reqd), TLS ${version}, passive`, async (ctx) => {
      if (skipUnless(ctx, "curl")) return;
      await roundTrip(`curl-ftpes-${version}.bin`, ["--ssl-reqd", "-k", `--tlsv${version}`, "--tls-max", version]);
    });

    it(`implicit FTPS (ftps://), TLS ${version}`, async (ctx) => {
      if (skipUnless(ctx, "curl")) return;
      const url = `ftps://127.0.0.1:${t.implicitPort}`;
      await roundTrip(`curl-ftps-${version}.bin`, ["-k", `--tlsv${version}`, "--tls-max", version], url);
    });
  }

  it("explicit FTPS, TLS 1.3: several files downloaded in one curl command (one control connection)", async (ctx) => {
    if (skipUnless(ctx, "curl")) return;
    // curl does not offer a TLS 1.3 ticket again once a data connection has used it: from the
    // second transfer on it resumes with the ticket its last data connection was sent.
    const names = ["multi-a.bin", "multi-b.bin", "multi-c.bin"];
    await mkdir(join(t.home("alice"), "multi"), { recursive: true });
    for (const name of names) await writeFile(join(t.home("alice"), "multi", name), Buffer.concat([Buffer.from(name), payload]));
    const outs = names.flatMap((name) => ["-o", join(work, `${name}.back`)]);
    const r = await exec("curl", [...creds, "--ssl-reqd", "-k", "--tlsv1.3", ...names.map((name) => `${base()}/multi/${name}`), ...outs]);
    ok(r, "curl download of three files");
    for (const name of names) assert.deepEqual(await readFile(join(work, `${name}.back`)), Buffer.concat([Buffer.from(name), payload]), name);
  });

  it("ftp://host/~/name: curl's CWD ~ is the home, in either of curl's ways of walking a path", async (ctx) => {
    if (skipUnless(ctx, "curl")) return;
    await mkdir(join(t.home("alice"), "tilde"), { recursive: true });
    await writeFile(join(t.home("alice"), "tilde", "t.txt"), "from the home");
    for (const method of ["multicwd", "singlecwd", "nocwd"]) {
      const r = await exec("curl", [...creds, "--ftp-method", method, `${base()}/~/tilde/t.txt`]);
      ok(r, `curl ${method} ~/tilde/t.txt`);
      assert.equal(r.stdout, "from the home");
    }
  });

  it("curl -R takes the time of a file named like '20240101120000 clip.mp4' and leaves the time of 'clip.mp4' alone", async (ctx) => {
    if (skipUnless(ctx, "curl")) return;
    const dir = join(t.home("alice"), "camera");
    await mkdir(dir, { recursive: true });
    const named = join(dir, "20240101120000 clip.mp4");
    const other = join(dir, "clip.mp4");
    await writeFile(named, "clip");
    await writeFile(other, "other");
    await utimes(named, new Date("2022-02-02T02:02:02Z"), new Date("2022-02-02T02:02:02Z"));
    await utimes(other, new Date("2021-01-01T00:00:00Z"), new Date("2021-01-01T00:00:00Z"));
    const back = join(work, "clip.back");
    ok(await exec("curl", [...creds, "-R", "-o", back, `${base()}/camera/20240101120000%20clip.mp4`]), "curl -R");
    assert.equal(await readFile(back, "utf8"), "clip");
    assert.equal((await stat(back)).mtime.toISOString(), "2022-02-02T02:02:02.000Z");
    assert.equal((await stat(other)).mtime.toISOString(), "2021-01-01T00:00:00.000Z");
  });

  it("explicit FTPS, active (-P)", async (ctx) => {
    if (skipUnless(ctx, "curl")) return;
    const version = await exec("curl", ["--version"]);
    const m = /^curl (\d+)\.(\d+)/.exec(version.stdout);
    if (m && Number(m[1]) < 8) {
      // curl 7.87–7.88 dropped TLS on active-mode data connections (curl/curl#10666, fixed in 8.0):
      // it sends plaintext after PROT P, which berth rightly refuses.
      ctx.skip(`curl ${m[1]}.${m[2]} does not do TLS on active data connections (curl/curl#10666)`);
      return;
    }
    await roundTrip("curl-ftpes-active.bin", ["--ssl-reqd", "-k", "-P", "127.0.0.1"]);
  });
});

describe("lftp", () => {
  let tree: string;

  before(async () => {
    tree = join(work, "tree");
    await mkdir(join(tree, "docs", "deep", "er"), { recursive: true });
    await mkdir(join(tree, "empty-dir"), { recursive: true });
    await writeFile(join(tree, "top.txt"), "top level\r\nwith CRLF\n");
    await writeFile(join(tree, "docs", "name with spaces.txt"), "spaces");
    await writeFile(join(tree, "docs", "deep", "er", "payload.bin"), payload);
    await writeFile(join(tree, "docs", "empty.bin"), "");
  });

  /** Mirrors the tree up to `remote`, then down into a fresh directory, and compares. */
  async function mirror(remote: string, settings: readonly string[], url: string): Promise<void> {
    const down = join(work, `${remote}-down`);
    const script = [
      "set cmd:fail-exit yes",
      "set net:max-retries 1",
      "set net:timeout 20",
      "set net:reconnect-interval-base 1",
      "set ssl:verify-certificate no",
      ...settings,
      `open -u alice,alice-pw ${url}`,
      `mirror -R --no-perms ${tree} /${remote}`,
      `mirror --no-perms /${remote} ${down}`,
      "bye",
    ].join("; ");
    const r = await exec("lftp", ["-c", script], { timeoutMs: 90_000, env: { HOME: work } });
    ok(r, `lftp mirror ${remote}`);
    assert.deepEqual(await treeDigest(down), await treeDigest(tree));
    assert.deepEqual(await treeDigest(join(t.home("alice"), remote)), await treeDigest(tree));
  }

  const plainUrl = (): string => `ftp://127.0.0.1:${t.port}`;

  it("mirrors a tree up and down over plain FTP, passive", async (ctx) => {
    if (skipUnless(ctx, "lftp")) return;
    await mirror("lftp-plain-pasv", ["set ftp:ssl-allow no", "set ftp:passive-mode yes"], plainUrl());
  });

  it("mirrors a tree up and down over plain FTP, active", async (ctx) => {
    if (skipUnless(ctx, "lftp")) return;
    await mirror("lftp-plain-active", ["set ftp:ssl-allow no", "set ftp:passive-mode no"], plainUrl());
  });

  it("mirrors a tree up and down over explicit FTPS, passive and active", async (ctx) => {
    if (skipUnless(ctx, "lftp")) return;
    const tls = ["set ftp:ssl-force yes", "set ftp:ssl-protect-data yes", "set ftp:ssl-protect-list yes"];
    await mirror("lftp-tls-pasv", [...tls, "set ftp:passive-mode yes"], plainUrl());
    await mirror("lftp-tls-active", [...tls, "set ftp:passive-mode no"], plainUrl());
  });

  it("mirrors a tree up and down over explicit FTPS limited to TLS 1.2", async (ctx) => {
    if (skipUnless(ctx, "lftp")) return;
    const tls = ["set ftp:ssl-force yes", "set ftp:ssl-protect-data yes", 'set ssl:priority "NORMAL:-VERS-TLS1.3"'];
    await mirror("lftp-tls12", tls, plainUrl());
  });

  it("mirrors a tree up and down over implicit FTPS", async (ctx) => {
    if (skipUnless(ctx, "lftp")) return;
    await mirror("lftp-ftps", ["set ftp:ssl-protect-data yes"], `ftps://127.0.0.1:${t.implicitPort}`);
  });

  it("mirrors a directory of 100 files down over one FTPS connection (each data connection resumes the control connection's session)", async (ctx) => {
    if (skipUnless(ctx, "lftp")) return;
    // lftp resumes the control connection's TLS session on every data connection, however many
    // transfers and tickets came before: the session must stay resumable for the whole session.
    const many = join(t.home("alice"), "lftp-many");
    await mkdir(many, { recursive: true });
    for (let i = 0; i < 100; i++) await writeFile(join(many, `f${i}.txt`), `file ${i}\n`);
    const refusedBefore = t.logs.filter((l) => l.event === "tls-data-refused").length;
    const down = join(work, "lftp-many-down");
    const script = [
      "set cmd:fail-exit yes",
      "set net:max-retries 1",
      "set ssl:verify-certificate no",
      "set ftp:ssl-force yes",
      "set ftp:ssl-protect-data yes",
      `open -u alice,alice-pw ftp://127.0.0.1:${t.port}`,
      `mirror --no-perms /lftp-many ${down}`,
      "bye",
    ].join("; ");
    ok(await exec("lftp", ["-c", script], { timeoutMs: 120_000, env: { HOME: work } }), "lftp mirror of 100 files");
    assert.deepEqual(await treeDigest(down), await treeDigest(many));
    assert.equal(t.logs.filter((l) => l.event === "tls-data-refused").length, refusedBefore, "no data connection was refused");
  });
});

describe("removing a tree that holds a link to a directory", () => {
  /** In alice's home: `keep/precious.txt`, and `doomed/` with a file and a link to `../keep`. */
  async function plant(name: string): Promise<{ doomed: string; precious: string }> {
    const home = t.home("alice");
    const keep = join(home, `${name}-keep`);
    const doomed = join(home, `${name}-doomed`);
    await mkdir(keep, { recursive: true });
    await mkdir(doomed, { recursive: true });
    await writeFile(join(keep, "precious.txt"), "precious");
    await writeFile(join(doomed, "junk.txt"), "junk");
    await symlink(`../${name}-keep`, join(doomed, "lnk"));
    return { doomed, precious: join(keep, "precious.txt") };
  }

  async function removedOnlyTheTree(doomed: string, precious: string): Promise<void> {
    await assert.rejects(lstat(doomed), "the tree is gone, link included");
    assert.equal(await readFile(precious, "utf8"), "precious", "the directory the link led to is untouched");
  }

  it("basic-ftp's removeDir removes the link, not what it leads to", async () => {
    const { doomed, precious } = await plant("bf");
    const c = new Client();
    try {
      await c.access({ host: "127.0.0.1", port: t.port, user: "alice", password: "alice-pw" });
      await c.removeDir("/bf-doomed");
    } finally {
      c.close();
    }
    await removedOnlyTheTree(doomed, precious);
  });

  it("lftp's rm -r removes the link, not what it leads to", async (ctx) => {
    if (skipUnless(ctx, "lftp")) return;
    const { doomed, precious } = await plant("lftp");
    for (const mlsd of ["yes", "no"]) {
      if (mlsd === "no") await plant("lftp");
      const script = ["set cmd:fail-exit yes", "set ftp:ssl-allow no", "set net:max-retries 1", `set ftp:use-mlsd ${mlsd}`, `open -u alice,alice-pw ftp://127.0.0.1:${t.port}`, "rm -r /lftp-doomed", "bye"].join("; ");
      ok(await exec("lftp", ["-c", script], { timeoutMs: 60_000, env: { HOME: work } }), `lftp rm -r (MLSD ${mlsd})`);
      await removedOnlyTheTree(doomed, precious);
    }
  });
});

/** Python: an FTP_TLS whose data connections resume the control connection's TLS session (as the
 * README advises), and a context that takes the self-signed certificate. */
const REUSING_FTP_TLS = String.raw`class ReusingFTP_TLS(ftplib.FTP_TLS):
    """FTP_TLS whose data connections resume the control connection's TLS session."""
    def ntransfercmd(self, cmd, rest=None):
        conn, size = ftplib.FTP.ntransfercmd(self, cmd, rest)
        if self._prot_p:
            conn = self.context.wrap_socket(conn, server_hostname=self.host, session=self.sock.session)
        return conn, size

ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
`;

/** Python ftplib: upload, download and NLST in passive then active mode; prints "ok <mode>". */
const FTPLIB = String.raw`
import ftplib, io, ssl, sys
port, kind, data_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
data = open(data_path, "rb").read()

${REUSING_FTP_TLS}ftp = {"plain": lambda: ftplib.FTP(), "tls": lambda: ReusingFTP_TLS(context=ctx),
       "tls-vanilla": lambda: ftplib.FTP_TLS(context=ctx)}[kind]()
ftp.connect("127.0.0.1", port, timeout=20)
ftp.login("alice", "alice-pw")
if kind != "plain":
    ftp.prot_p()
for passive in (True, False):
    ftp.set_pasv(passive)
    name = "py-%s-%s.bin" % (kind, "pasv" if passive else "active")
    ftp.storbinary("STOR " + name, io.BytesIO(data))
    back = io.BytesIO()
    ftp.retrbinary("RETR " + name, back.write)
    assert back.getvalue() == data, "downloaded bytes differ"
    assert name in ftp.nlst(), "not listed"
    ftp.storlines("STOR lines.txt", io.BytesIO(b"one\ntwo\n"))
    lines = []
    ftp.retrlines("RETR lines.txt", lines.append)
    assert lines == ["one", "two"], lines
    print("ok", "passive" if passive else "active", flush=True)
ftp.quit()
`;

/** FTP_TLS whose every data connection resumes the control connection's session (as README
 * advises): 100 downloads on one control connection; prints "ok 100". */
const FTPLIB_MANY = String.raw`
import ftplib, io, ssl, sys

${REUSING_FTP_TLS}ftp = ReusingFTP_TLS(context=ctx)
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=20)
ftp.login("alice", "alice-pw")
ftp.prot_p()
done = 0
for i in range(100):
    back = io.BytesIO()
    ftp.retrbinary("RETR many.txt", back.write)
    assert back.getvalue() == b"many", back.getvalue()
    done += 1
print("ok", done, flush=True)
ftp.quit()
`;

/** ABOR as clients send it during a download, with TCP urgent data: ftplib's abort() sends all of
 * "ABOR\r\n" urgent; the BSD client sends "IAC IP IAC" with the last byte urgent, then "DM ABOR".
 * Each must stop the transfer (426, then 226) and leave the next command in step. */
const URGENT_ABOR = String.raw`
import ftplib, socket, sys
ftp = ftplib.FTP()
ftp.connect("127.0.0.1", int(sys.argv[1]), timeout=20)
ftp.login("alice", "alice-pw")
ftp.voidcmd("TYPE I")
for how in ("ftplib", "bsd"):
    conn = ftp.transfercmd("RETR urgent.bin")
    conn.recv(65536)
    if how == "ftplib":
        first = ftp.abort()
    else:
        ftp.sock.sendall(b"\xff\xf4\xff", socket.MSG_OOB)
        ftp.sock.sendall(b"\xf2ABOR\r\n")
        first = ftp.getmultiline()
    second = ftp.getmultiline()
    assert first.startswith("426") and second.startswith("226"), (how, first, second)
    conn.close()
    assert ftp.sendcmd("PWD").startswith("257"), how
    print("ok", how, flush=True)
ftp.quit()
`;

describe("Python ftplib", () => {
  const python = (port: number, kind: string): Promise<ExecResult> =>
    exec("python3", ["-c", FTPLIB, String(port), kind, join(work, "payload.bin")], { timeoutMs: 60_000 });

  it("FTP, passive and active", async (ctx) => {
    if (skipUnless(ctx, "python3")) return;
    const r = await python(t.port, "plain");
    ok(r, "ftplib FTP");
    assert.match(r.stdout, /ok passive\nok active/);
  });

  it("ABOR sent as TCP urgent data (ftplib's abort(), the BSD client's interrupt) stops a download and the next command is answered", async (ctx) => {
    if (skipUnless(ctx, "python3")) return;
    await writeFile(join(t.home("alice"), "urgent.bin"), Buffer.alloc(64 * 1024 * 1024, 3));
    const r = await exec("python3", ["-c", URGENT_ABOR, String(t.port)], { timeoutMs: 60_000 });
    ok(r, "ftplib abort");
    assert.match(r.stdout, /ok ftplib\nok bsd/);
  });

  it("FTP_TLS with PROT P, passive and active (data connections resume the session)", async (ctx) => {
    if (skipUnless(ctx, "python3")) return;
    // ftplib calls unwrap() after each transfer: it fails unless berth ends every data connection
    // with close_notify, and berth must answer the client's close_notify with its own.
    const r = await python(t.port, "tls");
    ok(r, "ftplib FTP_TLS");
    assert.match(r.stdout, /ok passive\nok active/);
  });

  it("FTP_TLS resuming the control connection's session: 100 downloads on one connection", async (ctx) => {
    if (skipUnless(ctx, "python3")) return;
    await writeFile(join(t.home("alice"), "many.txt"), "many");
    const r = await exec("python3", ["-c", FTPLIB_MANY, String(t.port)], { timeoutMs: 120_000 });
    ok(r, "ftplib FTP_TLS, 100 downloads");
    assert.match(r.stdout, /ok 100/);
  });

  it("stock FTP_TLS (no session reuse) is refused by default and served when requireSessionReuse is off", async (ctx) => {
    if (skipUnless(ctx, "python3")) return;
    const before = t.logs.filter((l) => l.event === "tls-data-refused").length;
    const refused = await python(t.port, "tls-vanilla");
    assert.notEqual(refused.code, 0, "a data connection with a fresh TLS session must be refused");
    assert.ok(t.logs.filter((l) => l.event === "tls-data-refused").length > before);

    const loose = await startTestServer({ config: { tls: { mode: "explicit", requireSessionReuse: false } } });
    try {
      const r = await python(loose.port, "tls-vanilla");
      ok(r, "stock ftplib FTP_TLS without session reuse");
      assert.match(r.stdout, /ok passive\nok active/);
    } finally {
      await loose.close();
    }
  });
});
