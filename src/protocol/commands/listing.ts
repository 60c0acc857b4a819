/**
 * Listings: LIST and NLST (RFC 959 §4.1.3), MLSD and MLST (RFC 3659 §7), and STAT <path>. The
 * listing is built before 150, so a bad path is a plain 550 and no data connection is wasted.
 */
import { once } from "node:events";
import type { Socket } from "node:net";
import { ListingBuffer } from "../../data/listbuf.ts";
import { Transfer, sendBuffer } from "../../data/transfer.ts";
import { hasOwnDirPerms, namePolicy, permFact } from "../../auth/perms.ts";
import { formatListLine, formatMlsxSelected, mlsxFormatter } from "../../fs/format.ts";
import { compileGlob, globOf, lastComponentAt } from "../../fs/glob.ts";
import { ListingTicket } from "../../fs/listgate.ts";
import { Entries, EntryView } from "../../fs/listing.ts";
import type { DirEntry, VirtualPath } from "../../fs/types.ts";
import { basename, dirname, joinVirtual, namesDirectory, notADirectory, ROOT } from "../../fs/vpath.ts";
import { FtpError, NameTooLong } from "../errors.ts";
import { formatBlockReply, stripControl } from "../reply.ts";
import { isBlank, refusalLookingUp } from "../dispatcher.ts";
import type { CommandSpec } from "../registry.ts";
import type { Session } from "../session.ts";
import { runTransfer } from "./xfer.ts";

/** Splits "LIST -la dir" into options and path; clients send ls-style flags. */
export function splitListArg(arg: string): string {
  return parseListArg(arg).path;
}

/** The path of "LIST -ld dir" and whether its options hold ls's -d (list a directory itself, not
 * its entries), as ProFTPD and pure-ftpd read it. Other options are accepted and ignored. As in
 * ls, "--" ends the options: "LIST -- -name" (lftp's `ls -- -name`) lists the entry "-name". A
 * path is taken as written, spaces at its start or end included (" lead", "trail "), as every other
 * command takes it; an argument of spaces only is none. */
function parseListArg(arg: string): { path: string; dirItself: boolean } {
  let rest = isBlank(arg) ? "" : arg;
  let dirItself = false;
  while (rest.startsWith("-")) {
    const sp = rest.indexOf(" ");
    const flags = sp === -1 ? rest : rest.slice(0, sp);
    if (sp === -1) return { path: "", dirItself: dirItself || (!flags.startsWith("--") && flags.includes("d")) };
    rest = rest.slice(sp + 1).replace(LEADING_SPACES, "");
    if (flags === "--") break;
    if (!flags.startsWith("--") && flags.includes("d")) dirItself = true;
  }
  return { path: rest, dirItself };
}

/** The ASCII spaces after a word of options (other spaces are part of the name that follows). */
const LEADING_SPACES = /^ +/;

/** The path LIST, NLST and STAT <path> show: with a pattern in its last component, the directory
 * whose entries it picks (where a listing is allowed or not). */
function listPath(s: Session, arg: string): VirtualPath {
  const shown = splitListArg(arg);
  const path = s.resolve(shown);
  return globOf(shown) === null ? path : dirname(path);
}

/** Leaves out entries whose names match `storage.hide`. */
function visible(s: Session, entries: Entries): Entries {
  const { hidden } = namePolicy(s.ctx.config.storage);
  return entries.filter((name) => !hidden(name));
}

/** Whether `arg` names a link itself rather than what it leads to: not so for the cwd ("" or
 * "."), its parent (".."), or a name ending in a slash ("dl/", "dl/."), all of which the kernel
 * takes for the directory (`ls -ld .`, `ls -ld dl/`, lstat("dl/.")). */
function namesLinkItself(arg: string): boolean {
  return arg !== "" && arg !== "." && arg !== ".." && !namesDirectory(arg);
}

/** The entries LIST and NLST show, and whether a pattern picked them (a name that exists as
 * written, brackets or stars and all, is that name). */
