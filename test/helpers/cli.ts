/**
 * The berth command line as an operator runs it, for tests: a real process in a fresh working
 * directory with a minimal environment, the one-line error check, and a serving process. Working
 * directories are removed, and serving processes a test left running killed, when the file is done.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { Client } from "basic-ftp";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after } from "node:test";
import { fileURLToPath } from "node:url";
import { reapAll, track } from "./reap.ts";

/** The command line's entry. */
export const MAIN = fileURLToPath(new URL("../../src/cli/main.ts", import.meta.url));
/** bin/berth, the command of the Docker image and of a global install. */
export const BIN = fileURLToPath(new URL("../../bin/berth", import.meta.url));
/** tsx's loader, for `node --import`. */
export const TSX = import.meta.resolve("tsx");

const dirs: string[] = [];
after(() => {
  reapAll();
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A fresh working directory. */
export function workdir(): string {
  const dir = mkdtempSync(path.join(tmpdir(), "berth-cli-"));
  dirs.push(dir);
  return dir;
}

/** What a finished command left: its exit status and output. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A minimal environment: no stray BERTH_* variables, fast bcrypt. */
export function baseEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", BERTH_USERS_BCRYPT_COST: "4", ...extra };
}

/** Runs the CLI in `cwd` with `args`, feeding `input` on stdin; `via`: a program and its arguments
 * that run node in turn (setpriv, to run it as another user). */
export function berth(cwd: string, args: string[], opts: { input?: string | Buffer; env?: Record<string, string>; via?: readonly string[] } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const [program, ...prefix] = [...(opts.via ?? []), process.execPath];
    const argv = [...prefix, "--import", TSX, MAIN, ...args];
    const child = track(spawn(program ?? process.execPath, argv, { cwd, env: baseEnv(opts.env), timeout: 60_000, killSignal: "SIGKILL" }));
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.input ?? "");
  });
}

/** Asserts a failure: the exit status and exactly one `berth: ...` line on stderr, no stack trace. */
export function assertOneLineError(r: CliResult, code: number, ...fragments: string[]): void {
  assert.equal(r.code, code, `exit status (stderr: ${r.stderr})`);
  const lines = r.stderr.split("\n").filter(Boolean);
  assert.equal(lines.length, 1, `one line on stderr, got: ${r.stderr}`);
  assert.match(lines[0] ?? "", /^berth: /);
  assert.doesNotMatch(r.stderr, /\n\s+at /, "no stack trace");
  for (const f of fragments) assert.ok(r.stderr.includes(f), `"${r.stderr.trim()}" should mention ${f}`);
}

/** setpriv, to run the server as another user (tests that need it skip without it). */
export const SETPRIV = ["/usr/bin/setpriv", "/bin/setpriv"].find((p) => existsSync(p));

/** The control port a `berth serve` logged in its "listening" line (0 when there is none yet). */
export function listeningPort(stdout: string): number {
  const line = /^.*"event":"listening".*$/m.exec(stdout)?.[0];
  return line === undefined ? 0 : (JSON.parse(line) as { port: number }).port;
}

/** Starts `berth serve` in `cwd` (or `command`, a program and its arguments); `ready` resolves
 * once `pattern` appears on stdout (and rejects if the process exits first). */
export function startServe(cwd: string, env: Record<string, string>, pattern: RegExp, command: readonly string[] = [process.execPath, "--import", TSX, MAIN, "serve"]) {
  const [program = "", ...args] = command;
  const child = track(spawn(program, args, { cwd, env: baseEnv(env) }));
  let stdout = "";
  let stderr = "";
  const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.on("data", (c: Buffer) => {
      stdout += c.toString("utf8");
      if (pattern.test(stdout)) resolve();
    });
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    void exited.then(() => reject(new Error(`serve exited early: ${stderr}`)));
  });
  return { child, ready, exited, output: () => ({ stdout, stderr }) };
}

/** Logs `user` in on 127.0.0.1:`port` with a real client and checks it lands in its home ("/"). */
export async function assertLogsIn(port: number, user: string, password: string): Promise<void> {
  const client = new Client(10_000);
  try {
    await client.access({ host: "127.0.0.1", port, user, password });
    assert.equal(await client.pwd(), "/");
  } finally {
    client.close();
  }
}
