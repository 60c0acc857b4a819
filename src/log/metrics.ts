/**
 * Counters for the optional Prometheus endpoint (`metrics.listen`): sessions, logins by result,
 * bytes by direction, transfers by result, passive ports in use, refusals of banned addresses, and
 * the defender's bans and scored offences.
 * Incrementing is a field update; the text format is built only when scraped.
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { DefenderStatus } from "../auth/defender.ts";
import { parseListen } from "../config/schema.ts";

/** Values read at scrape time rather than counted. */
export interface Gauges {
  readonly sessions: number;
  readonly passivePortsInUse: number;
  readonly passivePortsTotal: number;
  /** The defender's counts (its ban list is not needed here). */
  readonly defender: DefenderStatus;
}

/** berth's counters. */
export class Metrics {
  private readonly logins = { ok: 0, fail: 0 };
  private readonly bytes = { download: 0, upload: 0 };
  private readonly transfers = new Map<string, number>();
  private bannedRefusals = 0;

  /** Counts one login attempt. */
  login(ok: boolean): void {
    if (ok) this.logins.ok++;
    else this.logins.fail++;
  }

  /** Counts one finished transfer (listings count as transfers of direction "list"). */
  transfer(direction: "download" | "upload" | "list", result: string, bytes: number): void {
    if (direction !== "list") this.bytes[direction] += bytes;
    const key = `${direction}\0${result}`;
    this.transfers.set(key, (this.transfers.get(key) ?? 0) + 1);
  }

  /** Counts a connection refused because its address is banned. */
  banned(): void {
    this.bannedRefusals++;
  }

  /** The Prometheus text exposition format (version 0.0.4). */
  render(g: Gauges): string {
    const out: string[] = [];
    const metric = (name: string, type: string, help: string, rows: [string, number][]): void => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, v] of rows) out.push(`${name}${labels} ${v}`);
    };
    metric("berth_sessions", "gauge", "Control connections open now.", [["", g.sessions]]);
    metric("berth_logins_total", "counter", "Login attempts by result.", [
      ['{result="ok"}', this.logins.ok],
      ['{result="fail"}', this.logins.fail],
    ]);
    metric("berth_transfer_bytes_total", "counter", "File bytes moved, by direction.", [
      ['{direction="download"}', this.bytes.download],
      ['{direction="upload"}', this.bytes.upload],
    ]);
    metric(
      "berth_transfers_total",
      "counter",
      "Finished transfers by direction and result.",
      [...this.transfers].map(([k, v]) => {
        const [direction, result] = k.split("\0");
        return [`{direction="${direction}",result="${result}"}`, v];
      }),
    );
    metric("berth_passive_ports_in_use", "gauge", "Passive data ports held now.", [["", g.passivePortsInUse]]);
    metric("berth_passive_ports", "gauge", "Size of the passive port range.", [["", g.passivePortsTotal]]);
    metric("berth_banned_refusals_total", "counter", "Connections refused because the address is banned.", [
      ["", this.bannedRefusals],
    ]);
    const d = g.defender;
    metric("berth_banned_addresses", "gauge", "Addresses banned by the defender now.", [["", d.banned]]);
    metric("berth_defender_tracked_addresses", "gauge", "Addresses the defender remembers now.", [["", d.tracked]]);
    metric("berth_bans_total", "counter", "Bans by the defender.", [["", d.bansTotal]]);
    metric(
      "berth_defender_offences_total",
      "counter",
      "Offences scored by the defender, by kind.",
      Object.entries(d.offences).map(([kind, n]) => [`{kind="${kind}"}`, n]),
    );
    return out.join("\n") + "\n";
  }
}

/** The most connections the endpoint holds at once; one more is closed as it comes. */
export const METRICS_MAX_CONNECTIONS = 16;

/** Serves GET /metrics on `listen`; resolves once listening. */
export function serveMetrics(listen: string, metrics: Metrics, gauges: () => Gauges, logger: Logger): Promise<Server> {
  const where = parseListen(listen);
  if (!where) return Promise.reject(new Error(`config: metrics.listen must be "host:port" (got "${listen}")`));
  const server = createServer((req, res) => {
    if ((req.url ?? "").split("?")[0] !== "/metrics") {
      res.writeHead(404).end("not found\n");
      return;
    }
    // HEAD is answered as GET is (RFC 9110 §9.3.2; Node leaves out the body): a monitor's
    // `curl -I` must not see a 404 for a path that exists. Another method there is 405 with the
    // methods that work, not a 404 that says the path is wrong.
    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD" }).end("method not allowed\n");
      return;
    }
    res.writeHead(200, { "content-type": "text/plain; version=0.0.4" }).end(metrics.render(gauges()));
  });
  // A scraper needs one connection, an operator's curl another. Without a bound, clients that
  // connect and never finish a request would each hold a descriptor of the process the FTP
  // sessions share, for as long as Node's header timeout (a minute); Node closes the ones past it.
  server.maxConnections = METRICS_MAX_CONNECTIONS;
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(where.port, where.host, () => {
      server.removeListener("error", reject);
      // As the FTP listeners: an accept that fails (out of descriptors) is that client's loss, and
      // the listener goes on. Unheard, the error would be an uncaught exception ending the server.
      server.on("error", () => undefined);
      // The port bound, which `listen` does not say when it asks for port 0 (any free one).
      const bound = (server.address() as AddressInfo).port;
      const host = where.host.includes(":") ? `[${where.host}]` : where.host;
      logger.info({ event: "metrics", listen, port: bound }, "metrics on http://%s:%d/metrics", host, bound);
      resolve(server);
    });
  });
}
