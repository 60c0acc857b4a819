/**
 * File commands that use no data connection: DELE, RNFR/RNTO (RFC 959 §4.1.3), SIZE and MDTM
 * (RFC 3659 §3–4; MDTM also sets the time, as vsftpd's and pure-ftpd's do), MFMT
 * (draft-somers-ftp-mfxx), SITE CHMOD, SITE UTIME and SITE HELP.
 */
import { holdsDirPerms, isHiddenPath, namePolicy } from "../../auth/perms.ts";
import { formatMdtm, parseMfmtTime } from "../../fs/format.ts";
import { basename, dirname, joinVirtual, NAMES_DIRECTORY, namesDirectory, notADirectory, ROOT } from "../../fs/vpath.ts";
import { lacksOverwrite, refusalWalking } from "../dispatcher.ts";
import { FtpError } from "../errors.ts";
import { beforeMoving, beforeRemoving } from "../limits.ts";
import { formatBlockReply } from "../reply.ts";
import type { VirtualPath } from "../../fs/types.ts";
import type { CommandSpec } from "../registry.ts";
import type { Session } from "../session.ts";

async function dele(s: Session, arg: string): Promise<void> {
  const path = s.resolve(arg);
  // As for RETR: "g/" names a directory, not the file g, and unlink(2) refuses it (ENOTDIR).
  if (path !== ROOT && namesDirectory(arg)) throw new FtpError(550, `Not a plain file: ${NAMES_DIRECTORY}`);
  const counted = await beforeRemoving(s, path); // quota usage (protocol/limits.ts)
  await s.requireFs().unlink(path);
  counted();
  s.reply(250, "File deleted");
}

async function rnfr(s: Session, arg: string): Promise<void> {
  const from = s.resolve(arg);
  if (from === ROOT) throw new FtpError(550, "Can't rename the home directory");
  // Permissions follow paths: moved elsewhere, what /pub=list,download held would be writable.
  // A link on the way to it counts as what it leads to: /alink/ro is /a/ro when /alink leads to a.
  if (s.user && holdsDirPerms(s.user, joinVirtual(await s.permsPath(dirname(from)), basename(from)))) {
    throw new FtpError(550, "Permission denied: a directory with permissions of its own can't be renamed");
  }
  if (!(await s.requireFs().exists(from))) throw new FtpError(550, "No such file or directory");
  if (namesDirectory(arg) && !(await s.requireFs().isDirectory(from))) throw notADirectory();
  s.renameFrom = from;
  s.reply(350, "Ready for destination name");
}

async function rnto(s: Session, arg: string): Promise<void> {
  const from = s.renameFrom;
  s.renameFrom = null;
  if (from === null) throw new FtpError(503, "Bad sequence of commands: send RNFR first");
  const to = s.resolve(arg);
  // Nor onto such a directory (an empty one is replaced) or its place: the files moved there
  // would come under its permissions without the upload they need there.
  if (s.user && holdsDirPerms(s.user, joinVirtual(await s.permsPath(dirname(to)), basename(to)))) {
    throw new FtpError(550, "Permission denied: nothing can be renamed onto a directory with permissions of its own");
  }
  // "g/" names a directory: a file renamed there would replace the file g, which rename(2)
  // refuses (ENOTDIR); a directory may be written so.
  if (namesDirectory(arg) && !(await s.requireFs().isDirectory(from))) throw notADirectory();
  // rename(2) says EINVAL; this says why.
  if (to.startsWith(`${from}/`)) throw new FtpError(550, "Can't move a name below itself");
  // One home: a rename moves no bytes, but a file it replaces leaves the quota count.
  const counted = from === to ? () => undefined : await beforeRemoving(s, to);
  // An upload replacing the file by its old name then frees nothing (fs/quota.ts Credit).
  const moved = from === to ? () => undefined : await beforeMoving(s, from);
  // Without overwrite the dispatcher saw nothing at `to`; one that appears meanwhile is kept too.
  if (await s.requireFs().rename(from, to, await lacksOverwrite(s, RENAME_TO, to))) counted();
  moved();
  s.reply(250, "Rename successful");
}


/** The entry a path argument names, for the commands that look at or change one in place: a name
 * ending in a slash is a directory's, so "g/" is not the file g (stat(2) says ENOTDIR). */
