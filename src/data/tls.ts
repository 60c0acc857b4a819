/**
 * TLS for the control and data connections (RFC 4217). Each control connection gets a TlsBinding:
 * its own SecureContext (own session-ticket keys) and its own session-ID cache, and its data
 * connections use that same binding. A data connection can therefore resume only its own control
 * connection's session, which is what `tls.requireSessionReuse` checks (a foreign or fresh session
 * is refused). Certificates are re-read when their files change, without touching running sessions.
 */
import { constants as cryptoConstants, createHash, createPrivateKey, randomBytes, X509Certificate, type KeyObject } from "node:crypto";
import { EventEmitter } from "node:events";
import { accessSync, constants as fsConstants, existsSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, type Stats } from "node:fs";
import { dirname, resolve } from "node:path";
import { getSystemErrorName } from "node:util";
import type { Server, Socket } from "node:net";
import { createSecureContext, TLSSocket, type SecureContext } from "node:tls";
import type { Logger } from "pino";
import { makeDirsSync } from "../fs/mkdirs.ts";
import { ConfigError, readFileAtMost } from "../config/load.ts";
import { errnoCode, systemErrorText } from "../config/syserr.ts";
import type { Config } from "../config/schema.ts";
import { FtpError } from "../protocol/errors.ts";
import { makeSelfSigned } from "./selfsigned.ts";
import { plainSocketFd, quickAckBinding, type QuickAckBinding } from "../native.ts";

/** Modern suites only (TLS 1.2 with forward secrecy and AEAD; TLS 1.3 suites are all fine), in the
 * order of Mozilla's "intermediate" configuration: AES-128-GCM first, the cheapest on processors
 * with AES instructions (an FTPS transfer spends about a quarter of its CPU in AES-GCM), and
 * ChaCha20-Poly1305 for a client that lists it first (SSL_OP_PRIORITIZE_CHACHA below: a client
 * puts it first when it lacks AES instructions). */
const CIPHERS = [
  "TLS_AES_128_GCM_SHA256",
  "TLS_AES_256_GCM_SHA384",
  "TLS_CHACHA20_POLY1305_SHA256",
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
].join(":");

/** How long a control session's TLS session stays resumable by its data connections (seconds). */
const SESSION_LIFETIME = 86_400;
/** Session IDs kept per control connection (one per control handshake, plus TLS 1.3 tickets). */
const MAX_CACHED_SESSIONS = 8;
/** Session secrets kept per control connection (its own, and tickets of its data connections). */
const MAX_SECRETS = 64;

/** What a session needs of the TLS provider (kept small for tests). */
export interface TlsSessionState {
  readonly protectData: boolean;
  tlsBinding: TlsBinding | null;
  readonly log: Pick<Logger, "warn">;
  readonly ctx: { readonly config: Config };
}

/** Certificate files and where they came from. */
interface Material {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly certPath: string;
  readonly keyPath: string;
  readonly stamp: string;
}

/** Config error naming a key (`tls.cert`, `tls.key`), raised when the certificate cannot be loaded. */
export class TlsConfigError extends ConfigError {
  constructor(key: string, message: string) {
    super(key, message);
    this.name = "TlsConfigError";
  }
}

/**
 * The TLS identity of one control connection, shared with its data connections: the context whose
 * ticket keys only this connection knows, the secrets of the sessions it issued, and a session-ID
 * cache for clients that resume by ID rather than ticket (curl over TLS 1.2 offers no ticket).
 *
 * A data connection is accepted only if it resumed a session whose secret this control connection
 * issued, directly or through one of its accepted data connections (clients such as basic-ftp use
 * the ticket a data connection gave them for the next one). A data connection that did a full
 * handshake also receives tickets; their secrets are never recorded, so a same-address intruder
 * that got refused once cannot come back with them.
 */
export class TlsBinding {
  private readonly sessions = new Map<string, Buffer>();
  private readonly secrets = new Set<string>();

  constructor(
    /** The context of the control socket and of its data sockets. */
    readonly context: SecureContext,
  ) {}

  /** Node's `server` hooks for the control socket: its sessions are this binding's. */
  controlEvents(t: () => TLSSocket | null): EventEmitter {
    const events = new EventEmitter();
    events.on("newSession", (id: Buffer, der: Buffer, done: () => void) => {
      this.remember(der, id);
      done();
    });
    events.on("resumeSession", (_id: Buffer, cb: (err: null, der: Buffer | null) => void) => cb(null, null));
    // TLS 1.2 issues no 'newSession' for ticket clients: take the secret from the finished handshake.
    events.on("secure", () => {
      const der = t()?.getSession();
      if (der) this.remember(der, null);
    });
    return events;
  }

