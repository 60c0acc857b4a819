/**
 * The one way a command uses the data connection: connect (or accept), TLS when PROT P, 150, move
 * the bytes, then 226 only when they are safe — or the error reply, after which the partial result
 * is cleaned up. Every path releases the port, closes the socket and settles the transfer, so ABOR
 * can answer 226 after the 426 (RFC 959 §4.1.3).
 */
import { asSocket, RawData, type DataConnection } from "../../data/raw.ts";
import type { Transfer } from "../../data/transfer.ts";
import { mapFsError } from "../../fs/errors.ts";
import { FtpError } from "../errors.ts";
import type { Session } from "../session.ts";

/** The steps of one transfer; `R` is what `open` prepares (an upload handle, say). */
export interface TransferPlan<R> {
  /** The transfer as STAT and the log see it. */
  readonly transfer: Transfer;
  /** Text of the 150 reply. */
  readonly opening: string;
  /** Runs before the data connection is used (opening the upload target), so a refusal is a plain
   * 5xx and no client waits on a data connection for nothing. */
  open(): Promise<R>;
  /** Moves the bytes; resolves with the count once they are safe. `conn` is a `Socket`, or a
   * plain passive connection as accepted, before a `Socket` is made for it (data/raw.ts: a small
   * download, listing or upload never makes one). */
  move(t: Transfer, conn: DataConnection, r: R): Promise<number>;
  /** Makes the result final (rename a temp upload into place). */
  commit?(r: R): Promise<void>;
  /** Cleans up after a failure (remove a temp upload). */
  abort?(r: R): Promise<void>;
  /** Text of the 226 reply. */
  readonly done?: string;
}

/** Runs a transfer plan; writes every reply itself and never throws. */
export async function runTransfer<R>(s: Session, plan: TransferPlan<R>): Promise<void> {
  const t = plan.transfer;
  let channel;
  try {
    channel = s.takeChannel();
  } catch (err) {
    const e = mapFsError(err);
    s.reply(e.code, e.message);
    t.settle();
    return;
  }
  const ch = channel;
  t.whenAborted(() => ch.close());
  s.transfer = t;
  s.runWaitingBeside();
  let bytes = 0;
  let outcome = "ok";
  let failure: Failure | null = null;
  let prepared: { r: R } | null = null;
  let socket: DataConnection | null = null;
  try {
    prepared = { r: await plan.open() };
    const upload = t.direction === "upload";
    socket = await ch.connect(true);
    // Unprotected data needs no TLS (secureData would only announce).
    if (s.ctx.tls && s.protectData) {
      // An ABOR, or the session's end, during the handshake ends it (it may wait dataTimeout).
      t.hold(socket);
      socket = await s.ctx.tls.secureData(s, asSocket(socket), (secured) => announce(s, plan.opening, upload || secured), { upload });
    } else announce(s, plan.opening, upload);
    bytes = await plan.move(t, socket, prepared.r);
    await plan.commit?.(prepared.r);
    ch.finish();
    s.reply(226, plan.done ?? "Transfer complete");
  } catch (err) {
    socket?.destroy();
    // Refused before any connection was taken (a quota, a missing file): a client connecting at
    // this moment gets a clean end rather than a refusal it could take for a network error.
    if (socket === null && t.aborted === null) s.retireChannel(ch);
    else ch.close();
    if (prepared) await plan.abort?.(prepared.r).catch((e: unknown) => s.log.warn({ err: e }, "cleanup failed"));
    // RFC 959 §4.1.3: an aborted transfer is answered 426, even one still waiting to connect.
    const e = t.aborted === "abort" ? new FtpError(426, "Transfer aborted") : mapFsError(err);
    // A 426 nobody asked for is the client's data connection ending first (closed, reset, cut
    // short under TLS): what curl -r and lftp's pget do once they have their range, and a user's
    // cancel; "closed", apart from "error", the server's trouble or a refusal, which an operator
    // watches for.
    outcome = t.aborted ?? (e.code === 426 ? "closed" : "error");
    failure = { code: e.code, text: e.message, serverSide: e.serverSide, detail: e.detail };
    // What moved before it failed (the counter of a move that threw), for the logs.
    bytes = t.bytes;
    s.reply(e.code, e.message);
  } finally {
    // An upload read to its end on the connection as accepted closes it now that the client has
    // its reply (data/receive.ts receiveRaw); a download's is closed already, or closes on its own
    // (RawData.linger).
    if (socket instanceof RawData) socket.release();
    if (socket !== null) ch.close();
    s.transfer = null;
    s.restartIdle();
    logTransfer(s, t, bytes, outcome, failure);
    t.settle();
    // After the 226 of an ABOR that waits for this reply (its wait on `t.done` came first, and
    // reactions run in order): an ABOR and a QUIT sent together are answered 426, 226, 221.
    void t.done.then(() => afterTransfer(s));
  }
}

