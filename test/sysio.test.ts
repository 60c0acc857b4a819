/**
 * fs/sysio.ts: the small-file path's descriptor calls through the addon (native/io.c) behave as
 * Node's fs.*Sync do, results and errors alike, so that nothing above them can tell which ran.
 */
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { once } from "node:events";
import { execFileSync } from "node:child_process";
import { connect, createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { ioBinding, listenBinding } from "../src/native.ts";
import { deepDir, shallowDeep } from "./helpers/deep.ts";
import { closeNow, NEG_EAGAIN, openNow, regularFileSize, sysError, tryRead, tryWrite, WRITE_TEXT_UNITS, writeNowAt, writeText } from "../src/fs/sysio.ts";
import type { RawClient } from "./helpers/raw.ts";
import { rawLogin, withServer } from "./helpers/run.ts";

const { O_WRONLY, O_RDONLY, O_CREAT, O_EXCL, O_NOFOLLOW } = fs.constants;

/** What `fn` throws, as the fields an error of Node's call has. */
function thrown(fn: () => unknown): Record<string, unknown> {
  try {
    fn();
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    return { name: e.name, message: e.message, code: e.code, errno: e.errno, syscall: e.syscall, path: e.path };
  }
  assert.fail("nothing was thrown");
}

describe("descriptor calls of the small-file path (fs/sysio.ts)", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-sysio-"));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("the addon has the calls where it is built (so the rest of this file tests them, not Node's)", { skip: process.platform !== "linux" && "not Linux" }, () => {
    if (!fs.existsSync(new URL("../native/build/berth_native.node", import.meta.url))) return;
    assert.ok(ioBinding(), "native/io.c is part of the built addon");
  });

  it("open, write at a position, write at the end and close give the file Node's calls would", () => {
    const file = join(dir, "a");
    const fd = openNow(file, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o600);
    assert.equal(writeNowAt(fd, Buffer.from("xxhello"), 2, 5, 0), 5);
    assert.equal(writeNowAt(fd, Buffer.from(" world"), 0, 6, 5), 6);
    assert.equal(writeNowAt(fd, Buffer.alloc(0), 0, 0, null), 0);
    closeNow(fd);
    assert.equal(fs.readFileSync(file, "utf8"), "hello world");
    assert.equal(fs.statSync(file).mode & 0o777, 0o600 & ~process.umask());
    // Close-on-exec, as libuv opens every file.
    const again = openNow(file, O_RDONLY);
    try {
      const flags = fs.readFileSync(`/proc/self/fdinfo/${again}`, "utf8").match(/^flags:\s+(\d+)/m)?.[1];
      assert.ok(flags !== undefined && (Number.parseInt(flags, 8) & 0o2000000) !== 0, `O_CLOEXEC set (flags ${flags})`);
    } finally {
      closeNow(again);
    }
  });

  it("failures throw exactly what fs.openSync, fs.writeSync and fs.closeSync throw", () => {
    const missing = join(dir, "no", "such");
    assert.deepEqual(thrown(() => openNow(missing, O_RDONLY)), thrown(() => fs.openSync(missing, O_RDONLY)));
    const taken = join(dir, "taken");
    fs.writeFileSync(taken, "");
    const excl = O_WRONLY | O_CREAT | O_EXCL;
    assert.deepEqual(thrown(() => openNow(taken, excl, 0o644)), thrown(() => fs.openSync(taken, excl, 0o644)));
    const link = join(dir, "link");
    fs.symlinkSync(taken, link);
    assert.deepEqual(thrown(() => openNow(link, O_RDONLY | O_NOFOLLOW)), thrown(() => fs.openSync(link, O_RDONLY | O_NOFOLLOW)));
    // A NUL in a path: Node's own refusal, not a system error.
    const nul = join(dir, "a\0b");
    assert.deepEqual(thrown(() => openNow(nul, O_RDONLY)), thrown(() => fs.openSync(nul, O_RDONLY)));
    assert.equal(thrown(() => openNow(nul, O_RDONLY)).code, "ERR_INVALID_ARG_VALUE");
    // A path longer than the kernel takes.
    const long = join(dir, "x".repeat(5000));
    assert.deepEqual(thrown(() => openNow(long, O_RDONLY)), thrown(() => fs.openSync(long, O_RDONLY)));
    // Writing to a descriptor opened for reading, closing one that is not open.
    const ro = fs.openSync(taken, O_RDONLY);
    try {
      assert.deepEqual(thrown(() => writeNowAt(ro, Buffer.from("x"), 0, 1, 0)), thrown(() => fs.writeSync(ro, Buffer.from("x"), 0, 1, 0)));
    } finally {
      fs.closeSync(ro);
    }
    assert.deepEqual(thrown(() => closeNow(ro)), thrown(() => fs.closeSync(ro)));
    assert.equal(sysError(-2, "open", "/x").message, "ENOENT: no such file or directory, open '/x'");
  });

  it("a range outside the buffer is a TypeError, never a read or write past its end", { skip: !ioBinding() && "addon not built" }, () => {
    const io = ioBinding();
    assert.ok(io);
    const file = join(dir, "range");
    const fd = fs.openSync(file, "w+");
    try {
      assert.throws(() => io.ioWrite(fd, Buffer.alloc(4), 2, 3, 0), TypeError);
      assert.throws(() => io.ioWrite(fd, Buffer.alloc(4), -1, 1, 0), TypeError);
      assert.throws(() => io.ioRead(fd, Buffer.alloc(4), 0, 5), TypeError);
      assert.throws(() => io.ioWrite(fd, Buffer.alloc(4), 0, 1, -2), TypeError);
      assert.throws(() => io.ioWrite(fd, "text" as unknown as Buffer, 0, 1, 0), TypeError);
      assert.equal(fs.fstatSync(fd).size, 0);
    } finally {
      fs.closeSync(fd);
    }
  });

  it("on a non-blocking socket: reads return -EAGAIN when nothing waits, the bytes, then 0 at the peer's end; writes to a reset peer return its error", { skip: !listenBinding() && "addon not built" }, async () => {
    await withAccepted(async (fd, client) => {
      const buf = Buffer.alloc(64);
      assert.equal(tryRead(fd, buf, 0, buf.length), NEG_EAGAIN);
      client.write("hello");
      client.end();
      let got = "";
      let n = -1;
      for (let i = 0; i < 200 && n !== 0; i++) {
        n = tryRead(fd, buf, 0, buf.length);
        if (n > 0) got += buf.toString("latin1", 0, n);
        else if (n < 0) await new Promise((r) => setTimeout(r, 5));
      }
      assert.equal(got, "hello");
      assert.equal(n, 0);
      assert.equal(tryRead(fd, buf, 0, buf.length), 0, "the end reads as 0 again");
      assert.equal(tryWrite(fd, Buffer.from("xyz"), 0, 3), 3);
      client.resetAndDestroy();
      let rc = 0;
      for (let i = 0; i < 200 && rc >= 0; i++) {
        rc = tryWrite(fd, Buffer.from("xyz"), 0, 3);
        if (rc >= 0) await new Promise((r) => setTimeout(r, 5));
      }
      assert.ok(rc === -104 || rc === -32, `ECONNRESET or EPIPE, got ${rc}`);
    });
  });

  it("fstat gives the size of a regular file, -1 for anything else, and throws what fs.fstatSync throws", () => {
    const file = join(dir, "sized");
    fs.writeFileSync(file, "x".repeat(12345));
    const empty = join(dir, "empty");
    fs.writeFileSync(empty, "");
    const fifo = join(dir, "fifo");
    execFileSync("mkfifo", [fifo]);
    const fds = [fs.openSync(file, O_RDONLY), fs.openSync(empty, O_RDONLY), fs.openSync(dir, O_RDONLY), fs.openSync(fifo, O_RDONLY | fs.constants.O_NONBLOCK), fs.openSync("/dev/null", O_RDONLY)];
    try {
      assert.deepEqual(fds.map(regularFileSize), [12345, 0, -1, -1, -1]);
    } finally {
      for (const fd of fds) fs.closeSync(fd);
    }
    const closed = fds[0] as number;
    assert.deepEqual(thrown(() => regularFileSize(closed)), thrown(() => fs.fstatSync(closed)));
    const io = ioBinding();
    if (io) {
      assert.throws(() => io.ioFstat(0, new Float64Array(1)), TypeError);
      assert.throws(() => io.ioFstat(0, new Uint8Array(16) as unknown as Float64Array), TypeError);
    }
  });

  it("a text goes to a socket whole as UTF-8, or what is left of it is told; too long, not a socket or a closed one writes nothing", { skip: !listenBinding() && "addon not built" }, async () => {
    await withAccepted(async (fd, client) => {
      const got: Buffer[] = [];
      client.on("data", (c: Buffer) => got.push(c));
      const reply = "150 Opening BINARY mode data connection for é€😀.bin (4096 bytes)\r\n226 Transfer complete\r\n";
      assert.equal(writeText(fd, reply), 0);
      // As long as it may be: 1,365 characters of three bytes each (4,095 bytes).
      const longest = "€".repeat(WRITE_TEXT_UNITS);
      assert.equal(writeText(fd, longest), 0);
      await waitUntil(() => Buffer.concat(got).length === Buffer.byteLength(reply) + 4095);
      assert.equal(Buffer.concat(got).toString("utf8"), reply + longest);
      // One byte more than the buffer takes: refused, nothing sent.
      assert.equal(writeText(fd, "x".repeat(4096)), -7, "E2BIG");
      const file = join(dir, "not-a-socket");
      const ffd = fs.openSync(file, "w");
      try {
        assert.equal(writeText(ffd, "226 x\r\n"), -88, "ENOTSOCK");
      } finally {
        fs.closeSync(ffd);
      }
      assert.equal(fs.readFileSync(file, "utf8"), "");
      assert.equal(writeText(ffd, "226 x\r\n"), -9, "EBADF");
      assert.throws(() => ioBinding()?.ioWriteText(fd, 5 as unknown as string), TypeError);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(Buffer.concat(got).length, Buffer.byteLength(reply) + 4095, "nothing more arrived");
    });
  });

  it("a text to a socket whose peer reads nothing: what went, what is left and -EAGAIN add up to the bytes the peer gets", { skip: !listenBinding() && "addon not built" }, async () => {
    await withAccepted(async (fd, client) => {
      client.pause();
      const text = "213-é".repeat(200) + "\r\n";
      const size = Buffer.byteLength(text);
      // Whole copies until the buffer fills: the last write then takes part of one, or nothing.
      let sent = 0;
      let left = 0;
      for (let i = 0; i < 100_000 && left === 0; i++) {
        left = writeText(fd, text);
        assert.ok(left === NEG_EAGAIN || (left >= 0 && left < size), `left ${left}`);
        if (left >= 0) sent += size - left;
      }
      assert.notEqual(left, 0, "the buffer filled");
      const got: Buffer[] = [];
      let n = 0;
      client.on("data", (c: Buffer) => {
        got.push(c);
        n += c.length;
      });
      client.resume();
      await waitUntil(() => n >= sent);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(n, sent);
      assert.ok(sent > size, `sent ${sent}`);
      // Whole copies, then the start of the one cut short (if one was).
      const all = Buffer.concat(got);
      const whole = Buffer.from(text);
      for (let at = 0; at < all.length; at += size) assert.ok(all.subarray(at, at + size).equals(whole.subarray(0, Math.min(size, all.length - at))), `copy at ${at}`);
      assert.equal(all.length % size, left > 0 ? size - left : 0);
      client.resetAndDestroy();
      let rc = 0;
      for (let i = 0; i < 200 && rc >= 0; i++) {
        rc = writeText(fd, "226 x\r\n");
        if (rc >= 0) await new Promise((r) => setTimeout(r, 5));
      }
      assert.ok(rc === -104 || rc === -32, `ECONNRESET or EPIPE (and no SIGPIPE), got ${rc}`);
    });
  });
});

