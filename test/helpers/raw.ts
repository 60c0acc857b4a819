/**
 * A small raw FTP control-connection client for tests: send any line (or bytes), read full RFC 959
 * replies (multi-line form included), and open data connections by PASV, EPSV, PORT or EPRT.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { connect, createServer, isIP, type Server, type Socket } from "node:net";

/** One complete reply: its code, every line as sent (CRLF removed) and the text of the last line. */
export interface Reply {
  readonly code: number;
  readonly lines: readonly string[];
  /** The text after "ddd " on the last line. */
  readonly message: string;
  /** True when it came in the multi-line form. */
  readonly multiline: boolean;
}

/** A data connection the client is waiting for after PORT/EPRT. */
export interface ActiveWait {
  /** Resolves with the server's connection to our listener. */
  readonly accepted: Promise<Socket>;
  /** The local listener (closed by the caller through close()). */
  readonly server: Server;
  /** Closes the listener. */
  close(): void;
}

const DEFAULT_WAIT_MS = 5000;

/** A raw control connection. */
export class RawClient {
  private buffer = Buffer.alloc(0);
  private readonly lines: string[] = [];
  private waiters: (() => void)[] = [];
  private ended = false;
  /** The 220 greeting (set by connect()). */
  greeting: Reply | null = null;

  private constructor(
    /** The control socket. */
    readonly socket: Socket,
  ) {
    socket.on("data", (chunk: Buffer) => this.onData(chunk));
    socket.on("error", () => undefined);
    socket.on("close", () => {
      this.ended = true;
      this.wake();
    });
  }

  /** Connects, reads the greeting and checks it is a 220. */
  static async connect(port: number, host = "127.0.0.1", localAddress?: string): Promise<RawClient> {
    const client = await RawClient.open(port, host, localAddress);
    client.greeting = await client.reply();
    assert.equal(client.greeting.code, 220, client.greeting.lines.join("\n"));
    return client;
  }

  /** A client over a socket already connected (a TLS socket after AUTH TLS, or an implicit one). */
  static over(socket: Socket): RawClient {
    return new RawClient(socket);
  }

  /** Connects without reading anything. */
  static async open(port: number, host = "127.0.0.1", localAddress?: string): Promise<RawClient> {
    const socket = connect({ port, host, noDelay: true, ...(localAddress ? { localAddress } : {}) });
    await once(socket, "connect");
    return new RawClient(socket);
  }

  /** Sends one command line (CRLF added). */
  send(line: string): void {
    this.socket.write(line + "\r\n");
  }

  /** Sends bytes exactly as given. */
  sendRaw(data: Buffer | string): void {
    this.socket.write(data);
  }

  /** Reads the next complete reply; rejects after `ms` or when the connection closes first. */
  async reply(ms = DEFAULT_WAIT_MS): Promise<Reply> {
    const first = await this.line(ms);
    const m = /^(\d{3})([ -])/.exec(first);
    assert.ok(m, `not a reply line: ${JSON.stringify(first)}`);
    const code = Number(m[1]);
    const lines = [first];
    if (m[2] === "-") {
      for (;;) {
        const next = await this.line(ms);
        lines.push(next);
        if (next.startsWith(`${code} `)) break;
      }
    }
    const last = lines[lines.length - 1] ?? "";
    return { code, lines, message: last.slice(4), multiline: m[2] === "-" };
  }

  /** Sends a line and reads its reply. */
  async cmd(line: string, ms = DEFAULT_WAIT_MS): Promise<Reply> {
    this.send(line);
    return this.reply(ms);
  }

  /** Sends a line and asserts the reply code. */
  async expect(line: string, code: number, ms = DEFAULT_WAIT_MS): Promise<Reply> {
    const r = await this.cmd(line, ms);
    assert.equal(r.code, code, `${line.split(" ")[0]} → ${r.lines.join(" | ")}`);
    return r;
  }

  /** Reads the next reply and asserts its code. */
  async expectReply(code: number, ms = DEFAULT_WAIT_MS): Promise<Reply> {
    const r = await this.reply(ms);
    assert.equal(r.code, code, r.lines.join(" | "));
    return r;
  }

  /** USER + PASS, expecting 230. */
  async login(user = "alice", pass = `${user}-pw`): Promise<void> {
    await this.expect(`USER ${user}`, 331);
    await this.expect(`PASS ${pass}`, 230);
  }

