/**
 * Running berth as a service: SIGHUP reloads the config for new sessions (a broken one is refused
 * and the server keeps serving), SIGTERM lets a running upload finish and exits 0.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { UserStore } from "../src/auth/store.ts";
import { DEFAULTS } from "../src/config/schema.ts";
import { receiveBinding, sendfileBinding } from "../src/native.ts";
import { reapAll, track } from "./helpers/reap.ts";

const MAIN = fileURLToPath(new URL("../src/cli/main.ts", import.meta.url));
const TSX = import.meta.resolve("tsx");
const HEALTHCHECK = fileURLToPath(new URL("../docker/healthcheck.mjs", import.meta.url));
const dirs: string[] = [];
after(() => {
  reapAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A `berth serve` child with its log lines. */
interface Served {
  readonly child: ChildProcess;
  readonly port: number;
  readonly cwd: string;
  readonly exited: Promise<number | null>;
  /** Resolves with the first log line (from now on or already seen) matching `re`. */
  waitLog(re: RegExp, since?: number): Promise<string>;
  /** How many log lines were seen so far. */
  mark(): number;
  /** What the server wrote to stderr so far. */
  stderr(): string;
  /** Every log line seen so far. */
  lines(): string[];
}

function writeConfig(cwd: string, body: string): void {
  writeFileSync(path.join(cwd, "config", "berth.yaml"), body);
}

/** A temp working directory with `config/berth.yaml` holding `configBody`. */
function workDir(configBody: string): string {
  const cwd = mkdtempSync(path.join(tmpdir(), "berth-svc-"));
  dirs.push(cwd);
  mkdirSync(path.join(cwd, "config"));
  writeConfig(cwd, configBody);
  return cwd;
}

/** The environment of a `berth serve` child: loopback, a free control port, the user svc. */
function serveEnv(graceSeconds: number, extraEnv: Record<string, string>): Record<string, string> {
  return {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? "",
    BERTH_USERS_BCRYPT_COST: "4",
    BERTH_LISTEN_HOST: "127.0.0.1",
    BERTH_LISTEN_PORT: "0",
    BERTH_PASSIVE_PORTS: "22010-22019",
    BERTH_LIMITS_SHUTDOWN_GRACE: String(graceSeconds),
    BERTH_LOG_PRETTY: "never",
    BERTH_USER: "svc",
    BERTH_PASSWORD: "svc-password",
    ...extraEnv,
  };
}

/** Runs `berth serve` expecting it to stop by itself within 15 s; its exit status and output. */
async function serveUntilExit(extraEnv: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawn(process.execPath, ["--import", TSX, MAIN, "serve"], { cwd: workDir(""), env: serveEnv(8, extraEnv) });
  track(child);
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
  child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
  const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  clearTimeout(timer);
  assert.notEqual(child.signalCode, "SIGKILL", `berth serve was still running after 15 s: ${stdout}${stderr}`);
  return { code, stdout, stderr };
}

