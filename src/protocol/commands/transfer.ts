/**
 * File transfers: RETR, STOR, STOU, APPE (RFC 959 §4.1.3), REST STREAM (RFC 3659 §5) and ABOR.
 * Downloads open the file before 150 (a missing file is a plain 550); uploads open it once the data
 * connection is up. A replaced file is written to a temp name and renamed on success (fs/), so a
 * failed upload never destroys the file it was replacing.
 */
import { namePolicy } from "../../auth/perms.ts";
import { Transfer, receiveFile, sendFile } from "../../data/transfer.ts";
import type { NameFilter } from "../../fs/jail.ts";
import type { Upload, UploadOptions, VirtualPath } from "../../fs/types.ts";
import { basename, dirname, joinVirtual, NAMES_DIRECTORY, namesDirectory, ROOT } from "../../fs/vpath.ts";
import { isBlank, lacksOverwrite } from "../dispatcher.ts";
import { FtpError } from "../errors.ts";
import type { CommandSpec } from "../registry.ts";
import { admitUpload, downloadHook, type UploadLimits } from "../limits.ts";
import type { Session } from "../session.ts";
import type { DataConnection } from "../../data/raw.ts";
import { badOffset, modeName, runTransfer, type TransferPlan } from "./xfer.ts";

/** In TYPE A the marker would count the converted stream's bytes, not the file's (RFC 3659
 * §5.2); berth does not translate one into the other, and resumes in TYPE I only (as ProFTPD). */
const ASCII_RESTART = "Resuming is not supported in ASCII mode; use TYPE I";

/** The REST offset for the transfer about to start (REST, then TYPE A, is refused here). */
function restartOffset(s: Session): number {
  if (s.restOffset > 0 && s.type === "A") throw new FtpError(554, ASCII_RESTART);
  return s.restOffset;
}

function stalledMs(s: Session): number {
  return s.ctx.config.limits.stalledTimeout * 1000;
}

async function retr(s: Session, arg: string): Promise<void> {
  const path = s.resolve(arg);
  // As for an upload (uploadPath): the path without the slash would be a file the client did not
  // name, and open(2) refuses "f/" for a file (ENOTDIR), as a directory is refused.
  if (namesDirectory(arg)) throw new FtpError(550, `Not a plain file: ${NAMES_DIRECTORY}`);
  const offset = restartOffset(s);
  const dl = await s.requireFs().openDownload(path);
  const hook = downloadHook(s);
  try {
    if (offset > dl.size) throw badOffset();
    // Methods, not named arrows: see test/hotpath.test.ts.
    await runTransfer(s, {
      transfer: new Transfer("download", path, dl.size - offset),
      opening: `Opening ${modeName(s)} mode data connection for ${basename(path)} (${dl.size} bytes)`,
      async open() {
        return undefined;
      },
      move(t, conn) {
        return sendFile(t, conn, dl.handle, offset, s.type === "A", stalledMs(s), hook, s.ctx.config.transfer.sendfile);
      },
    });
  } finally {
    hook?.release();
    await dl.handle.close().catch(() => undefined);
  }
}

async function upload(s: Session, path: VirtualPath, opts: UploadOptions, opening: string, unique?: UniqueTarget): Promise<void> {
  const plan = new UploadPlan(s, path, opts, opening, unique ?? null);
  try {
    await runTransfer<Upload>(s, plan);
  } finally {
    await plan.limits?.finish();
  }
}

/** An upload's steps (xfer.ts). A class, not an object literal: a literal with getters defines
 * them anew, in V8's runtime, for every upload (and see test/hotpath.test.ts). */
class UploadPlan implements TransferPlan<Upload> {
  readonly transfer: Transfer;
  /** The size ALLO announced, if any (the quota's admission). */
  private readonly announced: number | null;
  /** Quota and bandwidth (protocol/limits.ts): admitted before 150, settled after the last reply. */
  limits: UploadLimits | null = null;
  /** STOU's texts name the file, whose name is settled once it is created: set by open(). */
  opening: string;
  done = "Transfer complete";

  constructor(
    private readonly s: Session,
    private readonly path: VirtualPath,
    private readonly opts: UploadOptions,
    opening: string,
    private readonly unique: UniqueTarget | null,
  ) {
    this.announced = s.allocated;
    this.transfer = new Transfer("upload", path, this.announced);
    this.opening = opening;
  }

