/**
 * The admin socket: a Unix socket (mode 0660) speaking newline-delimited JSON, one request and one
 * response per line. Requests: {"cmd":"status"|"sessions"|"reload"|"drain"} and {"cmd":"kick","id":"…"}.
 * Responses: {"ok":true,…} or {"ok":false,"error":"…"}. `berth ctl` is its client.
 */
import { chmodSync, linkSync, lstatSync, renameSync, rmSync, type Stats } from "node:fs";
import { connect, createServer, type Server, type Socket } from "node:net";
import path from "node:path";
import type { Logger } from "pino";
import type { DefenderStatus } from "../auth/defender.ts";
import { ConfigError, MAX_SOCKET_PATH_BYTES } from "../config/load.ts";
import { errnoCode, systemErrorText } from "../config/syserr.ts";
import { makeDirsSync } from "../fs/mkdirs.ts";
import { escapeUnsafe } from "../log/logger.ts";
import type { Session } from "../protocol/session.ts";

/** One session as the admin socket shows it. */
export interface SessionInfo {
  readonly id: string;
  readonly user: string | null;
  readonly remote: string;
  readonly secure: boolean;
  readonly transfer: {
    readonly direction: "download" | "upload" | "list";
    readonly path: string;
    readonly bytes: number;
    readonly expected: number | null;
    readonly startedAt: number;
  } | null;
}

/** What the socket needs from the running server. */
export interface AdminTarget {
  readonly sessions: ReadonlySet<Session>;
  /** When the server started, on the monotonic clock (performance.now()): the wall clock set back
   * while it runs would make its uptime negative. */
  readonly started: number;
  readonly version: string;
  /** Re-reads the config; resolves with what changed or rejects with the reason. */
  reload(): ReloadResult | Promise<ReloadResult>;
  /** Starts a graceful shutdown (like SIGTERM). */
  drain(): void;
  /** The defender's counts and current bans, when there is one. */
  defender?: (() => DefenderStatus) | undefined;
}

/** What a reload changed. */
interface ReloadResult {
  readonly applied: readonly string[];
  readonly needRestart: readonly string[];
}

/** A running admin socket. */
export interface AdminSocket {
  readonly path: string;
  close(): Promise<void>;
}

/** A snapshot of one session. */
export function describeSession(s: Session): SessionInfo {
  const t = s.transfer;
  return {
    id: s.id,
    user: s.user?.name ?? null,
    remote: s.remoteAddress,
    secure: s.secure,
    transfer: t
      ? { direction: t.direction, path: t.path, bytes: t.bytes, expected: t.expected, startedAt: t.startedAt }
      : null,
  };
}

/** The commands a request may name, for the refusals. */
const ADMIN_COMMANDS = "status, sessions, kick, reload, drain";

/** Answers one request object; a reload that has to wait (a lookup) answers with a promise. */
export function handleRequest(target: AdminTarget, req: unknown): Record<string, unknown> | Promise<Record<string, unknown>> {
  const cmd = typeof req === "object" && req !== null ? (req as { cmd?: unknown }).cmd : undefined;
  const sessions = [...target.sessions];
  switch (cmd) {
    case "status":
      return {
        ok: true,
        version: target.version,
        pid: process.pid,
        uptime: Math.round((performance.now() - target.started) / 1000),
        sessions: sessions.length,
        transfers: sessions.filter((s) => s.transfer).length,
        ...(target.defender ? { defender: target.defender() } : {}),
      };
    case "sessions":
      return { ok: true, now: Date.now(), sessions: sessions.map(describeSession) };
    case "kick": {
      const id = (req as { id?: unknown }).id;
      if (typeof id !== "string" || id === "") return { ok: false, error: 'kick needs "id": a session id (see "sessions")' };
      const victim = sessions.find((s) => s.id === id);
      if (!victim) return { ok: false, error: `no session ${id}` };
      victim.cutAndClose("kicked", "Disconnected by the administrator");
      return { ok: true, kicked: victim.id };
    }
    case "reload": {
      const failed = (err: unknown): Record<string, unknown> => ({ ok: false, error: err instanceof Error ? err.message : String(err) });
      try {
        const result = target.reload();
        return result instanceof Promise ? result.then((r) => ({ ok: true, ...r }), failed) : { ok: true, ...result };
      } catch (err) {
        return failed(err);
      }
    }
    case "drain":
      target.drain();
      return { ok: true };
    default:
      if (typeof cmd !== "string") return { ok: false, error: `a request is an object with "cmd": one of ${ADMIN_COMMANDS}` };
      return { ok: false, error: `unknown command ${JSON.stringify(cmd)} (one of ${ADMIN_COMMANDS})` };
  }
}

