/**
 * Robustness: a filesystem that fails on chosen names (clear replies, the session lives on, a
 * failed replace keeps the old file, a failed new upload stays resumable), failed logins, idle and
 * login timeouts, shutdown, junk input with bounded memory, and clients that vanish.
 */
import assert from "node:assert/strict";
import type { FileHandle } from "node:fs/promises";
import type { FileLike } from "../src/fs/quick.ts";
import { mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { closeSync, constants as fsConstants, existsSync, openSync } from "node:fs";
import { once } from "node:events";
import { connect } from "node:net";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";
import { Writable } from "node:stream";
import { JailedFs } from "../src/fs/jail.ts";
import { admitListing, listingBytesInFlight, listingLimits, type ListingTicket } from "../src/fs/listgate.ts";
import * as quick from "../src/fs/quick.ts";
import type { Download, Upload, UploadOptions, VirtualPath } from "../src/fs/types.ts";
import { basename } from "../src/fs/vpath.ts";
import type { FsFactory } from "../src/protocol/context.ts";
import { RawClient, dataConnect, readAll, retrieve, writeAll } from "./helpers/raw.ts";
import { payload, rawLogin, withServer } from "./helpers/run.ts";
import { waitFor, type TestServer } from "./helpers/server.ts";
import { exec, which } from "./helpers/exec.ts";

/** Bytes a failing upload or download moves before its disk error. */
const FAIL_AFTER = 64 * 1024;

function ioError(code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(`${code}: simulated`), { code });
}

/** A write stream onto the real handle that fails with ENOSPC once `limit` bytes are written. */
function failingWriter(real: FileLike, start: number, limit: number): Writable & { bytesWritten: number } {
  let pos = start;
  const w = new Writable({
    write(chunk: Buffer, _enc, cb) {
      const room = Math.max(limit - w.bytesWritten, 0);
      const part = chunk.subarray(0, room);
      real.write(part, 0, part.length, pos).then(
        () => {
          pos += part.length;
          w.bytesWritten += part.length;
          cb(part.length < chunk.length ? ioError("ENOSPC") : null);
        },
        (err: Error) => cb(err),
      );
    },
  }) as Writable & { bytesWritten: number };
  w.bytesWritten = 0;
  return w;
}

/** An upload whose writes fail part-way (through a stream or directly, as a full disk does: a short
 * write, then ENOSPC); commit and abort are the real ones. */
function failingUpload(up: Upload): Upload {
  let written = 0;
  const handle = {
    createWriteStream: (opts: { start?: number }) => failingWriter(up.handle, opts.start ?? up.position, FAIL_AFTER),
    write: async (buf: Buffer, offset: number, length: number, position: number) => {
      const room = FAIL_AFTER - written;
      if (room <= 0) throw ioError("ENOSPC");
      const { bytesWritten } = await up.handle.write(buf, offset, Math.min(length, room), position);
      written += bytesWritten;
      return { bytesWritten, buffer: buf };
    },
    close: () => up.handle.close(),
  } as unknown as FileHandle;
  return { ...up, handle, commit: () => up.commit(), abort: () => up.abort() };
}

/** A download whose reads give FAIL_AFTER bytes and then fail with EIO. */
function failingDownload(dl: Download): Download {
  const handle = {
    read: async (buffer: Buffer, offset: number, length: number, position: number) => {
      if (position >= FAIL_AFTER) throw ioError("EIO");
      const n = Math.min(length, FAIL_AFTER - position);
      buffer.fill(0x61, offset, offset + n);
      return { bytesRead: n, buffer };
    },
    close: () => dl.handle.close(),
  } as unknown as FileHandle;
  return { ...dl, handle };
}

/** An upload whose file is /dev/full: a real descriptor, so the data path writes to it
 * synchronously (fs/quick.ts writeNow), and every write fails with ENOSPC as on a full disk. */
function fullDiskUpload(up: Upload): Upload {
  const fd = openSync("/dev/full", "w");
  const done = (): void => closeSync(fd);
  // Through the pool this would be EIO (451), not the ENOSPC (452) of the synchronous write.
  const handle = { fd, write: async () => Promise.reject(ioError("EIO")), close: async () => undefined } as unknown as FileHandle;
  return {
    ...up,
    handle,
    commit: async () => (done(), up.commit()),
    abort: async () => (done(), up.abort()),
    rollback: async () => (done(), up.rollback()),
  };
}

/** A download whose descriptor is open for writing only: the data path reads it synchronously
 * (fs/quick.ts) and the first read fails with EBADF. */
