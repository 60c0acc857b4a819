/**
 * The composition root: listeners (plain and implicit FTPS), the session registry, and drain on
 * shutdown. Builds the shared context once and hands each connection to a Session.
 */
import { randomBytes } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import type { Logger } from "pino";
import type { Authenticator, LoginGuard } from "./auth/types.ts";
import { parsePortRange, type Config } from "./config/schema.ts";
import { AnnounceResolver, readNetFacts } from "./data/announce.ts";
import { unmapIPv4 } from "./data/address.ts";
import { PortPool } from "./data/ports.ts";
import { TlsProvider } from "./data/tls.ts";
import { JailedFs } from "./fs/jail.ts";
import { buildRegistry } from "./protocol/commands/index.ts";
import type { FsFactory, ServerContext } from "./protocol/context.ts";
import { Dispatcher } from "./protocol/dispatcher.ts";
import { formatReply } from "./protocol/reply.ts";
import { Session } from "./protocol/session.ts";

/** What startServer needs; `openFs` and `tls` may be swapped by tests. */
export interface ServerDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly users: Authenticator;
  readonly guard: LoginGuard;
  readonly openFs?: FsFactory;
  readonly tls?: TlsProvider | null;
}

/** A running berth. */
export interface BerthServer {
  /** The plain (or explicit-TLS) control port, or null when only implicit FTPS listens. */
  readonly port: number | null;
  /** The implicit FTPS port, or null. */
  readonly implicitPort: number | null;
  /** Live sessions. */
  readonly sessions: ReadonlySet<Session>;
  /** The shared context (pool, TLS provider…), for diagnostics and tests. */
  readonly context: ServerContext;
  /** Stops accepting, 421 to idle sessions, lets transfers finish within `graceMs`, then closes all. */
  shutdown(graceMs: number): Promise<void>;
}

/** Starts listening per the config; rejects with the listen error (EADDRINUSE, EACCES). */
export async function startServer(deps: ServerDeps): Promise<BerthServer> {
  const { config, logger } = deps;
  const range = parsePortRange(config.passive.ports);
  if (!range) throw new Error(`config: passive.ports is not a valid range`);
  const tls = deps.tls !== undefined ? deps.tls : config.tls.mode === "off" ? null : TlsProvider.create(config, logger);
  const context: ServerContext = {
    config,
    logger,
    users: deps.users,
    guard: deps.guard,
    pool: new PortPool(range),
    announce: new AnnounceResolver(config.passive.address, readNetFacts()),
    openFs: deps.openFs ?? ((home) => JailedFs.open(home)),
    tls,
  };
  const dispatcher = new Dispatcher(buildRegistry());
  const sessions = new Set<Session>();
  const perAddress = new Map<string, number>();
  let accepting = true;

  const admit = (socket: Socket, implicit: boolean): void => {
    socket.on("error", () => undefined);
    const remote = unmapIPv4(socket.remoteAddress ?? "");
    const refusal = !accepting
      ? "Server shutting down"
      : deps.guard.isBanned(remote)
        ? "Too many failed logins from your address; try again later"
        : sessions.size >= config.limits.maxSessions
          ? "Too many connections; try again later"
          : (perAddress.get(remote) ?? 0) >= config.limits.maxSessionsPerAddress
            ? "Too many connections from your address"
            : null;
    if (refusal) {
      if (!implicit) socket.end(formatReply(421, refusal));
      else socket.destroy();
      return;
    }
    let control: Socket = socket;
    const binding = implicit && tls ? tls.binding() : null;
    if (binding && tls) control = tls.wrapControl(socket, binding);
    const session = new Session(control, context, dispatcher, randomBytes(4).toString("hex"));
    session.tlsBinding = binding;
    sessions.add(session);
    perAddress.set(remote, (perAddress.get(remote) ?? 0) + 1);
    session.onClosed = () => {
      sessions.delete(session);
      const n = (perAddress.get(remote) ?? 1) - 1;
      if (n <= 0) perAddress.delete(remote);
      else perAddress.set(remote, n);
      session.log.debug({ event: "disconnect" }, "session closed");
    };
    session.log.debug({ event: "connect", implicit }, "session opened");
    session.start();
  };

  const servers: Server[] = [];
  let port: number | null = null;
  let implicitPort: number | null = null;
  const mode = config.tls.mode;
  if (mode !== "implicit") {
    const srv = await listen(config.listen.host, config.listen.port, (s) => admit(s, false));
    servers.push(srv);
    port = addressPort(srv);
  }
  if ((mode === "implicit" || mode === "both") && tls) {
    const srv = await listen(config.listen.host, config.tls.implicitPort, (s) => admit(s, true));
    servers.push(srv);
    implicitPort = addressPort(srv);
  }
  logger.info(
    { event: "listening", host: config.listen.host, port, implicitPort, passive: config.passive.ports, tls: mode },
    "berth listening on %s port %s%s",
    config.listen.host,
    String(port ?? "-"),
    implicitPort !== null ? ` (implicit FTPS on ${implicitPort})` : "",
  );

  const shutdown = async (graceMs: number): Promise<void> => {
    accepting = false;
    for (const srv of servers) srv.close();
    for (const s of sessions) {
      if (s.transfer) s.draining = true;
      else s.timeout("Server shutting down");
    }
    const deadline = Date.now() + graceMs;
    while (sessions.size > 0 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      for (const s of sessions) if (!s.transfer && !s.closed) s.timeout("Server shutting down");
    }
    for (const s of sessions) {
      s.transfer?.abort("shutdown");
      s.socket.destroy();
    }
    logger.info({ event: "stopped" }, "berth stopped");
  };

  return { port, implicitPort, sessions, context, shutdown };
}

function addressPort(srv: Server): number {
  const a = srv.address();
  return typeof a === "object" && a !== null ? a.port : 0;
}

function listen(host: string, port: number, onConn: (s: Socket) => void): Promise<Server> {
  return new Promise((resolve, reject) => {
    const srv = createServer({ noDelay: true, keepAlive: true }, onConn);
    srv.once("error", reject);
    srv.listen({ host, port, ipv6Only: false, backlog: 511 }, () => {
      srv.removeListener("error", reject);
      srv.on("error", () => undefined);
      resolve(srv);
    });
  });
}
