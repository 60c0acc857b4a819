/**
 * `npm run bench [-- --quick] [--only NAMES] [--scenarios IDS] [--out FILE] [--report-only]`: installs the peers
 * where missing, and runs every scenario against berth and each peer in turn on loopback (blocksFor),
 * and writes the report (docs/benchmarks.md and its SVGs; with --quick, bench/.state/ unless --out).
 * The raw figures of a run that writes docs/benchmarks.md go to $FTPB_STATE/results.json, and
 * --report-only writes the page again from them; any other run (--quick, --out) keeps its figures
 * beside its own page (FILE.json), so that it never replaces the published page's record.
 * Benchmarks assert nothing: they measure and write.
 */
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { ensureFixtures } from "./lib/fixtures.ts";
import { lockState } from "./lib/lock.ts";
import { quiesce } from "./lib/quiesce.ts";
import { WorkerPool } from "./lib/pool.ts";
import { ALL_CASES, buildReport } from "./lib/report.ts";
import {
  allServers,
  checkPeersDir,
  installPeer,
  REPO,
  resetBerthState,
  startServer,
  versions,
  type RunningServer,
  type ServerSpec,
  type TlsMode,
} from "./lib/servers.ts";
import type { BenchOptions, Measurement, Scenario } from "./lib/types.ts";
import { bulk, bulkTls } from "./scenarios/bulk.ts";
import { idleMemory } from "./scenarios/idle-memory.ts";
import { listing } from "./scenarios/listing.ts";
import { sessions } from "./scenarios/sessions.ts";
import { smallFiles } from "./scenarios/small-files.ts";

/** Report order. Run order: idle memory last. Its thousands of sessions (and the forking peers'
 * thousands of processes) touch and free gigabytes, and every server's 1 GiB upload right after it
 * ran slow for a minute or two (bench/analysis.md, "Uploads after the idle-memory scenario"). */
const SCENARIOS: readonly Scenario[] = [bulk, bulkTls, smallFiles, sessions, listing, idleMemory];
const RUN_ORDER: readonly Scenario[] = [bulk, smallFiles, listing, sessions, bulkTls, idleMemory];

const FULL: BenchOptions = {
  quick: false,
  bigBytes: 1 << 30,
  smallFiles: 2000,
  smallFilesWarmup: 4000,
  smallFilesWarmupMs: 5000,
  smallFilesMaxMs: 8000,
  clientCounts: [50, 200, 500, 1000],
  sessionsWindowMs: 5000,
  sessionsRampMs: 2000,
  sessionTimeoutMs: 10_000,
  listingRuns: 9,
  listingWarmup: 5,
  idleCounts: [1000, 10_000],
};

const QUICK: BenchOptions = {
  quick: true,
  bigBytes: 256 << 20,
  smallFiles: 300,
  smallFilesWarmup: 1000,
  smallFilesWarmupMs: 2000,
  smallFilesMaxMs: 5000,
  clientCounts: [50, 500],
  sessionsWindowMs: 2000,
  sessionsRampMs: 1000,
  sessionTimeoutMs: 8000,
  listingRuns: 2,
  listingWarmup: 1,
  idleCounts: [500],
};

/** Peers left out of --quick (the slowest to measure); berth without the cache too. */
const QUICK_SERVERS = ["berth", "vsftpd", "pure-ftpd"];

interface Args {
  readonly quick: boolean;
  /** Only write the report again from the last run's results. */
  readonly reportOnly: boolean;
  readonly only: readonly string[] | null;
  readonly scenarios: readonly string[] | null;
  readonly out: string | null;
}

