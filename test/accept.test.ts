/**
 * Accepted sockets made by berth's onconnection (data/accept.ts): the same sockets Node makes (options,
 * noDelay, keep-alive, pause on connect, connection count, maxConnections, diagnostics channel), made
 * without a new hidden class for each, on every listener of a real server.
 */
import assert from "node:assert/strict";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { once } from "node:events";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { connect, createServer, Socket, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { describe, it } from "node:test";
import { acceptCheaply, acceptsCheaply, optionsInherited, peerAddress, socketFor, SOCKET_DEFAULTS, takeConnections, type ClientHandle } from "../src/data/accept.ts";
import { listenBinding, sockoptBinding } from "../src/native.ts";
import { Client } from "basic-ftp";
import { exec } from "./helpers/exec.ts";
import { waitFor } from "./helpers/server.ts";
import { download, ftpLogin, rawLogin, upload, withServer } from "./helpers/run.ts";

/** The value of one of net.Socket's private symbol-keyed fields (found by description). */
function field(socket: Socket, description: string): unknown {
  const key = Object.getOwnPropertySymbols(socket).find((s) => s.description === description);
  assert.ok(key, `net.Socket has no ${description}`);
  return (socket as unknown as Record<symbol, unknown>)[key];
}

async function listening(server: Server): Promise<number> {
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const a = server.address();
  assert.ok(a !== null && typeof a === "object");
  return a.port;
}

describe("accepted sockets (berth's onconnection)", () => {
  it("are the sockets Node makes: options, noDelay, keep-alive, paused until resumed, counted until closed", async () => {
    const server = createServer({ noDelay: true, keepAlive: true, keepAliveInitialDelay: 30_000, pauseOnConnect: true });
    const port = await listening(server);
    assert.equal(acceptCheaply(server), true);
    assert.equal(acceptsCheaply(server), true);
    assert.equal(acceptCheaply(server), true, "a second call changes nothing");
    const published: unknown[] = [];
    const onPublish = (m: unknown): void => void published.push(m);
    subscribe("net.server.socket", onPublish);
    try {
      const client = connect({ port, host: "127.0.0.1", ...SOCKET_DEFAULTS });
      const [accepted] = (await once(server, "connection")) as [Socket];
      assert.ok(accepted instanceof Socket);
      assert.equal((accepted as Socket & { server: Server }).server, server);
      assert.equal(field(accepted, "kSetNoDelay"), true);
      assert.equal(field(accepted, "kSetKeepAlive"), true);
      assert.equal(field(accepted, "kSetKeepAliveInitialDelay"), 30);
      assert.equal(accepted.allowHalfOpen, false);
      assert.equal(accepted.readableFlowing, false, "paused on connect");
      assert.deepEqual(published, [{ socket: accepted }]);
      client.write("hello");
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(accepted.readableLength, 0, "nothing read while paused");
      accepted.setEncoding("latin1");
      accepted.resume();
      const [data] = (await once(accepted, "data")) as [string];
      assert.equal(data, "hello");
      accepted.end("bye");
      const [back] = (await once(client, "data")) as [Buffer];
      assert.equal(back.toString(), "bye");
      const count = await new Promise<number>((r, j) => server.getConnections((e, n) => (e ? j(e) : r(n))));
      assert.equal(count, 1);
      client.end();
      await once(accepted, "close");
      // server.close() waits for the count to reach 0: it settles only if the socket's close
      // took it back down.
      await new Promise<void>((r, j) => server.close((e) => (e ? j(e) : r())));
    } finally {
      unsubscribe("net.server.socket", onPublish);
      server.close();
    }
  });

  it("get noDelay and keep-alive from the listening socket where the native part is built: the options each socket has are those Node's setters give", { skip: sockoptBinding() === null && "native part not built" }, async () => {
    const binding = sockoptBinding()!;
    /** [TCP_NODELAY, SO_KEEPALIVE, idle, interval, count] of a socket accepted by a server made
     * with `options`, through berth's onconnection or Node's; and whether the listener gave them. */
    const accepted = async (options: Parameters<typeof createServer>[0], ours: boolean): Promise<{ got: number[]; inherited: boolean; recorded: unknown[] }> => {
      const server = createServer(options);
      const port = await listening(server);
      if (ours) assert.equal(acceptCheaply(server), true);
      try {
        const client = connect({ port, host: "127.0.0.1", ...SOCKET_DEFAULTS });
        const [socket] = (await once(server, "connection")) as [Socket];
        const fd = (socket as unknown as { _handle: { fd: number } })._handle.fd;
        const got = binding.socketOptions(fd);
        assert.ok(Array.isArray(got), `socketOptions: ${String(got)}`);
        const recorded = ["kSetNoDelay", "kSetKeepAlive", "kSetKeepAliveInitialDelay"].map((d) => field(socket, d));
        client.destroy();
        socket.destroy();
        return { got, inherited: optionsInherited(server), recorded };
      } finally {
        server.close();
      }
    };
    const control = { noDelay: true, keepAlive: true, keepAliveInitialDelay: 30_000 };
    const passive = { noDelay: true, pauseOnConnect: true };
    const ours = await accepted(control, true);
    assert.equal(ours.inherited, true);
    assert.deepEqual(ours.got, [1, 1, 30, 1, 10]);
    assert.deepEqual(ours.recorded, [true, true, 30], "the socket knows it has them: its setters make no call");
    assert.deepEqual(ours.got, (await accepted(control, false)).got, "the same as Node's setters give");
    const data = await accepted(passive, true);
    assert.equal(data.inherited, true);
    assert.deepEqual(data.got.slice(0, 2), [1, 0]);
    assert.deepEqual(data.got, (await accepted(passive, false)).got);
    // Keep-alive without an initial delay (libuv then leaves the system's idle time) and a server
    // with neither option are left to Node, and still get what Node gives.
    const noDelayTime = { noDelay: true, keepAlive: true };
    const left = await accepted(noDelayTime, true);
    assert.equal(left.inherited, false);
    assert.deepEqual(left.got, (await accepted(noDelayTime, false)).got);
    const bare = await accepted({}, true);
    assert.equal(bare.inherited, false);
    assert.deepEqual(bare.got.slice(0, 2), [0, 0]);
  });

  it("go to a taker first where one is set: taken, no Socket and no connection event; declined, the usual Socket; socketFor makes that same Socket later", async () => {
    const server = createServer({ noDelay: true, pauseOnConnect: true });
    const port = await listening(server);
    const bare = createServer();
    await listening(bare);
    assert.equal(takeConnections(bare, () => true), false, "not without acceptCheaply");
    bare.close();
    assert.equal(acceptCheaply(server), true);
    const published: unknown[] = [];
    const onPublish = (m: unknown): void => void published.push(m);
    subscribe("net.server.socket", onPublish);
    const events: Socket[] = [];
    server.on("connection", (s: Socket) => events.push(s));
    const taken: ClientHandle[] = [];
    let take = true;
    assert.equal(
      takeConnections(server, (h) => {
        if (take) taken.push(h);
        return take;
      }),
      true,
    );
    try {
      const first = connect({ port, host: "127.0.0.1", ...SOCKET_DEFAULTS });
      first.on("error", () => undefined);
      await waitFor(() => taken.length === 1, 2000);
      const h = taken[0]!;
      assert.equal(peerAddress(h), "127.0.0.1");
      assert.ok(h.fd > 0);
      assert.equal(events.length, 0);
      assert.equal(published.length, 0);
      // Later, as a Socket: paused, noDelay from the listener, counted, published, no event.
      const made = socketFor(server, h);
      assert.ok(made instanceof Socket);
      assert.equal((made as Socket & { server: Server }).server, server);
      assert.equal(made.readableFlowing, false);
      assert.equal(made.remoteAddress, "127.0.0.1");
      assert.equal(field(made, "kSetNoDelay"), true);
      assert.deepEqual(published, [{ socket: made }]);
      assert.equal(events.length, 0);
      assert.equal(await new Promise<number>((r, j) => server.getConnections((e, n) => (e ? j(e) : r(n)))), 1);
      made.end("taken");
      const [back] = (await once(first, "data")) as [Buffer];
      assert.equal(back.toString(), "taken");
      // A handle closed by its taker: the client sees the end.
      const second = connect({ port, host: "127.0.0.1", ...SOCKET_DEFAULTS });
      await waitFor(() => taken.length === 2, 2000);
      taken[1]!.close();
      second.resume();
      await once(second, "end");
      // Declined: the usual way.
      take = false;
      const third = connect({ port, host: "127.0.0.1", ...SOCKET_DEFAULTS });
      await waitFor(() => events.length === 1, 2000);
      assert.equal(published.length, 2);
      first.destroy();
      second.destroy();
      third.destroy();
      made.destroy();
      events[0]!.destroy();
    } finally {
      unsubscribe("net.server.socket", onPublish);
      server.close();
    }
  });

  it("leave maxConnections to Node: the connection over it is dropped, the ones under it served", async () => {
    const server = createServer((s) => s.end("hi"));
    server.maxConnections = 1;
    const port = await listening(server);
    assert.equal(acceptCheaply(server), true);
    try {
      const first = connect({ port, host: "127.0.0.1" });
      await once(server, "connection");
      const dropped = once(server, "drop");
      const second = connect({ port, host: "127.0.0.1" });
      second.on("error", () => undefined);
      const [info] = (await dropped) as [{ remotePort: number }];
      assert.equal(info.remotePort, await new Promise<number>((r) => (second.localPort ? r(second.localPort) : second.once("connect", () => r(second.localPort!)))));
      await once(second, "close");
      first.destroy();
    } finally {
      server.close();
    }
  });

  it("serve every listener of a real server: control, implicit FTPS and passive", async () => {
    /** Per accepted socket: its listener's port, whether berth made it (its onconnection, or from
     * a descriptor the addon accepted, which has no net.Server), and its TCP_NODELAY and
     * SO_KEEPALIVE (where the native part can tell). */
    const seen: { port: number; ours: boolean; options: number[] | null }[] = [];
    const binding = sockoptBinding();
    const onSocket = (m: unknown): void => {
      const socket = (m as { socket: Socket & { server: Server | null; _handle: { fd: number } } }).socket;
      const got = binding?.socketOptions(socket._handle.fd);
      const ours = socket.server === null ? listenBinding() !== null : acceptsCheaply(socket.server);
      seen.push({ port: socket.localPort ?? 0, ours, options: Array.isArray(got) ? got.slice(0, 3) : null });
    };
    subscribe("net.server.socket", onSocket);
    let ports: { control: number; implicit: number } = { control: 0, implicit: 0 };
    try {
      await withServer(
        async (t) => {
          ports = { control: t.port, implicit: t.implicitPort ?? 0 };
          const c = await ftpLogin(t);
          try {
            await upload(c, "x".repeat(1000), "a.txt");
            assert.equal((await download(c, "a.txt")).length, 1000);
          } finally {
            c.close();
          }
          const secure = new Client(10_000);
          try {
            await secure.access({ host: "127.0.0.1", port: ports.implicit, user: "alice", password: "alice-pw", secure: "implicit", secureOptions: { rejectUnauthorized: false } });
            assert.ok((await secure.list()).some((f) => f.name === "a.txt"));
          } finally {
            secure.close();
          }
        },
        { config: { tls: { mode: "both", implicitPort: 0 } } },
      );
    } finally {
      unsubscribe("net.server.socket", onSocket);
    }
    // Control, implicit control and the TLS listing's data connection; the plain upload and
    // download were moved on their accepted descriptors without a Socket (test/raw.test.ts).
    assert.ok(seen.length >= 3, `${seen.length} connections seen`);
    assert.ok(seen.some((s) => s.port === ports.control));
    assert.ok(seen.some((s) => s.port === ports.implicit));
    assert.ok(seen.some((s) => s.port !== ports.control && s.port !== ports.implicit), "passive");
    assert.deepEqual(seen.filter((s) => !s.ours), [], "every one made by berth's onconnection");
    if (binding !== null) {
      // Control connections probe after a minute of silence; data connections do not probe.
      // (A data connection's idle time is the system's, which the test does not assume.)
      for (const s of seen) {
        const control = s.port === ports.control || s.port === ports.implicit;
        assert.deepEqual(control ? s.options : s.options?.slice(0, 2), control ? [1, 1, 60] : [1, 0], `listener ${s.port}`);
      }
    }
  });

  it("survive clients that reset at once: control connections and a passive data connection reset as they are accepted leave a clear reply and nothing behind", async (tc) => {
    await withServer(async (t) => {
      // Control connections reset right after the handshake, some after a partial command.
      for (let i = 0; i < 40; i++) {
        const sock = connect({ port: t.port, host: "127.0.0.1" });
        sock.on("error", () => undefined);
        await once(sock, "connect");
        if (i % 2 === 1) sock.write("USER ali");
        sock.resetAndDestroy();
      }
      const first = await ftpLogin(t);
      try {
        await upload(first, "keep me", "kept.txt");
      } finally {
        first.close();
      }
      const raw = await rawLogin(t);
      try {
        // A data connection reset as soon as it is made: the transfer that would use it gets a
        // 4xx reply, the file it was replacing stays, and the session goes on.
        const data = await raw.pasv();
        data.resetAndDestroy();
        await new Promise((r) => setTimeout(r, 50));
        const r = await raw.cmd("STOR kept.txt");
        tc.diagnostic(`STOR over the reset connection: ${r.code} ${r.message}`);
        if (r.code === 150 || r.code === 125) {
          const end = await raw.reply();
          tc.diagnostic(`then: ${end.code} ${end.message}`);
          assert.ok(end.code >= 400 && end.code < 500, `after 150: ${end.code} ${end.message}`);
        } else {
          assert.ok(r.code >= 400 && r.code < 500, `${r.code} ${r.message}`);
        }
        await raw.expect("NOOP", 200);
        const c = await ftpLogin(t);
        try {
          assert.equal((await download(c, "kept.txt")).toString(), "keep me");
        } finally {
          c.close();
        }
      } finally {
        await raw.close();
      }
    });
  });

  it("do not make each socket's options miss V8's inline caches (counted with --log-ic)", async (t) => {
    const dir = await mkdtemp(join(tmpdir(), "berth-accept-"));
    const accept = pathToFileURL(join(import.meta.dirname, "../src/data/accept.ts")).href;
    /** Inline-cache misses on property names of socket options, per connection, in a child
     * accepting 400 connections (the first ones warm up the caches). */
    async function missesPerConnection(ours: boolean): Promise<number> {
      const log = join(dir, `${ours ? "berth" : "node"}.log`);
      const script = `
        import { createServer, connect } from "node:net";
        import { once } from "node:events";
        const { acceptCheaply, SOCKET_DEFAULTS } = await import(${JSON.stringify(accept)});
        const server = createServer({ noDelay: true, pauseOnConnect: true }, (s) => s.destroy());
        server.listen(0, "127.0.0.1");
        await once(server, "listening");
        if (${ours} && !acceptCheaply(server)) process.exit(3);
        const port = server.address().port;
        for (let i = 0; i < 400; i++) {
          const c = connect({ port, host: "127.0.0.1", ...SOCKET_DEFAULTS });
          c.on("error", () => {});
          await once(c, "close");
        }
        server.close();`;
      const r = await exec(process.execPath, ["--log-ic", "--no-logfile-per-isolate", `--logfile=${log}`, "--import", "tsx", "--input-type=module", "-e", script], { timeoutMs: 60_000 });
      assert.equal(r.code, 0, r.stderr);
      const keys = new Set(["readable", "writable", "allowHalfOpen", "decodeStrings", "emitClose", "autoDestroy", "highWaterMark", "objectMode", "signal", "onread"]);
      const lines = (await readFile(log, "latin1")).split("\n");
      let misses = 0;
      for (const line of lines) {
        const f = line.split(",");
        if ((f[0] === "LoadIC" || f[0] === "StoreIC") && keys.has(f[8] ?? "") && f[6] === "N") misses++;
      }
      return misses / 400;
    }
    try {
      const node = await missesPerConnection(false);
      const ours = await missesPerConnection(true);
      t.diagnostic(`misses per connection: Node's onconnection ${node.toFixed(1)}, berth's ${ours.toFixed(1)}`);
      assert.ok(ours < 0.5, `berth's accepted sockets miss ${ours.toFixed(1)} times each`);
      if (node < 2) t.diagnostic("this Node's own sockets do not miss either (a V8 without the spread-copy maps)");
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
