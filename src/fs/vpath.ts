/**
 * Pure functions on the client's view of the filesystem. A VirtualPath is absolute, normalized and
 * can never climb above "/"; JailedFs is the only place that maps one to a real path.
 */
import { FtpError, NameTooLong } from "../protocol/errors.ts";
import type { VirtualPath } from "./types.ts";

/** The root of every user's virtual tree. */
export const ROOT = "/" as VirtualPath;

/** Longest accepted path, in UTF-8 bytes (Linux PATH_MAX). */
export const MAX_PATH_BYTES = 4096;
/** Longest accepted path segment, in UTF-8 bytes (Linux NAME_MAX). */
export const MAX_NAME_BYTES = 255;

/** A control character (C0): never part of a name any command can address. */
// eslint-disable-next-line no-control-regex -- control characters are exactly what is refused
export const CONTROL = /[\u0000-\u001f]/;

/** A character no command can name on disk: a control character (refused), or a backslash
 * (resolveVirtual reads it as "/", so `a\b` names the entry b of directory a). A name with one
 * is never listed: a client would act on another file by the name it was shown. */
// eslint-disable-next-line no-control-regex -- control characters are part of what no command can name
export const UNNAMEABLE = /[\u0000-\u001f\\]/;

/** True when `text` holds a NUL or another control character (< 0x20). */
export function hasControlChar(text: string): boolean {
  return CONTROL.test(text);
}

/** Whether a path argument ends in "/" (or "\\", read as "/"), "/." or "/..": it names a
 * directory, as open(2) and stat(2) take it (ENOTDIR for a file: "." and ".." are entries of a
 * directory only). resolveVirtual drops that ending, so the commands that act on a file or an
 * entry in place ask this of the argument as the client wrote it. */
export function namesDirectory(arg: string): boolean {
  let end = arg.length - 1;
  // A final "." or ".." counts when a slash comes before it; alone (nothing before it) it is the
  // cwd or its parent, a directory anyway.
  if (arg.charCodeAt(end) === DOT) end -= arg.charCodeAt(end - 1) === DOT ? 2 : 1;
  return isSlash(arg.charCodeAt(end));
}

/** Why a name namesDirectory takes is refused where it leads to no directory, after the reply's
 * first words ("Not a directory", "Not a plain file", ...). */
export const NAMES_DIRECTORY = "a name ending in /, /. or /.. is a directory's";

/** The refusal of a name namesDirectory takes that leads to no directory (LIST, MLST, RNFR…). */
export function notADirectory(): FtpError {
  return new FtpError(550, `Not a directory: ${NAMES_DIRECTORY}`);
}

function isSlash(c: number): boolean {
  return c === SLASH || c === BACKSLASH;
}

/** Resolves an FTP path argument against the virtual cwd: "\" counts as "/", "//", "." and ".."
 * collapse, ".." at the root stays at the root. No URL decoding: "%2e%2e" is a literal name. A
 * leading "~" alone or before a slash is the home, the root of the virtual tree, as shells and
 * ProFTPD read it (curl sends `CWD ~` for ftp://host/~/file); "~name" and a "~" further on are
 * names ("./~" names an entry called "~").
 *
 * `walked`, when given, gets each path that a ".." of the argument steps back out of: `/a.txt` for
 * `a.txt/../b.txt`. The kernel walks through such a name, and fails (ENOTDIR, ENOENT) unless it
 * is a directory; the collapse drops it unlooked at, so the caller checks it. The cwd's own names
 * are not listed: they were directories when the session entered them. */
export function resolveVirtual(cwd: VirtualPath, arg: string, walked?: VirtualPath[]): VirtualPath {
  if (arg.charCodeAt(0) === TILDE && (arg.length === 1 || arg.charCodeAt(1) === SLASH || arg.charCodeAt(1) === BACKSLASH)) {
    arg = "/" + arg.slice(1);
  }
  // The usual argument — a name, or a path of plain names — is the result as it stands (joined to
  // the cwd when relative), found in one pass over its characters. Short enough that no name can
  // be over MAX_NAME_BYTES nor the result over MAX_PATH_BYTES, whatever the characters.
  if (arg.length <= FAST_PATH_CHARS) {
    if (arg.charCodeAt(0) === SLASH) {
      if (plainSegments(arg, 1)) return arg as VirtualPath;
    } else if (plainSegments(arg, 0)) {
      const joined = cwd === ROOT ? "/" + arg : cwd + "/" + arg;
      if (joined.length <= FAST_PATH_CHARS) return joined as VirtualPath;
    }
  }
  // RFC 959 §3.1.1.5: pathnames are plain strings; a control char (NUL, CR, LF) is never a name.
  if (hasControlChar(arg)) throw new FtpError(501, "Invalid character in path");
  if (utf8Length(arg) > MAX_PATH_BYTES) throw tooLong();
  const path = arg.replaceAll("\\", "/");
  const segments = path.startsWith("/") ? [] : splitVirtual(cwd);
  // How many of the segments are the cwd's (a ".." that reaches them takes them out of this count).
  let ofCwd = segments.length;
  for (const seg of path.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") {
      if (segments.length > ofCwd) walked?.push(("/" + segments.join("/")) as VirtualPath);
      segments.pop();
      ofCwd = Math.min(ofCwd, segments.length);
    } else if (utf8Length(seg) > MAX_NAME_BYTES) throw tooLong();
    else segments.push(seg);
  }
  const result = "/" + segments.join("/");
  if (utf8Length(result) > MAX_PATH_BYTES) throw tooLong();
  return result as VirtualPath;
}

