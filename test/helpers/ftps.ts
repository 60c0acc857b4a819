/**
 * A raw FTPS client for tests: a control connection that can switch to TLS (AUTH TLS) or start in
 * TLS (implicit port), read RFC 959 replies, and open TLS data connections that present a chosen
 * session (or none), so tests can play clients that behave and clients that do not.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from "node:tls";

/** One reply: its code, the text of its last line, and every line. */
export interface FtpReply {
  readonly code: number;
  readonly text: string;
  readonly lines: readonly string[];
}

/** TLS options every test connection uses (self-signed test certificates). */
export const TEST_TLS: ConnectionOptions = { rejectUnauthorized: false, ALPNProtocols: ["ftp"] };

const WAIT_MS = 5000;

/** A TLS data connection opened by the test client. */
export interface DataConn {
  readonly socket: TLSSocket;
  /** The TCP connection under it (to end it without close_notify). */
  readonly raw: Socket;
  /** Resolves once the handshake is done, with whether the session was resumed. */
  readonly handshake: Promise<boolean>;
  /** The latest session the server issued on this connection (TLS 1.2: in the handshake). */
  session(): Buffer | null;
}

/** A control connection, plain or TLS. */
export class FtpsControl {
  private buffer = "";
  private readonly lines: string[] = [];
  private wake: (() => void) | null = null;
  private closed = false;
  /** The latest TLS session the server gave this control connection (tickets arrive after the handshake). */
  session: Buffer | null = null;

  private constructor(
    /** The control socket (a TLSSocket once secured). */
    public socket: Socket,
  ) {
    this.listen(socket);
  }

  /** Connects to the plain/explicit port and reads the 220 greeting. */
  static async plain(port: number): Promise<FtpsControl> {
    const socket = netConnect({ port, host: "127.0.0.1", noDelay: true });
    await once(socket, "connect");
    const c = new FtpsControl(socket);
    assert.equal((await c.reply()).code, 220);
    return c;
  }

  /** Connects to the implicit FTPS port (TLS from the first byte) and reads the 220 greeting. */
  static async implicit(port: number, tls: ConnectionOptions = {}): Promise<FtpsControl> {
    const socket = tlsConnect({ port, host: "127.0.0.1", ...TEST_TLS, ...tls });
    let early: Buffer | null = null;
    socket.on("session", (s: Buffer) => (early = s)); // TLS 1.2: issued during the handshake
    await once(socket, "secureConnect");
    const c = new FtpsControl(socket);
    c.session ??= early;
    assert.equal((await c.reply()).code, 220);
    return c;
  }

  /** A control connection over a socket already connected (and greeted). */
  static over(socket: Socket): FtpsControl {
    return new FtpsControl(socket);
  }

  /** Connects, sends AUTH TLS and upgrades the control connection. */
  static async explicit(port: number, tls: ConnectionOptions = {}): Promise<FtpsControl> {
    const c = await FtpsControl.plain(port);
    await c.upgrade(tls);
    return c;
  }

  /** AUTH TLS (234), then the TLS handshake on the control connection. */
  async upgrade(tls: ConnectionOptions = {}, verb = "AUTH TLS"): Promise<void> {
    await this.expect(verb, 234);
    this.socket.removeAllListeners("data");
    const secure = tlsConnect({ socket: this.socket, ...TEST_TLS, ...tls });
    secure.on("session", (s: Buffer) => (this.session = s)); // TLS 1.2: issued during the handshake
    await once(secure, "secureConnect");
    this.socket = secure;
    this.listen(secure);
  }

  /** Sends one line. */
  send(line: string): void {
    this.socket.write(line + "\r\n");
  }

  /** Reads the next complete reply. */
  async reply(ms = WAIT_MS): Promise<FtpReply> {
    const first = await this.line(ms);
    const m = /^(\d{3})([ -])/.exec(first);
    assert.ok(m, `not a reply: ${first}`);
    const lines = [first];
    let last = first;
    if (m[2] === "-") {
      while (!last.startsWith(`${m[1]} `)) {
        last = await this.line(ms);
        lines.push(last);
      }
    }
    return { code: Number(m[1]), text: last.slice(4), lines };
  }

