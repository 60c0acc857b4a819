/**
 * Many small files over one session: STOR of N files of 4 KiB into a fresh directory, then RETR of
 * N files of 4 KiB (N = 2,000; 300 with --quick). Each file takes a PASV, a data connection and two
 * replies, so this measures per-transfer latency (Nagle, event-driven accept, reply writing) more
 * than bandwidth. Each direction starts with untimed files (up to 4,000 or 5 s; 1,000 or 2 s with
 * --quick) on the same session, for every server alike: the first thousands of transfers after a
 * start are up to three times as slow for a JIT-compiled server and for the load generator itself
 * (which meets the first server measured coldest). On a fresh berth, in blocks of 500 uploads with
 * the load generator already warm, the files per second rose until about the 3,500th file. A
 * direction that runs past its time limit is cut short and rated on what it did.
 */
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { removeUpload, type Fixtures } from "../lib/fixtures.ts";
import { FtpClient } from "../lib/ftp.ts";
import { withCpu } from "../lib/proc.ts";
import { quiesce } from "../lib/quiesce.ts";
import type { Measurement, Scenario, ScenarioContext } from "../lib/types.ts";

const BODY = Buffer.alloc(4096, 0x62);

async function direction(ctx: ScenarioContext, dir: "STOR" | "RETR"): Promise<Measurement> {
  const { server, fixtures, opts } = ctx;
  const total = Math.min(opts.smallFiles, fixtures.smallCount);
  // A new directory per server and run, and nothing removed until every server has run: on ext4,
  // creating files within minutes of removing thousands costs much more CPU (the inode allocator
  // skips recently freed inodes one by one), which would slow whichever server came next.
  const upDir = `${fixtures.upDir}/small-${server.spec.port}-${Date.now().toString(36)}`;
  const c = await FtpClient.connect({ host: "127.0.0.1", port: server.spec.port, timeoutMs: 15_000 });
  try {
    await c.login("bench", "bench");
    await c.cmd("TYPE I", [200]);
    if (dir === "STOR") await c.cmd(`MKD ${upDir}`, [257]);
    // Warm-up: the timed uploads still go to a directory of their own, created empty.
    const warmDir = `${upDir}/warm`;
    if (dir === "STOR") await c.cmd(`MKD ${warmDir}`, [257]);
    const warmUntil = Date.now() + opts.smallFilesWarmupMs;
    for (let i = 0; i < opts.smallFilesWarmup && Date.now() < warmUntil; i++) {
      // Downloads go round the fixture's files as often as the warm-up takes.
      const name = `f${String(dir === "STOR" ? i : i % fixtures.smallCount).padStart(5, "0")}.dat`;
      const n = dir === "STOR" ? await c.stor(`${warmDir}/${name}`, BODY.length, BODY) : await c.retr(`${fixtures.smallDir}/${name}`);
      if (n !== BODY.length) throw new Error(`${dir} warm-up ${name}: ${n} bytes`);
    }
    if (dir === "STOR") await c.cmd(`MKD ${upDir}/timed`, [257]);
    const target = dir === "STOR" ? `${upDir}/timed` : fixtures.smallDir;
    await quiesce(500);
    const deadline = Date.now() + opts.smallFilesMaxMs;
    const m = await withCpu(server.pid, async () => {
      let done = 0;
      for (let i = 0; i < total && Date.now() < deadline; i++) {
        const name = `f${String(i).padStart(5, "0")}.dat`;
        const n = dir === "STOR" ? await c.stor(`${target}/${name}`, BODY.length, BODY) : await c.retr(`${target}/${name}`);
        if (n !== BODY.length) throw new Error(`${dir} ${name}: ${n} bytes`);
        done++;
      }
      return done;
    });
    return {
      scenario: "small-files",
      case: `${dir} ${total} × 4 KiB`,
      server: server.spec.name,
      value: m.result / m.seconds,
      note: m.result < total ? `cut at ${m.result} files after ${Math.round(m.seconds)} s` : undefined,
      serverCpu: m.serverCpu,
      clientCpu: m.clientCpu,
      seconds: m.seconds,
      extra: { files: m.result },
    };
  } finally {
    c.close();
  }
}

/** When it allocates an inode, ext4 skips, at a cost in CPU each, those freed within the last 60 s
 * (6 minutes while their inode table block is not yet written back; the removal is followed by a
 * `sync` for that); a little more, to be safe (ms). */
const INODE_RECENCY_MS = 65_000;

/** When this run's uploads were removed (the next run waits for ext4 to forget them). */
function removedMarker(fixtures: Fixtures): string {
  return path.join(fixtures.root, fixtures.upDir, ".small-files-removed-at");
}

/** Removes every small-files upload directory (this run's and any an interrupted run left). */
function removeSmallUploads(fixtures: Fixtures): void {
  const up = path.join(fixtures.root, fixtures.upDir);
  for (const name of readdirSync(up)) if (name.startsWith("small-")) removeUpload(path.join(up, name));
  spawnSync("sync", { stdio: "ignore", timeout: 60_000 });
  writeFileSync(removedMarker(fixtures), String(Date.now()));
}

/** A run started right after another would upload while ext4 still skips the thousands of inodes
 * the last one freed, which would slow whichever server comes first: wait until they are forgotten. */
function waitAfterRemoval(fixtures: Fixtures): number {
  let at: number;
  try {
    at = Number(readFileSync(removedMarker(fixtures), "utf8"));
  } catch {
    return 0;
  }
  return Number.isFinite(at) ? Math.max(0, Math.min(INODE_RECENCY_MS, at + INODE_RECENCY_MS - Date.now())) : 0;
}

/** 2,000 files of 4 KiB over one session, each way. */
export const smallFiles: Scenario = {
  id: "small-files",
  title: "Small files over one session",
  unit: "files/s",
  higherIsBetter: true,
  mode: "off",
  passes: 2,
  description: "One session, TYPE I; for each file PASV, STOR or RETR, 4 KiB of data, 226. Untimed files first (the same operation, for every server), then the timed ones; uploads go to a new, empty directory. The better of two passes over the servers (the second in reverse order).",
  columns: [{ key: "files", header: "files done" }],
  run: async (ctx) => {
    const out: Measurement[] = [];
    for (const dir of ["STOR", "RETR"] as const) {
      try {
        out.push(await direction(ctx, dir));
      } catch (err) {
        const note = err instanceof Error ? err.message : String(err);
        ctx.log(`  ${dir} failed: ${note}`);
        out.push({ scenario: "small-files", case: `${dir} ${ctx.opts.smallFiles} × 4 KiB`, server: ctx.server.spec.name, value: null, note });
      }
    }
    return out;
  },
  cleanup: removeSmallUploads,
  waitBefore: waitAfterRemoval,
};
