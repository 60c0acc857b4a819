/**
 * The admin socket: a Unix socket (mode 0660) speaking newline-delimited JSON, one request and one
 * response per line. Requests: {"cmd":"status"|"sessions"|"reload"|"drain"} and {"cmd":"kick","id":"…"}.
 * Responses: {"ok":true,…} or {"ok":false,"error":"…"}. `berth ctl` is its client.
 */
import { chmodSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import path from "node:path";
import type { Logger } from "pino";
import type { DefenderStatus } from "../auth/defender.ts";
import { makeDirsSync } from "../fs/mkdirs.ts";
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
  readonly startedAt: number;
  readonly version: string;
  /** Re-reads the config; resolves with what changed or rejects with the reason. */
  reload(): { readonly applied: readonly string[]; readonly needRestart: readonly string[] };
  /** Starts a graceful shutdown (like SIGTERM). */
  drain(): void;
  /** The defender's counts and current bans, when there is one. */
  defender?: (() => DefenderStatus) | undefined;
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

/** Answers one request object. */
export function handleRequest(target: AdminTarget, req: unknown): Record<string, unknown> {
  const cmd = typeof req === "object" && req !== null ? (req as { cmd?: unknown }).cmd : undefined;
  const sessions = [...target.sessions];
  switch (cmd) {
    case "status":
      return {
        ok: true,
        version: target.version,
        pid: process.pid,
        uptime: Math.round((Date.now() - target.startedAt) / 1000),
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
      victim.transfer?.abort("shutdown");
      victim.timeout("Disconnected by the administrator");
      return { ok: true, kicked: victim.id };
    }
    case "reload":
      try {
        return { ok: true, ...target.reload() };
      } catch (err) {
        return { ok: false, error: err instanceof Error ? err.message : String(err) };
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

/** Listens on `socketPath` (a stale socket file is replaced); the socket gets mode 0660. */
export async function startAdminSocket(socketPath: string, target: AdminTarget, logger: Logger): Promise<AdminSocket> {
  makeDirsSync(path.dirname(socketPath));
  rmSync(socketPath, { force: true });
  const clients = new Set<Socket>();
  // Half-open allowed: a client may send its last request and end its side without a newline
  // (a shell pipe into a socket client does that); the request is still answered, then closed.
  const server: Server = createServer({ allowHalfOpen: true }, (conn) => {
    clients.add(conn);
    conn.on("close", () => clients.delete(conn));
    conn.on("error", () => undefined);
    conn.setEncoding("utf8"); // a character split between two reads stays whole
    let buf = "";
    const answer = (line: string): void => {
      if (line.trim() === "") return;
      let res: Record<string, unknown>;
      try {
        res = handleRequest(target, JSON.parse(line) as unknown);
      } catch {
        res = { ok: false, error: "not JSON" };
      }
      conn.write(`${JSON.stringify(res)}\n`);
    };
    conn.on("data", (chunk: string) => {
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf("\n")) !== -1) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        answer(line);
      }
      if (buf.length > MAX_REQUEST) {
        buf = "";
        conn.removeAllListeners("data");
        conn.write(`${JSON.stringify({ ok: false, error: `a request is one line of at most ${MAX_REQUEST} characters` })}\n`);
        conn.destroySoon();
      }
    });
    conn.on("end", () => {
      answer(buf);
      buf = "";
      conn.end();
    });
  });
  // The umask applies at bind; tighten it before anyone can connect, then set 0660 exactly.
  const oldMask = process.umask(0o117);
  try {
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(socketPath, () => {
        server.removeListener("error", reject);
        resolve();
      });
    });
  } finally {
    process.umask(oldMask);
  }
  chmodSync(socketPath, 0o660);
  server.on("error", (err) => logger.error({ err }, "admin socket error"));
  logger.info({ event: "admin-socket", path: socketPath }, "admin socket on %s", socketPath);
  return {
    path: socketPath,
    close: () =>
      new Promise<void>((resolve) => {
        for (const c of clients) c.destroy();
        server.close(() => resolve());
        rmSync(socketPath, { force: true });
      }),
  };
}
