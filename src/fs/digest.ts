/**
 * File digests for HASH and the X* checksum commands, computed on a worker thread: hashing a large
 * file is seconds of CPU, which on the event loop would stall every session. The file is opened
 * on the main thread, through the jail as a download is (fs/jail.ts openDownload), and only its
 * descriptor crosses; the worker reads it with positional reads, so nothing else sharing it is
 * disturbed. Requests run one after another on one worker (the others wait here, on the main
 * thread, at most MAX_QUEUED of them, and reach the worker one at a time), each can be cancelled
 * (ABOR, the session closed) between two reads, or at once while it waits, and the worker does not
 * keep the process alive (fs/requestworker.ts). Where a worker cannot run, the digest is computed
 * on the main thread in reads through the thread pool, one chunk per turn of the event loop.
 */
import { read } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { RequestWorker, WorkerStopped } from "./requestworker.ts";

/** Why a digest stopped where the file ended before the range did (followed by where): the file
 * was cut short after it was opened, and the size the range was checked against is gone. A digest
 * of the bytes that were left would be answered as that of the whole range (HASH names it). */
const SHORT = "the file ended before the range did, at byte ";

/** The algorithms, by their names in the HASH registry (draft-bryan-ftpext-hash §4). */
export const HASH_ALGORITHMS = ["SHA-1", "SHA-256", "SHA-512", "MD5", "CRC32"] as const;
export type HashAlgorithm = (typeof HASH_ALGORITHMS)[number];

/** What HASH uses until OPTS HASH picks another. */
export const DEFAULT_HASH: HashAlgorithm = "SHA-256";

/** Node's crypto names; CRC32 is computed apart (crc32 below). */
const NODE_NAMES: Readonly<Record<HashAlgorithm, string>> = { "SHA-1": "sha1", "SHA-256": "sha256", "SHA-512": "sha512", MD5: "md5", CRC32: "crc32" };

/** Digests being computed or waiting beyond which a new one is refused (the caller answers 450). */
export const MAX_QUEUED = 32;

/** Bytes per read. */
const CHUNK = 1 << 20;

/** The algorithm named `name` (any case), or null. */
export function hashAlgorithm(name: string): HashAlgorithm | null {
  const upper = name.toUpperCase();
  return HASH_ALGORITHMS.find((a) => a === upper) ?? null;
}

/** Why a digest was not computed. */
export class DigestError extends Error {
  constructor(
    readonly kind: "busy" | "cancelled" | "io",
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = "DigestError";
  }
}

/** A digest being computed: its result, and a way to stop it. */
export interface DigestJob {
  readonly result: Promise<string>;
  /** Stops at the next read, or at once while it waits for its turn; the result then rejects with
   * kind "cancelled". Harmless when done. */
  cancel(): void;
}

/** Where hasher.cjs is, for the worker's require(). */
const HASHER_PATH = fileURLToPath(new URL("./hasher.cjs", import.meta.url));

interface Hasher {
  update(b: Buffer): void;
  /** Lower-case hex (crypto's hashes are asked for "hex"; the CRC-32 hasher ignores the word). */
  digest(enc?: "hex"): string;
}

const hashers = createRequire(import.meta.url)(HASHER_PATH) as {
  crc32Hasher(z?: { crc32?: unknown }): Hasher;
  makeHasher(name: string): Hasher;
};

/** CRC-32 as the worker computes it; given an object without `crc32`, the table version (for
 * tests: this Node has zlib.crc32). */
export const crc32Hasher = hashers.crc32Hasher;

/** The worker's code, plain CommonJS (no loader). One request at a time, in order. The flag is
 * set by the main thread to cancel; it is read before each chunk. */
function workerSource(): string {
  return `
const { parentPort } = require("node:worker_threads");
const { readSync } = require("node:fs");
const { makeHasher } = require(${JSON.stringify(HASHER_PATH)});
const CHUNK = ${CHUNK};
const SHORT = ${JSON.stringify(SHORT)};
const buf = Buffer.allocUnsafe(CHUNK);
parentPort.on("message", ({ id, fd, algo, start, end, flag }) => {
  const cancelled = new Int32Array(flag);
  try {
    const h = makeHasher(algo);
    for (let pos = start; pos < end; ) {
      if (Atomics.load(cancelled, 0) !== 0) return parentPort.postMessage({ id, cancelled: true });
      const n = readSync(fd, buf, 0, Math.min(CHUNK, end - pos), pos);
      if (n === 0) return parentPort.postMessage({ id, error: { message: SHORT + pos } });
      h.update(buf.subarray(0, n));
      pos += n;
    }
    parentPort.postMessage({ id, hex: h.digest("hex") });
  } catch (err) {
    parentPort.postMessage({ id, error: { code: err && err.code, message: String(err && err.message) } });
  }
});
`;
}

