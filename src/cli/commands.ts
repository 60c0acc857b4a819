/**
 * The `user …` and `config check` commands. Each returns its exit status; mistakes are thrown
 * (CliError, ConfigError, UserError) and turned into one line by main.ts.
 */
import { existsSync } from "node:fs";
import { stat } from "node:fs/promises";
import path from "node:path";
import { stringify } from "yaml";
import { configFilePath, describeOverride, loadConfigWithOverrides, redactConfig, resolvePath } from "../config/load.ts";
import { parseUmask, type Config } from "../config/schema.ts";
import type { Logger } from "../log/logger.ts";
import { isAnonymousName } from "../auth/anonymous.ts";
import { normalizeDir, toPerms, UserError, UserStore, type UserChanges, type UserInfo } from "../auth/store.ts";
import { PERMS, type Perm } from "../auth/types.ts";
import { formatSize, parseSize } from "../config/units.ts";
import { Limiter, scanUsage, type Usage } from "../fs/usage.ts";
import type { ParsedCommand } from "./args.ts";
import { checkBeforeStart } from "./preflight.ts";
import { certificateDatesWarning } from "../data/tls.ts";
import { newPassword, type Streams } from "./prompt.ts";

/** What a command may use of the process: streams, environment and working directory. */
export interface CliContext extends Streams {
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
  /** How berth is run, for hints: "berth", a path to bin/berth, or the npm script's command. */
  readonly command: string;
}

/** Loads the config named by --config (or the default) for this context. */
export function configFor(cmd: ParsedCommand, ctx: CliContext): Config {
  return configWithOverridesFor(cmd, ctx).config;
}

/** configFor, and the keys of the file that BERTH_* variables set to other values. */
export function configWithOverridesFor(cmd: ParsedCommand, ctx: CliContext): ReturnType<typeof loadConfigWithOverrides> {
  const file = cmd.options.config;
  return loadConfigWithOverrides({ file: typeof file === "string" ? file : undefined, env: ctx.env, cwd: ctx.cwd });
}

/** The user store of `config`, with paths resolved against the working directory. */
export function storeFor(config: Config, cwd: string, logger?: Logger): UserStore {
  return new UserStore({
    file: resolvePath(config.users.file, cwd),
    storageRoot: resolvePath(config.storage.root, cwd),
    bcryptCost: config.users.bcryptCost,
    logger,
    umask: parseUmask(config.storage.umask) ?? undefined,
  });
}

/** Runs `user add|passwd|del|list`. */
export async function runUser(cmd: ParsedCommand, ctx: CliContext): Promise<number> {
  const config = configFor(cmd, ctx);
  const store = storeFor(config, ctx.cwd);
  const name = cmd.args.NAME ?? "";
  const fromStdin = cmd.options["password-stdin"] === true;
  const say = (line: string): void => void ctx.stdout.write(`${line}\n`);
  switch (cmd.name) {
    case "user add": {
      const changes = userChanges(cmd);
      // Whatever would refuse the user is said before the password is asked for (twice).
      await store.checkAdd(name, changes);
      const password = await newPassword(ctx, fromStdin, `"${name}"`);
      const user = await store.add(name, password, changes);
      say(`berth: added user "${user.name}" (home ${user.home}${user.readOnly ? ", read-only" : ""})`);
      warnWholeFilesystem(ctx, user);
      warnAnonymousName(ctx, config, name);
      return 0;
    }
    case "user set": {
      const changes = userChanges(cmd);
      if (Object.keys(changes).length === 0) throw new UserError("invalid", `nothing to change for "${name}" (see: berth --help)`);
      const user = await store.set(name, changes);
      say(`berth: updated user "${user.name}" (${describeUser(user)})`);
      if (changes.root !== undefined) warnWholeFilesystem(ctx, user);
      return 0;
    }
    case "user passwd":
      await store.checkExists(name);
      await store.passwd(name, await newPassword(ctx, fromStdin, `"${name}"`));
      say(`berth: password of "${name}" changed`);
      warnAnonymousName(ctx, config, name);
      return 0;
    case "user del": {
      const gone = await store.del(name);
      say(`berth: deleted user "${gone.name}" (files in ${gone.home} kept)`);
      return 0;
    }
    default: {
      const users = await store.list();
      say(formatUserTable(users, await homeUsage(users)));
      return 0;
    }
  }
}

/** A home at the filesystem's root is allowed (the SPEC takes any absolute root) but jails
 * nothing: said on stderr, in case it was a typo. */
function warnWholeFilesystem(ctx: CliContext, user: UserInfo): void {
  if (user.home !== "/") return;
  ctx.stderr.write(`berth: warning: the home of "${user.name}" is /: every file the server process can read is within their reach\n`);
}

/** While anonymous FTP is on, its names always mean it (auth/anonymous.ts): a password given to a
 * users-file account of that name is one no login can use, which `berth serve` warns of only at
 * start. Said on stderr when it is given, as the server would take it. */
