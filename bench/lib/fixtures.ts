/**
 * The files every server serves, made once under the bench root and kept between runs: a big file
 * for single-stream transfers, a 64 KiB file and a 100-entry directory for the session scenario,
 * 2,000 files of 4 KiB, a 10,000-entry directory, and a world-writable upload directory.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, closeSync, existsSync, mkdirSync, openSync, rmSync, statSync, writeFileSync, writeSync } from "node:fs";
import { randomFillSync } from "node:crypto";
import path from "node:path";

/** Names of the fixtures inside the root. */
export interface Fixtures {
  readonly root: string;
  /** Big file name and size. */
  readonly big: { readonly name: string; readonly size: number };
  readonly file64k: string;
  readonly dir100: string;
  readonly smallDir: string;
  readonly smallCount: number;
  readonly listDir: string;
  readonly listCount: number;
  /** Writable by every server's account. */
  readonly upDir: string;
}

const SMALL_TOTAL = 2000;
const LIST_TOTAL = 10_000;

/** Makes (or reuses) the fixtures under `root`. */
export function ensureFixtures(root: string, bigBytes: number, log: (line: string) => void): Fixtures {
  mkdirSync(root, { recursive: true });
  chmodSync(root, 0o755);
  const big = { name: `big-${bigBytes >> 20}M.bin`, size: bigBytes };
  const bigPath = path.join(root, big.name);
  if (!existsSync(bigPath) || statSync(bigPath).size !== bigBytes) {
    log(`making ${big.name} (${bigBytes >> 20} MiB)`);
    writeFilled(bigPath, bigBytes);
  }
  const file64k = "file64k.bin";
  if (!existsSync(path.join(root, file64k))) writeFilled(path.join(root, file64k), 64 * 1024);
  fileDir(path.join(root, "dir100"), 100, 1024);
  fileDir(path.join(root, "small"), SMALL_TOTAL, 4096);
  fileDir(path.join(root, "list10k"), LIST_TOTAL, 0, log);
  const up = path.join(root, "up");
  mkdirSync(up, { recursive: true });
  chmodSync(up, 0o1777);
  return {
    root,
    big,
    file64k,
    dir100: "dir100",
    smallDir: "small",
    smallCount: SMALL_TOTAL,
    listDir: "list10k",
    listCount: LIST_TOTAL,
    upDir: "up",
  };
}

/** Writes `size` bytes of random data (made once, written in 1 MiB blocks). */
function writeFilled(file: string, size: number): void {
  const block = randomFillSync(Buffer.allocUnsafe(Math.min(size, 1 << 20)));
  const fd = openSync(`${file}.tmp`, "w", 0o644);
  try {
    for (let done = 0; done < size; ) {
      const n = Math.min(block.length, size - done);
      done += writeSync(fd, block, 0, n);
    }
  } finally {
    closeSync(fd);
  }
  rmSync(file, { force: true });
  spawnSync("mv", [`${file}.tmp`, file]);
}

/** A directory of `count` files of `size` bytes; a marker records that it is complete. */
function fileDir(dir: string, count: number, size: number, log?: (line: string) => void): void {
  const marker = path.join(path.dirname(dir), `.${path.basename(dir)}.done`);
  if (existsSync(marker)) return;
  log?.(`making ${path.basename(dir)}/ (${count} files)`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { mode: 0o755 });
  chmodSync(dir, 0o755);
  const body = Buffer.alloc(size, 0x61);
  for (let i = 0; i < count; i++) writeFileSync(path.join(dir, `f${String(i).padStart(5, "0")}.dat`), body, { mode: 0o644 });
  writeFileSync(marker, `${count}\n`);
}

/** Reads a file once so that it is in the page cache (disk speed must not enter the figures). */
export function warmFile(file: string): void {
  spawnSync("cat", [file], { stdio: ["ignore", "ignore", "ignore"], timeout: 120_000 });
}

/** What the memory primer writes per call. */
const PRIME_CHUNK = Buffer.alloc(8 << 20, 0x33);

/**
 * Has the kernel take `bytes` of page cache and give it straight back, right before an upload that
 * needs as much. On a virtual machine whose host backs guest memory lazily and takes free pages
 * back (free page reporting, about 2 s after they are freed), an upload's first touch of each new
 * page-cache page costs far more than the copy itself, and how much of that an upload meets depends
 * on how long ago the last large file was removed: a C program writing 1 GiB ran at 7–10 GB/s
 * within a second of such a removal and at 0.5–1.7 GB/s three or more seconds after. Priming puts
 * every server's upload in the first state, the one a machine whose memory is its own is always in.
 */
export function primeMemory(dir: string, bytes: number): void {
  const file = path.join(dir, `.prime-${process.pid}`);
  const fd = openSync(file, "w");
  try {
    for (let done = 0; done < bytes; done += PRIME_CHUNK.length) writeSync(fd, PRIME_CHUNK, 0, Math.min(PRIME_CHUNK.length, bytes - done));
  } finally {
    closeSync(fd);
    rmSync(file, { force: true });
  }
}

/** Removes an upload leftover, if any. */
export function removeUpload(file: string): void {
  rmSync(file, { recursive: true, force: true });
}
