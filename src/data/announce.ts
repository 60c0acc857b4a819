/**
 * Which IPv4 address PASV announces (the most reported FTP problem in containers: announcing
 * 0.0.0.0, loopback or a container address). Rule:
 * - `passive.address` empty → the control connection's local address;
 * - the client is loopback, or on the same subnet as our local address and not our default
 *   gateway → the local address (LAN clients reach us directly);
 * - otherwise (internet clients, and clients NATed through the gateway, as Docker's published
 *   ports are) → `passive.address`, resolved if it is a hostname.
 */
import { lookup } from "node:dns/promises";
import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { networkInterfaces } from "node:os";
import { systemErrorText } from "../config/syserr.ts";
import type { Logger } from "../log/logger.ts";
import { unmapIPv4 } from "./address.ts";

/** Network facts the rule needs, passed in so the rule stays pure and testable. */
export interface NetFacts {
  /** IPv4 interface addresses with their netmasks. */
  readonly interfaces: readonly { readonly address: string; readonly netmask: string }[];
  /** The IPv4 default gateway, if known. */
  readonly gateway: string | null;
  /** Why the interfaces could not be read (then none are known), if they could not. */
  readonly interfacesError?: string;
}

/** Reads the facts from the OS (interfaces, /proc/net/route). The interfaces are asked for over a
 * netlink socket, which a sandbox may refuse (systemd's RestrictAddressFamilies without
 * AF_NETLINK): then none are known, and every client but loopback counts as not direct. */
export function readNetFacts(): NetFacts {
  const interfaces: { address: string; netmask: string }[] = [];
  let listed: ReturnType<typeof networkInterfaces>;
  try {
    listed = networkInterfaces();
  } catch (err) {
    return { interfaces, gateway: readGateway(), interfacesError: err instanceof Error ? err.message : String(err) };
  }
  for (const list of Object.values(listed)) {
    for (const i of list ?? []) if (i.family === "IPv4") interfaces.push({ address: i.address, netmask: i.netmask });
  }
  return { interfaces, gateway: readGateway() };
}

function readGateway(): string | null {
  try {
    const lines = readFileSync("/proc/net/route", "utf8").split("\n").slice(1);
    for (const line of lines) {
      const f = line.trim().split(/\s+/);
      if (f[1] === "00000000" && f[2] && f[2] !== "00000000") {
        const n = parseInt(f[2], 16);
        return [n & 255, (n >> 8) & 255, (n >> 16) & 255, (n >>> 24) & 255].join(".");
      }
    }
  } catch {
    // not Linux, or no /proc: no gateway known
  }
  return null;
}

function toInt(ip: string): number {
  return ip.split(".").reduce((acc, p) => ((acc << 8) | Number(p)) >>> 0, 0);
}

/** True when the client should get the local address rather than the configured public one. */
export function isDirectClient(local: string, remote: string, facts: NetFacts): boolean {
  const l = unmapIPv4(local);
  const r = unmapIPv4(remote);
  if (isIP(r) !== 4 || isIP(l) !== 4) return false;
  if (r.startsWith("127.")) return true;
  if (facts.gateway !== null && r === facts.gateway) return false;
  const iface = facts.interfaces.find((i) => i.address === l);
  if (!iface) return false;
  const mask = toInt(iface.netmask);
  return (toInt(l) & mask) === (toInt(r) & mask);
}

/** Looks a host name up to one IPv4 address (dns.lookup, the system's resolver, by default). */
export type LookupV4 = (name: string) => Promise<string>;

async function systemLookup(name: string): Promise<string> {
  return (await lookup(name, { family: 4 })).address;
}

/** How long a PASV waits for a new lookup of passive.address while the last address is at hand.
 * A lookup answers in milliseconds; a resolver that does not answer (getaddrinfo then takes 5 s
 * per try and server, in one of the few threads it shares with file I/O and bcrypt) must hold up
 * neither the PASV nor, by one lookup per PASV, the server. */
export const LOOKUP_WAIT_MS = 1000;

/** Resolves `passive.address` (IP or hostname) to IPv4, caching hostnames for a short while. One
 * lookup runs at a time; while one is slow or failing the last good address is announced, and a
 * failed lookup is tried again only after `ttlMs`. A name that stops resolving is told to the
 * operator once (PASV from outside then gets 425 if it never resolved), and again once it does. */