  /** Node's `server` hooks for a data socket: it may resume the control's sessions. */
  dataEvents(t: () => TLSSocket | null): EventEmitter {
    const events = new EventEmitter();
    let accepted = false;
    events.on("secure", () => {
      const socket = t();
      accepted = socket !== null && this.resumedOwnSession(socket);
    });
    // TLS 1.3 tickets are issued after the handshake: the next data connection may present them.
    events.on("newSession", (_id: Buffer, der: Buffer, done: () => void) => {
      if (accepted) this.remember(der, null);
      done();
    });
    events.on("resumeSession", (id: Buffer, cb: (err: null, der: Buffer | null) => void) => {
      cb(null, this.sessions.get(id.toString("hex")) ?? null);
    });
    return events;
  }

  /** True when the socket's handshake resumed a session this binding issued. */
  resumedOwnSession(t: TLSSocket): boolean {
    if (!t.isSessionReused()) return false;
    const secret = secretOf(t.getSession());
    if (secret === null || !this.secrets.has(secret)) return false;
    // A secret in use is kept as the newest: lftp, FileZilla and ftplib wrapped as the README says
    // resume the control connection's own session on every data connection, while each download
    // adds the secret of a fresh ticket. Kept in order of issue only, the control's secret would
    // be dropped after MAX_SECRETS transfers, and every data connection refused from then on.
    bounded(this.secrets, secret);
    return true;
  }

  private remember(der: Buffer, id: Buffer | null): void {
    const secret = secretOf(der);
    if (secret === null) return;
    bounded(this.secrets, secret);
    if (id !== null && id.length > 0) {
      this.sessions.set(id.toString("hex"), der);
      if (this.sessions.size > MAX_CACHED_SESSIONS) this.sessions.delete(this.sessions.keys().next().value as string);
    }
  }
}

function bounded(set: Set<string>, value: string): void {
  set.delete(value);
  set.add(value);
  if (set.size > MAX_SECRETS) set.delete(set.values().next().value as string);
}

/**
 * A digest of the session secret in a DER SSL_SESSION (OpenSSL's SSL_SESSION_ASN1: a SEQUENCE of
 * version, ssl_version, cipher, session_id, master_key, ...), or null when there is none yet.
 */
export function secretOf(der: Buffer | undefined): string | null {
  if (!der) return null;
  const at = { p: 0 };
  if (derHeader(der, at, 0x30) === null) return null;
  for (const tag of [0x02, 0x02, 0x04, 0x04]) {
    const len = derHeader(der, at, tag);
    if (len === null) return null;
    at.p += len;
  }
  const len = derHeader(der, at, 0x04);
  if (len === null || len === 0) return null;
  return createHash("sha256").update(der.subarray(at.p, at.p + len)).digest("hex");
}

/** The length of the DER element with `tag` at `at.p`, `at.p` moved past its header; null when
 * another tag is there or the element runs past the end. (Per TLS data connection: a function
 * of its own, not a closure, see test/hotpath.test.ts.) */
function derHeader(der: Buffer, at: { p: number }, tag: number): number | null {
  if (der[at.p] !== tag) return null;
  let len = der[at.p + 1] ?? 0;
  at.p += 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + (der[at.p++] ?? 0);
  }
  return at.p + len <= der.length ? len : null;
}

/** Session-ticket keys of one context: a key name, an HMAC key and an AES-128 key. */
interface TicketKeys {
  readonly name: Buffer;
  readonly hmac: Buffer;
  readonly aes: Buffer;
}

/** Where a context's ticket keys are kept on its native object. */
const TICKET_KEYS = Symbol("berth.ticketKeys");

/** Whether a resumed handshake on a context gets a fresh ticket (see renewTickets). */
const RENEW = Symbol("berth.renewTickets");

/** The native context object Node calls for ticket keys once its ticket key callback is on. */
interface TicketKeyContext {
  enableTicketKeyCallback(): void;
  onticketkeycallback: (this: TicketKeyContext, name: Buffer, iv: Buffer, enc: boolean) => unknown[];
  [TICKET_KEYS]?: TicketKeys;
  [RENEW]?: boolean;
}

/**
 * Gives `context` random ticket keys of its own, as `ticketKeys` would, through Node's ticket key
 * callback (the hook its own tests use), which unlike `ticketKeys` can have a resumed handshake
 * issue a fresh ticket: see renewTickets. False, and nothing done, where the hook is not there
 * (it is no documented API): the context keeps the `ticketKeys` it was made with, and data
 * connections resume as they did before, without fresh tickets.
 */
function ownTicketKeys(context: SecureContext): boolean {
  const native = context.context as Partial<TicketKeyContext> | undefined;
  if (typeof native?.enableTicketKeyCallback !== "function") return false;
  const keys = randomBytes(48);
  native[TICKET_KEYS] = { name: keys.subarray(0, 16), hmac: keys.subarray(16, 32), aes: keys.subarray(32, 48) };
  native.onticketkeycallback = ticketKeyCallback;
  native.enableTicketKeyCallback();
  return true;
}

