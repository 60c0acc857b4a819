/**
 * Runs outside programs (curl, lftp, python3, FileZilla's check script) from tests without blocking
 * the event loop: the server under test runs in the same process and must keep answering.
 */
import { spawn, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { readdir, readFile, rename } from "node:fs/promises";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

/** What a finished program left behind. */
export interface ExecResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
  readonly timedOut: boolean;
}

/** Options of exec(). */
export interface ExecOptions {
  readonly timeoutMs?: number;
  readonly env?: NodeJS.ProcessEnv;
  readonly cwd?: string;
  readonly input?: string;
}

/** Runs `cmd` with `args`; never rejects (a missing program gives code null and its error in stderr). */
export function exec(cmd: string, args: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, {
      env: { ...process.env, ...opts.env },
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
      stdio: ["pipe", "pipe", "pipe"],
      detached: true, // its own process group, so a timeout ends its children too
    });
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined) {
        try {
          process.kill(-child.pid, "SIGKILL");
        } catch {
          child.kill("SIGKILL");
        }
      }
    }, opts.timeoutMs ?? 60_000);
    child.on("error", (err) => {
      clearTimeout(timer);
      resolve({ code: null, stdout, stderr: stderr + String(err), timedOut });
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, timedOut });
    });
    child.stdin.on("error", () => undefined);
    child.stdin.end(opts.input ?? "");
  });
}

/** True when `cmd` is on the PATH. */
export function which(cmd: string): boolean {
  return spawnSync("sh", ["-c", `command -v "$0"`, cmd], { stdio: "ignore" }).status === 0;
}

/** Every file under `dir` as relative path → SHA-256, for comparing trees. */
export async function treeDigest(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p);
      else if (e.isFile()) out.set(relative(dir, p), createHash("sha256").update(await readFile(p)).digest("hex"));
    }
  };
  await walk(dir);
  return out;
}

/** A one-line summary of a failed run, for assertion messages. */
export function describeRun(r: ExecResult): string {
  const tail = (s: string): string => s.trim().split("\n").slice(-15).join("\n");
  return `exit ${r.code}${r.timedOut ? " (timed out)" : ""}\n--- stdout\n${tail(r.stdout)}\n--- stderr\n${tail(r.stderr)}`;
}

/** The headless FileZilla check script: $FZ_CHECK, else ../shared/tools/filezilla/fz-check.sh beside
 * the repository (where the project's tools are). */
export const FZ_CHECK_SCRIPT =
  process.env.FZ_CHECK || fileURLToPath(new URL("../../../shared/tools/filezilla/fz-check.sh", import.meta.url));

/**
 * Runs the FileZilla check script with `args`, its output in `out` (FZ_OUT). A FileZilla that
 * exits before it has written a line of its log never reached the server: it died starting up
 * (seen on a busy machine, with ten FileZilla instances and their X servers starting together). Such a run is taken once more, within the same time; the
 * first one's output is kept beside as `out`-exited-early, and its FileZilla and X server output
 * is put in the result's stderr for the record. Any other failure is the result as it is.
 */
export async function fzCheck(args: readonly string[], out: string, opts: ExecOptions & { readonly timeoutMs: number }): Promise<ExecResult> {
  const started = Date.now();
  const run = (): Promise<ExecResult> => exec(FZ_CHECK_SCRIPT, args, { ...opts, timeoutMs: opts.timeoutMs - (Date.now() - started), env: { ...opts.env, FZ_OUT: out } });
  const first = await run();
  if (first.code === 0 || !/filezilla exited early/.test(first.stdout) || !/\(no log file written: /.test(first.stdout)) return first;
  const aside = `${out}-exited-early`;
  await rename(out, aside);
  const said = async (f: string): Promise<string> => (await readFile(join(aside, f), "utf8").catch(() => "(none)")).trim();
  const again = await run();
  const record = `--- a first FileZilla exited before it logged anything; run again. Its output:\n${await said("filezilla.stdout")}\n--- its X server's:\n${await said("xvfb.log")}`;
  return { ...again, stderr: `${again.stderr}\n${record}` };
}