const SLASH = 0x2f;
const TILDE = 0x7e;
const DOT = 0x2e;
const BACKSLASH = 0x5c;
/** UTF-16 units that are at most MAX_NAME_BYTES / MAX_PATH_BYTES of UTF-8 whatever they hold (a
 * unit is at most three bytes; a surrogate pair, two units, is four). */
const FAST_NAME_CHARS = Math.floor(MAX_NAME_BYTES / 3);
const FAST_PATH_CHARS = Math.floor(MAX_PATH_BYTES / 3);

/** True when `p[from..]` is one or more names joined by single slashes: none empty, "." or "..",
 * none longer than FAST_NAME_CHARS units, no backslash and no control character — a path that
 * resolveVirtual keeps exactly as it is. */
function plainSegments(p: string, from: number): boolean {
  const n = p.length;
  if (from >= n) return false;
  let start = from;
  for (let i = from; i <= n; i++) {
    const c = i < n ? p.charCodeAt(i) : SLASH;
    if (c === SLASH) {
      const len = i - start;
      if (len === 0 || len > FAST_NAME_CHARS) return false;
      if (p.charCodeAt(start) === DOT && (len === 1 || (len === 2 && p.charCodeAt(start + 1) === DOT))) return false;
      start = i + 1;
    } else if (c < 0x20 || c === BACKSLASH) {
      return false;
    }
  }
  return true;
}

/** True when `p` is an absolute path of plain names (see plainSegments) short enough that no
 * length limit can apply: a normalized VirtualPath other than the root, checked in one pass. */
export function isPlainPath(p: string): boolean {
  return p.length <= FAST_PATH_CHARS && p.charCodeAt(0) === SLASH && plainSegments(p, 1);
}

/** The segments of a VirtualPath ("/" → []). */
export function splitVirtual(vpath: VirtualPath): string[] {
  return vpath.split("/").filter((s) => s !== "");
}

/** The last segment of a VirtualPath; "" for the root. */
export function basename(vpath: VirtualPath): string {
  return vpath.slice(vpath.lastIndexOf("/") + 1);
}

/** The parent of a VirtualPath; the root is its own parent. */
export function dirname(vpath: VirtualPath): VirtualPath {
  const cut = vpath.lastIndexOf("/");
  return (cut <= 0 ? "/" : vpath.slice(0, cut)) as VirtualPath;
}

/** `dir` + one plain name (as read from a directory); refuses "", ".", "..", "/" and control chars. */
export function joinVirtual(dir: VirtualPath, name: string): VirtualPath {
  if (!isPlainName(name)) throw new FtpError(553, "File name not allowed");
  const joined = dir === ROOT ? `/${name}` : `${dir}/${name}`;
  if (utf8Length(joined) > MAX_PATH_BYTES) throw tooLong();
  return joined as VirtualPath;
}

/** True when `name` can be one path segment. */
export function isPlainName(name: string): boolean {
  return (
    name !== "" &&
    name !== "." &&
    name !== ".." &&
    !name.includes("/") &&
    !hasControlChar(name) &&
    utf8Length(name) <= MAX_NAME_BYTES
  );
}

/** The path quoted for a 257 reply, surrounding quotes included: `/a"b` → `"/a""b"`
 * (RFC 959 appendix II: an embedded double quote is doubled). */
export function quote257(vpath: VirtualPath): string {
  return `"${vpath.replaceAll('"', '""')}"`;
}

function utf8Length(text: string): number {
  return Buffer.byteLength(text, "utf8");
}

function tooLong(): FtpError {
  return new NameTooLong("path or name too long");
}
