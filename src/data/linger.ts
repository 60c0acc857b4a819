/**
 * Ending a connection nobody will use any more: a control connection refused at connect (421), a
 * late data connection to a passive port whose command was refused, a data connection whose
 * transfer is done (data/transfer.ts; its end was already written, and for TLS its close_notify).
 * What the client sends is read and dropped — a socket nobody reads never sees the client's FIN
 * behind its bytes (Node emits the end only once the data before it is consumed), so it would stay
 * open for good — and the connection goes when the client closes, or after `graceMs` whatever the
 * client does (a fixed deadline, not an idle timeout a client could keep resetting by sending).
 * `last` is written before the FIN. Bytes already written still reach the client after the
 * deadline: the kernel delivers what a closed socket had queued.
 */
import type { Socket } from "node:net";
import { pendingBinding, plainSocketFd } from "../native.ts";

export function endUnused(socket: Socket, graceMs: number, last?: string): void {
  if (socket.destroyed) return;
  // The deadline below replaces any idle timer set before (a transfer's stall check): what is left
  // of the connection is this socket's ending, not the transfer.
  socket.setTimeout(0);
  const deadline = setTimeout(() => socket.destroy(), graceMs);
  deadline.unref();
  socket.once("close", () => clearTimeout(deadline));
  socket.once("end", () => socket.destroy());
  socket.resume();
  if (socket.writableEnded) return;
  if (last === undefined) socket.end();
  else socket.end(last);
}

/**
 * The end of a plain data connection whose bytes and FIN went out (a download or a listing): closed
 * at once when the client has acknowledged every byte and sent nothing (native/sockopt.c
 * nothingPending), as the C servers close theirs. Nothing can be lost then: the bytes are in the
 * client's kernel, and ours delivers and resends the FIN after the close. Otherwise (bytes still
 * in flight, as over any real network, something the client sent, TLS, no addon) it goes as
 * endUnused says, with the client's FIN awaited.
 */
export function endSent(socket: Socket, graceMs: number): void {
  if (!socket.destroyed && settled(plainSocketFd(socket))) socket.destroy();
  else endUnused(socket, graceMs);
}

/** Whether plain TCP socket `fd`, its bytes all written, can close at once: the client has
 * acknowledged every byte and sent nothing (native/sockopt.c nothingPending). False without the
 * addon, or without a descriptor. */
export function settled(fd: number | null): boolean {
  const b = pendingBinding();
  return b !== null && fd !== null && fd >= 0 && b.nothingPending(fd) === 1;
}
