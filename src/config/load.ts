/**
 * Loads berth's configuration: DEFAULTS ← YAML file ← BERTH_* environment variables, each value
 * coerced and checked against its rule, then deep-frozen. Every failure is a ConfigError whose
 * message is one line naming the key (and where the value came from).
 *
 * Paths in the result (users.file, storage.root, tls.cert, tls.key) stay exactly as written;
 * callers resolve them with `resolvePath(value, cwd)` (SPEC: relative to the working directory).
 */
import { closeSync, constants, fstatSync, openSync, readlinkSync, readSync } from "node:fs";
import { isIP } from "node:net";
import path from "node:path";
import { isScalar, parseDocument, type Document } from "yaml";
import { parseDirPerms, parsePermList, validPatterns } from "../auth/perms.ts";
import { DEFAULTS, parseCidrList, parseListen, parsePortRange, parseUmask, validHost, type Config } from "./schema.ts";
import { firstLine, systemErrorText, errnoCode } from "./syserr.ts";
import { MAX_TIMER_MS, parseSize } from "./units.ts";

/** A configuration mistake; `key` names the config key, environment variable or file at fault. */
export class ConfigError extends Error {
  /** The dotted config key ("listen.port"), the variable ("BERTH_FOO") or the file path. */
  readonly key: string;

  /** Builds an error whose message is `config: <message>`. */
  constructor(key: string, message: string) {
    super(`config: ${message}`);
    this.name = "ConfigError";
    this.key = key;
  }
}

/** Where loadConfig reads from; every field is optional. */
export interface LoadOptions {
  /** Config file; default `$BERTH_CONFIG`, else `config/berth.yaml`. */
  readonly file?: string | undefined;
  /** Environment to read BERTH_* from; default process.env. */
  readonly env?: NodeJS.ProcessEnv | undefined;
  /** Directory relative paths are read against; default process.cwd(). */
  readonly cwd?: string | undefined;
}

/** The default config file, relative to the working directory. */
export const DEFAULT_CONFIG_FILE = "config/berth.yaml";

/** The largest config file read, in bytes: the shipped one, every key with its comment, is under
 * 10 KiB. A file named by mistake (a disk image, /dev/zero) is refused after this much. */
export const MAX_CONFIG_BYTES = 1 << 20;

/** Environment variables that start with BERTH_ but are not config keys. */
export const RESERVED_ENV: ReadonlySet<string> = new Set([
  "BERTH_CONFIG",
  "BERTH_USER",
  "BERTH_PASSWORD",
  "BERTH_PASSWORD_FILE",
]);

/** What Kubernetes sets in every pod of a namespace that has a Service whose name starts with
 * "berth" ("berth", "berth-ftp": BERTH_SERVICE_HOST, BERTH_FTP_PORT_21_TCP_ADDR): a variable's name
 * and the shape of the value it is given there. As unknown variables they kept berth from starting
 * in such a pod. Left alone only with a value of that shape: BERTH_PORT=2121 is a mistake for
 * BERTH_LISTEN_PORT and is refused as unknown, and BERTH_LISTEN_PORT=21 is the config key. */
const SERVICE_LINKS: readonly (readonly [RegExp, (value: string) => boolean])[] = (() => {
  const address = (v: string): boolean => isIP(v) !== 0;
  const portNumber = (v: string): boolean => /^\d{1,5}$/.test(v);
  const url = (v: string): boolean => {
    const m = /^(?:tcp|udp|sctp):\/\/\[?([^\]]+?)\]?:\d{1,5}$/.exec(v);
    return m !== null && address(m[1] ?? "");
  };
  // The rest of the Service's name, upper case with "-" made "_", comes before each suffix.
  return [
    [/^BERTH_(?:[A-Z\d_]+_)?SERVICE_HOST$/, address],
    [/^BERTH_(?:[A-Z\d_]+_)?SERVICE_PORT(?:_[A-Z\d_]+)?$/, portNumber],
    [/^BERTH_(?:[A-Z\d_]+_)?PORT(?:_\d{1,5}_(?:TCP|UDP|SCTP))?$/, url],
    [/^BERTH_(?:[A-Z\d_]+_)?PORT_\d{1,5}_(?:TCP|UDP|SCTP)_PROTO$/, (v) => ["tcp", "udp", "sctp"].includes(v)],
    [/^BERTH_(?:[A-Z\d_]+_)?PORT_\d{1,5}_(?:TCP|UDP|SCTP)_PORT$/, portNumber],
    [/^BERTH_(?:[A-Z\d_]+_)?PORT_\d{1,5}_(?:TCP|UDP|SCTP)_ADDR$/, address],
  ];
})();

