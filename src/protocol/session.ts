/**
 * Per-connection state and the control connection's input loop. Commands run one at a time in
 * arrival order (pipelining is answered in order); ABOR, STAT and QUIT may run while a transfer is in
 * progress (DESIGN convention 3). State is explicit; one-shot values (REST offset, RNFR source) are
 * consumed on use (convention 6).
 */
import { once } from "node:events";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { SessionLog } from "../log/logger.ts";
import { hasOwnDirPerms } from "../auth/perms.ts";
import type { User } from "../auth/types.ts";
import { unmapIPv4 } from "../data/address.ts";
import type { DataChannel } from "../data/channel.ts";
import type { SpareSlot } from "../data/passive.ts";
import type { TlsBinding } from "../data/tls.ts";
import type { AbortReason, Transfer } from "../data/transfer.ts";
import type { JailedFs } from "../fs/jail.ts";
import type { VirtualPath } from "../fs/types.ts";
import { MLSX_FACTS } from "../fs/format.ts";
import { DEFAULT_HASH, type HashAlgorithm } from "../fs/digest.ts";
import { WRITE_TEXT_UNITS, WRITES_TEXT, writeText } from "../fs/sysio.ts";
import { resolveVirtual, ROOT } from "../fs/vpath.ts";
import { plainSocketFd } from "../native.ts";
import { readIntoBuffer, userBufferReads } from "../data/userbuffer.ts";
import { isBlank, type Dispatcher } from "./dispatcher.ts";
import { FtpError } from "./errors.ts";
import { LineFramer, type FramedLine } from "./framing.ts";
import { formatReply } from "./reply.ts";
import type { ServerContext } from "./context.ts";
import { TokenBucket } from "./ratelimit.ts";

/**
 * Where every control connection is read into, instead of a fresh buffer per read (Node's default
 * for an accepted socket, 64 KiB, or 16 KiB per TLS record: an allocation, an ArrayBuffer and a
 * stream push per command). One buffer serves all sessions: each read is framed into lines before
 * its callback returns, and the next read, of whichever connection, comes only after that;
 * nothing keeps a reference into it (the framer and a held AUTH's input copy what they keep).
 */
const CONTROL_READ = Buffer.allocUnsafe(64 * 1024);

/** Commands buffered beyond this pause reading from the client (bounded memory under floods). */
const MAX_QUEUED = 32;
/** During a transfer or a checksum the queue is bounded by its size instead (each line counted with
 * QUEUED_ITEM_BYTES more for its keeping): reading goes on past MAX_QUEUED commands, so that an ABOR
 * sent after them is seen (a client's keep-alive NOOPs over a long download, say), and a flood
 * still holds at most about this much before reading stops. */
const MAX_QUEUED_BYTES = 64 * 1024;
/** What keeping one queued line costs beside its text (the item and the string's header). */
const QUEUED_ITEM_BYTES = 64;
/** How long an ended session's connection may stay for its last replies to go out (ms). */
const END_GRACE_MS = 5000;
/** Bytes a client may send after an AUTH before its reply (then it is flooding). */
const HOLD_LIMIT = 64 * 1024;

/** A client that sends this many times limits.commandBurst at once, or this many times
 * limits.commandRate per second, is flooding: 421 (below that it is only slowed down). */
export const FLOOD_FACTOR = 10;

/** Unknown or malformed commands per defender score ("abuse"): a few are a client probing features. */
const BAD_COMMANDS_PER_SCORE = 10;

/** Passive ports opened and never connected to per defender score ("abuse"): one now and then is a race. */
const UNUSED_PASSIVE_PER_SCORE = 3;


/** An item in the command queue: a line, or the notice that a line was too long. `stopped`: an ABOR
 * that already stopped the transfer or checksum running when it came (see stopForQueuedAborOrQuit). */
type Queued = { readonly line: string; readonly notUtf8?: true; readonly stopped?: true } | { readonly overlong: true };

/** Longest wait for a cut transfer to answer before its session closes anyway (ms): cutAndClose's,
 * and the shutdown's (server.ts). */
export const CUT_WAIT_MS = 2000;

/** One control connection. */
export class Session {
  /** Short random id, in every log line of the session. */
  readonly id: string;
  /** The client's IP (IPv4-mapped addresses unmapped). */
  readonly remoteAddress: string;
  /** Our address on this connection (what the client connected to). */
  readonly localAddress: string;
  /** The control socket; a TLSSocket after AUTH TLS or on the implicit port. */
  socket: Socket;
  /** The session's logger: its lines carry the session id, the address and (after login) the
   * user. */
  readonly log: SessionLog;

