/**
 * The crash barrier (DESIGN convention 2) and the place where every generic check happens once,
 * before any handler: unknown verb, argument shape, login, TLS policy, permissions and hidden or
 * denied names on the resolved path (see auth/perms.ts), and the one-shot sequencing of RNFR/RNTO
 * and REST. No exception leaves run(): an FtpError becomes its reply, anything else becomes 451 and
 * an error log line; the session and the process live on.
 */
import { checkAccess, hasOwnDirPerms, isHiddenPath, namePolicy, parentOf, permsAt, permsDirOf, refusalText } from "../auth/perms.ts";
import type { VirtualPath } from "../fs/types.ts";
import { FtpError, isFtpError, NameNotAllowed } from "./errors.ts";
import type { User } from "../auth/types.ts";
import type { CommandSpec, PermRule, Registry } from "./registry.ts";
import type { Session } from "./session.ts";
import { verbOf } from "./session.ts";
import { mapFsError } from "../fs/errors.ts";

/** Verbs of RFC 959 and its extensions that berth knowingly does not implement (502). */
const VERB_SHAPE = /^[A-Z]{3,4}$/;

/** Names and arguments are UTF-8 (RFC 2640). A line that is not cannot be taken as it was meant:
 * its bad bytes would all read as U+FFFD, so two different names would be one. */
const NOT_UTF8: [number, string] = [501, "Syntax error: the command is not valid UTF-8 (names are UTF-8, RFC 2640)"];

/** Runs command lines against the registry. */
export class Dispatcher {
  constructor(private readonly registry: Registry) {}

  /** The registry this dispatcher serves. */
  get commands(): Registry {
    return this.registry;
  }

  /** True when `verb` may run during a transfer (ABOR, STAT, QUIT). */
  bypasses(verb: string): boolean {
    return this.registry.get(verb)?.bypassesQueue === true;
  }

  /** True when `verb` starts something ABOR stops: a transfer (it uses the data connection) or a
   * checksum. */
  startsWork(verb: string): boolean {
    const spec = this.registry.get(verb);
    return spec?.opensData === true || spec?.checksum === true;
  }

  /** Parses and runs one line; never throws. `notUtf8`: the line's bytes were not UTF-8 (they
   * were decoded with U+FFFD in their place). */
  async run(session: Session, line: string, notUtf8 = false): Promise<void> {
    const verb = verbOf(line);
    const sp = line.indexOf(" ");
    const arg = sp === -1 ? "" : line.slice(sp + 1);
    const spec = this.registry.get(verb);
    this.logCommand(session, verb, arg, spec);
    try {
      let refusal = this.check(session, verb, arg, spec) ?? (notUtf8 ? NOT_UTF8 : null);
      if (refusal === null && spec?.perm) {
        const p = this.permission(session, spec.perm, arg, spec.verb);
        refusal = p instanceof Promise ? await p : p;
      }
      if (refusal) {
        // A refused command is still "the next command": the one-shot state is gone.
        session.renameFrom = null;
        if (spec?.opensData) consumeTransferState(session);
        if (!spec) session.noteBadCommand();
        session.reply(refusal[0], refusal[1]);
        return;
      }
      await this.invoke(session, spec as CommandSpec, verb, arg);
    } catch (err) {
      this.fail(session, spec, verb, err);
    }
  }

  private async invoke(session: Session, spec: CommandSpec, verb: string, arg: string): Promise<void> {
    // RNFR's source only survives until the next command (RFC 959 §4.1.3); an RNTO without one
    // was refused by check().
    if (spec.verb !== "RNTO") session.renameFrom = null;
    try {
      await spec.handler(session, arg, verb);
    } finally {
      if (spec.opensData) consumeTransferState(session);
    }
  }

