/**
 * docs/benchmarks.md from the measurements: the machine and versions, the targets and whether they
 * are met, then per scenario a chart (SVG beside the page) and one table per case with the figure,
 * the ratio to berth, server and load-generator CPU, and the scenario's own columns.
 */
import { cpus, totalmem, release } from "node:os";
import { existsSync, readFileSync } from "node:fs";
import type { Measurement, Scenario, BenchOptions } from "./types.ts";
import { barChart, type Panel } from "./svg.ts";

/** Everything the page says besides the figures. */
export interface ReportInput {
  readonly scenarios: readonly Scenario[];
  readonly servers: readonly string[];
  readonly results: readonly Measurement[];
  readonly versions: Readonly<Record<string, string>>;
  readonly opts: BenchOptions;
  readonly started: Date;
  readonly minutes: number;
  readonly berthLauncher: string;
  /** Directory of the SVGs relative to the page. */
  readonly svgDir: string;
  readonly loadWorkers: number;
  /** A Markdown file appended to the page (profile notes), if it exists. */
  readonly notesFile?: string | undefined;
}

/** The page and its SVGs (file name → content). */
export interface Report {
  readonly markdown: string;
  readonly svgs: Readonly<Record<string, string>>;
}

const HOW: Readonly<Record<string, string>> = {
  berth: "Node.js, one process; sendfile for plain RETR and a thread per large plain STOR (native/); bcrypt cost 10 with the login cache (60 s)",
  "berth (no login cache)": "as berth, login cache off: every login pays bcrypt (sessions only)",
  vsftpd: "a process per session; sendfile",
  "pure-ftpd": "a process per session (privilege-separated build)",
  proftpd: "a process per session; sendfile",
  pyftpdlib: "Python, one process (asyncio-style loop); sendfile for plain RETR",
  "ftp-srv": "Node.js, one process",
};

const isPeer = (name: string): boolean => !name.startsWith("berth");

/** Formats a headline figure. */
function fmtValue(v: number | null, unit: string): string {
  if (v === null || !Number.isFinite(v)) return "—";
  if (unit === "bytes/session") return `${(v / 1024).toFixed(1)} KiB`;
  if (unit === "ms") return v >= 100 ? v.toFixed(0) : v.toFixed(1);
  return v >= 100 ? Math.round(v).toLocaleString("en") : v.toFixed(1);
}

function fmtExtra(key: string, v: number | string | null | undefined): string {
  if (v === null || v === undefined) return "—";
  if (typeof v === "string") return v;
  if (key === "rss" || key === "pss") return `${(v / 1048576).toFixed(1)} MiB`;
  if (key === "rssPerSession") return `${(v / 1024).toFixed(1)} KiB`;
  if (key === "bytes") return `${Math.round(v / 1024).toLocaleString("en")} KiB`;
  if (key === "cpuPerGiB") return v.toFixed(2);
  if (key === "p50" || key === "p99") return v >= 100 ? v.toFixed(0) : v.toFixed(1);
  return Math.round(v).toLocaleString("en");
}

function fmtSeconds(v: number | undefined): string {
  return v === undefined ? "—" : v.toFixed(2);
}

/** berth ÷ this (higher is better) or this ÷ berth (lower is better): > 1 means berth is better. */
function advantage(berth: number | null, other: number | null, higherIsBetter: boolean): number | null {
  if (berth === null || other === null || berth <= 0 || other <= 0) return null;
  return higherIsBetter ? berth / other : other / berth;
}

function fmtRatio(r: number | null): string {
  return r === null ? "—" : `${r.toFixed(2)}×`;
}

function casesOf(results: readonly Measurement[], scenario: string): string[] {
  return [...new Set(results.filter((m) => m.scenario === scenario).map((m) => m.case))];
}

function find(results: readonly Measurement[], scenario: string, kase: string, server: string): Measurement | undefined {
  return results.find((m) => m.scenario === scenario && m.case === kase && m.server === server);
}

/** The best peer's figure for a case, with its name. */
function bestPeer(results: readonly Measurement[], s: Scenario, kase: string): { name: string; value: number } | null {
  let best: { name: string; value: number } | null = null;
  for (const m of results) {
    if (m.scenario !== s.id || m.case !== kase || !isPeer(m.server) || m.value === null) continue;
    const better = best === null || (s.higherIsBetter ? m.value > best.value : m.value < best.value);
    if (better) best = { name: m.server, value: m.value };
  }
  return best;
}

function machine(): string[] {
  const cpu = cpus();
  let os = "Linux";
  try {
    os = /PRETTY_NAME="([^"]+)"/.exec(readFileSync("/etc/os-release", "utf8"))?.[1] ?? os;
  } catch {
    // keep "Linux"
  }
  return [
    "| | |",
    "|---|---|",
    `| CPU | ${cpu[0]?.model.trim() ?? "?"}, ${cpu.length} cores |`,
    `| memory | ${(totalmem() / 2 ** 30).toFixed(0)} GiB |`,
    `| system | ${os}, Linux ${release()} |`,
    `| Node.js | ${process.version} (OpenSSL ${process.versions.openssl}) |`,
    `| network | loopback (127.0.0.1) only |`,
  ];
}

