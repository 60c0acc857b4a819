/**
 * berth as a service, continued from service.test.ts: the Docker health check, the environment
 * over the config file, the admin socket's ownership, a users file edited by hand, running out of
 * descriptors, clients that read nothing, log output gone, passive diagnosis and selftest.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { connect, createServer } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import { describe, test } from "node:test";
import { UserStore } from "../src/auth/store.ts";
import { DEFAULTS } from "../src/config/schema.ts";
import { track } from "./helpers/reap.ts";
import { admin, Control, dirs, HEALTHCHECK, MAIN, serve, type Served, serveUntilExit, sleep, TSX, writeConfig } from "./helpers/service.ts";

/** Runs docker/healthcheck.mjs in `cwd` with `env`; its exit status and output. */
async function healthcheck(cwd: string, env: Record<string, string>): Promise<{ code: number | null; out: string }> {
  const child = spawn(process.execPath, [HEALTHCHECK], { cwd, env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "", ...env } });
  track(child);
  let out = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString("utf8")));
  child.stderr.on("data", (c: Buffer) => (out += c.toString("utf8")));
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  return { code, out };
}

/** A port nobody listens on (just given back by the kernel). */
async function closedPort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((resolve) => srv.listen(0, "127.0.0.1", resolve));
  const { port } = srv.address() as { port: number };
  await new Promise<void>((resolve) => srv.close(() => resolve()));
  return port;
}