function warnAnonymousName(ctx: CliContext, config: Config, name: string): void {
  if (!config.anonymous.enabled || !isAnonymousName(name)) return;
  ctx.stderr.write(`berth: warning: "${name}" cannot log in while anonymous.enabled is true (the name means anonymous FTP)\n`);
}

/** The UserChanges named by the options of `user add` / `user set`; a bad value is a usage error. */
export function userChanges(cmd: ParsedCommand): UserChanges {
  const o = cmd.options;
  const changes: Record<string, unknown> = {};
  if (typeof o.root === "string") changes.root = o.root;
  if (o["read-only"] === true && o["read-write"] === true) throw invalid("give only one of --read-only and --read-write");
  if (o["read-only"] === true) changes.readOnly = true;
  if (o["read-write"] === true) changes.readOnly = false;
  if (typeof o.perms === "string") changes.perms = o.perms === "all" ? null : permList(o.perms, "--perms");
  if (typeof o["dir-perms"] === "string") changes.dirs = dirPerms(o["dir-perms"]);
  const sizes = [
    ["quota-bytes", "quotaBytes"],
    ["bandwidth-up", "bandwidthUp"],
    ["bandwidth-down", "bandwidthDown"],
  ] as const;
  for (const [opt, key] of sizes) {
    const v = o[opt];
    if (typeof v !== "string") continue;
    const bytes = parseSize(v);
    if (bytes === null) throw invalid(`--${opt} must be a size like 0, 512K, 10M or 1.5G`);
    changes[key] = bytes;
  }
  for (const [opt, key] of [["quota-files", "quotaFiles"], ["max-sessions", "maxSessions"]] as const) {
    const v = o[opt];
    if (typeof v !== "string") continue;
    if (!/^\d{1,15}$/.test(v)) throw invalid(`--${opt} must be a whole number >= 0`);
    changes[key] = Number(v);
  }
  return changes as UserChanges;
}

function invalid(message: string): UserError {
  return new UserError("invalid", message);
}

/** "list,download" → permissions; "none" → none. */
function permList(text: string, option: string): Perm[] {
  if (text.trim() === "none") return [];
  const names = text.split(",").map((p) => p.trim()).filter((p) => p !== "");
  // Separators alone name no permission: taken as none they would quietly take every permission
  // away, which is said with "none".
  const perms = names.length === 0 ? null : toPerms(names);
  if (perms === null) throw invalid(`${option} takes "all", "none" or a comma list of ${PERMS.join(",")}`);
  return perms;
}

/** "/pub=list,download;/in=upload" → overrides; "none" → null (removes them). */
function dirPerms(text: string): Record<string, Perm[]> | null {
  if (text.trim() === "none") return null;
  const out: Record<string, Perm[]> = {};
  for (const part of text.split(";").map((p) => p.trim()).filter((p) => p !== "")) {
    const eq = part.indexOf("=");
    // An empty DIR would read as the home itself; that must be written "/".
    if (eq !== -1 && part.slice(0, eq).trim() === "") throw invalid(`--dir-perms needs a DIR before "=" in "${part}" (/ is the whole home)`);
    const dir = eq === -1 ? null : normalizeDir(part.slice(0, eq).trim());
    if (dir === null) throw invalid(`--dir-perms takes "DIR=LIST;DIR=LIST" with DIR inside the home, not "${part}"`);
    // One directory named twice ("/a" and "/a/") would keep only its last entry: which one was
    // meant is not for berth to guess.
    if (Object.hasOwn(out, dir)) throw invalid(`--dir-perms names the directory "${dir}" twice`);
    out[dir] = part.slice(eq + 1).trim() === "all" ? [...PERMS] : permList(part.slice(eq + 1), "--dir-perms");
  }
  return out;
}

/** Permissions in short form: "all", "list,download", or "none". */
function permText(perms: ReadonlySet<Perm>): string {
  if (perms.size === PERMS.length) return "all";
  return perms.size === 0 ? "none" : PERMS.filter((p) => perms.has(p)).join(",");
}

/** One line of what a user may do and their own limits. */
export function describeUser(u: UserInfo): string {
  const parts = [`home ${u.home}`, u.readOnly ? "read-only" : "read-write", `perms ${permText(u.perms)}`];
  for (const d of u.dirPerms) parts.push(`${d.path}: ${permText(d.perms)}`);
  const l = u.limits;
  if (l.quotaBytes > 0) parts.push(`quota ${formatSize(l.quotaBytes)}`);
  if (l.quotaFiles > 0) parts.push(`quota ${l.quotaFiles} files`);
  if (l.bandwidthUp > 0) parts.push(`up ${formatSize(l.bandwidthUp)}/s`);
  if (l.bandwidthDown > 0) parts.push(`down ${formatSize(l.bandwidthDown)}/s`);
  if (l.maxSessions > 0) parts.push(`max ${l.maxSessions} sessions`);
  return parts.join(", ");
}