/** True for a service-link variable of SERVICE_LINKS with a value of its shape. */
function isServiceLink(name: string, value: string | undefined): boolean {
  return SERVICE_LINKS.some(([names, shaped]) => names.test(name) && shaped(value ?? ""));
}

type Scalar = string | number | boolean;
type Section = Record<string, Scalar>;
type Tree = Record<string, Section>;

/** A key the config file changes from its default that a BERTH_* variable sets to yet another
 * value (the variable wins, so the file's change does nothing). */
export interface EnvOverride {
  /** The dotted key ("listen.port"). */
  readonly key: string;
  /** The variable that set it ("BERTH_LISTEN_PORT"). */
  readonly variable: string;
  /** The value in effect, from the variable ("[hidden]" for a secret). */
  readonly value: Scalar;
  /** The config file. */
  readonly file: string;
  /** The value the file gives, not in effect ("[hidden]" for a secret). */
  readonly fileValue: Scalar;
}

/** One line saying what an override does: `BERTH_LISTEN_PORT=21 overrides listen.port: 2100 in config/berth.yaml`. */
export function describeOverride(o: EnvOverride): string {
  return `${o.variable}=${JSON.stringify(o.value)} overrides ${o.key}: ${JSON.stringify(o.fileValue)} in ${o.file}`;
}

/** The values being merged and, per dotted key, where each came from (file path or variable). */
interface Draft {
  readonly tree: Tree;
  readonly sources: Map<string, string>;
  /** Keys of the file that the environment set to another value. */
  readonly overrides: EnvOverride[];
}

/** How one key is typed and what values it accepts. */
interface Rule {
  readonly type: "string" | "number" | "boolean";
  /** Completes "must be …". */
  readonly describe: string;
  readonly ok: (value: Scalar) => boolean;
  /** Reads a string form of a number ("10M"); without it only plain digits are numbers. */
  readonly parse?: (raw: string) => number | null;
}

const isInt = (v: Scalar, min: number, max: number): boolean =>
  typeof v === "number" && Number.isInteger(v) && v >= min && v <= max;