  /** The logged-in user, or null. */
  user: User | null = null;
  /** When the login happened (ms on a monotonic clock); 0 before it. */
  loggedInAt = 0;
  /** The name from USER, waiting for PASS. */
  pendingUser: string | null = null;
  /** Where resolve() puts the paths a ".." stepped back out of, during resolveWalking() only. */
  private walked: VirtualPath[] | undefined = undefined;
  /** The user's jailed filesystem (set at login). */
  fs: JailedFs | null = null;
  /** Current directory, as the client sees it. */
  cwd: VirtualPath = ROOT;
  /** TYPE: "A" (ASCII, the RFC 959 default) or "I" (image/binary). */
  type: "A" | "I" = "A";
  /** Byte offset set by REST, consumed by the next transfer. */
  restOffset = 0;
  /** Source path set by RNFR, consumed by the next command. */
  renameFrom: VirtualPath | null = null;
  /** The data connection set up by PASV/EPSV/PORT/EPRT, consumed by the next transfer. */
  channel: DataChannel | null = null;
  /** The last channel refused before use, still ending gently. */
  private retiring: DataChannel | null = null;
  /** The passive listener kept between transfers (data/passive.ts), made at the first PASV/EPSV. */
  spare: SpareSlot | null = null;
  /** After EPSV ALL only EPSV may set up data connections (RFC 2428 §4). */
  epsvAll = false;
  /** The transfer in progress, if any. */
  transfer: Transfer | null = null;
  /** Facts MLSD/MLST print (OPTS MLST). */
  mlstFacts: ReadonlySet<string> = new Set(MLSX_FACTS);
  /** The algorithm HASH uses (OPTS HASH). */
  hashAlgo: HashAlgorithm = DEFAULT_HASH;
  /** A checksum being computed (HASH, XCRC…) of the file at `path`: ABOR and QUIT stop it, and so
   * does the session's end; STAT shows it; `replied` settles once the checksum command has answered. */
  hashing: { cancel(): void; readonly replied: Promise<void>; readonly path: string } | null = null;
  /** Failed logins on this connection. */
  loginFailures = 0;
  /** Size announced by ALLO, for the next upload. */
  allocated: number | null = null;
  /** Client software name from CLNT, for the log. */
  clientName: string | null = null;
  /** The control connection is TLS (implicit port, or after AUTH TLS). */
  secure: boolean;
  /** The connection came in on the implicit FTPS port (TLS from its first byte). */
  readonly implicit: boolean;
  /** This connection's TLS identity (own ticket keys and session cache), shared with its data connections. */
  tlsBinding: TlsBinding | null = null;
  /** PBSZ was received after TLS (RFC 4217 §8). */
  pbszDone = false;
  /** PROT P: data connections are TLS. */
  protectData = false;
  /** QUIT came during a transfer: close once it ends. */
  quitting = false;
  /** The ABOR being run stopped, when it came, the transfer or checksum running then; it waited
   * behind other commands only to answer in its turn (see stopForQueuedAborOrQuit). */
  stoppedAhead = false;
  /** The 421 text the session closes with once its current transfer has answered: set when the
   * server drains, and by cutAndClose. */
  closingText: string | null = null;
  /** The connection is gone. */
  closed = false;
  /** end() was called: no further command runs, no further input is read (RFC 959 §4.1.1: nothing
   * pipelined after QUIT, or after the failed login that closes the session, is acted on). */
  private ending = false;
  /** The client closed its sending side (TCP half-close): what it sent is answered, then the
   * session ends. */
  private inputEnded = false;

  /** The session runs no further command: it is closed, or ending (end() was called). */
  get over(): boolean {
    return this.closed || this.ending;
  }

  /** The user this session is counted for in the per-user session limit (set at login). */
  countedUser: string | null = null;
  /** Unknown or malformed commands received. */
  private badCommands = 0;
  /** Passive ports opened that the client never connected to. */
  private unusedPassive = 0;
  /** Connections to this session's passive ports from an address not the client's, refused. */
  private foreignData = 0;

  /** Called once when the session ends (the server's registry forgets it). */
  onClosed: (() => void) | null = null;

  /** Commands run at limits.commandRate (with a burst); null when unlimited. */
  private readonly pace: TokenBucket | null;
  /** Commands received at FLOOD_FACTOR times the pace; empty = a flood. */
  private readonly floodGate: TokenBucket | null;

  private readonly framer: LineFramer;
  private readonly queue: Queued[] = [];
  /** The size of what the queue holds, as MAX_QUEUED_BYTES counts it. */
  private queuedBytes = 0;
  private pumping = false;
  /** Commands running beside the queue (ABOR, STAT, QUIT during a transfer). */
  private bypassing = 0;
  /** After an AUTH line that may upgrade the connection: input waits for its outcome. */
  private holdInput = false;
  /** What came after that AUTH: dropped if it upgrades (RFC 4217 §11: no plaintext injection),
   * run if it is refused. Null when nothing is held. */
  private afterAuth: { lines: FramedLine[]; chunks: Buffer[]; bytes: number } | null = null;
  private loginTimer: NodeJS.Timeout | null = null;
  /** The deadline of an ended session's connection (end). */
  private endTimer: NodeJS.Timeout | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  /** A preliminary reply waiting for the next write (holdReply), and its deadline. The deadline's
   * timer is kept from one held reply to the next and moved on (refresh), not cleared and made
   * again: a timer of a duration no other timer has makes Node create and then delete a timer
   * list each time (two runtime calls and a priority-queue insertion, about a thirtieth of a small
   * download's instructions). When it runs out with nothing held it does nothing. */
  private held: string | null = null;
  private heldTimer: NodeJS.Timeout | null = null;
  private heldMs = 0;
  /** The plain control connection's descriptor, for replies written straight to it (write);
   * -1 under TLS, or without the addon. */
  private replyFd = -1;
  /** The pump's wait for a command token (limits.commandRate), ended early by cleanup(). */
  private paceWait: { readonly timer: NodeJS.Timeout; readonly wake: () => void } | null = null;
  // Assigned in the constructor: a class field would be a named closure (test/hotpath.test.ts).
  private readonly onData: (chunk: Buffer) => void;

