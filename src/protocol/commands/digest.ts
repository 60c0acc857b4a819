/**
 * Checksums of files on the server, so a client can check a transfer without moving the file
 * again: HASH and OPTS HASH (draft-bryan-ftpext-hash-02), and the XCRC, XMD5, XSHA1, XSHA256 and
 * XSHA512 commands ProFTPD (mod_digest) offers and clients such as WinSCP use. The bytes are read
 * from the file as a download would read them (the jail, the download permission, hidden names)
 * and hashed on a worker thread (fs/digest.ts).
 */
import { digestFile, DigestError, HASH_ALGORITHMS, hashAlgorithm, type HashAlgorithm } from "../../fs/digest.ts";
import type { VirtualPath } from "../../fs/types.ts";
import { namesDirectory } from "../../fs/vpath.ts";
import { FtpError } from "../errors.ts";
import type { CommandSpec } from "../registry.ts";
import type { Session } from "../session.ts";

/** A path argument as some clients send it when it holds a space (WinSCP: `HASH "a b.txt"`).
 * Only then: WinSCP quotes a name with a space and no other, so a name without one that starts
 * and ends with a double quote is a name with quotes in it (`"q"`, as a listing shows it), and
 * read as `q` it would be answered with the checksum of another file. */
function unquote(arg: string): string {
  return arg.length >= 2 && arg.startsWith('"') && arg.endsWith('"') && arg.includes(" ") ? arg.slice(1, -1) : arg;
}

/** 502 where transfer.checksums is off (the commands are then left out of FEAT too). */
function checkEnabled(s: Session): void {
  if (!s.ctx.config.transfer.checksums) throw new FtpError(502, "Checksums are turned off on this server");
}

/** Bytes `start` to `end` (exclusive) of regular file `path`, hashed with `algo`, handed to
 * `answer` (which writes the reply). While the hashing runs, ABOR and QUIT can stop it
 * (Session.hashing); a checksum stopped so is answered 426 here, before ABOR's own reply. */
async function checksum(
  s: Session,
  path: VirtualPath,
  algo: HashAlgorithm,
  range: ((size: number) => [number, number]) | null,
  answer: (hex: string, start: number, end: number) => void,
): Promise<void> {
  const dl = await s.requireFs().openDownload(path);
  let replied = (): void => undefined;
  try {
    // The connection may have gone while the command was checked or its file opened: the session
    // was torn down with no checksum yet to stop, and one started now would hash the whole file
    // for nobody, ahead of every other session's.
    if (s.closed) return;
    const [start, end] = range ? range(dl.size) : [0, dl.size];
    const job = digestFile(dl.handle.fd, algo, start, end);
    s.hashing = { cancel: job.cancel, replied: new Promise<void>((resolve) => (replied = resolve)), path };
    s.runWaitingBeside();
    let hex: string;
    try {
      hex = await job.result;
    } finally {
      s.hashing = null;
      s.restartIdle();
    }
    answer(hex, start, end);
  } catch (err) {
    if (err instanceof DigestError) {
      if (err.kind === "cancelled") return s.reply(426, "Checksum aborted");
      if (err.kind === "busy") throw new FtpError(450, "Too many checksums in progress; try again later");
      throw new FtpError(451, "Checksum failed: the file could not be read", `${err.code ?? "EIO"}: ${err.message}`);
    }
    throw err;
  } finally {
    replied();
    await dl.handle.close().catch(() => undefined);
  }
}

/** The file a checksum command reads. A name ending in a slash is a directory's, as for RETR: the
 * file without the slash is one the client did not name (open(2) refuses "f/" for a file). */
function filePath(s: Session, text: string): VirtualPath {
  const path = s.resolve(text);
  if (namesDirectory(text)) throw new FtpError(550, "Not a regular file");
  return path;
}

/** A directory or anything else that is not a regular file gets 553 from HASH (the draft's code
 * for a directory); the file family's 550 "Not a regular file" is turned into it. */
function notAFile(err: unknown): never {
  if (err instanceof FtpError && err.code === 550 && err.message === "Not a regular file") throw new FtpError(553, "Not a regular file");
  throw err;
}

async function hash(s: Session, arg: string): Promise<void> {
  checkEnabled(s);
  const algo = s.hashAlgo;
  try {
    await checksum(s, filePath(s, unquote(arg)), algo, null, (hex, start, end) => {
      // The draft's range is inclusive; an empty file shows 0-0.
      s.reply(213, `${algo} ${start}-${Math.max(end - 1, start)} ${hex} ${arg}`);
    });
  } catch (err) {
    notAFile(err);
  }
}

