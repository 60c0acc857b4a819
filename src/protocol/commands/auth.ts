/**
 * Access control commands (RFC 959 §4.1.1): USER, PASS, ACCT, QUIT, and HOST (RFC 7151).
 * Unknown users and wrong passwords get the same 530 after the same delay (SPEC security defaults).
 * With `anonymous.enabled`, USER anonymous or ftp logs in with any password (RFC 1635).
 */
import { isIP } from "node:net";
import { setTimeout as sleep } from "node:timers/promises";
import { anonymousUser, isAnonymousName } from "../../auth/anonymous.ts";
import { hasOwnDirPerms } from "../../auth/perms.ts";
import type { DirPerms, User } from "../../auth/types.ts";
import { resolvePath } from "../../config/load.ts";
import { parseUmask } from "../../config/schema.ts";
import { DEFAULT_UMASK } from "../../fs/modes.ts";
import { mapFsError } from "../../fs/errors.ts";
import type { JailedFs } from "../../fs/jail.ts";
import type { VirtualPath } from "../../fs/types.ts";
import { FtpError } from "../errors.ts";
import { primeQuota } from "../limits.ts";
import type { CommandSpec } from "../registry.ts";
import type { Session } from "../session.ts";

async function user(s: Session, arg: string): Promise<void> {
  if (s.user) {
    s.reply(530, "Can't change user once logged in");
    return;
  }
  s.pendingUser = arg;
  if (anonymousAllowed(s, arg)) s.reply(331, "Anonymous login ok, send your e-mail address as password");
  else s.reply(331, "Password required");
}

function anonymousAllowed(s: Session, name: string): boolean {
  return s.ctx.config.anonymous.enabled && isAnonymousName(name);
}

/** Opens the user's home (with the configured umask) and logs the session in; false (with the
 * reply written) when the home cannot be opened or made. That is the server's trouble, not the
 * client's: an error line for the operator, 530 with the reason, no failed login counted, and the
 * session's claim given back. */
async function enter(s: Session, user: User): Promise<boolean> {
  const umask = parseUmask(s.ctx.config.storage.umask) ?? DEFAULT_UMASK;
  let fs;
  try {
    // A running upload's temp file goes unwritten for at most stalledTimeout (then it is aborted):
    // one older than twice that, and than a day, was left by a server that was killed.
    const { limits, transfer } = s.ctx.config;
    fs = await s.ctx.openFs(user.home, { umask, log: s.log, staleTempMs: 2000 * limits.stalledTimeout, fsync: transfer.fsync });
  } catch (err) {
    const ftp = mapFsError(err);
    s.log.error({ event: "login", result: "no-home", user: user.name, home: user.home, detail: ftp.detail ?? ftp.message }, "login refused: home directory unavailable");
    s.releaseUserClaim();
    s.reply(530, `Login failed: home directory unavailable (${ftp.message.toLowerCase()})`);
    return false;
  }
  const placed = await dirPermsWhereTheyLead(user, fs);
  // The session ended while its home was opened (a login timeout, a ban): it is not logged in,
  // and its end has given its claim back already.
  if (s.over) {
    fs.close();
    s.releaseUserClaim();
    return false;
  }
  s.loggedIn(placed, fs);
  primeQuota(s); // counts the home in the background when the user has a quota
  return true;
}

/**
 * `user` with each directory of its per-directory permissions that a link leads elsewhere (`/pub`
 * a link to `releases/2024`) given those permissions where it leads as well. Permissions are
 * looked up where a path really leads (auth/perms.ts hasOwnDirPerms), so `/pub/r.txt` is looked
 * up at `/releases/2024/r.txt`: without this, the operator's `/pub` applied to no path at all,
 * and the user had their own permissions there by either name. Looked up once, at login, as the
 * rest of the user is; a directory that is missing or leads nowhere is left as it is written.
 */
async function dirPermsWhereTheyLead(user: User, fs: JailedFs): Promise<User> {
  if (!hasOwnDirPerms(user)) return user;
  const placed: DirPerms[] = [...user.dirPerms];
  for (const d of user.dirPerms) {
    if (d.path === "/") continue;
    const real: string = await fs.canonical(d.path as VirtualPath).catch(() => d.path);
    // An entry of its own for the real directory says what applies there.
    if (!placed.some((o) => o.path === real)) placed.push({ path: real, perms: d.perms });
  }
  if (placed.length === user.dirPerms.length) return user;
  return { ...user, dirPerms: placed.sort((a, b) => b.path.length - a.path.length) };
}

/** RFC 1635: any password (by custom an e-mail address; never logged, like any password). The
 * address's failure count is left alone: an anonymous login must not reset a brute-force ban. */
async function anonymousLogin(s: Session): Promise<void> {
  const cfg = s.ctx.config;
  const user = anonymousUser(cfg.anonymous, resolvePath(cfg.storage.root));
  if (!claimSession(s, user)) return;
  if (!(await enter(s, user))) return;
  s.ctx.metrics.login(true);
  s.log.info({ event: "login", result: "ok", anonymous: true }, "anonymous login");
  s.reply(230, "Anonymous access granted, restrictions apply");
}

