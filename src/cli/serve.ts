/**
 * `berth serve`: check the config, build the logger and the user store, start the server, and
 * make sure someone can log in. Signal handling and exiting stay in main.ts.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { anonymousUser, shadowedNames } from "../auth/anonymous.ts";
import type { DefenderStatus } from "../auth/defender.ts";
import type { UserStore } from "../auth/store.ts";
import type { User } from "../auth/types.ts";
import type { Config } from "../config/schema.ts";
import type { Session } from "../protocol/session.ts";
import { describeOverride, resolvePath, type EnvOverride } from "../config/load.ts";
import { errnoCode, systemErrorText } from "../config/syserr.ts";
import { createLogger, type Logger } from "../log/logger.ts";
import { CliError, type ParsedCommand } from "./args.ts";
import { configWithOverridesFor, storeFor, type CliContext } from "./commands.ts";
import { configOption, storeVariables } from "./invocation.ts";
import { checkBeforeStart, checkHostsResolve } from "./preflight.ts";

/** What the server hands back once it listens. */
export interface RunningServer {
  /** Stops accepting, lets transfers run for up to `graceMs`, then closes everything. */
  shutdown(graceMs: number): Promise<void>;
  /** Applies a validated config to new sessions; throws (changing nothing) when it cannot. */
  reload(next: Config): { readonly applied: readonly string[]; readonly needRestart: readonly string[] };
  /** Opens the transfer log again (after a rotation), also when a reload is refused. */
  reopenLogs(): void;
  /** The config new sessions get (the latest reload's). */
  readonly config: Config;
  /** Live sessions, for the admin socket. */
  readonly sessions: ReadonlySet<Session>;
  /** The defender, for `berth ctl status`. */
  readonly defender: { status(limit?: number): DefenderStatus };
}

/** A started server with the config and logger it runs with. */
export interface Serving {
  readonly server: RunningServer;
  readonly config: Config;
  readonly logger: Logger;
  readonly users: UserStore;
  /** Whether BERTH_USER named a user (then no demo user is made). */
  readonly envUser: boolean;
}

/** Errors of listen() that are the operator's environment, not a bug. EINVAL is an address no
 * socket can be bound to as given: a link-local IPv6 address without its interface (fe80::1), or
 * a multicast one. */
const LISTEN_ERRORS = new Set(["EADDRINUSE", "EACCES", "EADDRNOTAVAIL", "EAFNOSUPPORT", "EPERM", "EINVAL"]);

/**
 * Checks everything that can be checked before anything is written (the config, the certificate
 * and key, the transfer log, the hosts to listen on, BERTH_USER and the users file), then makes
 * the user BERTH_USER names, then listens. Throws ConfigError, UserError or CliError for operator
 * problems. The demo user of a first start is made by welcome(), once everything listens.
 */
export async function startServing(cmd: ParsedCommand, ctx: CliContext): Promise<Serving> {
  const { config, overrides } = configWithOverridesFor(cmd, ctx);
  checkBeforeStart(config, ctx.cwd);
  await checkHostsResolve(config);
  // A server already answering on admin.socket keeps it, and a path where no socket can be made is
  // no use: both refused here, before listening on anything.
  if (config.admin.socket !== "") {
    const { checkAdminSocketBinds, claimAdminSocketPath } = await import("../admin/socket.ts");
    const socketPath = resolvePath(config.admin.socket, ctx.cwd);
    await claimAdminSocketPath(socketPath);
    await checkAdminSocketBinds(socketPath);
  }
  const logger = createLogger({ level: config.log.level, pretty: config.log.pretty, destination: ctx.stdout });
  warnOverrides(overrides, logger);
  warnFileLimit(config, logger);
  const users = storeFor(config, ctx.cwd, logger);
  // Reads the users file (a corrupt one stops here) before BERTH_USER changes it, and keeps it as
  // the copy logins are checked against until a good new version is read.
  await users.load();
  const envUser = await users.ensureEnvUser(ctx.env);
  if (envUser !== undefined) logger.info({ user: envUser.name, action: envUser.action }, "first user from BERTH_USER");
  // Loaded here, not at the top, so that `user` and `config` commands do not load the server.
  const { startServer } = await import("../server.ts");
  try {
    const server = await startServer({ config, logger, users });
    return { server, config, logger, users, envUser: envUser !== undefined };
  } catch (err) {
    throw listenFailure(err, config) ?? err;
  }
}