  constructor(
    socket: Socket,
    /** Everything shared by all sessions of the server. */
    readonly ctx: ServerContext,
    private readonly dispatcher: Dispatcher,
    /** Session id. */
    id: string,
  ) {
    this.id = id;
    this.onData = (chunk) => this.receive(chunk);
    this.socket = socket;
    this.secure = "encrypted" in socket;
    this.implicit = this.secure;
    // Implicit FTPS protects the data connections too, as if PBSZ 0 and PROT P had been sent
    // (MS-FTPS, "Control Connection Negotiation with Implicit FTPS"; pure-ftpd does the same): a
    // client that takes that as given gets TLS on its data connections rather than its files in
    // clear. PROT C still turns it off.
    this.pbszDone = this.implicit;
    this.protectData = this.implicit;
    this.remoteAddress = unmapIPv4(socket.remoteAddress ?? "");
    this.localAddress = unmapIPv4(socket.localAddress ?? "");
    this.log = new SessionLog(ctx.logger, { session: id, remote: this.remoteAddress });
    this.framer = new LineFramer(ctx.config.limits.maxLineLength);
    const { commandRate, commandBurst } = ctx.config.limits;
    this.pace = commandRate > 0 ? new TokenBucket(commandRate, commandBurst) : null;
    this.floodGate = commandRate > 0 ? new TokenBucket(commandRate * FLOOD_FACTOR, commandBurst * FLOOD_FACTOR) : null;
  }

  /** Sends the greeting and starts reading commands. */
  start(): void {
    const limits = this.ctx.config.limits;
    this.attach(this.socket);
    // Idle means no complete command: a client trickling bytes of a line that never ends
    // (slowloris) is idle too (issue "Abuse resistance").
    this.idleTimer = setTimeout(() => this.onIdle(), limits.idleTimeout * 1000);
    this.idleTimer.unref();
    this.loginTimer = setTimeout(() => this.timeout("Login timeout"), limits.loginTimeout * 1000);
    this.loginTimer.unref();
    this.reply(220, this.ctx.config.server.banner);
  }

  /** Writes one reply (formatted by the reply writer). Nothing is written once closed. */
  reply(code: number, text: string | readonly string[]): void {
    this.write(formatReply(code, text));
  }

  /** Writes preformatted reply text, after a held preliminary reply if there is one. */
  write(text: string): void {
    if (this.held !== null) {
      text = this.held + text;
      this.releaseHeld();
    }
    if (this.closed || this.socket.destroyed || this.socket.writableEnded) return;
    // Straight to the descriptor when nothing waits in the stream before it (so the order holds):
    // a reply through the stream cost about 2,900 instructions by callgrind (a write request
    // object, the stream's state and callbacks), this way about 1,200 with the encoding.
    if (this.replyFd >= 0 && text.length <= WRITE_TEXT_UNITS && this.socket.writableLength === 0) {
      const left = writeText(this.replyFd, text);
      if (left === 0) return;
      if (left > 0) {
        // The socket's buffer took part of it: the stream queues the rest, in order.
        const bytes = Buffer.from(text);
        this.socket.write(bytes.subarray(bytes.length - left));
        return;
      }
      // Nothing went (the buffer is full, the peer is gone, no addon): the stream writes it, and
      // reports a failure as it would have.
    }
    this.socket.write(text);
  }

  /** Writes a preformatted reply already encoded (a long one, built in reused memory), after a
   * held preliminary reply if there is one; `done` once the socket no longer reads `bytes` (they
   * went out, or were dropped with the connection), at once when nothing is written. */
  writeBytes(bytes: Uint8Array, done: () => void): void {
    const held = this.held;
    if (held !== null) this.releaseHeld();
    if (this.closed || this.socket.destroyed || this.socket.writableEnded) {
      done();
      return;
    }
    if (held !== null) this.socket.write(held);
    this.socket.write(bytes, done);
  }

  /**
   * Sends a preliminary reply with the next reply, or after `ms` at the latest. A download that is
   * over in a moment then reaches the client as one write holding 150 and 226 rather than two,
   * which saves a wake-up and a read on both ends; a longer one gets its 150 after `ms`. Replies
   * keep their order; only their grouping into writes changes (the data connection is separate,
   * so a client can never rely on 150 arriving before the data anyway).
   */
  holdReply(code: number, text: string, ms: number): void {
    if (this.held !== null) this.write("");
    this.held = formatReply(code, text);
    const t = this.heldTimer;
    if (t !== null && this.heldMs === ms && !this.closed) {
      t.refresh();
      return;
    }
    if (t !== null) clearTimeout(t);
    this.heldMs = ms;
    this.heldTimer = setTimeout(() => this.flushHeld(), ms);
  }

