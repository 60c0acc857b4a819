/**
 * Counting what a home holds: bytes and regular files, walked with lstat (symlinks are not
 * followed, so nothing outside the home is counted) and a bounded number of filesystem calls in
 * flight, so a large home cannot flood the libuv thread pool that transfers use too.
 */
import { lstat, readdir, realpath } from "node:fs/promises";
import path from "node:path";
import { isUploadTemp } from "./contain.ts";
import { pinDir } from "./pin.ts";
import type { RealPath } from "./types.ts";

/** What a home holds. */
export interface Usage {
  /** Sum of the sizes of its regular files. */
  readonly bytes: number;
  /** Number of its regular files (directories and symlinks are not counted). */
  readonly files: number;
  /** Set when the walk stopped at its deadline, or ran out of descriptors part-way: the home holds
   * at least this much. */
  readonly partial?: true;
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

/** Filesystem calls in flight per scan. */
const SCAN_CONCURRENCY = 8;

/** Counts the regular files below `root`, at most SCAN_CONCURRENCY calls at once (and, across
 * scans, as many as `limiter` allows). Entries that vanish or cannot be read are skipped; so are
 * in-progress upload temp files (their bytes are counted when they land). A directory that cannot
 * be opened because the process is out of descriptors (EMFILE, ENFILE) is not one that cannot be
 * read: the walk stops there and the result is marked partial. Each directory is held
 * open while it is read (fs/pin.ts), opened without following its last part and checked to be
 * below `root`, and its files are looked at through it: a directory swapped for a link while the
 * walk runs is not followed out of the home. With a `deadline` (a Date.now() value), no directory is
 * read after it, and the result is marked partial. */
export async function scanUsage(root: string, limiter?: Limiter, deadline = Infinity): Promise<Usage> {
  let bytes = 0;
  let files = 0;
  let partial = false;
  let top: RealPath;
  try {
    top = (await realpath(root)) as RealPath;
  } catch {
    return { bytes, files };
  }
  const own = new Limiter(SCAN_CONCURRENCY);
  const io = <T>(op: () => Promise<T>): Promise<T> => own.run(() => (limiter ? limiter.run(op) : op()));
  const queue: string[] = [top];
  const step = async (dirPath: string): Promise<void> => {
    if (Date.now() > deadline) {
      partial = true;
      queue.length = 0;
      return;
    }
    const dir = await io(() => pinDir(top, dirPath as RealPath, false));
    try {
      const names: string[] = [];
      for (const e of await io(() => readdir(dir.at(), { withFileTypes: true }))) {
        if (e.isDirectory()) queue.push(path.join(dir.real, e.name));
        else if (e.isFile() && !isUploadTemp(e.name)) names.push(e.name);
      }
      await Promise.all(
        names.map(async (name) => {
          const s = await io(() => lstat(dir.at(name))).catch(() => null);
          if (s?.isFile()) {
            bytes += s.size;
            files++;
          }
        }),
      );
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
            const code = (err as NodeJS.ErrnoException | null)?.code;
            if (code !== "EMFILE" && code !== "ENFILE") return;
            partial = true;
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
  return partial ? { bytes, files, partial } : { bytes, files };
}