/** The longest request line taken; a longer one is refused and the connection closed. */
const MAX_REQUEST = 65536;

/** How long a connection to an existing socket file may take before whoever is there counts as
 * answering. */
const PROBE_MS = 2000;

/** Whether something accepts connections on the Unix socket `socketPath`: false when nobody
 * listens there (ECONNREFUSED) or the file is gone (ENOENT); other errors are thrown. */
function answers(socketPath: string): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const probe = connect(socketPath);
    const done = (live: boolean): void => {
      probe.destroy();
      resolve(live);
    };
    probe.setTimeout(PROBE_MS, () => done(true));
    probe.once("connect", () => done(true));
    probe.once("error", (err) => {
      probe.destroy();
      const code = errnoCode(err);
      if (code === "ECONNREFUSED" || code === "ENOENT") resolve(false);
      else reject(err);
    });
  });
}

/** A ConfigError naming admin.socket. */
function socketError(socketPath: string, why: string): ConfigError {
  return new ConfigError("admin.socket", `admin.socket ${socketPath} ${why}; not starting`);
}

/**
 * The checks of `socketPath` that need no running server: a path longer than a socket's can be,
 * or one where something other than a socket is (or that cannot be looked at), is a ConfigError
 * naming admin.socket. Returns whether a socket file is there. Touches nothing, so that
 * `config check` makes these checks too, also while a server holds the socket.
 */
export function checkAdminSocketPath(socketPath: string): boolean {
  // A relative admin.socket is checked as written; the working directory can make it too long.
  const bytes = Buffer.byteLength(socketPath);
  if (bytes > MAX_SOCKET_PATH_BYTES) {
    throw socketError(socketPath, `is ${bytes} bytes long, more than a Unix socket path can be (${MAX_SOCKET_PATH_BYTES}): give a shorter path`);
  }
  let st: Stats;
  try {
    st = lstatSync(socketPath);
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return false;
    throw socketError(socketPath, `cannot be checked: ${systemErrorText(err)}`);
  }
  if (!st.isSocket()) throw socketError(socketPath, "exists and is not a socket");
  return true;
}

/**
 * Makes sure `socketPath` can be taken: nothing is there, or a stale socket file whose server is
 * gone (nobody answers), which is removed. A socket something answers on (another server with the
 * same admin.socket) or a path that is not a socket is a ConfigError naming admin.socket, and is
 * left as it is.
 */
export async function claimAdminSocketPath(socketPath: string): Promise<void> {
  if (!checkAdminSocketPath(socketPath)) return;
  let live: boolean;
  try {
    live = await answers(socketPath);
  } catch (err) {
    throw socketError(socketPath, `cannot be checked: ${systemErrorText(err)}`);
  }
  if (live) throw socketError(socketPath, "answers: another server listens there (the same admin.socket twice?)");
  rmSync(socketPath, { force: true });
}

/** The ConfigError for an admin socket that cannot be made at `socketPath` (its directory cannot
 * be made, or a socket cannot be bound there). */
export function unopenableSocket(socketPath: string, err: unknown): ConfigError {
  return new ConfigError("admin.socket", `admin.socket cannot be opened: ${socketPath} (${systemErrorText(err)})`);
}

/**
 * Makes the directory of `socketPath` and binds a socket beside it (the name the server binds
 * first, see startAdminSocket) and closes it again, so that a path where no socket can be made
 * (a directory that is read-only, or that cannot be made) is refused before the server listens
 * on anything. Throws the ConfigError serve stops with.
 */
export async function checkAdminSocketBinds(socketPath: string): Promise<void> {
  const bound = boundName(socketPath);
  try {
    makeDirsSync(path.dirname(socketPath));
    rmSync(bound, { force: true });
    const probe = createServer();
    await new Promise<void>((resolve, reject) => {
      probe.once("error", reject);
      probe.listen(bound, () => {
        probe.removeListener("error", reject);
        resolve();
      });
    });
    // Closing a Unix socket's listener removes its file.
    await new Promise<void>((resolve) => probe.close(() => resolve()));
  } catch (err) {
    if (errnoCode(err) === undefined) throw err;
    throw unopenableSocket(socketPath, err);
  }
}

/** The name the listener is bound at before it is put in place (see moveInPlace); the suffix keeps
 * it within sun_path. */
function boundName(socketPath: string): string {
  return `${socketPath}.${process.pid.toString(36)}`;
}

/** Device and inode of the file at `p`, or undefined when there is none. */
function identity(p: string): string | undefined {
  try {
    const st = lstatSync(p);
    return `${st.dev}:${st.ino}`;
  } catch {
    return undefined;
  }
}

