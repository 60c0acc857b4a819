/**
 * Data-connection set-up: PASV and PORT (RFC 959 §4.1.2), EPSV and EPRT (RFC 2428). Passive ports
 * come from the configured range; active targets must be the client's own IP and a port ≥ 1024
 * (SPEC: no bounce attacks, no FXP).
 */
import { isIP } from "node:net";
import { ActiveChannel } from "../../data/active.ts";
import { format227, format229, parseEprt, parsePort, sameHost, type HostPort } from "../../data/address.ts";
import { PassiveChannel, SPARE_MS, SpareSlot } from "../../data/passive.ts";
import { FtpError } from "../errors.ts";
import type { CommandSpec } from "../registry.ts";
import type { Session } from "../session.ts";

function family(s: Session): 1 | 2 {
  return isIP(s.localAddress) === 6 ? 2 : 1;
}

async function openPassive(s: Session, announced: string): Promise<PassiveChannel> {
  s.setChannel(null);
  const timeoutMs = s.ctx.config.limits.dataTimeout * 1000;
  const opened = PassiveChannel.open({
    pool: s.ctx.pool,
    bindHost: s.localAddress,
    allowedRemote: s.remoteAddress,
    timeoutMs,
    spare: (s.spare ??= new SpareSlot(s.ctx.pool, Math.min(SPARE_MS, timeoutMs))),
    // Methods, not named arrows: see test/hotpath.test.ts.
    // Anyone who finds the port can connect to it again and again, as fast as the network allows:
    // a session's 1st, 2nd, 4th, 8th… refused connection warns (with the count so far), the others
    // are debug lines, so a third party cannot fill the log.
    onForeign(remote) {
      const foreign = s.noteForeignData();
      s.log[(foreign & (foreign - 1)) === 0 ? "warn" : "debug"](
        { event: "foreign-data-connection", from: remote, foreign },
        "data connection from a foreign address refused",
      );
    },
    // The usual sign of a wrong passive.address or an unpublished/unforwarded passive range. A
    // session's 1st, 2nd, 4th, 8th… unused port warns (with the count so far), the others are
    // debug lines: a client opening ports it never uses cannot fill the log (the defender, when
    // on, scores them).
    onUnused(port) {
      const unused = s.noteUnusedPassive();
      s.log[(unused & (unused - 1)) === 0 ? "warn" : "debug"](
        { event: "passive-unused", announced, port, unused },
        "client never connected to passive port %d (announced %s): check passive.address and that passive.ports is forwarded",
        port,
        announced || "port only",
      );
    },
  });
  // A listener kept from the last transfer is there at once: no turn of the microtask queue.
  const ch = opened instanceof Promise ? await opened : opened;
  s.setChannel(ch);
  return ch;
}

async function pasv(s: Session): Promise<void> {
  if (s.epsvAll) throw new FtpError(503, "PASV not allowed after EPSV ALL");
  if (family(s) !== 1) throw new FtpError(522, "PASV is for IPv4; use EPSV");
  const found = s.ctx.announce.forConnection(s.localAddress, s.remoteAddress);
  const announced = found instanceof Promise ? await found : found;
  if (announced === null) throw new FtpError(425, "Can't open passive connection: no address to announce");
  const ch = await openPassive(s, announced);
  s.reply(227, format227(announced, ch.port));
}

async function epsv(s: Session, arg: string): Promise<void> {
  const a = arg.trim().toUpperCase();
  if (a === "ALL") {
    s.epsvAll = true;
    s.reply(200, "EPSV ALL ok");
    return;
  }
  if (a !== "" && !/^\d{1,5}$/.test(a)) throw new FtpError(501, "EPSV takes 1, 2 or ALL");
  const fam = family(s);
  // RFC 2428 §3: any network protocol but the control connection's is 522, naming that one.
  if (a !== "" && Number(a) !== fam) throw new FtpError(522, `Network protocol not supported, use (${fam})`);
  const ch = await openPassive(s, "");
  s.reply(229, format229(ch.port));
}

/** Active mode off is 502 for every PORT and EPRT, before its argument is read: a 522 for an EPRT
 * family would name one to use (RFC 2428 §2) where none works. */
function activeEnabled(s: Session): void {
  if (!s.ctx.config.active.enabled) throw new FtpError(502, "Active mode is disabled; use PASV or EPSV");
}

function activeTarget(s: Session, target: HostPort): void {
  if (s.epsvAll) throw new FtpError(503, "PORT and EPRT not allowed after EPSV ALL");
  if (!sameHost(target.host, s.remoteAddress)) throw new FtpError(500, "Illegal PORT command: address must be yours");
  if (target.port < 1024) throw new FtpError(504, "Illegal PORT command: port must be 1024 or above");
  // The control connection's peer is dialled: the same host, and with the zone a link-local
  // address needs, which an EPRT cannot carry.
  s.setChannel(new ActiveChannel({ host: s.remoteAddress, port: target.port }, s.localAddress, s.ctx.config.limits.dataTimeout * 1000));
}

function port(s: Session, arg: string): void {
  activeEnabled(s);
  const target = parsePort(arg);
  if (!target) throw new FtpError(501, "Syntax: PORT h1,h2,h3,h4,p1,p2");
  activeTarget(s, target);
  s.reply(200, "PORT command successful");
}

function eprt(s: Session, arg: string): void {
  activeEnabled(s);
  const parsed = parseEprt(arg);
  if (parsed === null) throw new FtpError(501, "Syntax: EPRT |af|address|port|");
  if ("badFamily" in parsed || parsed.family !== family(s)) {
    throw new FtpError(522, `Network protocol not supported, use (${family(s)})`);
  }
  activeTarget(s, parsed);
  s.reply(200, "EPRT command successful");
}

const base = { needsLogin: true, rfc: "RFC 959 §4.1.2" } as const;

/** The data-connection family. */
export const dataCommands: CommandSpec[] = [
  { ...base, verb: "PASV", arg: "none", handler: pasv, feat: () => ["PASV"], help: "PASV" },
  { ...base, verb: "PORT", arg: "required", handler: port, help: "PORT h1,h2,h3,h4,p1,p2" },
  { ...base, verb: "EPSV", arg: "optional", handler: epsv, feat: () => ["EPSV"], help: "EPSV [1|2|ALL]", rfc: "RFC 2428 §3" },
  // Listed only where it can work: with active mode off every EPRT is 502 (vsftpd leaves it out too).
  { ...base, verb: "EPRT", arg: "required", handler: eprt, feat: (s) => (s.ctx.config.active.enabled ? ["EPRT"] : []), help: "EPRT |af|addr|port|", rfc: "RFC 2428 §2" },
];