void describe("docker health check", () => {
  const ports = async (srv: Served): Promise<{ port: number | null; implicitPort: number | null }> =>
    JSON.parse(await srv.waitLog(/"event":"listening"/)) as { port: number | null; implicitPort: number | null };

  void test("where neither a variable nor the file sets a key, it takes berth's default", () => {
    const source = readFileSync(HEALTHCHECK, "utf8");
    for (const [section, key, value] of [
      ["listen", "host", DEFAULTS.listen.host],
      ["listen", "port", DEFAULTS.listen.port],
      ["tls", "mode", DEFAULTS.tls.mode],
      ["tls", "implicitPort", DEFAULTS.tls.implicitPort],
    ] as const) {
      assert.ok(source.includes(`setting("${section}", "${key}", ${JSON.stringify(value)})`), `${section}.${key} defaults to ${value}`);
    }
  });

  void test("plain: it reads the 220 on the control port, and fails when nothing listens there", async () => {
    const srv = await serve("");
    const env = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: String(srv.port) };
    assert.deepEqual(await healthcheck(srv.cwd, env), { code: 0, out: "" });
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
    const down = await healthcheck(srv.cwd, env);
    assert.equal(down.code, 1);
    assert.match(down.out, /^unhealthy: .*ECONNREFUSED/);
  });

  void test("implicit FTPS only (tls.mode in the file): it handshakes on the implicit port, taking a self-signed certificate, and reads the 220", async () => {
    const srv = await serve('tls:\n  mode: implicit\n', 8, { BERTH_TLS_IMPLICIT_PORT: "0" });
    const { port, implicitPort } = await ports(srv);
    assert.equal(port, null, "no plain listener");
    assert.ok(implicitPort !== null);
    // listen.port has nothing behind it; only the implicit port answers, and only in TLS.
    const env = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: String(await closedPort()), BERTH_TLS_IMPLICIT_PORT: String(implicitPort) };
    assert.deepEqual(await healthcheck(srv.cwd, env), { code: 0, out: "" });
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
    const down = await healthcheck(srv.cwd, env);
    assert.equal(down.code, 1);
    assert.match(down.out, /^unhealthy: implicit FTPS .*ECONNREFUSED/);
  });

  void test("both: it checks the control port and the implicit port, and fails when either does not answer", async () => {
    const srv = await serve("", 8, { BERTH_TLS_MODE: "both", BERTH_TLS_IMPLICIT_PORT: "0" });
    const { port, implicitPort } = await ports(srv);
    assert.ok(port !== null && implicitPort !== null);
    const env = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_TLS_MODE: "both", BERTH_LISTEN_PORT: String(port) };
    assert.deepEqual(await healthcheck(srv.cwd, { ...env, BERTH_TLS_IMPLICIT_PORT: String(implicitPort) }), { code: 0, out: "" });
    const wrong = await healthcheck(srv.cwd, { ...env, BERTH_TLS_IMPLICIT_PORT: String(await closedPort()) });
    assert.equal(wrong.code, 1);
    assert.match(wrong.out, /^unhealthy: implicit FTPS .*ECONNREFUSED/);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

void describe("environment over the config file", () => {
  void test("each key the file changes from its default and a BERTH_* variable sets to another value is one warning at start", async () => {
    // The environment of serve() sets listen.host to the file's value, listen.port and
    // passive.ports to others, and limits.shutdownGrace over the file's default; storage.root
    // comes from the file alone.
    const srv = await serve('listen:\n  host: "127.0.0.1"\n  port: 2100\npassive:\n  ports: "40000-40009"\nstorage:\n  root: files\nlimits:\n  shutdownGrace: 8\n', 5);
    const warnings = srv
      .lines()
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l.event === "env-override");
    assert.deepEqual(
      warnings.map((w) => [w.level, w.key, w.variable, w.value, w.fileValue, w.msg]),
      [
        [40, "listen.port", "BERTH_LISTEN_PORT", 0, 2100, "BERTH_LISTEN_PORT=0 overrides listen.port: 2100 in config/berth.yaml"],
        [40, "passive.ports", "BERTH_PASSIVE_PORTS", "22010-22019", "40000-40009", 'BERTH_PASSIVE_PORTS="22010-22019" overrides passive.ports: "40000-40009" in config/berth.yaml'],
      ],
    );
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

void describe("admin socket ownership", () => {
  /** A socket path in a temp directory of its own (short enough for sun_path). */
  const socketPath = (): string => {
    const dir = mkdtempSync(path.join(tmpdir(), "berth-sock-"));
    dirs.push(dir);
    return path.join(dir, "admin.sock");
  };

  void test("a second server with the same admin.socket refuses to start (exit 2, one line) and the first keeps its socket", async () => {
    const sock = socketPath();
    const first = await serve("", 8, { BERTH_ADMIN_SOCKET: sock });
    await first.waitLog(/"event":"admin-socket"/);
    const inode = statSync(sock).ino;
    const second = await serveUntilExit({ BERTH_ADMIN_SOCKET: sock });
    assert.equal(second.code, 2, second.stderr);
    assert.equal(second.stderr.split("\n").length, 2, `one line: ${second.stderr}`);
    assert.match(second.stderr, /^berth: config: admin\.socket .*admin\.sock.* answers/);
    // Refused before it listened on anything.
    assert.doesNotMatch(second.stdout, /"event":"listening"/);
    assert.equal(statSync(sock).ino, inode);
    assert.equal((await admin(sock, { cmd: "status" })).pid, first.child.pid);
    assert.deepEqual(await admin(sock, { cmd: "drain" }), { ok: true });
    assert.equal(await first.exited, 0);
    assert.throws(() => statSync(sock), /ENOENT/);
  });

  void test("a path at admin.socket that is not a socket is left alone and the server refuses to start", async () => {
    const sock = socketPath();
    writeFileSync(sock, "not a socket\n");
    const srv = await serveUntilExit({ BERTH_ADMIN_SOCKET: sock });
    assert.equal(srv.code, 2, srv.stderr);
    assert.match(srv.stderr, /^berth: config: admin\.socket .*admin\.sock.* not a socket/);
    assert.equal(readFileSync(sock, "utf8"), "not a socket\n");
  });

  void test("a stale socket file (its server killed) is replaced", async () => {
    const sock = socketPath();
    const dead = await serve("", 8, { BERTH_ADMIN_SOCKET: sock });
    await dead.waitLog(/"event":"admin-socket"/);
    dead.child.kill("SIGKILL");
    await dead.exited;
    assert.ok(statSync(sock).isSocket(), "the killed server left its socket file");
    const srv = await serve("", 8, { BERTH_ADMIN_SOCKET: sock });
    await srv.waitLog(/"event":"admin-socket"/);
    assert.equal((await admin(sock, { cmd: "status" })).pid, srv.child.pid);
    assert.deepEqual(await admin(sock, { cmd: "drain" }), { ok: true });
    assert.equal(await srv.exited, 0);
    assert.throws(() => statSync(sock), /ENOENT/);
  });

  void test("at exit the socket file is removed only while it is still the server's", async () => {
    const sock = socketPath();
    const srv = await serve("", 8, { BERTH_ADMIN_SOCKET: sock });
    await srv.waitLog(/"event":"admin-socket"/);
    // Someone else's socket takes the path while the server runs.
    rmSync(sock);
    const other = createServer((c) => c.end("other\n"));
    await new Promise<void>((resolve) => other.listen(sock, resolve));
    try {
      srv.child.kill("SIGTERM");
      assert.equal(await srv.exited, 0);
      assert.ok(statSync(sock).isSocket(), "the other socket's file is still there");
      const s = connect(sock);
      let got = "";
      s.on("data", (c: Buffer) => (got += c.toString("utf8")));
      await new Promise<void>((resolve, reject) => s.on("close", () => resolve()).on("error", reject));
      assert.equal(got, "other\n");
    } finally {
      await new Promise<void>((resolve) => other.close(() => resolve()));
    }
  });
});

/** Opens control connections to `port` until the server, out of descriptors, closes one
 * unanswered (libuv then accepts and closes at once); returns them all, still open. */
async function fillDescriptors(port: number): Promise<Control[]> {
  const extra: Control[] = [];
  for (let full = false; !full && extra.length < 200; ) {
    const c = new Control(port);
    extra.push(c);
    full = await Promise.race([c.reply().then(() => false), c.closed.then(() => true)]);
  }
  assert.ok(extra.length < 200, "the descriptor table filled up");
  return extra;
}

void describe("users file edited by hand", () => {
  void test("broken before the first login, the copy read at start stays in use; mended, the new version is read", async () => {
    const usersDir = mkdtempSync(path.join(tmpdir(), "berth-svc-users-"));
    dirs.push(usersDir);
    const usersFile = path.join(usersDir, "users.json");
    const store = new UserStore({ file: usersFile, storageRoot: usersDir, bcryptCost: 4 });
    await store.add("svc", "svc-password");
    const srv = await serve("", 8, { BERTH_USERS_FILE: usersFile });
    // Nobody has logged in yet; an edit leaves the file half-written.
    const good = readFileSync(usersFile, "utf8");
    writeFileSync(usersFile, good.slice(0, good.length / 2));
    await new Promise((r) => setTimeout(r, 1100));
    const before = srv.mark();
    const c = new Control(srv.port);
    await c.login();
    assert.match(await c.cmd("QUIT"), /^221 /);
    const kept = JSON.parse(await srv.waitLog(/users file unusable/, before)) as Record<string, unknown>;
    assert.deepEqual([kept.level, kept.msg, kept.kept], [50, "users file unusable; keeping the last good copy", 1]);
    // Mended, with a user more: read at the next login.
    writeFileSync(usersFile, good);
    await store.add("late", "late-password");
    await new Promise((r) => setTimeout(r, 1100));
    const again = new Control(srv.port);
    assert.match(await again.reply(), /^220 /);
    assert.match(await again.cmd("USER late"), /^331 /);
    assert.match(await again.cmd("PASS late-password"), /^230 /);
    assert.match(await again.cmd("QUIT"), /^221 /);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

void describe("out of descriptors, logged in", () => {
  void test("commands answer 425 and 451 with the reason, and work again once descriptors are back", async () => {
    const srv = await serve("", 8, {}, 120);
    const c = new Control(srv.port);
    await c.login();
    const extra = await fillDescriptors(srv.port);
    // One passive port after another would fail alike: the first failure is the answer.
    assert.equal(await c.cmd("EPSV"), "425 Can't open passive connection: too many open files");
    const before = srv.mark();
    assert.equal(await c.cmd("MKD fresh"), "451 Local error: too many open files");
    const warned = JSON.parse(await srv.waitLog(/failed on the server's side/, before)) as Record<string, unknown>;
    assert.deepEqual([warned.level, warned.verb, warned.code], [40, "MKD", 451]);
    assert.match(String(warned.detail), /EMFILE/);
    for (const x of extra) x.socket.destroy();
    await Promise.all(extra.map((x) => x.closed));
    await new Promise((r) => setTimeout(r, 200));
    assert.match(await c.cmd("EPSV"), /^229 /);
    assert.match(await c.cmd("MKD fresh"), /^257 /);
    assert.match(await c.cmd("QUIT"), /^221 /);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

void describe("a descriptor limit below limits.maxSessions", () => {
  void test("is said once at start, with the sessions it holds; a limit that holds them all is not", { skip: process.platform !== "linux" && "reads /proc/self/limits" }, async () => {
    const low = await serve("", 8, {}, 200);
    // Said before listening: there by the time the server is up.
    const line = low.lines().find((l) => l.includes('"event":"file-limit"'));
    assert.ok(line !== undefined, `no warning of the limit in: ${low.lines().join("\n")}`);
    const warned = JSON.parse(line) as Record<string, unknown>;
    assert.deepEqual([warned.level, warned.limit, warned.maxSessions, warned.sessions], [40, 200, 10000, 136]);
    assert.equal(
      warned.msg,
      "the limit on open files (200) holds at most about 136 sessions, fewer than limits.maxSessions (10000): clients past it are closed without a greeting; raise the limit (LimitNOFILE= in a systemd unit, --ulimit nofile= for docker run, ulimit -n in a shell) or lower limits.maxSessions",
    );
    assert.equal(low.lines().filter((l) => l.includes('"file-limit"')).length, 1);
    low.child.kill("SIGTERM");
    assert.equal(await low.exited, 0);
    // maxSessions within what the limit holds: no warning.
    const fits = await serve("", 8, { BERTH_LIMITS_MAX_SESSIONS: "136" }, 200);
    const c = new Control(fits.port);
    await c.login();
    assert.match(await c.cmd("QUIT"), /^221 /);
    fits.child.kill("SIGTERM");
    assert.equal(await fits.exited, 0);
    assert.deepEqual(fits.lines().filter((l) => l.includes('"file-limit"')), []);
  });

  void test("is said again by a reload that raises limits.maxSessions past what the limit holds", { skip: process.platform !== "linux" && "reads /proc/self/limits" }, async () => {
    const srv = await serve("limits:\n  maxSessions: 100\n", 8, {}, 200);
    assert.deepEqual(srv.lines().filter((l) => l.includes('"file-limit"')), []);
    writeConfig(srv.cwd, "limits:\n  maxSessions: 5000\n");
    const mark = srv.mark();
    srv.child.kill("SIGHUP");
    const reloaded = JSON.parse(await srv.waitLog(/"event":"reloaded"/, mark)) as { applied: string[] };
    assert.deepEqual(reloaded.applied, ["limits.maxSessions"]);
    // Written with the reload's own lines; 10 s is only a guard against waiting for good.
    const line = await Promise.race([srv.waitLog(/"event":"file-limit"/, mark), sleep(10_000).then(() => "no file-limit line")]);
    assert.match(line, /^\{/, line);
    const warned = JSON.parse(line) as Record<string, unknown>;
    assert.deepEqual([warned.level, warned.limit, warned.maxSessions, warned.sessions], [40, 200, 5000, 136]);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

void describe("out of descriptors, counting a quota", () => {
  void test("a recount that runs out of descriptors keeps the count there was: an upload past the quota is still refused", async () => {
    const srv = await serve("", 8, { BERTH_QUOTA_BYTES: "1000", BERTH_QUOTA_RESCAN_AFTER: "0" }, 64);
    mkdirSync(path.join(srv.cwd, "data", "svc", "sub"));
    writeFileSync(path.join(srv.cwd, "data", "svc", "sub", "old.bin"), Buffer.alloc(900));
    // The first login counts the home: 900 of 1000 bytes used.
    const a = new Control(srv.port);
    await a.login();
    assert.match(await a.cmd("TYPE I"), /^200 /);
    const b = new Control(srv.port);
    assert.match(await b.reply(), /^220 /);
    const extra = await fillDescriptors(srv.port);
    // One descriptor free: b's login opens its home with it, and the recount (rescanAfter 0: at
    // every login) finds none left for the home's directories.
    extra.shift()?.socket.destroy();
    await sleep(300);
    assert.match(await b.cmd("USER svc"), /^331 /);
    assert.match(await b.cmd("PASS svc-password"), /^230 /);
    await sleep(300);
    for (const c of extra) c.socket.destroy();
    await Promise.all(extra.map((c) => c.closed));
    await sleep(200);
    const data = await a.pasv();
    const reply = await a.cmd("STOR more.bin");
    if (/^150 /.test(reply)) {
      data.end(Buffer.alloc(900));
      assert.match(await a.reply(), /^552 Quota exceeded/);
    } else {
      assert.match(reply, /^552 Quota exceeded/);
      data.destroy();
    }
    assert.deepEqual(readdirSync(path.join(srv.cwd, "data", "svc")).sort(), ["sub"]);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

void describe("a client that reads no reply", () => {
  void test("its session timing out while replies wait for it, and the client then going away, leave the server serving", async () => {
    const srv = await serve("", 8, { BERTH_LIMITS_IDLE_TIMEOUT: "1", BERTH_LIMITS_COMMAND_RATE: "0" });
    const c = new Control(srv.port);
    await c.login();
    const mark = srv.mark();
    c.socket.pause();
    // About 10 MB of 211 replies, more than the sockets' buffers hold: the server waits for room.
    c.socket.write("STAT\r\n".repeat(40_000));
    assert.match(await srv.waitLog(/"event":"timeout"/, mark), /Idle timeout/);
    // Closed with replies unread: the server's side is reset.
    c.socket.destroy();
    await c.closed;
    await sleep(500);
    assert.equal(srv.child.exitCode, null, `berth exited: ${srv.stderr()}`);
    assert.equal(srv.stderr(), "");
    const again = new Control(srv.port);
    await again.login();
    assert.match(await again.cmd("QUIT"), /^221 /);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

void describe("log output gone", () => {
  void test("the server outlives whoever read its log: one line on stderr, and serving goes on", async () => {
    const srv = await serve("");
    // The reader of the log goes away: the server's next log line meets EPIPE.
    srv.child.stdout?.destroy();
    const c = new Control(srv.port);
    await c.login();
    assert.match(await c.cmd("PWD"), /^257 /);
    const again = new Control(srv.port);
    await again.login();
    assert.match(await again.cmd("QUIT"), /^221 /);
    assert.match(await c.cmd("QUIT"), /^221 /);
    assert.equal(srv.stderr(), "berth: log output failed (EPIPE); logging stops, serving goes on\n");
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("the server outlives the reader of stdout and stderr both (berth serve 2>&1 | head -1)", async () => {
    const srv = await serve("");
    // Both pipes lose their reader: the next log line meets EPIPE, and so does the line on stderr
    // that says so.
    srv.child.stdout?.destroy();
    srv.child.stderr?.destroy();
    const died = srv.exited.then((code) => assert.fail(`berth exited with ${String(code)} while serving`));
    const session = async (): Promise<void> => {
      const c = new Control(srv.port);
      await c.login();
      assert.match(await c.cmd("PWD"), /^257 /);
      // The failed writes are reported asynchronously: give them time to end the process if they can.
      await sleep(500);
      const again = new Control(srv.port);
      await again.login();
      assert.match(await again.cmd("QUIT"), /^221 /);
      assert.match(await c.cmd("QUIT"), /^221 /);
    };
    await Promise.race([session(), died]);
    assert.equal(srv.child.exitCode, null, "still running");
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

void describe("passive diagnosis", () => {
  void test("a PASV the client never connected to is logged with the announced address", async () => {
    const srv = await serve("");
    const c = new Control(srv.port);
    await c.login();
    const r = await c.cmd("PASV");
    const port = /\(\d+,\d+,\d+,\d+,(\d+),(\d+)\)/.exec(r);
    assert.ok(port, r);
    assert.match(await c.cmd("QUIT"), /^221 /);
    const line = JSON.parse(await srv.waitLog(/"event":"passive-unused"/)) as { port: number; announced: string };
    assert.equal(line.port, Number(port[1]) * 256 + Number(port[2]));
    assert.equal(line.announced, "127.0.0.1");
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

/** `berth selftest --port port` run in `cwd` with listen.host `host`; its status and its output. */
async function selftest(port: number, cwd: string, host: string): Promise<{ code: number | null; out: string }> {
  const env = { PATH: process.env.PATH ?? "", BERTH_LISTEN_HOST: host, BERTH_PASSIVE_PORTS: "22010-22019", BERTH_USERS_BCRYPT_COST: "4" };
  const child = spawn(process.execPath, ["--import", TSX, MAIN, "selftest", "--port", String(port)], { cwd, env });
  let out = "";
  child.stdout.on("data", (c: Buffer) => (out += c.toString("utf8")));
  child.stderr.on("data", (c: Buffer) => (out += c.toString("utf8")));
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  return { code, out };
}

void describe("berth selftest", () => {
  void test("passes against a running server and removes its temporary user", async () => {
    const srv = await serve("");
    const { code, out } = await selftest(srv.port, srv.cwd, "127.0.0.1");
    assert.equal(code, 0, out);
    assert.match(out, /PASS +PASV listing/);
    assert.match(out, /PASS +resumed download/);
    assert.match(out, /docker run -p \d+:\d+ -p 22010-22019:22010-22019/);
    assert.doesNotMatch(readFileSync(path.join(srv.cwd, "users", "users.json"), "utf8"), /selftest-/);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("without --host and passive.address, it dials the one address listen.host names (as the health check does), not 127.0.0.1 where nothing listens", async () => {
    const srv = await serve("", 8, { BERTH_LISTEN_HOST: "127.0.0.2" });
    const { code, out } = await selftest(srv.port, srv.cwd, "127.0.0.2");
    assert.equal(code, 0, out);
    assert.match(out, new RegExp(`PASS +login on 127\\.0\\.0\\.2:${srv.port}`));
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("over IPv6 (listen.host ::1) it passes: PASV, which is for IPv4 only (RFC 2428), is skipped saying so, not failed", async () => {
    const srv = await serve("", 8, { BERTH_LISTEN_HOST: "::1" });
    const { code, out } = await selftest(srv.port, srv.cwd, "::1");
    assert.equal(code, 0, out);
    assert.match(out, new RegExp(`PASS +login on \\[::1\\]:${srv.port}`));
    assert.match(out, /PASS +EPSV listing/);
    assert.match(out, /SKIP +PASV listing +IPv4 only/);
    assert.match(out, /PASS +resumed download/);
    assert.match(out, /selftest: all passed/);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });
});

void describe("service helpers", () => {
  void test("passive warnings: loopback, private, container", async () => {
    const { passiveWarnings, isPrivate } = await import("../src/data/diagnose.ts");
    const base = { listenHost: "::", passiveAddress: "", passivePorts: "21100-21110", inContainer: false };
    assert.deepEqual(passiveWarnings(base), []);
    assert.match(passiveWarnings({ ...base, inContainer: true })[0] ?? "", /container/);
    // With host networking (compose's berth-host, README "Docker") an empty address is right: the
    // warning says so rather than telling every such start to set one.
    assert.match(passiveWarnings({ ...base, inContainer: true })[0] ?? "", /unless the container uses the host's network \(--network host\)/);
    assert.match(passiveWarnings({ ...base, passiveAddress: "0.0.0.0" })[0] ?? "", /only clients on this machine/);
    assert.match(passiveWarnings({ ...base, passiveAddress: "192.168.1.5" })[0] ?? "", /private/);
    assert.deepEqual(passiveWarnings({ ...base, passiveAddress: "203.0.113.7" }), []);
    assert.deepEqual(passiveWarnings({ ...base, listenHost: "127.0.0.1", passiveAddress: "127.0.0.1" }), []);
    assert.equal(isPrivate("172.20.0.1"), true);
    assert.equal(isPrivate("172.32.0.1"), false);
    assert.equal(isPrivate("fd00::1"), true);
  });

  void test("ctl progress bar and table", async () => {
    const { progressBar, sessionTable, human } = await import("../src/cli/ctl.ts");
    assert.equal(progressBar(50, 100, 10), "[#####-----]  50%");
    assert.equal(progressBar(5, null, 5, 2), "[-->--]");
    assert.equal(human(1_500_000), "1.5 MB");
    const table = sessionTable(
      [{ id: "ab12cd34", user: "svc", remote: "127.0.0.1", secure: false, transfer: { direction: "upload", path: "/x", bytes: 500, expected: 1000, startedAt: 0 } }],
      1000,
    );
    assert.match(table, /ab12cd34 +svc +127\.0\.0\.1 +no +upload \/x/);
    assert.match(table, /\[#{15}-{15}\] {2}50%/);
    // A path is any name a client made: control characters, C1 ones too (U+009B is a terminal's
    // CSI), are shown escaped, never sent to the operator's terminal.
    const odd = sessionTable(
      [{ id: "ab12cd34", user: "svc", remote: "127.0.0.1", secure: false, transfer: { direction: "download", path: "/a\u009b2Jb\u001b[2Jc\u007fd\u00e9", bytes: 1, expected: null, startedAt: 0 } }],
      1000,
    );
    assert.match(odd, /download \/a\\x9b2Jb\\x1b\[2Jc\\x7fd\u00e9$/m);
    // eslint-disable-next-line no-control-regex -- control characters are what must not be there
    assert.doesNotMatch(odd, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/);
  });
});
