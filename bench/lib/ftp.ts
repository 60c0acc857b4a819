/**
 * A lean FTP/FTPS client for load generation: raw sockets, no parsing beyond reply codes, downloads
 * counted into one reused buffer, uploads written from one reused buffer. Every wait has a timeout.
 */
import { once } from "node:events";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { SOCKET_DEFAULTS } from "../../src/data/accept.ts";
import { readIntoBuffer, userBufferReads } from "../../src/data/userbuffer.ts";

/** One (possibly multi-line) reply. */
export interface Reply {
  readonly code: number;
  readonly text: string;
}

/** A reply other than the one expected, or a broken connection. */
export class FtpBenchError extends Error {
  constructor(
    message: string,
    readonly code: number | null = null,
  ) {
    super(message);
    this.name = "FtpBenchError";
  }
}

/** How to reach a server and how it wants TLS on data connections. */
export interface ClientOptions {
  readonly host: string;
  readonly port: number;
  /** Longest wait for any one reply or data event, in ms. */
  readonly timeoutMs: number;
  /** Start the data-connection TLS handshake only after the 150 reply (lftp/ftplib style). */
  readonly tlsDataAfter150?: boolean | undefined;
  /** Longest time the bytes of one transfer may take, in ms; default 20 × timeoutMs. */
  readonly transferTimeoutMs?: number | undefined;
}

/** Shared sink for downloads: data, plain or decrypted, is read straight into it, never allocated
 * per read. */
const SINK = Buffer.allocUnsafe(1 << 20);

/** Rejects after `ms` unless `p` settles first; `onTimeout` cleans up. */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string, onTimeout?: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      onTimeout?.();
      reject(new FtpBenchError(`timeout: ${what}`));
    }, ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (e: unknown) => {
        clearTimeout(timer);
        reject(e instanceof Error ? e : new Error(String(e)));
      },
    );
  });
}

interface Waiter {
  resolve(r: Reply): void;
  reject(e: Error): void;
}

/** One control connection. */
export class FtpClient {
  private socket: Socket;
  private tlsSession: Buffer | undefined;
  private protect = false;
  private pending = "";
  private multi: { code: string; lines: string[] } | null = null;
  private readonly replies: Reply[] = [];
  private readonly waiters: Waiter[] = [];
  private failure: Error | null = null;
  private readonly onData = (chunk: Buffer): void => this.receive(chunk);

  private constructor(
    socket: Socket,
    readonly opts: ClientOptions,
  ) {
    this.socket = socket;
    this.watch(socket);
  }

  /** Connects and reads the greeting (220). */
  static async connect(opts: ClientOptions): Promise<FtpClient> {
    // SOCKET_DEFAULTS: the load generator's sockets are made as cheaply as berth's (src/data/accept.ts).
    const socket = netConnect({ host: opts.host, port: opts.port, noDelay: true, ...SOCKET_DEFAULTS });
    const client = new FtpClient(socket, opts);
    try {
      await withTimeout(once(socket, "connect"), opts.timeoutMs, "connect", () => socket.destroy());
      await client.expect(await client.read(), [220], "greeting");
    } catch (err) {
      socket.destroy();
      throw err;
    }
    return client;
  }

  /** Sends a command and resolves with its reply. */
  async send(line: string): Promise<Reply> {
    this.write(line);
    return this.read();
  }

  /** Sends a command and checks the reply code. */
  async cmd(line: string, codes: readonly number[]): Promise<Reply> {
    return this.expect(await this.send(line), codes, line.startsWith("PASS ") ? "PASS" : line);
  }

  /** USER + PASS. */
  async login(user: string, pass: string): Promise<void> {
    const r = await this.cmd(`USER ${user}`, [230, 331]);
    if (r.code === 331) await this.cmd(`PASS ${pass}`, [230]);
  }

  /** AUTH TLS, then PBSZ 0 and PROT P: control and data connections are protected. */
  async secure(): Promise<void> {
    await this.cmd("AUTH TLS", [234]);
    const raw = this.socket;
    raw.removeListener("data", this.onData);
    const t = tlsConnect({ socket: raw, rejectUnauthorized: false });
    t.on("session", (s: Buffer) => (this.tlsSession = s));
    this.socket = t;
    this.watch(t);
    await withTimeout(once(t, "secureConnect"), this.opts.timeoutMs, "TLS handshake", () => t.destroy());
    await this.cmd("PBSZ 0", [200]);
    await this.cmd("PROT P", [200]);
    this.protect = true;
    // TLS 1.3 tickets come after the handshake; data connections resume with one.
    for (let i = 0; i < 50 && this.tlsSession === undefined; i++) await new Promise((r) => setTimeout(r, 10));
  }

