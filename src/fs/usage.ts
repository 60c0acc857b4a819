/**
 * Counting what a home holds: bytes and regular files, walked with lstat (symlinks are not
 * followed, so nothing outside the home is counted) and a bounded number of filesystem calls in
 * flight, so a large home cannot flood the libuv thread pool that transfers use too.
 */
import { lstat, readdir, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { isUploadTemp } from "./contain.ts";
import { entryBytes, pinChild, pinDir, type PinnedDir } from "./pin.ts";
import type { RealPath } from "./types.ts";

/** What a home holds. */
export interface Usage {
  /** Sum of the sizes of its regular files. */
  readonly bytes: number;
  /** Number of its regular files (directories and symlinks are not counted). */
  readonly files: number;
  /** Set when the walk stopped at its deadline, or part-way (out of descriptors, or at a directory
   * of the server's own it may not read or search): the home holds at least this much. */
  readonly partial?: true;
  /** Set with `partial` when the walk stopped at a directory of the server's own it may not read
   * or search. */
  readonly unreadable?: true;
}

/** Runs at most `max` async steps at once, in arrival order. */
export class Limiter {
  private running = 0;
  private readonly waiting: (() => void)[] = [];

  constructor(private readonly max: number) {}

  /** Runs `step` once a slot is free. */
  async run<T>(step: () => Promise<T>): Promise<T> {
    if (this.running >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    this.running++;
    try {
      return await step();
    } finally {
      this.running--;
      this.waiting.shift()?.();
    }
  }
}

/** Linux's longest path (bytes, with its NUL): a directory whose path is not shorter is opened
 * through its parent. */
const PATH_MAX = 4096;

/** Directories past PATH_MAX a walk holds open one inside the other, at most: each is read through
 * the one above it, held meanwhile (as is each below a name that is not UTF-8). A home nested
 * deeper than that (only made on purpose, by renaming a deep tree into itself again and again) is
 * counted as one the descriptors ran out in. */
const DEEP_HELD = 32;

/** Filesystem calls in flight per scan. */
const SCAN_CONCURRENCY = 8;

/** Counts the regular files below `root`, at most SCAN_CONCURRENCY calls at once (and, across
 * scans, as many as `limiter` allows). Entries that vanish or cannot be read are skipped; so are
 * in-progress upload temp files (their bytes are counted when they land). A directory that cannot
 * be opened because the process is out of descriptors (EMFILE, ENFILE) is not one that cannot be
 * read: the walk stops there and the result is marked partial, as it is at a directory this process
 * owns yet may not read or search (ownDenial). Each directory is held
 * open while it is read (fs/pin.ts), opened without following its last part and checked to be
 * below `root`, and its files are looked at through it: a directory swapped for a link while the
 * walk runs is not followed out of the home. With a `deadline` (a Date.now() value), no directory is
 * read after it, and the result is marked partial. */
export async function scanUsage(root: string, limiter?: Limiter, deadline = Infinity): Promise<Usage> {
  let bytes = 0;
  let files = 0;
  let partial = false;
  let unreadable = false;
  let top: RealPath;
  try {
    top = (await realpath(root)) as RealPath;
  } catch {
    return { bytes, files };
  }
  const own = new Limiter(SCAN_CONCURRENCY);
  const io = <T>(op: () => Promise<T>): Promise<T> => own.run(() => (limiter ? limiter.run(op) : op()));
  const queue: string[] = [top];
  // Reads held directory `dir`: its files are counted, its directories queued by their paths.
  // `held`: directories past PATH_MAX held open above it, each until its own are read. `named`:
  // whether `dir.real` names it (no name on the way is other than UTF-8).
  const read = async (dir: PinnedDir, held = 0, named = true): Promise<void> => {
    const names: (string | Buffer)[] = [];
    const deep: (string | Buffer)[] = [];
    let firstDir: string | Buffer | undefined;
    // Names as bytes: one that is not UTF-8 (made by another program) decodes to another name,
    // which leads nowhere; left out, it and all below it would leave the count.
    const entries = await io(() => readdir(dir.at(), { withFileTypes: true, encoding: "buffer" })).catch(async (err: unknown) => {
      throw (await ownDenial(err, dir)) ? ownUnreadable() : err;
    });
    for (const e of entries) {
      const text = e.name.toString();
      const name = !text.includes("\uFFFD") || Buffer.from(text).equals(e.name) ? text : e.name;
      if (e.isDirectory()) {
        const sub = path.join(dir.real, text);
        // A directory renamed into a deep one lies deeper than any path can name (PATH_MAX): no
        // open by its path reaches it, and left out, what it holds would leave the count at the
        // next recount (RNTO /B /A/<4000 bytes>/B, then upload as much again). It is read through
        // this one, still held; so is one no string path names.
        firstDir ??= name;
        if (named && typeof name === "string" && Buffer.byteLength(sub) < PATH_MAX) queue.push(sub);
        else deep.push(name);
      } else if (e.isFile() && !isUploadTemp(text)) names.push(name);
    }
    const at = (name: string | Buffer): string | Buffer => (typeof name === "string" ? dir.at(name) : entryBytes(dir, name));
    // Every name is looked up through the directory: one it may not search (a mode such as 0600)
    // hides all it holds as one it may not read does.
    const probe = names[0] ?? firstDir;
    if (probe !== undefined) {
      await io(() => lstat(at(probe))).catch(async (err: unknown) => {
        if (await ownDenial(err, dir)) throw ownUnreadable();
      });
    }
    await Promise.all(
      names.map(async (name) => {
        const s = await io(() => lstat(at(name))).catch(() => null);
        if (s?.isFile()) {
          bytes += s.size;
          files++;
        }
      }),
    );
    if (deep.length > 0 && held >= DEEP_HELD) throw Object.assign(new Error("directories nested too deep to count"), { code: "ENAMETOOLONG" });
    for (const name of deep) {
      const sub = await io(() => pinChild(dir, name)).catch((err: unknown) => {
        if (stopsWalk(err)) throw err;
        return null; // gone meanwhile, or swapped for a link: as a queued one would be
      });
      if (sub === null) continue;
      try {
        await read(sub, held + 1, named && typeof name === "string");
      } finally {
        sub.release();
      }
    }
  };
  const step = async (dirPath: string): Promise<void> => {
    if (Date.now() > deadline) {
      partial = true;
      queue.length = 0;
      return;
    }
    const dir = await io(() => pinDir(top, dirPath as RealPath, false));
    try {
      await read(dir);
    } finally {
      dir.release();
    }
  };
  await new Promise<void>((resolve) => {
    let active = 0;
    const pump = (): void => {
      while (active < SCAN_CONCURRENCY && queue.length > 0) {
        active++;
        void step(queue.pop() as string)
          .catch((err: unknown) => {
            if (!stopsWalk(err)) return;
            partial = true;
            if ((err as NodeJS.ErrnoException).code === OWN_UNREADABLE) unreadable = true;
            queue.length = 0;
          })
          .finally(() => {
            active--;
            pump();
          });
      }
      if (active === 0 && queue.length === 0) resolve();
    };
    pump();
  });
  if (!partial) return { bytes, files };
  return unreadable ? { bytes, files, partial, unreadable } : { bytes, files, partial };
}

/** Whether `err`, from reading or searching held directory `dir`, is a refusal (EACCES, EPERM)
 * of a directory this process owns: its owner's bits were taken away, by a client of this server
 * (SITE CHMOD 000 or 600) or by hand, and what it holds is there, uncounted. Skipped, as one of
 * another account's is (lost+found at the top of a volume), it would leave the count at the next
 * recount, and room for as much again would be free until its mode is given back. */
async function ownDenial(err: unknown, dir: PinnedDir): Promise<boolean> {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (code !== "EACCES" && code !== "EPERM") return false;
  return (await stat(dir.at()).catch(() => null))?.uid === process.geteuid?.();
}

/** The code of the failure that an ownDenial stops the walk with. */
const OWN_UNREADABLE = "EOWNUNREADABLE";

function ownUnreadable(): Error {
  return Object.assign(new Error("a directory of the server's own that it may not read or search"), { code: OWN_UNREADABLE });
}

/** Whether a failure stops a walk, its result partial: out of descriptors (EMFILE, ENFILE), a
 * directory too deep for its path where it cannot be read through its parent (ENAMETOOLONG, no
 * /proc), or one of the server's own it may not read or search (ownDenial): what it holds is there,
 * uncounted. Anything else is a directory gone or swapped for a link meanwhile, skipped. */
function stopsWalk(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return code === "EMFILE" || code === "ENFILE" || code === "ENAMETOOLONG" || code === OWN_UNREADABLE;
}