interface TargetRow {
  readonly text: string;
  readonly figure: string;
  readonly met: boolean | null;
}

/** The case a server that did not start (or restart) is recorded under, for every case of it. */
export const ALL_CASES = "(all)";

/** A warning under the targets when a peer missed scenarios: its figures are not in them. */
function missingPeers(results: readonly Measurement[]): string[] {
  const missed = new Map<string, Set<string>>();
  for (const m of results) {
    if (m.case !== ALL_CASES || !isPeer(m.server)) continue;
    const why = missed.get(m.server) ?? new Set<string>();
    why.add(`${m.scenario}: ${m.note ?? "no figure"}`);
    missed.set(m.server, why);
  }
  if (missed.size === 0) return [];
  const list = [...missed].map(([name, why]) => `${name} (${[...why].join("; ")})`).join(", ");
  return [`**Not every peer ran**: ${list}. The targets above compare berth with the peers that did.`, ""];
}

/** The issue's targets, checked against the figures. */
function targets(input: ReportInput): TargetRow[] {
  const { results, scenarios } = input;
  const rows: TargetRow[] = [];
  const byId = new Map(scenarios.map((s) => [s.id, s]));
  const vsBest = (id: string, kase: string, need: number, label: string): void => {
    const s = byId.get(id);
    if (!s) return;
    const b = find(results, id, kase, "berth")?.value ?? null;
    const peer = bestPeer(results, s, kase);
    const r = peer ? advantage(b, peer.value, s.higherIsBetter) : null;
    rows.push({
      text: `${label} ≥ ${need.toFixed(1)}× best peer`,
      figure:
        r === null
          ? "no figure"
          : `${fmtRatio(r)} (berth ${fmtValue(b, s.unit)} vs ${peer?.name} ${fmtValue(peer?.value ?? null, s.unit)} ${s.unit})`,
      met: r === null ? null : r >= need,
    });
  };
  // "(all)" stands for every case of a server that did not start: no case of its own.
  const cases = (id: string): string[] => casesOf(results, id).filter((k) => k !== ALL_CASES);
  for (const id of ["bulk", "bulk-tls"]) for (const k of cases(id)) vsBest(id, k, 1, `${k}`);
  for (const k of cases("sessions")) {
    const n = Number(k.replace(/[^0-9]/g, ""));
    if (n >= 500) vsBest("sessions", k, 2, `sessions/s, ${k}`);
  }
  for (const k of cases("small-files")) vsBest("small-files", k, 1, `small files, ${k}`);
  for (const k of cases("listing")) vsBest("listing", k, 1, k);
  const idle = results.find((m) => m.scenario === "idle-memory" && m.server === "berth" && m.case.startsWith("10,000"));
  if (idle) {
    const per = idle.extra?.rssPerSession;
    const v = typeof per === "number" ? per : null;
    rows.push({
      text: "10,000 idle sessions ≤ 8 KiB RSS each (berth)",
      figure: v === null ? (idle.note ?? "no figure") : `${(v / 1024).toFixed(1)} KiB RSS per session (${((idle.value ?? 0) / 1024).toFixed(1)} KiB PSS)`,
      met: v === null ? null : v <= 8192,
    });
  }
  return rows;
}

function scenarioSection(input: ReportInput, s: Scenario, svgs: Record<string, string>): string[] {
  const { results, servers } = input;
  const cases = casesOf(results, s.id);
  if (cases.length === 0) return [];
  const lines: string[] = [`## ${s.title}`, "", s.description, ""];
  const order = servers.filter((n) => results.some((m) => m.scenario === s.id && m.server === n));
  const panels: Panel[] = cases
    .filter((k) => results.some((m) => m.scenario === s.id && m.case === k && m.value !== null))
    .map((k) => ({
      title: k,
      // A server with no figure for this case (not run there) has no bar, as it has no table row.
      bars: order.filter((n) => find(results, s.id, k, n) !== undefined).map((n) => {
        const m = find(results, s.id, k, n);
        const v = m?.value ?? null;
        return { label: n, value: v, text: v === null ? `n/a${m?.note ? ` (${m.note.slice(0, 60)})` : ""}` : `${fmtValue(v, s.unit)} ${s.unit === "bytes/session" ? "" : s.unit}`.trim(), highlight: !isPeer(n) };
      }),
    }));
  if (panels.length > 0) {
    const file = `${s.id}.svg`;
    svgs[file] = barChart(s.title, `${s.unit}, ${s.higherIsBetter ? "higher" : "lower"} is better`, panels);
    lines.push(`![${s.title}](${input.svgDir}/${file})`, "");
  }
  for (const k of cases) {
    const berth = find(results, s.id, k, "berth")?.value ?? null;
    const extraCols = s.columns.map((c) => c.header);
    lines.push(`### ${k}`, "");
    const unitHeader = s.unit === "bytes/session" ? "per session (PSS)" : s.unit;
    lines.push(`| server | ${unitHeader} | berth advantage | server CPU s | load CPU s | ${extraCols.join(" | ")} | note |`);
    lines.push(`|---|--:|--:|--:|--:|${extraCols.map(() => "--:").join("|")}|---|`);
    for (const n of order) {
      const m = find(results, s.id, k, n);
      if (!m) continue;
      const adv = n === "berth" ? "1.00×" : fmtRatio(advantage(berth, m.value, s.higherIsBetter));
      const extras = s.columns.map((c) => fmtExtra(c.key, m.extra?.[c.key]));
      const note = (m.note ?? "").replace(/\|/g, "/").replace(/\s+/g, " ").slice(0, 140);
      lines.push(`| ${n} | ${fmtValue(m.value, s.unit)} | ${adv} | ${fmtSeconds(m.serverCpu)} | ${fmtSeconds(m.clientCpu)} | ${extras.join(" | ")} | ${note} |`);
    }
    lines.push("");
  }
  return lines;
}

