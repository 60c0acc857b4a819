/**
 * berth's native part (native/, C and Node-API, built at install by native/build.mjs):
 * - sendfile(2) for plain downloads (native/sendfile.c): the file's bytes go from the page cache
 *   to the socket inside the kernel, as in vsftpd, ProFTPD and pyftpdlib, instead of being read
 *   into a buffer and written out again (data/transfer.ts);
 * - large plain uploads read and written by a thread of their own with blocking calls
 *   (native/receive.c, data/receive.ts), as the C servers do it, instead of by the event loop;
 * - lstat of a directory's entries relative to the directory (native/lstat.c), for listings
 *   (fs/listing.ts and the stat worker, fs/statworker.ts);
 * - paths opened below a jail's root in one call (native/beneath.c, fs/beneath.ts);
 * - renames that never replace what is at the new name (native/rename.c), for users who may not
 *   overwrite (fs/jail.ts);
 * - the small-file path's descriptor calls (open, read, write, close) with the result as a number
 *   (native/io.c, fs/sysio.ts);
 * - the main thread's CPU time (native/addon.c), so that fs/quick.ts can tell a large file call the
 *   kernel was busy with from one that waited for the disk.
 * Optional: where the addon was not built (no C compiler, not Linux) or does not load, the
 * bindings are null and berth uses Node's own calls.
 */
import { createRequire } from "node:module";
import type { Socket } from "node:net";
import { fileURLToPath } from "node:url";

/** Where the built addon is (the stat worker loads it with its own require()). */
export const NATIVE_ADDON_PATH = fileURLToPath(new URL("../native/build/berth_native.node", import.meta.url));

/** What native/sendfile.c exports. */
export interface SendfileBinding {
  /** One non-blocking sendfile on this thread: bytes sent, or -errno (-EAGAIN: socket buffer full). */
  sendNow(socketFd: number, fileFd: number, position: number, count: number): number;
  /** Sends from `position` to the end of the file on a thread of its own (descriptors duplicated
   * first), the socket corked meanwhile; `done(errno, sent)` once, on the main thread. With
   * `mayBlock` the socket is made blocking while the job runs (its flags are shared with the
   * caller's descriptor): pass it only when the event loop is not reading the socket and will not
   * until `done`. */
  start(
    socketFd: number,
    fileFd: number,
    position: number,
    stallMs: number,
    progress: BigInt64Array,
    done: (errno: number, sent: number) => void,
    mayBlock: boolean,
  ): TransferJob;
  /** Ends a job soon (its socket copy is shut down); harmless once it has ended. */
  cancel(job: TransferJob): void;
}

/** What native/receive.c exports. */
export interface ReceiveBinding {
  /** Reads the socket to its end into the file from `position` on a thread of its own
   * (descriptors duplicated first); `done(errno, written, disk)` once, on the main thread: errno 0
   * at the client's FIN, `disk` true when a write failed. With `mayBlock` the socket is made
   * blocking while the job runs: pass it only once the event loop has stopped reading the socket,
   * and leave the socket alone until `done`. */
  receive(
    socketFd: number,
    fileFd: number,
    position: number,
    stallMs: number,
    progress: BigInt64Array,
    done: (errno: number, written: number, disk: boolean) => void,
    mayBlock: boolean,
  ): TransferJob;
  /** Ends a job soon (its socket copy is shut down); harmless once it has ended. */
  cancel(job: TransferJob): void;
}

/** An opaque running job (a download's or an upload's). */
export type TransferJob = { readonly __brand: "TransferJob" };

/** What native/lstat.c exports. */
export interface LstatBinding {
  /** lstat of `dir/names[i]` for i in [from, to), relative to `dir` opened once: FIELDS numbers
   * per entry (fs/rawstat.ts) into `out` from `offset`, ok = 0 where an entry is missing or
   * unreadable. Entries found, or -errno when `dir` cannot be opened (nothing written then). */
  lstatNames(dir: string, names: readonly string[], from: number, to: number, out: Float64Array, offset: number): number;
}

/** What native/sockopt.c exports. */
export interface SockoptBinding {
  /** TCP_NODELAY when `noDelay`, and keep-alive after `keepAliveIdleSeconds` of silence when it is
   * above 0 (probes 1 s apart, 10 of them), on listening socket `fd`: Linux gives them to every
   * socket it accepts. 0, or -errno. */
  listenerOptions(fd: number, noDelay: boolean, keepAliveIdleSeconds: number): number;
  /** [TCP_NODELAY, SO_KEEPALIVE, TCP_KEEPIDLE, TCP_KEEPINTVL, TCP_KEEPCNT] of socket `fd`, or -errno. */
  socketOptions(fd: number): number[] | number;
  /** SO_OOBINLINE on socket `fd` (a listener gives it to what it accepts): TCP urgent data stays
   * in the stream. 1 when it is now set, or -errno. */
  inlineUrgent(fd: number): number;
}