  async open(): Promise<Upload> {
    const { s, unique } = this;
    const limits = await admitUpload(s, this.path, this.opts, this.announced);
    this.limits = limits;
    const up = unique ? await unique.open(s, this.transfer) : await s.requireFs().openUpload(this.path, this.opts);
    if (limits.follows) await limits.opened(up, this.transfer);
    if (unique) {
      this.opening = unique.opening;
      this.done = unique.done;
    }
    return up;
  }

  move(t: Transfer, conn: DataConnection, up: Upload): Promise<number> {
    const s = this.s;
    return receiveFile(t, conn, up.handle, up.position, s.type === "A", stalledMs(s), this.limits?.hook ?? null, s.ctx.config.transfer.uploadThreads);
  }

  commit(up: Upload): Promise<void> {
    return this.limits ? this.limits.commit(up) : up.commit();
  }

  abort(up: Upload): Promise<void> {
    return this.limits ? this.limits.abort(up) : up.abort();
  }
}

/** STOU's file: a free name in `dir`, settled when the file is created (JailedFs.openUnique
 * takes the next free one if another session created this one meanwhile). */
class UniqueTarget {
  constructor(
    private readonly dir: VirtualPath,
    private readonly wanted: string,
    private name: string,
    /** The file is in the cwd: replies name it bare, else by its whole path. */
    private readonly inCwd: boolean,
  ) {}

  get path(): VirtualPath {
    return joinVirtual(this.dir, this.name);
  }

  private get shown(): string {
    return this.inCwd ? this.name : this.path;
  }

  /** RFC 1123 §4.1.2.9: the 150 reply names the file as "FILE: name". */
  get opening(): string {
    return `FILE: ${this.shown}`;
  }

  get done(): string {
    return `Transfer complete (unique file name: ${this.shown})`;
  }

  async open(s: Session, t: Transfer): Promise<Upload> {
    const { name, upload } = await s.requireFs().openUnique(this.dir, this.wanted, this.name, namesAllowed(s));
    this.name = name;
    t.path = this.path;
    return upload;
  }
}

/** A name ending in "/" (or "\\", read as "/") is a directory's, as open(2) takes it: the path
 * without it would make or change a file the client did not name. The root stays the file
 * system's to refuse (550 Is a directory). */
function uploadPath(s: Session, arg: string): VirtualPath {
  const path = s.resolve(arg);
  if (path !== ROOT && namesDirectory(arg)) throw new FtpError(553, `File name not allowed: ${NAMES_DIRECTORY}`);
  return path;
}

async function stor(s: Session, arg: string): Promise<void> {
  const path = uploadPath(s, arg);
  // Without overwrite the dispatcher saw no file there; exclusive keeps one that appears meanwhile.
  const exclusive = await lacksOverwrite(s, UPLOAD, path);
  const opts = { kind: "store", offset: restartOffset(s), exclusive } as const;
  await upload(s, path, opts, `Ok to send data for ${basename(path)}`);
}

async function appe(s: Session, arg: string): Promise<void> {
  // RFC 3659 §5.3: APPE after REST acts exactly as STOR would.
  if (s.restOffset > 0) return stor(s, arg);
  const path = uploadPath(s, arg);
  // As for STOR: without overwrite, a file that appears after the check is not appended to.
  const exclusive = await lacksOverwrite(s, UPLOAD, path);
  await upload(s, path, { kind: "append", offset: 0, exclusive }, `Ok to append data to ${basename(path)}`);
}

async function stou(s: Session, arg: string): Promise<void> {
  const start = stouPath(s, arg);
  const dir = dirname(start);
  const wanted = basename(start);
  const target = new UniqueTarget(dir, wanted, await s.requireFs().uniqueName(dir, wanted, namesAllowed(s)), dir === s.cwd);
  await upload(s, target.path, { kind: "store", offset: 0, exclusive: true }, target.opening, target);
}

/** REST <decimal offset>: leading zeros are allowed, as in any number the client writes. An offset
 * past 2^53 - 1 is refused, as ALLO's count is: no file is that large, and as a number it would be
 * rounded to another offset than the one the client sent. */