export class AnnounceResolver {
  /** The last lookup's answer and when it came: `ip` null while the name has never resolved. */
  private cached: { ip: string | null; at: number } | null = null;
  /** The lookup under way: PASVs that come meanwhile wait for it rather than start their own. */
  private pending: Promise<string | null> | null = null;
  /** The last lookup failed (and that was logged). */
  private failing = false;

  constructor(
    private readonly configured: string,
    private readonly facts: NetFacts,
    private readonly ttlMs = 30_000,
    private readonly log: Logger | null = null,
    private readonly lookupV4: LookupV4 = systemLookup,
  ) {}

  /** Takes over what `previous`, the resolver before a reload, knows of the same passive.address:
   * its last address, as one due to be looked up again, and whether it is failing. The next PASV
   * from outside then asks the name again (a reload picks up a changed record), but while it does
   * not resolve, or its resolver does not answer, the address PASV announced until then goes on
   * being announced, as between reloads, and is not warned about twice. */
  takeOver(previous: AnnounceResolver): void {
    if (previous.configured !== this.configured || previous.cached === null) return;
    this.cached = { ip: previous.cached.ip, at: -Infinity };
    this.failing = previous.failing;
  }

  /** The IPv4 address to put in a 227 reply for this control connection, or null if none fits:
   * at once, unless a host name in passive.address has to be looked up (again). */
  forConnection(local: string, remote: string): string | null | Promise<string | null> {
    const l = unmapIPv4(local);
    if (this.configured === "" || isDirectClient(l, remote, this.facts)) return isIP(l) === 4 ? l : null;
    const now = this.known();
    return now !== undefined ? now : this.resolveConfigured();
  }

  /** passive.address when it needs no lookup now: an IPv4 address, or a name's address looked up
   * within the TTL (null when that lookup failed and there is no last address); undefined
   * otherwise. */
  private known(): string | null | undefined {
    if (isIP(this.configured) === 4) return this.configured;
    const last = this.cached;
    return last && performance.now() - last.at < this.ttlMs ? last.ip : undefined;
  }

  /** What a host name in passive.address resolves to now; null when it is an IP or empty, or
   * does not resolve. */
  async resolvedName(): Promise<string | null> {
    return this.configured === "" || isIP(this.configured) !== 0 ? null : this.resolveConfigured();
  }

  private async resolveConfigured(): Promise<string | null> {
    const now = this.known();
    if (now !== undefined) return now;
    const last = this.cached?.ip ?? null;
    this.pending ??= this.lookUp();
    if (last === null) return this.pending;
    // A slow lookup: the last address now; the lookup still updates the cache when it answers.
    let timer: NodeJS.Timeout | undefined;
    const stale = new Promise<string>((resolve) => {
      timer = setTimeout(resolve, LOOKUP_WAIT_MS, last);
    });
    try {
      return (await Promise.race([this.pending, stale])) ?? last;
    } finally {
      clearTimeout(timer);
    }
  }

  private async lookUp(): Promise<string | null> {
    try {
      const address = await this.lookupV4(this.configured);
      this.cached = { ip: address, at: performance.now() };
      if (this.failing) {
        this.failing = false;
        this.log?.info({ event: "passive-address", address: this.configured, ip: address }, "passive.address %s resolves again (%s)", this.configured, address);
      }
      return address;
    } catch (err) {
      const last = this.cached?.ip ?? null;
      // The last good address serves another `ttlMs` before the next try; so does the failure of
      // a name that never resolved (PASV from outside gets 425 at once meanwhile), or each PASV
      // would wait for a resolver that does not answer again.
      this.cached = { ip: last, at: performance.now() };
      if (!this.failing) {
        this.failing = true;
        const then = last === null ? "PASV from outside gets 425 until it does" : `PASV goes on announcing ${last}, its last address`;
        this.log?.warn(
          { event: "passive-address", address: this.configured, reason: systemErrorText(err) },
          "passive.address %s cannot be resolved to an IPv4 address (%s): %s",
          this.configured,
          systemErrorText(err),
          then,
        );
      }
      return last;
    } finally {
      this.pending = null;
    }
  }
}