/** What else native/sockopt.c exports. */
export interface PendingBinding {
  /** 1 when the peer of TCP socket `fd` has acknowledged every byte sent (at most the FIN is in
   * flight) and nothing it sent waits unread, so that a close loses nothing; 0 otherwise; -errno. */
  nothingPending(fd: number): number;
  /** shutdown(SHUT_WR) of socket `fd`: its FIN goes after what was written; 0, or -errno. */
  shutdownWrite(fd: number): number;
}

/** quickAck of native/sockopt.c. */
export interface QuickAckBinding {
  /** TCP_QUICKACK on socket `fd`: what the peer sends next is acknowledged at once, not after the
   * delayed-ACK timer; 0, or -errno. */
  quickAck(fd: number): number;
}

/** What native/beneath.c exports. */
export interface BeneathBinding {
  /** openat2 of `path` relative to directory `dirFd` with RESOLVE_BENEATH and RESOLVE_NO_SYMLINKS
   * (close-on-exec; `flags` without O_CREAT): the descriptor, or -errno. */
  openBeneath(dirFd: number, path: string, flags: number): number;
}

/** createBeneath, from native/beneath.c too (an addon built before it has only openBeneath). */
export interface CreateBeneathBinding {
  /** openBeneath's openat2 creating a new file: `flags` with O_CREAT and O_EXCL (a name already
   * there, a symlink included, is -EEXIST), `mode` as open(2) takes it. The descriptor, or -errno. */
  createBeneath(dirFd: number, path: string, flags: number, mode: number): number;
}

/** What native/rename.c exports. */
export interface RenameBinding {
  /** renameat2(2) of `from` to `to` with RENAME_NOREPLACE: 0, or -errno (-EEXIST when something is
   * at `to`; -ENOSYS, -EPERM or -EINVAL where the kernel, a seccomp filter or the filesystem
   * refuses the flag). */
  renameNoReplace(from: string, to: string): number;
  /** The same on libuv's thread pool, for while the disk is slow: a promise of the same result. */
  renameNoReplaceAsync(from: string, to: string): Promise<number>;
}

/** A socket watched by native/watch.c: its id (a positive number). */
export type Watcher = number & { readonly __brand: "Watcher" };

/** What native/watch.c exports (where libuv's header was found at build time). */
export interface WatchBinding {
  /** Calls `callback(status)` on the event loop each time socket `fd` can be read (bytes, its end
   * or an error) until unwatch(): the watcher, or a negative errno (libuv's codes). Status is 0, or
   * EBADF (negative) once the socket reported an error; the watch has stopped then. No other
   * handle may poll `fd` meanwhile. */
  watchReadable(fd: number, callback: (status: number) => void): Watcher | number;
  /** Stops a watcher at once (harmless twice). */
  unwatch(w: Watcher): void;
  /** Closes the set of watched sockets when none is watched (true), for a server that stops; the
   * next watch makes a new one. */
  releaseWatches(): boolean;
}

/** What native/listen.c exports. */
export interface ListenBinding {
  /** A non-blocking listening socket on numeric address `host` and `port` (SO_REUSEADDR,
   * TCP_NODELAY): its descriptor, or a negative errno (-EINVAL for a host that is not numeric). */
  listenTcp(host: string, port: number, backlog: number): number;
  /** The next connection waiting on listening socket `fd`: the peer's address, with its
   * descriptor (non-blocking) in `out[0]`; or a negative errno (-EAGAIN when none waits). Not
   * acceptOne, its older form (`[descriptor, address]`): an addon built before the change has
   * only that one, and is not used for listeners (pick). A call whose form changes gets a new name. */
  acceptInto(fd: number, out: Int32Array): string | number;
}

/** What native/io.c exports: each call's result, or -errno. */
export interface IoBinding {
  /** open(2) of `path` (close-on-exec): the descriptor. */
  ioOpen(path: string, flags: number, mode: number): number;
  /** read(2) into `buf[offset, offset + length)`: bytes read (0 at the end). */
  ioRead(fd: number, buf: Uint8Array, offset: number, length: number): number;
  /** pwrite(2) of `buf[offset, offset + length)` at `position`, or write(2) when it is -1: bytes
   * written. */
  ioWrite(fd: number, buf: Uint8Array, offset: number, length: number, position: number): number;
  /** close(2): 0. */
  ioClose(fd: number): number;
  /** fstat(2): 0, with `out` = [mode, size]. */
  ioFstat(fd: number, out: Float64Array): number;
  /** send(2) of the UTF-8 form of `text` (at most IO_TEXT_UNITS code units) to socket `fd`: the
   * bytes left unwritten (0 when all went), or -errno when none went (-E2BIG: too long, try
   * another way). */
  ioWriteText(fd: number, text: string): number;
}

