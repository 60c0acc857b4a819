/** Shapes shared by the runner, the scenarios and the report. */
import type { Fixtures } from "./fixtures.ts";
import type { RunningServer, TlsMode } from "./servers.ts";
import type { WorkerPool } from "./pool.ts";

/** Sizes and counts of one run (full or --quick). */
export interface BenchOptions {
  readonly quick: boolean;
  /** Bytes of the single-stream transfers. */
  readonly bigBytes: number;
  /** Files of the small-files scenario. */
  readonly smallFiles: number;
  /** Untimed files moved first in each small-files direction, for every server alike (fewer if
   * `smallFilesWarmupMs` runs out first). */
  readonly smallFilesWarmup: number;
  /** Longest time the untimed files of one direction may take, in ms. */
  readonly smallFilesWarmupMs: number;
  /** Longest time one small-files direction may take, in ms (a slow peer is cut short). */
  readonly smallFilesMaxMs: number;
  /** Client counts of the concurrent-sessions scenario. */
  readonly clientCounts: readonly number[];
  /** Measuring window per client count, in ms. */
  readonly sessionsWindowMs: number;
  /** Time the clients run before the window opens (nothing in it counts), in ms: all clients start
   * at once, so the first sessions finish together about one session's time later, and only then
   * does the rate settle. */
  readonly sessionsRampMs: number;
  /** A session that takes longer than this counts as failed, in ms. */
  readonly sessionTimeoutMs: number;
  /** Repetitions of each listing. */
  readonly listingRuns: number;
  /** Untimed listings before them, for every server alike. */
  readonly listingWarmup: number;
  /** Idle session counts whose memory is measured. */
  readonly idleCounts: readonly number[];
}

/** What a scenario gets. */
export interface ScenarioContext {
  readonly server: RunningServer;
  readonly fixtures: Fixtures;
  readonly opts: BenchOptions;
  readonly pool: WorkerPool;
  readonly log: (line: string) => void;
  /** 0, or 1 in the second pass of a scenario with `passes: 2`. */
  readonly pass: number;
}

/** One figure of one server. */
export interface Measurement {
  /** Scenario id ("bulk", …). */
  readonly scenario: string;
  /** Case within the scenario ("RETR plain", "500 clients", …). */
  readonly case: string;
  readonly server: string;
  /** The headline figure, or null when the case failed or is not supported. */
  readonly value: number | null;
  /** Why there is no value, or a remark on it. */
  readonly note?: string | undefined;
  /** Server CPU seconds used during the case. */
  readonly serverCpu?: number | undefined;
  /** Load generator CPU seconds used during the case. */
  readonly clientCpu?: number | undefined;
  /** Wall seconds of the case. */
  readonly seconds?: number | undefined;
  /** More columns: name → value. */
  readonly extra?: Readonly<Record<string, number | string | null>> | undefined;
}

/** One benchmark scenario (one file in bench/scenarios/). */
export interface Scenario {
  readonly id: string;
  readonly title: string;
  /** Unit of the headline figure. */
  readonly unit: string;
  /** True when a larger figure is better. */
  readonly higherIsBetter: boolean;
  /** TLS mode the server must be started in. */
  readonly mode: TlsMode;
  /** What the figures mean, for the report. */
  readonly description: string;
  /** Extra columns, in order, with their headers. */
  readonly columns: readonly { readonly key: string; readonly header: string }[];
  run(ctx: ScenarioContext): Promise<Measurement[]>;
  /** Runs once after every server has run (removing what the scenario left on disk). */
  cleanup?(fixtures: Fixtures): void;
  /** How long (ms) the run should wait before the first server starts (what an earlier run left
   * behind settling). */
  waitBefore?(fixtures: Fixtures): number;
  /** The server is restarted after this scenario, so the next one meets a fresh process too. */
  readonly restartAfter?: boolean;
  /** A full run takes this many passes over the servers (the second in reverse order, after the
   * first has gone through all of them) and keeps each case's best figure; default 1. */
  readonly passes?: number;
}
