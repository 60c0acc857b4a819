/**
 * Shell-style name patterns for LIST and NLST arguments ("*.txt", "img_??.jpg", "[a-c]*"), as
 * vsftpd, ProFTPD and pure-ftpd expand them, so that a classic client's `mget *.txt` works. Only
 * the last component of a path is a pattern; "*" and "?" do not match a leading ".", as in a shell.
 * Matching is O(name × pattern) whatever the pattern (no regular expression, no backtracking blow-up).
 */

/** The pattern in the last component of `path` (as the client wrote it), or null when it has none. */
export function globOf(path: string): string | null {
  const last = path.slice(path.lastIndexOf("/") + 1);
  return /[*?[]/.test(last) ? last : null;
}

/** Whether `name` matches `pattern`: "*" any run of characters, "?" one, "[abc]", "[a-z]",
 * "[!abc]" or "[^abc]" one of a set (an unclosed "[" is itself). */
export function globMatch(pattern: string, name: string): boolean {
  return compileGlob(pattern)(name);
}

/**
 * globMatch with `pattern` taken apart once, for testing every name of a directory: the pattern
 * is split into characters here, and a name only when it has characters outside the BMP (so a
 * listing makes no array per name).
 *
 * Not auth/perms.ts's compilePatterns: that one compiles the operator's `storage.hide` and
 * `storage.deny` lists, trusted and fixed, into one cached regular expression where "*" also
 * matches a leading dot and "[" is a plain character. A client's pattern is neither trusted nor
 * reused, and means what a shell makes of it.
 */
export function compileGlob(pattern: string): (name: string) => boolean {
  const p = [...pattern];
  const dotOnly = !pattern.startsWith(".");
  return (name) => {
    if (dotOnly && name.startsWith(".")) return false;
    return matchChars(p, /[\ud800-\udfff]/.test(name) ? [...name] : name);
  };
}

/** The match itself: `n` is the name as a string (BMP only: one unit per character) or as characters. */
function matchChars(p: readonly string[], n: string | readonly string[]): boolean {
  let pi = 0;
  let ni = 0;
  // The last "*" seen, and where in the name it was tried: on a mismatch it takes one more.
  let star = -1;
  let mark = 0;
  while (ni < n.length) {
    if (pi < p.length) {
      if (p[pi] === "*") {
        star = pi++;
        mark = ni;
        continue;
      }
      const next = matchOne(p, pi, n[ni] as string);
      if (next !== -1) {
        pi = next;
        ni++;
        continue;
      }
    }
    if (star === -1) return false;
    pi = star + 1;
    ni = ++mark;
  }
  while (p[pi] === "*") pi++;
  return pi === p.length;
}

/** Matches one character at p[pi]; the index after the pattern element, or -1. */
function matchOne(p: readonly string[], pi: number, ch: string): number {
  const c = p[pi];
  if (c === "?") return pi + 1;
  if (c !== "[") return c === ch ? pi + 1 : -1;
  let i = pi + 1;
  const negate = p[i] === "!" || p[i] === "^";
  if (negate) i++;
  let hit = false;
  let first = true;
  while (i < p.length && (p[i] !== "]" || first)) {
    first = false;
    const lo = p[i] as string;
    if (p[i + 1] === "-" && i + 2 < p.length && p[i + 2] !== "]") {
      const hi = p[i + 2] as string;
      if (ch >= lo && ch <= hi) hit = true;
      i += 3;
    } else {
      if (ch === lo) hit = true;
      i++;
    }
  }
  if (i >= p.length) return ch === "[" ? pi + 1 : -1; // unclosed: a literal "["
  return hit !== negate ? i + 1 : -1;
}