  /** The generic checks; returns [code, text] to refuse, or null to go on. */
  private check(session: Session, verb: string, arg: string, spec: CommandSpec | undefined): [number, string] | null {
    if (!spec) {
      // No verb: an empty line (or spaces only) is said to be one; a line that starts with a
      // space has text all the same, which is no command.
      if (verb === "") return [500, arg.trim() === "" ? "Syntax error: empty command" : "Syntax error, command unrecognized"];
      return VERB_SHAPE.test(verb) ? [502, "Command not implemented"] : [500, "Syntax error, command unrecognized"];
    }
    const tls = session.ctx.config.tls;
    if (tls.require && !session.secure && !spec.beforeTls) {
      return [530, "TLS required: send AUTH TLS first"];
    }
    if (spec.needsLogin && !session.user) return [530, "Please login with USER and PASS"];
    if (spec.arg === "required" && isBlank(arg)) return [501, "Syntax error: argument required"];
    if (spec.arg === "none" && !isBlank(arg)) return [501, "Syntax error: no argument allowed"];
    if (spec.opensData && tls.require && !session.protectData) {
      return [521, "Data connections must be protected: send PBSZ 0 and PROT P"];
    }
    // The sequence before the permission: an RNTO without RNFR is 503 for any user, also one who
    // may not rename there (as vsftpd and ProFTPD answer it).
    if (spec.verb === "RNTO" && session.renameFrom === null) return [503, "Bad sequence of commands: send RNFR first"];
    return null;
  }

  /** The permission check of `perm` on the resolved path; a bad path is refused here too, so a
   * refused transfer command still frees its data connection. Not async where nothing has to be
   * waited for (no other form of the argument, the same permissions everywhere, no "..", no
   * existence check): the usual command takes no turn of the microtask queue here. */
  private permission(session: Session, perm: PermRule, arg: string, verb: string): Refusal | Promise<Refusal> {
    const user = session.user;
    if (!user) return null;
    if (perm.form !== undefined || hasOwnDirPerms(user) || arg.includes("..")) return this.permissionAfterLookups(session, user, perm, arg, verb);
    try {
      const path = perm.path ? perm.path(session, arg) : session.resolve(arg);
      if (path === null) return null;
      return permitted(session, user, perm, path, permsDirOf({ path, scope: perm.scope ?? "entry" }));
    } catch (err) {
      return refusalOf(err, perm, verb);
    }
  }

  /** permission() for a rule with another form of the argument, a user with per-directory
   * permissions (the directory a path leads to is looked up), or a path with a ".." (the names it
   * steps back out of are looked at). */
  private async permissionAfterLookups(session: Session, user: User, perm: PermRule, arg: string, verb: string): Promise<Refusal> {
    try {
      const form = perm.form;
      const rule = form !== undefined && (await form.matches(session, arg)) ? form.rule : perm;
      const walked: VirtualPath[] = [];
      const path = session.resolveWalking(walked, () => (rule.path ? rule.path(session, arg) : session.resolve(arg)));
      if (path === null) return null;
      return (await refusalWalking(session, rule, walked)) ?? (await refusalLookingUp(session, user, rule, path));
    } catch (err) {
      return refusalOf(err, perm, verb);
    }
  }

  private fail(session: Session, spec: CommandSpec | undefined, verb: string, err: unknown): void {
    const ftp = answerOf(err, spec?.perm, verb);
    if (!isFtpError(err) && ftp.code === 451) {
      session.log.error({ err, verb }, "command failed");
    } else if (ftp.serverSide) {
      session.log.warn({ verb, code: ftp.code, detail: ftp.detail }, "%s failed on the server's side: %s", verb, ftp.message);
    } else if (ftp.detail) {
      session.log.debug({ verb, code: ftp.code, detail: ftp.detail }, "command refused");
    }
    session.reply(ftp.code, ftp.message);
  }

  private logCommand(session: Session, verb: string, arg: string, spec: CommandSpec | undefined): void {
    if (!session.log.isLevelEnabled("debug")) return;
    if (spec === undefined) {
      // A line that names no command may be a password sent in a form that did not parse (a tab
      // or a space before PASS, say): a verb is written only when it has a verb's shape, and of
      // the argument only its length.
      const named = VERB_SHAPE.test(verb) ? verb : "[malformed]";
      session.log.debug({ event: "command", verb: named, argLength: arg.length }, "unknown command %s", named);
      return;
    }
    const shown = spec.secretArg ? "[redacted]" : spec.loggedArg ? spec.loggedArg(arg) : arg;
    session.log.debug({ event: "command", verb, arg: shown }, "%s %s", verb, shown);
  }
}