  /** PASV, then RETR of `path` with the data socket paused (nothing read yet), once the 150 has
   * come: for tests of what happens during a download the client does not read. */
  async pausedRetr(path: string): Promise<Socket> {
    const data = await this.pasv();
    data.pause();
    this.send(`RETR ${path}`);
    await this.expectReply(150);
    return data;
  }

  /** PASV, then connects to the announced address; returns the connected data socket. */
  async pasv(): Promise<Socket> {
    const r = await this.expect("PASV", 227);
    const m = /\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)/.exec(r.message);
    assert.ok(m, r.message);
    const host = m.slice(1, 5).join(".");
    return dataConnect(Number(m[5]) * 256 + Number(m[6]), host);
  }

  /** EPSV, then connects to the announced port on the control connection's host. */
  async epsv(): Promise<Socket> {
    const port = await this.epsvPort();
    return dataConnect(port, this.socket.remoteAddress ?? "127.0.0.1");
  }

  /** EPSV; returns the announced port without connecting. */
  async epsvPort(): Promise<number> {
    const r = await this.expect("EPSV", 229);
    const m = /\(\|\|\|(\d+)\|\)/.exec(r.message);
    assert.ok(m, r.message);
    return Number(m[1]);
  }

  /** Listens on our control connection's address and sends PORT (IPv4) for it. */
  async port(): Promise<ActiveWait> {
    const wait = await listenLocal(this.socket.localAddress ?? "127.0.0.1");
    const host = (this.socket.localAddress ?? "").replace(/^::ffff:/, "").split(".").join(",");
    const p = listenPort(wait.server);
    await this.expect(`PORT ${host},${p >> 8},${p & 0xff}`, 200);
    return wait;
  }

  /** Listens on our control connection's address and sends EPRT for it. */
  async eprt(): Promise<ActiveWait> {
    const local = this.socket.localAddress ?? "127.0.0.1";
    const wait = await listenLocal(local);
    const host = local.replace(/^::ffff:/, "");
    await this.expect(`EPRT |${isIP(host) === 6 ? 2 : 1}|${host}|${listenPort(wait.server)}|`, 200);
    return wait;
  }

  /** Resolves once the server has closed the connection (rejects after `ms`). */
  async closed(ms = DEFAULT_WAIT_MS): Promise<void> {
    const end = Date.now() + ms;
    while (!this.ended) {
      if (Date.now() > end) throw new Error("connection still open");
      await this.wait(end - Date.now());
    }
  }

  /** True once the server closed the connection. */
  get isClosed(): boolean {
    return this.ended;
  }

  /** Closes our side and waits for the socket to go away. */
  async close(): Promise<void> {
    if (this.socket.destroyed) return;
    const gone = once(this.socket, "close");
    this.socket.destroy();
    await gone;
  }

  private onData(chunk: Buffer): void {
    this.buffer = Buffer.concat([this.buffer, chunk]);
    let nl: number;
    while ((nl = this.buffer.indexOf(0x0a)) !== -1) {
      const raw = this.buffer.subarray(0, nl);
      this.buffer = this.buffer.subarray(nl + 1);
      this.lines.push(raw.toString("utf8").replace(/\r$/, ""));
    }
    this.wake();
  }

  private async line(ms: number): Promise<string> {
    const end = Date.now() + ms;
    while (this.lines.length === 0) {
      if (this.ended) throw new Error("connection closed while waiting for a reply");
      if (Date.now() >= end) throw new Error(`no reply within ${ms} ms`);
      await this.wait(end - Date.now());
    }
    return this.lines.shift() as string;
  }

  private wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.waiters.push(done);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const fn of w) fn();
  }
}

/** Connects a data socket (errors swallowed after connect so a reset never crashes the test). */
export async function dataConnect(port: number, host = "127.0.0.1", localAddress?: string): Promise<Socket> {
  const s = connect({ port, host, noDelay: true, ...(localAddress ? { localAddress } : {}) });
  await once(s, "connect");
  s.on("error", () => undefined);
  return s;
}

/** Reads a socket to its end. */
export async function readAll(s: Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on("data", (c: Buffer) => parts.push(c));
  await new Promise<void>((resolve) => {
    s.once("close", () => resolve());
    s.once("end", () => resolve());
  });
  return Buffer.concat(parts);
}

/** A download or listing run over a connection on which the client first sent stray bytes. */
export interface StrayBytesRun {
  /** The data connection, still open after the 226 (the caller ends it). */
  readonly data: Socket;
  /** What came on it. */
  readonly body: Buffer;
  /** The connection's latest error code so far (null: none). */
  failed(): string | null;
}

