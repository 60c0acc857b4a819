/**
 * The optional transfer log in the wu-ftpd xferlog format (`log.xferlog`), one line per file
 * transfer, which log analysers (and vsftpd's and ProFTPD's users) know:
 * `current-time transfer-time remote-host file-size filename transfer-type special-action-flag
 * direction access-mode username service-name authentication-method authenticated-user-id
 * completion-status`.
 */
import { accessSync, closeSync, constants, openSync, statSync, write } from "node:fs";
import { dirname, resolve } from "node:path";
import { ConfigError } from "../config/load.ts";
import { errnoCode, systemErrorText } from "../config/syserr.ts";
import { closeQuietly } from "../fs/fd.ts";
import { printable, type Logger } from "./logger.ts";

/** One finished transfer. */
export interface XferEntry {
  readonly when: Date;
  readonly ms: number;
  readonly remote: string;
  readonly bytes: number;
  readonly path: string;
  readonly ascii: boolean;
  readonly direction: "download" | "upload";
  readonly user: string;
  /** Logged in by anonymous FTP: access mode "a" (a real user's is "r"). */
  readonly anonymous: boolean;
  readonly complete: boolean;
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** Formats one xferlog line (local time, like the other servers); spaces in names become "_", and
 * DEL and the C1 controls \xNN. */
export function formatXferLine(e: XferEntry): string {
  const d = e.when;
  const time = `${DAYS[d.getDay()]} ${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2)} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())} ${d.getFullYear()}`;
  const secs = Math.max(1, Math.round(e.ms / 1000));
  // DEL and the C1 controls a name may hold (only C0 is refused in a path) would act on the terminal
  // of tail -f (U+009B starts an escape sequence, U+0085 ends a line): written as \xNN.
  const name = printable(e.path.replace(SPACE_OR_NUL, "_"));
  const dir = e.direction === "download" ? "o" : "i";
  // The access mode is "a" for anonymous FTP, as the format has it; its username field, which
  // wu-ftpd, vsftpd and ProFTPD fill with the anonymous password (an e-mail address), stays the
  // login name: passwords are never logged.
  const mode = e.anonymous ? "a" : "r";
  return `${time} ${secs} ${e.remote} ${e.bytes} ${name} ${e.ascii ? "a" : "b"} _ ${dir} ${mode} ${e.user} ftp 0 * ${e.complete ? "c" : "i"}\n`;
}

/** Lines waiting for the disk beyond this are dropped (and counted), so a stalled disk cannot
 * grow the process without bound (bytes; about 8,000 lines). */
export const XFERLOG_MAX_PENDING = 1 << 20;

/**
 * Appends xferlog lines to a file, one write at a time, never blocking a session.
 *
 * The file is opened when the server starts: a path that cannot be opened stops the start with
 * one line, instead of a transfer log that silently never appears. A write that fails (a full
 * disk, a quota, an I/O error) drops its lines and logs one warning for the whole run of
 * failures; each new line tries again, and the first that lands logs how many were lost. A reload
 * (SIGHUP) opens the path again, so that a rotated file is let go.
 */
export class XferLog {
  #fd: number;
  /** A descriptor reopen() opened, taken over between writes. */
  #next: number | null = null;
  #pending: string[] = [];
  #pendingBytes = 0;
  #writing = false;
  #closed = false;
  #onIdle: (() => void)[] = [];
  /** The errno of the failing run of writes, null while writes land. */
  #failing: string | null = null;
  /** Lines lost since the last write that landed. */
  #dropped = 0;
  /** The last write that failed stopped inside a line: the next one starts a new line. */
  #midLine = false;

  private constructor(
    readonly file: string,
    fd: number,
    private readonly logger: Logger,
  ) {
    this.#fd = fd;
  }

  /** Opens `file` for appending (created 0640 if missing); a ConfigError naming log.xferlog when
   * it cannot be opened. */
  static open(file: string, logger: Logger): XferLog {
    return new XferLog(file, openForAppend(file), logger);
  }