const intRule = (min: number, max: number, describe?: string): Rule => ({
  type: "number",
  describe: describe ?? (max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer ${min}..${max}`),
  ok: (v) => isInt(v, min, max),
});

const seconds = (allowZero: boolean): Rule => ({
  type: "number",
  describe: allowZero ? "a number of seconds >= 0" : "a number of seconds > 0",
  ok: (v) => typeof v === "number" && Number.isFinite(v) && (allowZero ? v >= 0 : v > 0),
});

/** The longest timer Node keeps, in whole seconds. */
const MAX_TIMER_SECONDS = Math.floor(MAX_TIMER_MS / 1000);

/** Seconds that end up in a timer: at most MAX_TIMER_SECONDS (about 24 days). */
const timerSeconds = (allowZero: boolean): Rule => {
  const base = seconds(allowZero);
  return {
    type: "number",
    describe: `${base.describe} and at most ${MAX_TIMER_SECONDS} (about 24 days)`,
    ok: (v) => base.ok(v) && (v as number) <= MAX_TIMER_SECONDS,
  };
};

const oneOf = (...values: readonly string[]): Rule => ({
  type: "string",
  describe: `one of ${values.join(", ")}`,
  ok: (v) => typeof v === "string" && values.includes(v),
});

const text = (describe: string, ok: (v: string) => boolean): Rule => ({
  type: "string",
  describe,
  ok: (v) => typeof v === "string" && ok(v),
});

/** A finite number >= min (an integer when `integer`). */
const number = (min: number, describe: string, integer = false): Rule => ({
  type: "number",
  describe,
  ok: (v) => typeof v === "number" && Number.isFinite(v) && v >= min && (!integer || Number.isInteger(v)),
});

const score = number(0, "a score >= 0 (0 = not scored)");

const bool: Rule = { type: "boolean", describe: "true or false", ok: (v) => typeof v === "boolean" };
const port = intRule(0, 65535);
const count = intRule(1, Number.MAX_SAFE_INTEGER);
/** C0 and C1 controls (C1: NEL, and U+009B, a terminal's CSI), DEL, and Unicode's line and
 * paragraph separators: none is printable text, and some end a line for a client or a terminal. */
const hasControl = (v: string): boolean =>
  [...v].some((c) => {
    const code = c.charCodeAt(0);
    return code < 0x20 || (code >= 0x7f && code <= 0x9f) || code === 0x2028 || code === 0x2029;
  });
const pathText = (v: string): boolean => !v.includes("\0");
const filePath = text("a non-empty path", (v) => v !== "" && pathText(v));
const optionalPath = text("a path or empty", pathText);
/** What a PEM file holds ("-----BEGIN PRIVATE KEY-----"), where a key wants the file's path. */
const PEM_TEXT = /-----BEGIN /;
/** The same file base64-encoded, as a Kubernetes secret's data holds it: "-----BEGIN" so encoded
 * from the file's first byte. As a path it would be printed in full in the error of a file that is
 * not there. */
const PEM_BASE64 = /LS0tLS1CRUdJTi/;
/**
 * Whether `v` is a key or certificate as base64 DER: a PEM file's body without its "-----BEGIN"
 * and "-----END" lines, as some secret stores hold a key, on one line or many (or "\n" for line
 * ends, as an env file writes them), or a piece of one from its start (its first line). Its first
 * bytes are secret already (an EC key's own number is in its first 40): it is never printed. A
 * DER SEQUENCE (base64 "M…") whose length covers at least the bytes that follow; no path of 40
 * letters, digits, "+" and "/" reads so by chance.
 */
function isBase64Der(v: string): boolean {
  const b64 = v.replace(/\\n|\s/g, "");
  if (b64.length < 40 || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return false;
  const der = Buffer.from(b64, "base64");
  if (der[0] !== 0x30 || der[1] === undefined) return false;
  let len = der[1];
  let at = 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n < 1 || n > 3) return false;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (der[at++] ?? 0);
  }
  return at + len >= der.length;
}
/** The path of a PEM file, or empty. The file's text in its place (a key pasted into BERTH_TLS_KEY)
 * is refused, and never printed: it may be a private key. */
const pemPath = text(
  "the path of a PEM file (not the file's contents), or empty",
  (v) => pathText(v) && !PEM_TEXT.test(v) && !PEM_BASE64.test(v) && !isBase64Der(v),
);
/** Bytes, or bytes per second: 0 (= unlimited), 4096, "512K", "10M", "1.5G" (K = 1024). */
const size: Rule = { ...intRule(0, Number.MAX_SAFE_INTEGER, 'a size >= 0 like 0, 4096, "512K" or "10M"'), parse: parseSize };

/** The longest admin.socket path, in bytes, as written and once resolved against the working
 * directory: a Unix socket's path (sun_path) holds 107, and the server first binds it under a name
 * a few bytes longer. */
export const MAX_SOCKET_PATH_BYTES = 100;

/** Every key of Config with its rule; the mapped type makes a missing key a compile error. */
const RULES: { readonly [S in keyof Config]: { readonly [K in keyof Config[S]]: Rule } } = {
  listen: { host: text("a host name or IP address", validHost), port },
  passive: {
    ports: text('a port range "MIN-MAX" within 1..65535', (v) => parsePortRange(v) !== null),
    // PASV announces an IPv4 address (RFC 959's 227); an IPv6 one could never be announced.
    address: text("an IPv4 address, a host name or empty (PASV announces IPv4)", (v) => v === "" || (validHost(v) && isIP(v) !== 6)),
  },
  active: { enabled: bool },
  transfer: { sendfile: bool, uploadThreads: bool, checksums: bool, fsync: bool },
  tls: {
    mode: oneOf("off", "explicit", "implicit", "both"),
    cert: pemPath,
    key: pemPath,
    implicitPort: port,
    require: bool,
    requireSessionReuse: bool,
  },
  users: { file: filePath, bcryptCost: intRule(4, 15), loginCacheSeconds: intRule(0, 86400) },
  storage: {
    root: filePath,
    hide: text('comma-separated name patterns such as ".*, *.part" (no "/"), or empty', validPatterns),
    deny: text('comma-separated name patterns such as "*.exe" (no "/"), or empty', validPatterns),
    umask: text('an octal umask 000..777 such as "022"', (v) => parseUmask(v) !== null),
  },
  anonymous: {
    enabled: bool,
    root: filePath,
    perms: text('a comma list of list, download, upload, overwrite, delete, rename, mkdir, rmdir, chmod (or "none")', (v) =>
      parsePermList(v) !== null,
    ),
    dirPerms: text('"DIR=PERMS;DIR=PERMS" with DIR inside the anonymous root, or empty', (v) => parseDirPerms(v) !== null),
  },
  log: {
    level: oneOf("fatal", "error", "warn", "info", "debug", "trace", "silent"),
    pretty: oneOf("auto", "always", "never"),
    xferlog: optionalPath,
  },
  limits: {
    maxLineLength: intRule(512, 1048576),
    loginTimeout: timerSeconds(false),
    idleTimeout: timerSeconds(false),
    dataTimeout: timerSeconds(false),
    stalledTimeout: timerSeconds(false),
    maxLoginFailures: count,
    failedLoginDelay: timerSeconds(true),
    maxSessions: count,
    maxSessionsPerAddress: count,
    maxSessionsPerUser: intRule(0, Number.MAX_SAFE_INTEGER),
    commandRate: number(0, "a number of commands per second >= 0 (0 = unlimited)"),
    commandBurst: count,
    shutdownGrace: timerSeconds(true),
  },
  defender: {
    enabled: bool,
    threshold: number(1, "a whole score >= 1", true),
    observationTime: seconds(false),
    banTime: seconds(false),
    banTimeMax: seconds(false),
    banGrowth: number(1, "a factor >= 1"),
    scoreLoginFailure: score,
    scoreLimit: score,
    scoreAbuse: score,
    allow: text('a comma-separated list of CIDRs or IP addresses ("10.0.0.0/8, ::1"), or empty', (v) => parseCidrList(v) !== null),
    maxEntries: count,
  },
  server: {
    banner: text("one line of printable text, at most 200 characters", (v) =>
      v.length <= 200 && !hasControl(v),
    ),
  },
  metrics: { listen: text('"host:port" with a host name or IP address, or empty', (v) => v === "" || validHost(parseListen(v)?.host ?? "")) },
  admin: {
    socket: text(`a socket path of at most ${MAX_SOCKET_PATH_BYTES} bytes, or empty`, (v) => pathText(v) && Buffer.byteLength(v) <= MAX_SOCKET_PATH_BYTES),
  },
  quota: { bytes: size, files: intRule(0, Number.MAX_SAFE_INTEGER), rescanAfter: seconds(true) },
  bandwidth: {
    transferUp: size,
    transferDown: size,
    userUp: size,
    userDown: size,
    addressUp: size,
    addressDown: size,
    globalUp: size,
    globalDown: size,
  },
};

/** Keys that were removed, with what replaced them (issue "Abuse resistance": the defender). */
const MOVED: ReadonlyMap<string, string> = new Map([
  ["limits.maxFailuresPerAddress", "defender.threshold and defender.scoreLoginFailure"],
  ["limits.banTime", "defender.banTime"],
]);

/** A ConfigError for a removed key that names its replacement; undefined for any other key. */
function movedKeyError(name: string, source: string): ConfigError | undefined {
  const moved = MOVED.get(name);
  if (moved === undefined) return undefined;
  return new ConfigError(name, `${name} was replaced by ${moved} (see config/berth.yaml) [from ${source}]`);
}

/** The removed key a BERTH_* variable names (BERTH_LIMITS_BAN_TIME → limits.banTime), if any. */
function movedEnvKey(variable: string): string | undefined {
  const wanted = variable.slice("BERTH_".length).toLowerCase().replaceAll("_", "");
  return [...MOVED.keys()].find((k) => k.replace(".", "").toLowerCase() === wanted);
}

/** Looks up the rule of `section.key`; undefined for an unknown key. */
function ruleOf(section: string, key: string): Rule | undefined {
  if (!Object.hasOwn(RULES, section)) return undefined;
  const keys = RULES[section as keyof Config] as Readonly<Record<string, Rule>>;
  return Object.hasOwn(keys, key) ? keys[key] : undefined;
}

/** The key names of a section, for hints in messages. */
function keysOf(section: string): string[] {
  return Object.keys(RULES[section as keyof Config]);
}

/** A short rendering of a raw value for messages. */
function shown(raw: unknown): string {
  if (Array.isArray(raw)) return "a list";
  if (typeof raw === "string" && PEM_TEXT.test(raw)) return "the text of a PEM file";
  if (typeof raw === "string" && PEM_BASE64.test(raw)) return "the text of a PEM file, base64-encoded";
  if (typeof raw === "string" && isBase64Der(raw)) return "the base64 text of a key or certificate";
  if (raw === null) return "null";
  if (typeof raw === "object") return "a mapping";
  const s = typeof raw === "number" && !Number.isFinite(raw) ? String(raw) : (JSON.stringify(raw) ?? String(raw));
  return s.length > 60 ? `${s.slice(0, 57)}..."` : s;
}

/** Reads "true/false/1/0/yes/no/on/off" (any case); undefined for anything else. */
function parseBool(s: string): boolean | undefined {
  const v = s.trim().toLowerCase();
  if (["true", "1", "yes", "on"].includes(v)) return true;
  if (["false", "0", "no", "off"].includes(v)) return false;
  return undefined;
}

/** Converts a raw value (YAML scalar or environment string) to the rule's type; undefined on failure. */
function coerce(rule: Rule, raw: unknown): Scalar | undefined {
  if (rule.type === "boolean") {
    if (typeof raw === "boolean") return raw;
    if (raw === 0 || raw === 1) return raw === 1;
    return typeof raw === "string" ? parseBool(raw) : undefined;
  }
  if (rule.type === "number") {
    if (typeof raw === "number") return raw;
    if (typeof raw === "string" && rule.parse) return rule.parse(raw) ?? undefined;
    if (typeof raw !== "string" || !/^\s*-?\d+(\.\d+)?\s*$/.test(raw)) return undefined;
    return Number(raw);
  }
  if (typeof raw === "string") return raw;
  return typeof raw === "number" && Number.isFinite(raw) ? String(raw) : undefined;
}

/** Coerces and checks one value, then stores it in the draft; throws a ConfigError naming the key. */
function assign(draft: Draft, section: string, key: string, raw: unknown, source: string): void {
  const rule = ruleOf(section, key);
  const name = `${section}.${key}`;
  if (rule === undefined) throw new ConfigError(name, `unknown key ${name} [from ${source}]`);
  const value = coerce(rule, raw);
  if (value === undefined || !rule.ok(value)) {
    throw new ConfigError(name, `${name} must be ${rule.describe} (got ${shown(raw)}) [from ${source}]`);
  }
  const target = draft.tree[section];
  if (target !== undefined) target[key] = value;
  draft.sources.set(name, source);
}

/** The config file to read and whether the operator named it (a named file must exist). */
export function configFilePath(opts: LoadOptions = {}): { readonly file: string; readonly explicit: boolean } {
  const env = opts.env ?? process.env;
  const named = opts.file ?? (env.BERTH_CONFIG !== "" ? env.BERTH_CONFIG : undefined);
  return named === undefined ? { file: DEFAULT_CONFIG_FILE, explicit: false } : { file: named, explicit: true };
}

/** Where the symbolic link at `file` leads, or null when `file` is not one. */
function linkTarget(file: string): string | null {
  try {
    return readlinkSync(file);
  } catch {
    return null;
  }
}

/** The bytes of `file`, or null when it holds more than `max`. Read a piece at a time and never
 * past `max`: a file that never ends (/dev/zero) took memory until the process died. Used for
 * every file a config names that is read whole (the config itself, the certificate and key).
 * Opened without blocking and refused (EFTYPE, "not a regular file") when it is a named pipe or a
 * socket: a plain open of a pipe waits, the whole process with it, for a writer that may never come. */
export function readFileAtMost(file: string, max: number): Buffer | null {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  try {
    const stat = fstatSync(fd);
    if (stat.isFIFO() || stat.isSocket()) throw Object.assign(new Error(`${file} is not a regular file`), { code: "EFTYPE" });
    const buf = Buffer.allocUnsafe(max + 1);
    let size = 0;
    while (size <= max) {
      const n = readSync(fd, buf, size, max + 1 - size, null);
      if (n === 0) break;
      size += n;
    }
    return size > max ? null : Buffer.from(buf.subarray(0, size));
  } finally {
    closeSync(fd);
  }
}

/** Reads the YAML file into a plain object; a missing default file is an empty object. */
function readFileTree(file: string, explicit: boolean, cwd: string): unknown {
  let source: string | null;
  try {
    source = readFileAtMost(path.resolve(cwd, file), MAX_CONFIG_BYTES)?.toString("utf8") ?? null;
  } catch (err) {
    if (!explicit && errnoCode(err) === "ENOENT") {
      // No default file means the defaults; a link put there whose target is gone is a file the
      // operator meant to be read, not an absent one.
      const target = linkTarget(path.resolve(cwd, file));
      if (target === null) return {};
      throw new ConfigError(file, `cannot read ${file}: it is a symbolic link to ${target}, which does not exist`);
    }
    throw new ConfigError(file, `cannot read ${file}: ${systemErrorText(err)}`);
  }
  if (source === null) throw new ConfigError(file, `cannot read ${file}: it is larger than ${MAX_CONFIG_BYTES} bytes, which no config file is`);
  const doc = parseDocument(source, { prettyErrors: true, uniqueKeys: true });
  const bad = doc.errors[0];
  if (bad !== undefined) {
    // With prettyErrors the first line ends "at line L, column C:"; the code excerpt after it is dropped.
    const message = firstLine(bad.message).replace(/:$/, "");
    // The library's words for a second document ask for a call of its API (parseAllDocuments).
    const at = bad.linePos?.[0];
    if (bad.code === "MULTIPLE_DOCS" && at !== undefined) {
      throw new ConfigError(file, `${file} holds more than one YAML document (the next starts at line ${at.line}, column ${at.col}): a config file is one`);
    }
    throw new ConfigError(file, `${file} is not valid YAML: ${message}`);
  }
  umaskAsWritten(doc, source);
  try {
    return doc.toJS({ maxAliasCount: 100 }) as unknown;
  } catch (err) {
    throw new ConfigError(file, `${file} is not valid YAML: ${systemErrorText(err)}`);
  }
}

/** `storage.umask` is octal digits: an unquoted one is taken as written, not as the number YAML
 * reads. `umask: 077` is 77 to YAML, which read back as digits happens to be right, but YAML's own
 * octal `umask: 0o077` is 63, which became the umask 063: new files readable by everyone. */
function umaskAsWritten(doc: Document, source: string): void {
  const node = doc.getIn(["storage", "umask"], true);
  if (!isScalar(node) || typeof node.value !== "number" || node.range == null) return;
  node.value = source.slice(node.range[0], node.range[1]).replace(/^0o/i, "");
}

/** True for a plain mapping (not null, not a list). */
function isMapping(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Applies every key of the parsed file over the draft. */
function applyFile(draft: Draft, parsed: unknown, file: string): void {
  if (parsed === null || parsed === undefined) return;
  if (!isMapping(parsed)) throw new ConfigError(file, `${file} must be a mapping of sections (got ${shown(parsed)})`);
  for (const [section, body] of Object.entries(parsed)) {
    if (!Object.hasOwn(RULES, section)) {
      const known = Object.keys(RULES).join(", ");
      throw new ConfigError(section, `unknown key ${section} in ${file} (sections: ${known})`);
    }
    if (body === null) continue;
    if (!isMapping(body)) {
      throw new ConfigError(section, `${section} must be a mapping of keys (got ${shown(body)}) [from ${file}]`);
    }
    for (const [key, raw] of Object.entries(body)) {
      if (ruleOf(section, key) === undefined) {
        const moved = movedKeyError(`${section}.${key}`, file);
        if (moved) throw moved;
        const hint = keysOf(section).join(", ");
        throw new ConfigError(`${section}.${key}`, `unknown key ${section}.${key} in ${file} (keys of ${section}: ${hint})`);
      }
      assign(draft, section, key, raw, file);
    }
  }
}

/** Maps BERTH_<SECTION>_<KEY> to [section, key]; undefined when it names no key. */
export function envKey(variable: string): readonly [string, string] | undefined {
  const rest = variable.slice("BERTH_".length).toLowerCase();
  for (const section of Object.keys(RULES)) {
    if (!rest.startsWith(`${section}_`)) continue;
    const wanted = rest.slice(section.length + 1).replaceAll("_", "");
    const key = keysOf(section).find((k) => k.toLowerCase() === wanted);
    if (key !== undefined) return [section, key];
  }
  return undefined;
}

/** Applies every BERTH_* variable of `env` over the draft; unknown ones are errors. A key of
 * `file` that a variable sets to another value is noted in the draft's overrides, unless the file
 * only repeats the default (config/berth.yaml lists every key with its default, and overriding
 * those is what the variables are for). */
function applyEnv(draft: Draft, env: NodeJS.ProcessEnv, file: string): void {
  const names = Object.keys(env)
    .filter((n) => n.startsWith("BERTH_") && !RESERVED_ENV.has(n) && !isServiceLink(n, env[n]))
    .sort();
  // Underscores inside a key's name are optional (BERTH_LIMITS_LOGIN_TIMEOUT and
  // BERTH_LIMITS_LOGINTIMEOUT), so two variables can name one key: which one won would be the
  // order of their names, and the other silently dropped.
  const setBy = new Map<string, string>();
  for (const name of names) {
    const target = envKey(name);
    if (target === undefined) {
      const moved = movedEnvKey(name);
      if (moved !== undefined) throw movedKeyError(moved, name) ?? new ConfigError(name, name);
      throw new ConfigError(name, `unknown environment variable ${name} (no such config key; see config/berth.yaml)`);
    }
    const [section, key] = target;
    const dotted = `${section}.${key}`;
    const other = setBy.get(dotted);
    if (other !== undefined) throw new ConfigError(dotted, `${other} and ${name} both set ${dotted}; set one of them`);
    setBy.set(dotted, name);
    const fromFile = draft.sources.get(dotted);
    const before = draft.tree[section]?.[key];
    assign(draft, section, key, env[name] ?? "", name);
    const after = draft.tree[section]?.[key];
    const byDefault = (DEFAULTS as unknown as Tree)[section]?.[key];
    if (fromFile === file && before !== undefined && after !== undefined && after !== before && before !== byDefault) {
      draft.overrides.push({
        key: dotted,
        variable: name,
        value: shownValue(section, key, after),
        file: fromFile,
        fileValue: shownValue(section, key, before),
      });
    }
  }
}

/** Checks rules that involve more than one key. */
function checkCombinations({ tree, sources }: Draft): void {
  const from = (key: string): string => {
    const source = sources.get(key);
    return source === undefined ? "" : ` [from ${source}]`;
  };
  const tls = tree.tls ?? {};
  if (tls.require === true && tls.mode === "off") {
    throw new ConfigError("tls.require", `tls.require is true but tls.mode is "off" (nobody could log in)${from("tls.require")}`);
  }
  const defender = tree.defender ?? {};
  if (Number(defender.banTimeMax) < Number(defender.banTime)) {
    throw new ConfigError(
      "defender.banTimeMax",
      `defender.banTimeMax must be at least defender.banTime (${String(defender.banTimeMax)} < ${String(defender.banTime)})${from("defender.banTimeMax")}`,
    );
  }
  const listenPort = tree.listen?.port;
  if (tls.mode === "both" && listenPort !== 0 && listenPort === tls.implicitPort) {
    throw new ConfigError(
      "tls.implicitPort",
      `tls.implicitPort must differ from listen.port when tls.mode is "both" (both are ${String(listenPort)})${from("tls.implicitPort")}`,
    );
  }
  // A control listener's port in the passive range can never be a passive connection's: binding it
  // fails, and a range of that port alone gives every PASV "no free data port".
  const ports = tree.passive?.ports;
  const range = typeof ports === "string" || typeof ports === "number" ? parsePortRange(String(ports)) : null;
  const held: [string, unknown, string][] = [
    ["listen.port", tls.mode === "implicit" ? 0 : listenPort, "the listener for control connections"],
    ["tls.implicitPort", tls.mode === "implicit" || tls.mode === "both" ? tls.implicitPort : 0, "the implicit FTPS listener"],
  ];
  for (const [key, port, listener] of held) {
    if (range === null || typeof port !== "number" || port === 0 || port < range.min || port > range.max) continue;
    throw new ConfigError(
      "passive.ports",
      `passive.ports ${String(ports).trim()} includes ${key} ${port}, which ${listener} holds; move one of them${from("passive.ports")}`,
    );
  }
}

/** Freezes `value` and everything reachable from it. */
function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/** Loads, validates and freezes the configuration; throws ConfigError naming the bad key. */
export function loadConfig(opts: LoadOptions = {}): Config {
  return loadConfigWithOverrides(opts).config;
}

/** loadConfig, and the keys the file changes from their defaults whose values a BERTH_* variable
 * replaced with others (in the order of the variables' names). */
export function loadConfigWithOverrides(opts: LoadOptions = {}): { readonly config: Config; readonly overrides: readonly EnvOverride[] } {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const { file, explicit } = configFilePath({ file: opts.file, env });
  const draft: Draft = { tree: structuredClone(DEFAULTS) as unknown as Tree, sources: new Map(), overrides: [] };
  applyFile(draft, readFileTree(file, explicit, cwd), file);
  applyEnv(draft, env, file);
  checkCombinations(draft);
  return { config: deepFreeze(draft.tree as unknown as Config), overrides: draft.overrides };
}

/** Resolves a config path against `cwd` (absolute stays as is); "" (unset) stays "". */
export function resolvePath(value: string, cwd: string = process.cwd()): string {
  return value === "" ? "" : path.resolve(cwd, value);
}

/** Leaf key names whose values are secrets and must never be printed. */
const SECRET_NAME = /(password|passphrase|secret|token|credentials?)$/i;

/** Dotted keys that are secrets although their names do not say so (none yet). */
const SECRET_KEYS: ReadonlySet<string> = new Set<string>();

/** `value` of `section.key` as it may be printed: "[hidden]" for a non-empty secret. */
function shownValue(section: string, key: string, value: Scalar): Scalar {
  const secret = SECRET_KEYS.has(`${section}.${key}`) || SECRET_NAME.test(key);
  return secret && value !== "" ? "[hidden]" : value;
}

/** A printable, unfrozen copy of `config` with every secret value replaced by "[hidden]". */
export function redactConfig(config: Config): Record<string, Record<string, Scalar>> {
  const out: Record<string, Record<string, Scalar>> = {};
  for (const [section, body] of Object.entries(config as unknown as Tree)) {
    const copy: Record<string, Scalar> = {};
    for (const [key, value] of Object.entries(body)) copy[key] = shownValue(section, key, value);
    out[section] = copy;
  }
  return out;
}