/**
 * Sets whether the next handshake that resumes a session of `context` is sent a fresh ticket.
 * OpenSSL sends none after a resumption unless asked; a client that does not offer a TLS 1.3
 * ticket again once a connection has used it, as curl does, then had nothing left to resume its
 * second data connection with, which `tls.requireSessionReuse` refused (522). The fresh ticket
 * comes from a data connection that resumed this control connection's session, so TlsBinding
 * records it for the next one. Only data connections the server sends on get one: a client
 * that only writes (an upload) never reads the ticket, and closing its socket with it unread
 * makes its kernel send a reset, which ends the upload as cut off (426).
 */
function renewTickets(context: SecureContext, renew: boolean): void {
  (context.context as TicketKeyContext)[RENEW] = renew;
}

/**
 * Node's ticket key callback, called on the native context: when encrypting, the key name, keys
 * and a random IV; when decrypting, for this context's key name 1 (valid) or 2 (valid, issue a
 * fresh ticket, see renewTickets), and 0 (unknown: a full handshake) for any other. (A function
 * of its own, not a closure: one context is made per TLS control connection, see
 * test/hotpath.test.ts.)
 */
function ticketKeyCallback(this: TicketKeyContext, name: Buffer, _iv: Buffer, enc: boolean): unknown[] {
  const keys = this[TICKET_KEYS];
  if (keys === undefined) return [-1];
  if (enc) return [1, keys.hmac, keys.aes, keys.name, randomBytes(16)];
  if (!name.equals(keys.name)) return [0, keys.hmac, keys.aes];
  return [this[RENEW] === true ? 2 : 1, keys.hmac, keys.aes];
}

/** Loads certificates and makes TLS sockets for control and data connections. */
export class TlsProvider {
  private material: Material;
  private lastCheck = -Infinity;

  private constructor(
    material: Material,
    private readonly logger: Logger,
  ) {
    this.material = material;
  }

  /** Reads (or, with no cert configured, creates) the certificate; TlsConfigError on failure. */
  static create(config: Config, logger: Logger, cwd = process.cwd()): TlsProvider {
    const { certPath, keyPath, selfSigned } = certificatePaths(config, cwd);
    if (selfSigned) ensureSelfSigned(certPath, keyPath, logger);
    const material = loadMaterial(certPath, keyPath);
    warnOfDates(material, logger);
    return new TlsProvider(material, logger);
  }

  /** The certificate file in use (the self-signed one berth made, when none is configured). */
  get certificatePath(): string {
    return this.material.certPath;
  }

  /** A fresh binding for one control connection (own ticket keys, own session cache). */
  binding(): TlsBinding {
    this.maybeReload();
    return new TlsBinding(this.newContext());
  }

  /** Server-side TLS over an accepted control connection (implicit port, or after AUTH TLS). */
  wrapControl(socket: Socket, binding: TlsBinding): TLSSocket {
    let t: TLSSocket | null = null;
    const events = binding.controlEvents(() => t);
    t = this.wrap(socket, binding.context, events);
    return t;
  }

  /**
   * For PROT P: wraps the data socket at once (curl starts its handshake as soon as it connects),
   * sends 150 without waiting for the handshake (lftp and ftplib start it only after 150), then
   * waits for the handshake and checks the session was resumed from this control connection.
   * An upload's socket also checks that the client ends it with close_notify (requireCloseNotify).
   * Without PROT P the socket is returned as is; `send150` is told whether the data is secured.
   */
  async secureData(
    s: TlsSessionState,
    socket: Socket,
    send150: (secured: boolean) => void,
    opts: { readonly upload: boolean } = { upload: false },
  ): Promise<Socket> {
    const binding = s.tlsBinding;
    if (!s.protectData || !binding) {
      send150(false);
      return socket;
    }
    let t: TLSSocket | null = null;
    const events = binding.dataEvents(() => t);
    // A control connection's data connections come one at a time, so the flag holds for this one.
    renewTickets(binding.context, !opts.upload);
    t = this.wrap(socket, binding.context, events);
    if (opts.upload) requireCloseNotify(t);
    // Checked as the handshake finishes: a client that sends close_notify right behind its Finished
    // (an empty upload) has its socket ended, and closed, before handshake() resolves.
    let own = false;
    let resumed = false;
    t.once("secure", () => {
      own = binding.resumedOwnSession(t);
      resumed = t.isSessionReused();
    });
    send150(true);
    await handshake(t, s.ctx.config.limits.dataTimeout * 1000);
    if (s.ctx.config.tls.requireSessionReuse && !own) {
      t.destroy();
      s.log.warn({ event: "tls-data-refused", resumed }, "data connection did not resume the control connection's TLS session");
      throw new FtpError(522, "Data connection refused: it must resume this control connection's TLS session");
    }
    return t;
  }