function unreadableDownload(dl: Download, real: string): Download {
  const fd = openSync(real, fsConstants.O_WRONLY);
  const handle = {
    fd,
    // Through the pool this would be ENOSPC (452), not the EBADF (451) of the synchronous read.
    read: async () => Promise.reject(ioError("ENOSPC")),
    close: async () => {
      closeSync(fd);
      await dl.handle.close();
    },
  } as unknown as FileHandle;
  return { ...dl, handle };
}

/** JailedFs that fails: uploads of "fail-*" (once per name) mid-way, uploads of "full-*" on a full
 * disk, downloads of "broken-*" mid-way and of "wronly-*" at once, opening "eio-*" at once, and
 * listing "eio-*". */
const failingFs: FsFactory = async (home) => {
  const fs = await JailedFs.open(home);
  const failed = new Set<string>();
  const openUpload = fs.openUpload.bind(fs);
  const openDownload = fs.openDownload.bind(fs);
  const list = fs.list.bind(fs);
  const listing = fs.listing.bind(fs);
  fs.openUpload = async (v: VirtualPath, opts: UploadOptions) => {
    const up = await openUpload(v, opts);
    if (basename(v).startsWith("full-")) return fullDiskUpload(up);
    if (!basename(v).startsWith("fail-") || failed.has(v)) return up;
    failed.add(v);
    return failingUpload(up);
  };
  fs.openDownload = async (v: VirtualPath) => {
    if (basename(v).startsWith("eio-")) throw ioError("EIO");
    const dl = await openDownload(v);
    if (basename(v).startsWith("wronly-")) return unreadableDownload(dl, join(home, basename(v)));
    return basename(v).startsWith("broken-") ? failingDownload(dl) : dl;
  };
  fs.list = async (v: VirtualPath) => {
    if (basename(v).startsWith("eio-")) throw ioError("EIO");
    return list(v);
  };
  // What LIST, NLST, MLSD and STAT read a directory with.
  fs.listing = async (v: VirtualPath, ticket?: ListingTicket) => {
    if (basename(v).startsWith("eio-")) throw ioError("EIO");
    return listing(v, ticket);
  };
  return fs;
};

async function upload(raw: RawClient, name: string, data: Buffer, rest?: number): Promise<number> {
  if (rest !== undefined) await raw.expect(`REST ${rest}`, 350);
  const sock = await raw.pasv();
  raw.send(`STOR ${name}`);
  await raw.expectReply(150);
  await writeAll(sock, data).catch(() => undefined);
  return (await raw.reply()).code;
}

/** A server whose files fail by name (failingFs) and a session logged in as alice, closed after. */
async function withFailingSession(body: (t: TestServer, raw: RawClient) => Promise<void>): Promise<void> {
  await withServer(
    async (t) => {
      const raw = await rawLogin(t);
      try {
        await body(t, raw);
      } finally {
        await raw.close();
      }
    },
    { openFs: failingFs },
  );
}

describe("a filesystem that fails", () => {
  it("a failed replace answers 452 and leaves the old file intact, with no temp file", async () => {
    await withFailingSession(async (t, raw) => {
      const home = t.home("alice");
      await writeFile(join(home, "fail-old.bin"), "precious old content");
      await raw.expect("TYPE I", 200);
      assert.equal(await upload(raw, "fail-old.bin", payload(300_000)), 452);
      assert.equal(await readFile(join(home, "fail-old.bin"), "utf8"), "precious old content");
      assert.deepEqual(await readdir(home), ["fail-old.bin"]);
      await raw.expect("NOOP", 200);
      assert.equal(await upload(raw, "fail-old.bin", payload(300_000)), 226);
      assert.deepEqual(await readFile(join(home, "fail-old.bin")), payload(300_000));
    });
  });

  it("a failed new upload keeps its partial data, and REST + STOR completes it", async () => {
    await withFailingSession(async (t, raw) => {
      const data = payload(300_000);
      await raw.expect("TYPE I", 200);
      assert.equal(await upload(raw, "fail-new.bin", data), 452);
      const size = Number((await raw.expect("SIZE fail-new.bin", 213)).message);
      assert.equal(size, FAIL_AFTER);
      // The server's trouble is a warning that says what went wrong and what had moved.
      const failed = t.logs.filter((l) => l.event === "transfer" && l.path === "/fail-new.bin");
      assert.equal(failed.length, 1);
      assert.equal(failed[0]?.level, 40);
      assert.equal(failed[0]?.result, "error");
      assert.equal(failed[0]?.reply, 452);
      assert.equal(failed[0]?.reason, "Insufficient storage space");
      assert.ok((failed[0]?.bytes as number) >= FAIL_AFTER, String(failed[0]?.bytes));
      assert.equal(await upload(raw, "fail-new.bin", data.subarray(size), size), 226);
      assert.deepEqual(await readFile(join(t.home("alice"), "fail-new.bin")), data);
    });
  });

  it("a download that fails part-way is a 4xx after the partial data; the session goes on", async () => {
    await withFailingSession(async (t, raw) => {
      await writeFile(join(t.home("alice"), "broken-a.bin"), payload(500_000));
      await writeFile(join(t.home("alice"), "eio-b.bin"), "x");
      const { data, reply: r } = await retrieve(raw, "broken-a.bin");
      assert.ok(data.length <= FAIL_AFTER, String(data.length));
      assert.ok(r.code >= 400 && r.code < 500, r.lines.join("|"));
      assert.ok(!r.message.includes(t.root), r.message);
      await raw.expect("RETR eio-b.bin", 451);
      const again = await raw.pasv();
      await raw.expect("LIST eio-dir", 451);
      again.destroy();
      await raw.expect("PWD", 257);
    });
  });
});

