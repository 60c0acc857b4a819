/**
 * berth's command line entry (`tsx src/cli/main.ts <args>`). The only place that calls
 * process.exit: every command returns a status, every mistake becomes one line on stderr.
 */
import { readFileSync } from "node:fs";
import { setFlagsFromString } from "node:v8";
import { UserError } from "../auth/store.ts";
import type { AdminSocket } from "../admin/socket.ts";
import { ConfigError, resolvePath } from "../config/load.ts";
import { removeLiveTempsSync } from "../fs/upload.ts";
import { errnoCode, firstLine, systemErrorText } from "../config/syserr.ts";
import { CliError, parseArgv, USAGE, type ParsedCommand } from "./args.ts";
import { configWithOverridesFor, runConfigCheck, runUser, type CliContext } from "./commands.ts";
import { berthCommand } from "./invocation.ts";
import { checkPassiveAddress } from "./preflight.ts";
import { startServing, warnAnonymous, warnFileLimit, warnOverrides, welcome, type Serving } from "./serve.ts";

/** V8's interrupt budget (bytes of bytecode) for the serving process; see serve(). */
const INTERRUPT_BUDGET = 16 << 10;

/** How long after the first signal the same signal again is that one delivered twice, not an
 * operator's second (ms): a Ctrl-C at the terminal reaches npm and berth at once, and npm passes it
 * on (as would tsx's command line, run between them), so under `npm start` berth gets it twice
 * within milliseconds. */
const SAME_SIGNAL_MS = 500;

const ctx: CliContext = {
  stdin: process.stdin,
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  cwd: process.cwd(),
  command: berthCommand(process.argv[1], process.env),
};

/** Whether stdout is the command's result (every command but serve), and the first error
 * writing it (a full disk under `berth user list > file`), if any. */
let outputWatched = false;
let outputError: unknown;

/** Runs the command in argv and resolves to its exit status. */
async function run(argv: readonly string[]): Promise<number> {
  const cmd = parseArgv(argv);
  // What a command prints is its result: a write that fails must fail the command (as `ls` and
  // `cat` do), not be dropped with exit status 0. The server handles its log stream itself.
  if (cmd.name !== "serve") {
    outputWatched = true;
    ctx.stdout.on("error", (err: unknown) => (outputError ??= err));
  }
  switch (cmd.name) {
    case "help":
      ctx.stdout.write(USAGE);
      return 0;
    case "version":
      ctx.stdout.write(`berth ${version()}\n`);
      return 0;
    case "serve":
      return serve(cmd);
    case "config check":
      return runConfigCheck(cmd, ctx);
    case "ctl status":
    case "ctl sessions":
    case "ctl kick":
    case "ctl reload":
    case "ctl drain":
    case "ctl watch":
      return (await import("./ctl.ts")).runCtl(cmd, ctx);
    case "selftest":
      return (await import("./selftest.ts")).runSelftest(cmd, ctx);
    default:
      return runUser(cmd, ctx);
  }
}

/** The package version. */
function version(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: string };
  return pkg.version ?? "unknown";
}

