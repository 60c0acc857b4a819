/**
 * Atomic file replacement: write a temp file in the same directory, fsync it, rename it over the
 * target, then fsync the directory. A reader sees the old file or the new one, never a partial one.
 */
import { randomBytes } from "node:crypto";
import { open, rename, unlink } from "node:fs/promises";
import path from "node:path";
import { makeDirs } from "../fs/mkdirs.ts";

/** Replaces `file` with `data` atomically (file mode `mode`, parent created if missing). */
export async function writeFileAtomic(file: string, data: string, mode = 0o600): Promise<void> {
  const dir = path.dirname(file);
  await makeDirs(dir, 0o700);
  const temp = path.join(dir, `${path.basename(file)}.tmp-${process.pid}-${randomBytes(6).toString("hex")}`);
  try {
    const handle = await open(temp, "wx", mode);
    try {
      await handle.writeFile(data, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await syncDir(dir);
}

/** Flushes a directory entry change to disk; best effort (not every platform allows it). */
async function syncDir(dir: string): Promise<void> {
  try {
    const handle = await open(dir, "r");
    try {
      await handle.sync();
    } finally {
      await handle.close();
    }
  } catch {
    // Some file systems refuse fsync on a directory; the rename itself is still atomic.
  }
}