  /** The held reply's deadline: it goes out now, if it is still held. */
  private flushHeld(): void {
    if (this.held !== null) this.write("");
  }

  /** The held reply went out (or is dropped); its timer runs out on its own (see held). */
  private releaseHeld(): void {
    this.held = null;
  }

  /** Resolves a client path against the cwd (pure: see fs/vpath.ts). */
  resolve(arg: string): VirtualPath {
    return resolveVirtual(this.cwd, arg, this.walked);
  }

  /** Runs `resolving` (which calls resolve()) and puts into `walked` each path a ".." of the
   * argument stepped back out of (see resolveVirtual), for the dispatcher to look at. */
  resolveWalking<T>(walked: VirtualPath[], resolving: () => T): T {
    this.walked = walked;
    try {
      return resolving();
    } finally {
      this.walked = undefined;
    }
  }

  /** Where the per-directory permissions of `v` are looked up: `v` with the links on the way
   * resolved when the user has permissions of their own for a directory (a link placed in the
   * home to such a directory leads to its permissions, auth/perms.ts hasOwnDirPerms), else `v`
   * itself (the permissions are the same everywhere, and nothing is looked up). */
  async permsPath(v: VirtualPath): Promise<VirtualPath> {
    if (this.user === null || !hasOwnDirPerms(this.user)) return v;
    try {
      return await this.requireFs().canonical(v);
    } catch (err) {
      // A way that leads nowhere (out of the jail, a dangling link, through a file): the command
      // fails on it as it would for anyone, with its own reply.
      if (err instanceof FtpError && (err.code === 550 || err.code === 553)) return v;
      throw err;
    }
  }

  /** The jailed filesystem; FtpError 530 if nobody is logged in (the dispatcher checks first). */
  requireFs(): JailedFs {
    if (!this.fs) throw new FtpError(530, "Please login with USER and PASS");
    return this.fs;
  }

  /** Marks the login done: stops the login timer. */
  loggedIn(user: User, fs: JailedFs): void {
    // The connection closed while the home was being opened: nothing will use it.
    if (this.closed) fs.close();
    this.user = user;
    this.fs = fs;
    this.loggedInAt = performance.now();
    this.pendingUser = null;
    this.cwd = ROOT;
    this.rebindLog();
    if (this.loginTimer) clearTimeout(this.loginTimer);
    this.loginTimer = null;
  }

  /** Notes the client software a CLNT names: in this session's log lines from now on, the latest
   * name only (a repeated CLNT replaces it, and a login keeps it). */
  noteClient(name: string): void {
    this.clientName = name.slice(0, 128);
    this.rebindLog();
  }

  /** The session's log bindings, made afresh from what is known of it: one child of the server's
   * logger with every binding once (a child of a child would repeat a key, and an idle logged-in
   * session then holds at most one logger, not a chain). */
  private rebindLog(): void {
    const bindings: Record<string, string> = { session: this.id, remote: this.remoteAddress };
    if (this.user !== null) bindings.user = this.user.name;
    if (this.clientName !== null) bindings.client = this.clientName;
    this.log.rebind(bindings);
  }

  /** Gives back this session's place in the per-user session limit, if it holds one (a login that
   * could not finish, or the session's end). */
  releaseUserClaim(): void {
    if (this.countedUser !== null) this.ctx.admission.logout(this.countedUser);
    this.countedUser = null;
  }

  /** Counts an unknown or malformed command; a flood of them is scored by the defender. */
  noteBadCommand(): void {
    if (++this.badCommands % BAD_COMMANDS_PER_SCORE === 0) {
      this.ctx.defender.record(this.remoteAddress, "abuse", "floods of unknown or malformed commands");
    }
  }

  /** Counts a passive port the client never connected to; repeated ones are scored by the defender.
   * Returns how many this session has had. */
  noteUnusedPassive(): number {
    if (++this.unusedPassive % UNUSED_PASSIVE_PER_SCORE === 0) {
      this.ctx.defender.record(this.remoteAddress, "abuse", "passive ports opened and never connected to");
    }
    return this.unusedPassive;
  }

  /** Counts a refused connection to one of this session's passive ports from another address;
   * returns how many this session has had. */
  noteForeignData(): number {
    return ++this.foreignData;
  }

  /** Takes the data channel set up by PASV/PORT (one use each). */
  takeChannel(): DataChannel {
    const ch = this.channel;
    this.channel = null;
    if (!ch) throw new FtpError(425, "Use PORT, PASV, EPRT or EPSV first");
    ch.taken();
    return ch;
  }

  /** The command a data channel was set up for was refused before 150 (by the dispatcher, or by
   * the transfer after taking `ch`): it goes away gently (see PassiveChannel.retire). One at a time
   * per session, so a client repeating refused transfers cannot hold more than one extra port; the
   * session closes it outright if it ends first. */
  retireChannel(ch: DataChannel | null = this.channel): void {
    if (ch === null) return;
    if (ch === this.channel) this.channel = null;
    this.retiring?.close();
    this.retiring = ch;
    ch.retire(this.protectData && this.ctx.tls !== null);
  }

