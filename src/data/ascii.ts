/**
 * TYPE A conversion (RFC 959 §3.1.1.1): the wire uses CRLF line ends, the disk uses LF.
 * Both directions keep one byte of state across chunks, so a CRLF split between chunks is handled.
 */
import { Transform, type TransformCallback } from "node:stream";

const CR = 0x0d;
const LF = 0x0a;

/** Disk → wire: every LF not already preceded by CR becomes CRLF. Returns a converter for
 * consecutive chunks; it gives back the chunk itself when nothing changes, else a new buffer. */
export function networkAsciiEncoder(): (chunk: Buffer) => Buffer {
  let lastWasCR = false;
  return (chunk) => {
    let extra = 0;
    for (let i = 0; i < chunk.length; i++) {
      if (chunk[i] === LF && !(i === 0 ? lastWasCR : chunk[i - 1] === CR)) extra++;
    }
    if (extra === 0) {
      lastWasCR = chunk.length > 0 ? chunk[chunk.length - 1] === CR : lastWasCR;
      return chunk;
    }
    const out = Buffer.allocUnsafe(chunk.length + extra);
    let n = 0;
    for (let i = 0; i < chunk.length; i++) {
      const b = chunk[i] as number;
      if (b === LF && !(i === 0 ? lastWasCR : chunk[i - 1] === CR)) out[n++] = CR;
      out[n++] = b;
    }
    lastWasCR = chunk[chunk.length - 1] === CR;
    return out;
  };
}

/** Wire → disk: CRLF becomes LF; a lone CR stays. */
export function fromNetworkAscii(): Transform {
  let pendingCR = false;
  return new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      const out = Buffer.allocUnsafe(chunk.length + 1);
      let n = 0;
      let i = 0;
      if (pendingCR) {
        pendingCR = false;
        if (chunk[0] !== LF) out[n++] = CR;
      }
      for (; i < chunk.length; i++) {
        const b = chunk[i] as number;
        if (b === CR) {
          if (i === chunk.length - 1) {
            pendingCR = true;
            continue;
          }
          if (chunk[i + 1] === LF) continue;
        }
        out[n++] = b;
      }
      cb(null, out.subarray(0, n));
    },
    flush(cb: TransformCallback) {
      cb(null, pendingCR ? Buffer.from([CR]) : null);
    },
  });
}
