/**
 * FTPS (RFC 4217): explicit and implicit TLS with basic-ftp, the AUTH/PBSZ/PROT sequencing and the
 * tls.require policy on a raw control connection, data connections bound to their control
 * connection's TLS session, uploads cut without close_notify, ABOR under TLS, and certificates
 * (self-signed on first start, clear errors, reload without dropping sessions).
 */
import assert from "node:assert/strict";
import { constants as cryptoConstants, createPrivateKey, generateKeyPairSync, X509Certificate } from "node:crypto";
import { once } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Duplex, Readable, Writable } from "node:stream";
import { connect as netConnect, createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { connect as tlsConnect, TLSSocket, type ConnectionOptions } from "node:tls";
import { after, before, describe, it } from "node:test";
import { Client } from "basic-ftp";
import pino from "pino";
import { ConfigError } from "../src/config/load.ts";
import { DEFAULTS } from "../src/config/schema.ts";
import { makeSelfSigned } from "../src/data/selfsigned.ts";
import { quickAckAfterFlight, secretOf, TlsConfigError, TlsProvider, type TlsBinding } from "../src/data/tls.ts";
import { quickAckBinding } from "../src/native.ts";
import { FtpsControl, readToEnd, TEST_TLS, type DataConn } from "./helpers/ftps.ts";
import { describeRun, exec, which } from "./helpers/exec.ts";
import { RawClient } from "./helpers/raw.ts";
import { makeConfig, startTestServer, waitFor, type ConfigPatch, type TestServer } from "./helpers/server.ts";

const BOTH: ConfigPatch = { tls: { mode: "both", implicitPort: 0 } };
const silent = pino({ level: "silent" });
/** An application-data record no TLS session decrypts (OpenSSL: bad record mac), put on a data
 * or control connection's TCP underneath its TLS. */
const CORRUPT_RECORD = Buffer.concat([Buffer.from([0x17, 0x03, 0x03, 0x00, 0x40]), Buffer.alloc(0x40, 0x5a)]);
/** This file's own temp directory (certificates, self-signed pairs), removed when it is done. */
const scratch = mkdtempSync(join(tmpdir(), "berth-tls-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

function refusals(t: TestServer): number {
  return t.logs.filter((l) => l.event === "tls-data-refused").length;
}

/** AUTH TLS on a new control connection, then a handshake with `opts`: "connected with …" or
 * the handshake's error. It waits for either, so a server that accepted what it should refuse
 * fails the caller's assertion at once instead of hanging it. */
async function handshakeAfterAuth(port: number, opts: ConnectionOptions): Promise<string> {
  const c = await FtpsControl.plain(port);
  await c.expect("AUTH TLS", 234);
  c.socket.removeAllListeners("data");
  const s = tlsConnect({ socket: c.socket, ...TEST_TLS, ...opts });
  try {
    return await new Promise<string>((resolve) => {
      s.once("secureConnect", () => resolve(`connected with ${s.getProtocol()} ${s.getCipher().name}`));
      s.once("error", (err: Error) => resolve(err.message));
    });
  } finally {
    s.destroy();
  }
}

/** FEAT and AUTH on an implicit connection: PBSZ and PROT are listed; AUTH, which can only be
 * refused there (503: the connection is TLS already), is not. */
async function implicitFeatures(c: FtpsControl): Promise<void> {
  const feat = await c.expect("FEAT", 211);
  for (const f of ["PBSZ", "PROT"]) assert.ok(feat.lines.includes(` ${f}`), `FEAT lists ${f}: ${feat.lines.join("|")}`);
  assert.ok(!feat.lines.some((l) => /AUTH/.test(l)), feat.lines.join("|"));
  const auth = await c.expect("AUTH TLS", 503);
  assert.match(auth.text, /Already using TLS/);
  await c.expect("AUTH TLS-P", 503);
}

/** A client-initiated renegotiation of `s`: null once it is done, else why it was not. */
function renegotiation(s: TLSSocket): Promise<Error | null> {
  return new Promise((resolve) => {
    // Refused, the client's TLS fails (OpenSSL: "no renegotiation"); the callback is not called.
    s.once("error", (err: Error) => resolve(err));
    s.once("close", () => resolve(new Error("connection closed")));
    if (!s.renegotiate({ rejectUnauthorized: false }, (err) => resolve(err ?? null))) resolve(new Error("not started"));
  });
}

async function basicClient(t: TestServer, secure: true | "implicit", maxVersion: "TLSv1.2" | "TLSv1.3"): Promise<Client> {
  const client = new Client(10_000);
  await client.access({
    host: "127.0.0.1",
    port: secure === "implicit" ? (t.implicitPort ?? 0) : t.port,
    user: "alice",
    password: "alice-pw",
    secure,
    secureOptions: { rejectUnauthorized: false, maxVersion },
  });
  return client;
}

async function download(client: Client, path: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      parts.push(chunk);
      cb();
    },
  });
  await client.downloadTo(sink, path);
  return Buffer.concat(parts);
}

/** Uploads, lists and downloads a few files; every data connection must pass the session check. */
async function roundTrips(client: Client, prefix: string): Promise<void> {
  for (let i = 0; i < 3; i++) {
    const data = Buffer.alloc(150_000 + i, i + 1);
    const name = `${prefix}-${i}.bin`;
    await client.uploadFrom(Readable.from([data]), name);
    const names = (await client.list()).map((f) => f.name);
    assert.ok(names.includes(name), `${name} listed`);
    assert.deepEqual(await download(client, name), data);
  }
}

describe("FTPS with basic-ftp", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ config: BOTH });
  });
  after(() => t.close());

  for (const version of ["TLSv1.3", "TLSv1.2"] as const) {
    it(`explicit (AUTH TLS) over ${version}: uploads, listings and downloads, all data sessions resumed`, async () => {
      const client = await basicClient(t, true, version);
      try {
        const control = client.ftp.socket as TLSSocket;
        assert.equal(control.getProtocol(), version);
        assert.equal(control.alpnProtocol, false, "basic-ftp offers no ALPN");
        await roundTrips(client, `explicit-${version}`);
      } finally {
        client.close();
      }
      assert.equal(refusals(t), 0);
    });

    it(`implicit (tls.implicitPort) over ${version}`, async () => {
      const client = await basicClient(t, "implicit", version);
      try {
        assert.equal((client.ftp.socket as TLSSocket).getProtocol(), version);
        await roundTrips(client, `implicit-${version}`);
      } finally {
        client.close();
      }
      assert.equal(refusals(t), 0);
    });
  }

  it("keeps plain FTP on the main port in mode both", async () => {
    const client = new Client(10_000);
    try {
      await client.access({ host: "127.0.0.1", port: t.port, user: "alice", password: "alice-pw" });
      await client.uploadFrom(Readable.from([Buffer.from("plain")]), "plain.txt");
      assert.equal((await download(client, "plain.txt")).toString(), "plain");
    } finally {
      client.close();
    }
  });
});