  /** Replaces the data channel, closing any previous one. A channel made for a session that has
   * closed meanwhile (a PASV waiting for passive.address to resolve) is closed at once: nothing
   * would close it otherwise before limits.dataTimeout, and its port would be held till then. */
  setChannel(ch: DataChannel | null): void {
    this.channel?.close();
    if (this.closed) {
      ch?.close();
      this.channel = null;
      return;
    }
    this.channel = ch;
  }

  /** Replaces the control socket (AUTH TLS). Called synchronously right after the 234 reply, so
   * no byte of the handshake can be read by the plaintext reader. */
  upgrade(tlsSocket: TLSSocket): void {
    this.socket.removeListener("data", this.onData);
    this.socket = tlsSocket;
    this.secure = true;
    this.framer.reset();
    this.clearQueue();
    this.afterAuth = null;
    this.attach(tlsSocket);
    this.holdInput = false;
  }

  /** 421 and close (idle, login timeout, shutdown); once: a session already ending has its reply. */
  timeout(text: string): void {
    if (this.closed || this.ending) return;
    this.log.info({ event: "timeout", reason: text }, "session closed: %s", text);
    this.reply(421, text);
    this.end();
  }

  /** Closes the session from the server's side (an administrator's kick, a ban) with 421 `text`;
   * a transfer running is cut first (`reason`) and answers its 426 before the 421, as at shutdown,
   * waiting at most CUT_WAIT_MS for it (an upload's rollback on a slow disk). */
  cutAndClose(reason: AbortReason, text: string): void {
    const t = this.transfer;
    if (t === null) return this.timeout(text);
    // The transfer's end closes the session (commands/xfer.ts afterTransfer) before any command
    // queued behind it runs; the timer only if the cut takes too long.
    this.closingText = text;
    t.abort(reason);
    setTimeout(() => this.timeout(text), CUT_WAIT_MS).unref();
  }

  /** Ends the connection gracefully (after pending replies are written). It goes when the client
   * closes, or END_GRACE_MS later whatever the client does: a fixed deadline, not an idle timeout
   * that a client dripping bytes after its 421 (a login timeout, a ban) could keep resetting. What
   * the client sends meanwhile is read and dropped (receive), so its close is seen. */
  end(): void {
    if (this.closed || this.ending) return;
    this.ending = true;
    this.clearQueue();
    // The session runs no command from here on: its place in the per-user limit goes now, not
    // when the client closes (up to END_GRACE_MS later, for one that keeps its side open).
    this.releaseUserClaim();
    this.socket.end();
    this.socket.resume();
    this.endTimer = setTimeout(() => this.socket.destroy(), END_GRACE_MS);
    this.endTimer.unref();
  }

  /** Tears everything down; idempotent. Called on the socket's close. */
  cleanup(): void {
    if (this.closed) return;
    this.closed = true;
    this.onClosed?.();
    if (this.loginTimer) clearTimeout(this.loginTimer);
    if (this.idleTimer) clearTimeout(this.idleTimer);
    if (this.endTimer) clearTimeout(this.endTimer);
    this.releaseHeld();
    if (this.heldTimer !== null) clearTimeout(this.heldTimer);
    this.heldTimer = null;
    this.stopPacing();
    this.transfer?.abort("client");
    this.hashing?.cancel();
    this.setChannel(null);
    this.retiring?.close();
    this.retiring = null;
    this.spare?.close();
    this.clearQueue();
    this.fs?.close();
  }

  private attach(socket: Socket): void {
    this.replyFd = WRITES_TEXT && !("encrypted" in socket) ? (plainSocketFd(socket) ?? -1) : -1;
    socket.setNoDelay(true);
    this.watchHandshake(socket);
    if (socket.readableLength === 0 && userBufferReads(socket)) {
      // `n` bytes are in CONTROL_READ until this returns. Only the session's current socket is
      // read: after AUTH TLS the TLS layer takes the plain socket's reads.
      readIntoBuffer(socket, CONTROL_READ, (n: number) => {
        if (socket === this.socket) this.receive(CONTROL_READ.subarray(0, n));
        return true;
      });
      // Flowing, as a "data" listener would make it: its end is then emitted.
      socket.resume();
    } else socket.on("data", this.onData);
    socket.once("end", () => {
      if (socket === this.socket) this.inputEnd();
    });
    socket.on("error", (err: NodeJS.ErrnoException) => {
      this.log.debug({ event: "socket-error", code: err.code }, "control connection error");
    });
    socket.once("close", () => {
      if (socket === this.socket) this.cleanup();
    });
  }

