/**
 * TLS for the control and data connections (RFC 4217). Each control connection gets its own
 * SecureContext with its own session-ticket keys, and its data connections use that same context:
 * a data connection can resume only its own control connection's session, which is what
 * `tls.requireSessionReuse` checks (a foreign or fresh session is refused). Certificates are re-read
 * when their files change, without touching running sessions.
 */
import { randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { dirname, resolve } from "node:path";
import type { Socket } from "node:net";
import { createSecureContext, TLSSocket, type SecureContext } from "node:tls";
import type { Logger } from "pino";
import type { Config } from "../config/schema.ts";
import { FtpError } from "../protocol/errors.ts";
import { makeSelfSigned } from "./selfsigned.ts";

/** Modern suites only (TLS 1.2 with forward secrecy and AEAD; TLS 1.3 suites are all fine). */
const CIPHERS = [
  "TLS_AES_256_GCM_SHA384",
  "TLS_CHACHA20_POLY1305_SHA256",
  "TLS_AES_128_GCM_SHA256",
  "ECDHE-ECDSA-AES256-GCM-SHA384",
  "ECDHE-RSA-AES256-GCM-SHA384",
  "ECDHE-ECDSA-CHACHA20-POLY1305",
  "ECDHE-RSA-CHACHA20-POLY1305",
  "ECDHE-ECDSA-AES128-GCM-SHA256",
  "ECDHE-RSA-AES128-GCM-SHA256",
].join(":");

/** How long a control session's TLS session stays resumable by its data connections (seconds). */
const SESSION_LIFETIME = 86_400;

/** What a session needs of the TLS provider (kept small for tests). */
export interface TlsSessionState {
  readonly protectData: boolean;
  tlsContext: SecureContext | null;
  readonly log: Logger;
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

/** Config error naming a key, raised when the certificate cannot be loaded. */
export class TlsConfigError extends Error {
  constructor(
    readonly key: string,
    message: string,
  ) {
    super(message);
    this.name = "TlsConfigError";
  }
}

/** Loads certificates and makes TLS sockets for control and data connections. */
export class TlsProvider {
  private material: Material;
  private lastCheck = 0;

  private constructor(
    material: Material,
    private readonly logger: Logger,
  ) {
    this.material = material;
  }

  /** Reads (or, with no cert configured, creates) the certificate; TlsConfigError on failure. */
  static create(config: Config, logger: Logger, cwd = process.cwd()): TlsProvider {
    const tls = config.tls;
    let certPath = tls.cert ? resolve(cwd, tls.cert) : "";
    let keyPath = tls.key ? resolve(cwd, tls.key) : "";
    if (!certPath && !keyPath) {
      const dir = resolve(cwd, dirname(config.users.file));
      certPath = resolve(dir, "selfsigned-cert.pem");
      keyPath = resolve(dir, "selfsigned-key.pem");
      ensureSelfSigned(certPath, keyPath, logger);
    } else if (!certPath || !keyPath) {
      const missing = certPath ? "tls.key" : "tls.cert";
      throw new TlsConfigError(missing, `config: ${missing} must be set when the other one is`);
    }
    return new TlsProvider(loadMaterial(certPath, keyPath), logger);
  }

  /** A fresh context for one control connection: its own ticket keys, shared with its data sockets. */
  sessionContext(): SecureContext {
    this.maybeReload();
    const ctx = createSecureContext({
      cert: this.material.cert,
      key: this.material.key,
      minVersion: "TLSv1.2",
      ciphers: CIPHERS,
      honorCipherOrder: true,
      sessionTimeout: SESSION_LIFETIME,
      ticketKeys: randomBytes(48),
    });
    return ctx;
  }

  /** Server-side TLS over an accepted TCP socket (control or data). */
  wrap(socket: Socket, context: SecureContext): TLSSocket {
    const t = new TLSSocket(socket, {
      isServer: true,
      secureContext: context,
      ALPNProtocols: ["ftp"],
      requestCert: false,
    });
    t.on("error", () => undefined);
    return t;
  }

  /**
   * For PROT P: wraps the data socket at once (curl starts its handshake as soon as it connects),
   * sends 150 without waiting for the handshake (lftp and ftplib start it only after 150), then
   * waits for the handshake and checks the session was resumed from this control connection.
   */
  async secureData(s: TlsSessionState, socket: Socket, send150: () => void): Promise<Socket> {
    if (!s.protectData || !s.tlsContext) {
      send150();
      return socket;
    }
    const t = this.wrap(socket, s.tlsContext);
    send150();
    await handshake(t, s.ctx.config.limits.dataTimeout * 1000);
    if (s.ctx.config.tls.requireSessionReuse && !t.isSessionReused()) {
      t.destroy();
      s.log.warn({ event: "tls-data-refused" }, "data connection did not resume the control TLS session");
      throw new FtpError(522, "Data connection refused: it must resume the control connection's TLS session");
    }
    return t;
  }

  /** Re-reads the certificate files when they changed; keeps the old ones if the new are bad. */
  maybeReload(force = false): void {
    const now = Date.now();
    if (!force && now - this.lastCheck < 5000) return;
    this.lastCheck = now;
    const { certPath, keyPath } = this.material;
    try {
      if (stampOf(certPath, keyPath) === this.material.stamp) return;
      const next = loadMaterial(certPath, keyPath);
      this.material = next;
      this.logger.info({ event: "tls-reload", cert: certPath }, "TLS certificate reloaded");
    } catch (err) {
      this.logger.warn({ event: "tls-reload", error: (err as Error).message }, "TLS certificate reload failed; keeping the old one");
    }
  }
}

function handshake(t: TLSSocket, timeoutMs: number): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const timer = setTimeout(() => fail("timed out"), timeoutMs);
    const fail = (why: string): void => {
      clearTimeout(timer);
      t.destroy();
      reject(new FtpError(425, `Can't open data connection: TLS handshake ${why}`));
    };
    t.once("secure", () => {
      clearTimeout(timer);
      resolvePromise();
    });
    t.once("error", () => fail("failed"));
    t.once("close", () => fail("interrupted"));
  });
}

