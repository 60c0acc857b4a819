/**
 * Memory of idle sessions: the server's memory right after start, then with 1,000 and 10,000
 * logged-in idle sessions (with --quick: 1,000 only). The figure is the growth per session,
 * measured as PSS summed over the server's process tree (forking servers share pages between their
 * processes; PSS splits them fairly; for one process it is close to RSS). RSS is shown too.
 * Forking servers are measured at 1,000 only (10,000 sessions would be 10,000-20,000 processes on
 * this machine), and a peer is not asked for more sessions than its script lets it hold.
 */
import { treeMemory, type TreeMemory } from "../lib/proc.ts";
import type { IdleResult } from "../lib/pool.ts";
import type { Measurement, Scenario, ScenarioContext } from "../lib/types.ts";

const SETTLE_MS = 2000;

/** Logins in flight per load process (two of them) against a forking server. Each login there is a fork; with
 * more in flight, connections queue past vsftpd's listen backlog (32), the kernel drops their SYNs
 * and the clients retry after 1, 3, 7, 15 s…: 500 sessions took 36 s, most of it waiting. Only
 * the memory held is measured here, not how fast sessions open. */
const FORKING_CONCURRENCY = 8;

async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, SETTLE_MS));
}

/** Memory idle, then at each count; runs on a freshly started server. */
async function run(ctx: ScenarioContext): Promise<Measurement[]> {
  const { server, pool } = ctx;
  const spec = server.spec;
  await settle();
  const base: TreeMemory = treeMemory(server.pid);
  const out: Measurement[] = [
    {
      scenario: "idle-memory",
      case: "idle (no session)",
      server: spec.name,
      value: null,
      note: "baseline",
      extra: { rss: base.rss, pss: base.pss, rssPerSession: null, processes: base.processes },
    },
  ];
  let open = 0;
  try {
    for (const count of ctx.opts.idleCounts) {
      const label = `${count.toLocaleString("en")} idle sessions`;
      if (!spec.singleProcess && count > 1000) {
        out.push({ scenario: "idle-memory", case: label, server: spec.name, value: null, note: "forking server: measured at 1,000 only" });
        continue;
      }
      if (count > spec.maxSessions) {
        out.push({ scenario: "idle-memory", case: label, server: spec.name, value: null, note: `its script caps it near ${spec.maxSessions.toLocaleString("en")} sessions` });
        continue;
      }
      const more = pool.split(count - open).map((n) => ({
        type: "idle-open" as const,
        target: { host: "127.0.0.1", port: spec.port, tlsDataAfter150: false },
        count: n,
        concurrency: spec.singleProcess ? 50 : FORKING_CONCURRENCY,
        timeoutMs: 30_000,
      }));
      const results = await pool.run<IdleResult>(more, 600_000);
      open = results.reduce((a, r) => a + r.open, 0);
      const failed = results.reduce((a, r) => a + r.failed, 0);
      await settle();
      const mem = treeMemory(server.pid);
      const ok = open >= count;
      out.push({
        scenario: "idle-memory",
        case: label,
        server: spec.name,
        value: ok ? (mem.pss - base.pss) / open : null,
        note: ok ? undefined : `only ${open} of ${count} sessions logged in (${results.flatMap((r) => r.errorSamples)[0] ?? "?"})`,
        clientCpu: results.reduce((a, r) => a + r.cpu, 0),
        extra: { rss: mem.rss, pss: mem.pss, rssPerSession: (mem.rss - base.rss) / Math.max(1, open), processes: mem.processes, failed },
      });
      ctx.log(`  ${label}: ${((mem.pss - base.pss) / Math.max(1, open) / 1024).toFixed(1)} KiB/session (PSS), ${((mem.rss - base.rss) / Math.max(1, open) / 1024).toFixed(1)} KiB (RSS)`);
      if (!ok) break;
    }
  } finally {
    await pool.run(pool.split(0).map(() => ({ type: "idle-close" as const })), 60_000);
    await settle();
  }
  return out;
}

/** Idle sessions' memory. */
export const idleMemory: Scenario = {
  id: "idle-memory",
  title: "Memory of idle logged-in sessions",
  unit: "bytes/session",
  higherIsBetter: false,
  mode: "off",
  // Ten thousand sessions leave a single-process server with a grown heap and sockets in
  // TIME_WAIT: what runs next gets a new process, as this scenario did.
  restartAfter: true,
  description:
    "Fresh server; sessions connect and log in (100 at a time; 16 for a forking server, whose listen queue would overflow), then stay idle; memory is read 2 s later from /proc " +
    "(PSS from smaps_rollup, RSS from status, summed over the server's process tree).",
  columns: [
    { key: "rss", header: "RSS total" },
    { key: "pss", header: "PSS total" },
    { key: "rssPerSession", header: "RSS/session" },
    { key: "processes", header: "processes" },
  ],
  run,
};