  /** Re-reads the certificate files when they changed; keeps the old ones if the new are bad. */
  maybeReload(force = false): void {
    // On the monotonic clock: with the wall clock set back, changed files would go unseen as long.
    const now = performance.now();
    if (!force && now - this.lastCheck < 5000) return;
    this.lastCheck = now;
    const { certPath, keyPath } = this.material;
    try {
      if (stampOf(certPath, keyPath) === this.material.stamp) return;
      const next = loadMaterial(certPath, keyPath);
      this.material = next;
      this.logger.info({ event: "tls-reload", cert: certPath }, "TLS certificate reloaded");
      warnOfDates(next, this.logger);
    } catch (err) {
      this.logger.warn({ event: "tls-reload", error: (err as Error).message }, "TLS certificate reload failed; keeping the old one");
    }
  }

  private newContext(): SecureContext {
    const context = createSecureContext({
      cert: this.material.cert,
      key: this.material.key,
      minVersion: "TLSv1.2",
      ciphers: CIPHERS,
      honorCipherOrder: true,
      // No renegotiation (TLS 1.2; TLS 1.3 has none): each would be a full handshake on the event
      // loop, as often as the client asks, before login too. Node limits it to 3 in 10 minutes only
      // for sockets of a tls.Server; these are TLSSockets of their own, where the limit's error is
      // never emitted. No FTP client needs it.
      secureOptions: cryptoConstants.SSL_OP_PRIORITIZE_CHACHA | cryptoConstants.SSL_OP_NO_RENEGOTIATION,
      sessionTimeout: SESSION_LIFETIME,
      // Used only where ownTicketKeys finds no ticket key hook to take their place.
      ticketKeys: randomBytes(48),
    });
    ownTicketKeys(context);
    return context;
  }

  private wrap(socket: Socket, context: SecureContext, events: EventEmitter): TLSSocket {
    const t = new TLSSocket(socket, {
      isServer: true,
      secureContext: context,
      ALPNProtocols: ["ftp"],
      requestCert: false,
      // Node asks its `server` for session-ID storage ('newSession'/'resumeSession'); the binding
      // answers instead, so each control connection has its own cache.
      server: events as unknown as Server,
    });
    t.on("error", () => undefined);
    // A TLS error after the handshake (a record that does not decrypt) is emitted as 'error' only
    // by sockets of a tls.Server. On a TLSSocket of its own it is the internal '_tlsError' alone,
    // after OpenSSL has sent its alert; the socket would stay open, dead, until a write failed or
    // a timeout ended it. It ends now, with that error: a session closes, a transfer fails (426).
    t.on("_tlsError", (err: Error) => t.destroy(err));
    quickAckAfterFlight(t, socket);
    let secured = false;
    // Relayed so the binding sees each finished handshake before anything else runs.
    t.once("secure", () => {
      secured = true;
      events.emit("secure");
    });
    // A client that ends its side before its handshake never finishes it: what waits to be written
    // (an implicit connection's 220) can never go out, and Node would hold the socket open for it
    // until a timeout. It goes now.
    t.once("end", () => {
      if (!secured) t.destroy();
    });
    return t;
  }
}

/**
 * Makes an upload's TLS socket fail with 426 when its TCP connection ends without the client's TLS
 * close_notify (RFC 5246 §7.2.1): Node ends the TLS stream the same way for both, so a truncated
 * upload would look complete. TLS reads the TCP handle natively (a JS stream between them costs
 * about a third of an upload's CPU), so the two are told apart when the end is pushed,
 * synchronously from the TLS layer's read callback, by whether TCP is still being read:
 * - close_notify is data read from TCP: TCP is still being read (libuv answers another start with
 *   EALREADY), or Node paused it for backpressure, and then no TCP end can have been read since;
 * - a TCP end without close_notify comes from libuv's end-of-file callback, which has stopped
 *   reading first: the start succeeds (and is undone) or fails otherwise.
 * TLS ignores what follows close_notify, so FIN in the same segment or later, or TCP left open
 * until the server's close_notify (half-close), all count as a clean end.
 * This reads Node's handles (`_handle`, `_parent`, `reading`): on a Node where they are laid out
 * otherwise every end counts as a cut (uploads fail, nothing truncated is published), and the
 * tests in test/tls.test.ts fail.
 */
export function requireCloseNotify(t: TLSSocket): void {
  const push = t.push.bind(t);
  t.push = (chunk: unknown, encoding?: BufferEncoding): boolean => {
    if (chunk !== null || closeNotifyReceived(t)) return push(chunk, encoding);
    t.destroy(new FtpError(426, "Transfer aborted: data connection closed without TLS close_notify"));
    return false;
  };
}

