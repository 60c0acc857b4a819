/**
 * The data path: file → socket (RETR), socket → file (STOR/APPE/STOU) and buffer → socket
 * (listings). Streams with backpressure and large chunks, never the whole file in memory.
 * A transfer settles only when its bytes are handed to the kernel (download: the socket finished
 * writing, TLS close_notify included) or on disk (upload: the write stream finished), so the caller
 * can say 226 truthfully (DESIGN convention 4).
 */
import type { FileHandle } from "node:fs/promises";
import type { Socket } from "node:net";
import { pipeline } from "node:stream/promises";
import type { Readable, Transform, Writable } from "node:stream";
import { FtpError } from "../protocol/errors.ts";
import { fromNetworkAscii, toNetworkAscii } from "./ascii.ts";
import { hookStage, type TransferHook } from "./hook.ts";

/** Read size for downloads: large chunks keep syscalls and TLS records few. */
export const READ_CHUNK = 1 << 20;
/** Write buffer for uploads: chunks that arrive while a write is in flight go out in one writev. */
export const WRITE_BUFFER = 4 << 20;

/** Why a transfer stopped early. */
export type AbortReason = "abort" | "stalled" | "shutdown" | "client";

/** A running transfer, visible to STAT and ABOR. */
export class Transfer {
  /** When it started (ms since epoch). */
  readonly startedAt = Date.now();
  private abortReason: AbortReason | null = null;
  private counter: () => number = () => 0;
  private socket: Socket | null = null;
  private onAbort: (() => void) | null = null;
  private resolveDone: () => void = () => undefined;
  /** Settles once the transfer's final reply (226, 426, …) has been written. */
  readonly done: Promise<void> = new Promise((resolve) => (this.resolveDone = resolve));

  constructor(
    /** "download", "upload" or "list". */
    readonly direction: "download" | "upload" | "list",
    /** The virtual path, for STAT and the log. */
    readonly path: string,
    /** Total bytes expected, when known (downloads). */
    readonly expected: number | null,
  ) {}

  /** Bytes moved so far. */
  get bytes(): number {
    return this.counter();
  }

  /** Why it was aborted, or null. */
  get aborted(): AbortReason | null {
    return this.abortReason;
  }

  /** Stops the transfer: the data socket is destroyed and the pipeline rejects. */
  abort(reason: AbortReason): void {
    if (this.abortReason) return;
    this.abortReason = reason;
    this.socket?.destroy();
    this.onAbort?.();
  }

  /** Runs `fn` on abort (closing a data channel still waiting to connect). */
  whenAborted(fn: () => void): void {
    this.onAbort = fn;
  }

  /** Marks the final reply written; ABOR waits for this before its own 226. */
  settle(): void {
    this.resolveDone();
  }

  /** Ties the transfer to its data socket and its byte counter. */
  attach(socket: Socket, counter: () => number): void {
    this.socket = socket;
    this.counter = counter;
    if (this.abortReason) socket.destroy();
  }
}

/** Sends `length` bytes of `handle` from `start` to the socket, then ends it (close_notify for TLS). */
export async function sendFile(
  t: Transfer,
  socket: Socket,
  handle: FileHandle,
  start: number,
  ascii: boolean,
  stalledMs: number,
  hook: TransferHook | null = null,
): Promise<number> {
  // Limits (data/hook.ts): smaller reads and one pacing stage, only when a limit applies.
  const highWaterMark = hook ? Math.min(READ_CHUNK, hook.chunkSize()) : READ_CHUNK;
  const rs = handle.createReadStream({ start, highWaterMark, autoClose: false, emitClose: false });
  t.attach(socket, () => rs.bytesRead);
  const stages: (Readable | Transform | Writable)[] = [rs];
  if (ascii) stages.push(toNetworkAscii());
  if (hook) stages.push(hookStage(hook));
  stages.push(socket);
  await run(t, socket, stages, stalledMs);
  return rs.bytesRead;
}

/** Receives the socket's bytes into `handle` at `position` until the client closes the connection. */
export async function receiveFile(
  t: Transfer,
  socket: Socket,
  handle: FileHandle,
  position: number,
  ascii: boolean,
  stalledMs: number,
  hook: TransferHook | null = null,
): Promise<number> {
  const ws = handle.createWriteStream({
    start: position,
    highWaterMark: WRITE_BUFFER,
    autoClose: false,
    emitClose: false,
  });
  t.attach(socket, () => ws.bytesWritten);
  const stages: (Readable | Transform | Writable)[] = [socket];
  // Limits (data/hook.ts): pacing here pauses the data socket, and TCP slows the client down.
  if (hook) stages.push(hookStage(hook));
  if (ascii) stages.push(fromNetworkAscii());
  stages.push(ws);
  await run(t, socket, stages, stalledMs);
  return ws.bytesWritten;
}

/** Sends a prepared buffer (a listing) and ends the socket. */
export async function sendBuffer(t: Transfer, socket: Socket, data: Buffer, stalledMs: number): Promise<number> {
  t.attach(socket, () => Math.min(data.length, socket.bytesWritten));
  await new Promise<void>((resolve, reject) => {
    socket.setTimeout(stalledMs, () => socket.destroy(new FtpError(426, "Transfer stalled")));
    socket.once("error", reject);
    socket.once("close", () => reject(new FtpError(426, "Connection closed; transfer aborted")));
    socket.end(data, () => resolve());
  });
  finishSocket(socket);
  return data.length;
}

async function run(
  t: Transfer,
  socket: Socket,
  stages: (Readable | Transform | Writable)[],
  stalledMs: number,
): Promise<void> {
  socket.setTimeout(stalledMs, () => t.abort("stalled"));
  try {
    await pipeline(stages);
  } catch (err) {
    socket.destroy();
    throw abortError(t, err);
  } finally {
    // A file stream holds a reference on its FileHandle until destroyed; FileHandle.close() would
    // wait for it forever. autoClose is off, so this releases the reference, not the descriptor.
    for (const st of stages) if (st !== socket) st.destroy();
  }
  finishSocket(socket);
}

/**
 * After a successful transfer: end our side too (after an upload: TLS close_notify, then FIN;
 * Python's ssl `unwrap()` waits for that close_notify), let the peer close, and make sure the
 * socket goes away regardless.
 */
function finishSocket(socket: Socket): void {
  socket.setTimeout(10_000, () => socket.destroy());
  socket.resume();
  if (!socket.writableEnded) socket.end();
  if (socket.readableEnded) return;
  socket.once("end", () => socket.destroy());
}

/** Errors of the network side; any other errno (ENOSPC, EIO, …) is the disk's and is rethrown as is. */
const NETWORK_CODES = new Set(["ECONNRESET", "EPIPE", "ECONNABORTED", "ETIMEDOUT", "EHOSTUNREACH", "ENETUNREACH"]);

function abortError(t: Transfer, err: unknown): Error {
  if (err instanceof FtpError) return err;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (t.aborted === null && code && /^E[A-Z]+$/.test(code) && !NETWORK_CODES.has(code)) return err as Error;
  switch (t.aborted) {
    case "stalled":
      return new FtpError(426, "Transfer aborted: no data moved for too long");
    case "shutdown":
      return new FtpError(426, "Transfer aborted: server shutting down");
    case "abort":
      return new FtpError(426, "Transfer aborted");
    default:
      return new FtpError(426, "Connection closed; transfer aborted", (err as Error | undefined)?.message);
  }
}
