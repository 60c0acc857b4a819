import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { closeSync, mkdirSync, mkdtempSync, openSync, rmSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, it } from "node:test";
import * as zlib from "node:zlib";
import { crc32Hasher, digestFile, DigestError, MAX_QUEUED, resetDigestWorkerForTest } from "../src/fs/digest.ts";
import { JailedFs } from "../src/fs/jail.ts";
import type { FsFactory } from "../src/protocol/context.ts";
import { RawClient } from "./helpers/raw.ts";
import { startTestServer, waitFor, type TestServer } from "./helpers/server.ts";

const hex = (algo: string, data: Buffer): string => createHash(algo).update(data).digest("hex");
const crc = (data: Buffer): string => (zlib.crc32(data) >>> 0).toString(16).padStart(8, "0");

/** A sparse file this big takes seconds to hash, and no disk. */
const HUGE = 8 * 1024 ** 3;

describe("checksums: HASH (draft-bryan-ftpext-hash) and XCRC/XMD5/XSHA*", () => {
  let t: TestServer;
  const data = randomBytes(3_000_001);
  after(async () => t?.close());

  it("FEAT lists HASH with the selected algorithm marked, and each X command", async () => {
    t = await startTestServer({ users: [{ name: "lister", password: "lister-pw", perms: ["list"] }] });
    const home = t.home("alice");
    writeFileSync(join(home, "data.bin"), data);
    writeFileSync(join(home, "a b.bin"), data.subarray(0, 1000));
    writeFileSync(join(home, "empty"), "");
    mkdirSync(join(home, "dir"));
    const c = await RawClient.connect(t.port);
    const feat = await c.expect("FEAT", 211);
    assert.ok(feat.lines.includes(" HASH SHA-1;SHA-256*;SHA-512;MD5;CRC32"), feat.lines.join("\n"));
    for (const x of ["XCRC", "XMD5", "XSHA1", "XSHA256", "XSHA512"]) assert.ok(feat.lines.includes(` ${x}`), x);
    assert.equal(await c.expect("HASH data.bin", 530).then(() => true), true);
    await c.close();
  });

  it("HASH answers 213 with the algorithm, the inclusive byte range, lower-case hex and the path as sent", async () => {
    const c = await RawClient.connect(t.port);
    await c.login();
    const r = await c.expect("HASH data.bin", 213);
    assert.equal(r.message, `SHA-256 0-${data.length - 1} ${hex("sha256", data)} data.bin`);
    assert.equal((await c.expect("HASH /empty", 213)).message, `SHA-256 0-0 ${hex("sha256", Buffer.alloc(0))} /empty`);
    // A path with a space, quoted as WinSCP sends it.
    assert.equal((await c.expect('HASH "a b.bin"', 213)).message, `SHA-256 0-999 ${hex("sha256", data.subarray(0, 1000))} "a b.bin"`);
    assert.equal((await c.expect("HASH a b.bin", 213)).message, `SHA-256 0-999 ${hex("sha256", data.subarray(0, 1000))} a b.bin`);
    await c.close();
  });

  it("a name in double quotes with no space in it is that name, quotes and all: the checksum of another file is never given for it", async () => {
    // WinSCP quotes a name only when it holds a space; a listed name such as "q" (quotes in the
    // name) is sent as it is, and must not be read as q.
    const home = t.home("alice");
    writeFileSync(join(home, '"q"'), "quoted");
    writeFileSync(join(home, "q"), "plain");
    const c = await RawClient.connect(t.port);
    await c.login();
    try {
      assert.equal((await c.expect('HASH "q"', 213)).message, `SHA-256 0-5 ${hex("sha256", Buffer.from("quoted"))} "q"`);
      assert.equal((await c.expect('XMD5 "q"', 213)).message, hex("md5", Buffer.from("quoted")).toUpperCase());
      assert.equal((await c.expect('XMD5 "q" 0 2', 213)).message, hex("md5", Buffer.from("qu")).toUpperCase());
      assert.equal((await c.expect("XMD5 q", 213)).message, hex("md5", Buffer.from("plain")).toUpperCase());
    } finally {
      await c.close();
    }
  });

  it("the X commands with a range take the name before it as written, a space at its end included", async () => {
    const home = t.home("alice");
    writeFileSync(join(home, "trail "), "trailing");
    writeFileSync(join(home, "trail"), "plain");
    const c = await RawClient.connect(t.port);
    await c.login();
    try {
      assert.equal((await c.expect("XMD5 trail ", 213)).message, hex("md5", Buffer.from("trailing")).toUpperCase());
      assert.equal((await c.expect("XMD5 trail  0 4", 213)).message, hex("md5", Buffer.from("trai")).toUpperCase());
      assert.equal((await c.expect("XMD5 trail 0 4", 213)).message, hex("md5", Buffer.from("plai")).toUpperCase());
    } finally {
      await c.close();
    }
  });

  it("OPTS HASH reads and changes the session's algorithm; an unknown one changes nothing", async () => {
    const c = await RawClient.connect(t.port);
    await c.login();
    assert.equal((await c.expect("OPTS HASH", 200)).message, "SHA-256");
    for (const [name, algo, want] of [
      ["sha-1", "SHA-1", hex("sha1", data)],
      ["SHA-512", "SHA-512", hex("sha512", data)],
      ["md5", "MD5", hex("md5", data)],
      ["CRC32", "CRC32", crc(data)],
    ] as const) {
      assert.equal((await c.expect(`OPTS HASH ${name}`, 200)).message, algo);
      assert.equal((await c.expect("HASH data.bin", 213)).message, `${algo} 0-${data.length - 1} ${want} data.bin`);
    }
    assert.match((await c.expect("OPTS HASH CRC64", 501)).message, /Unknown algorithm, current selection not changed/);
    assert.equal((await c.expect("OPTS HASH", 200)).message, "CRC32");
    const feat = await c.expect("FEAT", 211);
    assert.ok(feat.lines.includes(" HASH SHA-1;SHA-256;SHA-512;MD5;CRC32*"), feat.lines.join("\n"));
    // Another session starts from the default.
    const d = await RawClient.connect(t.port);
    await d.login();
    assert.match((await d.expect("HASH empty", 213)).message, /^SHA-256 /);
    await d.close();
    await c.close();
  });

  it("XCRC, XMD5, XSHA1 (and XSHA), XSHA256, XSHA512 answer 213 with upper-case hex, of the whole file or of start to end", async () => {
    const c = await RawClient.connect(t.port);
    await c.login();
    assert.equal((await c.expect("XCRC data.bin", 213)).message, crc(data).toUpperCase());
    assert.equal((await c.expect("XMD5 data.bin", 213)).message, hex("md5", data).toUpperCase());
    assert.equal((await c.expect("XSHA1 data.bin", 213)).message, hex("sha1", data).toUpperCase());
    assert.equal((await c.expect("XSHA data.bin", 213)).message, hex("sha1", data).toUpperCase());
    assert.equal((await c.expect("XSHA256 data.bin", 213)).message, hex("sha256", data).toUpperCase());
    assert.equal((await c.expect("XSHA512 data.bin", 213)).message, hex("sha512", data).toUpperCase());
    // start to end, end exclusive (as ProFTPD's).
    assert.equal((await c.expect("XMD5 data.bin 100 2000000", 213)).message, hex("md5", data.subarray(100, 2_000_000)).toUpperCase());
    assert.equal((await c.expect(`XCRC data.bin 0 ${data.length}`, 213)).message, crc(data).toUpperCase());
    assert.equal((await c.expect('XSHA256 "a b.bin" 10 20', 213)).message, hex("sha256", data.subarray(10, 20)).toUpperCase());
    assert.equal((await c.expect("XSHA256 a b.bin", 213)).message, hex("sha256", data.subarray(0, 1000)).toUpperCase());
    // Bad ranges.
    assert.match((await c.expect(`XMD5 data.bin 0 ${data.length + 1}`, 501)).message, /beyond the end of the file/);
    assert.match((await c.expect("XMD5 data.bin 20 20", 501)).message, /Start must be below end/);
    // One number is part of the name, not half a range.
    await c.expect("XMD5 data.bin 5", 550);
    await c.expect("XCRC", 501);
    await c.close();
  });

  it("what cannot be read as a file is refused: missing, a directory, outside the jail, without the download permission", async () => {
    const home = t.home("alice");
    symlinkSync("/etc/passwd", join(home, "out"));
    const c = await RawClient.connect(t.port);
    await c.login();
    await c.expect("HASH nothing-here", 550);
    assert.match((await c.expect("HASH dir", 553)).message, /Not a regular file/);
    await c.expect("HASH /", 553);
    await c.expect("XCRC dir", 550);
    // A name ending in / is a directory's, as for RETR: not the file without the slash.
    assert.match((await c.expect("HASH empty/", 553)).message, /Not a regular file/);
    await c.expect('HASH "a b.bin/"', 553);
    await c.expect("XCRC empty/", 550);
    await c.expect("XMD5 empty\\ 0 0", 550);
    await c.expect("HASH ../../../../etc/passwd", 550);
    await c.expect("HASH out", 550);
    await c.expect("XSHA1 out", 550);
    await c.expect("HASH a\u0000b", 501);
    await c.close();
    const ro = await RawClient.connect(t.port);
    await ro.login("bob");
    writeFileSync(join(t.home("bob"), "f"), "bob's");
    assert.equal((await ro.expect("XMD5 f", 213)).message, hex("md5", Buffer.from("bob's")).toUpperCase());
    await ro.close();
    const lister = await RawClient.connect(t.port);
    await lister.login("lister");
    writeFileSync(join(t.home("lister"), "f"), "x");
    await lister.expect("HASH f", 550);
    await lister.expect("XCRC f", 550);
    await lister.expect("OPTS HASH MD5", 200);
    await lister.close();
  });

  it("odd input: over-long paths and names, numbers past any file, pipelined behind a download, OPTS HASH before login", async () => {
    const c = await RawClient.connect(t.port);
    assert.equal((await c.expect("OPTS HASH MD5", 200)).message, "MD5");
    await c.login();
    assert.match((await c.expect(`HASH ${"a".repeat(256)}`, 550)).message, /No such file or directory/);
    // A line over limits.maxLineLength is refused as a line, and the session goes on.
    assert.match((await c.expect(`XCRC ${"d/".repeat(2100)}x`, 500)).message, /Command line too long/);
    assert.match((await c.expect(`XSHA1 data.bin 9007199254740993 9007199254740994`, 501)).message, /beyond the end/);
    // Past 2^53 a number is rounded: the reply names the end as it was sent.
    assert.match((await c.expect(`XSHA1 data.bin 0 9007199254740995`, 501)).message, /^End 9007199254740995 is beyond the end/);
    // Seventeen digits are no offset: the words are part of the name, which is not there.
    await c.expect("XSHA1 data.bin 0 12345678901234567", 550);
    await c.expect('HASH "', 550);
    await c.expect('HASH ""', 550); // a name of two quotes (no space in it: not unquoted), not there
    // Sent in one packet behind a download: the checksum waits its turn and the session goes on.
    const sock = await c.pasv();
    c.send("RETR a b.bin\r\nHASH a b.bin");
    await c.expectReply(150);
    sock.resume();
    await c.expectReply(226);
    assert.match((await c.reply()).message, /^MD5 0-999 /);
    sock.destroy();
    await c.expect("NOOP", 200);
    await c.close();
  });

  it("a session that goes away during a long checksum stops it; the next one is answered", async () => {
    const big = join(t.home("alice"), "huge.bin");
    writeFileSync(big, "");
    truncateSync(big, HUGE);
    const c = await RawClient.connect(t.port);
    await c.login();
    await c.expect("OPTS HASH SHA-512", 200);
    c.send("HASH huge.bin");
    assert.ok(await waitFor(() => t.server.sessions.size > 0 && [...t.server.sessions].some((s) => s.hashing !== null), 5000));
    await c.close();
    // Cancelled between two reads: the worker is free long before 8 GiB could be hashed.
    const d = await RawClient.connect(t.port);
    await d.login();
    assert.equal((await d.expect("XCRC empty", 213, 4000)).message, "00000000");
    await d.close();
  });

  it("ABOR stops a long checksum: 426 for it, then 226, and the session goes on", async () => {
    const c = await RawClient.connect(t.port);
    await c.login();
    for (const cmd of ["HASH huge.bin", "XSHA512 huge.bin", `XMD5 huge.bin 0 ${HUGE}`]) {
      c.send(cmd);
      assert.ok(await waitFor(() => [...t.server.sessions].some((s) => s.hashing !== null), 5000));
      c.send("ABOR");
      // Within 4 s: hashing 8 GiB would take longer than that.
      const first = await c.reply(4000);
      assert.equal(first.code, 426, `${cmd}: ${first.lines.join(" | ")}`);
      assert.match(first.message, /Checksum aborted/);
      await c.expectReply(226);
      assert.equal((await c.expect("XCRC empty", 213)).message, "00000000");
    }
    await c.expect("NOOP", 200);
    // ABOR with nothing running is still 225.
    await c.expect("ABOR", 225);
    await c.close();
  });

  it("ABOR of a checksum closes the data connection opened before it and frees its port, as without one (RFC 959 §4.1.3)", async () => {
    const c = await RawClient.connect(t.port);
    await c.login();
    const data = await c.epsv();
    assert.equal(t.server.context.pool.used, 1);
    c.send("XSHA512 huge.bin");
    assert.ok(await waitFor(() => [...t.server.sessions].some((s) => s.hashing !== null), 5000));
    c.send("ABOR");
    await c.expectReply(426);
    await c.expectReply(226);
    assert.ok(await waitFor(() => t.server.context.pool.used === 0, 4000), `ports held: ${t.server.context.pool.used}`);
    await c.expect("RETR empty", 425);
    data.destroy();
    await c.close();
  });

  it("ABOR or QUIT sent in the same packet as the checksum command stops it at once", async () => {
    const c = await RawClient.connect(t.port);
    await c.login();
    c.sendRaw("XSHA512 huge.bin\r\nABOR\r\n");
    const first = await c.reply(4000);
    assert.equal(first.code, 426, first.lines.join(" | "));
    await c.expectReply(226);
    assert.equal((await c.expect("XCRC empty", 213)).message, "00000000");
    c.sendRaw("HASH huge.bin\r\nQUIT\r\n");
    const r = await c.reply(4000);
    assert.equal(r.code, 221, r.lines.join(" | "));
    await c.closed(4000);
    assert.ok(await waitFor(() => [...t.server.sessions].every((s) => s.hashing === null), 4000));
  });

  it("ABOR behind a queued command stops a long checksum at once and keeps its place: 426, the command's reply, then 226", async () => {
    const c = await RawClient.connect(t.port);
    await c.login();
    // In the same packet as the checksum command, and sent while it runs.
    c.sendRaw("XSHA512 huge.bin\r\nNOOP\r\nABOR\r\n");
    const codes = [];
    for (let i = 0; i < 3; i++) codes.push((await c.reply(4000)).code);
    assert.deepEqual(codes, [426, 200, 226]);
    c.send("HASH huge.bin");
    assert.ok(await waitFor(() => [...t.server.sessions].some((s) => s.hashing !== null), 5000));
    c.sendRaw("NOOP\r\nABOR\r\n");
    codes.length = 0;
    for (let i = 0; i < 3; i++) codes.push((await c.reply(4000)).code);
    assert.deepEqual(codes, [426, 200, 226]);
    assert.equal((await c.expect("XCRC empty", 213)).message, "00000000");
    await c.close();
  });

  it("QUIT behind a queued command stops a long checksum at once and keeps its place: 426, the command's reply, then 221", async () => {
    const c = await RawClient.connect(t.port);
    await c.login();
    c.send("XSHA512 huge.bin");
    assert.ok(await waitFor(() => [...t.server.sessions].some((s) => s.hashing !== null), 5000));
    c.sendRaw("NOOP\r\nQUIT\r\n");
    const codes = [];
    // Within 4 s each: the checksum of the whole file would take far longer.
    for (let i = 0; i < 3; i++) codes.push((await c.reply(4000)).code);
    assert.deepEqual(codes, [426, 200, 221]);
    await c.closed(4000);
    assert.ok(await waitFor(() => [...t.server.sessions].every((s) => s.hashing === null), 4000));
  });

  it("QUIT during a long checksum: 221 at once and the connection closes; the checksum stops", async () => {
    const c = await RawClient.connect(t.port);
    await c.login();
    c.send("XSHA256 huge.bin");
    assert.ok(await waitFor(() => [...t.server.sessions].some((s) => s.hashing !== null), 5000));
    c.send("QUIT");
    const r = await c.reply(4000);
    assert.equal(r.code, 221, r.lines.join(" | "));
    await c.closed(4000);
    const d = await RawClient.connect(t.port);
    await d.login();
    assert.equal((await d.expect("XCRC empty", 213, 4000)).message, "00000000");
    await d.close();
  });

  it("STAT with a path during a long checksum answers the status, as during a transfer, not a listing beside the queue", async () => {
    const c = await RawClient.connect(t.port);
    await c.login();
    c.send("XSHA512 huge.bin");
    assert.ok(await waitFor(() => [...t.server.sessions].some((s) => s.hashing !== null), 5000));
    // Run beside the checksum, a listing could answer after commands sent behind it (RFC 959:
    // replies come in the order of the commands); the status is answered at once.
    const status = await c.cmd("STAT dir");
    assert.equal(status.code, 211, status.lines.join(" | "));
    c.send("ABOR");
    assert.equal((await c.reply(4000)).code, 426);
    await c.expectReply(226);
    // With nothing running, STAT with a path lists again.
    const listed = await c.expect("STAT dir", 213);
    assert.match(listed.lines[0] ?? "", /^213-Status of \/dir/);
    await c.close();
  });

  it("STAT during a long checksum gives the status of that operation (RFC 959 §4.1.3): the file being hashed", async () => {
    const c = await RawClient.connect(t.port);
    await c.login();
    assert.ok(!(await c.expect("STAT", 211)).lines.some((l) => /checksum/i.test(l)));
    c.send("XSHA512 huge.bin");
    assert.ok(await waitFor(() => [...t.server.sessions].some((s) => s.hashing !== null), 5000));
    const status = await c.expect("STAT", 211);
    assert.ok(status.lines.includes(" Checksum in progress: /huge.bin"), status.lines.join(" | "));
    c.send("ABOR");
    assert.equal((await c.reply(4000)).code, 426);
    await c.expectReply(226);
    await c.close();
  });

  it("ABOR of a checksum still waiting behind another session's long one is answered at once, and that one goes on", async () => {
    const bigger = join(t.home("alice"), "bigger.bin");
    writeFileSync(bigger, "");
    truncateSync(bigger, 8 * HUGE);
    const a = await RawClient.connect(t.port);
    await a.login();
    a.send("XSHA512 bigger.bin");
    assert.ok(await waitFor(() => [...t.server.sessions].some((s) => s.hashing !== null), 5000));
    const b = await RawClient.connect(t.port);
    await b.login();
    b.send("XSHA512 bigger.bin");
    assert.ok(await waitFor(() => [...t.server.sessions].filter((s) => s.hashing !== null).length === 2, 5000));
    b.send("ABOR");
    // Within 4 s: the one before it, 64 GiB, would take far longer than that.
    const first = await b.reply(4000);
    assert.equal(first.code, 426, first.lines.join(" | "));
    await b.expectReply(226);
    await b.expect("NOOP", 200);
    // The same for a session that goes away: it is gone at once, its file closed.
    b.send("XCRC bigger.bin");
    assert.ok(await waitFor(() => [...t.server.sessions].filter((s) => s.hashing !== null).length === 2, 5000));
    await b.close();
    assert.ok(await waitFor(() => t.server.sessions.size === 1, 4000));
    // The first is still being computed, and stops on its ABOR.
    assert.equal([...t.server.sessions].filter((s) => s.hashing !== null).length, 1);
    a.send("ABOR");
    assert.equal((await a.reply(4000)).code, 426);
    await a.expectReply(226);
    await a.close();
  });
});