  /** Downloads `path` and returns its size, counting bytes without keeping them. */
  async retr(path: string): Promise<number> {
    return this.transfer(`RETR ${path}`, (data) => this.drain(data, null));
  }

  /** Uploads `size` bytes to `path`, written from `chunk` over and over. */
  async stor(path: string, size: number, chunk: Buffer): Promise<number> {
    return this.transfer(`STOR ${path}`, (data) => this.fill(data, size, chunk));
  }

  /** Runs a listing command (LIST, MLSD, NLST) and returns its size and its number of lines. */
  async listing(command: string): Promise<{ bytes: number; lines: number }> {
    const counter = { lines: 0 };
    const bytes = await this.transfer(command, (data) => this.drain(data, counter), counter);
    return { bytes, lines: counter.lines };
  }

  /** QUIT, then closes. */
  async quit(): Promise<void> {
    try {
      await withTimeout(this.send("QUIT"), Math.min(this.opts.timeoutMs, 5000), "QUIT");
    } finally {
      this.close();
    }
  }

  /** Closes the connection at once. */
  close(): void {
    this.socket.destroy();
  }

  /** PASV, connect, command, (TLS), move the bytes, final reply. */
  private async transfer(
    command: string,
    move: (data: Socket) => Promise<number>,
    counter: { lines: number } | null = null,
  ): Promise<number> {
    const pasv = await this.cmd("PASV", [227]);
    const m = /(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)/.exec(pasv.text);
    if (!m) throw new FtpBenchError(`bad PASV reply: ${pasv.text}`);
    const port = Number(m[5]) * 256 + Number(m[6]);
    this.plainBytes = 0;
    this.plainLines = counter;
    const raw = this.protect
      ? netConnect({ host: this.opts.host, port, noDelay: true, ...SOCKET_DEFAULTS })
      : netConnect({
          host: this.opts.host,
          port,
          noDelay: true,
          ...SOCKET_DEFAULTS,
          onread: { buffer: SINK, callback: (n: number) => this.countPlain(n) },
        });
    raw.on("error", () => undefined);
    let data: Socket = raw;
    try {
      await withTimeout(once(raw, "connect"), this.opts.timeoutMs, "data connect");
      let secured: Promise<unknown> | null = null;
      const early = this.protect && this.opts.tlsDataAfter150 !== true;
      if (early) [data, secured] = this.wrapData(raw);
      await this.expect(await this.send(command), [125, 150], command);
      if (this.protect && !early) [data, secured] = this.wrapData(raw);
      if (secured) await withTimeout(secured, this.opts.timeoutMs, "data TLS handshake");
      const limit = this.opts.transferTimeoutMs ?? this.opts.timeoutMs * 20;
      const bytes = await withTimeout(move(data), limit, `${command} data`);
      await this.expect(await this.read(), [226, 250], `${command} completion`);
      return bytes;
    } finally {
      data.destroy();
      raw.destroy();
    }
  }

  /** Starts TLS on a data connection, resuming the control connection's session. Decrypted data
   * is read into the sink, as plain data is (`onread` is not offered over an existing socket). */
  private wrapData(raw: Socket): [TLSSocket, Promise<unknown>] {
    const t = tlsConnect({ socket: raw, session: this.tlsSession, rejectUnauthorized: false });
    t.on("error", () => undefined);
    this.tlsIntoSink = userBufferReads(t);
    if (this.tlsIntoSink) readIntoBuffer(t, SINK, (n) => this.countPlain(n));
    const ready = once(t, "secureConnect");
    ready.catch(() => undefined); // awaited later; a failed handshake must not go unhandled meanwhile
    return [t, ready];
  }

  /** Bytes counted by the sink's read callback during the current transfer. */
  private plainBytes = 0;
  /** Whether the current TLS data connection reads into the sink. */
  private tlsIntoSink = false;
  private plainLines: { lines: number } | null = null;

  private countPlain(n: number): boolean {
    this.plainBytes += n;
    if (this.plainLines) this.plainLines.lines += countNewlines(SINK, n);
    return true;
  }