/** These tests are about the synchronous path: a back-off left by an earlier test, or taken
 * because this busy machine made two calls late (fs/quick.ts), would send the calls through the
 * pool, where the fakes above answer with other errors on purpose. */
function syncCallsOn(): void {
  quick.backOff(0);
}

describe("a disk that fails on the synchronous data path (real descriptors)", () => {
  it("an upload to a full disk answers 452, keeps the file it was replacing and leaves no temp file; the session goes on", { skip: !existsSync("/dev/full") && "no /dev/full" }, async () => {
    await withFailingSession(async (t, raw) => {
      const home = t.home("alice");
      await writeFile(join(home, "full-old.bin"), "precious old content");
      await raw.expect("TYPE I", 200);
      for (const size of [100, 300_000, 3_000_000]) {
        syncCallsOn();
        assert.equal(await upload(raw, "full-old.bin", payload(size)), 452, `${size} bytes`);
        assert.equal(await readFile(join(home, "full-old.bin"), "utf8"), "precious old content");
        assert.deepEqual(await readdir(home), ["full-old.bin"]);
      }
      await raw.expect("NOOP", 200);
    });
  });

  it("a download whose read fails answers 451 after 150, with no data; the session goes on", async () => {
    await withFailingSession(async (t, raw) => {
      await writeFile(join(t.home("alice"), "wronly-a.bin"), payload(200_000));
      await raw.expect("TYPE I", 200);
      syncCallsOn();
      const { data, reply: r } = await retrieve(raw, "wronly-a.bin");
      assert.equal(data.length, 0);
      assert.equal(r.code, 451, r.lines.join("|"));
      assert.ok(!r.message.includes(t.root), r.message);
      await raw.expect("PWD", 257);
      assert.deepEqual(await readFile(join(t.home("alice"), "wronly-a.bin")), payload(200_000));
    });
  });
});

