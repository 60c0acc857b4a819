/**
 * Pure formatters for directory listings and times: `ls -l` lines for LIST (as vsftpd and
 * pure-ftpd print them), RFC 3659 facts for MLSD/MLST, and the YYYYMMDDHHMMSS times of MDTM/MFMT.
 * All times are UTC.
 */
import type { DirEntry, EntryStat } from "./types.ts";
import { hasControlChar } from "./vpath.ts";

/** The MLSx facts berth supports, in the order it prints them (RFC 3659 §7.5). */
export const MLSX_FACTS = ["type", "size", "modify", "perm", "unix.mode"] as const;

/** One MLSx fact name. */
export type MlsxFact = (typeof MLSX_FACTS)[number];

/** How one MLSx line is printed. */
export interface MlsxOptions {
  /** The perm fact value (see auth/perms.ts permFact). */
  readonly perm: string;
  /** "cdir" for the listed directory itself, "pdir" for its parent (RFC 3659 §7.5.1). */
  readonly typeOverride?: "cdir" | "pdir";
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
/** Half a Gregorian year, as `ls` counts "recent". */
const SIX_MONTHS_MS = 15_778_476_000;
const ONE_HOUR_MS = 3_600_000;
const ALL_FACTS: ReadonlySet<string> = new Set(MLSX_FACTS);
// eslint-disable-next-line no-control-regex -- a name must never break a reply or a listing line
const CONTROL_ALL = /[\u0000-\u001f]/g;

/** One LIST line, e.g. `-rw-r--r--    1 ftp      ftp          1234 Nov 25 08:27 name`. */
export function formatListLine(entry: DirEntry, now: Date): string {
  const s = entry.stat;
  return linePrefix(s) + sizeField(s.size) + " " + listDate(s.mtimeMs, now) + " " + safeName(entry.name);
}

/** Leading spaces by count, for sizeField. */
const SPACES = ["", " ", "  ", "   ", "    ", "     ", "      ", "       "];

/** The size right-aligned in 8 columns, as `padStart(8)` gives it without building the padding
 * each time (V8's padStart repeats its filler by doubling: five string joins for a 4 KiB file). */
function sizeField(size: number): string {
  const text = String(size);
  return text.length >= 8 ? text : (SPACES[8 - text.length] as string) + text;
}

/** `-rw-r--r--    1 ftp      ftp      `: the part of a LIST line that depends on type, mode and link
 * count only, which the entries of one directory mostly share. Made once per combination (a few
 * hundred at most are kept): a line is then five strings joined, not eleven. */
function linePrefix(s: EntryStat): string {
  const key = s.nlink < 0x10000 ? (TYPE_CODE[s.type] * 0x10000 + (s.mode & 0xffff)) * 0x10000 + s.nlink : -1;
  let prefix = key >= 0 ? prefixes.get(key) : undefined;
  if (prefix === undefined) {
    prefix = `${modeString(s)} ${String(s.nlink).padStart(4)} ${OWNER_GROUP} `;
    if (key >= 0) {
      if (prefixes.size >= MAX_PREFIXES) prefixes.clear();
      prefixes.set(key, prefix);
    }
  }
  return prefix;
}

const TYPE_CODE = { file: 0, dir: 1, link: 2, other: 3 } as const;
const MAX_PREFIXES = 256;
const prefixes = new Map<number, string>();

/** Owner and group as every LIST line shows them (real ids would tell a client about the host). */
const OWNER_GROUP = `${"ftp".padEnd(8)} ${"ftp".padEnd(8)}`;

/** `drwxr-xr-x`-style type and permission string (setuid/setgid/sticky as s/S, t/T); a FIFO,
 * socket or device is `p`, `s`, `c` or `b`, as in `ls -l`. */
export function modeString(s: EntryStat): string {
  const type = s.type === "dir" ? "d" : s.type === "link" ? "l" : s.type === "other" ? (SPECIAL_TYPES[(s.mode >> 12) & 0xf] ?? "-") : "-";
  const m = s.mode;
  return type + triplet(m >> 6, m & 0o4000, "s") + triplet(m >> 3, m & 0o2000, "s") + triplet(m, m & 0o1000, "t");
}

/** `ls -l`'s letter of a special file, by its S_IFMT bits (mode >> 12): FIFO, character device,
 * block device, socket. */
const SPECIAL_TYPES: Readonly<Record<number, string>> = { 0o01: "p", 0o02: "c", 0o06: "b", 0o14: "s" };

function triplet(bits: number, special: number, mark: "s" | "t"): string {
  const x = (bits & 1) !== 0;
  const exec = special !== 0 ? (x ? mark : mark.toUpperCase()) : x ? "x" : "-";
  return ((bits & 4) !== 0 ? "r" : "-") + ((bits & 2) !== 0 ? "w" : "-") + exec;
}

/** `Nov 25 08:27` when within the last six months (and not more than an hour ahead), else `Nov 25  2023`. */
function listDate(ms: number, now: Date): string {
  const age = now.getTime() - ms;
  const recent = age < SIX_MONTHS_MS && age > -ONE_HOUR_MS;
  // Files of one directory often share a minute: the last text is kept per kind.
  const key = recent ? Math.floor(ms / 60_000) : -1 - Math.floor(ms / 86_400_000);
  if (key === lastDateKey) return lastDateText;
  const mtime = new Date(ms);
  const day = `${MONTHS[mtime.getUTCMonth()] ?? "???"} ${String(mtime.getUTCDate()).padStart(2)}`;
  lastDateText = recent
    ? `${day} ${pad2(mtime.getUTCHours())}:${pad2(mtime.getUTCMinutes())}`
    : `${day} ${String(mtime.getUTCFullYear()).padStart(5)}`;
  lastDateKey = key;
  return lastDateText;
}

let lastDateKey = Number.NaN;
let lastDateText = "";

/** An MLSD line / MLST fact line with every supported fact: `type=file;size=1;…; name`.
 * The caller adds the leading space that MLST's control-connection lines need (RFC 3659 §7.2). */
export function formatMlsxFacts(entry: DirEntry, opts: MlsxOptions): string {
  return formatMlsxSelected(entry, ALL_FACTS, opts);
}

/** Like formatMlsxFacts with only the facts in `facts` (OPTS MLST selection, RFC 3659 §7.9). */
export function formatMlsxSelected(entry: DirEntry, facts: ReadonlySet<string>, opts: MlsxOptions): string {
  let out = "";
  for (const fact of MLSX_FACTS) {
    if (!facts.has(fact)) continue;
    const value = factValue(fact, entry.stat, opts);
    if (value !== null) out += `${fact}=${value};`;
  }
  return `${out} ${safeName(entry.name)}`;
}

/** formatMlsxSelected for the many entries of one listing: the fact selection is looked at once,
 * and a time or mode shared with the previous entry (files written together) is formatted once. */
export function mlsxFormatter(facts: ReadonlySet<string>): (entry: DirEntry, opts: MlsxOptions) => string {
  const selected = MLSX_FACTS.filter((f) => facts.has(f));
  let lastMs = Number.NaN;
  let lastTime = "";
  let lastMode = -1;
  let lastModeText = "";
  return (entry, opts) => {
    const st = entry.stat;
    let out = "";
    for (const fact of selected) {
      switch (fact) {
        case "type":
          out += `type=${opts.typeOverride ?? mlsxType(st)};`;
          break;
        case "size":
          if (st.type === "file") out += `size=${st.size};`;
          break;
        case "modify": {
          const ms = st.mtimeMs;
          if (ms !== lastMs) {
            lastMs = ms;
            lastTime = formatMdtm(new Date(ms));
          }
          out += `modify=${lastTime};`;
          break;
        }
        case "perm":
          out += `perm=${opts.perm};`;
          break;
        case "unix.mode": {
          const mode = st.mode & 0o7777;
          if (mode !== lastMode) {
            lastMode = mode;
            lastModeText = "0" + mode.toString(8).padStart(3, "0");
          }
          out += `unix.mode=${lastModeText};`;
          break;
        }
      }
    }
    return `${out} ${safeName(entry.name)}`;
  };
}

/** Parses the argument of `OPTS MLST type;size;…`: case-insensitive, unknown facts dropped
 * (RFC 3659 §7.9); "" selects nothing. */
export function selectMlsxFacts(text: string): Set<MlsxFact> {
  const wanted = new Set(text.toLowerCase().split(";"));
  return new Set(MLSX_FACTS.filter((f) => wanted.has(f)));
}

/** The FEAT line body for MLST: every fact, the selected ones starred (RFC 3659 §7.8). */
export function mlstFeature(selected: ReadonlySet<string>): string {
  return MLSX_FACTS.map((f) => `${f}${selected.has(f) ? "*" : ""};`).join("");
}

function factValue(fact: MlsxFact, s: EntryStat, opts: MlsxOptions): string | null {
  switch (fact) {
    case "type":
      return opts.typeOverride ?? mlsxType(s);
    case "size":
      return s.type === "file" ? String(s.size) : null;
    case "modify":
      return formatMdtm(new Date(s.mtimeMs));
    case "perm":
      return opts.perm;
    case "unix.mode":
      return "0" + (s.mode & 0o7777).toString(8).padStart(3, "0");
  }
}

function mlsxType(s: EntryStat): string {
  if (s.type === "file") return "file";
  if (s.type === "dir") return "dir";
  // RFC 3659 §7.5.1: anything else is an "OS.name=type" value.
  return s.type === "link" ? "OS.unix=symlink" : "OS.unix=special";
}

/** A time as YYYYMMDDHHMMSS in UTC (MDTM reply, RFC 3659 §2.3 and §3). */
export function formatMdtm(date: Date): string {
  return (
    String(date.getUTCFullYear()).padStart(4, "0") +
    pad2(date.getUTCMonth() + 1) +
    pad2(date.getUTCDate()) +
    pad2(date.getUTCHours()) +
    pad2(date.getUTCMinutes()) +
    pad2(date.getUTCSeconds())
  );
}

const TIME_VAL = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d+))?$/;

/** Parses an MFMT/MDTM time-val `YYYYMMDDHHMMSS[.sss]` (UTC); null when malformed or out of range. */
export function parseMfmtTime(text: string): Date | null {
  const m = TIME_VAL.exec(text);
  if (m === null) return null;
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number];
  const ms = Number((m[7] ?? "0").slice(0, 3).padEnd(3, "0"));
  // RFC 3659 §2.3: year 1000-9999, seconds up to 60 (a leap second).
  if (year < 1000 || month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return null;
  if (hour > 23 || minute > 59 || second > 60) return null;
  return new Date(Date.UTC(year, month - 1, day, hour, minute, second, ms));
}

function daysInMonth(year: number, month: number): number {
  const leap = year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
  return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month - 1] ?? 0;
}

function pad2(n: number): string {
  return String(n).padStart(2, "0");
}

/** A name safe to put on one line: control characters (CR, LF, …) become "?". */
export function safeName(name: string): string {
  return hasControlChar(name) ? name.replace(CONTROL_ALL, "?") : name;
}