async function entryPath(s: Session, arg: string): Promise<VirtualPath> {
  const path = s.resolve(arg);
  const fs = s.requireFs();
  // A missing name stays "No such file or directory", from the command's own look.
  if (path !== ROOT && namesDirectory(arg) && !(await fs.isDirectory(path)) && (await fs.exists(path))) throw notADirectory();
  return path;
}

async function size(s: Session, arg: string): Promise<void> {
  const st = await s.requireFs().stat(await entryPath(s, arg));
  if (st.type !== "file") throw new FtpError(550, "Not a regular file");
  // RFC 3659 §4: in TYPE A the size is that of the converted stream, which only reading the whole
  // file would give; refused, as ProFTPD and pyftpdlib do (after the checks, so a missing file is
  // still said to be missing).
  if (s.type === "A") throw new FtpError(550, "SIZE not allowed in ASCII mode; use TYPE I");
  s.reply(213, String(st.size));
}

async function mdtm(s: Session, arg: string): Promise<void> {
  const decided = mdtmDecided.get(s);
  mdtmDecided.delete(s);
  const set = decided !== undefined && decided.arg === arg ? decided.set : await mdtmSetting(s, arg);
  if (set !== null) {
    await setMtime(s, set.when, set.path);
    return;
  }
  const st = await s.requireFs().stat(await entryPath(s, arg));
  s.reply(213, formatMdtm(new Date(st.mtimeMs)));
}

/** What MDTM with a time sets: the time and the path as the client wrote it. */
interface MdtmSet {
  readonly when: Date;
  readonly path: string;
}

/**
 * `MDTM YYYYMMDDHHMMSS[.sss] <path>`, the form that sets the time (UTC, as MFMT's) rather than
 * asks for it: vsftpd (mdtm_write, on by default) and pure-ftpd take it, and so do clients that
 * predate MFMT. The argument is that form when it starts with a valid time, a space and a path,
 * and the whole argument names nothing: a file named "20240101120000 clip.mp4" (as cameras and
 * backup tools name them) is asked about (RFC 3659 §3), as curl -R and lftp's mirror do, and the
 * time of "clip.mp4" is left alone. Null: MDTM asks for the time of the whole argument.
 */
async function mdtmSetting(s: Session, arg: string): Promise<MdtmSet | null> {
  const set = mdtmSetForm(arg);
  if (set === null) return null;
  let named: boolean;
  try {
    const walked: VirtualPath[] = [];
    const whole = s.resolveWalking(walked, () => s.resolve(arg));
    // A hidden name is no name: it must not show itself by changing what MDTM does. Nor is one
    // reached by a ".." out of a name that is no directory ("20240101000000 sub/../b.txt": there
    // is no directory "20240101000000 sub"), where the kernel's walk fails.
    named =
      !isHiddenPath(namePolicy(s.ctx.config.storage), whole) &&
      (await refusalWalking(s, LOOK, walked)) === null &&
      (await s.requireFs().exists(whole));
  } catch {
    named = false; // not a name that can exist (too long, say): the set form decides
  }
  return named ? null : set;
}

/** The form the permission check of a session's MDTM found, so that its handler acts on the form
 * that was checked even when the name appears or goes away in between. */
const mdtmDecided = new WeakMap<Session, { readonly arg: string; readonly set: MdtmSet | null }>();

/** The permission check's test of MDTM's argument: true for the form that sets a time. */
async function mdtmSets(s: Session, arg: string): Promise<boolean> {
  const set = await mdtmSetting(s, arg);
  mdtmDecided.set(s, { arg, set });
  return set !== null;
}

function mdtmSetForm(arg: string): MdtmSet | null {
  const sp = arg.indexOf(" ");
  if (sp < 14 || sp === arg.length - 1 || !/^\d{14}(\.\d{1,3})?$/.test(arg.slice(0, sp))) return null;
  const when = parseMfmtTime(arg.slice(0, sp));
  return when === null ? null : { when, path: arg.slice(sp + 1) };
}

async function mfmt(s: Session, arg: string): Promise<void> {
  const sp = pathAfterTime(arg);
  const when = sp === -1 ? null : parseMfmtTime(arg.slice(0, sp));
  if (when === null) throw new FtpError(501, "Syntax: MFMT YYYYMMDDHHMMSS <path>");
  await setMtime(s, when, arg.slice(sp + 1));
}

