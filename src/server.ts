/**
 * The composition root: listeners (plain and implicit FTPS), the session registry, and drain on
 * shutdown. Builds the shared context once and hands each connection to a Session.
 */
import { Metrics, serveMetrics, type Gauges } from "./log/metrics.ts";
import { receiveBinding, sendfileBinding, watchBinding } from "./native.ts";
import { RefusalLog } from "./log/refusals.ts";
import { XferLog } from "./log/xferlog.ts";
import { stopDigestWorker } from "./fs/digest.ts";
import { randomFillSync } from "node:crypto";
import { createServer, type Server, type Socket } from "node:net";
import type { Logger } from "pino";
import { LoginCache, type CredentialSource } from "./auth/cache.ts";
import { Defender, normalizeAddress, type BanInfo } from "./auth/defender.ts";
import type { Authenticator } from "./auth/types.ts";
import { parsePortRange, type Config } from "./config/schema.ts";
import { AnnounceResolver, readNetFacts } from "./data/announce.ts";
import { Bandwidth } from "./data/bandwidth.ts";
import { inContainer, passiveWarnings } from "./data/diagnose.ts";
import { acceptCheaply, inlineUrgentData } from "./data/accept.ts";
import { unmapIPv4 } from "./data/address.ts";
import { endUnused } from "./data/linger.ts";
import { beneathAvailable } from "./fs/beneath.ts";
import { pinning } from "./fs/pin.ts";
import { PortPool } from "./data/ports.ts";
import { TlsProvider } from "./data/tls.ts";
import { JailedFs } from "./fs/jail.ts";
import { Quotas } from "./fs/quota.ts";
import { stopStatWorker } from "./fs/statworker.ts";
import { buildRegistry } from "./protocol/commands/index.ts";
import type { FsFactory, ServerContext } from "./protocol/context.ts";
import { Admission } from "./protocol/admission.ts";
import { Dispatcher } from "./protocol/dispatcher.ts";
import { formatReply } from "./protocol/reply.ts";
import { CUT_WAIT_MS, Session } from "./protocol/session.ts";

/** What startServer needs; `openFs` and `tls` may be swapped by tests. */
export interface ServerDeps {
  readonly config: Config;
  readonly logger: Logger;
  readonly users: Authenticator;
  /** Default: a Defender built from `config.defender`. */
  readonly defender?: Defender;
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
  /**
   * Applies a new, already validated config to sessions opened from now on (running sessions keep
   * theirs, except for `bandwidth` and `quota`, which running transfers and uploads follow).
   * Certificates are loaded first; on any error nothing changes and the error is thrown.
   * Keys in RESTART_KEYS are not applied, nor `tls.require: true` while `tls.mode` stays "off"; the
   * result lists them with the keys that did change.
   */
  reload(next: Config): ReloadResult;
  /** Opens log.xferlog again (after a rotation); reload() does, and so must a reload refused. */
  reopenLogs(): void;
  /** The config new sessions get. */
  readonly config: Config;
  /** Scores and bans client addresses; kept across reloads. */
  readonly defender: Defender;
}

/** What a reload changed. */
export interface ReloadResult {
  /** Dotted keys whose new value is in effect for new sessions. */
  readonly applied: readonly string[];
  /** Dotted keys that changed but need a restart; their old value stays in effect. */
  readonly needRestart: readonly string[];
}

/** Keys a running server cannot change: its listeners, the passive port pool, the TLS listener set,
 * and storage.root, against which the user store (made once at start) resolves relative homes. */
export const RESTART_KEYS: ReadonlySet<string> = new Set([
  "metrics.listen",
  "log.xferlog",
  "log.pretty",
  "listen.host",
  "listen.port",
  "passive.ports",
  "tls.mode",
  "tls.implicitPort",
  "users.file",
  "storage.root",
  "limits.shutdownGrace",
  "admin.socket",
]);

/** `err`, of a listener other than the control port's that could not start, marked with its
 * config key (`listenKey`): the one line the command line makes of it says which listener it was,
 * as its address alone ("127.0.0.1:9121: address in use") may look like the FTP port's. */
function ofListener(err: unknown, key: string): unknown {
  if (typeof err === "object" && err !== null) Object.assign(err, { listenKey: key });
  return err;
}

/** The passive set-up's self-diagnosis (data/diagnose.ts): one warning per thing that looks wrong
 * with what PASV announces under `config`. At start, and at a reload that changes passive.address. */