type Addon = Partial<
  SendfileBinding & ReceiveBinding & LstatBinding & SockoptBinding & PendingBinding & QuickAckBinding & BeneathBinding & CreateBeneathBinding & RenameBinding & WatchBinding & ListenBinding & IoBinding
>;

let addon: Addon | null | undefined;

function load(): Addon | null {
  if (addon !== undefined) return addon;
  addon = null;
  if (process.platform !== "linux") return addon;
  try {
    addon = createRequire(import.meta.url)(NATIVE_ADDON_PATH) as Addon;
  } catch {
    addon = null;
  }
  return addon;
}

/** The addon's functions `names` in a plain object of their own (they take no `this`), so that a
 * test can watch or replace them; null where the addon is not built, does not load or predates
 * one of them. */
function pick<T>(names: readonly (keyof T & keyof Addon)[]): T | null {
  const a = load();
  if (a === null) return null;
  const out: Partial<Record<keyof Addon, unknown>> = {};
  for (const name of names) {
    if (typeof a[name] !== "function") return null;
    out[name] = a[name];
  }
  return out as T;
}

/** A getter of the addon's functions `names` (pick), looked for once, at its first call. */
function binding<T>(names: readonly (keyof T & keyof Addon)[]): () => T | null {
  let fns: T | null | undefined;
  return () => (fns === undefined ? (fns = pick<T>(names)) : fns);
}

/** sendfile (looked for once; see pick). */
export const sendfileBinding = binding<SendfileBinding>(["sendNow", "start", "cancel"]);

/** The upload thread (looked for once; see pick). */
export const receiveBinding = binding<ReceiveBinding>(["receive", "cancel"]);

/** The calling thread's CPU time in ns (native/addon.c), or null where the addon is not built,
 * does not load or predates it. */
export function threadCpuBinding(): (() => number) | null {
  const a = load() as { threadCpuNs?: unknown } | null;
  return a && typeof a.threadCpuNs === "function" ? (a.threadCpuNs as () => number) : null;
}

/** lstatNames, or null where the addon is not built, does not load or predates it. */
export function lstatBinding(): LstatBinding | null {
  const a = load();
  return a && typeof a.lstatNames === "function" ? (a as LstatBinding) : null;
}

/** listenerOptions and socketOptions, or null where the addon is not built, does not load or
 * predates them. */
export function sockoptBinding(): SockoptBinding | null {
  const a = load();
  return a && typeof a.listenerOptions === "function" && typeof a.socketOptions === "function" && typeof a.inlineUrgent === "function"
    ? (a as SockoptBinding)
    : null;
}

/** openBeneath (looked for once; see pick). */
export const beneathBinding = binding<BeneathBinding>(["openBeneath"]);

/** createBeneath (looked for once; see pick). */
export const createBeneathBinding = binding<CreateBeneathBinding>(["createBeneath"]);

/** renameNoReplace and renameNoReplaceAsync (looked for once; see pick). */
export const renameBinding = binding<RenameBinding>(["renameNoReplace", "renameNoReplaceAsync"]);

/** nothingPending and shutdownWrite (looked for once; see pick). */
export const pendingBinding = binding<PendingBinding>(["nothingPending", "shutdownWrite"]);

/** quickAck (looked for once; see pick). */
export const quickAckBinding = binding<QuickAckBinding>(["quickAck"]);

/** listenTcp and acceptInto (looked for once; see pick). */
export const listenBinding = binding<ListenBinding>(["listenTcp", "acceptInto"]);

/** ioOpen, ioRead, ioWrite, ioClose, ioFstat and ioWriteText (looked for once; see pick). */
export const ioBinding = binding<IoBinding>(["ioOpen", "ioRead", "ioWrite", "ioClose", "ioFstat", "ioWriteText"]);

/** watchReadable, unwatch and releaseWatches (looked for once; see pick). */
export const watchBinding = binding<WatchBinding>(["watchReadable", "unwatch", "releaseWatches"]);

/** The descriptor of a plain (not TLS) TCP socket, for the addon's calls on it; null for TLS, or
 * for a socket without one (closed, or not a TCP handle). */
export function plainSocketFd(socket: Socket): number | null {
  if ((socket as Socket & { encrypted?: boolean }).encrypted) return null;
  const fd = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle?.fd;
  return typeof fd === "number" && fd >= 0 ? fd : null;
}
