/**
 * Shell-style name patterns for LIST and NLST arguments ("*.txt", "img_??.jpg", "[a-c]*"), as
 * vsftpd, ProFTPD and pure-ftpd expand them, so that a classic client's `mget *.txt` works. Only
 * the last component of a path is a pattern; "*" and "?" do not match a leading ".", as in a shell.
 * Matching is O(name × pattern) whatever the pattern (no regular expression, no backtracking blow-up).
 */

/** The pattern in the last component of `path` (as the client wrote it), or null when it has none. */
export function globOf(path: string): string | null {
  const last = path.slice(lastComponentAt(path));
  return /[*?[]/.test(last) ? last : null;
}

/** Where the last component of `path` (as the client wrote it) starts: after its last "/" or
 * "\", since every path reads a backslash as a slash (fs/vpath.ts resolveVirtual), so that
 * "sub\*.txt" is the pattern "*.txt" in "sub" and not one matched against the names of "sub". */
export function lastComponentAt(path: string): number {
  return Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\")) + 1;
}

/** Whether `name` matches `pattern`: "*" any run of characters, "?" one, "[abc]", "[a-z]",
 * "[!abc]" or "[^abc]" one of a set (an unclosed "[" is itself). */
export function globMatch(pattern: string, name: string): boolean {
  return compileGlob(pattern)(name);
}

/**
 * globMatch with `pattern` taken apart once, for testing every name of a directory: the pattern
 * is split into its elements here (each set parsed, and an unclosed "[" known to be a literal, once
 * and not at every try: looking for a set's "]" on each try made a pattern of 250 unclosed "["
 * cost the cube of the lengths per name, seconds of the event loop for a directory of long names),
 * and a name only when it has characters outside the BMP (so a listing makes no array per name).
 *
 * Not compileWildcard, for auth/perms.ts's `storage.hide` and `storage.deny` lists, where "*" also
 * matches a leading dot and "[" is a plain character. A client's pattern means what a shell makes
 * of it.
 */
export function compileGlob(pattern: string): (name: string) => boolean {
  const p = elementsOf([...pattern]);
  const dotOnly = !pattern.startsWith(".");
  return (name) => {
    if (dotOnly && name.startsWith(".")) return false;
    return matchChars(p, /[\ud800-\udfff]/.test(name) ? [...name] : name);
  };
}

/**
 * A pattern of auth/perms.ts's kind (`storage.hide`, `storage.deny`): "*" any run of characters,
 * a leading dot included, "?" one character, every other character itself ("[" too). Matched as
 * compileGlob's are, in O(name × pattern): the names are the client's, and a regular expression
 * of an operator's "*a*a*a*b" backtracked for seconds over a name of 255 characters.
 */
export function compileWildcard(pattern: string): (name: string) => boolean {
  const p: Element[] = [...pattern].map((c) => (c === "*" ? STAR : c === "?" ? ANY : c));
  return (name) => matchChars(p, /[\ud800-\udfff]/.test(name) ? [...name] : name);
}

/** "*" in a pattern taken apart. */
const STAR = 0;
/** "?" in a pattern taken apart. */
const ANY = 1;

/** A set ("[a-c]", "[!x]"): its single characters and ranges. */
interface CharSet {
  readonly negate: boolean;
  readonly singles: readonly string[];
  readonly ranges: readonly (readonly [string, string])[];
}

/** One element of a pattern: STAR, ANY, a set, or a character that matches itself. */
type Element = typeof STAR | typeof ANY | CharSet | string;

/** The elements of pattern characters `p`: "[abc]", "[a-z]", "[!abc]" or "[^abc]" a set (a "]"
 * right after the "[" or its "!" is one of its characters), an unclosed "[" the character itself. */
function elementsOf(p: readonly string[]): Element[] {
  const out: Element[] = [];
  for (let pi = 0; pi < p.length; ) {
    const c = p[pi] as string;
    if (c === "*") out.push(STAR);
    else if (c === "?") out.push(ANY);
    else if (c === "[") {
      const set = setAt(p, pi);
      if (set !== null) {
        out.push(set.set);
        pi = set.end;
        continue;
      }
      out.push(c);
    } else out.push(c);
    pi++;
  }
  return out;
}

/** The set that starts at p[pi] (a "[") and the index after its "]"; null when it is unclosed. */
function setAt(p: readonly string[], pi: number): { set: CharSet; end: number } | null {
  let i = pi + 1;
  const negate = p[i] === "!" || p[i] === "^";
  if (negate) i++;
  const singles: string[] = [];
  const ranges: [string, string][] = [];
  let first = true;
  while (i < p.length && (p[i] !== "]" || first)) {
    first = false;
    const lo = p[i] as string;
    if (p[i + 1] === "-" && i + 2 < p.length && p[i + 2] !== "]") {
      ranges.push([lo, p[i + 2] as string]);
      i += 3;
    } else {
      singles.push(lo);
      i++;
    }
  }
  return i >= p.length ? null : { set: { negate, singles, ranges }, end: i + 1 };
}

/** The match itself: `n` is the name as a string (BMP only: one unit per character) or as characters. */
function matchChars(p: readonly Element[], n: string | readonly string[]): boolean {
  let pi = 0;
  let ni = 0;
  // The last "*" seen, and where in the name it was tried: on a mismatch it takes one more.
  let star = -1;
  let mark = 0;
  while (ni < n.length) {
    if (pi < p.length) {
      const e = p[pi] as Element;
      if (e === STAR) {
        star = pi++;
        mark = ni;
        continue;
      }
      if (matchOne(e, n[ni] as string)) {
        pi++;
        ni++;
        continue;
      }
    }
    if (star === -1) return false;
    pi = star + 1;
    ni = ++mark;
  }
  while (p[pi] === STAR) pi++;
  return pi === p.length;
}

/** Whether element `e` (not STAR) matches character `ch`. */
function matchOne(e: Element, ch: string): boolean {
  if (e === ANY) return true;
  if (typeof e === "string") return e === ch;
  if (typeof e === "number") return false;
  let hit = e.singles.includes(ch);
  for (let k = 0; !hit && k < e.ranges.length; k++) {
    const [lo, hi] = e.ranges[k] as readonly [string, string];
    if (ch >= lo && ch <= hi) hit = true;
  }
  return hit !== e.negate;
}