  /** A TLS control connection whose handshake fails (plaintext on the implicit port, garbage after
   * AUTH TLS) is scored as abuse. */
  private watchHandshake(socket: Socket): void {
    if (!("encrypted" in socket)) return;
    let done = false;
    socket.once("secure", () => {
      done = true;
    });
    socket.once("error", (err: NodeJS.ErrnoException) => {
      // Only TLS protocol errors: a probe that connects and closes (ECONNRESET, EPIPE) is no abuse,
      // and neither is a client that refuses our certificate (it sends an alert: FileZilla asking
      // its user about a self-signed certificate, say).
      const alert = /alert/i.test(err.message) || err.code?.includes("_ALERT_") === true;
      const protocol = err.code === "EPROTO" || err.code?.startsWith("ERR_SSL_") === true;
      if (done || !(alert || protocol)) return;
      // A client that names application protocols (ALPN) and not "ftp" (a browser's or an HTTP
      // library's TLS stack pointed at the wrong port) is refused by OpenSSL: a mistake, no abuse.
      const alpn = /no application protocol/i.test(err.message);
      if (!alert && !alpn) this.ctx.defender.record(this.remoteAddress, "abuse", "failed TLS handshakes");
      // The operator's only sign of clients that cannot use the certificate or the TLS versions
      // offered (1.2 and newer): at info, a client's doing; once per connection.
      const why = alert
        ? "the client broke it off (it does not trust the certificate, say)"
        : alpn
          ? 'the client asked for an application protocol (ALPN) other than "ftp"'
          : "not a TLS client, or no TLS version or cipher in common";
      this.log.info({ event: "tls-handshake-failed", code: err.code }, "TLS handshake of the control connection failed: %s (%s)", why, err.code ?? err.message);
    });
  }

  /**
   * The client has sent all it will (its FIN; the server listens half-open). A client that does
   * so during a transfer or a checksum is gone, as before: the session ends, which stops it,
   * unless it sent QUIT during the transfer, which asks for the transfer's reply and then 221
   * (RFC 959 §4.1.1). Else the commands it sent before are run and answered, as the C servers do
   * for a script piped through nc -N or ncat, and the session ends after the last reply.
   */
  private inputEnd(): void {
    this.inputEnded = true;
    if ((this.transfer || this.hashing) && !this.quitting) this.end();
    else this.endWhenAnswered();
  }

  /** Ends the session once the client's input has ended and every command it sent is answered. A
   * QUIT that waits for a transfer ends it itself, after its 221. */
  private endWhenAnswered(): void {
    if (!this.inputEnded || this.pumping || this.bypassing > 0 || this.queue.length > 0) return;
    if (this.transfer || this.hashing || this.holdInput || this.quitting) return;
    this.end();
  }

  /** 421 for a client that sends commands far faster than it is answered; scored as a limit refusal. */
  private flood(): void {
    this.log.warn({ event: "command-flood" }, "command flood: closing control connection");
    this.ctx.defender.record(this.remoteAddress, "limit", "command floods");
    this.timeout("Too many commands; closing control connection");
  }

  /** A transfer or a checksum has answered: the idle time starts again from here. The client
   * waited for that reply, not idly, and gets the whole limits.idleTimeout for its next command, as
   * vsftpd and pure-ftpd count it from the moment they wait for one; without this, a transfer that
   * ended just before the timer ran out (it only waits while the transfer runs, onIdle) got its
   * client a 421 a moment after the 226. */
  restartIdle(): void {
    this.idleTimer?.refresh();
  }

  private onIdle(): void {
    if (this.closed || this.ending) return;
    if (this.transfer || this.hashing || this.paceWait !== null || this.working()) {
      // The data connection has its own stall timeout; the session idles out once the transfer is
      // over. A checksum is the client waiting for a reply, not an idle client; so is a client
      // whose commands wait for their turn (limits.commandRate): the server holds them, not it.
      this.idleTimer?.refresh();
      return;
    }
    this.timeout(this.user ? "Idle timeout: closing control connection" : "Login timeout");
  }

  /** The server is still working on a command (a listing waiting for its share of the large
   * listing budget, a slow filesystem call): the client waits for its reply, it does not idle. Not
   * while replies wait unread in the socket: that command waits for the client, and a client that
   * never reads what it asked for (a STAT listing) must not hold its session open forever. */
  private working(): boolean {
    return (this.pumping || this.bypassing > 0) && !this.socket.writableNeedDrain;
  }

  private receive(chunk: Buffer): void {
    if (this.closed || this.ending) return;
    if (this.holdInput) {
      this.holdBack(chunk);
      return;
    }
    this.take(this.framer.push(chunk));
    void this.pump();
  }

  /** Queues framed lines (ABOR, STAT and QUIT run at once during a transfer when nothing waits
   * before them). Stops at an AUTH that may upgrade the connection and keeps the lines after it
   * for the AUTH's outcome. */
  private take(lines: FramedLine[]): void {
    for (let i = 0; i < lines.length; i++) {
      const ev = lines[i] as FramedLine;
      this.idleTimer?.refresh();
      if (this.floodGate && !this.floodGate.take()) {
        this.flood();
        return;
      }
      if (ev.kind === "overlong") {
        this.enqueue({ overlong: true });
        continue;
      }
      const verb = verbOf(ev.text);
      // An ABOR, STAT or QUIT behind commands still waiting for the transfer waits with them, so
      // that replies come in the order of the commands (RFC 959 §4.1.3 lets these three answer
      // during a transfer, not before the commands sent ahead of them): run at once, a STAT's 211
      // would be taken for a NOOP's reply, and a QUIT would close the session at the transfer's
      // end with those commands unanswered. An ABOR still stops the transfer now (below).
      if ((this.transfer || this.hashing) && this.dispatcher.bypasses(verb) && this.queue.length === 0 && !this.repliesPiledUp()) {
        this.runBeside(ev.text, ev.notUtf8);
        continue;
      }
      this.enqueue(ev.notUtf8 ? { line: ev.text, notUtf8: true } : { line: ev.text });
      if ((verb === "ABOR" && (this.transfer || this.hashing)) || (verb === "QUIT" && this.hashing)) this.stopForQueuedAborOrQuit();
      // RFC 4217 §11: nothing sent after AUTH in the same packet may be acted on once the
      // connection is upgraded. An AUTH that can only be refused (logged in: there is no REIN, so
      // the login stays; or already secure) holds nothing back: held, an ABOR behind an AUTH sent
      // during a transfer would go unread.
      if (verb === "AUTH" && this.user === null && !this.secure) {
        this.holdInput = true;
        this.afterAuth = { lines: lines.slice(i + 1), chunks: [], bytes: 0 };
        return;
      }
    }
  }

