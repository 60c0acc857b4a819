/**
 * Start-up self-diagnosis of the passive set-up: the most reported FTP problem is PASV announcing
 * an address clients cannot reach (0.0.0.0, loopback, a private or container address). These
 * checks are pure; the server logs what they return as warnings.
 */
import { existsSync } from "node:fs";
import { isIP } from "node:net";

/** What the checks look at. */
export interface PassiveFacts {
  readonly listenHost: string;
  readonly passiveAddress: string;
  readonly passivePorts: string;
  /** What a host name in `passiveAddress` resolves to here; null when it is an IP, empty or does
   * not resolve. */
  readonly resolvedAddress?: string | null;
  /** True inside a Docker or Podman container. */
  readonly inContainer: boolean;
}

/** True for 127/8, ::1, 0.0.0.0, ::. */
function isLoopbackOrAny(ip: string): boolean {
  return /^127\./.test(ip) || ip === "::1" || ip === "0.0.0.0" || ip === "::";
}

/** True for RFC 1918, carrier-grade NAT, link-local and IPv6 unique-local addresses. */
export function isPrivate(ip: string): boolean {
  if (isIP(ip) === 4) {
    const [a = 0, b = 0] = ip.split(".").map(Number);
    return a === 10 || (a === 172 && b >= 16 && b <= 31) || (a === 192 && b === 168) || (a === 100 && b >= 64 && b <= 127) || (a === 169 && b === 254);
  }
  const low = ip.toLowerCase();
  return isIP(ip) === 6 && (/^f[cd]/.test(low) || low.startsWith("fe80:"));
}

/** True when running in a container (Docker's /.dockerenv, Podman's /run/.containerenv). */
export function inContainer(): boolean {
  return existsSync("/.dockerenv") || existsSync("/run/.containerenv");
}

/** Warnings about the passive set-up; empty when nothing looks wrong. */
export function passiveWarnings(f: PassiveFacts): string[] {
  const out: string[] = [];
  // Listening on loopback only: every client is local, any announced address is fine.
  if (/^127\./.test(f.listenHost) || f.listenHost === "::1" || f.listenHost === "localhost") return out;
  const addr = f.passiveAddress;
  if (addr === "") {
    if (f.inContainer) {
      out.push(
        `passive.address is empty inside a container: PASV will announce the container's own address, which clients outside cannot reach unless the container uses the host's network (--network host) on a host that is not behind NAT; otherwise set BERTH_PASSIVE_ADDRESS to the host's public address and publish ${f.passivePorts} 1:1`,
      );
    }
    return out;
  }
  // A name is judged by what it resolves to where the server runs (a split-horizon DNS gives the
  // server its private address, which it would announce to clients from outside).
  const ip = f.resolvedAddress ?? addr;
  const named = ip === addr ? addr : `${addr} (${ip} here)`;
  if (isLoopbackOrAny(ip)) {
    out.push(`passive.address is ${named}: only clients on this machine can open passive data connections`);
  } else if (isPrivate(ip)) {
    out.push(`passive.address ${named} is a private address: clients from the internet cannot reach it (fine on a LAN)`);
  }
  return out;
}
