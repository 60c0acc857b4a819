/**
 * Atomic file replacement: write a temp file in the same directory, fsync it, rename it over the
 * target, then fsync the directory. A reader sees the old file or the new one, never a partial one.
 * As `vipw` and shadow's tools do with /etc/passwd, the file replaced keeps what the operator gave
 * it: its mode, its owner and group (when the process may set them: root, or the owner itself),
 * and, when its path is a symbolic link, its place (the link's target is replaced; the link stays).
 * A new file made by root takes the owner of its directory.
 */
import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { open, readdir, readlink, rename, stat, unlink, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { errnoCode } from "../config/syserr.ts";
import { makeDirs } from "../fs/mkdirs.ts";
import { fsyncDirectory } from "../fs/sync.ts";

/** The text of `file`, which must be a regular file: a FIFO, a device or a directory there is
 * refused (code EFTYPE, or EISDIR) at once, where reading it would block for good or fail late. */
export async function readRegularFile(file: string): Promise<string> {
  // O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer.
  const handle = await open(file, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  try {
    const st = await handle.stat();
    if (st.isDirectory()) throw Object.assign(new Error(`${file}: is a directory`), { code: "EISDIR" });
    if (!st.isFile()) throw Object.assign(new Error(`${file}: not a regular file`), { code: "EFTYPE" });
    return await handle.readFile("utf8");
  } finally {
    await handle.close().catch(() => undefined);
  }
}

/** Replaces `file` with `data` atomically (file mode `mode` when it is new, parent created if missing).
 * `locked`: the caller holds the file's lock, so no other writer is at work, and a temp file of
 * this one beside it is what a writer killed midway left: it goes. */
export async function writeFileAtomic(file: string, data: string, mode = 0o600, locked = false): Promise<void> {
  const target = await followLink(file);
  const dir = path.dirname(target);
  await makeDirs(dir, 0o700);
  const old = await stat(target).catch((err: unknown) => {
    if (errnoCode(err) === "ENOENT") return null;
    throw err;
  });
  // Only a regular file is replaced: renamed over, a device (`/dev/null` given as the file), a FIFO
  // or a directory would be gone for everyone else too.
  if (old !== null && !old.isFile()) {
    throw Object.assign(new Error(`${target}: not a regular file`), { code: old.isDirectory() ? "EISDIR" : "EFTYPE" });
  }
  const prefix = `${path.basename(target)}.tmp-`;
  if (locked) {
    for (const name of await readdir(dir).catch(() => [] as string[])) {
      if (name.startsWith(prefix)) await unlink(path.join(dir, name)).catch(() => undefined);
    }
  }
  const temp = path.join(dir, `${prefix}${process.pid}-${randomBytes(6).toString("hex")}`);
  try {
    const handle = await open(temp, "wx", mode);
    try {
      if (old !== null) await keepOwnerAndMode(handle, old);
      else await takeDirOwner(handle, dir);
      await handle.writeFile(data, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    await rename(temp, target);
  } catch (err) {
    await unlink(temp).catch(() => undefined);
    throw err;
  }
  await syncDir(dir);
}

/** What a path names once the symbolic links at its end are followed (to a file that may not
 * exist yet); the path itself when it is no link. */
async function followLink(file: string): Promise<string> {
  let at = file;
  for (let hops = 0; hops < 40; hops++) {
    let target: string;
    try {
      target = await readlink(at);
    } catch (err) {
      // EINVAL: not a link; ENOENT: nothing there yet. Either way this is the file to write.
      const code = errnoCode(err);
      if (code === "EINVAL" || code === "ENOENT") return at;
      throw err;
    }
    at = path.resolve(path.dirname(at), target);
  }
  throw Object.assign(new Error(`too many symbolic links: ${file}`), { code: "ELOOP" });
}

/** Gives the new file the mode and, where allowed, the owner and group of the one it replaces. */
async function keepOwnerAndMode(handle: FileHandle, old: { mode: number; uid: number; gid: number }): Promise<void> {
  const mine = await handle.stat();
  if (mine.uid !== old.uid || mine.gid !== old.gid) {
    // Root writing a file the server's user owns (`sudo berth user add`) hands it back; anyone
    // else cannot give a file away (EPERM), and the file is theirs as it always was.
    await handle.chown(old.uid, old.gid).catch((err: unknown) => {
      if (errnoCode(err) !== "EPERM") throw err;
    });
  }
  await handle.chmod(old.mode & 0o777);
}

/** A new file made by root in a directory another user owns (`/etc/berth/users`, chowned to the
 * server's user) goes to that user, who must read it; made by anyone else, it is theirs. */
async function takeDirOwner(handle: FileHandle, dir: string): Promise<void> {
  if (process.geteuid?.() !== 0) return;
  const owner = await stat(dir);
  if (owner.uid !== 0 || owner.gid !== 0) await handle.chown(owner.uid, owner.gid);
}

/** Flushes a directory entry change to disk; best effort (not every platform allows it). */
async function syncDir(dir: string): Promise<void> {
  // Some file systems refuse fsync on a directory; the rename itself is still atomic.
  await fsyncDirectory(dir).catch(() => undefined);
}
