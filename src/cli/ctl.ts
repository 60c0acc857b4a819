/**
 * `berth ctl …`: a client of the admin socket (src/admin/socket.ts). One JSON request per line,
 * one JSON response per line. `watch` polls the session list 4 times a second until Ctrl-C.
 */
import { statSync } from "node:fs";
import { connect, type Socket } from "node:net";
import { resolvePath } from "../config/load.ts";
import { systemErrorText } from "../config/syserr.ts";
import { CliError, type ParsedCommand } from "./args.ts";
import { configFor, type CliContext } from "./commands.ts";
import type { SessionInfo } from "../admin/socket.ts";
import type { DefenderStatus } from "../auth/defender.ts";
import { escapeUnsafe, printable } from "../log/logger.ts";

/** How long a request waits for its answer (ms); a berth server answers at once. */
const ANSWER_MS = 10_000;

/** How long a reload waits for its answer (ms): a changed passive.address is looked up first, and
 * a resolver that does not answer takes its timeout for each try and name server (30 s and more)
 * before the reload goes on and applies. */
const RELOAD_ANSWER_MS = 120_000;

/** The longest path a Unix socket can be reached at (sun_path, less its terminating NUL). */
const MAX_SUN_PATH_BYTES = 107;

/** An open connection to the admin socket. */
class AdminClient {
  #buf = "";
  #waiting: ((line: string) => void)[] = [];
  /** The server closed the connection (it stopped, or is stopping): between two requests of
   * `watch`, say; a request then fails at once instead of waiting out its time for an answer. */
  #closed = false;