describe("logins", () => {
  it("unknown user and wrong password get the same 530; the third failure closes the connection", async () => {
    await withServer(async (t) => {
      const raw = await RawClient.connect(t.port);
      try {
        const delay = t.config.limits.failedLoginDelay * 1000;
        await raw.expect("USER nobody", 331);
        let started = Date.now();
        const unknown = await raw.expect("PASS whatever", 530);
        assert.ok(Date.now() - started >= delay - 5, "unknown user answered early");
        await raw.expect("USER alice", 331);
        started = Date.now();
        const wrong = await raw.expect("PASS wrong", 530);
        assert.ok(Date.now() - started >= delay - 5, "wrong password answered early");
        assert.deepEqual(unknown.lines, wrong.lines);
        await raw.expect("USER alice", 331);
        await raw.expect("PASS alsowrong", 530);
        await raw.closed();
      } finally {
        await raw.close();
      }
      assert.ok(!JSON.stringify(t.logs).includes("alsowrong"), "a password was logged");
    });
  });

  it("a password in a line that does not parse (tab or space before PASS, lower case, NUL, not UTF-8) or in ACCT never reaches the log", async () => {
    await withServer(async (t) => {
      const raw = await RawClient.connect(t.port);
      try {
        await raw.expect("USER alice", 331);
        await raw.expect("PASS\tpw-after-tab", 500);
        await raw.expect(" PASS pw-after-space", 500);
        await raw.expect("PASSpw-glued", 500);
        await raw.expect("XPAS pw-unknown-verb", 502);
        await raw.expect("pass pw-lower", 530);
        await raw.expect("USER alice", 331);
        await raw.expect("PaSs  pw-two-spaces", 530);
        await raw.expect("USER alice", 331);
        await raw.expect("PASS pw-nul\u0000x", 530);
      } finally {
        await raw.close();
      }
      const next = await RawClient.connect(t.port);
      try {
        await next.expect("ACCT pw-account", 202);
        await next.expect("USER alice", 331);
        next.sendRaw(Buffer.concat([Buffer.from("PASS pw-latin1-"), Buffer.from([0xe9]), Buffer.from("\r\n")]));
        await next.expectReply(501);
      } finally {
        await next.close();
      }
      const written = t.logLines.join("\n");
      for (const pw of ["after-tab", "after-space", "glued", "unknown-verb", "lower", "two-spaces", "pw-nul", "pw-account", "pw-latin1"]) {
        assert.ok(!written.toLowerCase().includes(pw), `${pw} was logged`);
      }
      // The server logs every command at this level; the lines above are logged by their shape.
      assert.ok(t.logs.some((l) => l.event === "command" && l.verb === "[malformed]"), "malformed lines are logged");
      assert.ok(t.logs.some((l) => l.event === "command" && l.verb === "XPAS" && l.argLength === 15));
    });
  });

  it("passwords sent with SITE sub-commands berth does not know (SITE PSWD <old> <new>, SITE PASSWD) never reach the log; known ones are logged whole", async () => {
    await withServer(async (t) => {
      const raw = await RawClient.connect(t.port);
      try {
        // Before login too: every command is logged before it is refused.
        await raw.expect("SITE PSWD pw-before-login pw-new-before", 530);
        await raw.login();
        await raw.expect("SITE PSWD alice-pw pw-new-site", 500);
        await raw.expect("site passwd pw-lower-site", 500);
        await raw.expect("SITE CHMOD 644 nothing-here.txt", 550);
      } finally {
        await raw.close();
      }
      const written = t.logLines.join("\n");
      for (const pw of ["alice-pw", "pw-before-login", "pw-new-before", "pw-new-site", "pw-lower-site"]) {
        assert.ok(!written.includes(pw), `${pw} was logged`);
      }
      const sites = t.logs.filter((l) => l.event === "command" && l.verb === "SITE").map((l) => l.arg);
      assert.deepEqual(sites, ["PSWD [redacted]", "PSWD [redacted]", "PASSWD [redacted]", "CHMOD 644 nothing-here.txt"]);
    });
  });

  it("nothing pipelined after the closing failure runs, not even a good login", async () => {
    await withServer(async (t) => {
      const raw = await RawClient.connect(t.port);
      try {
        raw.sendRaw("USER alice\r\nPASS x\r\n".repeat(3) + "USER alice\r\nPASS alice-pw\r\nMKD pwned\r\n");
        for (let i = 0; i < 3; i++) {
          await raw.expectReply(331);
          await raw.expectReply(530);
        }
        await raw.closed();
        await assert.rejects(readdir(join(t.home("alice"), "pwned")), { code: "ENOENT" });
      } finally {
        await raw.close();
      }
    });
  });

  it("a good login after two failures works", async () => {
    await withServer(async (t) => {
      const raw = await RawClient.connect(t.port);
      try {
        for (let i = 0; i < 2; i++) {
          await raw.expect("USER alice", 331);
          await raw.expect("PASS nope", 530);
        }
        await raw.login();
      } finally {
        await raw.close();
      }
    });
  });
});

/** A control connection that sends NOOP every 100 ms whatever it is told, and never closes its side
 * (half-open allowed: the server's FIN is not answered). Logs in as `user` first, if given. */
async function drippingClient(
  port: number,
  user?: string,
): Promise<{ got(): string; cutOff(ms: number): Promise<boolean>; close(): void }> {
  const s = connect({ port, host: "127.0.0.1", allowHalfOpen: true });
  s.on("error", () => undefined);
  let got = "";
  s.on("data", (d: Buffer) => (got += d.toString("latin1")));
  const closed = new Promise<true>((resolve) => s.once("close", () => resolve(true)));
  await once(s, "connect");
  if (user !== undefined) {
    s.write(`USER ${user}\r\nPASS ${user}-pw\r\n`);
    assert.ok(await waitFor(() => got.includes("230 "), 3000), got);
  }
  const timer = setInterval(() => s.write("NOOP\r\n"), 100);
  return {
    got: () => got,
    cutOff: (ms) => Promise.race([closed, sleep(ms).then(() => false)]),
    close: () => {
      clearInterval(timer);
      s.destroy();
    },
  };
}