function parseArgs(argv: readonly string[]): Args {
  let quick = false;
  let only: string[] | null = null;
  let scenarios: string[] | null = null;
  let out: string | null = null;
  let reportOnly = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    const value = (): string => {
      const v = argv[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === "--quick") quick = true;
    else if (a === "--only") only = value().split(",");
    else if (a === "--scenarios") scenarios = value().split(",");
    else if (a === "--out") out = value();
    else if (a === "--report-only") reportOnly = true;
    else if (a === "--help" || a === "-h") {
      process.stdout.write(
        "usage: npm run bench [-- --quick] [--only berth,vsftpd,...] [--scenarios bulk,bulk-tls,small-files,sessions,listing,idle-memory] [--out FILE] [--report-only]\n",
      );
      process.exit(0);
    } else throw new Error(`unknown argument ${a}`);
  }
  return { quick, reportOnly, only, scenarios, out };
}

function log(line: string): void {
  process.stdout.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

/** What a run leaves in $FTPB_STATE/results.json: enough to write the report again. */
interface RunRecord {
  readonly meta: {
    readonly quick: boolean;
    readonly started: string;
    readonly minutes: number;
    readonly servers: readonly string[];
    readonly scenarios: readonly string[];
    readonly launcher: string;
    readonly loadWorkers: number;
  };
  readonly results: readonly Measurement[];
}

/** Scenarios of `spec` in `mode`, in run order. */
function planFor(spec: ServerSpec, mode: TlsMode, chosen: readonly Scenario[]): Scenario[] {
  return RUN_ORDER.filter((s) => s.mode === mode && chosen.includes(s) && (spec.scenarios?.includes(s.id) ?? true));
}

/** One start of one server: the scenarios it runs before it is stopped. */
interface Block {
  readonly spec: ServerSpec;
  readonly mode: TlsMode;
  readonly plan: readonly Scenario[];
  /** 0, or 1 for the second pass of a scenario with `passes: 2`. */
  readonly pass: number;
}

/** How far behind the best peer's figure a server's first pass must be, in every case, for its
 * second pass to be skipped: no second try makes such a server the best peer. */
const HOPELESS = 3;

/** Whether `spec`'s first-pass figures of scenario `s` are all more than HOPELESS times worse than
 * those of the best of the other peers (`peers`: the servers berth is compared with). berth's own
 * figures are not the yardstick: a peer far behind berth may still be the best peer, the one the
 * targets compare berth with, and it gets its second try like any other. A failed case is never
 * hopeless (it is tried again), and neither is a case no other peer has a figure for. */
function hopeless(results: readonly Measurement[], s: Scenario, spec: ServerSpec, peers: readonly string[]): boolean {
  const own = results.filter((m) => m.scenario === s.id && m.server === spec.name);
  if (own.length === 0) return false;
  return own.every((m) => {
    if (m.value === null) return false;
    const others = results
      .filter((r) => r.scenario === s.id && r.case === m.case && r.value !== null && r.server !== spec.name && peers.includes(r.server))
      .map((r) => r.value as number);
    if (others.length === 0) return false;
    const best = s.higherIsBetter ? Math.max(...others) : Math.min(...others);
    return s.higherIsBetter ? m.value * HOPELESS < best : m.value > best * HOPELESS;
  });
}

/**
 * The run, start by start. A full run goes scenario by scenario, every server in turn on a fresh
 * process for each: this machine's speed drifts over minutes (berth's small files alone measured
 * 2,000 files/s and, in a full run ten minutes apart, 740), and a scenario's figures are compared
 * with each other, so they are taken as close together in time as they can be. A scenario with
 * `passes: 2` goes over the servers again in reverse order and keeps each case's best figure: the
 * first and the last server of a pass are measured minutes apart from their second try (a server
 * more than HOPELESS times behind the best peer in every case of its first pass is not tried again). A --quick run
 * (a check that everything runs) starts each server once per TLS mode, to keep within its time.
 */
function blocksFor(servers: readonly ServerSpec[], chosen: readonly Scenario[], quick: boolean): Block[] {
  const out: Block[] = [];
  if (quick) {
    for (const spec of servers) {
      for (const mode of ["off", "explicit"] as const) {
        const plan = planFor(spec, mode, chosen);
        if (plan.length > 0) out.push({ spec, mode, plan, pass: 0 });
      }
    }
    return out;
  }
  for (const s of RUN_ORDER) {
    if (!chosen.includes(s)) continue;
    for (let pass = 0; pass < (s.passes ?? 1); pass++) {
      for (const spec of pass % 2 === 0 ? servers : [...servers].reverse()) {
        const plan = planFor(spec, s.mode, [s]);
        if (plan.length > 0) out.push({ spec, mode: s.mode, plan, pass });
      }
    }
  }
  return out;
}

/** Adds `m` to `results`, or, when a pass before measured the same case, keeps the better one. */
function keepBest(results: Measurement[], m: Measurement, s: Scenario): void {
  const i = results.findIndex((r) => r.scenario === m.scenario && r.server === m.server && r.case === m.case);
  if (i < 0) {
    results.push(m);
    return;
  }
  const old = results[i] as Measurement;
  const better =
    old.value === null || (m.value !== null && (s.higherIsBetter ? m.value > old.value : m.value < old.value));
  if (better) results[i] = m;
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  const state = process.env.FTPB_STATE ?? "/tmp/ftpbench";
  const pageRecord = path.join(state, "results.json");
  if (args.reportOnly) {
    writeReport(JSON.parse(readFileSync(pageRecord, "utf8")) as RunRecord, args.out);
    return;
  }
  const recordFile = args.quick || args.out !== null ? pageFile(args.quick, args.out).replace(/\.md$/, "") + ".json" : pageRecord;
  const opts = args.quick ? QUICK : FULL;
  const started = new Date();
  const t0 = performance.now();
  const servers = allServers().filter((s) =>
    args.only ? args.only.includes(s.name) : !args.quick || QUICK_SERVERS.includes(s.name),
  );
  if (servers.length === 0) throw new Error("no server selected (names: " + allServers().map((s) => s.name).join(", ") + ")");
  const chosen = SCENARIOS.filter((s) => args.scenarios === null || args.scenarios.includes(s.id));
  if (chosen.length === 0) throw new Error("no scenario selected (ids: " + SCENARIOS.map((s) => s.id).join(", ") + ")");
  if (servers.some((s) => s.script !== null)) checkPeersDir();
  mkdirSync(state, { recursive: true });
  lockState(state);
  mkdirSync(path.dirname(recordFile), { recursive: true });
  for (const s of servers) {
    if (s.script === null) continue;
    log(`checking ${s.name} (installs it if missing)`);
    installPeer(s, state);
  }
  const fixtures = ensureFixtures(path.join(state, "root"), opts.bigBytes, log);
  resetBerthState(state);
  const wait = Math.max(0, ...chosen.map((s) => s.waitBefore?.(fixtures) ?? 0));
  // A --quick run is a check that everything runs, not a measurement: it does not wait.
  if (wait > 0 && !args.quick) {
    log(`waiting ${Math.ceil(wait / 1000)} s: ext4 still skips the inodes freed by the last run's removal of its small files`);
    await new Promise((r) => setTimeout(r, wait));
  }
  const launcher = "`src/cli/main.ts serve`";
  // The servers berth is compared with (berth without its login cache is not one of them).
  const peerNames = servers.filter((s) => s.script !== null).map((s) => s.name);
  const pool = new WorkerPool(2);
  const results: Measurement[] = [];
  const record = (): RunRecord => ({
    meta: {
      quick: args.quick,
      started: started.toISOString(),
      minutes: (performance.now() - t0) / 60_000,
      servers: servers.map((s) => s.name),
      scenarios: chosen.map((s) => s.id),
      launcher,
      loadWorkers: pool.size,
    },
    results,
  });
  let current: RunningServer | null = null;
  const onSignal = (): void => {
    log("interrupted: stopping");
    void (current?.stop() ?? Promise.resolve()).finally(() => {
      pool.close();
      process.exit(130);
    });
  };
  process.once("SIGINT", onSignal);
  process.once("SIGTERM", onSignal);
  try {
    for (const { spec, mode, plan, pass } of blocksFor(servers, chosen, args.quick)) {
      if (pass > 0 && plan.length === 1 && hopeless(results, plan[0] as Scenario, spec, peerNames)) {
        log(`${spec.name}: no second pass of ${(plan[0] as Scenario).id} (more than ${HOPELESS}× behind the best peer in every case)`);
        continue;
      }
      log(`${spec.name}: starting (TLS ${mode})`);
      try {
        current = await startServer(spec, state, fixtures.root, mode);
      } catch (err) {
        log(`${spec.name}: cannot start: ${(err as Error).message}`);
        for (const s of plan) keepBest(results, { scenario: s.id, case: ALL_CASES, server: spec.name, value: null, note: "did not start" }, s);
        continue;
      }
      try {
        for (const [i, s] of plan.entries()) {
          if (i > 0 && plan[i - 1]?.restartAfter) {
            log(`${spec.name}: restarting (a fresh process after ${plan[i - 1]?.id})`);
            await current.stop();
            try {
              current = await startServer(spec, state, fixtures.root, mode);
            } catch (err) {
              log(`${spec.name}: cannot restart: ${(err as Error).message}`);
              for (const rest of plan.slice(i)) keepBest(results, { scenario: rest.id, case: ALL_CASES, server: spec.name, value: null, note: "did not restart" }, rest);
              break;
            }
          }
          await quiesce();
          log(`${spec.name}: ${s.title}`);
          const ms = await s.run({ server: current, fixtures, opts, pool, log, pass });
          for (const m of ms) {
            keepBest(results, m, s);
            if (s.id !== "sessions" && s.id !== "idle-memory") {
              log(`  ${m.case}: ${m.value === null ? `n/a (${m.note ?? ""})` : `${m.value.toFixed(1)} ${s.unit}`}` +
                (m.serverCpu !== undefined ? `, server CPU ${m.serverCpu.toFixed(2)} s, load CPU ${(m.clientCpu ?? 0).toFixed(2)} s` : ""));
            }
          }
        }
      } finally {
        await current.stop();
        current = null;
      }
      writeFileSync(recordFile, JSON.stringify(record(), null, 1));
    }
  } finally {
    pool.close();
    for (const s of chosen) s.cleanup?.(fixtures);
  }
  writeFileSync(recordFile, JSON.stringify(record(), null, 1));
  writeReport(record(), args.out);
}

/** The page a run writes: `out`, else bench/.state/quick/ for --quick, else docs/benchmarks.md. */
function pageFile(quick: boolean, out: string | null): string {
  return out ?? (quick ? path.join(REPO, "bench/.state/quick/benchmarks.md") : path.join(REPO, "docs/benchmarks.md"));
}

/** Writes the page and its charts for a run. */
function writeReport(run: RunRecord, out: string | null): void {
  const { meta } = run;
  const outFile = pageFile(meta.quick, out);
  const svgDirName = meta.quick || out ? "svg" : "benchmarks";
  const svgDir = path.join(path.dirname(outFile), svgDirName);
  const report = buildReport({
    scenarios: SCENARIOS.filter((s) => meta.scenarios.includes(s.id)),
    servers: meta.servers,
    results: run.results,
    versions: versions(process.env.FTPB_STATE ?? "/tmp/ftpbench"),
    opts: meta.quick ? QUICK : FULL,
    started: new Date(meta.started),
    minutes: meta.minutes,
    berthLauncher: meta.launcher,
    svgDir: svgDirName,
    loadWorkers: meta.loadWorkers,
    notesFile: path.join(REPO, "bench/analysis.md"),
  });
  mkdirSync(svgDir, { recursive: true });
  for (const [name, svg] of Object.entries(report.svgs)) writeFileSync(path.join(svgDir, name), svg);
  writeFileSync(outFile, report.markdown);
  log(`wrote ${path.relative(REPO, outFile)} and ${Object.keys(report.svgs).length} charts in ${path.relative(REPO, svgDir)}/ (run of ${meta.minutes.toFixed(1)} min)`);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  },
);
