/**
 * Informational and parameter commands: NOOP, SYST, FEAT (RFC 2389), OPTS (RFC 2389, 2640, 3659),
 * HELP, STAT, SITE, LANG (RFC 2640), CLNT, ALLO, MODE, STRU, TYPE (RFC 959 §4.1.2–4.1.3).
 */
import { mlstFeature, selectMlsxFacts } from "../../fs/format.ts";
import { isBlank } from "../dispatcher.ts";
import { FtpError } from "../errors.ts";
import { optsHash } from "./digest.ts";
import { formatBlockReply } from "../reply.ts";
import type { CommandSpec, Registry } from "../registry.ts";
import type { Session } from "../session.ts";
import { busy, STAT_PERM, statPath } from "./listing.ts";

function feat(s: Session, registry: Registry): void {
  const lines = registry.features(s).map((f) => ` ${f}`);
  s.write(formatBlockReply(211, "Features:", lines, "End"));
}

function opts(s: Session, arg: string): void {
  const sp = arg.indexOf(" ");
  const name = (sp === -1 ? arg : arg.slice(0, sp)).toUpperCase();
  const value = sp === -1 ? "" : arg.slice(sp + 1).trim();
  if (name === "UTF8" || name === "UTF-8") {
    // RFC 2640: names are UTF-8 always; OFF cannot be honoured. Any other value is no setting
    // (vsftpd and ProFTPD refuse it too), and taking it would claim to have understood it.
    const setting = value.toUpperCase();
    if (setting === "OFF") s.reply(504, "UTF8 cannot be turned off");
    else if (setting === "" || setting === "ON") s.reply(200, "UTF8 mode is always on");
    else s.reply(501, "Syntax: OPTS UTF8 ON");
    return;
  }
  if (name === "MLST") {
    // RFC 3659 §7.9: "OPTS MLST" [SP 1*(factname ";")]; facts berth lacks are left out, but a
    // list in another form is 501 and changes nothing.
    if (value !== "" && !/^(?:[^;\s]+;)+$/.test(value)) throw new FtpError(501, "Syntax: OPTS MLST fact;fact;...");
    const chosen = selectMlsxFacts(value);
    s.mlstFacts = chosen;
    const list = [...chosen].map((f) => `${f};`).join("");
    s.reply(200, list === "" ? "MLST OPTS" : `MLST OPTS ${list}`);
    return;
  }
  if (name === "HASH") {
    optsHash(s, value);
    return;
  }
  s.reply(501, "Option not understood");
}

function help(s: Session, arg: string, registry: Registry): void {
  // The command is the first word: "HELP SITE CHMOD" asks about SITE, as "HELP TYPE A" about TYPE.
  const verb = (arg.trim().split(/\s+/)[0] ?? "").toUpperCase();
  if (verb !== "") {
    const spec = registry.get(verb);
    if (spec) s.reply(214, `Syntax: ${spec.help}`);
    else s.reply(502, "Unknown command");
    return;
  }
  const verbs = registry.all().map((c) => c.verb);
  const rows: string[] = [];
  for (let i = 0; i < verbs.length; i += 8) rows.push(" " + verbs.slice(i, i + 8).map((v) => v.padEnd(5)).join(" "));
  s.write(formatBlockReply(214, "The following commands are recognized:", rows, "Help OK"));
}

async function stat(s: Session, arg: string): Promise<void> {
  // During a transfer or a checksum STAT runs beside the queue (Session): its argument is ignored
  // and the status is answered at once (RFC 959 §4.1.3). A listing there might be answered after
  // the commands sent behind it, which wait in the queue for the checksum only.
  if (!isBlank(arg) && !busy(s)) {
    await statPath(s, arg);
    return;
  }
  const lines = [
    ` Connected from ${s.remoteAddress}`,
    s.user ? ` Logged in as ${s.user.name}` : " Not logged in",
    ` TYPE: ${s.type === "A" ? "ASCII" : "BINARY"}, STRU: File, MODE: Stream`,
    ` Control connection: ${s.secure ? "TLS" : "plain"}; data: ${s.protectData ? "TLS" : "plain"}`,
  ];
  const t = s.transfer;
  if (t) {
    const of = t.expected !== null ? ` of ${t.expected}` : "";
    lines.push(` Transfer in progress: ${t.direction} ${t.path}, ${t.bytes}${of} bytes done`);
  } else {
    // A passive channel nobody used within the data timeout has closed itself (and given its port
    // back) while the session still holds it: there is no data connection to be ready.
    lines.push(s.channel?.open === true ? ` Data connection ready (${s.channel.kind})` : " No data connection");
  }
  // A checksum is the operation in progress too (RFC 959 §4.1.3: STAT then gives its status).
  if (s.hashing) lines.push(` Checksum in progress: ${s.hashing.path}`);
  s.write(formatBlockReply(211, "berth FTP server status:", lines, "End of status"));
}

function type(s: Session, arg: string): void {
  const parts = arg.trim().toUpperCase().split(/\s+/);
  const [t, p] = parts;
  // RFC 959 §5.3.2: a type code and at most one parameter (A or E a form code, L a byte size);
  // more words are a syntax error, not a type with something ignored.
  if (parts.length > 2) {
    s.reply(501, "Syntax: TYPE A [N] | I | L 8");
    return;
  }
  if (t === "I" && parts.length === 1) s.type = "I";
  else if (t === "A" && (p === undefined || p === "N")) s.type = "A";
  else if (t === "L" && (p === undefined || !/^\d+$/.test(p))) {
    // L's byte size is required and a decimal number: without one the command is malformed.
    s.reply(501, "Syntax: TYPE L 8");
    return;
  } else if (t === "L" && Number(p) === 8) s.type = "I";
  else if (t === "E" || t === "A" || t === "L") {
    s.reply(504, "Type not implemented for that parameter");
    return;
  } else {
    s.reply(501, "Unknown TYPE");
    return;
  }
  s.reply(200, `Type set to ${s.type}`);
}