describe("timeouts and shutdown", () => {
  it("an idle session gets 421 after limits.idleTimeout", async () => {
    await withServer(
      async (t) => {
        const raw = await rawLogin(t);
        try {
          const r = await raw.expectReply(421, 3000);
          assert.match(r.message, /idle/i);
          await raw.closed();
        } finally {
          await raw.close();
        }
      },
      { config: { limits: { idleTimeout: 0.5 } } },
    );
  });

  it("a transfer longer than the idle timeout is not cut; the idle timer starts again after it", async () => {
    await withServer(
      async (t) => {
        await writeFile(join(t.home("alice"), "big.bin"), Buffer.alloc(16 << 20));
        const raw = await rawLogin(t);
        try {
          await raw.expect("TYPE I", 200);
          const sock = await raw.pausedRetr("big.bin");
          await new Promise((r) => setTimeout(r, 900));
          sock.resume();
          assert.equal((await readAll(sock)).length, 16 << 20);
          await raw.expectReply(226);
          await raw.expectReply(421, 3000);
          await raw.closed();
        } finally {
          await raw.close();
        }
      },
      { config: { limits: { idleTimeout: 0.4 } } },
    );
  });

  it("a transfer that ends just before the idle timeout leaves the client the whole idle time for its next command", async () => {
    await withServer(
      async (t) => {
        await writeFile(join(t.home("alice"), "big.bin"), Buffer.alloc(16 << 20));
        const raw = await rawLogin(t);
        try {
          await raw.expect("TYPE I", 200);
          // The RETR is the last command; its transfer runs for most of the idle time.
          const sock = await raw.pausedRetr("big.bin");
          await sleep(2500);
          sock.resume();
          assert.equal((await readAll(sock)).length, 16 << 20);
          await raw.expectReply(226);
          await raw.expectReply(421, 10_000);
          await raw.closed();
          // Timed by the server's own log lines: from the transfer's end to the idle 421 is the
          // whole idle time (3 s), not what was left of it when the RETR came.
          const at = (event: string): number => {
            const line = t.logs.find((l) => l.event === event);
            assert.ok(line, `no ${event} line`);
            return line.time as number;
          };
          const gap = at("timeout") - at("transfer");
          assert.ok(gap >= 2000, `421 came ${gap} ms after the transfer ended`);
        } finally {
          await raw.close();
        }
      },
      { config: { limits: { idleTimeout: 3 } } },
    );
  });

  it("a connection that never logs in gets 421 after limits.loginTimeout", async () => {
    await withServer(
      async (t) => {
        const raw = await RawClient.connect(t.port);
        try {
          raw.send("NOOP");
          await raw.expectReply(200);
          await raw.expectReply(421, 3000);
          await raw.closed();
        } finally {
          await raw.close();
        }
      },
      { config: { limits: { loginTimeout: 0.5 } } },
    );
  });

  it("a client that keeps sending after the 421 of its login timeout, and never closes, is cut off within seconds", async () => {
    await withServer(
      async (t) => {
        const drip = await drippingClient(t.port);
        try {
          assert.ok(await drip.cutOff(8000), `still open after 8 s; got: ${drip.got()}`);
          assert.match(drip.got(), /^220 [^\n]*\n(200 NOOP ok\r\n)*421 Login timeout\r\n$/);
          assert.ok(await waitFor(() => t.server.sessions.size === 0, 1000));
        } finally {
          drip.close();
        }
      },
      { config: { limits: { loginTimeout: 0.5 } } },
    );
  });

  it("a banned client that keeps sending after its 421, and never closes, is cut off within seconds", async () => {
    await withServer(
      async (t) => {
        const drip = await drippingClient(t.port, "alice");
        const guesser = await RawClient.connect(t.port);
        try {
          // Two failed logins from the same address reach the threshold: its sessions are closed.
          await guesser.expect("USER alice", 331);
          await guesser.expect("PASS wrong", 530);
          await guesser.expect("USER alice", 331);
          await guesser.expect("PASS wrong", 421);
          assert.ok(await drip.cutOff(8000), `still open after 8 s; got: ${drip.got()}`);
          assert.match(drip.got(), /421 Your address is banned for \d+ s: [^\r]*\r\n$/);
          assert.ok(await waitFor(() => t.server.sessions.size === 0, 1000));
        } finally {
          drip.close();
          await guesser.close();
        }
      },
      { config: { defender: { threshold: 20, scoreLoginFailure: 10 } } },
    );
  });

  it("shutdown tells idle sessions 421, lets a running transfer finish, then refuses connections", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "big.bin"), payload(2 << 20));
      const idle = await rawLogin(t);
      const busy = await rawLogin(t);
      try {
        await busy.expect("TYPE I", 200);
        const sock = await busy.pausedRetr("big.bin");
        const stopping = t.server.shutdown(3000);
        await idle.expectReply(421);
        await idle.closed();
        await assert.rejects(RawClient.open(t.port));
        sock.resume();
        assert.equal((await readAll(sock)).length, 2 << 20);
        await busy.expectReply(226);
        await busy.expectReply(421);
        await stopping;
        await busy.closed();
      } finally {
        await idle.close();
        await busy.close();
      }
    });
  });

  it("shutdown aborts a transfer that outlives the grace time", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "big.bin"), Buffer.alloc(16 << 20));
      const raw = await rawLogin(t);
      try {
        const sock = await raw.pausedRetr("big.bin");
        const started = Date.now();
        await t.server.shutdown(300);
        assert.ok(Date.now() - started < 2000);
        await raw.closed();
        sock.destroy();
      } finally {
        await raw.close();
      }
    });
  });
});