  /** Runs a command beside the queue (ABOR, STAT, QUIT during a transfer or a checksum). */
  private runBeside(line: string, notUtf8: true | undefined): void {
    this.bypassing++;
    void this.dispatcher.run(this, line, notUtf8).finally(() => {
      this.bypassing--;
      this.endWhenAnswered();
    });
  }

  /**
   * A transfer or a checksum has just begun (`transfer` or `hashing` is set): the ABOR, STAT and QUIT
   * that came while its command was still being checked or opening its file (sent in the same
   * packet, say) wait right behind it in the queue, and would otherwise run only once it is over,
   * which a client waiting for its ABOR's 426 never sees (an upload then waits for data until the
   * stall timeout). They run now, as they would have had they come a moment later.
   */
  runWaitingBeside(): void {
    while (!this.closed && !this.ending && !this.repliesPiledUp()) {
      const head = this.queue[0];
      if (head === undefined || !("line" in head) || !this.dispatcher.bypasses(verbOf(head.line))) break;
      this.dequeue();
      this.runBeside(head.line, head.notUtf8);
    }
    // A queue full by its count before the transfer began has room by its size now.
    if (this.socket.isPaused() && this.paceWait === null && !this.queueFull()) this.socket.resume();
    this.stopForQueuedAborOrQuit();
  }

  /**
   * An ABOR waiting in the queue behind other commands during a transfer or a checksum stops it
   * now, as one run at once would: the client wants it stopped, and a download it no longer reads
   * would otherwise hold its ABOR until the stall timeout. The ABOR keeps its place for its reply:
   * the transfer answers 426 now, the commands ahead of the ABOR answer in their turn, then the
   * ABOR 226 (RFC 959 §4.1.3). Not when a command ahead of it would start a transfer or a checksum
   * of its own: that one is what the ABOR follows, and it stops that one in its turn. Only a
   * well-formed ABOR does this (one with an argument is refused 501 in its turn). A QUIT waiting
   * so stops a checksum the same way (426, the replies ahead, then its 221), not a transfer.
   */
  private stopForQueuedAborOrQuit(): void {
    if ((!this.transfer || this.transfer.aborted !== null) && !this.hashing) return;
    for (let i = 0; i < this.queue.length; i++) {
      const item = this.queue[i] as Queued;
      if (!("line" in item)) continue;
      const verb = verbOf(item.line);
      if (this.dispatcher.startsWork(verb)) return;
      // A QUIT stops a checksum too, as one run at once does (the client is going, and would wait
      // for a whole file's hash before its 221); a transfer it lets finish (RFC 959 §4.1.1).
      if (verb === "QUIT" && this.hashing && !this.transfer && item.notUtf8 !== true && isBlank(item.line.slice(4))) {
        this.hashing.cancel();
        return;
      }
      if (verb !== "ABOR" || item.notUtf8 === true || !isBlank(item.line.slice(4))) continue;
      if (item.stopped === true) return;
      this.queue[i] = { line: item.line, stopped: true };
      this.transfer?.abort("abort");
      this.hashing?.cancel();
      return;
    }
  }

  /** The client does not read its replies (the socket holds more than it buffers), or sent more
   * commands that run at once (ABOR, STAT, QUIT) than a queue holds: such commands wait in the
   * queue, which stops reading when full, so a client flooding STAT during a transfer without
   * reading cannot grow the server's memory without bound. */
  private repliesPiledUp(): boolean {
    return this.socket.writableNeedDrain || this.bypassing >= MAX_QUEUED;
  }

  /** Input that arrives while an AUTH is pending. A client that keeps sending instead of waiting
   * for the AUTH's reply is flooding. */
  private holdBack(chunk: Buffer): void {
    const held = this.afterAuth;
    if (held === null) return;
    held.bytes += chunk.length;
    if (held.bytes > HOLD_LIMIT) {
      this.afterAuth = null;
      this.flood();
      return;
    }
    // A copy: the chunk may be the shared read buffer (CONTROL_READ).
    held.chunks.push(Buffer.from(chunk));
  }

  /** The pending AUTH was refused: what came after it is read as if it had never been held. */
  private resumeAfterAuth(): void {
    const held = this.afterAuth;
    this.holdInput = false;
    this.afterAuth = null;
    if (held === null) return;
    this.take(held.lines);
    for (const chunk of held.chunks) this.receive(chunk);
  }