/** Filesystem calls in flight while `user list` counts homes. */
const LIST_SCAN_CONCURRENCY = 16;

/** How long `user list` counts homes before it shows what it found as a lower bound (ms): a home
 * of millions of files, a root of "/", or hundreds of big homes must not hold the command for
 * minutes. One budget for the whole list, not one per home. */
export const LIST_SCAN_MS = 5000;

/** What each user's home holds (by name); null for a home that does not exist. One walk per home
 * (users sharing a home share its walk), all homes at once with a bounded number of filesystem
 * calls in flight between them, for at most `budgetMs` in all. */
export async function homeUsage(users: readonly UserInfo[], budgetMs = LIST_SCAN_MS, limiter = new Limiter(LIST_SCAN_CONCURRENCY)): Promise<Map<string, Usage | null>> {
  const deadline = Date.now() + budgetMs;
  const byHome = new Map<string, Promise<Usage | null>>();
  for (const u of users) {
    if (byHome.has(u.home)) continue;
    byHome.set(u.home, (async () => {
      const isDir = await stat(u.home).then((st) => st.isDirectory(), () => false);
      return isDir ? scanUsage(u.home, limiter, deadline) : null;
    })());
  }
  const out = new Map<string, Usage | null>();
  for (const u of users) out.set(u.name, (await byHome.get(u.home)) ?? null);
  return out;
}

/** "12 MiB, 3 files" */
function usageText(usage: Usage | null | undefined): string {
  if (!usage) return "-";
  const text = `${formatSize(usage.bytes)}, ${usage.files} file${usage.files === 1 ? "" : "s"}`;
  if (!usage.partial) return text;
  return `at least ${text} (${usage.unreadable ? "a directory it holds cannot be read" : `counting stopped after ${LIST_SCAN_MS / 1000} s`})`;
}

/** A plain-text table of users: name, home, read-only, permissions, usage of the home, limits. */
export function formatUserTable(users: readonly UserInfo[], usage?: ReadonlyMap<string, Usage | null>): string {
  if (users.length === 0) return "no users";
  const limits = (u: UserInfo): string => {
    const l = u.limits;
    const bits = [
      l.quotaBytes > 0 || l.quotaFiles > 0
        ? `quota ${l.quotaBytes > 0 ? formatSize(l.quotaBytes) : "-"}/${l.quotaFiles > 0 ? `${l.quotaFiles} files` : "-"}`
        : "",
      l.bandwidthUp > 0 ? `up ${formatSize(l.bandwidthUp)}/s` : "",
      l.bandwidthDown > 0 ? `down ${formatSize(l.bandwidthDown)}/s` : "",
      l.maxSessions > 0 ? `sessions ${l.maxSessions}` : "",
    ];
    return bits.filter((b) => b !== "").join(" ") || "-";
  };
  const perms = (u: UserInfo): string =>
    [permText(u.perms), ...u.dirPerms.map((d) => `${d.path}:${permText(d.perms)}`)].join(" ");
  const rows = [
    ["NAME", "HOME", "READ-ONLY", "PERMS", "USED", "LIMITS"],
    ...users.map((u) => [u.name, u.home, u.readOnly ? "yes" : "no", perms(u), usageText(usage?.get(u.name)), limits(u)]),
  ];
  return formatTable(rows);
}

/** Aligns rows into columns two spaces apart. */
export function formatTable(rows: readonly (readonly string[])[]): string {
  const cols = Math.max(...rows.map((r) => r.length));
  const widths = Array.from({ length: cols }, (_, c) => Math.max(...rows.map((r) => (r[c] ?? "").length)));
  return rows
    .map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c] ?? 0))).join("  ").trimEnd())
    .join("\n");
}

/** Runs `config check`: validates as serve does before it starts, warns on stderr of each key of the
 * file a BERTH_* variable overrides and of a certificate out of its dates, then prints the effective config as YAML with secrets hidden. */
export function runConfigCheck(cmd: ParsedCommand, ctx: CliContext): number {
  const { config, overrides } = configWithOverridesFor(cmd, ctx);
  checkBeforeStart(config, ctx.cwd);
  // The warnings serve logs at start, on stderr: stdout stays the effective config alone.
  for (const o of overrides) ctx.stderr.write(`berth: warning: ${describeOverride(o)}\n`);
  const dates = certificateDatesWarning(config, ctx.cwd);
  if (dates !== null) ctx.stderr.write(`berth: warning: ${dates}\n`);
  const given = cmd.options.config;
  const { file } = configFilePath({ file: typeof given === "string" ? given : undefined, env: ctx.env });
  const found = existsSync(path.resolve(ctx.cwd, file));
  ctx.stdout.write(`# effective configuration: ${found ? file : "defaults (no config file)"} + environment\n`);
  ctx.stdout.write(stringify(redactConfig(config), { defaultStringType: "QUOTE_DOUBLE", defaultKeyType: "PLAIN" }));
  return 0;
}
