/**
 * `berth serve` as a child process for the service tests (service.test.ts, service-ops.test.ts):
 * a work directory with its config, the server's log lines, a small raw control client, and the
 * admin socket's raw requests.
 */
import assert from "node:assert/strict";
import { spawn, type ChildProcess } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after } from "node:test";
import { fileURLToPath } from "node:url";
import { receiveBinding, sendfileBinding } from "../../src/native.ts";
import { reapAll, track } from "./reap.ts";

export const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
export const TSX = import.meta.resolve("tsx");
export const HEALTHCHECK = fileURLToPath(new URL("../../docker/healthcheck.mjs", import.meta.url));
export const dirs: string[] = [];
after(() => {
  reapAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A `berth serve` child with its log lines. */
export interface Served {
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

export function writeConfig(cwd: string, body: string): void {
  writeFileSync(path.join(cwd, "config", "berth.yaml"), body);
}

/** A temp working directory with `config/berth.yaml` holding `configBody`. */
export function workDir(configBody: string): string {
  const cwd = mkdtempSync(path.join(tmpdir(), "berth-svc-"));
  dirs.push(cwd);
  mkdirSync(path.join(cwd, "config"));
  writeConfig(cwd, configBody);
  return cwd;
}

/** The environment of a `berth serve` child: loopback, a free control port, the user svc. */
export function serveEnv(graceSeconds: number, extraEnv: Record<string, string>): Record<string, string> {
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
export async function serveUntilExit(extraEnv: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
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
export async function serve(configBody: string, graceSeconds = 8, extraEnv: Record<string, string> = {}, fdLimit?: number, cwd = workDir(configBody)): Promise<Served> {
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
export class Control {
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
export async function nlst(c: Control, dir: string): Promise<string[]> {
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
export async function killMidReplace(): Promise<{ cwd: string; dir: string; original: Buffer; temps: () => string[] }> {
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

export async function greeting(port: number): Promise<string> {
  const c = new Control(port);
  const line = await c.reply();
  c.socket.destroy();
  return line;
}

/** One request on the admin socket. */
/** Writes `chunks` to the admin socket (a pause between them), ends the client's side if `end`,
 * and returns the response lines received until the server closes. */
export async function adminRaw(socketPath: string, chunks: (string | Buffer)[], end: boolean): Promise<string[]> {
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

export async function admin(socketPath: string, req: unknown): Promise<Record<string, unknown>> {
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

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