describe("AUTH, PBSZ and PROT sequencing (raw control connection)", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ config: BOTH });
  });
  after(() => t.close());

  it("advertises AUTH TLS, PBSZ and PROT in FEAT", async () => {
    const c = await FtpsControl.plain(t.port);
    const feat = await c.expect("FEAT", 211);
    for (const f of ["AUTH TLS", "AUTH SSL", "PBSZ", "PROT"]) assert.ok(feat.lines.includes(` ${f}`), `FEAT lists ${f}`);
    await c.quit();
  });

  it("refuses PBSZ and PROT before AUTH, PROT before PBSZ, unknown mechanisms and levels", async () => {
    const c = await FtpsControl.plain(t.port);
    await c.expect("PBSZ 0", 503);
    await c.expect("PROT P", 503);
    await c.expect("AUTH KERBEROS", 504);
    await c.expect("AUTH TLS-PX", 504);
    await c.upgrade();
    await c.expect("AUTH TLS", 503);
    await c.expect("AUTH TLS-P", 503);
    await c.expect("PROT P", 503);
    await c.expect("PBSZ x", 501);
    // RFC 2228 §3: a size that does not fit in 32 bits is a 501 too; any that does is answered
    // with the size TLS uses (RFC 4217 §8).
    await c.expect("PBSZ 4294967296", 501);
    await c.expect("PBSZ 99999999999999999999", 501);
    assert.equal((await c.expect("PBSZ 4294967295", 200)).text, "PBSZ=0");
    await c.expect("PBSZ 0", 200);
    await c.expect("PROT S", 536);
    await c.expect("PROT Q", 504);
    await c.expect("PROT C", 200);
    await c.expect("PROT P", 200);
    await c.login();
    await c.quit();
    // After a plain login (no REIN): AUTH of any mechanism is refused and what follows it is read.
    const p = await FtpsControl.plain(t.port);
    await p.login();
    p.socket.write("AUTH TLS-P\r\nPWD\r\n");
    assert.equal((await p.reply()).code, 503);
    assert.equal((await p.reply()).code, 257);
    await p.quit();
  });

  it("reads on after an AUTH refused before its handler runs (no argument) or by it, and upgrades after", async () => {
    const c = await FtpsControl.plain(t.port);
    // Input is held from an AUTH line until it is answered (RFC 4217 §11); every refusal lets go.
    await c.expect("AUTH", 501);
    await c.expect("NOOP", 200);
    await c.expect("AUTH  ", 501);
    await c.expect("AUTH KERBEROS", 504);
    await c.expect("NOOP", 200);
    // Lines behind a refused AUTH, in its packet, run in order; none is lost.
    c.socket.write("AUTH KERBEROS\r\nNOOP\r\nPWD\r\n");
    assert.equal((await c.reply()).code, 504);
    assert.equal((await c.reply()).code, 200);
    assert.equal((await c.reply()).code, 530);
    await c.upgrade();
    await c.expect("AUTH", 501);
    await c.expect("AUTH TLS", 503);
    await c.login();
    await c.expect("PWD", 257);
    await c.quit();
  });

  it("closes the connection, with no plaintext reply after the 234, when the TLS upgrade fails", async () => {
    const provider = TlsProvider.create(makeConfig(scratch, { tls: { mode: "explicit" } }), silent, scratch);
    const wrap = provider.wrapControl.bind(provider);
    let failures = 1;
    provider.wrapControl = (socket, binding) => {
      if (failures-- > 0) throw new Error("wrap failed");
      return wrap(socket, binding);
    };
    const broken = await startTestServer({ config: { tls: { mode: "explicit" } }, tls: provider });
    try {
      const raw = await RawClient.connect(broken.port);
      await raw.expect("AUTH TLS", 234);
      await raw.closed();
      await assert.rejects(raw.reply(100), /connection closed/, "nothing was written after the 234");
      assert.ok(broken.logs.some((l) => l.event === "tls-upgrade-failed"));
      // The server goes on: the next client upgrades and logs in.
      const c = await FtpsControl.explicit(broken.port);
      await c.login();
      await c.quit();
    } finally {
      await broken.close();
    }
  });

  it("accepts AUTH SSL as an alias, with TLS 1.2 or newer and ALPN ftp", async () => {
    const c = await FtpsControl.plain(t.port);
    await c.upgrade({}, "AUTH SSL");
    const s = c.socket as TLSSocket;
    assert.ok(["TLSv1.2", "TLSv1.3"].includes(s.getProtocol() ?? ""), String(s.getProtocol()));
    assert.equal(s.alpnProtocol, "ftp");
    await c.login();
    await c.quit();
  });

  it("protects data after AUTH TLS-P without PBSZ and PROT (TLS-P asks for both), and only after TLS-P", async () => {
    await writeFile(join(t.home("alice"), "tls-p.txt"), "private");
    const c = await FtpsControl.plain(t.port);
    await c.upgrade({}, "AUTH TLS-P");
    await c.login();
    const dc = await c.tlsData(await c.epsv());
    c.send("RETR tls-p.txt");
    assert.equal((await c.reply()).code, 150);
    assert.equal(await dc.handshake, true);
    assert.equal((await readToEnd(dc.socket)).toString(), "private");
    assert.equal((await c.reply()).code, 226);
    await c.quit();
    // AUTH TLS leaves data in clear until PROT P (RFC 4217 §9).
    const d = await FtpsControl.explicit(t.port);
    await d.login();
    const status = await d.expect("STAT", 211);
    assert.ok(status.lines.some((l) => /data: plain/.test(l)), status.lines.join("|"));
    await d.quit();
  });

  it("prefers AES-128-GCM, and ChaCha20-Poly1305 for a client that lists it first", async () => {
    const cases = [
      { maxVersion: "TLSv1.3", aesFirst: "TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256", chachaFirst: "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384:TLS_AES_128_GCM_SHA256" },
      { maxVersion: "TLSv1.2", aesFirst: "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305", chachaFirst: "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256" },
    ] as const;
    for (const { maxVersion, aesFirst, chachaFirst } of cases) {
      // A client that prefers AES-256 still gets AES-128 (the server's order decides)...
      const a = await FtpsControl.explicit(t.port, { maxVersion, ciphers: aesFirst });
      assert.match((a.socket as TLSSocket).getCipher().standardName, /AES_128_GCM/, maxVersion);
      await a.quit();
      // ...and one that lists ChaCha20 first gets it.
      const c = await FtpsControl.explicit(t.port, { maxVersion, ciphers: chachaFirst });
      assert.match((c.socket as TLSSocket).getCipher().standardName, /CHACHA20_POLY1305/, maxVersion);
      await c.quit();
    }
  });

  it("refuses a client that offers only suites outside the list (CBC, no forward secrecy), then serves the next", async () => {
    const outcome = await handshakeAfterAuth(t.port, {
      maxVersion: "TLSv1.2",
      ciphers: "ECDHE-RSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA:AES128-GCM-SHA256:AES256-SHA",
    });
    assert.match(outcome, /handshake|cipher|alert/i);
    const next = await FtpsControl.explicit(t.port);
    await next.login();
    await next.quit();
  });

  it("refuses TLS 1.1 and older", async () => {
    const outcome = await handshakeAfterAuth(t.port, { minVersion: "TLSv1", maxVersion: "TLSv1.1", ciphers: "DEFAULT:@SECLEVEL=0" });
    assert.match(outcome, /version|protocol/i);
  });

  it("refuses a TLS 1.2 client's renegotiation, on the control connection before login and on a data connection", async () => {
    // Each renegotiation would be a full handshake on the event loop, as often as the client asks
    // (Node's limit of 3 in 10 minutes holds only for sockets of a tls.Server).
    const c = await FtpsControl.explicit(t.port, { maxVersion: "TLSv1.2" });
    const control = c.socket as TLSSocket;
    assert.ok((await renegotiation(control)) !== null, "the control connection renegotiated");
    c.destroy();
    const d = await FtpsControl.explicit(t.port, { maxVersion: "TLSv1.2" });
    await d.login();
    await d.protect();
    const dc = await d.tlsData(await d.epsv(), undefined, { maxVersion: "TLSv1.2" });
    d.send("STOR renegotiated.bin");
    assert.equal((await d.reply()).code, 150);
    assert.equal(await dc.handshake, true);
    assert.ok((await renegotiation(dc.socket)) !== null, "the data connection renegotiated");
    dc.socket.destroy();
    assert.equal((await d.reply()).code, 426);
    await d.expect("NOOP", 200);
    await d.quit();
  });

  it("discards commands sent in the same packet as AUTH TLS (RFC 4217 §11)", async () => {
    const c = await FtpsControl.plain(t.port);
    c.socket.write("AUTH TLS\r\nUSER alice\r\n");
    assert.equal((await c.reply()).code, 234);
    c.socket.removeAllListeners("data");
    const s = tlsConnect({ socket: c.socket, ...TEST_TLS });
    await once(s, "secureConnect");
    const secured = FtpsControl.over(s);
    // USER never ran: PASS has no user to go with.
    await secured.expect("PASS alice-pw", 503);
    await secured.quit();
  });

  it("reads commands that arrive in pieces over TLS, explicit and implicit: no piece is lost or mixed with the next", async () => {
    // Each piece is its own TLS record, read apart from the next: a line's first part is kept
    // while the next read lands in the buffer the control connections are read into.
    const pause = (): Promise<void> => new Promise((r) => setTimeout(r, 30));
    for (const c of [await FtpsControl.explicit(t.port), await FtpsControl.implicit(t.implicitPort ?? 0)]) {
      for (const piece of ["US", "ER ali", "ce\r\nPA", "SS alice-pw\r", "\nPWD\r\nNO", "OP\r\n"]) {
        c.socket.write(piece);
        await pause();
      }
      for (const code of [331, 230, 257, 200]) assert.equal((await c.reply()).code, code);
      await c.quit();
    }
  });

  it("serves implicit FTPS: TLS from the first byte, no AUTH needed, PROT P listings", async () => {
    const c = await FtpsControl.implicit(t.implicitPort ?? 0);
    await implicitFeatures(c);
    await c.login();
    await c.protect();
    await writeFile(join(t.home("alice"), "seen.txt"), "x");
    const dc = await c.tlsData(await c.epsv());
    c.send("NLST");
    assert.equal((await c.reply()).code, 150);
    assert.equal(await dc.handshake, true, "data connection resumed the control session");
    assert.match((await readToEnd(dc.socket)).toString(), /seen\.txt/);
    assert.equal((await c.reply()).code, 226);
    await c.quit();
  });

  it("protects an implicit connection's data from the start, as if PBSZ 0 and PROT P had been sent; PROT C still turns it off", async () => {
    await writeFile(join(t.home("alice"), "implicit.txt"), "secret");
    const c = await FtpsControl.implicit(t.implicitPort ?? 0);
    await c.login();
    const status = await c.expect("STAT", 211);
    assert.ok(status.lines.some((l) => /data: TLS/.test(l)), status.lines.join("|"));
    // A client that takes PROT P as given on the implicit port (MS-FTPS) starts TLS on the data connection.
    const dc = await c.tlsData(await c.epsv());
    c.send("RETR implicit.txt");
    assert.equal((await c.reply()).code, 150);
    assert.equal(await dc.handshake, true, "data connection resumed the control session");
    assert.equal((await readToEnd(dc.socket)).toString(), "secret");
    assert.equal((await c.reply()).code, 226);
    // PROT without PBSZ is in order here (PBSZ 0 is in effect); PROT C gives plain data.
    await c.expect("PROT C", 200);
    const port = await c.epsv();
    const plain = netConnect({ port, host: "127.0.0.1" });
    await once(plain, "connect");
    c.send("RETR implicit.txt");
    assert.equal((await c.reply()).code, 150);
    assert.equal((await readToEnd(plain)).toString(), "secret");
    assert.equal((await c.reply()).code, 226);
    plain.destroy();
    await c.quit();
  });

  it("closes at once a connection whose client ends it before its TLS handshake (implicit, and after AUTH TLS)", async () => {
    for (const explicit of [false, true]) {
      const s = netConnect(explicit ? t.port : (t.implicitPort ?? 0), "127.0.0.1");
      s.on("error", () => undefined);
      let seen = "";
      const saw = (code: string): Promise<void> =>
        new Promise((resolve) => {
          const check = (): void => {
            if (!seen.includes(`${code} `)) return;
            s.removeListener("data", check);
            resolve();
          };
          s.on("data", check);
          check();
        });
      s.on("data", (d: Buffer) => (seen += d.toString("latin1")));
      await once(s, "connect");
      if (explicit) {
        await saw("220");
        s.write("AUTH TLS\r\n");
        await saw("234");
      }
      // No handshake: the client's FIN. The implicit connection's 220 waits for a handshake that
      // never comes; the server must not keep the connection (and its descriptor) for it.
      s.end();
      const closed = new Promise<boolean>((resolve) => s.once("close", () => resolve(true)));
      const inTime = await Promise.race([closed, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5000))]);
      s.destroy();
      assert.ok(inTime, `${explicit ? "explicit" : "implicit"}: still open 5 s after the client's FIN`);
    }
  });

  it("closes a control connection whose TLS breaks after the handshake (a corrupted record), explicit and implicit, without waiting for the idle timeout", async () => {
    for (const explicit of [true, false]) {
      const raw = netConnect(explicit ? t.port : (t.implicitPort ?? 0), "127.0.0.1");
      raw.on("error", () => undefined);
      await once(raw, "connect");
      if (explicit) {
        let text = "";
        const upTo = (code: string): Promise<void> =>
          new Promise((resolve) => {
            const read = (d: Buffer): void => {
              text += d.toString("latin1");
              if (!text.includes(`${code} `)) return;
              raw.removeListener("data", read);
              text = "";
              resolve();
            };
            raw.on("data", read);
          });
        await upTo("220");
        raw.write("AUTH TLS\r\n");
        await upTo("234");
      }
      // The TLS client runs over a stream of the test's own, so bytes can be put on the wire
      // around it.
      const wire = new Duplex({
        read: () => undefined,
        write: (chunk: Buffer, _enc, done) => void raw.write(chunk, done),
        final: (done) => {
          raw.end();
          done();
        },
      });
      raw.on("data", (d: Buffer) => wire.push(d));
      raw.on("end", () => wire.push(null));
      const secure = tlsConnect({ socket: wire, ...TEST_TLS });
      secure.on("error", () => undefined);
      await once(secure, "secureConnect");
      const c = FtpsControl.over(secure);
      if (!explicit) assert.equal((await c.reply()).code, 220);
      await c.login();
      const closed = new Promise<boolean>((resolve) => raw.once("close", () => resolve(true)));
      // An application-data record that does not decrypt: OpenSSL's "bad record mac". The
      // connection's TLS state is gone; no reply can be sent on it again.
      raw.write(CORRUPT_RECORD);
      const inTime = await Promise.race([closed, new Promise<boolean>((resolve) => setTimeout(() => resolve(false), 5000))]);
      raw.destroy();
      assert.ok(inTime, `${explicit ? "explicit" : "implicit"}: still open 5 s after a record that does not decrypt (idle timeout ${t.server.config.limits.idleTimeout} s)`);
    }
  });
});