async function entriesOf(s: Session, arg: string, ticket: ListingTicket): Promise<{ path: VirtualPath; entries: Entries; picked: boolean; itself: boolean }> {
  const { path: shown, dirItself } = parseListArg(arg);
  const path = s.resolve(shown);
  const fs = s.requireFs();
  const pattern = globOf(shown);
  const literal = pattern === null || (await fs.exists(path));
  if (pattern !== null && literal) await checkLiteral(s, path);
  // A name ending in a slash is a directory's (ls says "Not a directory" of "f.txt/"): the file
  // without the slash is one the client did not name. A missing name stays "No such file".
  if (literal && path !== ROOT && namesDirectory(shown) && !(await fs.isDirectory(path)) && (await fs.exists(path))) {
    throw notADirectory();
  }
  if (dirItself && literal) {
    // ls -d: a directory is one line of its own, named as the client wrote it. A link to one is
    // the link, as the listing of its directory shows it (fs/listing.ts linkStat) and as `ls -ld`
    // does; named with a slash ("dl/"), or as the cwd reached through it, the directory it leads to.
    let stat = await fs.stat(path);
    if (stat.type === "dir" && path !== ROOT && namesLinkItself(shown)) {
      const own = await fs.entryStat(path);
      if (own.type === "link") stat = own;
    }
    if (stat.type === "dir" || stat.type === "link") {
      return { path, entries: Entries.one(shown === "" ? "." : shown, stat), picked: false, itself: true };
    }
  }
  if (!literal) {
    const dir = dirname(path);
    if ((await fs.stat(dir)).type !== "dir") throw new FtpError(550, "No such file or directory");
    const matches = compileGlob(pattern);
    return { path: dir, entries: visible(s, await fs.listing(dir, ticket)).filter(matches), picked: true, itself: false };
  }
  return { path, entries: visible(s, await fs.listing(path, ticket)), picked: false, itself: false };
}


/** A path with pattern characters that names an entry as written ("Archive [2019]") is that entry:
 * the permission check before the command looked at the directory the pattern would pick from, so
 * the entry itself is checked here as LIST of any other path is (a hidden name is not found, and
 * a directory without list permission is not listed). */
async function checkLiteral(s: Session, path: VirtualPath): Promise<void> {
  const refusal = s.user === null ? null : await refusalLookingUp(s, s.user, LIST_DIR, path);
  if (refusal) throw new FtpError(refusal[0], refusal[1]);
}

/** Bytes of a LIST or MLSD line besides its name (some 60; more is harmless, see expectedBytes). */
const LINE_BYTES = 64;

/** About how many bytes the lines of `entries` take: each name and `perLine` bytes of the rest.
 * Larger than the listing is costs nothing (memory not written to is not taken), smaller only
 * that its buffer grows. */
function expectedBytes(entries: Entries, perLine: number): number {
  let n = 0;
  for (let k = 0; k < entries.length; k++) n += entries.name(k).length + perLine;
  return n;
}

async function sendListing(s: Session, path: VirtualPath, listing: ListingBuffer): Promise<void> {
  const data = listing.bytes();
  const t = new Transfer("list", path, data.length);
  let sending = false;
  try {
    await runTransfer(s, {
      transfer: t,
      opening: "Here comes the directory listing",
      // Methods, not named arrows: see test/hotpath.test.ts.
      async open() {
        return undefined;
      },
      move(tr, conn) {
        // The bytes may be pooled memory: sendBuffer gives them back once nothing can read them.
        sending = true;
        return sendBuffer(tr, conn, data, s.ctx.config.limits.stalledTimeout * 1000, listing);
      },
      done: "Directory send OK",
    });
  } finally {
    if (!sending) listing.release();
  }
}

/** Runs a listing with its share of the large-directory budget (fs/listgate.ts), given back
 * once it is sent or has failed. */
async function withTicket(s: Session, arg: string, run: (s: Session, arg: string, ticket: ListingTicket) => Promise<void>): Promise<void> {
  const ticket = new ListingTicket();
  try {
    await run(s, arg, ticket);
  } finally {
    ticket.release();
  }
}

function list(s: Session, arg: string): Promise<void> {
  return withTicket(s, arg, listWith);
}

async function listWith(s: Session, arg: string, ticket: ListingTicket): Promise<void> {
  const { path, entries } = await entriesOf(s, arg, ticket);
  const now = new Date();
  const listing = new ListingBuffer(expectedBytes(entries, LINE_BYTES));
  // One view, filled in for each entry in turn: no object per entry (fs/listing.ts Entries).
  const view = new EntryView();
  for (let k = 0; k < entries.length; k++) listing.add(formatListLine(entries.at(k, view), now));
  await sendListing(s, path, listing);
}

/** NLST's lines are names a client can use from where it is, for a multiple get (RFC 959 §4.1.3),
 * as ProFTPD and vsftpd give them: with a directory argument each name comes after the argument as
 * the client wrote it ("sub" gives "sub/f.txt"), a file argument comes back as written, and with
 * no argument (or ".") the names are bare. */
function nlst(s: Session, arg: string): Promise<void> {
  return withTicket(s, arg, nlstWith);
}