/**
 * Has what the client sends after the server's handshake flight acknowledged at once. Clients write
 * their last handshake messages in more than one send: GnuTLS (lftp, FileZilla) TLS 1.3's
 * ChangeCipherSpec, then its Finished; OpenSSL (Python's ftplib) its Finished, then the first data.
 * With Nagle's algorithm on the client's side the second send waits for the ACK of the first, and
 * Linux delays that ACK (about 40 ms) on a socket that has just answered what it received, as the
 * server has with its flight. Each TLS data connection of lftp or ftplib took 40–50 ms more than its
 * plain one for it: 20 small TLS downloads with lftp 1.3–2.6 s against 0.4–0.5 s with this, 20
 * small uploads with ftplib 1.0–1.2 s against 0.13–0.16 s (pure-ftpd: 1.2–1.4 s and 0.9 s).
 * TCP_QUICKACK is set once the flight has gone out: Node calls the TLS handle's `onhandshakestart`
 * as OpenSSL starts on the ClientHello, and the flight is written in the same read callback, so an
 * immediate runs after it. On a Node without that hook, or without the addon, nothing changes but
 * the wait. Exported for test/tls.test.ts (`binding`).
 */
export function quickAckAfterFlight(t: TLSSocket, socket: Socket, binding: QuickAckBinding | null = quickAckBinding()): void {
  const fd = plainSocketFd(socket);
  const h = (t as unknown as { _handle?: { onhandshakestart?: (now: number) => void } | null })._handle;
  if (binding === null || fd === null || !h || typeof h.onhandshakestart !== "function") return;
  const start = h.onhandshakestart;
  h.onhandshakestart = function (this: unknown, now: number): void {
    start.call(this, now);
    setImmediate(ackNext, binding, fd);
  };
}

function ackNext(binding: QuickAckBinding, fd: number): void {
  binding.quickAck(fd);
}

/** The handles under a TLSSocket: its TLS wrap, whose `_parent` is the TCP handle it reads. */
interface TlsHandle {
  readonly reading?: boolean;
  readonly _parent?: { readStart?: () => number; readStop?: () => number };
}

/** See requireCloseNotify. */
function closeNotifyReceived(t: TLSSocket): boolean {
  const tls = (t as unknown as { _handle?: TlsHandle | null })._handle;
  const tcp = tls?._parent;
  if (!tls || typeof tcp?.readStart !== "function" || typeof tcp.readStop !== "function") return false;
  // `reading` is Node's own record of whether it asked TCP to read (false: paused for backpressure).
  if (tls.reading !== true) return true;
  const err = tcp.readStart();
  if (err === 0) tcp.readStop();
  return err < 0 && getSystemErrorName(err) === "EALREADY";
}

function handshake(t: TLSSocket, timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => new Handshake(t, timeoutMs, resolve, reject));
}

/** One handshake() of a data connection. A class, not named closures: one is made per protected
 * transfer (test/hotpath.test.ts). */
class Handshake {
  private readonly timer: NodeJS.Timeout;
  private readonly onClose: () => void;

  constructor(
    private readonly t: TLSSocket,
    timeoutMs: number,
    resolve: () => void,
    private readonly reject: (err: Error) => void,
  ) {
    this.timer = setTimeout(() => this.fail("timed out"), timeoutMs);
    this.onClose = () => this.fail("interrupted");
    t.once("secure", () => {
      clearTimeout(this.timer);
      t.removeListener("close", this.onClose);
      // After a full TLS 1.3 handshake OpenSSL writes its session tickets once 'secure' returns.
      // Data (and close_notify) sent in the same turn would go out before them, and Python's
      // ssl unwrap() then fails with SHUTDOWN_WHILE_IN_INIT: start on the next turn.
      setImmediate(resolve);
    });
    t.once("error", () => this.fail("failed"));
    t.once("close", this.onClose);
  }

  private fail(why: string): void {
    clearTimeout(this.timer);
    this.t.destroy();
    // A client that sends plaintext after PROT P ends up here too (curl 7.87-7.88 in active mode).
    this.reject(new FtpError(425, `Can't open data connection: TLS handshake ${why} (PROT P: the data connection must use TLS)`));
  }
}

/** The certificate and key files `config` names, resolved against `cwd`; with neither set, the
 * self-signed pair kept beside the users file. TlsConfigError when only one of them is set. */
function certificatePaths(config: Config, cwd: string): { certPath: string; keyPath: string; selfSigned: boolean } {
  const { cert, key } = config.tls;
  if (cert === "" && key === "") {
    const dir = resolve(cwd, dirname(config.users.file));
    return { certPath: resolve(dir, "selfsigned-cert.pem"), keyPath: resolve(dir, "selfsigned-key.pem"), selfSigned: true };
  }
  if (cert === "" || key === "") {
    const missing = cert === "" ? "tls.cert" : "tls.key";
    throw new TlsConfigError(missing, `tls.cert and tls.key must be set together (${missing} is empty)`);
  }
  return { certPath: resolve(cwd, cert), keyPath: resolve(cwd, key), selfSigned: false };
}