describe("TLS modes", () => {
  it("implicit only: no plain listener, TLS from the first byte", async () => {
    const t = await startTestServer({ config: { tls: { mode: "implicit", implicitPort: 0 } } });
    try {
      assert.equal(t.server.port, null);
      const c = await FtpsControl.implicit(t.implicitPort ?? 0);
      await implicitFeatures(c);
      await c.login();
      await c.protect();
      await c.quit();
    } finally {
      await t.close();
    }
  });

  it("off: AUTH TLS is not offered (FEAT) and refused with 502", async () => {
    const t = await startTestServer();
    try {
      const c = await FtpsControl.plain(t.port);
      const feat = await c.expect("FEAT", 211);
      assert.ok(!feat.lines.some((l) => /AUTH|PBSZ|PROT/.test(l)), feat.lines.join("|"));
      await c.expect("AUTH TLS", 502);
      await c.expect("AUTH", 501);
      await c.expect("PBSZ 0", 503);
      await c.login();
      await c.quit();
    } finally {
      await t.close();
    }
  });

  it("refuses plaintext on a data connection under PROT P with a clear 425", async () => {
    const t = await startTestServer({ config: { tls: { mode: "explicit" } } });
    try {
      const c = await FtpsControl.explicit(t.port);
      await c.login();
      await c.protect();
      const port = await c.epsv();
      const plain = netConnect({ port, host: "127.0.0.1" });
      plain.on("error", () => undefined);
      await once(plain, "connect");
      c.send("STOR plain.txt");
      assert.equal((await c.reply()).code, 150);
      plain.end("this is not TLS\r\n");
      const r = await c.reply();
      assert.equal(r.code, 425, r.text);
      assert.match(r.text, /must use TLS/);
      plain.destroy();
      await c.quit();
    } finally {
      await t.close();
    }
  });
});

describe("failed TLS handshakes of control connections, told to the operator", () => {
  it("plaintext on the implicit port, garbage after AUTH TLS and a TLS 1.1 client each log one line at info naming the session and client; a probe that only connects logs none", async () => {
    const t = await startTestServer({ config: { tls: { mode: "both", implicitPort: 0 } }, logLevel: "info" });
    try {
      const port = t.implicitPort ?? 0;
      const plain = netConnect({ port, host: "127.0.0.1" });
      plain.on("error", () => undefined);
      await once(plain, "connect");
      plain.write("USER alice\r\n");
      await once(plain, "close");
      const garbage = await RawClient.connect(t.port);
      await garbage.expect("AUTH TLS", 234);
      garbage.sendRaw("\x16\x03\x01\x00\x10 this is no handshake\r\n");
      await garbage.closed();
      // A client older than berth's TLS 1.2.
      const old = tlsConnect({ port, host: "127.0.0.1", rejectUnauthorized: false, minVersion: "TLSv1", maxVersion: "TLSv1.1", ciphers: "DEFAULT@SECLEVEL=0" });
      await once(old, "error");
      old.destroy();
      const probe = netConnect({ port, host: "127.0.0.1" });
      probe.on("error", () => undefined);
      await once(probe, "connect");
      probe.end();
      await once(probe, "close");
      assert.ok(await waitFor(() => t.logs.filter((l) => l.event === "tls-handshake-failed").length >= 3, 2000), JSON.stringify(t.logs));
      await new Promise((r) => setTimeout(r, 200));
      const lines = t.logs.filter((l) => l.event === "tls-handshake-failed");
      assert.equal(lines.length, 3, JSON.stringify(lines));
      for (const l of lines) {
        assert.equal(l.level, 30);
        assert.equal(l.remote, "127.0.0.1");
        assert.match(String(l.session), /^[0-9a-f]{8}$/);
      }
      assert.equal(new Set(lines.map((l) => l.session)).size, 3);
      for (const l of lines) assert.match(String(l.msg), /^TLS handshake of the control connection failed: not a TLS client, or no TLS version or cipher in common \(\w+\)$/);
    } finally {
      await t.close();
    }
  });
});