/** Runs `body` with a bare accepted descriptor (native/listen.c), which no Node stream reads behind
 * the test's back, and the client socket connected to it. */
async function withAccepted(body: (fd: number, client: Socket) => Promise<void>): Promise<void> {
  const l = listenBinding();
  assert.ok(l);
  const probe = createServer().listen(0, "127.0.0.1");
  await once(probe, "listening");
  const port = (probe.address() as { port: number }).port;
  probe.close();
  await once(probe, "close");
  const lfd = l.listenTcp("127.0.0.1", port, 4);
  assert.ok(lfd >= 0, `listen: ${lfd}`);
  const client = connect(port, "127.0.0.1");
  client.on("error", () => undefined);
  let fd = -1;
  try {
    await once(client, "connect");
    for (let i = 0; i < 200 && fd < 0; i++) {
      const out = new Int32Array(1);
      // A bad place for the descriptor is refused before anything is accepted.
      assert.throws(() => l.acceptInto(lfd, new Float64Array(1) as unknown as Int32Array), TypeError);
      assert.throws(() => l.acceptInto(lfd, new Int32Array(0)), TypeError);
      const peer: string | number = l.acceptInto(lfd, out);
      if (typeof peer === "string") {
        assert.equal(peer, "127.0.0.1", "the peer's address as Node writes it");
        fd = out[0] as number;
      }
      else await new Promise((res) => setTimeout(res, 5));
    }
    assert.ok(fd >= 0, "accepted");
    await body(fd, client);
  } finally {
    client.destroy();
    if (fd >= 0) fs.closeSync(fd);
    fs.closeSync(lfd);
  }
}