async function warnPassive(config: Config, announce: AnnounceResolver, logger: Logger): Promise<void> {
  for (const warning of passiveWarnings({
    listenHost: config.listen.host,
    passiveAddress: config.passive.address,
    passivePorts: config.passive.ports,
    inContainer: inContainer(),
    resolvedAddress: await announce.resolvedName(),
  })) {
    logger.warn({ event: "passive-check" }, warning);
  }
}

/** Dotted keys whose values differ between two configs. */
export function changedKeys(a: Config, b: Config): string[] {
  const out: string[] = [];
  const ta = a as unknown as Record<string, Record<string, unknown>>;
  const tb = b as unknown as Record<string, Record<string, unknown>>;
  for (const section of Object.keys(ta)) {
    for (const key of Object.keys(ta[section] ?? {})) {
      if (ta[section]?.[key] !== tb[section]?.[key]) out.push(`${section}.${key}`);
    }
  }
  return out;
}

/**
 * Keys a reload to `next` must leave as they are besides RESTART_KEYS, because their new value
 * needs a restart-only key's new value: `tls.require: true` with `tls.mode` still "off" until a
 * restart would refuse every login and offer no AUTH TLS (the combination a start refuses).
 */
function heldUntilRestart(current: Config, next: Config): ReadonlySet<string> {
  return next.tls.require && current.tls.mode === "off" ? new Set(["tls.require"]) : new Set();
}

/** `next` with every restart-only key, and every key of `held`, taken from `current`. */
function keepRestartKeys(current: Config, next: Config, held: ReadonlySet<string>): Config {
  const merged = structuredClone(next) as unknown as Record<string, Record<string, unknown>>;
  const cur = current as unknown as Record<string, Record<string, unknown>>;
  for (const dotted of [...RESTART_KEYS, ...held]) {
    const [section = "", key = ""] = dotted.split(".");
    const target = merged[section];
    if (target !== undefined) target[key] = cur[section]?.[key];
  }
  return deepFreeze(merged as unknown as Config);
}