  /** Reads until the server ends the data connection; counts bytes (and lines for listings). */
  private drain(data: Socket, counter: { lines: number } | null): Promise<number> {
    return new Promise((resolve, reject) => {
      // Where the sink cannot be used (another Node), a TLS socket's data comes as events.
      let bytes = 0;
      const events = "encrypted" in data && !this.tlsIntoSink;
      if (events) {
        data.on("data", (chunk: Buffer) => {
          bytes += chunk.length;
          if (counter) counter.lines += countNewlines(chunk, chunk.length);
        });
      } else data.resume();
      const done = (): void => resolve(events ? bytes : this.plainBytes);
      if (!events && (data.readableEnded || data.destroyed)) {
        done();
        return;
      }
      data.once("end", done);
      data.once("error", (e) => reject(e));
      // A data connection closed without close_notify or FIN: what came is what we count.
      data.once("close", done);
    });
  }

  /** Writes `size` bytes from `chunk` with backpressure, then ends the data connection. */
  private async fill(data: Socket, size: number, chunk: Buffer): Promise<number> {
    let sent = 0;
    let broken: Error | null = null;
    data.once("error", (e) => (broken = e));
    while (sent < size) {
      if (broken !== null) throw broken;
      const n = Math.min(chunk.length, size - sent);
      sent += n;
      if (!data.write(n === chunk.length ? chunk : chunk.subarray(0, n))) {
        await either(data, "drain", "close");
        if (data.destroyed) throw new FtpBenchError("data connection closed during upload");
      }
    }
    data.end();
    await either(data, "finish", "close");
    return sent;
  }

  private watch(socket: Socket): void {
    socket.on("data", this.onData);
    socket.on("error", (e) => this.fail(e));
    socket.on("close", () => this.fail(new FtpBenchError("control connection closed")));
  }

  private fail(err: Error): void {
    this.failure ??= err;
    for (const w of this.waiters.splice(0)) w.reject(err);
  }

  private write(line: string): void {
    if (this.failure) return;
    this.socket.write(`${line}\r\n`);
  }

  /** Resolves with the next reply. */
  read(): Promise<Reply> {
    const ready = this.replies.shift();
    if (ready) return Promise.resolve(ready);
    if (this.failure) return Promise.reject(this.failure);
    return withTimeout(
      new Promise<Reply>((resolve, reject) => this.waiters.push({ resolve, reject })),
      this.opts.timeoutMs,
      "reply",
      () => this.fail(new FtpBenchError("reply timeout")),
    );
  }

  private expect(r: Reply, codes: readonly number[], what: string): Reply {
    if (!codes.includes(r.code)) throw new FtpBenchError(`${what}: ${r.code} ${r.text.slice(0, 120)}`, r.code);
    return r;
  }

  private receive(chunk: Buffer): void {
    this.pending += chunk.toString("latin1");
    let nl: number;
    while ((nl = this.pending.indexOf("\n")) >= 0) {
      const line = this.pending.slice(0, nl).replace(/\r$/, "");
      this.pending = this.pending.slice(nl + 1);
      this.line(line);
    }
    if (this.pending.length > 65536) this.fail(new FtpBenchError("reply line too long"));
  }

  private line(line: string): void {
    const code = line.slice(0, 3);
    if (this.multi) {
      this.multi.lines.push(line);
      if (code === this.multi.code && line[3] !== "-") this.emit(Number(code), this.multi.lines.join("\n"));
      return;
    }
    if (!/^\d{3}/.test(code)) return;
    if (line[3] === "-") this.multi = { code, lines: [line] };
    else this.emit(Number(code), line.slice(4));
  }

  private emit(code: number, text: string): void {
    this.multi = null;
    const reply = { code, text };
    const w = this.waiters.shift();
    if (w) w.resolve(reply);
    else this.replies.push(reply);
  }
}

/** Resolves on the first of two events and removes both listeners. */
function either(emitter: Socket, a: string, b: string): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      emitter.removeListener(a, done);
      emitter.removeListener(b, done);
      resolve();
    };
    emitter.on(a, done);
    emitter.on(b, done);
  });
}

function countNewlines(buf: Buffer, n: number): number {
  let count = 0;
  let i = buf.indexOf(10);
  while (i >= 0 && i < n) {
    count++;
    i = buf.indexOf(10, i + 1);
  }
  return count;
}