/**
 * Runs `command` (a download or a listing) on a new EPSV connection over which the client first
 * sent bytes the server never reads (closing over them would reset the connection); returns once
 * the 226 came, with the connection left open. `allowHalfOpen`: our side stays open after the
 * server's FIN (the server's linger then waits for our end).
 */
export async function strayBytesRun(raw: RawClient, command: string, allowHalfOpen = false): Promise<StrayBytesRun> {
  const data = connect({ port: await raw.epsvPort(), host: "127.0.0.1", noDelay: true, allowHalfOpen });
  await once(data, "connect");
  let failed: string | null = null;
  data.on("error", (e: NodeJS.ErrnoException) => (failed = e.code ?? "error"));
  await new Promise((resolve) => data.write("stray bytes", resolve));
  await new Promise((resolve) => setTimeout(resolve, 20));
  const got = readAll(data);
  raw.send(command);
  await raw.expectReply(150);
  const body = await got;
  await raw.expectReply(226, 5000);
  return { data, body, failed: () => failed };
}

/**
 * strayBytesRun, then the data connection's error code after the 226 (null: none), settled
 * `afterMs` later, in which a late reset would show; the connection is destroyed after.
 */
export async function afterStrayBytes(raw: RawClient, command: string, afterMs = 0): Promise<{ body: Buffer; failed: string | null }> {
  const run = await strayBytesRun(raw, command);
  if (afterMs > 0) await new Promise((resolve) => setTimeout(resolve, afterMs));
  run.data.destroy();
  return { body: run.body, failed: run.failed() };
}

/** Writes `data` and half-closes (the end of an upload), waiting until the socket is closed. */
export async function writeAll(s: Socket, data: Buffer | string): Promise<void> {
  const closed = once(s, "close");
  s.end(data);
  s.resume();
  await closed;
}

/** RETR `name` (after REST `rest` when given) on a new passive connection, reading after the 150:
 * the bytes that came and the final reply. */
export async function retrieve(raw: RawClient, name: string, rest?: number): Promise<{ data: Buffer; reply: Reply }> {
  if (rest !== undefined) await raw.expect(`REST ${rest}`, 350);
  const sock = await raw.pasv();
  raw.send(`RETR ${name}`);
  await raw.expectReply(150);
  const data = await readAll(sock);
  return { data, reply: await raw.reply() };
}

/** RETR `name` as retrieve() does, asserting its 226; the bytes as text. */
export async function retrieveText(raw: RawClient, name: string, rest?: number): Promise<string> {
  const { data, reply } = await retrieve(raw, name, rest);
  assert.equal(reply.code, 226, reply.message);
  return data.toString();
}

/** `line` (STOR, APPE, STOU…) on a new passive connection: after a 150, `data` is sent and the
 * final reply's code is returned; a refusal's code (550, 553…) is returned as it comes. */
export async function storeCode(raw: RawClient, line: string, data: Buffer | string, ms = 10_000): Promise<number> {
  return (await storeReply(raw, line, data, ms)).code;
}

/** As storeCode, but the whole final reply (or the refusal). */
export async function storeReply(raw: RawClient, line: string, data: Buffer | string, ms = 10_000): Promise<Reply> {
  const sock = await raw.pasv();
  try {
    raw.send(line);
    const first = await raw.reply();
    if (first.code !== 150) return first;
    // Not once(): its promise rejects on the socket's error (a reset after a 552), and the reply
    // is what is asked about.
    const closed = new Promise<void>((resolve) => sock.once("close", () => resolve()));
    sock.end(data);
    sock.resume();
    const last = await raw.reply(ms);
    await closed;
    return last;
  } finally {
    sock.destroy();
  }
}

/** `line` (LIST, NLST, MLSD…) on a new passive connection: its 150, everything the data connection
 * carries as text, then its 226. */
export async function listedText(raw: RawClient, line: string): Promise<string> {
  const data = await raw.pasv();
  raw.send(line);
  await raw.expectReply(150);
  const text = (await readAll(data)).toString();
  await raw.expectReply(226);
  return text;
}

/** Listens on `host` for the server's active data connection (the caller sends PORT/EPRT). */
export async function listenLocal(host: string): Promise<ActiveWait> {
  const server = createServer();
  const accepted = new Promise<Socket>((resolve) => {
    server.once("connection", (s) => {
      s.on("error", () => undefined);
      resolve(s);
    });
  });
  server.listen(0, host);
  await once(server, "listening");
  return { accepted, server, close: () => server.close() };
}

function listenPort(server: Server): number {
  const a = server.address();
  assert.ok(a !== null && typeof a === "object");
  return a.port;
}
