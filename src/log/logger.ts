/**
 * The root pino logger: JSON lines by default, readable lines on a terminal. Pretty output is
 * formatted in-process and synchronously (pino-pretty's prettyFactory), not by a worker transport,
 * so it works under tsx, in tests, and loses nothing on process.exit.
 */
import { pino, type DestinationStream, type Logger as PinoLogger } from "pino";
import { prettyFactory } from "pino-pretty";
import type { LogLevel } from "../config/schema.ts";

/** berth's logger type (pino's). */
export type Logger = PinoLogger;

/** Options of createLogger. */
export interface LoggerOptions {
  /** Lowest level written. */
  readonly level: LogLevel;
  /** "auto": readable when the destination is a terminal, JSON otherwise. */
  readonly pretty: "auto" | "always" | "never";
  /** Where lines go; default standard output. */
  readonly destination?: NodeJS.WritableStream | undefined;
}

/** Paths pino replaces with "[redacted]" wherever they appear in a log object. */
export const REDACT_PATHS: readonly string[] = [
  "password",
  "*.password",
  "pass",
  "*.pass",
  "hash",
  "*.hash",
  "secret",
  "*.secret",
];

/** What a JSON line may hold as it is that a terminal or a line splitter acts on: DEL, the C1
 * controls (U+009B is a terminal's CSI, U+0085 a line end) and U+2028/U+2029, which end a line
 * for many splitters. JSON.stringify escapes only C0, and a name a client made may hold any of
 * these: read with docker logs or tail -f, it could move the cursor and write over earlier lines. */
const UNSAFE_IN_JSON = /[\u007f-\u009f\u2028\u2029]/g;

/** `line` (one JSON line) with each UNSAFE_IN_JSON character as its \u escape. A JSON line is
 * ASCII outside its strings, so each is inside a string, where the escape is the same value to a
 * JSON reader. */