/** Whether `arg` is no argument: empty, or ASCII spaces only (RFC 959 §5.3: SP separates a
 * command from its argument). Not trim(), which also drops the no-break space, U+3000, U+2028 and
 * U+FEFF: a name made of those alone is a name, which a listing shows and a command must reach. */
export function isBlank(arg: string): boolean {
  for (let i = 0; i < arg.length; i++) if (arg.charCodeAt(i) !== SPACE) return false;
  return true;
}

const SPACE = 0x20;

/** A refusal's reply, or null to go on. */
export type Refusal = [number, string] | null;

/**
 * `rule` on `path` for `user`, where the permissions are those of the directory the path really
 * leads to: for a user with per-directory permissions, names are checked first (a hidden one is
 * refused before anything is looked up on its way), then the links on the way are resolved (and a
 * link at the path itself, for a rule that `follows` it). A user whose permissions are the same
 * everywhere looks nothing up. The dispatcher's check, and that of a command whose path is only
 * known once it has looked (LIST of a name with pattern characters).
 */
export async function refusalLookingUp(session: Session, user: User, rule: PermRule, path: VirtualPath): Promise<Refusal> {
  const scope = rule.scope ?? "entry";
  let permsDir: string = permsDirOf({ path, scope });
  if (hasOwnDirPerms(user)) {
    const access = { path, need: [], scope, creates: rule.creates === true, named: rule.named === true, replaces: false };
    const refused = checkAccess(user, namePolicy(session.ctx.config.storage), access);
    if (refused) return [550, refusalText(refused)];
    permsDir = await ownPermsDir(session, rule, path);
  }
  return await permitted(session, user, rule, path, permsDir);
}

/**
 * The walk the kernel would make through each name a ".." of the argument steps back out of
 * (fs/vpath.ts resolveVirtual): `a.txt/../b.txt` fails on a file with ENOTDIR and on a missing
 * name with ENOENT, as it does in vsftpd and pure-ftpd, which pass the path to the kernel. The
 * collapse alone would act on b.txt, and CWD a.txt/.. would succeed where `cd` says "Not a
 * directory". A hidden name is not found, as everywhere.
 */
export async function refusalWalking(session: Session, rule: PermRule, walked: readonly VirtualPath[]): Promise<Refusal> {
  if (walked.length === 0) return null;
  const policy = namePolicy(session.ctx.config.storage);
  let found: VirtualPath | null = null;
  for (const dir of walked) {
    // A name above one already found a directory is one too ("a/b/../../c" walks back out of
    // /a/b, then /a): looked at once, not again.
    if (found !== null && found.startsWith(`${dir}/`)) continue;
    if (isHiddenPath(policy, dir)) return [550, refusalText({ kind: "hidden" })];
    let type: string;
    try {
      type = (await session.requireFs().stat(dir)).type;
    } catch (err) {
      return refusalOf(err, rule);
    }
    if (type !== "dir") return [550, "Not a directory"];
    found = dir;
  }
  return null;
}

/** For a user with per-directory permissions: the directory whose permissions apply to `rule` on
 * `path`, the links on the way resolved (and one at the path itself, for a rule that `follows` it). */
async function ownPermsDir(session: Session, rule: PermRule, path: VirtualPath): Promise<string> {
  const scope = rule.scope ?? "entry";
  if (rule.follows === true && scope === "entry") return parentOf(await session.permsPath(path));
  return await session.permsPath(permsDirOf({ path, scope }) as VirtualPath);
}

/**
 * Whether the session's user lacks overwrite where `rule` puts `path`, as the dispatcher's check
 * decided it: such a command was let through only because nothing was at `path`, and its handler
 * keeps anything that appears there meanwhile (an exclusive create, a rename that never replaces).
 */