async function pass(s: Session, arg: string): Promise<void> {
  if (s.user) {
    s.reply(230, "Already logged in");
    return;
  }
  const name = s.pendingUser;
  if (name === null) {
    s.reply(503, "Login with USER first");
    return;
  }
  s.pendingUser = null;
  if (anonymousAllowed(s, name)) {
    await anonymousLogin(s);
    return;
  }
  // A monotonic clock: the wall clock set back while the password is checked (NTP, a resumed
  // virtual machine) would hold the 530 for as long as it went back, and set forward, skip the
  // delay that keeps timing from telling unknown users from wrong passwords.
  const started = performance.now();
  let found: User | null;
  try {
    found = await s.ctx.users.authenticate(name, arg);
  } catch (err) {
    // The credentials could not be checked (no users file could be read, or bcrypt failed): the
    // server's trouble, not the client's, so no failed login is counted or scored.
    s.log.error({ event: "login", result: "unavailable", user: name, reason: err instanceof Error ? err.message : String(err) }, "login could not be checked");
    s.timeout("Service not available: logins cannot be checked now, try again later");
    return;
  }
  if (found) {
    if (!claimSession(s, found)) return;
    if (!(await enter(s, found))) return;
    s.ctx.metrics.login(true);
    s.log.info({ event: "login", result: "ok" }, "login %s", found.name);
    s.reply(230, "Login successful");
    return;
  }
  await failLogin(s, name, started);
}

/** Counts the login against the per-user session limit (a user's own maxSessions, else
 * limits.maxSessionsPerUser; 0 = unlimited). Over it: 421 and close, scored as a limit refusal. A
 * session that closed, or began to end (a login timeout, a ban), while its password was checked
 * claims nothing and is not logged in: its end has given back what it held already, and nothing
 * would give this claim back until the client closes. */
function claimSession(s: Session, found: User): boolean {
  if (s.over) return false;
  const max = found.limits.maxSessions > 0 ? found.limits.maxSessions : s.ctx.config.limits.maxSessionsPerUser;
  if (s.ctx.admission.login(found.name, max)) {
    s.countedUser = found.name;
    return true;
  }
  s.log.info({ event: "login", result: "refused", reason: "max-sessions", user: found.name }, "login refused: too many sessions");
  s.ctx.defender.record(s.remoteAddress, "limit", "too many sessions for one user");
  s.timeout("Too many sessions for this user");
  return false;
}

/** 530 after a fixed delay counted from the start of the check, so timing says nothing. */
async function failLogin(s: Session, name: string, started: number): Promise<void> {
  s.loginFailures++;
  s.ctx.metrics.login(false);
  s.ctx.defender.record(s.remoteAddress, "login");
  const wait = s.ctx.config.limits.failedLoginDelay * 1000 - (performance.now() - started);
  if (wait > 0) await sleep(wait);
  s.log.info({ event: "login", result: "fail", user: name }, "failed login");
  s.reply(530, "Login incorrect");
  if (s.loginFailures >= s.ctx.config.limits.maxLoginFailures || s.ctx.defender.isBanned(s.remoteAddress)) {
    s.log.info({ event: "disconnect", reason: "too many failed logins" }, "too many failed logins");
    s.end();
  }
}

function quit(s: Session): void {
  if (s.transfer) {
    // RFC 959 §4.1.1: the connection stays open for the transfer's reply, then closes.
    s.quitting = true;
    return;
  }
  // A checksum being computed is stopped; its answer would come after the 221, so none is sent.
  s.hashing?.cancel();
  s.reply(221, "Goodbye");
  s.end();
}

/** One label of a domain name: 1–63 letters, digits or hyphens (UTF-8 for internationalized
 * names), no hyphen at either end. */
const LABEL = /^[A-Za-z0-9\u0080-\uFFFF](?:[A-Za-z0-9\u0080-\uFFFF-]{0,61}[A-Za-z0-9\u0080-\uFFFF])?$/;

/** RFC 7151 §3.1: the argument is an IP literal ("[::1]") or a domain name of at most 253
 * characters, a final dot allowed (which covers a dotted IPv4 address too). */
function validHost(arg: string): boolean {
  if (arg.startsWith("[") && arg.endsWith("]")) return isIP(arg.slice(1, -1)) !== 0;
  const name = arg.endsWith(".") ? arg.slice(0, -1) : arg;
  return name.length <= 253 && name.split(".").every((label) => LABEL.test(label));
}

function host(s: Session, arg: string): void {
  // RFC 7151 §3: HOST comes before USER; berth serves one virtual host, so any name is accepted.
  if (s.user || s.pendingUser !== null) {
    s.reply(503, "HOST must come before USER");
    return;
  }
  if (!validHost(arg.trim())) throw new FtpError(501, "HOST takes a host name or an IP literal such as [::1]");
  s.reply(220, "Host accepted");
}

/** The access control family. */
export const authCommands: CommandSpec[] = [
  { verb: "USER", handler: user, needsLogin: false, arg: "required", help: "USER <name>", rfc: "RFC 959 §4.1.1" },
  {
    verb: "PASS",
    handler: pass,
    needsLogin: false,
    arg: "optional",
    secretArg: true,
    help: "PASS <password>",
    rfc: "RFC 959 §4.1.1",
  },
  {
    verb: "ACCT",
    handler: (s) => s.reply(202, "ACCT not needed"),
    needsLogin: false,
    arg: "required",
    // Account information is a credential on the servers that ask for it; never written to a log.
    secretArg: true,
    help: "ACCT <account> (not needed)",
    rfc: "RFC 959 §4.1.1",
  },
  {
    verb: "QUIT",
    handler: quit,
    needsLogin: false,
    arg: "none",
    bypassesQueue: true,
    beforeTls: true,
    help: "QUIT",
    rfc: "RFC 959 §4.1.1",
  },
  {
    verb: "HOST",
    handler: host,
    needsLogin: false,
    arg: "required",
    beforeTls: true,
    feat: () => ["HOST"],
    help: "HOST <hostname>",
    rfc: "RFC 7151",
  },
];