/** An answer of the worker. */
interface Answer {
  readonly id: number;
  readonly hex?: string;
  readonly cancelled?: true;
  readonly error?: { readonly code?: string; readonly message: string };
}

const worker = new RequestWorker<Answer>("checksum worker", workerSource);

/** A digest waiting for its turn: start() computes it, drop() rejects it as cancelled. */
interface Turn {
  start(): void;
  drop(): void;
}

/** Digests waiting for the one being computed (`computing`) to end. They wait here rather than in
 * the worker's message queue: one cancelled (ABOR, QUIT, its session gone) while another
 * session's long digest runs is then over at once, its file closed and its place freed, instead of
 * when the worker would have reached it and found it cancelled. */
const turns: Turn[] = [];
let computing = false;

/** The digest being computed has ended: the next one waiting starts. */
function nextTurn(): void {
  computing = false;
  turns.shift()?.start();
}

/**
 * The digest of bytes `start` to `end` (exclusive) of open file `fd`, as lower-case hex. The
 * descriptor must stay open until the result settles, and may be closed once it has. Rejects with
 * a DigestError: "busy" when MAX_QUEUED digests are already being computed or waiting, "cancelled"
 * after cancel(), "io" for a read error or a file that ends before `end` (SHORT).
 */
export function digestFile(fd: number, algo: HashAlgorithm, start: number, end: number): DigestJob {
  const flag = new SharedArrayBuffer(4);
  const cancelled = new Int32Array(flag);
  let turn: Turn | null = null;
  const cancel = (): void => {
    Atomics.store(cancelled, 0, 1);
    const waiting = turn === null ? -1 : turns.indexOf(turn);
    if (waiting >= 0) turns.splice(waiting, 1)[0]?.drop();
  };
  if (turns.length + (computing ? 1 : 0) >= MAX_QUEUED) {
    return { result: Promise.reject(new DigestError("busy", "too many checksums in progress")), cancel };
  }
  const result = new Promise<string>((resolve, reject) => {
    const t: Turn = {
      start() {
        computing = true;
        // The next one starts before this one's caller hears of it, so that a digest asked for
        // right after that finds the place this one held free.
        compute(fd, NODE_NAMES[algo], start, end, flag).then(
          (hex) => {
            nextTurn();
            resolve(hex);
          },
          (err: unknown) => {
            nextTurn();
            reject(err);
          },
        );
      },
      drop: () => reject(new DigestError("cancelled", "cancelled")),
    };
    turn = t;
    if (computing) turns.push(t);
    else t.start();
  });
  return { result, cancel };
}

/** One digest, on the worker, or here where no worker could start. */
function compute(fd: number, name: string, start: number, end: number, flag: SharedArrayBuffer): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const sent = worker.ask(
      { fd, algo: name, start, end, flag },
      {
        answer(m) {
          if (typeof m.hex === "string") resolve(m.hex);
          else if (m.cancelled) reject(new DigestError("cancelled", "cancelled"));
          else reject(new DigestError("io", m.error?.message ?? "read failed", m.error?.code));
          return true;
        },
        reject(err) {
          if (err instanceof WorkerStopped) reject(new DigestError("cancelled", err.message));
          else reject(new DigestError("io", `checksum worker stopped: ${err.message}`));
        },
      },
    );
    // No worker could start: computed here instead, and this promise settles with it.
    if (!sent) resolve(digestHere(fd, name, start, end, new Int32Array(flag)));
  });
}

/** The fallback where no worker runs: reads through the thread pool, hashing between them. */
async function digestHere(fd: number, name: string, start: number, end: number, cancelled: Int32Array): Promise<string> {
  const h = hashers.makeHasher(name);
  const buf = Buffer.allocUnsafe(Math.min(CHUNK, Math.max(end - start, 1)));
  for (let pos = start; pos < end; ) {
    if (Atomics.load(cancelled, 0) !== 0) throw new DigestError("cancelled", "cancelled");
    const n = await new Promise<number>((resolve, reject) =>
      read(fd, buf, 0, Math.min(buf.length, end - pos), pos, (err, bytes) => (err ? reject(new DigestError("io", err.message, err.code)) : resolve(bytes))),
    );
    if (n === 0) throw new DigestError("io", SHORT + pos);
    h.update(buf.subarray(0, n));
    pos += n;
  }
  return h.digest("hex");
}

/** Stops the worker (the server's shutdown); digests still waiting reject as cancelled. */
export function stopDigestWorker(): Promise<void> {
  for (const t of turns.splice(0)) t.drop();
  return worker.stop();
}

/** For tests: the worker's failures forgotten (or, `fail`, counted as too many, so that digests
 * are computed on the main thread). */
export function resetDigestWorkerForTest(fail = false): Promise<void> {
  for (const t of turns.splice(0)) t.drop();
  return worker.reset(fail);
}