/** Waits until `cond` holds (5 s at most). */
async function waitUntil(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
  assert.ok(cond(), "in time");
}

describe("paths near PATH_MAX over FTP (fs/sysio.ts through the jail)", () => {
  /** Runs `body` with a session logged in as alice and the real path of her home, which it may
   * fill with trees deeper than a path can name: they are made shallower before the server goes. */
  async function withDeepHome(body: (raw: RawClient, home: string) => Promise<void>): Promise<void> {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        await body(raw, fs.realpathSync(t.home("alice")));
      } finally {
        await raw.close();
        // Paths over 4095 bytes cannot be removed by name: the tree is first made shallower.
        shallowDeep(t.home("alice"));
      }
    });
  }

  it("STOR to a path whose real form is longer than the kernel takes, cut by a character of several bytes, is refused and creates nothing in a shorter one", async () => {
    await withDeepHome(async (raw, home) => {
      // ".../yyy" is 4094 bytes, ".../yyy€" 4097: the kernel refuses the second (ENAMETOOLONG);
      // cut to what fits in 4095 bytes it would name the first.
      const shorter = deepDir(home, 4094, "y");
      const named = `${shorter.slice(home.length)}€/f`;
      await raw.expect("TYPE I", 200);
      await raw.pasv().then((s) => s.destroy());
      const r = await raw.cmd(`STOR ${named}`);
      assert.equal(r.code, 553, r.lines.join(" | "));
      assert.deepEqual(fs.readdirSync(shorter), [], "nothing created in the directory the name is cut to");
    });
  });

  it("SIZE, MDTM and MLST of a file whose real path is 4095 bytes, as long as the kernel takes, answer as for any file", async () => {
    await withDeepHome(async (raw, home) => {
      const file = join(deepDir(home, 4093, "y"), "f");
      fs.writeFileSync(file, "hello");
      assert.equal(Buffer.byteLength(file), 4095);
      const named = file.slice(home.length);
      await raw.expect("TYPE I", 200);
      assert.equal((await raw.expect(`SIZE ${named}`, 213)).message, "5");
      await raw.expect(`MDTM ${named}`, 213);
      const listed = await raw.expect(`MLST ${named}`, 250);
      assert.match(listed.lines.join("\n"), /size=5;/);
    });
  });
});
