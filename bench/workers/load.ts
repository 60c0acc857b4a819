/**
 * One load-generator process (see bench/lib/pool.ts): runs the task its parent sends and answers
 * with its figures and the CPU it used. Concurrent sessions: each client repeats login, PWD,
 * TYPE I, LIST of a 100-entry directory, RETR of 64 KiB and QUIT until the window closes. Idle
 * sessions: connect and log in, then hold the connection until told to close.
 */
import { FtpClient, type ClientOptions } from "../lib/ftp.ts";
import type { IdleOpenTask, IdleResult, SessionsResult, SessionsTask, Target, Task } from "../lib/pool.ts";

const USER = "bench";
const PASS = "bench";
const MAX_SAMPLES = 5;

function cpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

function clientOptions(t: Target, timeoutMs: number): ClientOptions {
  return { host: t.host, port: t.port, timeoutMs, tlsDataAfter150: t.tlsDataAfter150 };
}

function describe(err: unknown): string {
  return err instanceof Error ? err.message.slice(0, 160) : String(err);
}

async function oneSession(task: SessionsTask): Promise<void> {
  const c = await FtpClient.connect(clientOptions(task.target, task.timeoutMs));
  try {
    await c.login(USER, PASS);
    await c.cmd("PWD", [257]);
    await c.cmd("TYPE I", [200]);
    const list = await c.listing(`LIST ${task.listArg}`);
    if (list.lines < task.listLines) throw new Error(`LIST gave ${list.lines} lines, not ${task.listLines}`);
    const got = await c.retr(task.retrPath);
    if (got !== task.retrBytes) throw new Error(`RETR gave ${got} bytes, not ${task.retrBytes}`);
    await c.quit();
  } finally {
    c.close();
  }
}

async function sessions(task: SessionsTask): Promise<SessionsResult> {
  const opensAt = task.startAt + task.rampMs;
  const deadline = opensAt + task.windowMs;
  const hardStop = deadline + task.timeoutMs + 5000;
  let completed = 0;
  let late = 0;
  let errors = 0;
  const errorSamples: string[] = [];
  const latenciesMs: number[] = [];
  // This process's CPU inside the window, read when it opens and closes.
  let cpuOpen = 0;
  let cpuClose: number | null = null;
  const opened = setTimeout(() => (cpuOpen = cpuSeconds()), Math.max(0, opensAt - Date.now()));
  const closed = setTimeout(() => (cpuClose = cpuSeconds()), Math.max(0, deadline - Date.now()));
  const client = async (): Promise<void> => {
    for (let i = 0; i < 1_000_000 && Date.now() < deadline; i++) {
      const t0 = performance.now();
      try {
        await oneSession(task);
        const now = Date.now();
        if (now < opensAt) continue;
        latenciesMs.push(performance.now() - t0);
        if (now <= deadline) completed++;
        else late++;
      } catch (err) {
        errors++;
        if (errorSamples.length < MAX_SAMPLES) errorSamples.push(describe(err));
        // Back off a little so that a refusing server is not hammered in a tight loop.
        await new Promise((r) => setTimeout(r, 50));
      }
      if (Date.now() > hardStop) break;
    }
  };
  await new Promise((r) => setTimeout(r, Math.max(0, task.startAt - Date.now())));
  await Promise.all(Array.from({ length: task.clients }, () => client()));
  clearTimeout(opened);
  clearTimeout(closed);
  const cpu = (cpuClose ?? cpuSeconds()) - cpuOpen;
  return { completed, late, errors, errorSamples, latenciesMs, cpu };
}

const idle: FtpClient[] = [];

async function idleOpen(task: IdleOpenTask): Promise<IdleResult> {
  const cpu0 = cpuSeconds();
  let next = 0;
  let failed = 0;
  const errorSamples: string[] = [];
  const opener = async (): Promise<void> => {
    while (next < task.count) {
      next++;
      let c: FtpClient | null = null;
      try {
        c = await FtpClient.connect(clientOptions(task.target, task.timeoutMs));
        await c.login(USER, PASS);
        idle.push(c);
      } catch (err) {
        c?.close();
        failed++;
        if (errorSamples.length < MAX_SAMPLES) errorSamples.push(describe(err));
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(task.concurrency, task.count) }, () => opener()));
  return { open: idle.length, failed, errorSamples, cpu: cpuSeconds() - cpu0 };
}

function idleClose(): IdleResult {
  const cpu0 = cpuSeconds();
  for (const c of idle.splice(0)) c.close();
  return { open: 0, failed: 0, errorSamples: [], cpu: cpuSeconds() - cpu0 };
}

async function handle(task: Task): Promise<unknown> {
  switch (task.type) {
    case "sessions":
      return sessions(task);
    case "idle-open":
      return idleOpen(task);
    default:
      return idleClose();
  }
}

process.on("message", (m: Task) => {
  handle(m).then(
    (r) => process.send?.(r),
    (err: unknown) => process.send?.({ error: describe(err) }),
  );
});
process.on("disconnect", () => process.exit(0));
