"use strict";
/**
 * lstat for listings without an `fs.Stats` per entry; see fs/rawstat.ts. Plain CommonJS so that the
 * main thread (through rawstat.ts) and the stat worker (fs/statworker.ts, which runs no loader)
 * share one implementation.
 */

/** Numbers per entry: ok (1) or not (0), mode, nlink, uid, gid, size, mtimeMs. */
const FIELDS = 7;

/**
 * A packer `(path, out, o) => boolean` that writes the FIELDS numbers of lstat(path) at out[o], or
 * returns false (writing nothing) for an entry that is missing or cannot be read. It reads Node's
 * fs binding when that answers as `lstat` (fs.lstatSync) does for `probePath`, field by field,
 * and goes through `lstat` otherwise.
 */
function makeStatPacker(lstat, probePath) {
  const raw = checkedBinding(lstat, probePath);
  if (raw === null) {
    return function packViaStats(path, out, o) {
      let s;
      try {
        s = lstat(path, { throwIfNoEntry: false });
      } catch {
        return false;
      }
      if (s === undefined) return false;
      packStats(s, out, o);
      return true;
    };
  }
  return function packViaBinding(path, out, o) {
    let v;
    try {
      v = raw(path, false, undefined, false);
    } catch {
      return false;
    }
    if (v === undefined) return false;
    out[o] = 1;
    out[o + 1] = v[1];
    out[o + 2] = v[2];
    out[o + 3] = v[3];
    out[o + 4] = v[4];
    out[o + 5] = v[8];
    out[o + 6] = v[12] * 1e3 + v[13] / 1e6;
    return true;
  };
}

/**
 * The binding's lstat, or null. Node fills one shared array of numbers per call: dev, mode, nlink,
 * uid, gid, rdev, blksize, ino, size, blocks, then seconds and nanoseconds of atime, mtime, ctime
 * and birthtime (mtimeMs is computed from them as Node does). Used only if it agrees with `lstat`.
 */
function checkedBinding(lstat, probePath) {
  try {
    const b = typeof process.binding === "function" ? process.binding("fs") : null;
    if (!b || typeof b.lstat !== "function") return null;
    const raw = b.lstat.bind(b);
    const v = raw(probePath, false, undefined, false);
    const s = lstat(probePath, { throwIfNoEntry: false });
    const ok =
      v instanceof Float64Array &&
      v.length >= 14 &&
      s !== undefined &&
      v[1] === s.mode &&
      v[2] === s.nlink &&
      v[3] === s.uid &&
      v[4] === s.gid &&
      v[8] === s.size &&
      v[12] * 1e3 + v[13] / 1e6 === s.mtimeMs &&
      raw(probePath + ".berth-missing-probe", false, undefined, false) === undefined;
    return ok ? raw : null;
  } catch {
    return null;
  }
}

/** Writes the FIELDS numbers of an fs.Stats at out[o], as a packer does. */
function packStats(s, out, o) {
  out[o] = 1;
  out[o + 1] = s.mode;
  out[o + 2] = s.nlink;
  out[o + 3] = s.uid;
  out[o + 4] = s.gid;
  out[o + 5] = s.size;
  out[o + 6] = s.mtimeMs;
}

/** Whether `makeStatPacker` would read the binding here (tests). */
function bindingUsable(lstat, probePath) {
  return checkedBinding(lstat, probePath) !== null;
}

module.exports = { FIELDS, makeStatPacker, packStats, bindingUsable };
