/**
 * FTP security extensions (RFC 4217, RFC 2228): AUTH TLS (and AUTH SSL), PBSZ, PROT.
 * Sequencing per RFC 4217: AUTH before PBSZ, PBSZ before PROT (503 otherwise).
 */
import type { TLSSocket } from "node:tls";
import { FtpError } from "../errors.ts";
import type { CommandSpec } from "../registry.ts";
import type { ServerContext } from "../context.ts";
import type { Session } from "../session.ts";

/** The TLS provider when this server offers AUTH TLS (explicit mode), else null. */
function offeredTls(s: Session): ServerContext["tls"] {
  const mode = s.ctx.config.tls.mode;
  return mode === "explicit" || mode === "both" ? s.ctx.tls : null;
}

function auth(s: Session, arg: string): void {
  // A refusal leaves the connection as it was; the session reads on after it (Session.pump).
  const mech = arg.trim().toUpperCase();
  const provider = offeredTls(s);
  // First: an implicit connection is TLS whether or not this server offers AUTH TLS.
  if (s.secure) throw new FtpError(503, "Already using TLS");
  if (provider === null) throw new FtpError(502, "TLS is not enabled on this server");
  if (s.user) throw new FtpError(503, "AUTH must come before login");
  if (!["TLS", "TLS-C", "SSL", "TLS-P"].includes(mech)) throw new FtpError(504, "Unknown security mechanism");
  const binding = provider.binding();
  s.reply(234, "AUTH TLS successful");
  // Synchronously after the 234: nothing can read the handshake as plaintext.
  const raw = s.socket;
  raw.pause();
  while (raw.read() !== null) {
    // discard plaintext pipelined after AUTH (RFC 4217 §11)
  }
  s.tlsBinding = binding;
  s.pendingUser = null;
  // TLS-P asks for the data connections to be protected too, as PBSZ 0 and PROT P would
  // (draft-murray-auth-ftp-ssl; ProFTPD does the same); TLS, TLS-C and SSL protect the control only.
  if (mech === "TLS-P") s.pbszDone = s.protectData = true;
  let secured: TLSSocket;
  try {
    secured = provider.wrapControl(raw, binding);
  } catch (err) {
    // After the 234 the client speaks TLS: a plaintext reply would be read as a handshake record,
    // so there is none; the connection closes and the client sees its handshake fail.
    s.log.error({ err, event: "tls-upgrade-failed" }, "TLS upgrade of the control connection failed after 234: closing it");
    raw.destroy();
    return;
  }
  s.upgrade(secured);
  s.log.debug({ event: "tls", phase: "control" }, "control connection upgraded to TLS");
}

function pbsz(s: Session, arg: string): void {
  if (!s.secure) throw new FtpError(503, "PBSZ needs AUTH TLS first");
  // RFC 2228 §3: a decimal size that fits in 32 bits (unsigned); one that does not is a 501 too.
  const size = arg.trim();
  if (!/^\d+$/.test(size) || Number(size) > 0xffffffff) throw new FtpError(501, "PBSZ needs a number from 0 to 4294967295");
  s.pbszDone = true;
  // RFC 4217 §8: for TLS the buffer size is 0.
  s.reply(200, "PBSZ=0");
}

function prot(s: Session, arg: string): void {
  if (!s.secure) throw new FtpError(503, "PROT needs AUTH TLS first");
  if (!s.pbszDone) throw new FtpError(503, "PROT needs PBSZ first");
  const level = arg.trim().toUpperCase();
  if (level === "P") s.protectData = true;
  else if (level === "C") {
    if (s.ctx.config.tls.require) throw new FtpError(534, "PROT C refused: this server requires protected data");
    s.protectData = false;
  } else if (level === "S" || level === "E") throw new FtpError(536, "Only PROT C and PROT P are supported");
  else throw new FtpError(504, "Unknown protection level");
  s.reply(200, `Protection level set to ${level}`);
}

/** AUTH where it can upgrade the connection (the explicit port); PBSZ and PROT wherever TLS is
 * to be had, the implicit port included. AUTH on an implicit connection can only be refused (MS-FTPS
 * calls it informational there at most), so it is not listed there, in mode both as in implicit. */
function tlsFeat(s: Session): string[] {
  const auth = offeredTls(s) !== null && !s.implicit ? ["AUTH TLS", "AUTH SSL"] : [];
  return offeredTls(s) !== null || s.secure ? [...auth, "PBSZ", "PROT"] : [];
}
const base = { needsLogin: false, arg: "required", beforeTls: true, rfc: "RFC 4217" } as const;

/** The security family. */
export const tlsCommands: CommandSpec[] = [
  { ...base, verb: "AUTH", handler: auth, feat: tlsFeat, help: "AUTH TLS", rfc: "RFC 4217 §4" },
  { ...base, verb: "PBSZ", handler: pbsz, help: "PBSZ 0", rfc: "RFC 4217 §8" },
  { ...base, verb: "PROT", handler: prot, help: "PROT P | C", rfc: "RFC 4217 §9" },
];