/** Where MFMT's time ends (the space before the path), or -1 when there is no path: the path is
 * required (draft-somers-ftp-mfxx §3), and an empty one would resolve to the current directory,
 * whose time a malformed command must not change. */
function pathAfterTime(arg: string): number {
  const sp = arg.indexOf(" ");
  return sp === arg.length - 1 ? -1 : sp;
}

/** Sets the modification time of `path` (as the client wrote it) and says so, as MFMT does, with
 * the time the file now has (what MDTM then answers): a filesystem that cannot keep the time asked
 * for keeps another one (ext4 clamps to 1901..2446; a fraction of a second is not shown). */
async function setMtime(s: Session, when: Date, path: string): Promise<void> {
  const set = await s.requireFs().setMtime(await entryPath(s, path), when);
  s.reply(213, `Modify=${formatMdtm(set)}; ${path}`);
}

async function site(s: Session, arg: string): Promise<void> {
  const { sub, rest } = siteArgs(arg);
  if (sub === "HELP") {
    s.write(
      formatBlockReply(
        214,
        "SITE commands:",
        [" CHMOD <mode> <path>", " UTIME YYYYMMDDhhmm[ss] <path>", " UTIME <path> <atime> <mtime> <ctime> UTC", " HELP"],
        "End",
      ),
    );
    return;
  }
  if (sub === "CHMOD") {
    await chmod(s, rest);
    return;
  }
  if (sub === "UTIME") {
    const parsed = parseUtime(rest);
    if (!parsed) throw new FtpError(501, "Syntax: SITE UTIME YYYYMMDDhhmm[ss] <path> | SITE UTIME <path> <atime> <mtime> <ctime> UTC");
    await s.requireFs().setMtime(await entryPath(s, parsed.path), parsed.when);
    s.reply(200, "SITE UTIME command ok");
    return;
  }
  s.reply(500, "Unknown SITE command");
}

/**
 * SITE UTIME, as ProFTPD (mod_site_misc) and pure-ftpd take it, in UTC: `YYYYMMDDhhmm[ss] <path>`,
 * or `<path> <atime> <mtime> <ctime> UTC` with 14-digit times (only the modification time is set;
 * the access time stays, as for MFMT, and no one can set a change time). Null when malformed.
 */
function parseUtime(rest: string): { when: Date; path: string } | null {
  const five = /^(.+) (\d{14}) (\d{14}) (\d{14}) UTC$/i.exec(rest);
  if (five) {
    // The access and change times are not set, but a command with one that is no time (month 13)
    // is malformed all the same: taken, it would be answered 200 as if it had been understood.
    const [atime, mtime, ctime] = [five[2], five[3], five[4]].map((t) => parseMfmtTime(t as string));
    return atime && mtime && ctime ? { when: mtime, path: five[1] as string } : null;
  }
  const two = /^(\d{12}|\d{14}) (.+)$/.exec(rest);
  if (!two) return null;
  const time = two[1] as string;
  const when = parseMfmtTime(time.length === 12 ? `${time}00` : time);
  return when ? { when, path: two[2] as string } : null;
}

/** "CHMOD 644 path" → mode and path; null when malformed. Only the 0777 bits: setuid, setgid and
 * sticky are never granted (leading zeros are fine, any number of them as chmod takes them: "0644",
 * "00644"). The path is what follows the one space after the mode, as written, as every other
 * command takes its path: a client names " lead" as "SITE CHMOD 600  lead", which must not change
 * the mode of "lead". */
function parseChmod(rest: string): { mode: number; path: string } | null {
  const m = /^0*([0-7]{1,4}) (.+)$/.exec(rest);
  if (!m) return null;
  const mode = parseInt(m[1] as string, 8);
  return mode > 0o777 ? null : { mode, path: m[2] as string };
}

async function chmod(s: Session, rest: string): Promise<void> {
  const parsed = parseChmod(rest);
  if (!parsed) throw new FtpError(501, "Syntax: SITE CHMOD <octal mode 0..777> <path>");
  await s.requireFs().chmod(await entryPath(s, parsed.path), parsed.mode);
  s.reply(200, "SITE CHMOD command ok");
}

/** SITE splits into a sub-command and its argument. */
function siteArgs(arg: string): { sub: string; rest: string } {
  const sp = arg.indexOf(" ");
  return { sub: (sp === -1 ? arg : arg.slice(0, sp)).toUpperCase(), rest: sp === -1 ? "" : arg.slice(sp + 1) };
}

