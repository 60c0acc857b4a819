/**
 * The optional transfer log in the wu-ftpd xferlog format (`log.xferlog`), one line per file
 * transfer, which log analysers (and vsftpd's and ProFTPD's users) know:
 * `current-time transfer-time remote-host file-size filename transfer-type special-action-flag
 * direction access-mode username service-name authentication-method authenticated-user-id
 * completion-status`.
 */
import { createWriteStream, type WriteStream } from "node:fs";

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
  readonly complete: boolean;
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** Formats one xferlog line (local time, like the other servers); spaces in names become "_". */
export function formatXferLine(e: XferEntry): string {
  const d = e.when;
  const time = `${DAYS[d.getDay()]} ${MONTHS[d.getMonth()]} ${String(d.getDate()).padStart(2)} ${p2(d.getHours())}:${p2(d.getMinutes())}:${p2(d.getSeconds())} ${d.getFullYear()}`;
  const secs = Math.max(1, Math.round(e.ms / 1000));
  const name = e.path.replace(SPACE_OR_NUL, "_");
  const dir = e.direction === "download" ? "o" : "i";
  return `${time} ${secs} ${e.remote} ${e.bytes} ${name} ${e.ascii ? "a" : "b"} _ ${dir} r ${e.user} ftp 0 * ${e.complete ? "c" : "i"}\n`;
}

/** Appends xferlog lines to a file. */
export class XferLog {
  private readonly out: WriteStream;

  /** Opens `file` for appending (created if missing). */
  constructor(file: string) {
    this.out = createWriteStream(file, { flags: "a", mode: 0o640 });
    this.out.on("error", () => undefined);
  }

  /** Writes one entry. */
  write(e: XferEntry): void {
    this.out.write(formatXferLine(e));
  }

  /** Flushes and closes the file. */
  close(): Promise<void> {
    return new Promise((resolve) => this.out.end(resolve));
  }
}

const SPACE_OR_NUL = /[\s\0]/g;

function p2(n: number): string {
  return String(n).padStart(2, "0");
}