  private enqueue(item: Queued): void {
    this.queue.push(item);
    this.queuedBytes += queuedSize(item);
    if (this.queueFull()) this.socket.pause();
  }

  /** Takes the queue's first item; reading resumes once the queue is half empty. */
  private dequeue(): Queued {
    const item = this.queue.shift() as Queued;
    this.queuedBytes -= queuedSize(item);
    const room = this.transfer || this.hashing ? this.queuedBytes < MAX_QUEUED_BYTES / 2 : this.queue.length < MAX_QUEUED / 2;
    if (room && this.socket.isPaused()) this.socket.resume();
    return item;
  }

  private clearQueue(): void {
    this.queue.length = 0;
    this.queuedBytes = 0;
  }

  /** The queue holds all it may: MAX_QUEUED commands, or during a transfer or a checksum
   * MAX_QUEUED_BYTES. */
  private queueFull(): boolean {
    return this.transfer || this.hashing ? this.queuedBytes >= MAX_QUEUED_BYTES : this.queue.length >= MAX_QUEUED;
  }

  private async pump(): Promise<void> {
    if (this.pumping) return;
    this.pumping = true;
    try {
      while (this.queue.length > 0 && !this.closed && !this.ending) {
        if (this.socket.writableNeedDrain) {
          // The session may have ended meanwhile (a timeout, a ban, shutdown), its queue emptied,
          // and the wait ended by the connection's error: the loop's condition is checked again.
          await once(this.socket, "drain").catch(() => undefined);
          continue;
        }
        if (!this.mayRunNext()) {
          await this.waitForToken();
          continue;
        }
        const item = this.dequeue();
        if ("overlong" in item) this.overlong();
        else {
          this.stoppedAhead = item.stopped === true;
          try {
            await this.dispatcher.run(this, item.line, item.notUtf8);
          } finally {
            this.stoppedAhead = false;
          }
          // An AUTH that did not upgrade the connection (refused by the dispatcher, as without an
          // argument, or by its handler): reading resumes with what came after it. An upgrade
          // dropped that and resumed reading already.
          if (this.holdInput && verbOf(item.line) === "AUTH") this.resumeAfterAuth();
        }
      }
    } finally {
      this.pumping = false;
      this.endWhenAnswered();
    }
  }

  /** True when the next command may run now (a token taken, or no pacing). QUIT, ABOR and STAT
   * are never held back. Not async: an await per command costs a turn of the microtask queue. */
  private mayRunNext(): boolean {
    const head = this.queue[0];
    if (!this.pace || (head !== undefined && "line" in head && this.dispatcher.bypasses(verbOf(head.line)))) return true;
    return this.pace.take();
  }

  /** Stops reading from the client (pipelined commands just wait their turn) and sleeps until a
   * token is due; the caller checks again. */
  private async waitForToken(): Promise<void> {
    this.socket.pause();
    const ms = (this.pace as TokenBucket).msUntilToken();
    await new Promise<void>((resolve) => {
      this.paceWait = { timer: setTimeout(resolve, ms), wake: resolve };
    });
    this.paceWait = null;
    // The idle time counts from the last command's turn, not from its arrival (see restartIdle).
    this.restartIdle();
  }

  /** Ends a pacing wait at once (the session closed): the pump then sees it closed. */
  private stopPacing(): void {
    if (this.paceWait === null) return;
    clearTimeout(this.paceWait.timer);
    this.paceWait.wake();
  }

  private overlong(): void {
    // A line too long to be read is still the command after an RNFR (RFC 959 §4.1.3: RNTO must
    // follow it at once), as any other refused command is (Dispatcher.run).
    this.renameFrom = null;
    this.reply(500, "Command line too long");
    this.ctx.defender.record(this.remoteAddress, "abuse", "overlong command lines");
  }
}

/** What a queued item counts for against MAX_QUEUED_BYTES. */
function queuedSize(item: Queued): number {
  return "line" in item ? item.line.length + QUEUED_ITEM_BYTES : QUEUED_ITEM_BYTES;
}

/** The verb of a command line, upper case ("" for an empty line). */
export function verbOf(line: string): string {
  const sp = line.indexOf(" ");
  const verb = sp === -1 ? line : line.slice(0, sp);
  // Clients send verbs in upper case: toUpperCase() would still cost a runtime call each.
  for (let i = 0; i < verb.length; i++) {
    const c = verb.charCodeAt(i);
    if (c < 0x41 || c > 0x5a) return upperAscii(verb);
  }
  return verb;
}

/** `verb` with its ASCII letters upper-cased and nothing else changed. A command code is ASCII
 * (RFC 959 §5.3); toUpperCase() would also turn the long s into S and the dotless i into I, and
 * make "ſTOR" a STOR. */
function upperAscii(verb: string): string {
  for (let i = 0; i < verb.length; i++) {
    if (verb.charCodeAt(i) >= 0x80) return verb.replace(ASCII_LOWER, (c) => c.toUpperCase());
  }
  return verb.toUpperCase();
}

const ASCII_LOWER = /[a-z]/g;