/** How long a download's 150 may wait to go out with its 226 (ms); see Session.holdReply. Tests
 * change it. */
export const hold150 = { ms: 5 };

/** The 150. It goes out at once before an upload (the client waits for it before sending) and
 * before a TLS handshake on the data connection (a client may wait for it before starting one). */
function announce(s: Session, text: string, now: boolean): void {
  if (now) s.reply(150, text);
  else s.holdReply(150, text, hold150.ms);
}

/** Why a transfer failed, for its log line: the reply sent, and whether the operator must see it. */
interface Failure {
  readonly code: number;
  readonly text: string;
  readonly serverSide: boolean;
  /** Log-only context (errno, syscall, real path): FtpError.detail. */
  readonly detail: string | undefined;
}

function logTransfer(s: Session, t: Transfer, bytes: number, outcome: string, failure: Failure | null): void {
  s.ctx.metrics.transfer(t.direction, outcome, bytes);
  if (t.direction !== "list") {
    s.ctx.xferlog?.write({
      when: new Date(),
      ms: performance.now() - t.startedTick,
      remote: s.remoteAddress,
      bytes,
      path: t.path,
      ascii: s.type === "A",
      direction: t.direction,
      user: s.user?.name ?? "-",
      anonymous: s.user?.anonymous === true,
      complete: outcome === "ok",
    });
  }
  if (t.direction === "list") {
    if (failure === null) {
      if (s.log.isLevelEnabled("debug")) s.log.debug({ event: "listing", path: t.path, bytes, result: outcome }, "listing");
    } else {
      const fields = { event: "listing", path: t.path, bytes, result: outcome, reply: failure.code, reason: failure.text, detail: failure.detail };
      if (failure.serverSide) s.log.warn(fields, "listing failed: %s", failure.text);
      else s.log.debug(fields, "listing");
    }
    return;
  }
  // Nothing below is written at level warn unless the transfer failed on the server's side: the
  // line's fields are not built for nothing (once per transfer).
  if (!s.log.isLevelEnabled("info") && (failure === null || !failure.serverSide)) return;
  // The user is among the session logger's bindings.
  const ms = Math.round(performance.now() - t.startedTick);
  if (failure === null) {
    s.log.info(
      { event: "transfer", path: t.path, direction: t.direction, bytes, ms, result: outcome },
      "%s %s %s (%d bytes)",
      t.direction,
      t.path,
      outcome,
      bytes,
    );
    return;
  }
  s.log[failure.serverSide ? "warn" : "info"](
    { event: "transfer", path: t.path, direction: t.direction, bytes, ms, result: outcome, reply: failure.code, reason: failure.text, detail: failure.detail },
    "%s %s %s (%d bytes): %s",
    t.direction,
    t.path,
    outcome,
    bytes,
    failure.text,
  );
}

/** A QUIT, a kick or ban (Session.cutAndClose) or a drain that came during the transfer takes
 * effect now that it is over. */
function afterTransfer(s: Session): void {
  if (s.quitting) {
    s.reply(221, "Goodbye");
    s.end();
  } else if (s.closingText !== null) {
    s.timeout(s.closingText);
  }
}

/** "BINARY" or "ASCII", for the 150 text. */
export function modeName(s: Session): string {
  return s.type === "A" ? "ASCII" : "BINARY";
}

/** FtpError for a REST offset the file cannot honour (RFC 3659 §5.5). */
export function badOffset(): FtpError {
  return new FtpError(554, "Restart offset beyond end of file");
}
