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

describe("admin socket connections", () => {
  let dir: string;
  let admin: AdminSocket;
  before(async () => {
    dir = await mkdtemp(path.join(tmpdir(), "berth-admin-"));
    const target = { sessions: new Set<Session>(), startedAt: Date.now(), version: "t", reload: () => ({ applied: [], needRestart: [] }), drain: () => undefined };
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