/** Starts the server and runs until SIGINT/SIGTERM; a signal during start-up is kept for after. */
async function serve(cmd: ParsedCommand): Promise<number> {
  // V8 optimizes a function once it has run through an "interrupt budget" of bytecode. With the
  // default (66 KiB) a fresh server interprets its command and transfer path for its first thousand
  // or so transfers; a quarter of it makes that warm-up about half as long (bench/analysis.md).
  // Only the serving process is affected.
  setFlagsFromString(`--interrupt-budget=${INTERRUPT_BUDGET}`);
  // Whoever reads stderr can go away too (`berth serve 2>&1 | head -1`): a write there that fails
  // is dropped. Unheard, the stream's 'error' event would be an uncaught exception (exit 1).
  ctx.stderr.on("error", () => undefined);
  // One listener for the whole run: removing the last one, even briefly, restores the default action.
  let first: Stopper | undefined;
  let firstAt = 0;
  let onFirst: ((signal: Stopper) => void) | undefined;
  const onSignal = (signal: Stopper): void => {
    if (first !== undefined) {
      if (signal === first && performance.now() - firstAt < SAME_SIGNAL_MS) return;
      process.exit(0);
    }
    first = signal;
    firstAt = performance.now();
    onFirst?.(signal);
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  // However the process ends (a second signal, the shutdown's backstop, a fatal error), replacing
  // uploads still running leave no temp file behind; the files they were to replace stay as they were.
  process.on("exit", removeLiveTempsSync);
  // Installed before start-up so that an early SIGHUP is ignored instead of killing the process.
  const live: { serving?: Serving } = {};
  process.on("SIGHUP", () => {
    // A refusal is logged by reload(); the server goes on with its current configuration.
    if (live.serving !== undefined) reload(cmd, live.serving).catch(() => undefined);
  });
  const serving = await startServing(cmd, ctx);
  live.serving = serving;
  catchFatal(serving.logger);
  // A drain asked for again while one runs (a script, an operator checking) is the same drain: only
  // a second signal is the operator's way to exit at once, cutting the transfers still running.
  const admin = await startAdmin(cmd, serving, () => first === undefined && onSignal("drain"));
  await welcome(serving, cmd, ctx);
  return new Promise((resolve) => {
    onFirst = (signal) => resolve(stop(serving, signal).finally(() => admin?.close()));
    if (first !== undefined) onFirst(first);
  });
}

/** Opens the admin socket when `admin.socket` is set; `drain` starts a shutdown like SIGTERM. */
async function startAdmin(cmd: ParsedCommand, serving: Serving, drain: () => void): Promise<AdminSocket | undefined> {
  const { config, server, logger } = serving;
  if (config.admin.socket === "") return undefined;
  const { startAdminSocket, unopenableSocket } = await import("../admin/socket.ts");
  const socketPath = resolvePath(config.admin.socket, ctx.cwd);
  const target = {
    sessions: server.sessions,
    started: performance.now(),
    version: version(),
    // Logged as a SIGHUP's is: the log, not only whoever asked, tells which config is in use.
    reload: () => reload(cmd, serving),
    drain,
    defender: () => server.defender.status(),
  };
  try {
    return await startAdminSocket(socketPath, target, logger);
  } catch (err) {
    // Its directory is not one (or cannot be made), or the socket cannot be bound there.
    if (errnoCode(err) === undefined) throw err;
    throw unopenableSocket(socketPath, err);
  }
}

type ReloadResult = ReturnType<Serving["server"]["reload"]>;

/** The reload running or last run: reloads run one after another, each reading the config when
 * its turn comes, so one that waits for a lookup never applies an older file over a newer one. */
let reloading: Promise<unknown> = Promise.resolve();

/**
 * SIGHUP and the admin socket's reload: reads the config (file + environment) and the certificates
 * again and applies them to new sessions. A bad config or certificate is logged, the server keeps
 * its current settings, and the promise rejects (for the admin socket's answer).
 */
function reload(cmd: ParsedCommand, serving: Serving): Promise<ReloadResult> {
  const run = async (): Promise<ReloadResult> => {
    const { logger } = serving;
    try {
      const result = await reloadConfig(cmd, serving);
      if (result.needRestart.length > 0) logger.warn({ needRestart: result.needRestart }, "these changed keys need a restart; old values kept");
      return result;
    } catch (err) {
      // The transfer log is opened again all the same: a reload is also how logrotate has the
      // server let go of a file it moved, and its lines would otherwise go on to that file.
      serving.server.reopenLogs();
      logger.error({ event: "reload-failed", reason: describe(err) }, "reload failed; keeping the current configuration");
      throw err;
    }
  };
  const next = reloading.then(run, run);
  reloading = next;
  return next;
}

/** Reads the config (file + environment) again and applies it; the keys of the file a variable
 * overrides are warned of again, as at start: an edit to one of them does nothing. A new
 * passive.address is looked up first, as a start does (preflight.ts): a name that does not resolve
 * would give every PASV from outside 425, and a start refuses it. Anonymous FTP turned on, or
 * given another root, is warned of as at start when it shadows users or can read their homes, and
 * so is a limits.maxSessions the limit on open files cannot hold. */
async function reloadConfig(cmd: ParsedCommand, { server, logger, users }: Serving): Promise<ReloadResult> {
  const { config, overrides } = configWithOverridesFor(cmd, ctx);
  if (config.passive.address !== server.config.passive.address) await checkPassiveAddress(config);
  const result = server.reload(config);
  warnOverrides(overrides, logger);
  const anonymous = result.applied.includes("anonymous.enabled") || result.applied.includes("anonymous.root");
  if (anonymous && server.config.anonymous.enabled) warnAnonymous(server.config, users, logger);
  if (result.applied.includes("limits.maxSessions")) warnFileLimit(server.config, logger);
  return result;
}

/** Logs an error that escaped every handler and exits 1. */
function catchFatal(logger: Serving["logger"]): void {
  const fatal = (err: unknown): void => {
    logger.fatal({ err }, "uncaught error; exiting");
    process.stderr.write(`berth: internal error: ${describe(err)}\n`);
    process.exit(1);
  };
  process.on("uncaughtException", fatal);
  process.on("unhandledRejection", fatal);
}

/** What starts a shutdown: a signal, or a drain asked for on the admin socket. */
type Stopper = NodeJS.Signals | "drain";

/** Drains the server within its grace period; resolves with the exit status. */
function stop({ server, config, logger }: Serving, signal: Stopper): Promise<number> {
  const graceMs = config.limits.shutdownGrace * 1000;
  // A drain is not logged as the SIGTERM it acts like: whoever reads the log looks for what sent it.
  if (signal === "drain") logger.info({ cause: "drain on the admin socket", graceMs }, "shutting down (a signal exits at once)");
  else logger.info({ signal, graceMs }, "shutting down (a second signal exits at once)");
  return new Promise((resolve) => {
    // Backstop: a shutdown that overruns its grace by far must not keep the process alive.
    setTimeout(() => {
      logger.warn("shutdown overran its grace period; exiting");
      resolve(0);
    }, graceMs + 5000).unref();
    server.shutdown(graceMs).then(
      () => resolve(0),
      (err: unknown) => {
        logger.error({ err }, "shutdown failed");
        resolve(1);
      },
    );
  });
}

/** One line describing an unexpected error. */
function describe(err: unknown): string {
  return err instanceof Error ? firstLine(err.message) || err.name : String(err);
}

/** The exit status and the line to print for a failure. */
function failure(err: unknown): { code: number; line: string } {
  if (err instanceof CliError) return { code: err.exitCode, line: err.message };
  if (err instanceof ConfigError) return { code: 2, line: firstLine(err.message) };
  if (err instanceof UserError) return { code: err.kind === "invalid" ? 2 : 1, line: firstLine(err.message) };
  return { code: 1, line: `unexpected error: ${describe(err)}` };
}

/** Waits for what was written to stdout to be out; the exit status, 1 when it could not be
 * written (a reader that went away, `| head`, is no failure of the command). */
async function settleOutput(code: number): Promise<number> {
  if (!outputWatched) return code;
  await new Promise<void>((resolve) => ctx.stdout.write("", () => resolve()));
  // A failed write's 'error' event comes on a later tick than its callback.
  await new Promise<void>((resolve) => setImmediate(resolve));
  if (outputError === undefined || errnoCode(outputError) === "EPIPE") return code;
  ctx.stderr.write(`berth: cannot write the output: ${systemErrorText(outputError)}\n`);
  return code === 0 ? 1 : code;
}

run(process.argv.slice(2)).then(settleOutput).then(
  (code) => process.exit(code),
  (err: unknown) => {
    const { code, line } = failure(err);
    process.stderr.write(`berth: ${line}\n`);
    process.exit(code);
  },
);