/** `cwd`: run in that working directory (a server started again where one ran) instead of a new one. */
async function serve(configBody: string, graceSeconds = 8, extraEnv: Record<string, string> = {}, fdLimit?: number, cwd = workDir(configBody)): Promise<Served> {
  const env = serveEnv(graceSeconds, extraEnv);
  const args = ["--import", TSX, MAIN, "serve"];
  // With fdLimit, the child runs under `ulimit -n` (for what berth does when descriptors run out).
  const child =
    fdLimit === undefined
      ? spawn(process.execPath, args, { cwd, env })
      : spawn("/bin/sh", ["-c", `ulimit -n ${fdLimit} && exec "$0" "$@"`, process.execPath, ...args], { cwd, env });
  track(child);
  const lines: string[] = [];
  const waiters: { re: RegExp; since: number; resolve: (l: string) => void }[] = [];
  let buf = "";
  let stderr = "";
  child.stderr?.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
  child.stdout?.on("data", (c: Buffer) => {
    buf += c.toString("utf8");
    let nl;
    while ((nl = buf.indexOf("\n")) !== -1) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
    for (const w of [...waiters]) {
      const hit = lines.slice(w.since).find((l) => w.re.test(l));
      if (hit !== undefined) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(hit);
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  const waitLog = (re: RegExp, since = 0): Promise<string> => {
    const hit = lines.slice(since).find((l) => re.test(l));
    if (hit !== undefined) return Promise.resolve(hit);
    return new Promise((resolve, reject) => {
      waiters.push({ re, since, resolve });
      void exited.then(() => reject(new Error(`berth exited while waiting for ${String(re)}: ${stderr}`)));
    });
  };
  const listening = JSON.parse(await waitLog(/"event":"listening"/)) as { port: number; jail: string; sendfile: string; uploadThreads: string };
  // Linux has /proc/self/fd: the jail holds what it checked (fs/pin.ts).
  if (process.platform === "linux") assert.equal(listening.jail, "held");
  // The addon's transfer threads, as this process finds them (the child loads the same build).
  assert.equal(listening.sendfile, sendfileBinding() ? "on" : "unavailable");
  assert.equal(listening.uploadThreads, receiveBinding() ? "on" : "unavailable");
  return { child, port: listening.port, cwd, exited, waitLog, mark: () => lines.length, stderr: () => stderr, lines: () => [...lines] };
}

/** A control connection reading replies line by line. */
class Control {
  readonly socket: Socket;
  #buf = "";
  #waiting: ((line: string) => void)[] = [];
  #lines: string[] = [];
  readonly closed: Promise<void>;

  constructor(port: number) {
    this.socket = connect({ host: "127.0.0.1", port });
    this.socket.on("error", () => undefined);
    this.closed = new Promise((r) => this.socket.on("close", () => r()));
    this.socket.on("data", (c: Buffer) => {
      this.#buf += c.toString("latin1");
      let nl;
      while ((nl = this.#buf.indexOf("\r\n")) !== -1) {
        const line = this.#buf.slice(0, nl);
        this.#buf = this.#buf.slice(nl + 2);
        if (!/^\d{3} /.test(line)) continue;
        const w = this.#waiting.shift();
        if (w) w(line);
        else this.#lines.push(line);
      }
    });
  }

  /** The next final reply line. */
  reply(): Promise<string> {
    const l = this.#lines.shift();
    if (l !== undefined) return Promise.resolve(l);
    return new Promise((r) => this.#waiting.push(r));
  }

  async cmd(line: string): Promise<string> {
    this.socket.write(`${line}\r\n`);
    return this.reply();
  }

  async login(): Promise<void> {
    assert.match(await this.reply(), /^220 /);
    assert.match(await this.cmd("USER svc"), /^331 /);
    assert.match(await this.cmd("PASS svc-password"), /^230 /);
  }

  /** PASV, then a connected data socket. */
  async pasv(): Promise<Socket> {
    const r = await this.cmd("PASV");
    const m = /\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)/.exec(r);
    assert.ok(m, r);
    const port = Number(m[5]) * 256 + Number(m[6]);
    const s = connect({ host: "127.0.0.1", port });
    await new Promise<void>((resolve, reject) => s.once("connect", resolve).once("error", reject));
    return s;
  }
}

/** NLST `dir` over a passive connection: the names listed. */
async function nlst(c: Control, dir: string): Promise<string[]> {
  const data = await c.pasv();
  let text = "";
  data.on("data", (b: Buffer) => (text += b.toString("utf8")));
  const closed = new Promise<void>((r) => data.on("close", () => r()));
  assert.match(await c.cmd(`NLST ${dir}`), /^150 /);
  await closed;
  assert.match(await c.reply(), /^226 /);
  return text.split("\r\n").filter((l) => l !== "");
}

/** A server whose replacing upload of d/f.bin is cut off by SIGKILL half-way: what it left. */
async function killMidReplace(): Promise<{ cwd: string; dir: string; original: Buffer; temps: () => string[] }> {
  const srv = await serve("", 8);
  const dir = path.join(srv.cwd, "data", "svc", "d");
  const temps = (): string[] => readdirSync(dir).filter((n) => n.startsWith(".berth-upload-"));
  const original = Buffer.alloc(50 * 1024, 3);
  const c = new Control(srv.port);
  await c.login();
  assert.match(await c.cmd("TYPE I"), /^200 /);
  assert.match(await c.cmd("MKD d"), /^257 /);
  let data = await c.pasv();
  assert.match(await c.cmd("STOR d/f.bin"), /^150 /);
  data.end(original);
  assert.match(await c.reply(), /^226 /);
  // A replacing upload, cut off by the server's death half-way.
  data = await c.pasv();
  data.on("error", () => undefined);
  assert.match(await c.cmd("STOR d/f.bin"), /^150 /);
  data.write(Buffer.alloc(20 * 1024, 9));
  for (let i = 0; i < 100 && temps().length === 0; i++) await sleep(20);
  assert.equal(temps().length, 1, "the upload writes a temp file");
  const other = new Control(srv.port);
  await other.login();
  assert.deepEqual(await nlst(other, "d"), ["d/f.bin"]);
  srv.child.kill("SIGKILL");
  await srv.exited;
  data.destroy();
  c.socket.destroy();
  other.socket.destroy();
  return { cwd: srv.cwd, dir, original, temps };
}

async function greeting(port: number): Promise<string> {
  const c = new Control(port);
  const line = await c.reply();
  c.socket.destroy();
  return line;
}

/** One request on the admin socket. */
/** Writes `chunks` to the admin socket (a pause between them), ends the client's side if `end`,
 * and returns the response lines received until the server closes. */
async function adminRaw(socketPath: string, chunks: (string | Buffer)[], end: boolean): Promise<string[]> {
  const s = connect(socketPath);
  let buf = "";
  s.on("data", (c: Buffer) => (buf += c.toString("utf8")));
  const closed = new Promise<void>((resolve) => s.on("close", () => resolve()));
  s.on("error", () => undefined);
  for (const c of chunks) {
    s.write(c);
    await sleep(50);
  }
  if (end) s.end();
  await closed;
  return buf.split("\n").filter((l) => l !== "");
}

async function admin(socketPath: string, req: unknown): Promise<Record<string, unknown>> {
  const s = connect(socketPath);
  let buf = "";
  const line = new Promise<string>((resolve, reject) => {
    s.on("data", (c: Buffer) => {
      buf += c.toString("utf8");
      if (buf.includes("\n")) resolve(buf.slice(0, buf.indexOf("\n")));
    });
    s.on("error", reject);
  });
  s.write(`${JSON.stringify(req)}\n`);
  const res = JSON.parse(await line) as Record<string, unknown>;
  s.end();
  return res;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

void describe("berth as a service", () => {
  void test("SIGHUP: a broken config is refused and the server keeps serving; a good one applies to new sessions", async () => {
    const srv = await serve('server:\n  banner: "first banner"\n');
    assert.equal(await greeting(srv.port), "220 first banner");
    const old = new Control(srv.port);
    await old.login();

    writeConfig(srv.cwd, "limits:\n  idleTimeout: -5\n");
    let mark = srv.mark();
    srv.child.kill("SIGHUP");
    const failed = await srv.waitLog(/reload failed/, mark);
    assert.match(failed, /limits\.idleTimeout/);
    assert.equal(await greeting(srv.port), "220 first banner");

    // tls.implicitPort needs a restart: it is reported and kept (the BERTH_* environment wins over the file).
    writeConfig(srv.cwd, 'server:\n  banner: "second banner"\ntls:\n  implicitPort: 9990\npassive:\n  ports: "22020-22029"\n');
    mark = srv.mark();
    srv.child.kill("SIGHUP");
    const reloaded = JSON.parse(await srv.waitLog(/"event":"reloaded"/, mark)) as { applied: string[]; needRestart: string[] };
    assert.deepEqual(reloaded.applied, ["server.banner"]);
    assert.deepEqual(reloaded.needRestart, ["tls.implicitPort"]);
    // The file's passive.ports does nothing under BERTH_PASSIVE_PORTS: warned of at the reload, as at start.
    const overridden = JSON.parse(await srv.waitLog(/"event":"env-override"/, mark)) as { key: string; level: number; fileValue: string };
    assert.deepEqual([overridden.level, overridden.key, overridden.fileValue], [40, "passive.ports", "22020-22029"]);
    assert.equal(await greeting(srv.port), "220 second banner");
    // The session opened before the reload goes on working.
    assert.match(await old.cmd("PWD"), /^257 /);
    assert.match(await old.cmd("QUIT"), /^221 /);

    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("SIGHUP and the admin socket: a passive.address that does not resolve, which a start refuses, is refused by a reload too; the current configuration stays", async () => {
    const srv = await serve('server:\n  banner: "first banner"\n', 8, { BERTH_ADMIN_SOCKET: "run/admin.sock" });
    const sock = path.join(srv.cwd, "run", "admin.sock");
    await srv.waitLog(/"event":"admin-socket"/);
    // .invalid never resolves (RFC 6761).
    writeConfig(srv.cwd, 'server:\n  banner: "second banner"\npassive:\n  address: "ftp.invalid"\n');
    const mark = srv.mark();
    srv.child.kill("SIGHUP");
    const failed = await srv.waitLog(/reload failed|"event":"reloaded"/, mark);
    assert.match(failed, /"event":"reload-failed".*passive\.address ftp\.invalid cannot be resolved/);
    assert.equal(await greeting(srv.port), "220 first banner");
    const refused = await admin(sock, { cmd: "reload" });
    assert.equal(refused.ok, false);
    assert.match(String(refused.error), /passive\.address ftp\.invalid cannot be resolved/);
    assert.equal(await greeting(srv.port), "220 first banner");
    // A request sent after the reload is answered after it, in order.
    writeConfig(srv.cwd, 'server:\n  banner: "second banner"\npassive:\n  address: "127.0.0.1"\n');
    assert.deepEqual(await adminRaw(sock, ['{"cmd":"reload"}\n{"cmd":"kick","id":"nope"}\n'], true), [
      '{"ok":true,"applied":["passive.address","server.banner"],"needRestart":[]}',
      '{"ok":false,"error":"no session nope"}',
    ]);
    assert.equal(await greeting(srv.port), "220 second banner");
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("SIGHUP: tls.require true with tls.mode changed from off waits for the restart tls.mode needs; logins go on", async () => {
    const srv = await serve('tls:\n  mode: "off"\n');
    writeConfig(srv.cwd, 'server:\n  banner: "after"\ntls:\n  mode: explicit\n  require: true\n');
    const mark = srv.mark();
    srv.child.kill("SIGHUP");
    const reloaded = JSON.parse(await srv.waitLog(/"event":"reloaded"/, mark)) as { applied: string[]; needRestart: string[] };
    assert.deepEqual(reloaded.applied, ["server.banner"]);
    assert.deepEqual(reloaded.needRestart, ["tls.mode", "tls.require"]);
    // Without TLS there is no AUTH TLS to offer: with tls.require applied nobody could log in.
    const c = new Control(srv.port);
    await c.login();
    assert.match(await c.cmd("QUIT"), /^221 /);
    assert.equal(await greeting(srv.port), "220 after");
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("SIGHUP: a new storage.root needs a restart; users' homes stay where the running server found them", async () => {
    const srv = await serve('storage:\n  root: "first"\n');
    writeConfig(srv.cwd, 'storage:\n  root: "second"\n');
    const mark = srv.mark();
    srv.child.kill("SIGHUP");
    const reloaded = JSON.parse(await srv.waitLog(/"event":"reloaded"/, mark)) as { applied: string[]; needRestart: string[] };
    assert.deepEqual(reloaded.applied, []);
    assert.deepEqual(reloaded.needRestart, ["storage.root"]);
    const c = new Control(srv.port);
    await c.login();
    assert.match(await c.cmd("MKD made"), /^257 /);
    assert.ok(existsSync(path.join(srv.cwd, "first", "svc", "made")));
    assert.ok(!existsSync(path.join(srv.cwd, "second")));
    assert.match(await c.cmd("QUIT"), /^221 /);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("metrics.listen with port 0: the port picked is logged, and the endpoint answers there", async () => {
    const srv = await serve("", 8, { BERTH_METRICS_LISTEN: "127.0.0.1:0" });
    const line = JSON.parse(await srv.waitLog(/"event":"metrics"/)) as { listen: string; port: number; msg: string };
    assert.equal(line.listen, "127.0.0.1:0");
    assert.ok(line.port > 0, `a real port: ${JSON.stringify(line)}`);
    assert.equal(line.msg, `metrics on http://127.0.0.1:${line.port}/metrics`);
    const res = await fetch(`http://127.0.0.1:${line.port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /^# HELP berth_/m);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("SIGTERM: idle sessions get 421, a running upload completes, exit 0", async () => {
    const srv = await serve("", 8);
    const idle = new Control(srv.port);
    await idle.login();
    const up = new Control(srv.port);
    await up.login();
    const data = await up.pasv();
    assert.match(await up.cmd("STOR during.bin"), /^150 /);
    const chunk = Buffer.alloc(64 * 1024, 7);
    data.write(chunk);
    await sleep(200);

    const t0 = Date.now();
    srv.child.kill("SIGTERM");
    assert.match(await idle.reply(), /^421 /);
    for (let i = 0; i < 9; i++) {
      data.write(chunk);
      await sleep(100);
    }
    data.end();
    assert.match(await up.reply(), /^226 /);
    assert.equal(await srv.exited, 0);
    assert.ok(Date.now() - t0 < 8000, "exited within the grace time");
    const home = path.join(srv.cwd, "data", "svc");
    assert.equal(readFileSync(path.join(home, "during.bin")).length, 10 * chunk.length);
  });

  void test("SIGKILL mid-upload: the replaced file stays whole, its temp file is never listed, and after a restart the directory it was left in can be removed", async () => {
    const { cwd, dir, original, temps } = await killMidReplace();
    const again = await serve("", 8, {}, undefined, cwd);
    const c2 = new Control(again.port);
    await c2.login();
    assert.deepEqual(readFileSync(path.join(dir, "f.bin")), original);
    assert.deepEqual(await nlst(c2, "d"), ["d/f.bin"]);
    assert.equal(temps().length, 1, "a temp file written to moments ago stays");
    assert.match(await c2.cmd("DELE d/f.bin"), /^250 /);
    assert.deepEqual(await nlst(c2, "d"), []);
    // The directory lists empty: RMD removes it, and the temp file nobody could see or name with it.
    assert.match(await c2.cmd("RMD d"), /^250 /);
    assert.equal(existsSync(dir), false);
    again.child.kill("SIGTERM");
    assert.equal(await again.exited, 0);
  });

  void test("SIGKILL mid-upload, then a day: a listing of the directory removes the temp file left behind and logs it", async () => {
    const { cwd, dir, original, temps } = await killMidReplace();
    const again = await serve("", 8, {}, undefined, cwd);
    const c2 = new Control(again.port);
    await c2.login();
    const [left] = temps();
    assert.ok(left !== undefined);
    const bytes = statSync(path.join(dir, left)).size;
    const day = Date.now() / 1000 - 25 * 3600;
    utimesSync(path.join(dir, left), day, day);
    const mark = again.mark();
    assert.deepEqual(await nlst(c2, "d"), ["d/f.bin"]);
    assert.deepEqual(temps(), []);
    const line = JSON.parse(await again.waitLog(/"event":"stale-temp"/, mark)) as Record<string, unknown>;
    assert.equal(line.dir, "/d");
    assert.equal(line.name, left);
    assert.equal(line.bytes, bytes);
    assert.equal(line.user, "svc");
    assert.deepEqual(readFileSync(path.join(dir, "f.bin")), original);
    again.child.kill("SIGTERM");
    assert.equal(await again.exited, 0);
  });

  void test("SIGTERM after the grace time: a client that stays after its 421 is told once, a transfer still running is cut with 426 and logged", async () => {
    const srv = await serve("", 1, { BERTH_LOG_XFERLOG: "xferlog" });
    const stays = new Control(srv.port);
    await stays.login();
    const up = new Control(srv.port);
    await up.login();
    const data = await up.pasv();
    assert.match(await up.cmd("STOR cut.bin"), /^150 /);
    data.write(Buffer.alloc(64 * 1024, 7));
    await sleep(200);
    const mark = srv.mark();
    srv.child.kill("SIGTERM");
    assert.match(await stays.reply(), /^421 /);
    // The upload never ends: at the end of the grace time it is cut and answered.
    assert.equal(await up.reply(), "426 Transfer aborted: server shutting down");
    assert.equal(await srv.exited, 0);
    const after = srv.lines().slice(mark).map((l) => JSON.parse(l) as { event?: string; result?: string; path?: string; bytes?: number });
    // One 421 line per session, however long its client stays after it: the idle one at once, the
    // other once its transfer was cut.
    const told = after.filter((l) => l.event === "timeout") as { session?: string }[];
    assert.equal(told.length, 2, JSON.stringify(after));
    assert.notEqual(told[0]?.session, told[1]?.session);
    const cut = after.filter((l) => l.event === "transfer");
    assert.equal(cut.length, 1);
    assert.equal(cut[0]?.result, "shutdown");
    assert.equal(cut[0]?.path, "/cut.bin");
    const xfer = readFileSync(path.join(srv.cwd, "xferlog"), "utf8").trim().split("\n");
    assert.equal(xfer.length, 1);
    assert.match(xfer[0] ?? "", /\/cut\.bin a _ i r svc ftp 0 \* i$/); // ASCII: this client sent no TYPE I
    data.destroy();
  });

  void test("a second SIGTERM exits at once: an upload replacing a file leaves the old file and no temp file", async () => {
    const srv = await serve("", 8);
    const home = path.join(srv.cwd, "data", "svc");
    writeFileSync(path.join(home, "kept.bin"), "the old content");
    const up = new Control(srv.port);
    await up.login();
    const data = await up.pasv();
    assert.match(await up.cmd("STOR kept.bin"), /^150 /);
    data.write(Buffer.alloc(64 * 1024, 7));
    const temps = (): string[] => readdirSync(home).filter((n) => n.startsWith(".berth-upload-"));
    for (let i = 0; i < 50 && temps().length === 0; i++) await sleep(20);
    assert.equal(temps().length, 1, "the upload writes a temp file");
    srv.child.kill("SIGTERM");
    await srv.waitLog(/shutting down/);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
    assert.deepEqual(temps(), []);
    assert.equal(readFileSync(path.join(home, "kept.bin"), "utf8"), "the old content");
    data.destroy();
    up.socket.destroy();
  });

  void test("a second drain on the admin socket is answered and lets the running upload finish: only a second signal exits at once", async () => {
    const srv = await serve("", 8, { BERTH_ADMIN_SOCKET: "run/admin.sock" });
    const sock = path.join(srv.cwd, "run", "admin.sock");
    await srv.waitLog(/"event":"admin-socket"/);
    const up = new Control(srv.port);
    await up.login();
    const data = await up.pasv();
    assert.match(await up.cmd("STOR drained.bin"), /^150 /);
    const chunk = Buffer.alloc(64 * 1024, 7);
    data.write(chunk);
    assert.deepEqual(await adminRaw(sock, ['{"cmd":"drain"}\n'], true), ['{"ok":true}']);
    await srv.waitLog(/shutting down/);
    // Run again (a script, an operator checking): the same drain, not a kill.
    assert.deepEqual(await adminRaw(sock, ['{"cmd":"drain"}\n'], true), ['{"ok":true}']);
    data.end(chunk);
    assert.match(await up.reply(), /^226 /);
    assert.equal(await srv.exited, 0);
    assert.equal(readFileSync(path.join(srv.cwd, "data", "svc", "drained.bin")).length, 2 * chunk.length);
  });

  void test("SIGHUP: a new log.level applies to the sessions opened after it, not to those already open", async () => {
    const srv = await serve("log:\n  level: info\n");
    const before = new Control(srv.port);
    await before.login();
    assert.match(await before.cmd("NOOP"), /^200 /);
    assert.equal(srv.lines().filter((l) => l.includes('"event":"command"')).length, 0, "no debug lines at info");
    writeConfig(srv.cwd, "log:\n  level: debug\n");
    const mark = srv.mark();
    srv.child.kill("SIGHUP");
    const reloaded = JSON.parse(await srv.waitLog(/"event":"reloaded"/, mark)) as { applied: string[] };
    assert.deepEqual(reloaded.applied, ["log.level"]);
    // The session opened before keeps its level: its NOOP is no debug line.
    assert.match(await before.cmd("NOOP"), /^200 /);
    await before.cmd("QUIT");
    const after = new Control(srv.port);
    await after.login();
    assert.match(await after.cmd("NOOP"), /^200 /);
    await srv.waitLog(/"event":"command".*"verb":"NOOP"/, mark);
    await after.cmd("QUIT");
    const commands = srv.lines().filter((l) => l.includes('"event":"command"'));
    assert.deepEqual(
      commands.filter((l) => l.includes('"verb":"NOOP"')).map((l) => (JSON.parse(l) as { user?: string }).user),
      ["svc"],
      "one NOOP logged, by the session opened after the reload",
    );
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("SIGHUP: a session open across a reload to a higher log.level keeps its own level, before its login and after", async () => {
    const srv = await serve("log:\n  level: debug\n");
    const open = new Control(srv.port);
    assert.match(await open.reply(), /^220 /);
    const session = (JSON.parse(await srv.waitLog(/"event":"connect"/)) as { session: string }).session;
    // At warn the reload writes no line: the new banner shows it was applied.
    writeConfig(srv.cwd, "log:\n  level: warn\nserver:\n  banner: reloaded\n");
    const mark = srv.mark();
    srv.child.kill("SIGHUP");
    for (let i = 0; ; i++) {
      const probe = new Control(srv.port);
      const banner = await probe.reply();
      probe.socket.destroy();
      if (banner === "220 reloaded") break;
      assert.ok(i < 100, "the reload was applied");
      await sleep(50);
    }
    assert.match(await open.cmd("USER svc"), /^331 /);
    assert.match(await open.cmd("PASS wrong"), /^530 /);
    assert.match(await open.cmd("USER svc"), /^331 /);
    assert.match(await open.cmd("PASS svc-password"), /^230 /);
    assert.match(await open.cmd("NOOP"), /^200 /);
    assert.match(await open.cmd("QUIT"), /^221 /);
    // This session's own end (the probes above that came before the reload end at debug too).
    const end = srv.waitLog(new RegExp(`"session":"${session.replace(/[^\w-]/g, "")}".*"event":"disconnect"`), mark);
    assert.ok(await Promise.race([end.then(() => true), sleep(5000).then(() => false)]), "the session's end is written at debug");
    const own = srv
      .lines()
      .slice(mark)
      .map((l) => JSON.parse(l) as { session?: string; event?: string; verb?: string; result?: string })
      .filter((l) => l.session === session);
    assert.deepEqual(
      own.map((l) => [l.event, l.verb ?? l.result ?? ""]),
      [
        ["command", "USER"],
        ["command", "PASS"],
        ["login", "fail"],
        ["command", "USER"],
        ["command", "PASS"],
        ["login", "ok"],
        ["command", "NOOP"],
        ["command", "QUIT"],
        ["disconnect", ""],
      ],
      "every line of the session at debug, the level it opened with",
    );
    // A session opened after the reload writes at warn: none of these. Counted from here: the
    // probes above that connected before the reload took effect opened at debug, and their lines
    // (the last one's end included) were written by the time the open session had its replies.
    const afterMark = srv.mark();
    const after = new Control(srv.port);
    await after.login();
    assert.match(await after.cmd("QUIT"), /^221 /);
    await after.closed;
    const others = srv
      .lines()
      .slice(afterMark)
      .map((l) => JSON.parse(l) as { session?: string; level: number })
      .filter((l) => l.session !== undefined && l.session !== session && l.level < 40);
    assert.deepEqual(others, []);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("admin socket: mode 0660, status, sessions, kick, reload, drain", async () => {
    const srv = await serve("", 8, { BERTH_ADMIN_SOCKET: "run/admin.sock" });
    const sock = path.join(srv.cwd, "run", "admin.sock");
    await srv.waitLog(/"event":"admin-socket"/);
    const st = statSync(sock);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o660);

    const c = new Control(srv.port);
    await c.login();
    const status = await admin(sock, { cmd: "status" });
    assert.equal(status.ok, true);
    assert.equal(status.sessions, 1);
    const list = (await admin(sock, { cmd: "sessions" })).sessions as { id: string; user: string | null }[];
    assert.equal(list.length, 1);
    assert.equal(list[0]?.user, "svc");
    assert.deepEqual(await admin(sock, { cmd: "kick", id: "nope" }), { ok: false, error: "no session nope" });
    // A kicked session's running upload is cut with 426 saying why, then the session with 421.
    const data = await c.pasv();
    assert.match(await c.cmd("STOR kicked.bin"), /^150 /);
    data.on("error", () => undefined);
    data.write(Buffer.alloc(64 * 1024, 7));
    for (let i = 0; i < 100; i++) {
      const now = (await admin(sock, { cmd: "sessions" })).sessions as { transfer: unknown }[];
      if (now[0]?.transfer) break;
      await sleep(20);
    }
    assert.deepEqual(await admin(sock, { cmd: "kick", id: list[0]?.id }), { ok: true, kicked: list[0]?.id });
    assert.equal(await c.reply(), "426 Transfer aborted: disconnected by the administrator");
    assert.match(await c.reply(), /^421 /);
    await c.closed;
    data.destroy();
    assert.deepEqual(await admin(sock, { cmd: "bogus" }), { ok: false, error: 'unknown command "bogus" (one of status, sessions, kick, reload, drain)' });
    // Requests of the wrong shape say what a request is.
    for (const req of [{}, [], null, 42, { cmd: 5 }]) {
      assert.deepEqual(await admin(sock, req), { ok: false, error: 'a request is an object with "cmd": one of status, sessions, kick, reload, drain' }, JSON.stringify(req));
    }
    for (const req of [{ cmd: "kick" }, { cmd: "kick", id: { a: 1 } }, { cmd: "kick", id: "" }]) {
      assert.deepEqual(await admin(sock, req), { ok: false, error: 'kick needs "id": a session id (see "sessions")' }, JSON.stringify(req));
    }
    // A last request without a newline, the client's side then ended, is answered before the close.
    assert.deepEqual(await adminRaw(sock, ['{"cmd":"kick","id":"nope"}'], true), ['{"ok":false,"error":"no session nope"}']);
    // Two requests in one write, one of them split inside a character ("é" is two bytes).
    const e = Buffer.from('{"cmd":"kick","id":"\u00e9"}\n', "utf8");
    const at = e.indexOf(0xc3) + 1;
    assert.deepEqual(await adminRaw(sock, [Buffer.concat([Buffer.from('{"cmd":"bogus"}\n'), e.subarray(0, at)]), e.subarray(at)], true), [
      '{"ok":false,"error":"unknown command \\"bogus\\" (one of status, sessions, kick, reload, drain)"}',
      '{"ok":false,"error":"no session \u00e9"}',
    ]);
    // A line longer than 64 KiB is refused in words, and the connection closed.
    assert.deepEqual(await adminRaw(sock, ["x".repeat(70_000)], false), ['{"ok":false,"error":"a request is one line of at most 65536 characters"}']);
    assert.deepEqual(await admin(sock, { cmd: "reload" }), { ok: true, applied: [], needRestart: [] });
    assert.deepEqual(await admin(sock, { cmd: "drain" }), { ok: true });
    assert.equal(await srv.exited, 0);
    assert.throws(() => statSync(sock), /ENOENT/);
  });

  void test("admin socket: a reload is logged as SIGHUP's is, a refused one too (the operator reading the log learns the config in use is the old one)", async () => {
    const srv = await serve('server:\n  banner: "first banner"\n', 8, { BERTH_ADMIN_SOCKET: "run/admin.sock" });
    const sock = path.join(srv.cwd, "run", "admin.sock");
    await srv.waitLog(/"event":"admin-socket"/);
    writeConfig(srv.cwd, "limits:\n  idleTimeout: -5\n");
    const mark = srv.mark();
    const refused = await admin(sock, { cmd: "reload" });
    assert.equal(refused.ok, false);
    assert.match(String(refused.error), /limits\.idleTimeout/);
    assert.equal(await greeting(srv.port), "220 first banner");
    // A key that needs a restart is warned of, as after SIGHUP.
    writeConfig(srv.cwd, 'server:\n  banner: "second banner"\nstorage:\n  root: elsewhere\n');
    assert.deepEqual(await admin(sock, { cmd: "reload" }), { ok: true, applied: ["server.banner"], needRestart: ["storage.root"] });
    assert.deepEqual(await admin(sock, { cmd: "drain" }), { ok: true });
    assert.equal(await srv.exited, 0);
    const seen = srv.lines().slice(mark);
    const failed = seen.find((l) => /reload failed/.test(l));
    assert.ok(failed !== undefined, `a refused reload is logged: ${seen.join("\n")}`);
    assert.match(failed, /"event":"reload-failed".*limits\.idleTimeout/);
    assert.ok(seen.some((l) => /"needRestart":\["storage\.root"\].*need a restart/.test(l)), "the keys that need a restart are warned of");
  });
});

/** Runs docker/healthcheck.mjs in `cwd` with `env`; its exit status and output. */
async function healthcheck(cwd: string, env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, [HEALTHCHECK], { cwd, env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env } });
  track(child);
  let out = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString("utf8")));
  child.stderr.on("data", (c: Buffer) => (out += c.toString("utf8")));
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  return { code, out };
}

/** A port nobody listens on (just given back by the kernel). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

void describe("docker health check", () => {
  const ports = async (srv: Served): Promise<{ port: number | null; implicitPort: number | null }> =>
    JSON.parse(await srv.waitLog(/"event":"listening"/)) as { port: number | null; implicitPort: number | null };

  void test("where neither a variable nor the file sets a key, it takes berth's default", () => {
    const source = readFileSync(HEALTHCHECK, "utf8");
    for (const [section, key, value] of [
      ["listen", "host", DEFAULTS.listen.host],
      ["listen", "port", DEFAULTS.listen.port],
      ["tls", "mode", DEFAULTS.tls.mode],
      ["tls", "implicitPort", DEFAULTS.tls.implicitPort],
    ] as const) {
      assert.ok(source.includes(`setting("${section}", "${key}", ${JSON.stringify(value)})`), `${section}.${key} defaults to ${value}`);
    }
  });

  void test("plain: it reads the 220 on the control port, and fails when nothing listens there", async () => {
    const srv = await serve("");
    const env = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: String(srv.port) };
    assert.deepEqual(await healthcheck(srv.cwd, env), { code: 0, out: "" });
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
    const down = await healthcheck(srv.cwd, env);
    assert.equal(down.code, 1);
    assert.match(down.out, /^unhealthy: .*ECONNREFUSED/);
  });

  void test("implicit FTPS only (tls.mode in the file): it handshakes on the implicit port, taking a self-signed certificate, and reads the 220", async () => {
    const srv = await serve('tls:\n  mode: implicit\n', 8, { BERTH_TLS_IMPLICIT_PORT: "0" });
    const { port, implicitPort } = await ports(srv);
    assert.equal(port, null, "no plain listener");
    assert.ok(implicitPort !== null);
    // listen.port has nothing behind it; only the implicit port answers, and only in TLS.
    const env = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: String(await closedPort()), BERTH_TLS_IMPLICIT_PORT: String(implicitPort) };
    assert.deepEqual(await healthcheck(srv.cwd, env), { code: 0, out: "" });
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
    const down = await healthcheck(srv.cwd, env);
    assert.equal(down.code, 1);
    assert.match(down.out, /^unhealthy: implicit FTPS .*ECONNREFUSED/);
  });

  void test("both: it checks the control port and the implicit port, and fails when either does not answer", async () => {
    const srv = await serve("", 8, { BERTH_TLS_MODE: "both", BERTH_TLS_IMPLICIT_PORT: "0" });
    const { port, implicitPort } = await ports(srv);
    assert.ok(port !== null && implicitPort !== null);
    const env = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_TLS_MODE: "both", BERTH_LISTEN_PORT: String(port) };
    assert.deepEqual(await healthcheck(srv.cwd, { ...env, BERTH_TLS_IMPLICIT_PORT: String(implicitPort) }), { code: 0, out: "" });
    const wrong = await healthcheck(srv.cwd, { ...env, BERTH_TLS_IMPLICIT_PORT: String(await closedPort()) });
    assert.equal(wrong.code, 1);
    assert.match(wrong.out, /^unhealthy: implicit FTPS .*ECONNREFUSED/);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

void describe("environment over the config file", () => {
  void test("each key the file changes from its default and a BERTH_* variable sets to another value is one warning at start", async () => {
    // The environment of serve() sets listen.host to the file's value, listen.port and
    // passive.ports to others, and limits.shutdownGrace over the file's default; storage.root
    // comes from the file alone.
    const srv = await serve('listen:\n  host: "127.0.0.1"\n  port: 2100\npassive:\n  ports: "40000-40009"\nstorage:\n  root: files\nlimits:\n  shutdownGrace: 8\n', 5);
    const warnings = srv
      .lines()
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.event === "env-override");
    assert.deepEqual(
      warnings.map((w) => [w.level, w.key, w.variable, w.value, w.fileValue, w.msg]),
      [
        [40, "listen.port", "BERTH_LISTEN_PORT", 0, 2100, "BERTH_LISTEN_PORT=0 overrides listen.port: 2100 in config/berth.yaml"],
        [40, "passive.ports", "BERTH_PASSIVE_PORTS", "22010-22019", "40000-40009", 'BERTH_PASSIVE_PORTS="22010-22019" overrides passive.ports: "40000-40009" in config/berth.yaml'],
      ],
    );
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

void describe("admin socket ownership", () => {
  /** A socket path in a temp directory of its own (short enough for sun_path). */
  const socketPath = (): string => {
    const dir = mkdtempSync(path.join(tmpdir(), "berth-sock-"));
    dirs.push(dir);
    return path.join(dir, "admin.sock");
  };

  void test("a second server with the same admin.socket refuses to start (exit 2, one line) and the first keeps its socket", async () => {
    const sock = socketPath();
    const first = await serve("", 8, { BERTH_ADMIN_SOCKET: sock });
    await first.waitLog(/"event":"admin-socket"/);
    const inode = statSync(sock).ino;
    const second = await serveUntilExit({ BERTH_ADMIN_SOCKET: sock });
    assert.equal(second.code, 2, second.stderr);
    assert.equal(second.stderr.split("\n").length, 2, `one line: ${second.stderr}`);
    assert.match(second.stderr, /^berth: config: admin\.socket .*admin\.sock.* answers/);
    // Refused before it listened on anything.
    assert.doesNotMatch(second.stdout, /"event":"listening"/);
    assert.equal(statSync(sock).ino, inode);
    assert.equal((await admin(sock, { cmd: "status" })).pid, first.child.pid);
    assert.deepEqual(await admin(sock, { cmd: "drain" }), { ok: true });
    assert.equal(await first.exited, 0);
    assert.throws(() => statSync(sock), /ENOENT/);
  });

  void test("a path at admin.socket that is not a socket is left alone and the server refuses to start", async () => {
    const sock = socketPath();
    writeFileSync(sock, "not a socket\n");
    const srv = await serveUntilExit({ BERTH_ADMIN_SOCKET: sock });
    assert.equal(srv.code, 2, srv.stderr);
    assert.match(srv.stderr, /^berth: config: admin\.socket .*admin\.sock.* not a socket/);
    assert.equal(readFileSync(sock, "utf8"), "not a socket\n");
  });

  void test("a stale socket file (its server killed) is replaced", async () => {
    const sock = socketPath();
    const dead = await serve("", 8, { BERTH_ADMIN_SOCKET: sock });
    await dead.waitLog(/"event":"admin-socket"/);
    dead.child.kill("SIGKILL");
    await dead.exited;
    assert.ok(statSync(sock).isSocket(), "the killed server left its socket file");
    const srv = await serve("", 8, { BERTH_ADMIN_SOCKET: sock });
    await srv.waitLog(/"event":"admin-socket"/);
    assert.equal((await admin(sock, { cmd: "status" })).pid, srv.child.pid);
    assert.deepEqual(await admin(sock, { cmd: "drain" }), { ok: true });
    assert.equal(await srv.exited, 0);
    assert.throws(() => statSync(sock), /ENOENT/);
  });

  void test("at exit the socket file is removed only while it is still the server's", async () => {
    const sock = socketPath();
    const srv = await serve("", 8, { BERTH_ADMIN_SOCKET: sock });
    await srv.waitLog(/"event":"admin-socket"/);
    // Someone else's socket takes the path while the server runs.
    rmSync(sock);
    const other = createServer((c) => c.end("other\n"));
    await new Promise<void>((resolve) => other.listen(sock, resolve));
    try {
      srv.child.kill("SIGTERM");
      assert.equal(await srv.exited, 0);
      assert.ok(statSync(sock).isSocket(), "the other socket's file is still there");
      const s = connect(sock);
      let got = "";
      s.on("data", (c: Buffer) => (got += c.toString("utf8")));
      await new Promise<void>((resolve, reject) => s.on("close", () => resolve()).on("error", reject));
      assert.equal(got, "other\n");
    } finally {
      await new Promise<void>((resolve) => other.close(() => resolve()));
    }
  });
});

/** Opens control connections to `port` until the server, out of descriptors, closes one
 * unanswered (libuv then accepts and closes at once); returns them all, still open. */
async function fillDescriptors(port: number): Promise<Control[]> {
  const extra: Control[] = [];
  for (let full = false; !full && extra.length < 200; ) {
    const c = new Control(port);
    extra.push(c);
    full = await Promise.race([c.reply().then(() => false), c.closed.then(() => true)]);
  }
  assert.ok(extra.length < 200, "the descriptor table filled up");
  return extra;
}

void describe("users file edited by hand", () => {
  void test("broken before the first login, the copy read at start stays in use; mended, the new version is read", async () => {
    const usersDir = mkdtempSync(path.join(tmpdir(), "berth-svc-users-"));
    dirs.push(usersDir);
    const usersFile = path.join(usersDir, "users.json");
    const store = new UserStore({ file: usersFile, storageRoot: usersDir, bcryptCost: 4 });
    await store.add("svc", "svc-password");
    const srv = await serve("", 8, { BERTH_USERS_FILE: usersFile });
    // Nobody has logged in yet; an edit leaves the file half-written.
    const good = readFileSync(usersFile, "utf8");
    writeFileSync(usersFile, good.slice(0, good.length / 2));
    await new Promise((r) => setTimeout(r, 1100));
    const before = srv.mark();
    const c = new Control(srv.port);
    await c.login();
    assert.match(await c.cmd("QUIT"), /^221 /);
    const kept = JSON.parse(await srv.waitLog(/users file unusable/, before)) as Record<string, unknown>;
    assert.deepEqual([kept.level, kept.msg, kept.kept], [50, "users file unusable; keeping the last good copy", 1]);
    // Mended, with a user more: read at the next login.
    writeFileSync(usersFile, good);
    await store.add("late", "late-password");
    await new Promise((r) => setTimeout(r, 1100));
    const again = new Control(srv.port);
    assert.match(await again.reply(), /^220 /);
    assert.match(await again.cmd("USER late"), /^331 /);
    assert.match(await again.cmd("PASS late-password"), /^230 /);
    assert.match(await again.cmd("QUIT"), /^221 /);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

void describe("out of descriptors, logged in", () => {
  void test("commands answer 425 and 451 with the reason, and work again once descriptors are back", async () => {
    const srv = await serve("", 8, {}, 120);
    const c = new Control(srv.port);
    await c.login();
    const extra = await fillDescriptors(srv.port);
    // One passive port after another would fail alike: the first failure is the answer.
    assert.equal(await c.cmd("EPSV"), "425 Can't open passive connection: too many open files");
    const before = srv.mark();
    assert.equal(await c.cmd("MKD fresh"), "451 Local error: too many open files");
    const warned = JSON.parse(await srv.waitLog(/failed on the server's side/, before)) as Record<string, unknown>;
    assert.deepEqual([warned.level, warned.verb, warned.code], [40, "MKD", 451]);
    assert.match(String(warned.detail), /EMFILE/);
    for (const x of extra) x.socket.destroy();
    await Promise.all(extra.map((x) => x.closed));
    await new Promise((r) => setTimeout(r, 200));
    assert.match(await c.cmd("EPSV"), /^229 /);
    assert.match(await c.cmd("MKD fresh"), /^257 /);
    assert.match(await c.cmd("QUIT"), /^221 /);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

void describe("out of descriptors, counting a quota", () => {
  void test("a recount that runs out of descriptors keeps the count there was: an upload past the quota is still refused", async () => {
    const srv = await serve("", 8, { BERTH_QUOTA_BYTES: "1000", BERTH_QUOTA_RESCAN_AFTER: "0" }, 64);
    mkdirSync(path.join(srv.cwd, "data", "svc", "sub"));
    writeFileSync(path.join(srv.cwd, "data", "svc", "sub", "old.bin"), Buffer.alloc(900));
    // The first login counts the home: 900 of 1000 bytes used.
    const a = new Control(srv.port);
    await a.login();
    assert.match(await a.cmd("TYPE I"), /^200 /);
    const b = new Control(srv.port);
    assert.match(await b.reply(), /^220 /);
    const extra = await fillDescriptors(srv.port);
    // One descriptor free: b's login opens its home with it, and the recount (rescanAfter 0: at
    // every login) finds none left for the home's directories.
    extra.shift()?.socket.destroy();
    await sleep(300);
    assert.match(await b.cmd("USER svc"), /^331 /);
    assert.match(await b.cmd("PASS svc-password"), /^230 /);
    await sleep(300);
    for (const c of extra) c.socket.destroy();
    await Promise.all(extra.map((c) => c.closed));
    await sleep(200);
    const data = await a.pasv();
    const reply = await a.cmd("STOR more.bin");
    if (/^150 /.test(reply)) {
      data.end(Buffer.alloc(900));
      assert.match(await a.reply(), /^552 Quota exceeded/);
    } else {
      assert.match(reply, /^552 Quota exceeded/);
      data.destroy();
    }
    assert.deepEqual(readdirSync(path.join(srv.cwd, "data", "svc")).sort(), ["sub"]);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

void describe("a client that reads no reply", () => {
  void test("its session timing out while replies wait for it, and the client then going away, leave the server serving", async () => {
    const srv = await serve("", 8, { BERTH_LIMITS_IDLE_TIMEOUT: "1", BERTH_LIMITS_COMMAND_RATE: "0" });
    const c = new Control(srv.port);
    await c.login();
    const mark = srv.mark();
    c.socket.pause();
    // About 10 MB of 211 replies, more than the sockets' buffers hold: the server waits for room.
    c.socket.write("STAT\r\n".repeat(40_000));
    assert.match(await srv.waitLog(/"event":"timeout"/, mark), /Idle timeout/);
    // Closed with replies unread: the server's side is reset.
    c.socket.destroy();
    await c.closed;
    await sleep(500);
    assert.equal(srv.child.exitCode, null, `berth exited: ${srv.stderr()}`);
    assert.equal(srv.stderr(), "");
    const again = new Control(srv.port);
    await again.login();
    assert.match(await again.cmd("QUIT"), /^221 /);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

void describe("log output gone", () => {
  void test("the server outlives whoever read its log: one line on stderr, and serving goes on", async () => {
    const srv = await serve("");
    // The reader of the log goes away: the server's next log line meets EPIPE.
    srv.child.stdout?.destroy();
    const c = new Control(srv.port);
    await c.login();
    assert.match(await c.cmd("PWD"), /^257 /);
    const again = new Control(srv.port);
    await again.login();
    assert.match(await again.cmd("QUIT"), /^221 /);
    assert.match(await c.cmd("QUIT"), /^221 /);
    assert.equal(srv.stderr(), "berth: log output failed (EPIPE); logging stops, serving goes on\n");
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("the server outlives the reader of stdout and stderr both (berth serve 2>&1 | head -1)", async () => {
    const srv = await serve("");
    // Both pipes lose their reader: the next log line meets EPIPE, and so does the line on stderr
    // that says so.
    srv.child.stdout?.destroy();
    srv.child.stderr?.destroy();
    const died = srv.exited.then((code) => assert.fail(`berth exited with ${String(code)} while serving`));
    const session = async (): Promise<void> => {
      const c = new Control(srv.port);
      await c.login();
      assert.match(await c.cmd("PWD"), /^257 /);
      // The failed writes are reported asynchronously: give them time to end the process if they can.
      await sleep(500);
      const again = new Control(srv.port);
      await again.login();
      assert.match(await again.cmd("QUIT"), /^221 /);
      assert.match(await c.cmd("QUIT"), /^221 /);
    };
    await Promise.race([session(), died]);
    assert.equal(srv.child.exitCode, null, "still running");
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

void describe("passive diagnosis", () => {
  void test("a PASV the client never connected to is logged with the announced address", async () => {
    const srv = await serve("");
    const c = new Control(srv.port);
    await c.login();
    const r = await c.cmd("PASV");
    const port = /\(\d+,\d+,\d+,\d+,(\d+),(\d+)\)/.exec(r);
    assert.ok(port, r);
    assert.match(await c.cmd("QUIT"), /^221 /);
    const line = JSON.parse(await srv.waitLog(/"event":"passive-unused"/)) as { port: number; announced: string };
    assert.equal(line.port, Number(port[1]) * 256 + Number(port[2]));
    assert.equal(line.announced, "127.0.0.1");
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

void describe("berth selftest", () => {
  void test("passes against a running server and removes its temporary user", async () => {
    const srv = await serve("");
    const env = {
      PATH: process.env.PATH ?? "",
      BERTH_LISTEN_HOST: "127.0.0.1",
      BERTH_PASSIVE_PORTS: "22010-22019",
      BERTH_USERS_BCRYPT_COST: "4",
    };
    const child = spawn(process.execPath, ["--import", TSX, MAIN, "selftest", "--port", String(srv.port)], { cwd: srv.cwd, env });
    let out = "";
    child.stdout.on("data", (c: Buffer) => (out += c.toString("utf8")));
    child.stderr.on("data", (c: Buffer) => (out += c.toString("utf8")));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.equal(code, 0, out);
    assert.match(out, /PASS +PASV listing/);
    assert.match(out, /PASS +resumed download/);
    assert.match(out, /docker run -p \d+:\d+ -p 22010-22019:22010-22019/);
    assert.doesNotMatch(readFileSync(path.join(srv.cwd, "users", "users.json"), "utf8"), /selftest-/);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

void describe("service helpers", () => {
  void test("passive warnings: loopback, private, container", async () => {
    const { passiveWarnings, isPrivate } = await import("../src/data/diagnose.ts");
    const base = { listenHost: "::", passiveAddress: "", passivePorts: "21100-21110", inContainer: false };
    assert.deepEqual(passiveWarnings(base), []);
    assert.match(passiveWarnings({ ...base, inContainer: true })[0] ?? "", /container/);
    // With host networking (compose's berth-host, README "Docker") an empty address is right: the
    // warning says so rather than telling every such start to set one.
    assert.match(passiveWarnings({ ...base, inContainer: true })[0] ?? "", /unless the container uses the host's network \(--network host\)/);
    assert.match(passiveWarnings({ ...base, passiveAddress: "0.0.0.0" })[0] ?? "", /only clients on this machine/);
    assert.match(passiveWarnings({ ...base, passiveAddress: "192.168.1.5" })[0] ?? "", /private/);
    assert.deepEqual(passiveWarnings({ ...base, passiveAddress: "203.0.113.7" }), []);
    assert.deepEqual(passiveWarnings({ ...base, listenHost: "127.0.0.1", passiveAddress: "127.0.0.1" }), []);
    assert.equal(isPrivate("172.20.0.1"), true);
    assert.equal(isPrivate("172.32.0.1"), false);
    assert.equal(isPrivate("fd00::1"), true);
  });

  void test("ctl progress bar and table", async () => {
    const { progressBar, sessionTable, human } = await import("../src/cli/ctl.ts");
    assert.equal(progressBar(50, 100, 10), "[#####-----]  50%");
    assert.equal(progressBar(5, null, 5, 2), "[-->--]");
    assert.equal(human(1_500_000), "1.5 MB");
    const table = sessionTable(
      [{ id: "ab12cd34", user: "svc", remote: "127.0.0.1", secure: false, transfer: { direction: "upload", path: "/x", bytes: 500, expected: 1000, startedAt: 0 } }],
      1000,
    );
    assert.match(table, /ab12cd34 +svc +127\.0\.0\.1 +no +upload \/x/);
    assert.match(table, /\[#{15}-{15}\] {2}50%/);
    // A path is any name a client made: control characters, C1 ones too (U+009B is a terminal's
    // CSI), are shown escaped, never sent to the operator's terminal.
    const odd = sessionTable(
      [{ id: "ab12cd34", user: "svc", remote: "127.0.0.1", secure: false, transfer: { direction: "download", path: "/a\u009b2Jb\u001b[2Jc\u007fd\u00e9", bytes: 1, expected: null, startedAt: 0 } }],
      1000,
    );
    assert.match(odd, /download \/a\\x9b2Jb\\x1b\[2Jc\\x7fd\u00e9$/m);
    // eslint-disable-next-line no-control-regex -- control characters are what must not be there
    assert.doesNotMatch(odd, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
  });
});