describe("tls.require", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ config: { tls: { mode: "both", implicitPort: 0, require: true } } });
  });
  after(() => t.close());

  it("refuses USER and PASS before AUTH TLS with a reason, allows FEAT", async () => {
    const c = await FtpsControl.plain(t.port);
    const user = await c.expect("USER alice", 530);
    assert.match(user.text, /TLS/);
    await c.expect("PASS alice-pw", 530);
    await c.expect("FEAT", 211);
    await c.upgrade();
    await c.login();
    await c.quit();
  });

  it("refuses transfers without PROT P (521) and refuses PROT C", async () => {
    const c = await FtpsControl.explicit(t.port);
    await c.login();
    for (const cmd of ["LIST", "NLST", "RETR x", "STOR x", "MLSD"]) {
      const r = await c.expect(cmd, 521);
      assert.match(r.text, /PROT P/);
    }
    await c.expect("PBSZ 0", 200);
    await c.expect("PROT C", 534);
    await c.expect("PROT P", 200);
    const dc = await c.tlsData(await c.epsv());
    c.send("LIST");
    assert.equal((await c.reply()).code, 150);
    await readToEnd(dc.socket);
    assert.equal((await c.reply()).code, 226);
    await c.quit();
  });

  it("lets implicit FTPS log in at once", async () => {
    const c = await FtpsControl.implicit(t.implicitPort ?? 0);
    await c.login();
    await c.quit();
  });
});

describe("data connections bound to their control connection's TLS session", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ config: BOTH });
  });
  after(() => t.close());

  /** Runs LIST over `dc` and returns the final reply code (after the 150). */
  async function listOver(c: FtpsControl, open: (port: number) => Promise<DataConn>): Promise<{ code: number; text: string; dc: DataConn }> {
    const dc = await open(await c.epsv());
    c.send("LIST");
    assert.equal((await c.reply()).code, 150);
    await dc.handshake.catch(() => false);
    void readToEnd(dc.socket);
    const r = await c.reply();
    return { ...r, dc };
  }

  async function ready(version: "TLSv1.2" | "TLSv1.3" = "TLSv1.3", extra = {}): Promise<FtpsControl> {
    const c = await FtpsControl.explicit(t.port, { maxVersion: version, ...extra });
    await c.login();
    await c.protect();
    assert.ok(await waitFor(() => c.session !== null, 2000), "the server issued a session");
    return c;
  }

  it("refuses a data connection presenting another control connection's session, then goes on", async () => {
    const a = await ready();
    const b = await ready();
    const before = refusals(t);
    const foreign = await listOver(a, (port) => a.tlsData(port, b.session));
    assert.equal(foreign.code, 522, foreign.text);
    assert.match(foreign.text, /resume/);
    assert.equal(await foreign.dc.handshake.catch(() => false), false, "the foreign session was not resumed");
    assert.equal(refusals(t), before + 1);
    // The real client is not locked out: its own session still works.
    const own = await listOver(a, (port) => a.tlsData(port));
    assert.equal(own.code, 226, own.text);
    await a.quit();
    await b.quit();
  });

  it("refuses a fresh data handshake, and the real client goes on", async () => {
    for (const version of ["TLSv1.2", "TLSv1.3"] as const) {
      const c = await ready(version);
      const fresh = await listOver(c, (port) => c.tlsData(port, null, { maxVersion: version }));
      assert.equal(fresh.code, 522, fresh.text);
      const own = await listOver(c, (port) => c.tlsData(port, undefined, { maxVersion: version }));
      assert.equal(own.code, 226, own.text);
      await c.quit();
    }
  });

  it("resumes by session ID for clients without tickets (curl over TLS 1.2)", async () => {
    const noTicket = { maxVersion: "TLSv1.2", secureOptions: cryptoConstants.SSL_OP_NO_TICKET } as const;
    const c = await ready("TLSv1.2", noTicket);
    for (let i = 0; i < 2; i++) {
      const r = await listOver(c, (port) => c.tlsData(port, undefined, noTicket));
      assert.equal(r.code, 226, r.text);
      assert.equal(await r.dc.handshake, true);
    }
    await c.quit();
  });

  it("accepts a fresh data handshake when tls.requireSessionReuse is off", async () => {
    const loose = await startTestServer({ config: { tls: { mode: "explicit", requireSessionReuse: false } } });
    try {
      const c = await FtpsControl.explicit(loose.port);
      await c.login();
      await c.protect();
      const dc = await c.tlsData(await c.epsv(), null);
      c.send("LIST");
      assert.equal((await c.reply()).code, 150);
      assert.equal(await dc.handshake, false);
      await readToEnd(dc.socket);
      assert.equal((await c.reply()).code, 226);
      await c.quit();
    } finally {
      await loose.close();
    }
  });
});

describe("a transfer command refused before 150 under PROT P", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ config: BOTH });
  });
  after(() => t.close());

  it("keeps the client's data connection, its TLS handshake started, open until the client closes it after reading the refusal; the port goes back and the session goes on", async () => {
    const c = await FtpsControl.explicit(t.port);
    await c.login("bob"); // read-only: STOR is refused with 550 before 150
    await c.protect();
    for (const command of ["STOR refused.bin", "RETR missing.bin"]) {
      // As curl does: connect and start the handshake at once, then send the command.
      const dc = await c.tlsData(await c.epsv());
      let gone = false;
      dc.socket.once("close", () => (gone = true));
      const r = await c.cmd(command);
      assert.equal(r.code, 550, r.text);
      // A FIN or reset here fails the client's handshake, and curl takes that for a failed EPSV:
      // it sends PASV and reads this 550 as its reply ("Bad PASV/EPSV response: 550").
      await new Promise((resolve) => setTimeout(resolve, 300));
      assert.equal(gone, false, `${command}: the data connection is still open when the client has read the refusal`);
      dc.socket.destroy();
      assert.ok(await waitFor(() => t.server.context.pool.used === 0, 2000), `${command}: the passive port is free again`);
      await c.expect("NOOP", 200);
    }
    await c.quit();
  });

  it("lets curl report the server's refusal of an upload (550), not a failed EPSV", async (ctx) => {
    if (!which("curl")) {
      ctx.skip("curl not installed");
      return;
    }
    const payload = join(scratch, "refused-upload.txt");
    await writeFile(payload, "x\n");
    const r = await exec("curl", ["-sS", "--ssl-reqd", "-k", "-u", "bob:bob-pw", "-T", payload, `ftp://127.0.0.1:${t.port}/refused.txt`], { timeoutMs: 20_000 });
    assert.equal(r.code, 25, describeRun(r)); // CURLE_UPLOAD_FAILED
    assert.match(r.stderr, /550/, describeRun(r));
    assert.doesNotMatch(r.stderr, /PASV/, describeRun(r));
  });
});