/**
 * Checks what TlsProvider.create would read, without creating anything: with TLS on, the
 * certificate and key must be set together, readable, PEM and a pair, the key unencrypted. A
 * self-signed pair that is not there yet, or is there incomplete or unmatched, passes (the server
 * makes a new one at start) when it can be written.
 */
export function checkTlsFiles(config: Config, cwd = process.cwd()): void {
  if (config.tls.mode === "off") return;
  const { certPath, keyPath, selfSigned } = certificatePaths(config, cwd);
  // berth's own pair, missing or left incomplete (see ensureSelfSigned), is made at start.
  if (selfSigned && !(existsSync(certPath) && existsSync(keyPath) && selfSignedWhole(certPath, keyPath))) {
    checkSelfSignedWritable(certPath, keyPath);
    return;
  }
  loadMaterial(certPath, keyPath);
}

/** The self-signed pair to be made at `certPath` and `keyPath` can be written: each is a file that
 * can be written or is absent, in a directory (or under the nearest one that exists) that can be
 * written to. TlsConfigError naming the path otherwise. Creates nothing. */
function checkSelfSignedWritable(certPath: string, keyPath: string): void {
  for (const path of [keyPath, certPath]) {
    try {
      checkWritable(path);
    } catch (err) {
      throw selfSignedUnwritable(path, err);
    }
  }
}

function checkWritable(path: string): void {
  const st = statOrNull(path);
  if (st !== null) {
    if (st.isDirectory()) throw Object.assign(new Error("is a directory"), { code: "EISDIR" });
    accessSync(path, fsConstants.W_OK);
    // A new pair is written beside the old one and renamed over it: the directory is written too.
    accessSync(dirname(path), fsConstants.W_OK);
    return;
  }
  let dir = dirname(path);
  let parent = statOrNull(dir);
  while (parent === null && dirname(dir) !== dir) {
    dir = dirname(dir);
    parent = statOrNull(dir);
  }
  if (parent !== null && !parent.isDirectory()) throw Object.assign(new Error("not a directory"), { code: "ENOTDIR" });
  accessSync(dir, fsConstants.W_OK);
}

/** The stats of `path`, or null when there is nothing there. */
function statOrNull(path: string): Stats | null {
  try {
    return statSync(path);
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return null;
    throw err;
  }
}

/** The error of a self-signed pair that cannot be written at `path` (a read-only or foreign-owned
 * directory beside the users file): the server cannot start with it, and setting a certificate is
 * the way out. */
function selfSignedUnwritable(path: string, err: unknown): TlsConfigError {
  return new TlsConfigError(
    "tls.cert",
    `tls.cert and tls.key are empty and the self-signed certificate cannot be written: ${path} (${systemErrorText(err)}); set tls.cert and tls.key, or let the server write there`,
  );
}

function stampOf(certPath: string, keyPath: string): string {
  const a = statSync(certPath);
  const b = statSync(keyPath);
  return `${a.mtimeMs}:${a.size}:${b.mtimeMs}:${b.size}`;
}

/** The largest certificate (chain) or key file read, in bytes: a chain with its intermediates is a
 * few KiB. A path named by mistake (/dev/zero, a disk image) is refused after this much. */
const MAX_PEM_BYTES = 1 << 20;

/** The bytes of the PEM file at `file`, the value of `key`; a TlsConfigError naming `key` when it
 * cannot be read or is larger than any certificate or key file. */
function readPem(key: "tls.cert" | "tls.key", file: string): Buffer {
  let bytes: Buffer | null;
  try {
    bytes = readFileAtMost(file, MAX_PEM_BYTES);
  } catch (err) {
    throw new TlsConfigError(key, `${key} cannot be read: ${file} (${errnoText(err)})`);
  }
  if (bytes === null) throw new TlsConfigError(key, `${key} cannot be read: ${file} (larger than ${MAX_PEM_BYTES} bytes, which no certificate or key file is)`);
  return bytes;
}

