/**
 * Concurrent sessions: N clients (50, 200, 500, 1,000; fewer with --quick), spread over the load
 * worker processes, each repeating a whole session — connect, USER/PASS, PWD, TYPE I, LIST of a
 * 100-entry directory, RETR of 64 KiB, QUIT — until the window closes. The window opens after a
 * ramp (all clients start at once, so the rate settles only after the first sessions end). Figures:
 * sessions completed per second inside the window, latency p50/p99 of the sessions that ended once
 * it was open, failed sessions from the start (ramp included). Every session logs in
 * anew with the same credentials (berth checks a bcrypt hash of cost 10; the peers SHA-512 crypt).
 * A full run measures the cases the target names (500 and 1,000 clients) in a second pass over
 * the servers, minutes after the first, and keeps the better figure of each server, as the other
 * scenarios do for all their cases: one window of five seconds moves by a fifth from run to run.
 */
import { treeCpuSeconds } from "../lib/proc.ts";
import type { SessionsResult, SessionsTask } from "../lib/pool.ts";
import { quantile } from "../lib/stats.ts";
import type { Measurement, Scenario, ScenarioContext } from "../lib/types.ts";

/** The client counts measured again in the second pass (those the target is set for). */
const SECOND_PASS_CLIENTS: readonly number[] = [500, 1000];

/** The client counts of this pass on this server. */
function countsFor(ctx: ScenarioContext): number[] {
  const own = ctx.server.spec.clientCounts;
  return ctx.opts.clientCounts.filter((c) => (own === undefined || own.includes(c)) && (ctx.pass === 0 || SECOND_PASS_CLIENTS.includes(c)));
}

async function round(ctx: ScenarioContext, clients: number, rampMs: number, windowMs: number): Promise<Measurement> {
  const { server, fixtures, pool } = ctx;
  const startAt = Date.now() + 300;
  const opensAt = startAt + rampMs;
  const tasks: SessionsTask[] = pool.split(clients).map((n) => ({
    type: "sessions",
    target: { host: "127.0.0.1", port: server.spec.port, tlsDataAfter150: server.spec.tlsDataAfter150 },
    clients: n,
    startAt,
    rampMs,
    windowMs,
    timeoutMs: ctx.opts.sessionTimeoutMs,
    listArg: fixtures.dir100,
    listLines: 100,
    retrPath: fixtures.file64k,
    retrBytes: 64 * 1024,
  }));
  // The server's CPU inside the window: read when it opens and when it closes.
  const cpu: { open: number; window?: number } = { open: 0 };
  const opened = setTimeout(() => (cpu.open = treeCpuSeconds(server.pid)), opensAt - Date.now());
  const closed = setTimeout(() => (cpu.window = treeCpuSeconds(server.pid) - cpu.open), opensAt + windowMs - Date.now());
  const results = await pool
    .run<SessionsResult & { error?: string }>(tasks, rampMs + windowMs + ctx.opts.sessionTimeoutMs * 2 + 20_000)
    .finally(() => {
      clearTimeout(opened);
      clearTimeout(closed);
    });
  const failed = results.find((r) => r.error !== undefined);
  if (failed) throw new Error(`load worker: ${failed.error}`);
  const latencies = results.flatMap((r) => r.latenciesMs);
  const completed = results.reduce((a, r) => a + r.completed, 0);
  const errors = results.reduce((a, r) => a + r.errors, 0);
  const samples = [...new Set(results.flatMap((r) => r.errorSamples))].slice(0, 2);
  return {
    scenario: "sessions",
    case: `${clients.toLocaleString("en")} clients`,
    server: server.spec.name,
    value: completed / (windowMs / 1000),
    note: errors > 0 ? `errors: ${samples.join("; ")}` : undefined,
    serverCpu: cpu.window,
    clientCpu: results.reduce((a, r) => a + r.cpu, 0),
    seconds: windowMs / 1000,
    extra: {
      p50: latencies.length ? quantile(latencies, 0.5) : null,
      p99: latencies.length ? quantile(latencies, 0.99) : null,
      errors,
    },
  };
}

/** Concurrent whole sessions. */
export const sessions: Scenario = {
  id: "sessions",
  title: "Concurrent sessions",
  unit: "sessions/s",
  higherIsBetter: true,
  mode: "off",
  description:
    "Each client loops: connect, USER/PASS, PWD, TYPE I, PASV + LIST of 100 entries, PASV + RETR of 64 KiB, QUIT. " +
    "Clients are spread over the load workers and all start together; a short warm-up (20 clients, 1 s) runs first. " +
    "Each client count runs a ramp first (all clients start at once; sessions that end in it are not counted), then the window; " +
    "a session fails when any step waits more than 10 s for the server (8 s with --quick): a connect, a reply or data; " +
    "sessions/s, latencies and CPU columns cover the window, failed sessions the whole run, ramp included. " +
    "500 and 1,000 clients (the cases with a target) run in two passes over the servers (the second in reverse order) and keep each server's better figure; " +
    "berth without its login cache runs 50 and 500 clients only.",
  passes: 2,
  columns: [
    { key: "p50", header: "p50 ms" },
    { key: "p99", header: "p99 ms" },
    { key: "errors", header: "failed sessions" },
  ],
  run: async (ctx) => {
    await round(ctx, 20, 0, 1000).catch(() => undefined);
    const out: Measurement[] = [];
    for (const clients of countsFor(ctx)) {
      try {
        const m = await round(ctx, clients, ctx.opts.sessionsRampMs, ctx.opts.sessionsWindowMs);
        out.push(m);
        ctx.log(`  ${m.case}: ${m.value?.toFixed(0)} sessions/s, p99 ${Number(m.extra?.p99).toFixed(0)} ms, errors ${m.extra?.errors}`);
      } catch (err) {
        const note = err instanceof Error ? err.message : String(err);
        ctx.log(`  ${clients} clients failed: ${note}`);
        out.push({ scenario: "sessions", case: `${clients.toLocaleString("en")} clients`, server: ctx.server.spec.name, value: null, note });
      }
      await new Promise((r) => setTimeout(r, 1500));
    }
    return out;
  },
};
