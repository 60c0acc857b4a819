/**
 * What the kernel says about a server's process tree: CPU seconds (utime+stime of every live
 * process, plus cutime+cstime, which hold the time of children already reaped) and memory (RSS,
 * and PSS so that forking servers' shared pages are not counted once per process).
 */
import { readdirSync, readFileSync } from "node:fs";

/** Clock ticks per second of /proc/<pid>/stat (USER_HZ; 100 on every Linux that ships today). */
const HZ = 100;

interface StatLine {
  readonly pid: number;
  readonly ppid: number;
  /** utime + stime + cutime + cstime, in ticks. */
  readonly ticks: number;
}

/** Fields of /proc/<pid>/stat after the command name (which may hold spaces and parentheses). */
function parseStat(pid: number, text: string): StatLine | null {
  const close = text.lastIndexOf(")");
  if (close < 0) return null;
  const f = text.slice(close + 2).split(" ");
  // f[0] is field 3 (state): ppid is field 4, utime..cstime are fields 14..17.
  const ppid = Number(f[1]);
  const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  return Number.isFinite(ticks) ? { pid, ppid, ticks } : null;
}

function readStat(pid: number): StatLine | null {
  try {
    return parseStat(pid, readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return null;
  }
}

/** Every live process's stat line. */
function allStats(): StatLine[] {
  const out: StatLine[] = [];
  for (const name of readdirSync("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const s = readStat(Number(name));
    if (s) out.push(s);
  }
  return out;
}

/** `root` and its live descendants. */
export function treePids(root: number): number[] {
  const stats = allStats();
  const kids = new Map<number, number[]>();
  for (const s of stats) {
    const list = kids.get(s.ppid);
    if (list) list.push(s.pid);
    else kids.set(s.ppid, [s.pid]);
  }
  const out: number[] = [];
  const queue = [root];
  for (let i = 0; i < queue.length && i < 100_000; i++) {
    const pid = queue[i] as number;
    out.push(pid);
    for (const k of kids.get(pid) ?? []) queue.push(k);
  }
  return out;
}

/** CPU seconds used so far by `root`'s process tree (live processes and reaped children). */
export function treeCpuSeconds(root: number): number {
  let ticks = 0;
  for (const pid of treePids(root)) ticks += readStat(pid)?.ticks ?? 0;
  return ticks / HZ;
}

/** Memory of a process tree, in bytes. */
export interface TreeMemory {
  /** Sum of VmRSS (shared pages counted in every process). */
  readonly rss: number;
  /** Sum of PSS (shared pages split between their users). */
  readonly pss: number;
  /** Processes in the tree. */
  readonly processes: number;
}

function kbField(text: string, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(text);
  return m ? Number(m[1]) * 1024 : 0;
}

/** RSS and PSS summed over `root`'s process tree. */
export function treeMemory(root: number): TreeMemory {
  let rss = 0;
  let pss = 0;
  let processes = 0;
  for (const pid of treePids(root)) {
    try {
      rss += kbField(readFileSync(`/proc/${pid}/status`, "utf8"), "VmRSS");
      pss += kbField(readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"), "Pss");
      processes++;
    } catch {
      // gone meanwhile
    }
  }
  return { rss, pss, processes };
}

/** CPU seconds this process has used (user + system). */
export function selfCpuSeconds(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** Measures server and client CPU around `fn`. */
export async function withCpu<T>(
  serverPid: number,
  fn: () => Promise<T>,
): Promise<{ result: T; serverCpu: number; clientCpu: number; seconds: number }> {
  const s0 = treeCpuSeconds(serverPid);
  const c0 = selfCpuSeconds();
  const t0 = performance.now();
  const result = await fn();
  const seconds = (performance.now() - t0) / 1000;
  return { result, serverCpu: treeCpuSeconds(serverPid) - s0, clientCpu: selfCpuSeconds() - c0, seconds };
}