function loadMaterial(certPath: string, keyPath: string): Material {
  // Stamped before the files are read: a renewal written between the reading and the stamp would
  // otherwise be stamped as read, and never loaded until the files changed again. One written
  // after this is seen by the next check. A file that cannot be stat'ed fails its reading below.
  let stamp = "";
  try {
    stamp = stampOf(certPath, keyPath);
  } catch {
    // readPem names the file and the key
  }
  const cert = readPem("tls.cert", certPath);
  const key = readPem("tls.key", keyPath);
  try {
    createSecureContext({ cert });
  } catch (err) {
    // A certificate OpenSSL reads but will not use: its key is too weak for OpenSSL's security
    // level (RSA under 1024 bits). It is a PEM certificate all the same; another one is the way out.
    if (errnoCode(err) === "ERR_SSL_EE_KEY_TOO_SMALL") {
      throw new TlsConfigError("tls.cert", `tls.cert has a key too small for OpenSSL to use: ${certPath} (make one with an RSA key of 2048 bits or more, or an ECDSA key)`);
    }
    const cut = unreadableInChain(cert);
    if (cut !== null) {
      throw new TlsConfigError("tls.cert", `tls.cert has a certificate that cannot be read (certificate ${cut.at} of ${cut.of}, cut short or damaged): ${certPath}`);
    }
    throw new TlsConfigError("tls.cert", `tls.cert is not a PEM certificate: ${certPath}`);
  }
  try {
    createSecureContext({ cert, key });
  } catch {
    // PKCS#8 ("ENCRYPTED PRIVATE KEY") or the older PEM header ("Proc-Type: 4,ENCRYPTED").
    if (/-----BEGIN ENCRYPTED PRIVATE KEY-----|^Proc-Type: 4,ENCRYPTED/m.test(key.toString("latin1"))) {
      throw new TlsConfigError("tls.key", `tls.key is encrypted (it needs a passphrase), which berth cannot read: ${keyPath} (write it out unencrypted: openssl pkey -in KEY -out NEWKEY)`);
    }
    throw keyMismatch(cert, key, certPath, keyPath);
  }
  // OpenSSL compares a key with the certificate only when both are of one type: an EC key beside
  // an RSA certificate loads, and then every handshake fails (no signature algorithm in common).
  if (!keyMatches(cert, key)) throw keyMismatch(cert, key, certPath, keyPath);
  return { cert, key, certPath, keyPath, stamp };
}

/** In a chain whose first certificate reads, the place (from 1) of the first one that does not
 * (its END line missing, or its text damaged), with the number of certificates; null otherwise. */
function unreadableInChain(cert: Buffer): { at: number; of: number } | null {
  const blocks = cert.toString("latin1").split("-----BEGIN CERTIFICATE-----").slice(1);
  const readable = (block: string): boolean => {
    const end = block.indexOf("-----END CERTIFICATE-----");
    if (end === -1) return false;
    try {
      new X509Certificate(`-----BEGIN CERTIFICATE-----${block.slice(0, end)}-----END CERTIFICATE-----\n`);
      return true;
    } catch {
      return false;
    }
  };
  const at = blocks.findIndex((block) => !readable(block));
  return at > 0 ? { at: at + 1, of: blocks.length } : null;
}

/** The error of a key that is not the certificate's. The chain's first certificate is the server's
 * own: a chain with the key's certificate further down (an intermediate put first) is tls.cert's
 * fault, said so, not the key's, which is right. */
function keyMismatch(cert: Buffer, key: Buffer, certPath: string, keyPath: string): TlsConfigError {
  const chain = cert.toString("latin1").match(/-----BEGIN CERTIFICATE-----[^]*?-----END CERTIFICATE-----/g) ?? [];
  const at = chain.findIndex((pem, i) => i > 0 && keyMatches(Buffer.from(pem, "latin1"), key, false));
  if (at > 0) {
    return new TlsConfigError(
      "tls.cert",
      `tls.cert does not begin with the certificate of tls.key, which is certificate ${at + 1} of ${chain.length} in ${certPath} (put the server's own certificate first, then its intermediates, as in Let's Encrypt's fullchain.pem)`,
    );
  }
  return new TlsConfigError("tls.key", `tls.key is not a PEM private key matching tls.cert: ${keyPath}`);
}

/** Whether `key` is the private key of the certificate (the first of the chain) in `cert`;
 * `unreadable` when Node cannot read one of them (true where OpenSSL's context has accepted them
 * already). */
function keyMatches(cert: Buffer, key: Buffer, unreadable = true): boolean {
  let certificate: X509Certificate;
  let privateKey: KeyObject;
  try {
    certificate = new X509Certificate(cert);
    privateKey = createPrivateKey(key);
  } catch {
    return unreadable;
  }
  return certificate.checkPrivateKey(privateKey);
}

/**
 * Warns when the certificate (the first of the chain) has expired or is not valid yet. It is served
 * all the same, as other FTP servers do: a renewal that failed must not stop the server for the
 * clients that do not check, while the clients that do check refuse it with no word to the operator.
 */
function warnOfDates(material: Material, logger: Logger, now = Date.now()): void {
  const dates = dateProblem(material.cert, now);
  if (dates === null) return;
  logger.warn(
    { event: "tls-cert-dates", cert: material.certPath, validFrom: dates.validFrom, validTo: dates.validTo },
    "tls.cert %s %s: clients that check certificates refuse it; renew it",
    material.certPath,
    dates.problem,
  );
}