/**
 * Puts the listening socket bound at `bound` in place at `socketPath`. A hard link claims the name
 * only if it is still free (a server that came up since the check keeps it); where the file
 * system has no hard links, a rename takes it. The listener keeps `bound` as its name, and Node
 * removes the file by that name when it closes, so it never removes `socketPath` itself.
 */
function moveInPlace(bound: string, socketPath: string): void {
  try {
    linkSync(bound, socketPath);
  } catch (err) {
    if (errnoCode(err) === "EEXIST") {
      rmSync(bound, { force: true });
      throw socketError(socketPath, "was taken by another server while this one started");
    }
    renameSync(bound, socketPath);
    return;
  }
  rmSync(bound, { force: true });
}

/** Listens on `socketPath` (a stale socket file is replaced; a live one, or another kind of file,
 * is a ConfigError); the socket gets mode 0660. At close the file is removed while it is still
 * this listener's. */
export async function startAdminSocket(socketPath: string, target: AdminTarget, logger: Logger): Promise<AdminSocket> {
  makeDirsSync(path.dirname(socketPath));
  await claimAdminSocketPath(socketPath);
  // Bound under a name of its own first (see moveInPlace).
  const bound = boundName(socketPath);
  rmSync(bound, { force: true });
  const clients = new Set<Socket>();
  // Half-open allowed: a client may send its last request and end its side without a newline
  // (a shell pipe into a socket client does that); the request is still answered, then closed.
  const server: Server = createServer({ allowHalfOpen: true }, (conn) => {
    clients.add(conn);
    conn.on("close", () => clients.delete(conn));
    conn.on("error", () => undefined);
    conn.setEncoding("utf8"); // a character split between two reads stays whole
    let buf = "";
    let ended = false;
    let busy = false;
    /** Answers one request line, and waits until the client has read the reply if it could not all
     * go to the kernel. */
    const answer = async (line: string): Promise<void> => {
      if (line.trim() === "") return;
      let res: Record<string, unknown>;
      try {
        res = await handleRequest(target, JSON.parse(line) as unknown);
      } catch {
        res = { ok: false, error: "not JSON" };
      }
      // A transfer's path is any name a client made: escaped as the log and `berth ctl` escape it,
      // so that whoever reads the socket itself (socat) gets nothing a terminal acts on.
      if (conn.write(`${escapeUnsafe(JSON.stringify(res))}\n`)) return;
      // Whichever comes first takes the other listener away too: a connection that lives on
      // (`berth ctl watch` asks four times a second) would otherwise keep one more 'close'
      // listener for every reply that had to wait, without end.
      await new Promise<void>((resolve) => {
        const done = (): void => {
          conn.removeListener("drain", done);
          conn.removeListener("close", done);
          resolve();
        };
        conn.on("drain", done);
        conn.on("close", done);
      });
    };
    // One request at a time, in order, with reading paused meanwhile: a client that sends requests
    // and never reads (a `sessions` reply of a busy server is megabytes) has its reading stopped
    // once a reply waits, instead of all the replies piling up in the server's memory; a reload
    // that waits for a lookup holds the requests behind it. The client's end is seen only once
    // reading goes on, so nothing is left in `buf` unanswered.
    const pump = async (): Promise<void> => {
      if (busy) return;
      busy = true;
      conn.pause();
      let nl;
      while ((nl = buf.indexOf("\n")) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        await answer(line);
      }
      busy = false;
      if (buf.length > MAX_REQUEST) {
        buf = "";
        conn.removeAllListeners("data");
        conn.removeAllListeners("end");
        conn.write(`${JSON.stringify({ ok: false, error: `a request is one line of at most ${MAX_REQUEST} characters` })}\n`);
        conn.destroySoon();
      } else if (ended) {
        await answer(buf);
        buf = "";
        conn.end();
      } else conn.resume();
    };
    conn.on("data", (chunk: string) => {
      buf += chunk;
      void pump();
    });
    conn.on("end", () => {
      ended = true;
      void pump();
    });
  });
  // The umask applies at bind; tighten it before anyone can connect, then set 0660 exactly.
  const oldMask = process.umask(0o117);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(bound, () => {
        server.removeListener("error", reject);
        resolve();
      });
    });
  } finally {
    process.umask(oldMask);
  }
  chmodSync(bound, 0o660);
  try {
    moveInPlace(bound, socketPath);
  } catch (err) {
    server.close();
    throw err;
  }
  const ours = identity(socketPath);
  server.on("error", (err) => logger.error({ err }, "admin socket error"));
  logger.info({ event: "admin-socket", path: socketPath }, "admin socket on %s", socketPath);
  return {
    path: socketPath,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of clients) c.destroy();
        server.close(() => resolve());
        // Another process may have put its own socket there since (and would lose it).
        if (ours !== undefined && identity(socketPath) === ours) rmSync(socketPath, { force: true });
      }),
  };
}
