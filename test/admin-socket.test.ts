/**
 * The admin socket's connection handling, on a real Unix socket: a client that sends requests and
 * does not read the replies is not answered into the server's memory.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { mkdtemp, rm } from "node:fs/promises";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import pino from "pino";
import { startAdminSocket, type AdminSocket } from "../src/admin/socket.ts";
import type { Session } from "../src/protocol/session.ts";
import { uniqueSessionId } from "../src/server.ts";

describe("admin socket connections", () => {
  let dir: string;
  let admin: AdminSocket;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "berth-admin-"));
    const target = { sessions: new Set<Session>(), started: performance.now(), version: "t", reload: () => ({ applied: [], needRestart: [] }), drain: () => undefined };
    admin = await startAdminSocket(path.join(dir, "admin.sock"), target, pino({ level: "silent" }));
  });
  after(async () => {
    await admin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("stops reading the requests of a client that does not read its replies, then answers every one, in order, once it reads", async () => {
    const N = 100_000;
    const c = connect(admin.path);
    await once(c, "connect");
    c.pause();
    c.write('{"cmd":"status"}\n'.repeat(N));
    // Replies of about 100 bytes for 1.7 MB of requests: the kernel holds a few hundred KB of
    // either. A server that kept reading would have taken every request in this second and held
    // the 10 MB of replies.
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.ok(c.writableLength > 0, "the server read every request while no reply was read");
    c.setEncoding("utf8");
    let text = "";
    c.on("data", (d: string) => (text += d));
    c.resume();
    c.end();
    await once(c, "close");
    const lines = text.split("\n");
    assert.equal(lines.pop(), "");
    assert.equal(lines.length, N);
    assert.ok(lines.every((l) => (JSON.parse(l) as { ok: boolean; version: string }).version === "t"));
  });

  it("answers a last request sent without its newline before the client's end, after requests that waited", async () => {
    const c = connect(admin.path);
    await once(c, "connect");
    c.pause();
    c.end('{"cmd":"status"}\n'.repeat(20_000) + '{"cmd":"nope"}');
    await new Promise((resolve) => setTimeout(resolve, 200));
    c.setEncoding("utf8");
    let text = "";
    c.on("data", (d: string) => (text += d));
    c.resume();
    await once(c, "close");
    const lines = text.trimEnd().split("\n");
    assert.equal(lines.length, 20_001);
    assert.match((JSON.parse(lines.at(-1) ?? "{}") as { error: string }).error, /^unknown command "nope"/);
  });
});

describe("admin socket, one connection asked again and again", () => {
  const SESSIONS = 4000;
  let dir: string;
  let admin: AdminSocket;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "berth-admin-"));
    // Enough sessions that a `sessions` reply is more than the kernel takes at once (a Unix
    // socket's buffer is some 200 KB), as on a busy server: each reply waits for the client to
    // read it.
    const busy = Array.from({ length: SESSIONS }, (_, i) => ({
      id: `s${String(i).padStart(7, "0")}`,
      user: "alice",
      remoteAddress: "192.0.2.1",
      secure: false,
      transfer: { direction: "download", path: `/${"x".repeat(120)}/${i}`, bytes: i, expected: null, startedAt: 0 },
    }));
    const target = { sessions: new Set(busy as unknown as Session[]), started: performance.now(), version: "t", reload: () => ({ applied: [], needRestart: [] }), drain: () => undefined };
    admin = await startAdminSocket(path.join(dir, "admin.sock"), target, pino({ level: "silent" }));
  });
  after(async () => {
    await admin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("holds no listener per large reply on a connection that lives on (ctl watch asks four times a second)", async () => {
    const warnings: Error[] = [];
    const onWarning = (w: Error): void => void (w.name === "MaxListenersExceededWarning" && warnings.push(w));
    process.on("warning", onWarning);
    try {
      const c = connect(admin.path);
      await once(c, "connect");
      c.setEncoding("utf8");
      const parts: string[] = [];
      let lines = 0;
      c.on("data", (d: string) => {
        parts.push(d);
        for (let i = d.indexOf("\n"); i !== -1; i = d.indexOf("\n", i + 1)) lines++;
      });
      // Past Node's default of 10 listeners of one event, which it warns of as a likely leak.
      for (let i = 1; i <= 15; i++) {
        c.write('{"cmd":"sessions"}\n');
        while (lines < i) await once(c, "data");
      }
      const replies = parts.join("").trimEnd().split("\n");
      assert.equal(replies.length, 15);
      assert.ok(replies.every((l) => (JSON.parse(l) as { sessions: unknown[] }).sessions.length === SESSIONS));
      assert.ok((replies[0] ?? "").length > 512 * 1024, "a reply fits the socket's buffer: the test shows nothing");
      c.end();
      await once(c, "close");
      // The warning is emitted on a later tick than the listener that set it off.
      await new Promise((resolve) => setImmediate(resolve));
      assert.deepEqual(warnings.map((w) => w.message), []);
    } finally {
      process.removeListener("warning", onWarning);
    }
  });
});

describe("admin socket, a path a client named", () => {
  const PATH = "/a\u009b2Jb\u0085c\u2028d\u007fé";
  let dir: string;
  let admin: AdminSocket;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "berth-admin-"));
    const one = { id: "0a1b2c3d", user: null, remoteAddress: "127.0.0.1", secure: false, transfer: { direction: "download", path: PATH, bytes: 1, expected: 2, startedAt: 0 } };
    const target = { sessions: new Set([one] as unknown as Session[]), started: performance.now(), version: "t", reload: () => ({ applied: [], needRestart: [] }), drain: () => undefined };
    admin = await startAdminSocket(path.join(dir, "admin.sock"), target, pino({ level: "silent" }));
  });
  after(async () => {
    await admin.close();
    await rm(dir, { recursive: true, force: true });
  });

  it("writes its DEL, C1 controls and U+2028/U+2029 as \\u escapes to whoever reads the socket itself: the same value, nothing a terminal acts on", async () => {
    const c = connect(admin.path);
    await once(c, "connect");
    c.setEncoding("utf8");
    let text = "";
    c.on("data", (d: string) => (text += d));
    c.end('{"cmd":"sessions"}\n');
    await once(c, "close");
    assert.doesNotMatch(text, /[\u007f-\u009f\u2028\u2029]/);
    const res = JSON.parse(text) as { sessions: { transfer: { path: string } }[] };
    assert.equal(res.sessions[0]?.transfer.path, PATH);
  });
});

describe("session ids", () => {
  it("a new session never gets the id of one still open (kick names one session), drawing again until it is free", () => {
    const draws = ["0000beef", "0000beef", "cafe0001", "cafe0002"];
    const draw = (): string => draws.shift() ?? "ffffffff";
    assert.equal(uniqueSessionId(new Set(["0000beef", "cafe0001"]), draw), "cafe0002");
    assert.equal(uniqueSessionId(new Set(), () => "12345678"), "12345678");
  });
});

describe("admin socket status", () => {
  it("counts uptime on the monotonic clock: a wall clock set back (NTP, a restored virtual machine) does not make it negative", async () => {
    const { handleRequest } = await import("../src/admin/socket.ts");
    const target = { sessions: new Set<Session>(), started: performance.now() - 5_000, version: "t", reload: () => ({ applied: [], needRestart: [] }), drain: () => undefined };
    const realNow = Date.now;
    const back = realNow() - 3_600_000;
    Date.now = () => back;
    try {
      const res = (await handleRequest(target, { cmd: "status" })) as { uptime: number };
      assert.equal(res.uptime, 5);
    } finally {
      Date.now = realNow;
    }
  });
});