/** The dates of a certificate (the first of the chain), or null for what OpenSSL does not take. */
function certDates(cert: Buffer): { validFrom: string; validTo: string } | null {
  try {
    const { validFrom, validTo } = new X509Certificate(cert);
    return { validFrom, validTo };
  } catch {
    return null;
  }
}

/** What is wrong with the dates of a certificate, or null. */
function dateProblem(cert: Buffer, now: number): { problem: string; validFrom: string; validTo: string } | null {
  const dates = certDates(cert);
  if (dates === null) return null; // loadMaterial checked it is a certificate OpenSSL takes
  const { validFrom, validTo } = dates;
  const problem = Date.parse(validTo) < now ? `expired on ${validTo}` : Date.parse(validFrom) > now ? `is not valid before ${validFrom}` : null;
  return problem === null ? null : { problem, validFrom, validTo };
}

/** For `config check`: the warning serve logs at start about the configured certificate's dates, as
 * one line, or null (TLS off, berth's own certificate, which serve renews, or dates that are fine).
 * Call after checkTlsFiles. */
export function certificateDatesWarning(config: Config, cwd = process.cwd(), now = Date.now()): string | null {
  if (config.tls.mode === "off") return null;
  const { certPath, selfSigned } = certificatePaths(config, cwd);
  if (selfSigned) return null;
  const dates = dateProblem(readFileSync(certPath), now);
  return dates === null ? null : `tls.cert ${certPath} ${dates.problem}: clients that check certificates refuse it; renew it`;
}

function errnoText(err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES" || code === "EPERM") return "permission denied";
  if (code === "EISDIR") return "is a directory";
  if (code === "EFTYPE") return "not a regular file";
  return code ?? "unreadable";
}

function ensureSelfSigned(certPath: string, keyPath: string, logger: Logger): void {
  let made = "TLS is on but no certificate is configured: made a self-signed one.";
  try {
    statSync(certPath);
    statSync(keyPath);
    // The pair is berth's own: once it has expired, a new one is made (clients that trusted the old
    // one are asked again either way).
    const expired = expiredOn(certPath);
    if (expired !== null) made = `The self-signed certificate expired on ${expired}: made a new one.`;
    // A pair whose writing was cut short (a full disk, a kill between the two files) would
    // otherwise stop every later start; being berth's own, it is made anew.
    else if (!selfSignedWhole(certPath, keyPath)) made = "The self-signed certificate and key were incomplete or did not match: made a new pair.";
    else {
      logger.warn({ event: "tls-selfsigned", cert: certPath }, "TLS uses a self-signed certificate; set tls.cert and tls.key to a real one");
      return;
    }
  } catch {
    // not there yet: make one
  }
  const { cert, key } = makeSelfSigned(["localhost", "127.0.0.1", "::1"]);
  makeDirsSync(dirname(certPath));
  // Both are written under temporary names first and then renamed into place, so a failed write
  // leaves the old pair (or none) as it was, not half a pair.
  const pair = [[keyPath, key, 0o600] as const, [certPath, cert, 0o644] as const];
  const temp = (path: string): string => `${path}.tmp-${process.pid}`;
  try {
    for (const [path, pem, mode] of pair) {
      try {
        rmSync(temp(path), { force: true });
        writeFileSync(temp(path), pem, { mode, flag: "wx" });
      } catch (err) {
        throw selfSignedUnwritable(path, err);
      }
    }
    for (const [path] of pair) {
      try {
        renameSync(temp(path), path);
      } catch (err) {
        throw selfSignedUnwritable(path, err);
      }
    }
  } finally {
    for (const [path] of pair) rmSync(temp(path), { force: true });
  }
  logger.warn(
    { event: "tls-selfsigned", cert: certPath },
    `${made} Set tls.cert and tls.key to a real certificate (e.g. Let's Encrypt's fullchain.pem and privkey.pem).`,
  );
}

/** Whether berth's own pair at `certPath` and `keyPath` loads: both PEM, the key the certificate's.
 * A file that cannot be read counts as whole: loading it then says why, where making a new pair
 * would hide it. */
function selfSignedWhole(certPath: string, keyPath: string): boolean {
  try {
    accessSync(certPath, fsConstants.R_OK);
    accessSync(keyPath, fsConstants.R_OK);
  } catch {
    return true;
  }
  try {
    loadMaterial(certPath, keyPath);
    return true;
  } catch (err) {
    if (err instanceof TlsConfigError) return false;
    throw err;
  }
}

/** The date the certificate in `certPath` expired on, or null while it is valid (or cannot be
 * read as one: loading it then says why). */
function expiredOn(certPath: string, now = Date.now()): string | null {
  let cert: Buffer;
  try {
    cert = readFileSync(certPath);
  } catch {
    return null;
  }
  const dates = certDates(cert);
  return dates !== null && Date.parse(dates.validTo) < now ? dates.validTo : null;
}