function deepFreeze<T>(value: T): T {
  if (typeof value === "object" && value !== null) {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}

/** Verified logins remembered at most; the least recently used go first. */
const LOGIN_CACHE_ENTRIES = 10_000;

function isCredentialSource(users: Authenticator): users is CredentialSource {
  return typeof (users as Partial<CredentialSource>).credentialStamp === "function";
}

/** Random bytes for session ids, drawn 4 KiB at a time: one call into the system's generator per
 * 1,024 sessions instead of one per session. */
const idPool = Buffer.alloc(4096);
let idNext = idPool.length;

/**
 * A session's id in logs and for `kick`: 8 random hex digits, none that a session still open has.
 * At 10,000 open sessions two of 32 random bits would be the same about once in a hundred starts,
 * and `kick` would cut whichever it found first.
 */
export function uniqueSessionId(open: ReadonlySet<string>, draw: () => string = sessionId): string {
  let id = draw();
  while (open.has(id)) id = draw();
  return id;
}

/** 8 random hex digits. */
function sessionId(): string {
  if (idNext + 4 > idPool.length) {
    randomFillSync(idPool);
    idNext = 0;
  }
  idNext += 4;
  return idPool.toString("hex", idNext - 4, idNext);
}

/** Starts listening per the config; rejects with the listen error (EADDRINUSE, EACCES). */
export async function startServer(deps: ServerDeps): Promise<BerthServer> {
  const { config, logger } = deps;
  const range = parsePortRange(config.passive.ports);
  if (!range) throw new Error(`config: passive.ports is not a valid range`);
  const tls = deps.tls !== undefined ? deps.tls : config.tls.mode === "off" ? null : TlsProvider.create(config, logger);
  const defender = deps.defender ?? new Defender(config.defender);
  const admission = new Admission();
  // Verified logins are remembered for users.loginCacheSeconds, so short sessions skip bcrypt.
  const cache = isCredentialSource(deps.users)
    ? new LoginCache(deps.users, { ttlMs: config.users.loginCacheSeconds * 1000, maxEntries: LOGIN_CACHE_ENTRIES })
    : null;
  const netFacts = readNetFacts();
  if (netFacts.interfacesError !== undefined && config.passive.address !== "") {
    logger.warn(
      { event: "passive-check", reason: netFacts.interfacesError },
      "the network interfaces cannot be read: PASV announces passive.address to every client but loopback, those of the server's own subnet too (a systemd unit needs AF_NETLINK in RestrictAddressFamilies)",
    );
  }
  // The context of new sessions; reload() replaces it, each session keeps the one it started with.
  let context: ServerContext = {
    config,
    logger,
    users: cache ?? deps.users,
    defender,
    admission,
    pool: new PortPool(range),
    announce: new AnnounceResolver(config.passive.address, netFacts, undefined, logger),
    openFs: deps.openFs ?? ((home, opts) => JailedFs.open(home, opts)),
    metrics: new Metrics(),
    xferlog: config.log.xferlog ? XferLog.open(config.log.xferlog, logger) : null,
    tls,
    // Both read the config of the latest reload, not the one this context was built with.
    quotas: new Quotas(() => context.config.quota),
    bandwidth: new Bandwidth(() => context.config.bandwidth),
  };
  const dispatcher = new Dispatcher(buildRegistry());
  const sessions = new Set<Session>();
  /** The ids of the open sessions (uniqueSessionId). */
  const openIds = new Set<string>();
  const refusals = new RefusalLog(logger);
  /** Refused connections waiting for their client to close after the 421 (MAX_LINGERING_REFUSALS). */
  let lingering = 0;
  let accepting = true;

  // A ban also ends the sessions the address has open (they would otherwise go on misbehaving).
  defender.onBan = (ban: BanInfo): void => {
    const fields = { event: "ban", address: ban.address, seconds: ban.remaining, reason: ban.reason, bans: ban.bans };
    logger.warn(fields, "banned %s for %d s: %s", ban.address, ban.remaining, ban.reason);
    for (const s of sessions) {
      if (normalizeAddress(s.remoteAddress) !== ban.address) continue;
      s.cutAndClose("banned", banText(ban));
    }
  };

  /** Why a new connection from `remote` is refused (also told to the log), or null when it may go
   * on (then it is counted). */
  const refusalOf = (remote: string): string | null => {
    if (!accepting) {
      refusals.note("shutdown", remote, "Server shutting down");
      return "Server shutting down";
    }
    const ban = defender.banOf(remote);
    if (ban) {
      context.metrics.banned();
      const text = banText(ban);
      refusals.note("banned", remote, text);
      return text;
    }
    const limits = context.config.limits;
    const full = admission.total >= limits.maxSessions;
    const refusal = admission.connect(remote, limits);
    if (refusal) {
      // A full server is the doing of an address that holds half of it or more (or all it may
      // hold): the others it keeps out are not scored, or a flood from many addresses would get
      // the clients it keeps out banned.
      const from = admission.sessionsFrom(remote);
      const offender = !full || from >= limits.maxSessionsPerAddress || from * 2 >= admission.total;
      // The refusal that reaches the threshold starts a ban: the client is told of it, as at its
      // next connection, not of the limit alone.
      const started = offender ? defender.record(remote, "limit", "too many connections") : null;
      const text = started ? banText(started) : refusal;
      refusals.note(full ? "max-sessions" : "max-sessions-per-address", remote, text);
      return text;
    }
    return refusal;
  };

  const admit = (socket: Socket, implicit: boolean): void => {
    socket.on("error", () => undefined);
    const remote = unmapIPv4(socket.remoteAddress ?? "");
    const refusal = refusalOf(remote);
    if (refusal) {
      if (implicit || lingering >= MAX_LINGERING_REFUSALS) {
        socket.destroy();
        return;
      }
      lingering++;
      socket.once("close", () => lingering--);
      endUnused(socket, REFUSAL_LINGER_MS, formatReply(421, refusal));
      return;
    }
    let control: Socket = socket;
    const ctx = context;
    const binding = implicit && ctx.tls ? ctx.tls.binding() : null;
    if (binding && ctx.tls) control = ctx.tls.wrapControl(socket, binding);
    const session = new Session(control, ctx, dispatcher, uniqueSessionId(openIds));
    openIds.add(session.id);
    session.tlsBinding = binding;
    sessions.add(session);
    session.onClosed = () => {
      sessions.delete(session);
      openIds.delete(session.id);
      admission.disconnect(remote);
      session.releaseUserClaim();
      session.log.debug({ event: "disconnect" }, "session closed");
    };
    session.log.debug({ event: "connect", implicit }, "session opened");
    session.start();
  };

  const servers: Server[] = [];
  let port: number | null = null;
  let implicitPort: number | null = null;
  const mode = config.tls.mode;
  // A listener that cannot start leaves nothing open behind it: the ones before it, the xferlog.
  const abandon = (err: unknown): never => {
    for (const srv of servers) srv.close();
    void context.xferlog?.close();
    throw err;
  };
  try {
    if (mode !== "implicit") {
      const srv = await listen(config.listen.host, config.listen.port, (s) => admit(s, false));
      servers.push(srv);
      port = addressPort(srv);
    }
    if ((mode === "implicit" || mode === "both") && tls) {
      const srv = await listen(config.listen.host, config.tls.implicitPort, (s) => admit(s, true)).catch((err: unknown) => {
        throw ofListener(err, "tls.implicitPort");
      });
      servers.push(srv);
      implicitPort = addressPort(srv);
    }
  } catch (err) {
    abandon(err);
  }
  // The metrics endpoint binds before the server is logged as listening: a start that fails on it
  // must not have said it was serving first.
  if (config.metrics.listen) {
    const gauges = (): Gauges => ({
      sessions: sessions.size,
      passivePortsInUse: context.pool.used,
      passivePortsTotal: context.pool.capacity,
      defender: defender.status(0),
    });
    try {
      servers.push(await serveMetrics(config.metrics.listen, context.metrics, gauges, logger));
    } catch (err) {
      abandon(ofListener(err, "metrics.listen"));
    }
  }

  logger.info(
    {
      event: "listening",
      host: config.listen.host,
      port,
      implicitPort,
      passive: config.passive.ports,
      tls: mode,
      // "unavailable": native/ was not built (npm ci found no C compiler, or not Linux).
      sendfile: !config.transfer.sendfile ? "off" : sendfileBinding() ? "on" : "unavailable",
      uploadThreads: !config.transfer.uploadThreads ? "off" : receiveBinding() ? "on" : "unavailable",
      // "paths": no /proc/self/fd here (not Linux); the jail then uses the checked paths (fs/pin.ts).
      jail: pinning() ? "held" : "paths",
      // "unavailable": no openat2 (Linux before 5.6, a seccomp filter, or native/ not built); paths
      // without links then take the jail's other way too (fs/beneath.ts).
      beneath: pinning() && beneathAvailable() ? "on" : "unavailable",
    },
    "berth listening on %s port %s%s",
    config.listen.host,
    String(port ?? "-"),
    implicitPort !== null ? ` (implicit FTPS on ${implicitPort})` : "",
  );

  await warnPassive(config, context.announce, logger);

  const shutdown = async (graceMs: number): Promise<void> => {
    accepting = false;
    for (const srv of servers) srv.close();
    for (const s of sessions) {
      if (s.transfer) s.closingText = "Server shutting down";
      else s.timeout("Server shutting down");
    }
    // On the monotonic clock: a wall clock set back meanwhile must not stretch the grace.
    const deadline = performance.now() + graceMs;
    while (sessions.size > 0 && performance.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      // A transfer that ended meanwhile leaves its session idle: it gets its 421 now (once).
      for (const s of sessions) if (!s.transfer) s.timeout("Server shutting down");
    }
    // Transfers still running are cut: each answers 426 and is logged (its transfer event and
    // xferlog line, marked incomplete) before the connections go and the transfer log closes.
    const cut: Promise<void>[] = [];
    for (const s of sessions) {
      const t = s.transfer;
      if (t === null) continue;
      t.abort("shutdown");
      cut.push(t.done);
    }
    if (cut.length > 0) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(cut), new Promise((r) => (timer = setTimeout(r, CUT_WAIT_MS)))]);
      clearTimeout(timer);
    }
    for (const s of sessions) s.socket.destroy();
    await context.xferlog?.close();
    // The listing worker (fs/statworker.ts) goes too; a listing still running stats without it.
    await stopStatWorker();
    await stopDigestWorker();
    // The addon's set of watched sockets (native/watch.c), once nothing lingers in it.
    watchBinding()?.releaseWatches();
    logger.info({ event: "stopped" }, "berth stopped");
  };

  const reload = (next: Config): ReloadResult => {
    const current = context.config;
    const changed = changedKeys(current, next);
    const held = heldUntilRestart(current, next);
    const needRestart = changed.filter((k) => RESTART_KEYS.has(k) || held.has(k));
    const applied = changed.filter((k) => !RESTART_KEYS.has(k) && !held.has(k));
    const effective = keepRestartKeys(current, next, held);
    // Certificates are re-read on every reload (renewed files keep their paths); a bad one throws here.
    const nextTls = deps.tls !== undefined ? deps.tls : effective.tls.mode === "off" ? null : TlsProvider.create(effective, logger);
    if (implicitPort !== null && !nextTls) throw new Error("reload: implicit FTPS needs TLS");
    // Same defender, new settings: current scores and bans are kept.
    defender.configure(effective.defender);
    cache?.setTtl(effective.users.loginCacheSeconds * 1000);
    // The same path opened again: a rotated transfer log is let go.
    context.xferlog?.reopen();
    // Sessions log through children of this logger, each with the level its session opened with
    // (log/logger.ts SessionLog): a new level applies to the sessions opened after it.
    if (applied.includes("log.level")) logger.level = effective.log.level;
    const announce = new AnnounceResolver(effective.passive.address, readNetFacts(), undefined, logger);
    announce.takeOver(context.announce);
    // A new passive.address is judged as a start judges it (a name by what it resolves to, which
    // may take a lookup: said when it answers).
    if (applied.includes("passive.address")) void warnPassive(effective, announce, logger).catch(() => undefined);
    context = { ...context, config: effective, announce, tls: nextTls };
    // The certificate files are read again whether or not a key changed (a renewal keeps their
    // paths): said here, or an operator who sent SIGHUP for a new certificate reads "applied: []".
    const certificate = nextTls !== null && deps.tls === undefined ? nextTls.certificatePath : undefined;
    logger.info({ event: "reloaded", applied, needRestart, certificate }, "configuration reloaded");
    return { applied, needRestart };
  };

  return {
    port,
    implicitPort,
    sessions,
    get context() {
      return context;
    },
    get config() {
      return context.config;
    },
    defender,
    shutdown,
    reload,
    reopenLogs: () => context.xferlog?.reopen(),
  };
}