describe("keep-alive", () => {
  // What the kernel holds for the server's end of a control connection: `ss` shows its keep-alive
  // timer. Linux refuses an idle time of 0 (Node's default), which would leave two hours.
  it("the control connection has TCP keep-alive, probing after about a minute of silence", { skip: !which("ss") && "ss not installed" }, async () => {
    await withServer(async (t) => {
      const raw = await RawClient.connect(t.port);
      try {
        const client = raw.socket.localPort as number;
        const r = await exec("ss", ["-tnoH", "state", "established", `( sport = :${t.port} and dport = :${client} )`]);
        const timer = /timer:\(keepalive,(?:(\d+)min)?(\d+)?(?:\.\d+)?(m?sec)?/.exec(r.stdout);
        assert.ok(timer, `no keep-alive timer in: ${r.stdout.trim()}`);
        const secs = Number(timer[1] ?? 0) * 60 + Number(timer[2] ?? 0) / (timer[3] === "msec" ? 1000 : 1);
        assert.ok(secs > 30 && secs <= 60, `keep-alive in ${secs} s`);
      } finally {
        await raw.close();
      }
    });
  });
});

describe("junk input", () => {
  it("5 MB without a line end before login: 500, bounded memory, and the server lives on", async () => {
    await withServer(async (t) => {
      const raw = await RawClient.connect(t.port);
      try {
        global.gc?.();
        const before = process.memoryUsage();
        const chunk = Buffer.alloc(64 * 1024, 0x41);
        for (let i = 0; i < 80; i++) {
          if (!raw.socket.write(chunk)) await new Promise((r) => raw.socket.once("drain", r));
        }
        await raw.expectReply(500);
        const after = process.memoryUsage();
        const grown = after.rss - before.rss;
        assert.ok(grown < 64 << 20, `rss grew by ${grown >> 20} MB`);
        assert.ok(after.arrayBuffers - before.arrayBuffers < 16 << 20, "buffers grew");
        raw.sendRaw("\r\nNOOP\r\n");
        await raw.expectReply(200);
        const other = await rawLogin(t);
        await other.close();
      } finally {
        await raw.close();
      }
    });
  });

  it("binary junk with line ends, sent without reading replies, is answered and bounded", async () => {
    await withServer(async (t) => {
      const raw = await RawClient.connect(t.port);
      try {
        const junk = Buffer.concat([Buffer.from([0x00, 0xff, 0xfe, 0x80, 0x7f]), Buffer.from(" junk \x01\x02\r\n")]);
        const block = Buffer.concat(Array.from({ length: 4096 }, () => junk));
        for (let i = 0; i < 16; i++) {
          if (!raw.socket.write(block)) await new Promise((r) => raw.socket.once("drain", r));
        }
        raw.send("NOOP");
        let last = await raw.reply();
        while (last.code === 500) last = await raw.reply();
        assert.equal(last.code, 200);
      } finally {
        await raw.close();
      }
      // 65,536 commands sent without waiting: with the command-rate limit that is a flood (421);
      // this test is about framing and bounded memory, so the limit is off (limits.test.ts covers it).
    }, { config: { limits: { commandRate: 0 } } });
  });

  it("survives clients that reset the connection mid-transfer", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "big.bin"), Buffer.alloc(8 << 20));
      for (let i = 0; i < 3; i++) {
        const raw = await rawLogin(t);
        const port = await raw.epsvPort();
        const sock = await dataConnect(port);
        sock.pause();
        raw.send(i === 1 ? "STOR up.bin" : "RETR big.bin");
        await raw.expectReply(150);
        if (i === 1) sock.write(payload(10_000));
        sock.resetAndDestroy();
        raw.socket.resetAndDestroy();
      }
      assert.ok(await waitFor(() => t.server.sessions.size === 0, 2000));
      const raw = await rawLogin(t);
      await raw.expect("NOOP", 200);
      await raw.close();
    });
  });

  // Node reads such a reset as a clean end when data is still unread; the server must not.
  it("an upload the client resets before its bytes are read answers 426 and keeps the file it was replacing", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      await writeFile(join(home, "kept.bin"), "precious old content");
      const raw = await rawLogin(t);
      await raw.expect("TYPE I", 200);
      const sock = await raw.pasv();
      sock.on("error", () => undefined);
      // The bytes sit in the server's socket, unread (nothing reads a data connection before its
      // command), when the reset arrives behind them.
      sock.write(payload(1 << 20));
      await sleep(50);
      sock.resetAndDestroy();
      await sleep(20);
      raw.send("STOR kept.bin");
      await raw.expectReply(150);
      assert.equal((await raw.reply()).code, 426);
      assert.equal(await readFile(join(home, "kept.bin"), "utf8"), "precious old content");
      assert.deepEqual(await readdir(home), ["kept.bin"]);
      assert.equal(await upload(raw, "kept.bin", payload(300_000)), 226);
      assert.deepEqual(await readFile(join(home, "kept.bin")), payload(300_000));
      await raw.close();
    });
  });
});