describe("TlsBinding", () => {
  const provider = TlsProvider.create(makeConfig(scratch, { tls: { mode: "explicit" } }), silent, scratch);

  /** A server socket of `binding` (control or data) on a loopback pair, and the client's end. */
  async function pair(
    binding: TlsBinding,
    role: "control" | "data",
    version: "TLSv1.2" | "TLSv1.3",
    session?: Buffer,
  ): Promise<{ server: TLSSocket; tickets: Buffer[]; close(): void }> {
    const listener = createServer();
    listener.listen(0, "127.0.0.1");
    await once(listener, "listening");
    const address = listener.address() as AddressInfo;
    const accepted = once(listener, "connection") as Promise<[Socket]>;
    const client = tlsConnect({ port: address.port, host: "127.0.0.1", ...TEST_TLS, maxVersion: version, ...(session ? { session } : {}) });
    const tickets: Buffer[] = [];
    client.on("session", (s: Buffer) => tickets.push(s));
    client.on("error", () => undefined);
    const [raw] = await accepted;
    let server: TLSSocket | null = null;
    const events = role === "control" ? binding.controlEvents(() => server) : binding.dataEvents(() => server);
    server = new TLSSocket(raw, { isServer: true, secureContext: binding.context, server: events as unknown as Server });
    server.once("secure", () => events.emit("secure"));
    server.on("error", () => undefined);
    await Promise.all([once(server, "secure"), once(client, "secureConnect")]);
    // Tickets (TLS 1.3) follow the handshake; let them arrive.
    await waitFor(() => tickets.length > 0, 1000);
    const s = server;
    return {
      server: s,
      tickets,
      close() {
        client.destroy();
        s.destroy();
        listener.close();
      },
    };
  }

  for (const version of ["TLSv1.2", "TLSv1.3"] as const) {
    it(`accepts only sessions descended from the control connection (${version})`, async () => {
      const binding = provider.binding();
      const control = await pair(binding, "control", version);
      const own = control.tickets.at(-1);
      assert.ok(own, "the control connection got a session");

      // A data connection with a fresh handshake: refused, and the ticket it got is worthless.
      const fresh = await pair(binding, "data", version);
      assert.equal(binding.resumedOwnSession(fresh.server), false);
      const born = fresh.tickets.at(-1);
      assert.ok(born, "the fresh data connection got a ticket");
      const replay = await pair(binding, "data", version, born);
      assert.equal(replay.server.isSessionReused(), true, "the replayed ticket does resume (same keys)");
      assert.equal(binding.resumedOwnSession(replay.server), false, "but it is not the control's session");

      // The control's session passes, and so does a ticket its accepted data connection issued.
      const first = await pair(binding, "data", version, own);
      assert.equal(binding.resumedOwnSession(first.server), true);
      const chained = first.tickets.at(-1) ?? own;
      const second = await pair(binding, "data", version, chained);
      assert.equal(binding.resumedOwnSession(second.server), true);

      // Another control connection's session never resumes here (its own ticket keys).
      const other = await pair(provider.binding(), "control", version);
      const foreign = await pair(binding, "data", version, other.tickets.at(-1));
      assert.equal(foreign.server.isSessionReused(), false);
      assert.equal(binding.resumedOwnSession(foreign.server), false);
      for (const p of [control, fresh, replay, first, second, other, foreign]) p.close();
    });
  }

  it("reads the session secret out of an SSL_SESSION", () => {
    assert.equal(secretOf(undefined), null);
    assert.equal(secretOf(Buffer.from([0x30, 0x00])), null);
    assert.equal(secretOf(Buffer.from("not der")), null);
  });
});

/** How the test client ends an upload's data connection. */
type Ending =
  | "close_notify" // TLS close_notify then TCP FIN, once the data is written
  | "cut" // TCP FIN without close_notify, once the data is written: not the end of the file
  | "close_notify at once" // data, close_notify and FIN handed to the kernel in one go
  | "cut at once" // data and FIN handed to the kernel in one go, no close_notify
  | "reset" // TCP RST without close_notify
  | "corrupt"; // a record that does not decrypt, once the data is written; the connection stays open

/** STOR over a TLS data connection ended as `ending`; the final reply's code. */
async function storeOver(c: FtpsControl, name: string, data: Buffer, ending: Ending, rest = 0): Promise<number> {
  if (rest > 0) await c.expect(`REST ${rest}`, 350);
  const dc = await c.tlsData(await c.epsv());
  c.send(`STOR ${name}`);
  assert.equal((await c.reply()).code, 150);
  assert.equal(await dc.handshake, true);
  if (ending === "close_notify at once") dc.socket.end(data);
  else if (ending === "cut at once") {
    dc.socket.write(data);
    dc.raw.end();
  } else {
    await new Promise<void>((resolve) => dc.socket.write(data, () => resolve()));
    if (ending === "close_notify") dc.socket.end();
    else if (ending === "cut") dc.raw.end();
    else if (ending === "corrupt") dc.raw.write(CORRUPT_RECORD);
    else dc.raw.resetAndDestroy();
  }
  dc.socket.resume();
  const r = await c.reply(20_000);
  dc.socket.destroy();
  return r.code;
}

async function tempFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.startsWith(".berth-upload"));
}

function pattern(size: number, seed = 0): Buffer {
  const b = Buffer.alloc(size);
  for (let i = 0; i < size; i++) b[i] = (i + seed) % 251;
  return b;
}

describe("downloads under PROT P", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ config: BOTH });
  });
  after(() => t.close());

  it("sends empty and multi-chunk files whole and from REST offsets", async () => {
    const home = t.home("alice");
    const big = Buffer.alloc(3 * (1 << 20) + 3);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) % 253;
    await writeFile(join(home, "big.bin"), big);
    await writeFile(join(home, "empty.bin"), "");
    const c = await FtpsControl.explicit(t.port);
    await c.login();
    await c.protect();
    await c.expect("TYPE I", 200);
    const retr = async (name: string, rest = 0): Promise<Buffer> => {
      if (rest > 0) await c.expect(`REST ${rest}`, 350);
      const dc = await c.tlsData(await c.epsv());
      c.send(`RETR ${name}`);
      assert.equal((await c.reply()).code, 150);
      assert.equal(await dc.handshake, true);
      const data = await readToEnd(dc.socket);
      assert.equal((await c.reply()).code, 226);
      dc.socket.destroy();
      return data;
    };
    assert.equal((await retr("empty.bin")).length, 0);
    assert.ok((await retr("big.bin")).equals(big));
    for (const rest of [1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, big.length - 1]) {
      assert.ok((await retr("big.bin", rest)).equals(big.subarray(rest)), `REST ${rest}`);
    }
    await c.quit();
    assert.equal(refusals(t), 0);
  });
});

describe("uploads under PROT P", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ config: BOTH });
  });
  after(() => t.close());

  async function session(): Promise<FtpsControl> {
    const c = await FtpsControl.explicit(t.port);
    await c.login();
    await c.protect();
    await c.expect("TYPE I", 200);
    return c;
  }

  it("never publishes an upload cut without close_notify over an existing file", async () => {
    const home = t.home("alice");
    await writeFile(join(home, "keep.txt"), "original content");
    const c = await session();
    assert.equal(await storeOver(c, "keep.txt", Buffer.alloc(200_000, 7), "cut"), 426);
    assert.equal(await readFile(join(home, "keep.txt"), "utf8"), "original content");
    assert.deepEqual(await tempFiles(home), []);
    // The same upload ended properly replaces the file.
    const good = Buffer.alloc(200_000, 8);
    assert.equal(await storeOver(c, "keep.txt", good, "close_notify"), 226);
    assert.deepEqual(await readFile(join(home, "keep.txt")), good);
    await c.quit();
  });

  it("keeps a cut new upload's partial data, which REST + STOR completes", async () => {
    const home = t.home("alice");
    const c = await session();
    const whole = pattern(300_000);
    assert.equal(await storeOver(c, "resume.bin", whole.subarray(0, 120_000), "cut"), 426);
    const partial = await readFile(join(home, "resume.bin"));
    assert.ok(partial.length > 0 && partial.length <= 120_000, `partial size ${partial.length}`);
    assert.deepEqual(partial, whole.subarray(0, partial.length));
    assert.equal(await storeOver(c, "resume.bin", whole.subarray(partial.length), "close_notify", partial.length), 226);
    assert.deepEqual(await readFile(join(home, "resume.bin")), whole);
    await c.quit();
  });

  it("tells close_notify from a cut whether FIN comes later, right behind the data, or as a reset", async () => {
    const home = t.home("alice");
    const c = await session();
    for (const size of [0, 1, 5000, 200_000]) {
      for (const [ending, code] of [
        ["cut at once", 426],
        ["reset", 426],
        ["close_notify at once", 226],
        ["cut", 426],
        ["close_notify", 226],
      ] as const) {
        const name = `endings-${size}.bin`;
        await writeFile(join(home, name), "original");
        const data = pattern(size, code);
        const got = await storeOver(c, name, data, ending);
        // A cut that reaches the server before it has finished its side of the handshake is a 425.
        assert.ok(got === code || (code === 426 && got === 425), `${ending}, ${size} bytes: ${got}, not ${code}`);
        const now = await readFile(join(home, name));
        if (code === 226) assert.deepEqual(now, data, `${ending}, ${size} bytes: published`);
        else assert.equal(now.toString(), "original", `${ending}, ${size} bytes: not published`);
      }
    }
    assert.deepEqual(await tempFiles(home), []);
    await c.quit();
  });

  it("a data connection whose TLS breaks mid-upload (a corrupted record) is 426 at once, not at the stall timeout; the file it was replacing stays", async () => {
    const home = t.home("alice");
    await writeFile(join(home, "kept.bin"), "original");
    const c = await session();
    // storeOver waits 20 s for the reply; limits.stalledTimeout is 300 s.
    assert.equal(await storeOver(c, "kept.bin", pattern(100_000), "corrupt"), 426);
    assert.equal(await readFile(join(home, "kept.bin"), "utf8"), "original");
    assert.deepEqual(await tempFiles(home), []);
    await c.expect("NOOP", 200);
    await c.quit();
  });

  it("a 24 MiB upload: 426 when cut, 226 with close_notify (the server reads behind the client)", async () => {
    const home = t.home("alice");
    await writeFile(join(home, "big.bin"), "original");
    const c = await session();
    const big = pattern(24 << 20);
    assert.equal(await storeOver(c, "big.bin", big, "cut"), 426);
    assert.equal(await readFile(join(home, "big.bin"), "utf8"), "original");
    assert.equal(await storeOver(c, "big.bin", big, "close_notify at once"), 226);
    assert.ok((await readFile(join(home, "big.bin"))).equals(big), "the whole upload was stored");
    await c.quit();
  });
});

