/**
 * The bytes of a listing, built in reused memory. A large listing encoded with Buffer.from() lands
 * in newly mapped memory each time, and first touching a page costs far more than writing it (on
 * this kind of virtual machine about 3 ms of page faults for the 700 KB of a 10,000-entry LIST,
 * against 0.05 ms to encode the same text into a buffer used before). So lines are gathered into
 * short strings and encoded into a buffer taken from a small pool, which goes back to the pool
 * once the data connection that sent it has closed. A small listing is one short string and
 * one small buffer, as before.
 */
import type { Socket } from "node:net";

/** Text gathered before it is encoded (a string of this size stays out of V8's large-object space). */
const CHUNK_CHARS = 16 * 1024;
/** First size of a pooled buffer. */
const FIRST_SIZE = 256 * 1024;
/** What the pool keeps: at most `buffers` buffers of at most `maxBytes` each. Tests change it. */
export const listingPool = { buffers: 4, maxBytes: 4 << 20 };

const pool: Buffer[] = [];

function take(min: number): Buffer {
  for (let i = pool.length - 1; i >= 0; i--) {
    const b = pool[i] as Buffer;
    if (b.length >= min) {
      pool.splice(i, 1);
      return b;
    }
  }
  let size = FIRST_SIZE;
  while (size < min) size *= 2;
  return Buffer.allocUnsafe(size);
}

function giveBack(b: Buffer): void {
  if (b.length > listingPool.maxBytes) return;
  if (pool.length < listingPool.buffers) pool.push(b);
  else {
    // Keep the larger ones: they serve every listing a smaller one would.
    let smallest = 0;
    for (let i = 1; i < pool.length; i++) if ((pool[i] as Buffer).length < (pool[smallest] as Buffer).length) smallest = i;
    if ((pool[smallest] as Buffer).length < b.length) pool[smallest] = b;
  }
}

/** Number of buffers the pool holds (tests). */
export function pooledListingBuffers(): number {
  return pool.length;
}

/** A listing's lines, each ended with CRLF, encoded as UTF-8. */
export class ListingBuffer {
  private text = "";
  private buf: Buffer | null = null;
  private len = 0;
  private done = false;

  /** `expectedBytes`: about how large the listing will be, when the caller knows. A large listing
   * then takes memory of that size at once, rather than growing into it by doubling and copying
   * (each size on the way written in full, and the last ones garbage at the end). */
  constructor(private readonly expectedBytes = 0) {}

  /** Adds one line (without its CRLF). */
  add(line: string): void {
    this.text += line + "\r\n";
    if (this.text.length >= CHUNK_CHARS) this.encode();
  }

  private encode(): void {
    const need = Math.max(this.len + this.text.length * 3, this.buf === null ? this.expectedBytes : 0);
    if (this.buf === null || need > this.buf.length) {
      const next = take(need);
      if (this.buf !== null) {
        this.buf.copy(next, 0, 0, this.len);
        giveBack(this.buf);
      }
      this.buf = next;
    }
    this.len += this.buf.write(this.text, this.len, "utf8");
    this.text = "";
  }

  /** The bytes; call once, after the last line. Until `release()` they live in pooled memory. */
  bytes(): Buffer {
    if (this.done) throw new Error("ListingBuffer.bytes() called twice");
    this.done = true;
    if (this.buf === null) return Buffer.from(this.text, "utf8");
    if (this.text.length > 0) this.encode();
    return this.buf.subarray(0, this.len);
  }

  /** Gives the memory back to the pool once `socket`, which was given the bytes to send, has
   * closed: until then a write of them may still be queued. */
  releaseAfter(socket: Socket): void {
    if (socket.closed) this.release();
    else socket.once("close", () => this.release());
  }

  /** Gives the memory back to the pool; call only once nothing reads the bytes any more. */
  release(): void {
    const b = this.buf;
    this.buf = null;
    this.text = "";
    if (b !== null) giveBack(b);
  }
}
