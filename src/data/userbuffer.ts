/**
 * Reads into one reused buffer, for a socket that already exists. Node reads a socket into a fresh
 * buffer per read (64 KiB for TCP, up to 16 KiB per TLS record) unless it was created with `onread`
 * (a reused buffer), which `net.connect` offers and `net.Server` does not offer for the sockets it
 * accepts. The same mechanism is switched on here: the symbols `onread` stores its buffer and
 * callback under are taken from a probe socket, and the handle is told to read into the buffer
 * (`useUserBuffer`). Uploads (./receive.ts) and the control connections (protocol/session.ts) use
 * it; where it is not possible (another runtime, a changed Node), `userBufferReads()` is false and
 * they read through the stream as before.
 */
import { Socket } from "node:net";

interface OnreadSymbols {
  readonly buffer: symbol;
  readonly callback: symbol;
  readonly generator: symbol;
}

let symbols: OnreadSymbols | null | undefined;

/** The symbols a Socket keeps its `onread` option under, or null if they cannot be found. */
function onreadSymbols(): OnreadSymbols | null {
  if (symbols !== undefined) return symbols;
  symbols = null;
  try {
    // `onread` is documented for net.connect() and handled by the Socket constructor.
    const opts = { onread: { buffer: Buffer.alloc(1), callback: () => true } };
    const probe = new Socket(opts as ConstructorParameters<typeof Socket>[0]);
    const own = Object.getOwnPropertySymbols(probe);
    const find = (name: string): symbol | undefined => own.find((s) => s.description === name);
    const buffer = find("kBuffer");
    const callback = find("kBufferCb");
    const generator = find("kBufferGen");
    probe.destroy();
    if (buffer && callback && generator) symbols = { buffer, callback, generator };
  } catch {
    symbols = null;
  }
  return symbols;
}

/** The parts of a socket's native handle (a TCP or TLS wrap) that reads into a buffer use. */
export interface UserBufferHandle {
  useUserBuffer(buf: Uint8Array): void;
  readStop(): number;
  reading: boolean;
}

/** `socket`'s native handle, when it can read into a buffer of ours; else null. */
export function handleOf(socket: Socket): UserBufferHandle | null {
  const handle = (socket as unknown as { _handle?: Partial<UserBufferHandle> | null })._handle;
  return handle && typeof handle.useUserBuffer === "function" ? (handle as UserBufferHandle) : null;
}

/** Whether `socket` can be read through a reused buffer: a TCP socket, or a TLS socket whose TLS
 * layer reads TCP natively (it then hands over each decrypted record of up to 16 KiB the same
 * way), on a Node that keeps `onread` where this module expects it. */
export function userBufferReads(socket: Socket): boolean {
  return !socket.destroyed && handleOf(socket) !== null && onreadSymbols() !== null;
}

/**
 * From now on `socket` reads into `buffer`, and `callback(n)` is called with the byte count of each
 * read (the bytes are `buffer[0, n)` until the callback returns); returning false pauses reading.
 * Nothing is pushed to the stream any more, but its end and errors are still emitted. What the
 * stream had buffered before stays there (read() returns it). Call only when
 * `userBufferReads(socket)` is true.
 */
export function readIntoBuffer(socket: Socket, buffer: Buffer, callback: (n: number) => boolean): void {
  const sym = onreadSymbols() as OnreadSymbols;
  const s = socket as unknown as Record<symbol, unknown>;
  s[sym.buffer] = buffer;
  s[sym.generator] = null;
  s[sym.callback] = callback;
  (handleOf(socket) as UserBufferHandle).useUserBuffer(buffer);
}