/** One warning per key the config file changes from its default that a BERTH_* variable sets to
 * another value: the change in the file does nothing, and whoever made it should know. */
export function warnOverrides(overrides: readonly EnvOverride[], logger: Logger): void {
  for (const o of overrides) {
    logger.warn({ event: "env-override", key: o.key, variable: o.variable, value: o.value, file: o.file, fileValue: o.fileValue }, describeOverride(o));
  }
}

/** Descriptors every session holds: its control connection (one that keeps a passive listener
 * between transfers holds two, and a transfer adds its data connection and file). */
const FILES_PER_SESSION = 1;

/** Descriptors the process holds besides its sessions': Node's own, the listeners, the users
 * file's watch, the transfer log, the checksum and stat workers. */
const FILES_OWN = 64;

/**
 * The limit on open files (Node raises its soft limit to the hard one at start) against
 * `limits.maxSessions`: past the limit, the kernel's accept fails and libuv closes each new
 * connection at once, so its client sees no greeting, not the 421 of `limits.maxSessions`, and
 * nothing reaches the log. Said once at start when the limit cannot hold that many sessions even
 * idle (busy ones need more: the warning is for a limit that is short for certain), and again by a
 * reload that changes limits.maxSessions.
 */
export function warnFileLimit(config: Config, logger: Logger): void {
  const limit = openFilesLimit();
  if (limit === null) return;
  const sessions = Math.max(0, Math.floor((limit - FILES_OWN) / FILES_PER_SESSION));
  const maxSessions = config.limits.maxSessions;
  if (sessions >= maxSessions) return;
  logger.warn(
    { event: "file-limit", limit, maxSessions, sessions },
    "the limit on open files (%d) holds at most about %d sessions, fewer than limits.maxSessions (%d): clients past it are closed without a greeting; raise the limit (LimitNOFILE= in a systemd unit, --ulimit nofile= for docker run, ulimit -n in a shell) or lower limits.maxSessions",
    limit,
    sessions,
    maxSessions,
  );
}

/** This process's limit on open files, from /proc/self/limits; null where it cannot be read (not
 * Linux) or there is none. */
function openFilesLimit(): number | null {
  let text: string;
  try {
    text = readFileSync("/proc/self/limits", "latin1");
  } catch {
    return null;
  }
  const m = /^Max open files\s+(\d+)\s/m.exec(text);
  return m?.[1] !== undefined ? Number(m[1]) : null;
}

/**
 * Once the server listens: on a true first start (no users file, no BERTH_USER) makes the demo
 * user and prints its password once; then warns when nobody can log in, and about names anonymous
 * FTP shadows. Made only now, so that a start that fails leaves no user and prints no password.
 */
export async function welcome({ config, logger, users, envUser }: Serving, cmd: ParsedCommand, ctx: CliContext): Promise<void> {
  const addUser = addUserCommand(cmd, ctx);
  const demo = envUser ? null : await users.createDemoUser();
  if (demo !== null) {
    ctx.stdout.write(`berth: no users yet — created user "${demo.name}" with password "${demo.password}"\n`);
    ctx.stdout.write(`add real users with: ${addUser}\n`);
  }
  // The copy in use, not the file read again: an edit made meanwhile is the reload's business.
  if (config.anonymous.enabled) warnAnonymous(config, users, logger);
  else if (users.loaded().length === 0) warnNoUsers(users.file, addUser, logger);
}

/** With anonymous FTP on (`config`, as the server runs it): users it shadows, and users whose
 * homes its root holds. Said at start, and by a reload that turns it on or moves its root. */
export function warnAnonymous(config: Config, users: UserStore, logger: Logger): void {
  const loaded = users.loaded();
  warnShadowed(shadowedNames(loaded.map((u) => u.name)), logger);
  warnAnonymousHomes(config, loaded, logger);
}