  private constructor(
    private readonly socket: Socket,
    private readonly socketPath: string,
  ) {
    // A character split between two reads stays whole (a session's path is any UTF-8 name).
    socket.setEncoding("utf8");
    socket.on("data", (c: string) => {
      this.#buf += c;
      let nl;
      while ((nl = this.#buf.indexOf("\n")) !== -1) {
        const line = this.#buf.slice(0, nl);
        this.#buf = this.#buf.slice(nl + 1);
        this.#waiting.shift()?.(line);
      }
    });
    socket.on("close", () => (this.#closed = true));
    // A write to a connection the server has closed fails: the close says so, once.
    socket.on("error", () => undefined);
  }

  /** Connects; a missing socket or a refused connection is a one-line CliError. */
  static open(socketPath: string): Promise<AdminClient> {
    // connect() of a longer path fails with ENOENT, which would say that nothing is there.
    const bytes = Buffer.byteLength(socketPath);
    if (bytes > MAX_SUN_PATH_BYTES) {
      return Promise.reject(new CliError(`cannot reach the admin socket ${socketPath}: its path is ${bytes} bytes, and a Unix socket's can be at most ${MAX_SUN_PATH_BYTES}`, 1));
    }
    return new Promise((resolve, reject) => {
      const s = connect(socketPath);
      s.once("connect", () => resolve(new AdminClient(s, socketPath)));
      s.once("error", (err: NodeJS.ErrnoException) => {
        // A file or a directory at the path (the config's path given for the socket's) refuses the
        // connection as a socket nobody listens on does: said as what it is, not as a server gone.
        const other = err.code === "ECONNREFUSED" ? notSocket(socketPath) : null;
        if (other !== null) return reject(new CliError(`cannot reach the admin socket ${socketPath}: it is ${other}, not a socket (is it admin.socket of the config?)`, 1));
        // Whether berth runs is the question only when nothing is there or nothing listens; a
        // socket the user may not use (mode 0660: the server's user and group) is berth's, running.
        const hint = err.code === "EACCES" || err.code === "EPERM" ? "only the server's user and group may use it" : "is berth running with admin.socket set?";
        reject(new CliError(`cannot reach the admin socket ${socketPath}: ${systemErrorText(err)} (${hint})`, 1));
      });
    });
  }

  /** Sends one request; resolves with the parsed response. Something else than berth's admin
   * socket at the path (an answer that is not a JSON object with the fields berth's answer to
   * `req.cmd` has, or none) is a one-line CliError. */
  request(req: Record<string, unknown>): Promise<Record<string, unknown>> {
    const closed = `${this.socketPath} closed the connection (has the server stopped?)`;
    if (this.#closed) return Promise.reject(new CliError(closed, 1));
    return new Promise((resolve, reject) => {
      const fail = (why: string): void => {
        clearTimeout(timer);
        this.socket.removeListener("close", onClose);
        reject(new CliError(why, 1));
      };
      const onClose = (): void => fail(closed);
      const wait = req.cmd === "reload" ? RELOAD_ANSWER_MS : ANSWER_MS;
      const timer = setTimeout(() => fail(`no answer from ${this.socketPath} within ${wait / 1000} s (is it berth's admin socket?)`), wait);
      this.socket.once("close", onClose);
      this.#waiting.push((line) => {
        let res: unknown;
        try {
          res = JSON.parse(line);
        } catch {
          res = undefined;
        }
        if (typeof res !== "object" || res === null || Array.isArray(res) || !answersAsBerth(String(req.cmd), res as Record<string, unknown>)) {
          const got = line.length > 40 ? `${line.slice(0, 40)}...` : line;
          return fail(`${this.socketPath} does not answer as berth's admin socket does (got ${JSON.stringify(got)})`);
        }
        clearTimeout(timer);
        this.socket.removeListener("close", onClose);
        resolve(res as Record<string, unknown>);
      });
      this.socket.write(`${JSON.stringify(req)}\n`);
    });
  }

  close(): void {
    this.socket.end();
  }
}

/** What is at `socketPath` when it is not a socket ("a regular file", "a directory"); null for a
 * socket, or when it cannot be looked at. */
function notSocket(socketPath: string): string | null {
  try {
    const st = statSync(socketPath);
    if (st.isSocket()) return null;
    return st.isFile() ? "a regular file" : st.isDirectory() ? "a directory" : "a special file";
  } catch {
    return null;
  }
}

/** Whether `res` has the fields berth's admin socket answers `cmd` with (src/admin/socket.ts), so
 * that what is printed from it is berth's answer and not `undefined` or a TypeError. */
function answersAsBerth(cmd: string, res: Record<string, unknown>): boolean {
  if (res.ok === false) return typeof res.error === "string";
  if (res.ok !== true) return false;
  const strings = (v: unknown): boolean => Array.isArray(v) && v.every((x) => typeof x === "string");
  switch (cmd) {
    case "status":
      return ["pid", "uptime", "sessions", "transfers"].every((k) => typeof res[k] === "number");
    case "sessions":
      return Array.isArray(res.sessions) && typeof res.now === "number";
    case "kick":
      return typeof res.kicked === "string";
    case "reload":
      return strings(res.applied) && strings(res.needRestart);
    default:
      return true;
  }
}

/** The socket path: --socket, else admin.socket of the config. */
function socketPath(cmd: ParsedCommand, ctx: CliContext): string {
  const given = cmd.options.socket;
  if (typeof given === "string") return resolvePath(given, ctx.cwd);
  const configured = configFor(cmd, ctx).admin.socket;
  if (configured === "") throw new CliError("admin.socket is not set in the config (or pass --socket PATH)", 2);
  return resolvePath(configured, ctx.cwd);
}

/** Runs `berth ctl <sub>`; resolves with the exit status. */
export async function runCtl(cmd: ParsedCommand, ctx: CliContext): Promise<number> {
  const client = await AdminClient.open(socketPath(cmd, ctx));
  try {
    const sub = cmd.name.slice("ctl ".length);
    if (sub === "watch") return await watch(client, ctx);
    const req: Record<string, unknown> = { cmd: sub };
    if (sub === "kick") req.id = cmd.args.ID;
    const res = await client.request(req);
    if (res.ok !== true) throw new CliError(`ctl ${sub}: ${String(res.error)}`, 1);
    ctx.stdout.write(render(sub, res, cmd.options.json === true));
    return 0;
  } finally {
    client.close();
  }
}

/** Human-readable output of one response. */
function render(sub: string, res: Record<string, unknown>, json: boolean): string {
  switch (sub) {
    case "status":
      return `berth ${String(res.version)} pid ${String(res.pid)}, up ${String(res.uptime)} s, ${String(res.sessions)} sessions, ${String(res.transfers)} transfers\n${defenderLines(res.defender as DefenderStatus | undefined)}`;
    case "sessions": {
      const list = res.sessions as SessionInfo[];
      // A path is any name a client made: escaped as the server's own log lines are.
      if (json) return `${escapeUnsafe(JSON.stringify(list))}\n`;
      return `${sessionTable(list, Number(res.now))}\n`;
    }
    case "kick":
      return `disconnected session ${String(res.kicked)}\n`;
    case "reload": {
      const applied = (res.applied as string[]).join(", ") || "nothing";
      const restart = res.needRestart as string[];
      return `reloaded; applied: ${applied}${restart.length > 0 ? `; need a restart: ${restart.join(", ")}` : ""}\n`;
    }
    default:
      return "draining: no new sessions; running transfers finish, then berth exits\n";
  }
}

/** The defender part of `ctl status`: counts, then one line per current ban. */
function defenderLines(d: DefenderStatus | undefined): string {
  if (d === undefined) return "";
  if (!d.enabled) return "defender: off\n";
  const head = `defender: ${d.banned} banned, ${d.tracked} tracked, ${d.bansTotal} bans since start\n`;
  return head + d.bans.map((b) => `  banned ${b.address} for ${b.remaining} s (ban ${b.bans}): ${b.reason}\n`).join("");
}

/** A byte count in B, kB, MB, GB. */
export function human(n: number): string {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let v = n;
  let i = 0;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${i === 0 ? String(v) : v.toFixed(1)} ${units[i] ?? "B"}`;
}

/** A text progress bar `[#####-----]` of `width` cells; unknown totals show a moving marker. */
export function progressBar(done: number, total: number | null, width = 20, tick = 0): string {
  if (total === null || total <= 0) {
    const pos = tick % width;
    return `[${"-".repeat(pos)}>${"-".repeat(width - pos - 1)}]`;
  }
  const filled = Math.min(width, Math.round((done / total) * width));
  return `[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${String(Math.min(100, Math.floor((done / total) * 100))).padStart(3)}%`;
}

/** The session table, with a progress line under each running transfer. */
export function sessionTable(list: readonly SessionInfo[], now: number, tick = 0): string {
  if (list.length === 0) return "no sessions";
  const lines = [`${"ID".padEnd(8)}  ${"USER".padEnd(12)}  ${"REMOTE".padEnd(22)}  TLS  TRANSFER`];
  for (const s of list) {
    const t = s.transfer;
    lines.push(
      `${s.id.padEnd(8)}  ${(s.user ?? "-").padEnd(12)}  ${s.remote.padEnd(22)}  ${s.secure ? "yes" : "no "}  ${t ? `${t.direction} ${printable(t.path)}` : "-"}`,
    );
    if (t) {
      const secs = Math.max(0.001, (now - t.startedAt) / 1000);
      const rate = `${human(Math.round(t.bytes / secs))}/s`;
      const size = t.expected !== null ? `${human(t.bytes)} / ${human(t.expected)}` : human(t.bytes);
      lines.push(`          ${progressBar(t.bytes, t.expected, 30, tick)}  ${size}  ${rate}`);
    }
  }
  return lines.join("\n");
}

/** Redraws the session table ~4 times a second until SIGINT or the reader of its output goes
 * away (status 0), or the server goes away. */
async function watch(client: AdminClient, ctx: CliContext): Promise<number> {
  let stopped = false;
  let stop = (): void => undefined;
  const stopping = new Promise<null>((resolve) => (stop = () => resolve(null)));
  const onInt = (): void => {
    stopped = true;
    stop();
  };
  process.on("SIGINT", onInt);
  // A write that fails (`berth ctl watch | head -1`: the reader is gone) ends the watch as Ctrl-C
  // does; the loop would otherwise poll the server for good with nobody reading. main.ts judges
  // the error itself.
  ctx.stdout.on("error", onInt);
  const tty = "isTTY" in ctx.stdout && ctx.stdout.isTTY === true;
  try {
    for (let tick = 0; !stopped; tick++) {
      // Ctrl-C ends the watch at once, also while a request waits for a server that does not
      // answer (stopped, or too busy): not once the wait for the answer has run out.
      const asked = client.request({ cmd: "sessions" });
      asked.catch(() => undefined);
      const res = await Promise.race([asked, stopping]);
      if (res === null) break;
      if (res.ok !== true) throw new CliError(`ctl watch: ${String(res.error)}`, 1);
      const table = sessionTable(res.sessions as SessionInfo[], Number(res.now), tick);
      const stamp = new Date().toISOString().slice(11, 19);
      ctx.stdout.write(`${tty ? "\x1b[H\x1b[2J" : ""}berth sessions at ${stamp} (Ctrl-C to quit)\n${table}\n`);
      await Promise.race([new Promise((r) => setTimeout(r, 250)), stopping]);
    }
    return 0;
  } finally {
    process.removeListener("SIGINT", onInt);
    ctx.stdout.removeListener("error", onInt);
  }
}
