/**
 * The permission policy as pure functions: which permissions apply at a virtual path (the longest
 * matching per-directory override, else the user's own), hidden and denied name patterns, and the
 * RFC 3659 §7.5.5 `perm` fact an MLSx entry shows. The dispatcher applies it before any handler
 * (DESIGN: every generic check happens once); listings use it to hide entries and print facts.
 */
import { compileWildcard } from "../fs/glob.ts";
import { PERMS, type Perm, type User } from "./types.ts";

/** Tests one base name against a set of glob patterns. */
export type NameMatcher = (name: string) => boolean;

/** Hidden and denied name patterns, compiled (config `storage.hide` and `storage.deny`). */
export interface NamePolicy {
  /** Hidden: left out of listings, "not found" when addressed (any segment of a path counts). */
  readonly hidden: NameMatcher;
  /** Denied: cannot be uploaded, created, renamed to or downloaded (the entry's own name). */
  readonly denied: NameMatcher;
}

/** What one command does to one path, as the dispatcher checks it. */
export interface Access {
  /** The path acted on, resolved against the cwd. */
  readonly path: string;
  /** Any one of these permissions suffices; [] = no permission needed (only visibility). */
  readonly need: readonly Perm[];
  /** "entry": the permissions of the directory holding `path` apply (an entry is read, created,
   * deleted or renamed there); "dir": those of `path` itself (its contents are listed). */
  readonly scope: "entry" | "dir";
  /** The command creates an entry named like `path` (upload, mkdir, rename target). */
  readonly creates: boolean;
  /** The command reads or creates the entry itself: denied names are refused. */
  readonly named: boolean;
  /** Something already exists at `path` and the command would replace or change it: overwrite is
   * needed too. */
  readonly replaces: boolean;
  /** The directory whose permissions apply, when it is not the one `path` and `scope` name: the
   * same directory with the links on the way resolved (see hasOwnDirPerms). */
  readonly permsDir?: string;
}

/** Why an access is refused; null when it is allowed. */
export type Refusal =
  | { readonly kind: "hidden" }
  | { readonly kind: "name" }
  | { readonly kind: "perm"; readonly perm: Perm };

/** "list,download" → those permissions in PERMS order; "all" → every one; "none" → none; null
 * when a word is not a permission. */
export function parsePermList(text: string): Perm[] | null {
  const t = text.trim();
  if (t === "none") return [];
  if (t === "all") return [...PERMS];
  const words = t.split(",").map((p) => p.trim()).filter((p) => p !== "");
  if (!words.every((w) => (PERMS as readonly string[]).includes(w))) return null;
  return PERMS.filter((p) => words.includes(p));
}

/** "/pub=list,download;/in=upload" → virtual directory → permissions (paths normalized, "/x/" →
 * "/x"); "" → none; null when malformed, a path leaves the home (".."), or a DIR is left out: an
 * empty one would read as the whole home ("=upload" for "/incoming=upload"), which is written "/". */
export function parseDirPerms(text: string): Record<string, Perm[]> | null {
  const out: Record<string, Perm[]> = {};
  for (const part of text.split(";").map((p) => p.trim()).filter((p) => p !== "")) {
    const eq = part.indexOf("=");
    const dir = eq === -1 || part.slice(0, eq).trim() === "" ? null : normalizeDirPath(part.slice(0, eq).trim());
    const perms = eq === -1 ? null : parsePermList(part.slice(eq + 1));
    if (dir === null || perms === null) return null;
    out[dir] = perms;
  }
  return out;
}

/** "/pub/in/" → "/pub/in"; relative paths are taken from the home; null for "..", NUL or backslash. */
export function normalizeDirPath(dir: string): string | null {
  if (dir.includes("\0") || dir.includes("\\")) return null;
  const parts = dir.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.includes("..")) return null;
  return `/${parts.join("/")}`;
}

