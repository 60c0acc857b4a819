"use strict";
/**
 * The hashers of file checksums (fs/digest.ts). Plain CommonJS so that the main thread (through
 * digest.ts) and the digest worker, which runs no loader, share one implementation.
 */

const crypto = require("node:crypto");
const nodeZlib = require("node:zlib");

let crcTable = null;

/** CRC-32 (IEEE, as zlib's) with a hash's update/digest shape: zlib.crc32 where this Node has it
 * (20.15 and later), else a table (tests pass an object without crc32 to reach it). */
function crc32Hasher(zlib = nodeZlib) {
  let crc = 0;
  const native = typeof zlib.crc32 === "function";
  if (!native && crcTable === null) {
    crcTable = new Int32Array(256);
    for (let i = 0; i < 256; i++) {
      let c = i;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[i] = c;
    }
  }
  return {
    update(b) {
      if (native) crc = zlib.crc32(b, crc);
      else {
        let c = ~crc;
        for (let i = 0; i < b.length; i++) c = crcTable[(c ^ b[i]) & 0xff] ^ (c >>> 8);
        crc = ~c >>> 0;
      }
    },
    digest() {
      return (crc >>> 0).toString(16).padStart(8, "0");
    },
  };
}

/** A hasher for `name`, one of Node's crypto hash names or "crc32". */
function makeHasher(name) {
  return name === "crc32" ? crc32Hasher() : crypto.createHash(name);
}

module.exports = { crc32Hasher, makeHasher };
