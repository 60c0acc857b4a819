/**
 * Splits the control connection's byte stream into command lines (RFC 959 §4.1.3: lines end in
 * CRLF; a bare LF is accepted too). Telnet IAC sequences (RFC 854), which clients send around ABOR,
 * are removed. Memory is bounded: a line longer than `maxLength` bytes is discarded as it arrives,
 * and reported once as overlong as soon as it crosses the limit (a client that never sends a line
 * end still gets its 500) instead of growing a buffer.
 */

import { isUtf8 } from "node:buffer";

const LF = 0x0a;
const CR = 0x0d;
const IAC = 0xff;

/** Decodes whole lines (never with `stream`, so it keeps no state between calls): one for all
 * sessions, since each decoder holds about 0.7 KiB of native memory. */
const UTF8 = new TextDecoder("utf-8", { fatal: false });

/** One event out of the framer: a decoded line, or the notice that a line was too long. */
export type FramedLine = { readonly kind: "line"; readonly text: string; readonly notUtf8?: true } | { readonly kind: "overlong" };

/** Incremental line splitter with a hard bound on buffered bytes. */
export class LineFramer {
  private parts: Buffer[] = [];
  private size = 0;
  private discarding = false;

  /** @param maxLength bytes allowed in one line, CRLF included. */
  constructor(private readonly maxLength: number) {}

  /** Feeds bytes; returns the complete lines (and overlong notices) they finish, in order. The
   * framer keeps no reference to `chunk`: the caller may reuse it once this returns. */
  push(chunk: Buffer): FramedLine[] {
    const out: FramedLine[] = [];
    let start = 0;
    while (start < chunk.length) {
      // The usual line: whole in this chunk, nothing buffered before it, short, and ASCII (so
      // neither IAC nor anything to decode as UTF-8): read as Latin-1, which for ASCII is the same
      // text, in one pass over its bytes. Anything else takes the general way below.
      if (this.size === 0 && !this.discarding) {
        const end = asciiLineEnd(chunk, start, this.maxLength);
        if (end >= 0) {
          const stop = end > start && chunk[end - 1] === CR ? end - 1 : end;
          out.push({ kind: "line", text: chunk.toString("latin1", start, stop) });
          start = end + 1;
          continue;
        }
      }
      const nl = chunk.indexOf(LF, start);
      const end = nl === -1 ? chunk.length : nl;
      // A whole line in this chunk that the way above declined (not ASCII, or too long to be
      // scanned there): decoded from the chunk itself, nothing kept. The LF counts too.
      if (nl !== -1 && this.size === 0 && !this.discarding && end - start + 1 <= this.maxLength) {
        out.push(decodeLine(chunk.subarray(start, end)));
        start = nl + 1;
        continue;
      }
      if (this.take(chunk.subarray(start, end))) out.push({ kind: "overlong" });
      if (nl === -1) break;
      // The LF counts too (counted, never kept): a line of maxLength bytes before it is one over.
      if (!this.discarding && this.size + 1 > this.maxLength) {
        this.discarding = true;
        out.push({ kind: "overlong" });
      }
      const line = this.finishLine();
      if (line) out.push(line);
      start = nl + 1;
    }
    return out;
  }

  /** Drops whatever partial line is buffered (after AUTH TLS: pipelined plaintext is never run). */
  reset(): void {
    this.parts = [];
    this.size = 0;
    this.discarding = false;
  }

  /** Buffers part of a line; true when this piece made the line overlong. */
  private take(piece: Buffer): boolean {
    if (piece.length === 0 || this.discarding) return false;
    if (this.size + piece.length > this.maxLength) {
      this.discarding = true;
      this.parts = [];
      this.size = 0;
      return true;
    }
    // A copy: the line goes on in a later chunk, and the caller may reuse this one (a shared read
    // buffer) for its next read.
    this.parts.push(Buffer.from(piece));
    this.size += piece.length;
    return false;
  }

  /** The line just ended; null when it was overlong (already reported). */
  private finishLine(): FramedLine | null {
    if (this.discarding) {
      this.reset();
      return null;
    }
    const bytes = this.parts.length === 1 ? (this.parts[0] as Buffer) : Buffer.concat(this.parts, this.size);
    this.parts = [];
    this.size = 0;
    return decodeLine(bytes);
  }
}

/** The line of `bytes` (its LF taken off): a trailing CR dropped, Telnet commands removed, UTF-8
 * decoded, and marked when it was not UTF-8. */
function decodeLine(line: Buffer): FramedLine {
  let bytes = line;
  if (bytes.length > 0 && bytes[bytes.length - 1] === CR) bytes = bytes.subarray(0, bytes.length - 1);
  if (bytes.includes(IAC)) bytes = stripTelnet(bytes);
  const text = UTF8.decode(bytes);
  // Bytes that are not UTF-8 decode to U+FFFD, as a real U+FFFD does: only then is it checked.
  if (text.includes("\ufffd") && !isUtf8(bytes)) return { kind: "line", text, notUtf8: true };
  return { kind: "line", text };
}

/** Where the line starting at `start` ends (its LF) when it is there, of ASCII bytes only, and
 * at most `maxLength` bytes with its LF; else -1. */
function asciiLineEnd(chunk: Buffer, start: number, maxLength: number): number {
  const limit = Math.min(chunk.length, start + maxLength);
  for (let i = start; i < limit; i++) {
    const b = chunk[i] as number;
    if (b === LF) return i;
    if (b >= 0x80) return -1;
  }
  return -1;
}

/** Telnet's Data Mark (RFC 854), the byte a client sends as TCP urgent data around ABOR. */
const DM = 0xf2;

/**
 * Removes Telnet commands (RFC 854): IAC IAC is a literal 0xFF, IAC WILL/WONT/DO/DONT take an
 * option byte, and any other IAC command (IP, DM, AO…) is two bytes. Clients send "IAC IP, IAC DM"
 * before ABOR with part of it as TCP urgent data, which the kernel takes out of the stream: lftp's
 * urgent DM leaves "IAC IP IAC ABOR", the BSD client's urgent IAC leaves "IAC IP DM ABOR". So an
 * IAC before an ordinary byte is dropped alone (the byte stays), and a bare DM right after a
 * Telnet command is dropped with it.
 */
export function stripTelnet(bytes: Buffer): Buffer {
  const out = Buffer.allocUnsafe(bytes.length);
  let n = 0;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i] as number;
    if (b !== IAC) {
      out[n++] = b;
      continue;
    }
    const next = bytes[i + 1];
    if (next === IAC) {
      out[n++] = IAC;
      i++;
      continue;
    }
    if (next === undefined || next < 0xf0) continue; // a lone IAC: the byte after it is data
    i += next >= 0xfb ? 2 : 1;
    if (bytes[i + 1] === DM) i++;
  }
  return out.subarray(0, n);
}