/** The permissions in force at `path` (and, for entries, inside it): the longest `dirPerms` entry
 * that is `path` or one of its ancestors, else the user's own. */
export function permsAt(user: Pick<User, "perms" | "dirPerms">, path: string): ReadonlySet<Perm> {
  let best: { len: number; perms: ReadonlySet<Perm> } | null = null;
  for (const d of user.dirPerms) {
    const covers = d.path === "/" || path === d.path || path.startsWith(`${d.path}/`);
    if (covers && (best === null || d.path.length > best.len)) best = { len: d.path.length, perms: d.perms };
  }
  return best?.perms ?? user.perms;
}

/** True when the user has permissions of their own for some directory below the root: then where a
 * path leads decides what applies there, and a link placed in the home (`/latest` → `pub/2024`)
 * leads to the permissions of the directory it names, not to those of the link's own place. */
export function hasOwnDirPerms(user: Pick<User, "dirPerms">): boolean {
  return user.dirPerms.some((d) => d.path !== "/");
}

/** True when `path` is a directory with permissions of its own (a `dirPerms` entry other than the
 * root) or holds one. Permissions follow paths, so renaming it would carry what it holds away
 * from them: such a directory is never renamed. */
export function holdsDirPerms(user: Pick<User, "dirPerms">, path: string): boolean {
  return user.dirPerms.some((d) => d.path !== "/" && (d.path === path || d.path.startsWith(`${path === "/" ? "" : path}/`)));
}

/** The parent of a normalized virtual path; "/" is its own parent. */
export function parentOf(path: string): string {
  const cut = path.lastIndexOf("/");
  return cut <= 0 ? "/" : path.slice(0, cut);
}

/** Splits "a, *.part ,, .*" into trimmed, non-empty patterns. */
export function splitPatterns(text: string): string[] {
  return text
    .split(",")
    .map((p) => p.trim())
    .filter((p) => p !== "");
}

/** Compiles glob patterns for base names: `*` any run of characters, `?` one character, the rest
 * literal and case-sensitive (names on the disk are). An empty list matches nothing. The names are
 * the client's, so each pattern is matched without backtracking (fs/glob.ts compileWildcard). */
export function compilePatterns(text: string): NameMatcher {
  const matchers = splitPatterns(text).map(compileWildcard);
  if (matchers.length === 0) return () => false;
  if (matchers.length === 1) return matchers[0] as NameMatcher;
  return (name) => {
    for (const m of matchers) if (m(name)) return true;
    return false;
  };
}

/** True when a pattern list is valid config: no "/" (patterns match names, not paths), no control
 * characters. */
export function validPatterns(text: string): boolean {
  // eslint-disable-next-line no-control-regex -- NUL and line breaks never belong in a name
  return !/[/\u0000-\u001f]/.test(text);
}

const compiled = new Map<string, NameMatcher>();

/** The compiled matcher of a pattern list, cached (config values are few and fixed). */
export function matcherFor(text: string): NameMatcher {
  let m = compiled.get(text);
  if (m === undefined) {
    m = compilePatterns(text);
    if (compiled.size > 64) compiled.clear();
    compiled.set(text, m);
  }
  return m;
}

/** The name policy of `storage.hide` and `storage.deny`. */
export function namePolicy(storage: { readonly hide: string; readonly deny: string }): NamePolicy {
  return { hidden: matcherFor(storage.hide), denied: matcherFor(storage.deny) };
}

/** True when any segment of `path` is a hidden name (so a hidden directory hides all it holds). */
export function isHiddenPath(policy: NamePolicy, path: string): boolean {
  // Segment by segment without split(), which costs a runtime call per path (checked per command).
  for (let start = 0; start <= path.length; ) {
    let end = path.indexOf("/", start);
    if (end === -1) end = path.length;
    if (end > start && policy.hidden(path.slice(start, end))) return true;
    start = end + 1;
  }
  return false;
}