  /** Queues one entry; it is written after the ones before it. */
  write(e: XferEntry): void {
    if (this.#closed) return;
    const line = formatXferLine(e);
    if (this.#pendingBytes + line.length > XFERLOG_MAX_PENDING) {
      this.#lost(1, "EAGAIN");
      return;
    }
    this.#pending.push(line);
    this.#pendingBytes += line.length;
    if (!this.#writing) this.#flush();
  }

  /** Opens the path again (after a rotation); lines from the next write on go to the new file.
   * When it cannot be opened, the current file is kept and a warning says why. */
  reopen(): void {
    if (this.#closed) return;
    let fd: number;
    try {
      fd = openForAppend(this.file);
    } catch (err) {
      this.logger.warn({ event: "xferlog-reopen-failed", file: this.file, code: errnoCode(err) }, "xferlog: cannot open %s again (%s); still writing to the file already open", this.file, systemErrorText(err));
      return;
    }
    if (this.#next !== null) closeQuietly(this.#next);
    this.#next = fd;
    if (!this.#writing) this.#takeNext();
  }

  /** Writes what is queued, then closes the file. */
  close(): Promise<void> {
    if (this.#closed) return new Promise((resolve) => (this.#writing ? this.#onIdle.push(resolve) : resolve()));
    this.#closed = true;
    return new Promise((resolve) => {
      this.#onIdle.push(resolve);
      if (!this.#writing) this.#idle();
    });
  }

  #takeNext(): void {
    if (this.#next === null) return;
    closeQuietly(this.#fd);
    this.#fd = this.#next;
    this.#next = null;
    this.#midLine = false;
  }

  #flush(): void {
    this.#takeNext();
    // A line cut short by a failed write is ended first, so the file stays one entry per line.
    const cut = this.#midLine ? 1 : 0;
    const text = (cut ? "\n" : "") + this.#pending.join("");
    const lines = this.#pending.length;
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#writing = true;
    this.#writeFrom(Buffer.from(text), 0, lines, cut);
  }

  #writeFrom(buf: Buffer, off: number, lines: number, cut: number): void {
    write(this.#fd, buf, off, buf.length - off, null, (err, n) => {
      if (err === null && off + n < buf.length) {
        this.#writeFrom(buf, off + n, lines, cut);
        return;
      }
      if (err !== null) {
        const landed = Math.max(0, countLines(buf, off) - cut);
        // The file now ends where this write stopped; a write that landed nothing leaves it as it
        // was, still inside a line cut short by an earlier one, whose end is then still owed.
        if (off > 0) this.#midLine = buf[off - 1] !== NEWLINE;
        this.#lost(lines - landed, errnoCode(err) ?? "EIO", err);
      } else {
        this.#midLine = false;
        this.#landed();
      }
      this.#writing = false;
      if (this.#pending.length > 0) this.#flush();
      else this.#idle();
    });
  }

  #lost(lines: number, code: string, err?: unknown): void {
    this.#dropped += lines;
    if (this.#failing !== null) return;
    this.#failing = code;
    const why = err === undefined ? "the disk is not keeping up" : systemErrorText(err);
    this.logger.warn({ event: "xferlog-failed", file: this.file, code }, "xferlog: cannot write %s (%s); transfer lines are dropped until a write succeeds", this.file, why);
  }

  #landed(): void {
    if (this.#failing === null) return;
    this.logger.info({ event: "xferlog-resumed", file: this.file, dropped: this.#dropped }, "xferlog: writing %s again; %d lines were lost", this.file, this.#dropped);
    this.#failing = null;
    this.#dropped = 0;
  }

  #idle(): void {
    if (!this.#closed) return;
    if (this.#next !== null) closeQuietly(this.#next);
    this.#next = null;
    closeQuietly(this.#fd);
    for (const resolve of this.#onIdle.splice(0)) resolve();
  }
}

const NEWLINE = 0x0a;

function openForAppend(file: string): number {
  try {
    return openSync(file, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o640);
  } catch (err) {
    throw cannotOpen(file, err);
  }
}

function cannotOpen(file: string, err: unknown): ConfigError {
  return new ConfigError("log.xferlog", `log.xferlog cannot be opened: ${file} (${systemErrorText(err)})`);
}

/** Throws the ConfigError XferLog.open would for `file` (relative to `cwd`), without creating
 * it: an existing file must open for appending, a new one needs a directory it can be made in. */
export function checkXferlogPath(file: string, cwd = process.cwd()): void {
  const full = resolve(cwd, file);
  try {
    closeSync(openSync(full, constants.O_WRONLY | constants.O_APPEND | constants.O_NONBLOCK));
    return;
  } catch (err) {
    if (errnoCode(err) !== "ENOENT") throw cannotOpen(file, err);
  }
  const dir = dirname(full);
  try {
    if (!statSync(dir).isDirectory()) throw Object.assign(new Error("not a directory"), { code: "ENOTDIR" });
    accessSync(dir, constants.W_OK | constants.X_OK);
  } catch (err) {
    throw cannotOpen(file, err);
  }
}

/** Complete lines in `buf` before `end`. */
function countLines(buf: Buffer, end: number): number {
  let n = 0;
  for (let i = buf.indexOf(NEWLINE); i >= 0 && i < end; i = buf.indexOf(NEWLINE, i + 1)) n++;
  return n;
}

const SPACE_OR_NUL = /[\s\0]/g;

function p2(n: number): string {
  return String(n).padStart(2, "0");
}