function mode(s: Session, arg: string): void {
  const m = arg.trim().toUpperCase();
  if (m === "S") s.reply(200, "Mode set to S");
  else if (m === "B" || m === "C" || m === "Z") s.reply(504, "Only stream mode is supported");
  else s.reply(501, "Unknown MODE");
}

function stru(s: Session, arg: string): void {
  const m = arg.trim().toUpperCase();
  if (m === "F") s.reply(200, "Structure set to F");
  else if (m === "R" || m === "P") s.reply(504, "Only file structure is supported");
  else s.reply(501, "Unknown STRU");
}

/** RFC 959 §5.3.2: ALLO <decimal-integer> [<SP> R <SP> <decimal-integer>] (the second a record or
 * page size, meaningless in file structure). Anything else, "10abc" included, is a syntax error
 * rather than a size read from its first digits. So is a count past 2^53 - 1: no file is that
 * large, and as a number it is rounded (or Infinity), which the quota's count of the home would
 * add and take away again as another number (or NaN), losing what other uploads hold. */
function allo(s: Session, arg: string): void {
  const m = /^\s*(\d+)(?:\s+R\s+\d+)?\s*$/i.exec(arg);
  const size = m ? Number(m[1]) : NaN;
  if (!Number.isSafeInteger(size)) {
    s.reply(501, m ? `ALLO byte count too large (at most ${Number.MAX_SAFE_INTEGER})` : "ALLO needs a byte count");
    return;
  }
  s.allocated = size;
  s.reply(202, "No storage allocation necessary");
}

function clnt(s: Session, arg: string): void {
  s.noteClient(arg);
  s.reply(200, "Noted");
}

/** An RFC 1766 language tag: a primary tag of 1–8 letters, then subtags of 1–8 letters or digits. */
const LANGUAGE_TAG = /^[A-Za-z]{1,8}(?:-[A-Za-z0-9]{1,8})*$/;

/** RFC 2640 §4: replies are in English only. LANG without an argument (the default) or with any
 * English tag is taken; another language is 504, a malformed tag 501. */
function lang(s: Session, arg: string): void {
  const tag = arg.trim();
  if (tag === "") return s.reply(200, "Responses in the default language, English");
  if (!LANGUAGE_TAG.test(tag)) throw new FtpError(501, "LANG takes a language tag, such as EN");
  if (!/^en(?:-|$)/i.test(tag)) throw new FtpError(504, "Only English (EN) is available");
  s.reply(200, "Responses in English");
}

/** The misc family; FEAT and HELP read the registry they are part of. */
export function miscCommands(registry: Registry): CommandSpec[] {
  const base = { needsLogin: false, rfc: "RFC 959 §4.1.3" } as const;
  return [
    { ...base, verb: "NOOP", arg: "none", beforeTls: true, handler: (s) => s.reply(200, "NOOP ok"), help: "NOOP" },
    { ...base, verb: "SYST", arg: "none", beforeTls: true, handler: (s) => s.reply(215, "UNIX Type: L8"), help: "SYST" },
    {
      ...base,
      verb: "FEAT",
      arg: "none",
      beforeTls: true,
      handler: (s) => feat(s, registry),
      help: "FEAT",
      rfc: "RFC 2389 §3",
    },
    {
      ...base,
      verb: "OPTS",
      arg: "required",
      beforeTls: true,
      handler: opts,
      feat: (s) => ["UTF8", `MLST ${mlstFeature(s.mlstFacts)}`],
      help: "OPTS UTF8 ON | OPTS MLST <facts> | OPTS HASH [<algorithm>]",
      rfc: "RFC 2389 §4, RFC 2640 §3.1, RFC 3659 §7.9, draft-bryan-ftpext-hash-02",
    },
    {
      ...base,
      verb: "HELP",
      arg: "optional",
      beforeTls: true,
      handler: (s, a) => help(s, a, registry),
      help: "HELP [<command>]",
    },
    {
      ...base,
      verb: "STAT",
      arg: "optional",
      bypassesQueue: true,
      perm: STAT_PERM,
      handler: stat,
      help: "STAT [<path>]",
    },
    {
      ...base,
      verb: "LANG",
      arg: "optional",
      beforeTls: true,
      handler: lang,
      feat: () => ["LANG EN*"],
      help: "LANG [<language tag>]",
      rfc: "RFC 2640 §4.1",
    },
    {
      ...base,
      verb: "CLNT",
      arg: "required",
      beforeTls: true,
      handler: clnt,
      // Listed, as ProFTPD and FileZilla Server do: FileZilla sends its name only when FEAT has it.
      feat: () => ["CLNT"],
      help: "CLNT <client name>",
      rfc: "draft-ietf-ftpext-clnt",
    },
    { ...base, verb: "ALLO", arg: "required", needsLogin: true, handler: allo, help: "ALLO <bytes>" },
    { ...base, verb: "MODE", arg: "required", needsLogin: true, handler: mode, help: "MODE S" },
    { ...base, verb: "STRU", arg: "required", needsLogin: true, handler: stru, help: "STRU F" },
    { ...base, verb: "TYPE", arg: "required", needsLogin: true, handler: type, help: "TYPE A | I | L 8" },
  ];
}