describe("uploads under PROT P, paced by a bandwidth limit", () => {
  // The server reads slowly, so TCP reading is paused for backpressure when close_notify arrives.
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ config: { ...BOTH, bandwidth: { ...DEFAULTS.bandwidth, transferUp: 4 << 20 } } });
  });
  after(() => t.close());

  it("426 when cut, 226 with close_notify", async () => {
    const home = t.home("alice");
    await writeFile(join(home, "paced.bin"), "original");
    const c = await FtpsControl.explicit(t.port);
    await c.login();
    await c.protect();
    await c.expect("TYPE I", 200);
    const data = pattern(2 << 20);
    assert.equal(await storeOver(c, "paced.bin", data, "cut"), 426);
    assert.equal(await readFile(join(home, "paced.bin"), "utf8"), "original");
    assert.equal(await storeOver(c, "paced.bin", data, "close_notify at once"), 226);
    assert.ok((await readFile(join(home, "paced.bin"))).equals(data));
    await c.quit();
  });
});

/**
 * A TLS data connection from Python (MemoryBIO), to put the last data, close_notify and FIN in one
 * TCP segment (TCP_CORK), or to leave TCP open after close_notify until the server's own arrives.
 */
const PY_DATA = String.raw`
import socket, ssl, sys
port, ending, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
sock = socket.create_connection(("127.0.0.1", port))
incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
tls = ctx.wrap_bio(incoming, outgoing)
while True:
    try:
        tls.do_handshake()
        break
    except ssl.SSLWantReadError:
        sock.sendall(outgoing.read())
        got = sock.recv(65536)
        if not got:
            sys.exit("closed during the handshake")
        incoming.write(got)
sock.sendall(outgoing.read())
tls.write((bytes(range(251)) * (size // 251 + 1))[:size])
if ending != "cut":
    try:
        tls.unwrap()
    except ssl.SSLWantReadError:
        pass  # close_notify is queued; the server's comes later
cork = getattr(socket, "TCP_CORK", None)
if cork is not None:
    sock.setsockopt(socket.IPPROTO_TCP, cork, 1)
sock.sendall(outgoing.read())
if ending == "half-close":
    if cork is not None:
        sock.setsockopt(socket.IPPROTO_TCP, cork, 0)
    while True:
        got = sock.recv(65536)
        if not got:
            print("FIN before the server's close_notify")
            break
        incoming.write(got)
        try:
            tls.unwrap()
            print("close_notify from the server")
            break
        except ssl.SSLWantReadError:
            pass
else:
    sock.shutdown(socket.SHUT_WR)
    if cork is not None:
        sock.setsockopt(socket.IPPROTO_TCP, cork, 0)
    while sock.recv(65536):
        pass
sock.close()
`;

describe("uploads under PROT P from a client that packs its ending (Python)", () => {
  let t: TestServer;
  before(async () => {
    // Python cannot present the control connection's session here: fresh data sessions are allowed.
    t = await startTestServer({ config: { tls: { mode: "explicit", requireSessionReuse: false } } });
  });
  after(() => t.close());

  for (const size of [1000, 300_000]) {
    for (const [ending, code] of [
      ["close_notify", 226],
      ["cut", 426],
      ["half-close", 226],
    ] as const) {
      const what =
        ending === "close_notify"
          ? "data, close_notify and FIN in one segment"
          : ending === "cut"
            ? "data and FIN in one segment, no close_notify"
            : "close_notify with TCP left open until the server's close_notify";
      it(`${what}: ${code} (${size} bytes)`, async (ctx) => {
        if (!which("python3")) {
          ctx.skip("python3 is not installed");
          return;
        }
        const home = t.home("alice");
        const name = `py-${ending}-${size}.bin`;
        await writeFile(join(home, name), "original");
        const c = await FtpsControl.explicit(t.port);
        await c.login();
        await c.protect();
        await c.expect("TYPE I", 200);
        const port = await c.epsv();
        c.send(`STOR ${name}`);
        const py = exec("python3", ["-c", PY_DATA, String(port), ending, String(size)], { timeoutMs: 20_000 });
        assert.equal((await c.reply()).code, 150);
        assert.equal((await c.reply(20_000)).code, code);
        const r = await py;
        assert.equal(r.code, 0, describeRun(r));
        if (ending === "half-close") assert.match(r.stdout, /close_notify from the server/);
        const now = await readFile(join(home, name));
        if (code === 226) assert.ok(now.equals(pattern(size)), "published as sent");
        else assert.equal(now.toString(), "original");
        await c.quit();
      });
    }
  }
});

describe("ABOR during a TLS transfer", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ config: BOTH });
  });
  after(() => t.close());

  it("answers 426 then 226 and the session goes on", async () => {
    await writeFile(join(t.home("alice"), "big.bin"), Buffer.alloc(64 << 20, 1));
    const c = await FtpsControl.explicit(t.port);
    await c.login();
    await c.protect();
    await c.expect("TYPE I", 200);
    const dc = await c.tlsData(await c.epsv());
    c.send("RETR big.bin");
    assert.equal((await c.reply()).code, 150);
    await dc.handshake;
    await once(dc.socket, "data");
    dc.socket.pause(); // the server fills its buffers and waits
    c.send("ABOR");
    assert.equal((await c.reply()).code, 426);
    assert.equal((await c.reply()).code, 226);
    dc.socket.destroy();
    await c.expect("NOOP", 200);
    const again = await c.tlsData(await c.epsv());
    c.send("NLST");
    assert.equal((await c.reply()).code, 150);
    assert.match((await readToEnd(again.socket)).toString(), /big\.bin/);
    assert.equal((await c.reply()).code, 226);
    await c.quit();
  });

  it("answers at once while the data connection's TLS handshake has not come (not after the data timeout)", async () => {
    await writeFile(join(t.home("alice"), "small.txt"), "small");
    const c = await FtpsControl.explicit(t.port);
    await c.login();
    await c.protect();
    for (const verb of ["RETR small.txt", "STOR later.txt"]) {
      // Connected, but the handshake never starts (a client that waits for something else).
      const raw = netConnect({ port: await c.epsv(), host: "127.0.0.1" });
      raw.on("error", () => undefined);
      await once(raw, "connect");
      c.send(verb);
      assert.equal((await c.reply()).code, 150);
      const started = Date.now();
      c.send("ABOR");
      assert.equal((await c.reply(3000)).code, 426, verb);
      assert.equal((await c.reply(3000)).code, 226, verb);
      assert.ok(Date.now() - started < 2000, `${verb}: answered after ${Date.now() - started} ms`);
      raw.destroy();
      await c.expect("NOOP", 200);
    }
    await c.quit();
  });
});