/** Checks one access; the first reason to refuse it, or null. Hidden comes first so that a hidden
 * entry looks missing whatever the user's permissions are. */
export function checkAccess(user: Pick<User, "perms" | "dirPerms">, policy: NamePolicy, a: Access): Refusal | null {
  if (isHiddenPath(policy, a.path)) return { kind: a.creates ? "name" : "hidden" };
  const name = a.path.slice(a.path.lastIndexOf("/") + 1);
  if (a.named && name !== "" && policy.denied(name)) return { kind: "name" };
  const perms = permsAt(user, a.permsDir ?? permsDirOf(a));
  const [first] = a.need;
  if (first !== undefined && !a.need.some((p) => perms.has(p))) return { kind: "perm", perm: first };
  if (a.replaces && !perms.has("overwrite")) return { kind: "perm", perm: "overwrite" };
  return null;
}

/** The directory whose permissions an access needs, as its path names it: the one holding the
 * entry, or the directory itself. */
export function permsDirOf(a: Pick<Access, "path" | "scope">): string {
  return a.scope === "entry" ? parentOf(a.path) : a.path;
}

/** The 550 text of a refusal. */
export function refusalText(r: Refusal): string {
  switch (r.kind) {
    case "hidden":
      return "No such file or directory";
    case "name":
      return "Permission denied: name not allowed";
    case "perm":
      return `Permission denied: no ${r.perm} permission here`;
  }
}

/** RFC 3659 §7.5.5 perm letters of an entry of type `type` in directory `dir`, named `name`.
 * Files: r download, w and a upload+overwrite (both write into an existing file), d delete,
 * f rename. Directories: e always (CWD needs no permission), l list, c upload, m mkdir, p delete
 * (of the contents), all inside it; d rmdir and f rename in `dir` (no f for a directory that has
 * or holds permissions of its own: see holdsDirPerms). Symlinks, FIFOs, sockets and devices
 * (removed by DELE and renamed by RNFR/RNTO as entries; nothing reads or writes them): d and f
 * (no f for one at the path of a directory with permissions of its own).
 * The root itself can be neither removed nor renamed. A file whose name is `denied`
 * (storage.deny) is neither downloaded nor written to: d and f at most. `real`: where the entry
 * really is when a link leads to it (the permissions there apply inside a directory, and to
 * reading and writing a file; d and f act on the link itself). */
export function permFact(user: Pick<User, "perms" | "dirPerms">, type: string, dir: string, name: string, denied = false, real?: string): string {
  const here = permsAt(user, dir);
  const self = dir === "/" ? `/${name}` : `${dir}/${name}`;
  const isRoot = name === "" || name === "/";
  // Called per listed entry (MLSD): letters joined as strings, no closure (test/hotpath.test.ts).
  if (type === "file") {
    const content = real === undefined ? here : permsAt(user, parentOf(real));
    const write = !denied && content.has("upload") && content.has("overwrite");
    return (
      letter("r", !denied && content.has("download")) + letter("a", write) + letter("w", write) + letter("d", here.has("delete")) + letter("f", here.has("rename"))
    );
  }
  if (type === "dir") {
    const within = permsAt(user, real ?? (isRoot ? "/" : self));
    return (
      "e" +
      letter("l", within.has("list")) +
      letter("c", within.has("upload")) +
      letter("m", within.has("mkdir")) +
      letter("p", within.has("delete")) +
      letter("d", !isRoot && here.has("rmdir")) +
      letter("f", !isRoot && here.has("rename") && !holdsDirPerms(user, self))
    );
  }
  // A link may itself be a directory of dirPerms (/pub a link to releases/2024): RNFR refuses to
  // rename it as it refuses that directory (see holdsDirPerms), so it has no f either.
  return letter("d", here.has("delete")) + letter("f", here.has("rename") && !holdsDirPerms(user, self));
}

function letter(l: string, ok: boolean): string {
  return ok ? l : "";
}