describe("a home that cannot be opened", () => {
  it("the login gets 530 with the reason, an error line, no failed login or score, and its session slot back", async () => {
    await withServer(
      async (t) => {
        const home = t.home("alice");
        await rm(home, { recursive: true, force: true });
        await writeFile(home, "a file where the home should be");
        const raw = await RawClient.connect(t.port);
        try {
          await raw.expect("USER alice", 331);
          const r = await raw.expect("PASS alice-pw", 530);
          assert.equal(r.message, "Login failed: home directory unavailable (not a directory)");
          const line = t.logs.find((l) => l.result === "no-home");
          assert.equal(line?.level, 50);
          assert.ok(!JSON.stringify(t.logs).includes("alice-pw"));
          assert.equal(t.server.defender.score("127.0.0.1"), 0);
          // maxSessionsPerUser 1: the slot the refused login took is free again.
          await rm(home);
          const other = await RawClient.connect(t.port);
          await other.login("alice");
          await other.expect("PWD", 257);
          await other.close();
          // And this session may log in now that the home can be made.
          await raw.login("alice");
          await raw.expect("PWD", 257);
        } finally {
          await raw.close();
        }
      },
      { config: { limits: { maxSessionsPerUser: 1 } } },
    );
  });
});

describe("listings of large directories", () => {
  it("run within a server-wide budget: past it a large one waits its turn, and past the wait it is 450; small ones never wait", async () => {
    const saved = { ...listingLimits };
    // Every directory over 16 KiB is large, and one large listing at a time fills the budget.
    Object.assign(listingLimits, { largeBytes: 16 * 1024, budgetBytes: 1, waitMs: 500 });
    try {
      await withServer(async (t) => {
        const big = join(t.home("alice"), "big");
        await mkdir(big);
        for (let i = 0; i < 3000; i += 250) {
          await Promise.all(Array.from({ length: 250 }, (_, j) => writeFile(join(big, `file-${i + j}`), "")));
        }
        assert.ok((await stat(big)).size > listingLimits.largeBytes, `a large directory on this filesystem (${(await stat(big)).size} bytes)`);
        await mkdir(join(t.home("alice"), "small"));
        await writeFile(join(t.home("alice"), "small", "s.txt"), "s");
        const a = await rawLogin(t);
        const b = await rawLogin(t);
        try {
          // a's listing is made and waits for its data connection: it holds the budget meanwhile.
          const aPort = await a.epsvPort();
          a.send("LIST big");
          assert.ok(await waitFor(() => listingBytesInFlight() > 0, 5000), "a holds a share");
          // A small listing goes at once.
          let data = await b.pasv();
          b.send("NLST small");
          await b.expectReply(150);
          assert.equal((await readAll(data)).toString(), "small/s.txt\r\n");
          await b.expectReply(226);
          // A large one waits, and is refused once the wait is over; nothing of it is held then.
          data = await b.pasv();
          assert.match((await b.expect("MLSD big", 450)).message, /try again/);
          data.destroy();
          const held = listingBytesInFlight();
          // a connects: its listing goes out whole and its share is given back.
          const aData = await dataConnect(aPort);
          await a.expectReply(150);
          assert.equal((await readAll(aData)).toString().split("\r\n").filter(Boolean).length, 3000);
          await a.expectReply(226);
          assert.equal(held, 1);
          assert.ok(await waitFor(() => listingBytesInFlight() === 0, 2000));
          // Now b's large listing goes through.
          data = await b.pasv();
          b.send("NLST big");
          await b.expectReply(150);
          assert.equal((await readAll(data)).toString().split("\r\n").filter(Boolean).length, 3000);
          await b.expectReply(226);
          assert.equal(listingBytesInFlight(), 0);
        } finally {
          await a.close();
          await b.close();
        }
      });
    } finally {
      Object.assign(listingLimits, saved);
    }
  });

  it("a STAT waiting its turn for the budget longer than limits.idleTimeout is no idle client: it is answered, and the idle time starts after it", async () => {
    const saved = { ...listingLimits };
    // Every directory is large, and the whole budget is held here: the STAT waits for it.
    Object.assign(listingLimits, { largeBytes: 1, budgetBytes: 1, waitMs: 60_000 });
    const release = await admitListing(2);
    try {
      await withServer(
        async (t) => {
          await mkdir(join(t.home("alice"), "d"));
          await writeFile(join(t.home("alice"), "d", "f.txt"), "f");
          const raw = await rawLogin(t);
          try {
            raw.send("STAT d");
            // Several idle timeouts while the server works on the command, which cannot be answered
            // before the budget is given back.
            await sleep(1500);
            release();
            const r = await raw.expectReply(213, 20_000);
            assert.ok(r.lines.some((l) => l.endsWith(" f.txt")), r.lines.join("\n"));
            // Answered, the session idles out as any other.
            assert.match((await raw.expectReply(421, 10_000)).message, /idle/i);
            await raw.closed();
          } finally {
            await raw.close();
          }
        },
        { config: { limits: { idleTimeout: 0.4 } } },
      );
    } finally {
      release();
      Object.assign(listingLimits, saved);
    }
  });

  it("a client that never reads its STAT listing idles out after limits.idleTimeout, though the STAT still waits for its reply to go out", async () => {
    await withServer(
      async (t) => {
        const big = join(t.home("alice"), "big");
        await mkdir(big);
        // 50,000 long names: a reply of about 14 MB, more than the sockets' buffers take.
        const pad = "n".repeat(230);
        for (let i = 0; i < 50_000; i += 500) {
          await Promise.all(Array.from({ length: 500 }, (_, j) => writeFile(join(big, `${pad}-${i + j}`), "")));
        }
        const raw = await rawLogin(t);
        try {
          raw.socket.pause();
          raw.send("STAT big");
          assert.ok(await waitFor(() => t.logs.some((l) => l.event === "timeout"), 60_000), "no idle timeout");
          assert.ok(await waitFor(() => t.server.sessions.size === 0, 30_000), "the session is still open");
        } finally {
          await raw.close();
        }
      },
      { config: { limits: { idleTimeout: 1 } } },
    );
  });

  it("STAT of a large directory keeps its share until its reply has gone out: a client that leaves it unread holds the budget, and no second listing is made", async () => {
    const saved = { ...listingLimits };
    Object.assign(listingLimits, { largeBytes: 16 * 1024, budgetBytes: 1, waitMs: 500 });
    try {
      await withServer(async (t) => {
        const big = join(t.home("alice"), "big");
        await mkdir(big);
        // 50,000 long names: a reply of about 14 MB, more than the sockets' buffers take.
        const pad = "n".repeat(230);
        for (let i = 0; i < 50_000; i += 500) {
          await Promise.all(Array.from({ length: 500 }, (_, j) => writeFile(join(big, `${pad}-${i + j}`), "")));
        }
        const a = await rawLogin(t);
        const b = await rawLogin(t);
        try {
          a.socket.pause();
          a.send("STAT big");
          const waiting = (): boolean => [...t.server.sessions].some((s) => s.socket.writableNeedDrain);
          assert.ok(await waitFor(waiting, 20_000), "a's reply waits, unread, in the server");
          assert.ok(listingBytesInFlight() > 0, "a holds its share while its reply waits");
          // b's large listing waits its turn and is refused: it is never made.
          assert.match((await b.expect("STAT big", 450)).message, /try again/);
          assert.ok(waiting(), "a's reply still waits");
          // a reads its reply: its share is given back, and b's listing goes through.
          a.socket.resume();
          const r = await a.expectReply(213, 20_000);
          assert.equal(r.lines.length, 50_002);
          assert.ok(await waitFor(() => listingBytesInFlight() === 0, 2000));
          assert.equal((await b.expect("STAT big", 213, 20_000)).lines.length, 50_002);
          assert.equal(listingBytesInFlight(), 0);
        } finally {
          await a.close();
          await b.close();
        }
      });
    } finally {
      Object.assign(listingLimits, saved);
    }
  });
});