/** Builds the page. */
export function buildReport(input: ReportInput): Report {
  const svgs: Record<string, string> = {};
  const { opts } = input;
  const lines: string[] = [
    "# Benchmarks",
    "",
    `Written by \`npm run bench${opts.quick ? " -- --quick" : ""}\` on ${input.started.toISOString().slice(0, 16).replace("T", " ")} UTC ` +
      `(${input.minutes.toFixed(1)} minutes). Every server runs on this machine, on 127.0.0.1, with the same user ` +
      "(bench/bench), the same jail and a passive range of 1,500 ports; the load generator runs on the same machine, " +
      `so its CPU is shown next to each figure ("load CPU s"; ${input.loadWorkers} worker processes for the many-client scenarios). ` +
      "\"berth advantage\" is berth's figure over the other server's (the other way round where lower is better): above 1.00× berth is ahead. " +
      (opts.quick
        ? "Each server is started once per TLS mode and runs its scenarios one after the other. "
        : "The run goes scenario by scenario: each one runs against every server in turn, each on a freshly started process, so that the figures set side by side are taken minutes apart at most (this machine's speed drifts over minutes). ") +
      "Figures from one run on a shared virtual machine: differences under about 10% are noise.",
    "",
    "Regenerate with `npm run bench` (about 17 minutes; `-- --quick` for a smaller run in under 3). The bench installs the peers " +
      "it lacks (Debian packages; ftp-srv from npm) through the scripts in `../shared/tools/peers/` (or `$FTPB_PEERS`); raw figures are kept in " +
      "`$FTPB_STATE/results.json` (default `/tmp/ftpbench`), and `-- --report-only` writes this page again from them.",
    "",
    `This run: single-stream file ${opts.bigBytes >> 20} MiB; ${opts.smallFiles.toLocaleString("en")} small files each way ` +
      `after up to ${opts.smallFilesWarmup.toLocaleString("en")} untimed (at most ${opts.smallFilesWarmupMs / 1000} s; then at most ${opts.smallFilesMaxMs / 1000} s each way); ${opts.clientCounts.map((n) => n.toLocaleString("en")).join(", ")} concurrent clients, ` +
      `${opts.sessionsWindowMs / 1000} s each after a ${opts.sessionsRampMs / 1000} s ramp; listings ${opts.listingRuns} times each after ${opts.listingWarmup} untimed; ` +
      `${opts.idleCounts.map((n) => n.toLocaleString("en")).join(" and ")} idle sessions.`,
    "",
    "## Machine",
    "",
    ...machine(),
    "",
    "## Servers",
    "",
    "| server | version | how it runs |",
    "|---|---|---|",
    ...input.servers.map((n) => `| ${n} | ${input.versions[n] ?? "?"} | ${HOW[n] ?? ""} |`),
    "",
    `berth runs from this checkout with ${input.berthLauncher}, log level warn, TLS mode explicit for the FTPS cases. ` +
      "The peers use SHA-512 crypt for the bench user (their scripts' choice); berth uses bcrypt (cost 10).",
    "",
    "## Targets",
    "",
    "| target | figure | met |",
    "|---|---|---|",
    ...targets(input).map((t) => `| ${t.text} | ${t.figure} | ${t.met === null ? "—" : t.met ? "yes" : "**no**"} |`),
    "",
    ...missingPeers(input.results),
  ];
  for (const s of input.scenarios) lines.push(...scenarioSection(input, s, svgs));
  if (input.notesFile && existsSync(input.notesFile)) lines.push(readFileSync(input.notesFile, "utf8").trim(), "");
  return { markdown: lines.join("\n"), svgs };
}