function stampOf(certPath: string, keyPath: string): string {
  const a = statSync(certPath);
  const b = statSync(keyPath);
  return `${a.mtimeMs}:${a.size}:${b.mtimeMs}:${b.size}`;
}

function loadMaterial(certPath: string, keyPath: string): Material {
  let cert: Buffer;
  let key: Buffer;
  let stamp: string;
  try {
    stamp = stampOf(certPath, keyPath);
    cert = readFileSync(certPath);
  } catch {
    throw new TlsConfigError("tls.cert", `config: tls.cert cannot be read (${certPath})`);
  }
  try {
    key = readFileSync(keyPath);
  } catch {
    throw new TlsConfigError("tls.key", `config: tls.key cannot be read (${keyPath})`);
  }
  try {
    createSecureContext({ cert, key });
  } catch {
    throw new TlsConfigError("tls.cert", "config: tls.cert and tls.key are not a valid PEM certificate and matching key");
  }
  return { cert, key, certPath, keyPath, stamp };
}

function ensureSelfSigned(certPath: string, keyPath: string, logger: Logger): void {
  try {
    statSync(certPath);
    statSync(keyPath);
    return;
  } catch {
    // not there yet: make one
  }
  const { cert, key } = makeSelfSigned(["localhost", "127.0.0.1", "::1"]);
  mkdirSync(dirname(certPath), { recursive: true });
  writeFileSync(keyPath, key, { mode: 0o600 });
  writeFileSync(certPath, cert, { mode: 0o644 });
  logger.warn(
    { event: "tls-selfsigned", cert: certPath },
    "TLS is on but no certificate is configured: made a self-signed one. Set tls.cert and tls.key to a real certificate (e.g. Let's Encrypt's fullchain.pem and privkey.pem).",
  );
}
