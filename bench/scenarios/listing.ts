/**
 * Listing a directory of 10,000 files: LIST and MLSD, each timed from the command to the final
 * reply (data connection set-up included), after untimed ones; the median of several runs is
 * kept.
 */
import { FtpClient } from "../lib/ftp.ts";
import { withCpu } from "../lib/proc.ts";
import { median } from "../lib/stats.ts";
import type { Measurement, Scenario, ScenarioContext } from "../lib/types.ts";

async function timed(ctx: ScenarioContext, verb: "LIST" | "MLSD"): Promise<Measurement> {
  const { server, fixtures, opts } = ctx;
  const label = `${verb} ${fixtures.listCount.toLocaleString("en")} entries`;
  if (verb === "MLSD" && !server.spec.mlsd) {
    return { scenario: "listing", case: label, server: server.spec.name, value: null, note: "no MLSD" };
  }
  const c = await FtpClient.connect({ host: "127.0.0.1", port: server.spec.port, timeoutMs: 30_000 });
  try {
    await c.login("bench", "bench");
    // Untimed listings first, for every server alike: caches, a JIT (berth's and the load
    // generator's), a helper thread started at the first large listing. The figure is what a
    // running server answers.
    for (let i = 0; i < opts.listingWarmup; i++) await c.listing(`${verb} ${fixtures.listDir}`);
    const times: number[] = [];
    let cpu = 0;
    let client = 0;
    let bytes = 0;
    for (let i = 0; i < opts.listingRuns; i++) {
      const m = await withCpu(server.pid, () => c.listing(`${verb} ${fixtures.listDir}`));
      if (m.result.lines < fixtures.listCount) throw new Error(`${verb} gave ${m.result.lines} lines`);
      times.push(m.seconds * 1000);
      cpu += m.serverCpu;
      client += m.clientCpu;
      bytes = m.result.bytes;
    }
    return {
      scenario: "listing",
      case: label,
      server: server.spec.name,
      value: median(times),
      serverCpu: cpu / opts.listingRuns,
      clientCpu: client / opts.listingRuns,
      extra: { bytes },
    };
  } finally {
    c.close();
  }
}

/** LIST and MLSD of 10,000 entries. */
export const listing: Scenario = {
  id: "listing",
  title: "Listing 10,000 entries",
  unit: "ms",
  higherIsBetter: false,
  mode: "off",
  passes: 2,
  description: "One session; PASV + LIST (or MLSD) of a directory of 10,000 empty files; untimed listings first, then the median of the timed runs; the better median of two passes over the servers (the second in reverse order). CPU columns are per listing.",
  columns: [{ key: "bytes", header: "listing bytes" }],
  run: async (ctx) => {
    const out: Measurement[] = [];
    for (const verb of ["LIST", "MLSD"] as const) {
      try {
        out.push(await timed(ctx, verb));
      } catch (err) {
        const note = err instanceof Error ? err.message : String(err);
        ctx.log(`  ${verb} failed: ${note}`);
        out.push({ scenario: "listing", case: `${verb} 10,000 entries`, server: ctx.server.spec.name, value: null, note });
      }
    }
    return out;
  },
};