  /** Sends a line and returns its reply. */
  async cmd(line: string, ms = WAIT_MS): Promise<FtpReply> {
    this.send(line);
    return this.reply(ms);
  }

  /** Sends a line and asserts the reply code. */
  async expect(line: string, code: number, ms = WAIT_MS): Promise<FtpReply> {
    const r = await this.cmd(line, ms);
    assert.equal(r.code, code, `${line.split(" ")[0]} → ${r.code} ${r.text}`);
    return r;
  }

  /** USER + PASS (230). */
  async login(user = "alice", pass = `${user}-pw`): Promise<void> {
    await this.expect(`USER ${user}`, 331);
    await this.expect(`PASS ${pass}`, 230);
  }

  /** PBSZ 0 + PROT P. */
  async protect(): Promise<void> {
    await this.expect("PBSZ 0", 200);
    await this.expect("PROT P", 200);
  }

  /** EPSV; the announced port. */
  async epsv(): Promise<number> {
    const r = await this.expect("EPSV", 229);
    const m = /\(\|\|\|(\d+)\|\)/.exec(r.text);
    assert.ok(m, r.text);
    return Number(m[1]);
  }

  /**
   * Opens a TLS data connection to a passive port and starts the handshake at once (as curl does).
   * `session` picks what it presents: the control's latest session (the default, what real clients
   * do), another Buffer, or null for a fresh handshake.
   */
  async tlsData(port: number, session: Buffer | null | undefined = this.session, tls: ConnectionOptions = {}): Promise<DataConn> {
    const raw = netConnect({ port, host: "127.0.0.1", noDelay: true });
    await once(raw, "connect");
    const socket = tlsConnect({ socket: raw, ...TEST_TLS, ...tls, ...(session ? { session } : {}) });
    socket.on("error", () => undefined);
    let latest: Buffer | null = null;
    socket.on("session", (s: Buffer) => (latest = s));
    const handshake = new Promise<boolean>((resolve, reject) => {
      socket.once("secureConnect", () => resolve(socket.isSessionReused()));
      socket.once("close", () => reject(new Error("data connection closed before its TLS handshake finished")));
    });
    handshake.catch(() => undefined);
    return { socket, raw, handshake, session: () => latest };
  }

  /** QUIT and close. */
  async quit(): Promise<void> {
    if (this.closed) return;
    this.send("QUIT");
    await this.reply().catch(() => undefined);
    this.socket.destroy();
  }

  /** Closes without QUIT. */
  destroy(): void {
    this.socket.destroy();
  }

  private listen(socket: Socket): void {
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      this.buffer += chunk;
      let nl: number;
      while ((nl = this.buffer.indexOf("\n")) !== -1) {
        this.lines.push(this.buffer.slice(0, nl).replace(/\r$/, ""));
        this.buffer = this.buffer.slice(nl + 1);
      }
      this.wake?.();
    });
    socket.on("session", (s: Buffer) => (this.session = s));
    socket.on("error", () => undefined);
    socket.on("close", () => {
      this.closed = true;
      this.wake?.();
    });
  }

  private async line(ms: number): Promise<string> {
    const end = Date.now() + ms;
    while (this.lines.length === 0) {
      if (this.closed) throw new Error("control connection closed");
      if (Date.now() > end) throw new Error(`no reply within ${ms} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, end - Date.now());
        this.wake = () => {
          clearTimeout(timer);
          this.wake = null;
          resolve();
        };
      });
    }
    return this.lines.shift() as string;
  }
}

/** Reads a data socket to its end. */
export async function readToEnd(s: Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  s.on("data", (c: Buffer) => parts.push(c));
  await new Promise<void>((resolve) => {
    s.once("end", () => resolve());
    s.once("close", () => resolve());
  });
  return Buffer.concat(parts);
}
