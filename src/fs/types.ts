import type { Stats } from "node:fs";
import type { FileLike } from "./quick.ts";

/** A normalized absolute path as the client sees it: starts with "/", no "." or ".." segments,
 * no trailing slash except the root itself. Only `fs/vpath.ts` makes these. */
export type VirtualPath = string & { readonly __brand: "VirtualPath" };

/** An absolute path on the server's disk, already checked to lie inside a jail root.
 * Only `fs/contain.ts` makes these; it never leaves `fs/` except in log details. */
export type RealPath = string & { readonly __brand: "RealPath" };

/** What a listing needs to know of one entry. */
export interface EntryStat {
  readonly type: "file" | "dir" | "link" | "other";
  readonly size: number;
  /** Modification time in whole milliseconds since the epoch, truncated as `ls` and stat(1) cut
   * nanoseconds (never rounded up: 59.9997 s is second 59 of its minute, not the next minute);
   * a number, not a Date: a listing makes one per entry. */
  readonly mtimeMs: number;
  /** Permission bits (mode & 0o7777); of an "other" entry its file type bits too (S_IFMT: a FIFO,
   * a socket, a device), which LIST shows as `ls -l` does. */
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
}

/** One directory entry with its stat. */
export interface DirEntry {
  readonly name: string;
  readonly stat: EntryStat;
}

/** An open download: a regular file inside the jail. */
export interface Download {
  readonly handle: FileLike;
  readonly size: number;
}

/** How an upload writes its target. */
export interface UploadOptions {
  /** "store": STOR (replace via temp file + rename, or resume at `offset`); "append": APPE. */
  readonly kind: "store" | "append";
  /** REST offset for "store"; 0 = whole file. */
  readonly offset: number;
  /** Fail with 550 if the target exists (STOU; STOR and APPE of a user without overwrite, when a
   * file appears after the permission check saw none). */
  readonly exclusive: boolean;
}

/** An upload in progress. Exactly one of commit() or abort() is called. */
export interface Upload {
  readonly handle: FileLike;
  /** File position where the data starts. */
  readonly position: number;
  /** The upload made its file (a new file, or APPE to a missing one), rather than writing into one
   * that was there. */
  readonly created: boolean;
  /** For an upload written to a temp file and renamed over its target at commit: what that rename
   * replaced, once it has (the quota count takes it out). Null for an upload written in place. */
  readonly replaces: Replaced | null;
  /** The size of a file written in place that the upload did not make (APPE, REST+STOR) as it was
   * opened, before anything was cut or written; null for the others. */
  readonly sizeAtOpen: number | null;
  /** Closes the file and, when it was written to a temp file, renames it over the target. */
  commit(): Promise<void>;
  /** Closes the file; a temp file is removed (the old target stays intact); a file written in place
   * keeps its partial data so that REST+STOR or APPE can resume it (a new, still empty one goes). */
  abort(): Promise<void>;
  /** Like abort(), and every byte this upload wrote goes too: a new file is removed, a resumed or
   * appended one is cut back to where the upload started (by path: the handle may be closed). */
  rollback(): Promise<void>;
}

/** What a replacing upload's commit renamed its temp file over. */
export class Replaced {
  /** The target's lstat just before the rename; null before the commit, or when nothing was there. */
  stats: Stats | null = null;
}
