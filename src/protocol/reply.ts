/**
 * The only place that formats wire text for the control connection (RFC 959 §4.2).
 * A single-line reply is "ddd text\r\n"; a multi-line reply is "ddd-first\r\n", the middle lines
 * each indented by one space (so none can be mistaken for the last line), and "ddd last\r\n".
 */

/** Formats one reply; `lines` with more than one entry gives the RFC 959 multi-line form. */
export function formatReply(code: number, lines: string | readonly string[]): string {
  // One line with nothing to strip: as it is (most replies).
  if (typeof lines === "string" && !hasLineBreakOrNul(lines)) return `${code} ${lines}\r\n`;
  const list = typeof lines === "string" ? lines.split(LINE_BREAK) : lines;
  const clean = list.map(stripControl);
  if (clean.length <= 1) return `${code} ${clean[0] ?? ""}\r\n`;
  const first = clean[0] ?? "";
  const last = clean[clean.length - 1] ?? "";
  const middle = clean.slice(1, -1).map((l) => ` ${l}\r\n`).join("");
  return `${code}-${first}\r\n${middle}${code} ${last}\r\n`;
}

/** Formats a multi-line reply whose middle lines are sent exactly as given (FEAT, STAT listings):
 * each must already start with a space (RFC 2389 §3.2: feature lines begin with one space). */
export function formatBlockReply(code: number, first: string, body: readonly string[], last: string): string {
  const middle = body.map((l) => `${stripControl(l)}\r\n`).join("");
  return `${code}-${stripControl(first)}\r\n${middle}${code} ${stripControl(last)}\r\n`;
}

const LINE_BREAK = /\r?\n/;
const LINE_BREAKS_AND_NULS = /[\r\n\0]/g;

/** Removes CR, LF and NUL so that a name echoed in a reply cannot forge another reply line. */
export function stripControl(text: string): string {
  return hasLineBreakOrNul(text) ? text.replace(LINE_BREAKS_AND_NULS, "") : text;
}

/** Whether `text` holds a CR, LF or NUL. Three searches for one character rather than a regular
 * expression or a loop: most reply texts are joined from parts (a name in a 150, the address of
 * a 227), and V8 runs a regular expression on such a string through a runtime call, and reads it
 * character by character through a check of its layout each time; the first search copies it
 * into one piece, and each then runs on the piece at memory speed (about half the time of either
 * other way). */
function hasLineBreakOrNul(text: string): boolean {
  return text.indexOf("\n") !== -1 || text.indexOf("\r") !== -1 || text.indexOf("\0") !== -1;
}
