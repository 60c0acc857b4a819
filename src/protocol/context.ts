/**
 * What every session of one server shares. Seams are small interfaces passed in (DESIGN convention
 * 7): tests can swap the user store, the defender or the port pool without touching sockets.
 */
import type { Logger } from "pino";
import type { Defender } from "../auth/defender.ts";
import type { Authenticator } from "../auth/types.ts";
import type { Config } from "../config/schema.ts";
import type { AnnounceResolver } from "../data/announce.ts";
import type { Bandwidth } from "../data/bandwidth.ts";
import type { PortPool } from "../data/ports.ts";
import type { TlsProvider } from "../data/tls.ts";
import type { JailedFs, JailOptions } from "../fs/jail.ts";
import type { Quotas } from "../fs/quota.ts";
import type { Admission } from "./admission.ts";
import type { Metrics } from "../log/metrics.ts";
import type { XferLog } from "../log/xferlog.ts";

/** Opens a user's jailed filesystem (a seam: tests wrap it to fail on chosen names). */
export type FsFactory = (home: string, opts?: JailOptions) => Promise<JailedFs>;

/** Shared services of one running server. */
export interface ServerContext {
  readonly config: Config;
  readonly logger: Logger;
  readonly users: Authenticator;
  /** Scores client addresses and bans abusive ones (issue "Abuse resistance"). */
  readonly defender: Defender;
  /** Session counts: in total, per address, per user. */
  readonly admission: Admission;
  readonly pool: PortPool;
  readonly announce: AnnounceResolver;
  readonly openFs: FsFactory;
  /** Counters for the Prometheus endpoint (always counted; served only when metrics.listen is set). */
  readonly metrics: Metrics;
  /** The xferlog file, when log.xferlog is set. */
  readonly xferlog: XferLog | null;
  /** TLS contexts; null when tls.mode is off. */
  readonly tls: TlsProvider | null;
  /** Counted home usage for quotas; one per server, reading the live config (kept across reloads). */
  readonly quotas: Quotas;
  /** Bandwidth buckets; one per server, reading the live config, so a reload re-paces running transfers. */
  readonly bandwidth: Bandwidth;
}