export async function lacksOverwrite(session: Session, rule: PermRule, path: VirtualPath): Promise<boolean> {
  const user = session.user;
  if (user === null) return false;
  const permsDir = hasOwnDirPerms(user) ? await ownPermsDir(session, rule, path) : permsDirOf({ path, scope: rule.scope ?? "entry" });
  return !permsAt(user, permsDir).has("overwrite");
}

/** `rule` on `path` with the permissions of `permsDir`; for a rule that needs overwrite where
 * something exists, a user without it waits for the existence check (only such users pay for
 * it, as in SFTPGo and ProFTPD). */
function permitted(session: Session, user: User, rule: PermRule, path: VirtualPath, permsDir: string): Refusal | Promise<Refusal> {
  // The Access written out whole, not spread from another: in Node 20 an object spread followed
  // by more keys gets a hidden class of its own each time, a runtime call per command.
  const access = { path, need: rule.need, scope: rule.scope ?? "entry", creates: rule.creates === true, named: rule.named === true, replaces: false, permsDir };
  const refusal = checkAccess(user, namePolicy(session.ctx.config.storage), access);
  if (refusal) return [550, refusalText(refusal)];
  if (rule.overwrite === true && !permsAt(user, permsDir).has("overwrite")) return refuseExisting(session, rule, path);
  return null;
}

/** What a failed lookup during the permission check of `perm` (for `verb`) answers. */
function refusalOf(err: unknown, perm: PermRule, verb = ""): Refusal {
  const ftp = answerOf(err, perm, verb);
  return [ftp.code, ftp.message];
}

/** The reply to `err` from a command that acts by `perm`. A name too long to be one, or an upload
 * temp file's, is "not allowed" (553) only where the command would create it; any other command
 * finds nothing under it, and answers 550 as for any name that does not exist (see NameNotAllowed).
 * MKD says it is not allowed with 550, the one refusal RFC 959 §5.4 gives it (vsftpd, ProFTPD and
 * pure-ftpd answer 550 too). A full disk (452) or
 * quota (552) is a reply RFC 959 gives the commands that store a file only: any other (MKD, out of
 * inodes) answers 550 with the same words, as vsftpd and ProFTPD do, still the server's trouble. */
function answerOf(err: unknown, perm: PermRule | undefined, verb = ""): FtpError {
  const ftp = isFtpError(err) ? err : mapFsError(err);
  if (ftp instanceof NameNotAllowed && perm?.creates !== true) return new FtpError(550, "No such file or directory", ftp.detail);
  if (ftp.code === 553 && MAKES_DIRECTORY.has(verb)) return new FtpError(550, ftp.message, ftp.detail, ftp.serverSide);
  if ((ftp.code === 452 || ftp.code === 552) && verb !== "" && !STORES.has(verb)) return new FtpError(550, ftp.message, ftp.detail, ftp.serverSide);
  return ftp;
}

/** The commands that make a directory: RFC 959 §5.4 lists no 553 for them. */
const MAKES_DIRECTORY: ReadonlySet<string> = new Set(["MKD", "XMKD"]);

/** The commands RFC 959 lists 452 and 552 for. */
const STORES: ReadonlySet<string> = new Set(["STOR", "STOU", "APPE"]);

/** 550 when something exists at `path` (the user lacks overwrite there). */
async function refuseExisting(session: Session, rule: PermRule, path: VirtualPath): Promise<Refusal> {
  try {
    return (await session.requireFs().exists(path)) ? [550, refusalText({ kind: "perm", perm: "overwrite" })] : null;
  } catch (err) {
    return refusalOf(err, rule);
  }
}

/** REST is consumed by the next transfer command, whatever its outcome (RFC 3659 §5.3); so are ALLO
 * and the PASV/PORT set-up, so a transfer refused before it started frees its passive port. */
function consumeTransferState(session: Session): void {
  session.restOffset = 0;
  session.allocated = null;
  session.retireChannel();
}