/** The command that adds a user to this server's users file, as the operator would type it. */
function addUserCommand(cmd: ParsedCommand, ctx: CliContext): string {
  const given = cmd.options.config;
  return `${storeVariables(ctx.env)}${ctx.command} user add NAME${configOption(typeof given === "string" ? given : undefined, ctx.env, ctx.cwd)}`;
}

/** A users file with no users in it (all deleted) and no anonymous FTP: nobody can log in. */
function warnNoUsers(file: string, addUser: string, logger: Logger): void {
  logger.warn({ event: "no-users", file }, "the users file has no users: nobody can log in until one is added with: %s", addUser);
}

/** With anonymous FTP on, users-file accounts named anonymous or ftp cannot log in: say so once. */
function warnShadowed(names: readonly string[], logger: Logger): void {
  for (const name of names) {
    logger.warn({ user: name }, 'user "%s" cannot log in while anonymous.enabled is true (the name means anonymous FTP)', name);
  }
}

/**
 * With anonymous FTP on, an `anonymous.root` that is the storage root, or holds a user's home
 * (`anonymous.root: "."`, say), lets anyone read those users' files: a setting taken as given, as
 * vsftpd takes its anon_root, but said once at start, naming the users.
 */
function warnAnonymousHomes(config: Config, users: readonly Pick<User, "name" | "home">[], logger: Logger): void {
  const storage = resolvePath(config.storage.root);
  const root = anonymousUser(config.anonymous, storage).home;
  const within = (dir: string): boolean => dir === root || dir.startsWith(root.endsWith(path.sep) ? root : root + path.sep);
  const exposed = users.filter((u) => within(u.home)).map((u) => u.name);
  if (exposed.length === 0 && !within(storage)) return;
  logger.warn(
    { event: "anonymous-root", root, users: exposed },
    "anonymous.root %s holds %s: anonymous FTP can read what is there; give it a directory of its own",
    root,
    exposed.length === 0 ? "the storage root, where new users' homes are made" : `the home of ${exposed.map((n) => `"${n}"`).join(", ")}`,
  );
}

/** A one-line CliError for a listen failure (address in use, permission), else undefined. */
export function listenFailure(err: unknown, config: Config): CliError | undefined {
  const code = errnoCode(err);
  if (code === undefined || !LISTEN_ERRORS.has(code)) return undefined;
  const e = err as { address?: unknown; port?: unknown; listenKey?: unknown };
  const host = typeof e.address === "string" ? e.address : config.listen.host;
  const port = typeof e.port === "number" ? e.port : config.listen.port;
  // The implicit FTPS port and the metrics endpoint are named (server.ts marks their errors);
  // otherwise it is the control port, listen.port.
  const key = typeof e.listenKey === "string" ? ` (${e.listenKey})` : "";
  const shownHost = host.includes(":") ? `[${host}]` : host;
  // Binding a port below 1024 without privilege: say what grants it. In the container image the
  // node binary's file capability does that, and no-new-privileges is what silently stops it.
  const hint =
    code === "EACCES" && port > 0 && port < 1024
      ? ` (a port below 1024 needs root or the capability NET_BIND_SERVICE; in a container started with no-new-privileges the image's node cannot use its file capability: listen on a port from 1024 up and publish it, e.g. BERTH_LISTEN_PORT=2121 with -p 21:2121)`
      : code === "EAFNOSUPPORT" && host.includes(":")
        ? // A kernel without IPv6 (ipv6.disable=1) cannot bind the default "::": IPv4 alone still works.
          " (this system has no IPv6: listen on every IPv4 address with listen.host 0.0.0.0, e.g. BERTH_LISTEN_HOST=0.0.0.0)"
        : code === "EINVAL" && /^fe[89ab]/i.test(host) && !host.includes("%")
          ? " (a link-local address is bound on one interface, named after a %, e.g. fe80::1%eth0)"
          : "";
  return new CliError(`cannot listen on ${shownHost}:${port}: ${systemErrorText(err)}${key}${hint}`, 1);
}
