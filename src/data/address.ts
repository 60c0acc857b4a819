/**
 * Address codecs for the data-connection commands: PORT and the 227 reply (RFC 959 §4.1.2, §4.2),
 * EPRT and the 229 reply (RFC 2428 §2, §3). Pure functions; validation is strict.
 */
import { isIP } from "node:net";

/** A host and port a data connection goes to or comes from. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Parses "h1,h2,h3,h4,p1,p2"; null when malformed. */
export function parsePort(arg: string): HostPort | null {
  const parts = arg.trim().split(",");
  if (parts.length !== 6) return null;
  const nums: number[] = [];
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p.trim())) return null;
    const n = Number(p.trim());
    if (n > 255) return null;
    nums.push(n);
  }
  const [a, b, c, d, p1, p2] = nums as [number, number, number, number, number, number];
  return { host: `${a}.${b}.${c}.${d}`, port: p1 * 256 + p2 };
}

/** Parses "|af|addr|port|" with any delimiter in ASCII 33..126 (RFC 2428 §2); null when malformed.
 * `af` is 1 (IPv4) or 2 (IPv6); a family that does not match the address is malformed too. */
export function parseEprt(arg: string): (HostPort & { readonly family: 1 | 2 }) | { readonly badFamily: true } | null {
  const text = arg.trim();
  const delim = text[0];
  if (delim === undefined || delim.charCodeAt(0) < 33 || delim.charCodeAt(0) > 126) return null;
  const fields = text.split(delim);
  if (fields.length !== 5 || fields[0] !== "" || fields[4] !== "") return null;
  const [, af, addr, port] = fields as [string, string, string, string, string];
  // A family that is no number is a syntax error; a number other than 1 or 2 is a family not
  // supported (RFC 2428 §2: 522). "01" is the number 1, as PORT's and EPSV's numbers are read: a
  // 522 for it would name, as the one to use, the family the client asked for.
  if (!/^\d{1,3}$/.test(af)) return null;
  const afNum = Number(af);
  if (afNum !== 1 && afNum !== 2) return { badFamily: true };
  if (!/^\d{1,5}$/.test(port)) return null;
  const portNum = Number(port);
  if (portNum < 1 || portNum > 65535) return null;
  const family = afNum === 1 ? 1 : 2;
  if (isIP(addr) !== (family === 1 ? 4 : 6)) return null;
  return { host: family === 2 ? canonicalIPv6(addr) : addr, port: portNum, family };
}

/** The one spelling of an IPv6 address the system gives a peer's (RFC 5952: lower case, zeros
 * left out, the longest run of zero groups as "::"); RFC 2428 lets an EPRT write it in any form of
 * RFC 4291 §2.2 ("0:0:0:0:0:0:0:1" is "::1"). An address URL cannot take (a zone) stays as it is. */
function canonicalIPv6(addr: string): string {
  try {
    return new URL(`http://[${addr}]/`).hostname.slice(1, -1);
  } catch {
    return addr;
  }
}

/** Formats the 227 reply text for an IPv4 address and port. */
export function format227(ipv4: string, port: number): string {
  // The address announced is nearly always the one before: its comma form is kept (a split and a
  // join cost a runtime call each PASV).
  if (ipv4 !== last227.ipv4) {
    last227.ipv4 = ipv4;
    last227.h = ipv4.replaceAll(".", ",");
  }
  return `Entering Passive Mode (${last227.h},${port >> 8},${port & 0xff}).`;
}

const last227 = { ipv4: "", h: "" };

/** Formats the 229 reply text (RFC 2428 §3). */
export function format229(port: number): string {
  return `Entering Extended Passive Mode (|||${port}|)`;
}

/** "::ffff:1.2.3.4" → "1.2.3.4"; other addresses unchanged. Dual-stack sockets report IPv4 peers so. */
export function unmapIPv4(address: string): string {
  return address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/** True for the same host, comparing IPv4-mapped IPv6 and plain IPv4 as equal. A link-local
 * address's zone ("fe80::1%eth0") counts only when both have one: the system names a control
 * connection's link-local peer with its zone, a passive data connection's peer without, and an
 * EPRT carries none (RFC 2428 has no syntax for it). */
export function sameHost(a: string, b: string): boolean {
  const [hostA, zoneA] = splitZone(unmapIPv4(a).toLowerCase());
  const [hostB, zoneB] = splitZone(unmapIPv4(b).toLowerCase());
  return hostA === hostB && (zoneA === null || zoneB === null || zoneA === zoneB);
}

/** "fe80::1%eth0" → ["fe80::1", "eth0"]; an address without a zone → [address, null]. */
function splitZone(address: string): [string, string | null] {
  const at = address.indexOf("%");
  return at === -1 ? [address, null] : [address.slice(0, at), address.slice(at + 1)];
}