async function nlstWith(s: Session, arg: string, ticket: ListingTicket): Promise<void> {
  const shown = splitListArg(arg);
  const { path, entries, picked, itself } = await entriesOf(s, arg, ticket);
  const listing = new ListingBuffer();
  if (itself) {
    for (let k = 0; k < entries.length; k++) listing.add(entries.name(k));
  } else if (picked) {
    const prefix = shown.slice(0, lastComponentAt(shown)); // "sub/" of "sub/*.txt", as written
    for (let k = 0; k < entries.length; k++) listing.add(prefix + entries.name(k));
  } else if (shown === "" || shown === "." || shown === "./") {
    for (let k = 0; k < entries.length; k++) listing.add(entries.name(k));
  } else if ((await s.requireFs().stat(path)).type === "dir") {
    const prefix = shown.endsWith("/") ? shown : `${shown}/`;
    for (let k = 0; k < entries.length; k++) listing.add(prefix + entries.name(k));
  } else if (entries.length > 0) {
    listing.add(shown); // a file: its name as written (none when it is hidden)
  }
  await sendListing(s, path, listing);
}

/** MLST's line of the entry at `path`, whose perm fact comes from the user's permissions where it
 * is (RFC 3659 §7.5.5), so a client shows what the user may really do. */
async function mlsxLine(s: Session, path: VirtualPath, e: DirEntry): Promise<string> {
  const user = s.user;
  if (!user) return formatMlsxSelected(e, s.mlstFacts, { perm: "" });
  const name = basename(path);
  // Where the entry really is: a link on the way to it, or the link it is, leads to the
  // permissions of what it names.
  const perm = permFact(user, e.stat.type, await s.permsPath(dirname(path)), name, namePolicy(s.ctx.config.storage).denied(name), await s.permsPath(path));
  return formatMlsxSelected(e, s.mlstFacts, { perm });
}

function mlsd(s: Session, arg: string): Promise<void> {
  return withTicket(s, arg, mlsdWith);
}

async function mlsdWith(s: Session, arg: string, ticket: ListingTicket): Promise<void> {
  const path = s.resolve(arg);
  const fs = s.requireFs();
  // RFC 3659 §7.2.1: MLSD of something that is not a directory is an error (501); a path that
  // does not exist, or leaves the jail, is 550 as for every other command.
  if ((await fs.stat(path)).type !== "dir") throw new FtpError(501, "Not a directory");
  const entries = visible(s, await fs.listing(path, ticket));
  const format = mlsxFormatter(s.mlstFacts);
  const user = s.user;
  // The perm fact of a file depends only on the directory; a subdirectory's, a link's and a special
  // file's also on its own path (one may be a directory of dirPerms, which is never renamed),
  // unless the user has no per-directory permissions.
  // A file with a denied name (storage.deny) has its own, and so has a link to a file elsewhere
  // where the user has permissions of their own for a directory (its bytes are where it leads).
  const perms = new Map<string, string>();
  const linksLead = user !== null && hasOwnDirPerms(user);
  const sameForAll = user === null || user.dirPerms.length === 0;
  const { denied } = namePolicy(s.ctx.config.storage);
  // Facts of what the user may do where the directory really is (a link on the way resolved).
  const permsDir = await s.permsPath(path);
  const listing = new ListingBuffer(expectedBytes(entries, LINE_BYTES));
  const view = new EntryView();
  for (let k = 0; k < entries.length; k++) {
    const e = entries.at(k, view);
    const type = e.stat.type;
    let perm = "";
    if (user) {
      const own = type === "file" && denied(e.name);
      const linked = linksLead && type === "file" && entries.isLink(k);
      const shared = !own && !linked && (type === "file" || sameForAll);
      const cached = shared ? perms.get(type) : undefined;
      const real = linked ? await linkLeads(s, path, e.name) : undefined;
      perm = cached ?? (real === null ? "" : permFact(user, type, permsDir, e.name, own, real));
      if (cached === undefined && shared) perms.set(type, perm);
    }
    listing.add(format(e, { perm }));
  }
  await sendListing(s, path, listing);
}

/** Where the link `name` in `dir` leads, for its perm fact; null when its own path would be longer
 * than a path may be (`dir` near PATH_MAX): no command can name it, so nothing may be done to it,
 * and the listing goes on without it being looked up. */
async function linkLeads(s: Session, dir: VirtualPath, name: string): Promise<VirtualPath | null> {
  let linkPath: VirtualPath;
  try {
    linkPath = joinVirtual(dir, name);
  } catch (err) {
    if (err instanceof NameTooLong) return null;
    throw err;
  }
  return s.permsPath(linkPath);
}