/** How long a refused connection may stay after its 421 (ms), whatever its client does. */
const REFUSAL_LINGER_MS = 2000;

/** Refused connections that may stay for their 421 at once. Each holds a descriptor for up to
 * REFUSAL_LINGER_MS, outside limits.maxSessions: a client opening connections as fast as it can
 * (banned, or over a limit) would otherwise hold as many as it opens in that time. Past this, a
 * refused connection is closed at once, without its 421, as on the implicit port. */
export const MAX_LINGERING_REFUSALS = 256;

/** The 421 text of a ban. */
function banText(ban: BanInfo): string {
  return `Your address is banned for ${ban.remaining} s: ${ban.reason}`;
}

function addressPort(srv: Server): number {
  const a = srv.address();
  return typeof a === "object" && a !== null ? a.port : 0;
}

/** Connections the kernel queues before berth accepts them (capped by net.core.somaxconn): a burst
 * of clients connecting at once (1,000 in the benchmark) must not overflow it, or the overflow
 * waits for SYN retries of 1, 3, 7… seconds. */
const LISTEN_BACKLOG = 4096;

/** Silence on a control connection before TCP keep-alive probes start (ms). */
const KEEPALIVE_IDLE_MS = 60_000;

function listen(host: string, port: number, onConn: (s: Socket) => void): Promise<Server> {
  return new Promise((resolve, reject) => {
    // TCP keep-alive probes after a minute of silence: a control connection stays quiet through a
    // long transfer, and a NAT on the way may forget it sooner than Linux's default of two hours.
    // (Node's default initial delay, 0, is refused by Linux and left that default in place.)
    // Half-open: a client that has sent its last command may close its sending side and still read
    // the replies (Session answers what it sent, then closes).
    const srv = createServer({ noDelay: true, keepAlive: true, keepAliveInitialDelay: KEEPALIVE_IDLE_MS, allowHalfOpen: true }, onConn);
    srv.once("error", reject);
    srv.listen({ host, port, ipv6Only: false, backlog: LISTEN_BACKLOG }, () => {
      acceptCheaply(srv);
      inlineUrgentData(srv);
      srv.removeListener("error", reject);
      srv.on("error", () => undefined);
      resolve(srv);
    });
  });
}