describe("a connection that goes while its checksum is being set up", () => {
  it("is not hashed for nobody: the checksum its command then starts is stopped, and the next session's is answered", async () => {
    // The file is opened, then the open is held until the client has gone (reset) and its session
    // is torn down: the command goes on after that, as a slow disk would make it.
    let opened = (): void => undefined;
    const inOpen = new Promise<void>((resolve) => (opened = resolve));
    let release = (): void => undefined;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slowOpen: FsFactory = async (home, opts) => {
      const jail = await JailedFs.open(home, opts);
      const open = jail.openDownload.bind(jail);
      jail.openDownload = async (v) => {
        const dl = await open(v);
        opened();
        await gate;
        return dl;
      };
      return jail;
    };
    const t = await startTestServer({ openFs: slowOpen });
    try {
      const big = join(t.home("alice"), "huge.bin");
      writeFileSync(big, "");
      truncateSync(big, 8 * HUGE);
      writeFileSync(join(t.home("alice"), "empty"), "");
      const a = await RawClient.connect(t.port);
      await a.login();
      a.send("XSHA512 huge.bin");
      await inOpen;
      a.socket.resetAndDestroy();
      assert.ok(await waitFor(() => t.server.sessions.size === 0, 4000));
      release();
      const b = await RawClient.connect(t.port);
      await b.login();
      // Within 4 s: 64 GiB hashed first would take far longer than that.
      assert.equal((await b.expect("XCRC empty", 213, 4000)).message, "00000000");
      await b.close();
    } finally {
      release();
      await t.close();
    }
  });
});

