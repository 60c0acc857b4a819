/**
 * Getting a new password from the operator: from standard input (--password-stdin) or by asking
 * twice on the terminal with echo off. The password is never printed.
 */
import type { ReadStream } from "node:tty";
import { readPassword } from "../auth/store.ts";
import { CliError, usageError } from "./args.ts";

/** Standard streams the CLI uses (swappable in tests). */
export interface Streams {
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean };
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream;
}


/** The new password: from stdin when `fromStdin`, else asked twice on the terminal. */
export async function newPassword(io: Streams, fromStdin: boolean, who: string): Promise<string> {
  if (fromStdin) {
    // Standard input is the terminal itself: the one line is read with echo off, as a prompt's
    // are, instead of being shown on the screen as it is typed.
    if (io.stdin.isTTY === true) return (await readHidden(io.stdin as ReadStream, io.stderr, `new password for ${who}: `, "")).line;
    return readPassword(io.stdin);
  }
  if (io.stdin.isTTY !== true) {
    throw usageError("standard input is not a terminal: pipe the password and add --password-stdin");
  }
  const tty = io.stdin as ReadStream;
  const first = await readHidden(tty, io.stderr, `new password for ${who}: `, "");
  // What came after the first line in the same read (typed ahead, or both lines pasted at once)
  // is the start of the second.
  const second = await readHidden(tty, io.stderr, "again: ", first.rest);
  if (first.line !== second.line) throw new CliError("the two passwords differ; nothing changed", 1);
  return first.line;
}

/** Reads one line from a terminal with echo off, starting with `ahead` (already read); Ctrl-C or
 * Ctrl-D on an empty line cancels. Resolves with the line and what was read after it; a line typed
 * with a cursor key or another control character is refused once it ends. */
function readHidden(input: ReadStream, output: NodeJS.WritableStream, prompt: string, ahead: string): Promise<{ line: string; rest: string }> {
  // Echo off before the prompt shows: what is typed once it shows is never echoed.
  input.setRawMode(true);
  output.write(prompt);
  input.setEncoding("utf8");
  input.resume();
  return new Promise((resolve, reject) => {
    let typed = "";
    // A cursor key, Home, End or a function key arrives as an escape sequence ("\x1b[D", "\x1bOF",
    // "\x1b[3~"), possibly split across reads; a hidden prompt cannot move a cursor, and keeping the
    // printable part ("[D") would store a password other than the one the operator meant, as would
    // dropping a pasted control character. So either makes the line refused once it ends (not at
    // once: the rest of a paste would then reach the shell).
    let escape: "" | "esc" | "csi" | "ss3" = "";
    let refused = false;
    const finish = (rest: string, error?: Error): void => {
      input.off("data", onData);
      input.setRawMode(false);
      input.pause();
      output.write("\n");
      if (error === undefined) resolve({ line: typed, rest });
      else reject(error);
    };
    const onData = (chunk: string): void => {
      const chars = [...chunk];
      for (let i = 0; i < chars.length; i++) {
        const ch = chars[i] ?? "";
        if (ch === "\r" || ch === "\n") {
          // A CR LF pair ends one line, not two.
          const next = ch === "\r" && chars[i + 1] === "\n" ? i + 2 : i + 1;
          if (refused) return finish("", new CliError(MOVED, 1));
          return finish(chars.slice(next).join(""));
        }
        if (ch === "\u0003" || (ch === "\u0004" && typed === "")) return finish("", new CliError("cancelled", 1));
        if (escape !== "") escape = afterEscape(escape, ch);
        else if (ch === "\u001b") {
          escape = "esc";
          refused = true;
        } else if (ch === "\u007f" || ch === "\b") typed = [...typed].slice(0, -1).join("");
        else if (ch === "\u0015") typed = "";
        // A tab is part of the password, as it is read from --password-stdin and sent by a client.
        else if (ch >= " " || ch === "\t") typed += ch;
        // Ctrl-D on a typed line does nothing, as on a terminal's own line; any other is refused.
        else if (ch !== "\u0004") refused = true;
      }
    };
    input.on("data", onData);
    if (ahead !== "") onData(ahead);
  });
}

/** Why a line typed with a cursor key or a control character is refused. */
const MOVED = "the password was typed with a cursor key or a control character, which this prompt cannot take; nothing changed";

/** The state of an escape sequence after `ch`: ESC [ (CSI) runs to a byte from "@" to "~",
 * ESC O (SS3) takes one more character, ESC and any other character is a whole sequence. */
function afterEscape(state: "esc" | "csi" | "ss3", ch: string): "" | "esc" | "csi" | "ss3" {
  if (state === "esc") return ch === "[" ? "csi" : ch === "O" ? "ss3" : "";
  if (state === "ss3") return "";
  return ch >= "@" && ch <= "~" ? "" : "csi";
}