async function mlst(s: Session, arg: string): Promise<void> {
  const path = s.resolve(arg);
  const fs = s.requireFs();
  let st = await fs.stat(path);
  // A name ending in a slash is a directory's, as for SIZE and MDTM: "f.txt/" is not the file
  // f.txt (stat(2) says ENOTDIR), and a link is taken for the directory it leads to.
  if (st.type !== "dir" && namesDirectory(arg) && !(await fs.isDirectory(path))) {
    throw notADirectory();
  }
  // A link to a directory is listed as a link (fs/listing.ts linkStat), and RMD and RNFR of its
  // name act on the link: its facts are the link's, as MLSD of its directory shows them, not the
  // directory's, whose "d" would promise an RMD that answers "Not a directory". Only where the
  // argument names the link, though: with a slash ("dl/", "dl/."), or as "." or ".." or nothing
  // (the cwd, reached through the link), it is the directory, as `ls -ld dl/` and lstat("dl/.")
  // see it and as LIST -d shows "dl/".
  if (st.type === "dir" && path !== ROOT && namesLinkItself(arg)) {
    const own = await fs.entryStat(path);
    if (own.type === "link") st = own;
  }
  const line = await mlsxLine(s, path, { name: path, stat: st });
  // RFC 3659 §7.2: the fact line starts with one space.
  s.write(formatBlockReply(250, `Listing ${path}`, [` ${line}`], "End"));
}

/** STAT <path>: the LIST output over the control connection (RFC 959 §4.1.3, code 213). */
export function statPath(s: Session, arg: string): Promise<void> {
  return withTicket(s, arg, statPathWith);
}

async function statPathWith(s: Session, arg: string, ticket: ListingTicket): Promise<void> {
  const { path, entries } = await entriesOf(s, arg, ticket);
  const now = new Date();
  // Built as a data listing is (data/listbuf.ts), not as one string per line and then one of them
  // all: a line has no CR, LF or NUL (formatListLine), so the block needs no more than this.
  const reply = new ListingBuffer(expectedBytes(entries, LINE_BYTES + 1));
  reply.add(`213-Status of ${stripControl(path)}:`);
  const view = new EntryView();
  for (let k = 0; k < entries.length; k++) reply.add(" " + formatListLine(entries.at(k, view), now));
  reply.add("213 End of status");
  s.writeBytes(reply.bytes(), () => reply.release());
  // The reply is the listing, held in memory until the client reads it: its share of the budget
  // stays taken until it has gone out (or the connection has), as a data listing's does until sent.
  await sentOrGone(s.socket);
}

/** Resolves once `socket` no longer holds more than its buffer takes (its 'drain'), or has closed. */
async function sentOrGone(socket: Socket): Promise<void> {
  if (!socket.writableNeedDrain || socket.destroyed) return;
  const stop = new AbortController();
  const opts = { signal: stop.signal };
  await Promise.race([once(socket, "drain", opts), once(socket, "close", opts)]).catch(() => undefined);
  stop.abort();
}

/** Listing a directory needs list there; an entry of it (LIST of a file) is covered the same way,
 * since the permissions at a file's path are those of its directory. */
const LIST_DIR = { need: ["list"], scope: "dir", path: listPath } as const;

/** STAT <path> is LIST over the control connection; plain STAT checks nothing, nor does STAT
 * during a transfer or a checksum, which answers the status whatever its argument. */
export const STAT_PERM = {
  need: ["list"],
  scope: "dir",
  path: (s: Session, arg: string) => (isBlank(arg) || busy(s) ? null : listPath(s, arg)),
} as const;

/** A transfer or a checksum is running: STAT runs beside the queue and answers the status. */
export function busy(s: Session): boolean {
  return s.transfer !== null || s.hashing !== null;
}

const base = { needsLogin: true, opensData: true, rfc: "RFC 959 §4.1.3" } as const;

/** The listing family. */
export const listingCommands: CommandSpec[] = [
  { ...base, verb: "LIST", arg: "optional", perm: LIST_DIR, handler: list, help: "LIST [<path>]" },
  { ...base, verb: "NLST", arg: "optional", perm: LIST_DIR, handler: nlst, help: "NLST [<path>]" },
  {
    ...base,
    verb: "MLSD",
    arg: "optional",
    perm: { need: ["list"], scope: "dir" },
    handler: mlsd,
    help: "MLSD [<path>]",
    rfc: "RFC 3659 §7",
  },
  {
    verb: "MLST",
    needsLogin: true,
    arg: "optional",
    // Facts of one entry are what a listing of its directory shows.
    perm: { need: ["list"] },
    handler: mlst,
    feat: () => ["TVFS"],
    help: "MLST [<path>]",
    rfc: "RFC 3659 §7",
  },
];