function optsHash(s: Session, value: string): void {
  if (!s.ctx.config.transfer.checksums) {
    s.reply(501, "Option not understood");
    return;
  }
  if (value === "") {
    s.reply(200, s.hashAlgo);
    return;
  }
  const algo = hashAlgorithm(value);
  if (algo === null) {
    s.reply(501, "Unknown algorithm, current selection not changed");
    return;
  }
  s.hashAlgo = algo;
  s.reply(200, algo);
}

/** `<path> [<start> <end>]`: the path, and the range when the last two words are byte offsets.
 * The path is all before the one space ahead of them, as written, as every command takes a path:
 * `trail  0 4` is the file "trail ", never "trail". The end is kept as written too (sixteen digits
 * go past 2^53, where a number is rounded: a reply naming the end would name another one). */
function splitRange(arg: string): { path: string; range: [number, number] | null; endText: string } {
  const m = /^(.+) (\d{1,16}) (\d{1,16})$/.exec(arg);
  if (m === null) return { path: unquote(arg), range: null, endText: "" };
  return { path: unquote(m[1] as string), range: [Number(m[2]), Number(m[3])], endText: m[3] as string };
}

/** XCRC and the others: `213 <HEX>` of the whole file or of bytes start to end (exclusive). */
async function xdigest(s: Session, arg: string, algo: HashAlgorithm): Promise<void> {
  checkEnabled(s);
  const { path, range, endText } = splitRange(arg);
  const within = range
    ? (size: number): [number, number] => {
        const [start, end] = range;
        if (end > size) throw new FtpError(501, `End ${endText} is beyond the end of the file (${size} bytes)`);
        if (start >= end) throw new FtpError(501, "Start must be below end");
        return range;
      }
    : null;
  await checksum(s, filePath(s, path), algo, within, (hex) => s.reply(213, hex.toUpperCase()));
}

/** The path a checksum command reads, for the permission check; none where checksums are off
 * (the handler answers 502 to everyone alike). */
function hashPath(s: Session, arg: string): VirtualPath | null {
  return s.ctx.config.transfer.checksums ? s.resolve(unquote(arg)) : null;
}

function xPath(s: Session, arg: string): VirtualPath | null {
  return s.ctx.config.transfer.checksums ? s.resolve(splitRange(arg).path) : null;
}

const base = { needsLogin: true, arg: "required", checksum: true } as const;
const READ = { need: ["download"], named: true, follows: true } as const;
const X_RFC = "none (as ProFTPD mod_digest)";

function xCommand(verb: string, algo: HashAlgorithm, aliasOf?: string): CommandSpec {
  const spec = { ...base, verb, perm: { ...READ, path: xPath }, handler: (s: Session, a: string) => xdigest(s, a, algo), rfc: X_RFC };
  if (aliasOf !== undefined) return { ...spec, help: `${verb}: same as ${aliasOf}`, aliasOf };
  // One FEAT line per command: clients look for the verb they would use.
  return { ...spec, feat: (s) => (s.ctx.config.transfer.checksums ? [verb] : []), help: `${verb} <path> [<start> <end>]` };
}

/** The FEAT line: every algorithm, the session's marked with "*". */
function hashFeature(s: Session): string[] {
  if (!s.ctx.config.transfer.checksums) return [];
  return [`HASH ${HASH_ALGORITHMS.map((a) => (a === s.hashAlgo ? `${a}*` : a)).join(";")}`];
}

/** The checksum family; OPTS HASH is answered through optsHash (commands/misc.ts). */
export const digestCommands: CommandSpec[] = [
  {
    ...base,
    verb: "HASH",
    perm: { ...READ, path: hashPath },
    handler: hash,
    feat: hashFeature,
    help: "HASH <path>",
    rfc: "draft-bryan-ftpext-hash-02",
  },
  xCommand("XCRC", "CRC32"),
  xCommand("XMD5", "MD5"),
  xCommand("XSHA1", "SHA-1"),
  xCommand("XSHA", "SHA-1", "XSHA1"),
  xCommand("XSHA256", "SHA-256"),
  xCommand("XSHA512", "SHA-512"),
];

export { optsHash };