function rest(s: Session, arg: string): void {
  const written = arg.trim();
  const offset = /^\d+$/.test(written) ? Number(written) : NaN;
  if (!Number.isSafeInteger(offset)) {
    throw new FtpError(501, Number.isNaN(offset) ? "REST needs a byte offset" : `REST offset too large (at most ${Number.MAX_SAFE_INTEGER})`);
  }
  if (offset > 0 && s.type === "A") throw new FtpError(501, ASCII_RESTART);
  s.restOffset = offset;
  s.reply(350, `Restarting at ${s.restOffset}. Send STOR or RETR to initiate transfer`);
}

async function abor(s: Session): Promise<void> {
  const t = s.transfer;
  if (t) {
    t.abort("abort");
    await t.done; // the transfer writes its 426 first
    s.reply(226, "ABOR successful");
    return;
  }
  const h = s.hashing;
  if (h) {
    h.cancel();
    // RFC 959 §4.1.3: ABOR closes the data connection whatever it stops, as it does below with
    // nothing running. One opened before the checksum (EPSV, then HASH) would otherwise hold its
    // port until the next transfer or the end of the session.
    s.setChannel(null);
    await h.replied; // the checksum command answers 426 first
    s.reply(226, "ABOR successful");
    return;
  }
  if (s.channel) {
    s.setChannel(null);
    s.reply(226, s.stoppedAhead ? "ABOR successful" : "Data connection closed");
    return;
  }
  // This ABOR came behind other commands during a transfer or a checksum and stopped it then
  // (Session.stopForQueuedAborOrQuit); it answers now, in its turn, after them.
  if (s.stoppedAhead) return s.reply(226, "ABOR successful");
  s.reply(225, "No transfer to abort");
}

/** The names STOU may make: neither hidden nor denied (storage.hide, storage.deny), as the
 * dispatcher checked of the name asked for. */
function namesAllowed(s: Session): NameFilter {
  const { hidden, denied } = namePolicy(s.ctx.config.storage);
  return (name) => !hidden(name) && !denied(name);
}

/** The name STOU starts from (it adds ".1" … when taken): the argument as a path ("sub/name" is
 * "name" in "sub"), "file" in the directory an argument ending in "/" (or "\\") names (never a
 * file beside it under the directory's name), or "file" in the cwd without one. A "." or ".."
 * alone names the cwd or its parent, and any argument that leads to the root (a "~") the home:
 * directories as well, so "STOU ." uploads into the cwd, with its permissions, not beside it. */
function stouPath(s: Session, arg: string): VirtualPath {
  if (isBlank(arg)) return joinVirtual(s.cwd, "file");
  const path = s.resolve(arg);
  const names = namesDirectory(arg) || arg === "." || arg === ".." || path === ROOT;
  return names ? joinVirtual(path, "file") : path;
}

const base = { needsLogin: true, arg: "required", opensData: true, rfc: "RFC 959 §4.1.3" } as const;
// Writing into an existing file (STOR over it, REST+STOR, APPE) needs overwrite as well, as in
// SFTPGo: an upload-only drop box can add files but not change anyone's.
const UPLOAD = { need: ["upload"], creates: true, named: true, overwrite: true, follows: true } as const;

/** The transfer family. */
export const transferCommands: CommandSpec[] = [
  { ...base, verb: "RETR", perm: { need: ["download"], named: true, follows: true }, handler: retr, help: "RETR <path>" },
  { ...base, verb: "STOR", perm: UPLOAD, handler: stor, help: "STOR <path>" },
  { ...base, verb: "APPE", perm: UPLOAD, handler: appe, help: "APPE <path>" },
  {
    ...base,
    verb: "STOU",
    arg: "optional",
    perm: { need: ["upload"], creates: true, named: true, path: stouPath },
    handler: stou,
    help: "STOU [<name>]",
    rfc: "RFC 959 §4.1.3, RFC 1123 §4.1.2.9",
  },
  {
    verb: "REST",
    needsLogin: true,
    arg: "required",
    handler: rest,
    feat: () => ["REST STREAM"],
    help: "REST <offset>",
    rfc: "RFC 3659 §5",
  },
  {
    verb: "ABOR",
    needsLogin: true,
    arg: "none",
    bypassesQueue: true,
    handler: abor,
    help: "ABOR",
    rfc: "RFC 959 §4.1.3",
  },
];