describe("ABOR during a TLS upload", () => {
  let t: TestServer;
  before(async () => {
    t = await startTestServer({ config: BOTH });
  });
  after(() => t.close());

  it("answers 426 then 226, leaves the file it was replacing as it was and no temp file, and the session goes on", async () => {
    const home = t.home("alice");
    await writeFile(join(home, "keep.bin"), "original");
    const c = await FtpsControl.explicit(t.port);
    await c.login();
    await c.protect();
    await c.expect("TYPE I", 200);
    const dc = await c.tlsData(await c.epsv());
    c.send("STOR keep.bin");
    assert.equal((await c.reply()).code, 150);
    await dc.handshake;
    // Part of an upload, through the reused read buffer, and no end.
    await new Promise<void>((resolve) => dc.socket.write(pattern(3 << 20), () => resolve()));
    c.send("ABOR");
    assert.equal((await c.reply()).code, 426);
    assert.equal((await c.reply()).code, 226);
    dc.socket.destroy();
    assert.equal(await readFile(join(home, "keep.bin"), "utf8"), "original");
    assert.deepEqual(await tempFiles(home), []);
    await c.expect("NOOP", 200);
    assert.equal(await storeOver(c, "keep.bin", pattern(100_000), "close_notify"), 226);
    assert.ok((await readFile(join(home, "keep.bin"))).equals(pattern(100_000)));
    await c.quit();
  });
});