describe("transfer.checksums: false", () => {
  it("turns the checksum commands off: 502, out of FEAT, OPTS HASH not understood", async () => {
    const t = await startTestServer({ config: { transfer: { checksums: false } }, users: [{ name: "lister", password: "lister-pw", perms: ["list"] }] });
    try {
      writeFileSync(join(t.home("alice"), "f"), "x");
      const c = await RawClient.connect(t.port);
      await c.login();
      const feat = await c.expect("FEAT", 211);
      assert.ok(!feat.lines.some((l) => /^ (HASH|XCRC|XMD5|XSHA)/.test(l)), feat.lines.join("\n"));
      assert.ok(feat.lines.includes(" SIZE"));
      for (const cmd of ["HASH f", "XCRC f", "XMD5 f", "XSHA1 f", "XSHA f", "XSHA256 f", "XSHA512 f 0 1"]) {
        assert.match((await c.expect(cmd, 502)).message, /Checksums are turned off/);
      }
      await c.expect("OPTS HASH", 501);
      await c.expect("OPTS HASH MD5", 501);
      await c.close();
      // The same 502 for a user who could not read the file anyway.
      const l = await RawClient.connect(t.port);
      await l.login("lister");
      await l.expect("HASH f", 502);
      await l.expect("XCRC ../alice/f 0 1", 502);
      await l.close();
    } finally {
      await t.close();
    }
  });
});