/** SITE sub-commands berth knows; their arguments are logged as they are. */
const SITE_SUBS: ReadonlySet<string> = new Set(["HELP", "CHMOD", "UTIME"]);

/** What the log shows of a SITE argument: a known sub-command's in full, of another only its name.
 * Clients send passwords that way: "SITE PSWD <old> <new>" (WS_FTP, Serv-U), "SITE PASSWD <new>". */
function siteLogged(arg: string): string {
  const { sub, rest } = siteArgs(arg);
  if (SITE_SUBS.has(sub)) return arg;
  const named = /^[A-Z0-9]{1,16}$/.test(sub) ? sub : "[malformed]";
  return rest === "" ? named : `${named} [redacted]`;
}

/** The path SITE UTIME acts on (for the permission check); null when malformed. */
function utimePath(s: Session, arg: string): VirtualPath | null {
  const parsed = parseUtime(siteArgs(arg).rest);
  return parsed ? s.resolve(parsed.path) : null;
}

/** SITE UTIME changes an existing file's time: overwrite, as MFMT. */
const SITE_UTIME = { need: ["overwrite"], path: utimePath, follows: true } as const;

/** The path SITE CHMOD acts on (for the permission check); null for other sub-commands. */
function chmodPath(s: Session, arg: string): VirtualPath | null {
  const { sub, rest } = siteArgs(arg);
  const parsed = sub === "CHMOD" ? parseChmod(rest) : null;
  return parsed ? s.resolve(parsed.path) : null;
}

/** MDTM that sets the time needs what MFMT needs, on its path. */
const MDTM_SET = { need: ["overwrite"], path: mfmtPath, follows: true } as const;

/** The path MFMT acts on; null when malformed (the handler answers 501). */
function mfmtPath(s: Session, arg: string): VirtualPath | null {
  const sp = pathAfterTime(arg);
  return sp === -1 ? null : s.resolve(arg.slice(sp + 1));
}

const base = { needsLogin: true, arg: "required", rfc: "RFC 959 §4.1.3" } as const;
/** SIZE and MDTM describe one file: who may list its directory or download it may ask. */
const LOOK = { need: ["list", "download"], follows: true } as const;
/** RNTO's target: a new name, or an existing one replaced (overwrite). */
const RENAME_TO = { need: ["rename"], creates: true, named: true, overwrite: true } as const;

/** The file family. */
export const fileCommands: CommandSpec[] = [
  { ...base, verb: "DELE", perm: { need: ["delete"] }, handler: dele, help: "DELE <path>" },
  // The source directory is checked at RNFR, the target directory at RNTO (a move needs both).
  { ...base, verb: "RNFR", perm: { need: ["rename"] }, handler: rnfr, help: "RNFR <path>" },
  {
    ...base,
    verb: "RNTO",
    perm: RENAME_TO,
    handler: rnto,
    help: "RNTO <path>",
  },
  { ...base, verb: "SIZE", perm: LOOK, handler: size, feat: () => ["SIZE"], help: "SIZE <path>", rfc: "RFC 3659 §4" },
  {
    ...base,
    verb: "MDTM",
    perm: { ...LOOK, form: { matches: mdtmSets, rule: MDTM_SET, what: "with a time" } },
    handler: mdtm,
    feat: () => ["MDTM"],
    help: "MDTM <path> | MDTM YYYYMMDDHHMMSS <path>",
    rfc: "RFC 3659 §3",
  },
  {
    ...base,
    verb: "MFMT",
    // Changing an existing file's time changes that file: overwrite, as for its content.
    perm: { need: ["overwrite"], path: mfmtPath, follows: true },
    handler: mfmt,
    feat: () => ["MFMT"],
    help: "MFMT YYYYMMDDHHMMSS <path>",
    rfc: "draft-somers-ftp-mfxx §3",
  },
  {
    ...base,
    verb: "SITE",
    perm: { need: ["chmod"], path: chmodPath, form: { matches: (_s, arg) => siteArgs(arg).sub === "UTIME", rule: SITE_UTIME, what: "SITE UTIME" } },
    handler: site,
    loggedArg: siteLogged,
    help: "SITE HELP | SITE CHMOD <mode> <path> | SITE UTIME YYYYMMDDhhmm[ss] <path>",
  },
];
