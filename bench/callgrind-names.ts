/**
 * Names the compiled JavaScript functions in a callgrind dump of berth (see bench/analysis.md,
 * "Counting instructions instead of timing them"). Callgrind knows V8's generated code only by
 * address; `node --perf-basic-prof` writes what lies at each address to /tmp/perf-<pid>.map.
 *
 *   tsx bench/callgrind-names.ts <callgrind dump> /tmp/perf-<pid>.map > named.out
 *   callgrind_annotate --inclusive=yes named.out
 */
import { readFileSync } from "node:fs";

interface Entry {
  readonly start: number;
  readonly end: number;
  readonly name: string;
  /** Line in the map: a later entry for an address replaces an earlier one. */
  readonly order: number;
}

function loadMap(file: string): Entry[] {
  const entries: Entry[] = [];
  readFileSync(file, "utf8")
    .split("\n")
    .forEach((line, order) => {
      const [start, size, ...name] = line.split(" ");
      if (start === undefined || size === undefined || name.length === 0) return;
      const s = Number.parseInt(start, 16);
      entries.push({ start: s, end: s + Number.parseInt(size, 16), name: name.join("_"), order });
    });
  return entries.sort((a, b) => a.start - b.start);
}

/** The latest map entry holding `addr` (entries overlap when code space is reused). */
function nameAt(entries: readonly Entry[], addr: number): string | null {
  let lo = 0;
  let hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((entries[mid] as Entry).start <= addr) lo = mid + 1;
    else hi = mid;
  }
  let best: Entry | null = null;
  for (let i = lo - 1; i >= 0 && i >= lo - 64; i--) {
    const e = entries[i] as Entry;
    if (addr < e.end && (best === null || e.order > best.order)) best = e;
  }
  return best?.name ?? null;
}

const [dump, map] = process.argv.slice(2);
if (dump === undefined || map === undefined) {
  console.error("usage: tsx bench/callgrind-names.ts <callgrind dump> <perf map>");
  process.exit(2);
}
const entries = loadMap(map);
const FN = /^(c?fn=\(\d+\)) 0x([0-9a-f]+)$/;
const out = readFileSync(dump, "utf8")
  .split("\n")
  .map((line) => {
    const m = FN.exec(line);
    if (!m) return line;
    const name = nameAt(entries, Number.parseInt(m[2] as string, 16));
    return name === null ? line : `${m[1] as string} ${name}@${(m[2] as string).slice(-6)}`;
  })
  .join("\n");
process.stdout.write(out);
