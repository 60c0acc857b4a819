/**
 * File commands that use no data connection: DELE, RNFR/RNTO (RFC 959 §4.1.3), SIZE and MDTM
 * (RFC 3659 §3–4), MFMT (draft-somers-ftp-mfxx), SITE CHMOD and SITE HELP.
 */
import { formatMdtm, parseMfmtTime } from "../../fs/format.ts";
import { FtpError } from "../errors.ts";
import { beforeRemoving } from "../limits.ts";
import { formatBlockReply } from "../reply.ts";
import type { CommandSpec } from "../registry.ts";
import type { Session } from "../session.ts";

async function dele(s: Session, arg: string): Promise<void> {
  const path = s.resolve(arg);
  const counted = await beforeRemoving(s, path); // quota usage (protocol/limits.ts)
  await s.requireFs().unlink(path);
  counted();
  s.reply(250, "File deleted");
}

async function rnfr(s: Session, arg: string): Promise<void> {
  const from = s.resolve(arg);
  if (!(await s.requireFs().exists(from))) throw new FtpError(550, "No such file or directory");
  s.renameFrom = from;
  s.reply(350, "Ready for destination name");
}

async function rnto(s: Session, arg: string): Promise<void> {
  const from = s.renameFrom;
  s.renameFrom = null;
  if (from === null) throw new FtpError(503, "Bad sequence of commands: send RNFR first");
  const to = s.resolve(arg);
  // One home: a rename moves no bytes, but a file it replaces leaves the quota count.
  const counted = from === to ? () => undefined : await beforeRemoving(s, to);
  await s.requireFs().rename(from, to);
  counted();
  s.reply(250, "Rename successful");
}

async function size(s: Session, arg: string): Promise<void> {
  const st = await s.requireFs().stat(s.resolve(arg));
  if (st.type !== "file") throw new FtpError(550, "Not a regular file");
  s.reply(213, String(st.size));
}

async function mdtm(s: Session, arg: string): Promise<void> {
  const st = await s.requireFs().stat(s.resolve(arg));
  s.reply(213, formatMdtm(st.mtime));
}

async function mfmt(s: Session, arg: string): Promise<void> {
  const sp = arg.indexOf(" ");
  const when = sp === -1 ? null : parseMfmtTime(arg.slice(0, sp));
  if (when === null) throw new FtpError(501, "Syntax: MFMT YYYYMMDDHHMMSS <path>");
  const path = s.resolve(arg.slice(sp + 1));
  await s.requireFs().setMtime(path, when);
  s.reply(213, `Modify=${formatMdtm(when)}; ${arg.slice(sp + 1)}`);
}

async function site(s: Session, arg: string): Promise<void> {
  const sp = arg.indexOf(" ");
  const sub = (sp === -1 ? arg : arg.slice(0, sp)).toUpperCase();
  const rest = sp === -1 ? "" : arg.slice(sp + 1);
  if (sub === "HELP") {
    s.write(formatBlockReply(214, "SITE commands:", [" CHMOD <mode> <path>", " HELP"], "End"));
    return;
  }
  if (sub === "CHMOD") {
    await chmod(s, rest);
    return;
  }
  s.reply(500, "Unknown SITE command");
}

async function chmod(s: Session, rest: string): Promise<void> {
  if (!s.user) throw new FtpError(530, "Please login with USER and PASS");
  if (s.user.readOnly) throw new FtpError(550, "Permission denied: read-only account");
  const m = /^([0-7]{1,4})\s+(.+)$/.exec(rest);
  if (!m) throw new FtpError(501, "Syntax: SITE CHMOD <octal mode> <path>");
  await s.requireFs().chmod(s.resolve(m[2] as string), parseInt(m[1] as string, 8));
  s.reply(200, "SITE CHMOD command ok");
}

const base = { needsLogin: true, arg: "required", rfc: "RFC 959 §4.1.3" } as const;

/** The file family. */
export const fileCommands: CommandSpec[] = [
  { ...base, verb: "DELE", write: true, handler: dele, help: "DELE <path>" },
  { ...base, verb: "RNFR", write: true, handler: rnfr, help: "RNFR <path>" },
  { ...base, verb: "RNTO", write: true, handler: rnto, help: "RNTO <path>" },
  { ...base, verb: "SIZE", handler: size, feat: () => ["SIZE"], help: "SIZE <path>", rfc: "RFC 3659 §4" },
  { ...base, verb: "MDTM", handler: mdtm, feat: () => ["MDTM"], help: "MDTM <path>", rfc: "RFC 3659 §3" },
  {
    ...base,
    verb: "MFMT",
    write: true,
    handler: mfmt,
    feat: () => ["MFMT"],
    help: "MFMT YYYYMMDDHHMMSS <path>",
    rfc: "draft-somers-ftp-mfxx §3",
  },
  { ...base, verb: "SITE", handler: site, help: "SITE HELP | SITE CHMOD <mode> <path>" },
];