describe("certificates", () => {
  it("makes a self-signed certificate beside the users file on first start, with a warning", async () => {
    const t = await startTestServer({ config: { tls: { mode: "explicit" } } });
    try {
      const dir = join(t.root, "users");
      const pem = await readFile(join(dir, "selfsigned-cert.pem"), "utf8");
      await readFile(join(dir, "selfsigned-key.pem"));
      const warning = t.logs.find((l) => l.event === "tls-selfsigned");
      assert.ok(warning && warning.level === 40, "a warning names the self-signed certificate");
      const c = await FtpsControl.explicit(t.port);
      const served = (c.socket as TLSSocket).getPeerX509Certificate();
      assert.equal(served?.fingerprint256, new X509Certificate(pem).fingerprint256);
      assert.match(served?.subjectAltName ?? "", /IP Address:127\.0\.0\.1/);
      await c.quit();
    } finally {
      await t.close();
    }
  });

  it("replaces its own self-signed certificate once it has expired, with a warning, and keeps one still valid", async () => {
    const dir = await mkTemp();
    const config = makeConfig(dir, { tls: { mode: "explicit" } });
    const certPath = join(dir, "users", "selfsigned-cert.pem");
    const keyPath = join(dir, "users", "selfsigned-key.pem");
    await mkdir(join(dir, "users"), { recursive: true });
    const expired = makeSelfSigned(["localhost"], 0);
    await writeFile(certPath, expired.cert);
    await writeFile(keyPath, expired.key);
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: "warn" }, new Writable({ write: (chunk: Buffer, _enc, cb) => (lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>), cb()) }));
    TlsProvider.create(config, logger, dir);
    const made = await readFile(certPath, "utf8");
    assert.notEqual(made, expired.cert, "a new certificate");
    assert.ok(Date.parse(new X509Certificate(made).validTo) > Date.now(), "valid now");
    assert.ok(new X509Certificate(made).checkPrivateKey(createPrivateKey(await readFile(keyPath))), "with its key");
    const warning = lines.find((l) => l.event === "tls-selfsigned");
    assert.match(String(warning?.msg), /expired on .*made a new one/);
    assert.ok(!lines.some((l) => l.event === "tls-cert-dates"), "what is served is valid");
    // A valid one stays.
    TlsProvider.create(config, logger, dir);
    assert.equal(await readFile(certPath, "utf8"), made);
  });

  it("refuses, naming tls.cert, a self-signed pair it cannot write (at start and at a reload), leaving no half pair", async () => {
    const dir = await mkTemp();
    const config = makeConfig(dir, { tls: { mode: "explicit" } });
    const keyPath = join(dir, "users", "selfsigned-key.pem");
    const certPath = join(dir, "users", "selfsigned-cert.pem");
    // The key cannot go where it would (as in a read-only users directory), and there is no
    // certificate yet: a pair must be made.
    await mkdir(keyPath, { recursive: true });
    assert.throws(
      () => TlsProvider.create(config, silent, dir),
      (err: unknown) => {
        assert.ok(err instanceof TlsConfigError, String(err));
        assert.equal(err.key, "tls.cert");
        assert.equal(
          err.message,
          `config: tls.cert and tls.key are empty and the self-signed certificate cannot be written: ${keyPath} (is a directory); set tls.cert and tls.key, or let the server write there`,
        );
        return true;
      },
    );
    assert.deepEqual(await readdir(join(dir, "users")), ["selfsigned-key.pem"], `nothing else written (${certPath})`);
  });

  it("always makes a certificate OpenSSL accepts (serial numbers are minimal DER)", () => {
    for (let i = 0; i < 300; i++) {
      const { cert, key } = makeSelfSigned(["localhost", "127.0.0.1", "::1"]);
      assert.ok(new X509Certificate(cert).checkPrivateKey(createPrivateKey(key)));
    }
  });

  it("names the key at fault when a certificate or key is missing, unreadable or wrong", async () => {
    const dir = join(await mkTemp(), "tls");
    await mkdir(dir, { recursive: true });
    const a = makeSelfSigned(["localhost"]);
    const b = makeSelfSigned(["localhost"]);
    await writeFile(join(dir, "cert.pem"), a.cert);
    await writeFile(join(dir, "key.pem"), a.key);
    await writeFile(join(dir, "other-key.pem"), b.key);
    await writeFile(join(dir, "junk.pem"), "not a certificate");
    // A chain with the server's own certificate after another one (its intermediate put first).
    await writeFile(join(dir, "wrong-order.pem"), b.cert + a.cert);
    // A chain whose second certificate was cut short (a copy that stopped early).
    await writeFile(join(dir, "cut-chain.pem"), a.cert + b.cert.slice(0, 120));
    // A key of another type than the certificate's (an RSA key beside an ECDSA certificate, as after
    // a renewal that changed the key type): OpenSSL loads both without comparing them.
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    await writeFile(join(dir, "rsa-key.pem"), rsa);
    const encrypt = (type: "pkcs8" | "sec1"): string =>
      createPrivateKey(a.key).export({ type, format: "pem", cipher: "aes-256-cbc", passphrase: "secret" }).toString();
    await writeFile(join(dir, "encrypted-key.pem"), encrypt("pkcs8"));
    await writeFile(join(dir, "legacy-encrypted-key.pem"), encrypt("sec1"));
    const cases: [Partial<{ cert: string; key: string }>, string, RegExp][] = [
      [{ cert: join(dir, "missing.pem"), key: join(dir, "key.pem") }, "tls.cert", /tls\.cert cannot be read: .*missing\.pem \(no such file\)/],
      [{ cert: join(dir, "cert.pem"), key: join(dir, "missing.pem") }, "tls.key", /tls\.key cannot be read: .*missing\.pem/],
      [{ cert: join(dir, "cert.pem"), key: "" }, "tls.key", /tls\.cert and tls\.key must be set together \(tls\.key is empty\)/],
      [{ cert: join(dir, "junk.pem"), key: join(dir, "key.pem") }, "tls.cert", /tls\.cert is not a PEM certificate/],
      [{ cert: join(dir, "cert.pem"), key: join(dir, "other-key.pem") }, "tls.key", /tls\.key is not a PEM private key matching/],
      [{ cert: join(dir, "cert.pem"), key: join(dir, "rsa-key.pem") }, "tls.key", /tls\.key is not a PEM private key matching tls\.cert: .*rsa-key\.pem$/],
      [{ cert: join(dir, "wrong-order.pem"), key: join(dir, "key.pem") }, "tls.cert", /tls\.cert does not begin with the certificate of tls\.key, which is certificate 2 of 2 in .*wrong-order\.pem \(/],
      [{ cert: join(dir, "cut-chain.pem"), key: join(dir, "key.pem") }, "tls.cert", /tls\.cert has a certificate that cannot be read \(certificate 2 of 2, cut short or damaged\): .*cut-chain\.pem$/],
      [{ cert: dir, key: join(dir, "key.pem") }, "tls.cert", /tls\.cert cannot be read/],
      [{ cert: join(dir, "cert.pem"), key: join(dir, "encrypted-key.pem") }, "tls.key", /tls\.key is encrypted \(it needs a passphrase\).*encrypted-key\.pem/],
      [{ cert: join(dir, "cert.pem"), key: join(dir, "legacy-encrypted-key.pem") }, "tls.key", /tls\.key is encrypted \(it needs a passphrase\)/],
    ];
    for (const [tls, key, message] of cases) {
      const config = makeConfig(dir, { tls: { mode: "explicit", ...tls } });
      assert.throws(
        () => TlsProvider.create(config, silent),
        (err: unknown) => {
          assert.ok(err instanceof TlsConfigError && err instanceof ConfigError, String(err));
          assert.equal(err.key, key);
          assert.match(err.message, /^config: /);
          assert.match(err.message, message);
          return true;
        },
      );
    }
    assert.ok(TlsProvider.create(makeConfig(dir, { tls: { mode: "explicit", cert: join(dir, "cert.pem"), key: join(dir, "key.pem") } }), silent));
  });

  it("refuses, naming the key, a certificate or key file that never ends (/dev/zero) or is far too big, after a bounded read", async () => {
    const dir = join(await mkTemp(), "tls");
    await mkdir(dir, { recursive: true });
    const a = makeSelfSigned(["localhost"]);
    await writeFile(join(dir, "cert.pem"), a.cert);
    await writeFile(join(dir, "key.pem"), a.key);
    // A PEM certificate followed by 2 MiB of comment lines: no certificate file is that big.
    await writeFile(join(dir, "huge.pem"), a.cert + "# padding\n".repeat(200_000));
    const cases: [Partial<{ cert: string; key: string }>, string, RegExp][] = [
      [{ cert: join(dir, "huge.pem"), key: join(dir, "key.pem") }, "tls.cert", /tls\.cert cannot be read: .*huge\.pem \(larger than 1048576 bytes/],
      [{ cert: "/dev/zero", key: join(dir, "key.pem") }, "tls.cert", /tls\.cert cannot be read: \/dev\/zero \(larger than/],
      [{ cert: join(dir, "cert.pem"), key: "/dev/zero" }, "tls.key", /tls\.key cannot be read: \/dev\/zero \(larger than/],
    ];
    for (const [tls, key, message] of cases) {
      const config = makeConfig(dir, { tls: { mode: "explicit", ...tls } });
      assert.throws(
        () => TlsProvider.create(config, silent),
        (err: unknown) => {
          assert.ok(err instanceof TlsConfigError, String(err));
          assert.equal(err.key, key);
          assert.match(err.message, message);
          return true;
        },
      );
    }
  });

  it("warns, naming tls.cert and the date, when the certificate has expired, at start and when a renewal brings another expired one", async () => {
    const dir = await mkTemp();
    const certPath = join(dir, "cert.pem");
    const keyPath = join(dir, "key.pem");
    // 0 days: valid from a minute ago until a minute ago.
    const expired = makeSelfSigned(["localhost", "127.0.0.1"], 0);
    await writeFile(certPath, expired.cert);
    await writeFile(keyPath, expired.key);
    const t = await startTestServer({ config: { tls: { mode: "explicit", cert: certPath, key: keyPath } } });
    try {
      const dated = (): Record<string, unknown>[] => t.logs.filter((l) => l.event === "tls-cert-dates");
      const [first] = dated();
      assert.ok(first, "a warning at start");
      assert.equal(first.level, 40);
      assert.equal(first.cert, certPath);
      assert.match(String(first.msg), /tls\.cert .*expired on \w{3} +\d+ [\d:]+ \d{4} GMT/);
      // It is served all the same (a client that does not check certificates can still log in).
      const c = await FtpsControl.explicit(t.port);
      await c.login();
      await c.quit();

      const again = makeSelfSigned(["localhost", "127.0.0.1"], 0);
      await writeFile(keyPath, again.key);
      await writeFile(certPath, again.cert);
      t.server.context.tls?.maybeReload(true);
      assert.equal(dated().length, 2, "a renewal that brings an expired certificate is said too");

      const valid = makeSelfSigned(["localhost", "127.0.0.1"]);
      await writeFile(keyPath, valid.key);
      await writeFile(certPath, valid.cert);
      t.server.context.tls?.maybeReload(true);
      assert.equal(dated().length, 2, "a valid certificate is not");
    } finally {
      await t.close();
    }
  });

  it("serves a renewed certificate to new connections without dropping running sessions", async () => {
    const dir = await mkTemp();
    const certPath = join(dir, "cert.pem");
    const keyPath = join(dir, "key.pem");
    const first = makeSelfSigned(["localhost", "127.0.0.1"]);
    await writeFile(certPath, first.cert);
    await writeFile(keyPath, first.key);
    const t = await startTestServer({ config: { tls: { mode: "explicit", cert: certPath, key: keyPath } } });
    try {
      const fingerprint = (c: FtpsControl): string | undefined => (c.socket as TLSSocket).getPeerX509Certificate()?.fingerprint256;
      const old = await FtpsControl.explicit(t.port);
      await old.login();
      await old.protect();
      assert.equal(fingerprint(old), new X509Certificate(first.cert).fingerprint256);

      const second = makeSelfSigned(["localhost", "127.0.0.1"]);
      await writeFile(keyPath, second.key);
      await writeFile(certPath, second.cert);
      t.server.context.tls?.maybeReload(true); // what the periodic check does once the files change
      assert.ok(t.logs.some((l) => l.event === "tls-reload" && l.level === 30));

      const fresh = await FtpsControl.explicit(t.port);
      assert.equal(fingerprint(fresh), new X509Certificate(second.cert).fingerprint256);
      await fresh.quit();

      // The running session still transfers over its own TLS session.
      const dc = await old.tlsData(await old.epsv());
      old.send("LIST");
      assert.equal((await old.reply()).code, 150);
      await readToEnd(dc.socket);
      assert.equal((await old.reply()).code, 226);
      await old.quit();

      // A broken renewal keeps the current certificate.
      await writeFile(certPath, "garbage");
      t.server.context.tls?.maybeReload(true);
      assert.ok(t.logs.some((l) => l.event === "tls-reload" && l.level === 40));
      const third = await FtpsControl.explicit(t.port);
      assert.equal(fingerprint(third), new X509Certificate(second.cert).fingerprint256);
      await third.quit();
    } finally {
      await t.close();
    }
  });
});

function mkTemp(): Promise<string> {
  return mkdtemp(join(scratch, "t-"));
}

describe("the ACK after the server's handshake flight", () => {
  it("is asked for once per handshake, on the connection's own socket, once the flight has gone out", async () => {
    const { cert, key } = makeSelfSigned(["localhost"]);
    const calls: { fd: number; flightOut: boolean; rc: number }[] = [];
    const real = quickAckBinding();
    const server = createServer((socket) => {
      const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
      const t = new TLSSocket(socket, { isServer: true, cert, key });
      t.on("error", () => undefined);
      // Asked for with the server's flight (ServerHello onwards) already written to the socket.
      const spy = {
        quickAck(at: number): number {
          const rc = real ? real.quickAck(at) : 0;
          calls.push({ fd: at, flightOut: at === fd && sentBytes(socket) > 0, rc });
          return rc;
        },
      };
      quickAckAfterFlight(t, socket, spy);
      t.once("secure", () => t.end("done"));
    });
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    try {
      const { port } = server.address() as AddressInfo;
      for (const maxVersion of ["TLSv1.3", "TLSv1.2"] as const) {
        const c = tlsConnect({ host: "127.0.0.1", port, rejectUnauthorized: false, maxVersion });
        c.on("error", () => undefined);
        assert.equal((await readToEnd(c)).toString(), "done", maxVersion);
      }
    } finally {
      server.close();
    }
    assert.equal(calls.length, 2, "one per handshake");
    for (const c of calls) {
      assert.ok(c.flightOut, "after the flight was written");
      assert.equal(c.rc, 0, "TCP_QUICKACK set");
    }
  });
});

/** Bytes written to `socket`'s TCP handle, TLS's own writes included (the Socket's `bytesWritten`
 * counts only what went through the Socket). */
function sentBytes(socket: Socket): number {
  return (socket as unknown as { _handle: { bytesWritten?: number } })._handle.bytesWritten ?? 0;
}