export function escapeUnsafe(line: string): string {
  return line.replace(UNSAFE_IN_JSON, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`);
}

/** `text` with its control characters (C0, DEL and C1: U+009B is a terminal's CSI, U+0085 a line
 * end) written as \xNN, for text read on a terminal (`berth ctl`'s table, the xferlog): a path is
 * any name a client made. Never ambiguous there: a path holds no backslash (it reads as "/"). */
export function printable(text: string): string {
  return text.replace(CONTROLS, hexEscape);
}

// eslint-disable-next-line no-control-regex -- control characters are exactly what is escaped
const CONTROLS = /[\u0000-\u001f\u007f-\u009f]/g;

function hexEscape(c: string): string {
  return `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;
}

/** True when `stream` is a terminal. */
function isTty(stream: NodeJS.WritableStream): boolean {
  return (stream as { isTTY?: boolean }).isTTY === true;
}

/** A destination that turns each JSON line into a readable one before writing it. pino-pretty
 * writes a field's value as JSON.stringify does, with DEL, C1 and U+2028/U+2029 as they are: they
 * are escaped in what it made (its own colours are C0 escapes, left alone), as in a JSON line. */
function prettyDestination(send: (text: string) => void, colorize: boolean): DestinationStream {
  const format = prettyFactory({ colorize, translateTime: "SYS:yyyy-mm-dd HH:MM:ss.l", ignore: "pid,hostname" });
  return { write: (line: string) => send(escapeUnsafe(format(line))) };
}

/** Write errors after which the output takes nothing more: its reader went away (a pipe's, a
 * socket's), or the stream itself is gone. */
const OUTPUT_GONE: ReadonlySet<string> = new Set(["EPIPE", "ECONNRESET", "EBADF", "ERR_STREAM_DESTROYED", "ERR_STREAM_WRITE_AFTER_END"]);

/** One line on stderr; nothing when stderr is gone too. */
function tell(line: string): void {
  try {
    process.stderr.write(line);
  } catch {
    // stderr is gone too: nothing left to tell
  }
}

/** Writes log text to `out`, watching it for write errors. The server outlives its log reader:
 * when the reader went away (EPIPE), logging stops, one line on stderr says so, serving goes on.
 * Any other failure (a full disk, standard output being a file) drops the lines it hits, as the
 * transfer log does: one line on stderr says so when it starts, and one more, with how many were
 * dropped, when a line lands again. */
function outputTo(out: NodeJS.WritableStream): (text: string) => void {
  let open = true;
  let dropped = 0;
  let failing = false;
  // Passed with each write only while writes fail: the first that lands ends the failure.
  const landed = (err?: Error | null): void => {
    if (err != null || !failing) return;
    failing = false;
    tell(`berth: log output takes lines again; ${dropped} were dropped\n`);
    dropped = 0;
  };
  out.on("error", (err: NodeJS.ErrnoException) => {
    if (!open) return;
    const code = err.code ?? err.message;
    if (OUTPUT_GONE.has(code)) {
      open = false;
      tell(`berth: log output failed (${code}); logging stops, serving goes on\n`);
      return;
    }
    dropped++;
    if (failing) return;
    failing = true;
    tell(`berth: log output failed (${code}); lines are dropped until it takes them again, serving goes on\n`);
  });
  return (text) => {
    if (open) out.write(text, failing ? landed : undefined);
  };
}

/** Creates the root logger. */
export function createLogger(opts: LoggerOptions): Logger {
  const out = opts.destination ?? process.stdout;
  const pretty = opts.pretty === "always" || (opts.pretty === "auto" && isTty(out));
  const send = outputTo(out);
  const destination: DestinationStream = pretty ? prettyDestination(send, isTty(out)) : { write: (line: string) => send(escapeUnsafe(line)) };
  return pino(
    {
      level: opts.level,
      base: { pid: process.pid },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: { paths: [...REDACT_PATHS], censor: "[redacted]" },
    },
    destination,
  );
}

/**
 * A session's logger: a pino child with the session's bindings, made when a line at an enabled
 * level is first written (a session that writes none, as at level warn nearly all do, makes none:
 * a child costs about a thirtieth of a short session's main-thread instructions), and made again
 * after its bindings change. Its level is the server's when the session opened (a reload that
 * changes log.level applies to the sessions opened after it, docs/service.md). Its lines are those
 * the child would write.
 */
export class SessionLog {
  private child: Logger | null = null;
  private readonly level: string;
  private readonly levelVal: number;

  constructor(
    private readonly root: Logger,
    private bindings: Readonly<Record<string, string>>,
  ) {
    this.level = root.level;
    this.levelVal = root.levelVal;
  }

  /** New bindings for the lines written from now on. */
  rebind(bindings: Readonly<Record<string, string>>): void {
    this.bindings = bindings;
    this.child = null;
  }

  /** Whether a line at `level` would be written. */
  isLevelEnabled(level: LogLevelName): boolean {
    return LEVEL_VALUES[level] >= this.levelVal;
  }

  debug(obj: object, msg?: string, ...args: unknown[]): void {
    if (LEVEL_VALUES.debug >= this.levelVal) this.get().debug(obj, msg, ...args);
  }

  info(obj: object, msg?: string, ...args: unknown[]): void {
    if (LEVEL_VALUES.info >= this.levelVal) this.get().info(obj, msg, ...args);
  }

  warn(obj: object, msg?: string, ...args: unknown[]): void {
    if (LEVEL_VALUES.warn >= this.levelVal) this.get().warn(obj, msg, ...args);
  }

  error(obj: object, msg?: string, ...args: unknown[]): void {
    if (LEVEL_VALUES.error >= this.levelVal) this.get().error(obj, msg, ...args);
  }

  private get(): Logger {
    if (this.child === null) {
      const child = this.root.child(this.bindings);
      // Set on the child itself: pino gives a child a level of its own only when it differs from
      // its parent's, and one without follows the parent's (a reload's) level from then on.
      child.level = this.level;
      this.child = child;
    }
    return this.child;
  }
}

type LogLevelName = "debug" | "info" | "warn" | "error";
const LEVEL_VALUES = pino.levels.values as Readonly<Record<LogLevelName, number>>;