describe("digestFile", () => {
  const dir = mkdtempSync(join(tmpdir(), "berth-digest-"));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("cancel() stops a digest between reads; it rejects as cancelled", async () => {
    const p = join(dir, "huge");
    writeFileSync(p, "");
    truncateSync(p, HUGE);
    const fd = openSync(p, "r");
    try {
      const job = digestFile(fd, "SHA-512", 0, HUGE);
      setTimeout(() => job.cancel(), 50);
      await assert.rejects(job.result, (err: unknown) => err instanceof DigestError && err.kind === "cancelled");
    } finally {
      closeSync(fd);
    }
  });

  it(`more than ${MAX_QUEUED} waiting are refused as busy; the refused ones take no slot, one cancelled while waiting gives its up at once`, async () => {
    const p = join(dir, "huge2");
    writeFileSync(p, "");
    truncateSync(p, HUGE);
    const fd = openSync(p, "r");
    try {
      const jobs = Array.from({ length: MAX_QUEUED }, () => digestFile(fd, "SHA-256", 0, HUGE));
      const refused = digestFile(fd, "MD5", 0, 10);
      await assert.rejects(refused.result, (err: unknown) => err instanceof DigestError && err.kind === "busy");
      const cancelled = (err: unknown): boolean => err instanceof DigestError && err.kind === "cancelled";
      const settled = Promise.all(jobs.map((j) => assert.rejects(j.result, cancelled)));
      // One cancelled while it waits gives its place up at once (the first is still being computed).
      jobs[MAX_QUEUED - 1]?.cancel();
      const taken = digestFile(fd, "MD5", 0, 10);
      const takenSettled = assert.rejects(taken.result, cancelled);
      for (const j of jobs) j.cancel();
      taken.cancel();
      await settled;
      await takenSettled;
      assert.equal(await digestFile(fd, "CRC32", 0, 0).result, "00000000");
    } finally {
      closeSync(fd);
    }
  });

  it("without a worker the digest is computed on the main thread, the same", async () => {
    const data = randomBytes(2_500_000);
    const p = join(dir, "plain");
    writeFileSync(p, data);
    const fd = openSync(p, "r");
    await resetDigestWorkerForTest(true);
    try {
      assert.equal(await digestFile(fd, "SHA-256", 0, data.length).result, hex("sha256", data));
      assert.equal(await digestFile(fd, "CRC32", 7, 1_000_007).result, crc(data.subarray(7, 1_000_007)));
      assert.equal(await digestFile(fd, "MD5", 0, 0).result, hex("md5", Buffer.alloc(0)));
    } finally {
      await resetDigestWorkerForTest(false);
      closeSync(fd);
    }
  });

  it("CRC-32 without zlib.crc32 (Node before 20.15) is the same, fed in any pieces", () => {
    const data = randomBytes(100_003);
    for (const z of [zlib, {}]) {
      const h = crc32Hasher(z);
      h.update(data.subarray(0, 7));
      h.update(data.subarray(7, 65_536));
      h.update(data.subarray(65_536));
      assert.equal(h.digest(), crc(data));
      assert.equal(crc32Hasher(z).digest(), "00000000");
    }
  });

  it("a file that ends before the range does (cut short after it was opened) rejects as io, on the worker and without it, never with the digest of fewer bytes", async () => {
    const p = join(dir, "short");
    writeFileSync(p, "0123456789");
    const fd = openSync(p, "r");
    try {
      for (const noWorker of [false, true]) {
        await resetDigestWorkerForTest(noWorker);
        await assert.rejects(digestFile(fd, "SHA-256", 0, 20).result, (err: unknown) => err instanceof DigestError && err.kind === "io");
        await assert.rejects(digestFile(fd, "CRC32", 4, 11).result, (err: unknown) => err instanceof DigestError && err.kind === "io");
        assert.equal(await digestFile(fd, "MD5", 0, 10).result, hex("md5", Buffer.from("0123456789")));
      }
    } finally {
      await resetDigestWorkerForTest(false);
      closeSync(fd);
    }
  });

  it("a read error rejects as io with its code", async () => {
    const fd = openSync(dir, "r"); // a directory: read() fails with EISDIR
    try {
      await assert.rejects(digestFile(fd, "MD5", 0, 10).result, (err: unknown) => err instanceof DigestError && err.kind === "io" && err.code === "EISDIR");
    } finally {
      closeSync(fd);
    }
  });
});
