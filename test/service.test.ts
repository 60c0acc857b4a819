/**
 * Running berth as a service: SIGHUP reloads the config for new sessions (a broken one is refused
 * and the server keeps serving), SIGTERM lets a running upload finish and exits 0. The health check,
 * the admin socket's ownership and running out of descriptors are in service-ops.test.ts.
 */
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync, renameSync, statSync, utimesSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { admin, adminRaw, Control, greeting, killMidReplace, nlst, serve, sleep, writeConfig } from "./helpers/service.ts";

void describe("berth as a service", () => {
  void test("SIGHUP: a broken config is refused and the server keeps serving; a good one applies to new sessions", async () => {
    const srv = await serve('server:\n  banner: "first banner"\n');
    assert.equal(await greeting(srv.port), "220 first banner");
    const old = new Control(srv.port);
    await old.login();

    writeConfig(srv.cwd, "limits:\n  idleTimeout: -5\n");
    let mark = srv.mark();
    srv.child.kill("SIGHUP");
    const failed = await srv.waitLog(/reload failed/, mark);
    assert.match(failed, /limits\.idleTimeout/);
    assert.equal(await greeting(srv.port), "220 first banner");

    // tls.implicitPort needs a restart: it is reported and kept (the BERTH_* environment wins over the file).
    writeConfig(srv.cwd, 'server:\n  banner: "second banner"\ntls:\n  implicitPort: 9990\npassive:\n  ports: "22020-22029"\n');
    mark = srv.mark();
    srv.child.kill("SIGHUP");
    const reloaded = JSON.parse(await srv.waitLog(/"event":"reloaded"/, mark)) as { applied: string[]; needRestart: string[] };
    assert.deepEqual(reloaded.applied, ["server.banner"]);
    assert.deepEqual(reloaded.needRestart, ["tls.implicitPort"]);
    // The file's passive.ports does nothing under BERTH_PASSIVE_PORTS: warned of at the reload, as at start.
    const overridden = JSON.parse(await srv.waitLog(/"event":"env-override"/, mark)) as { key: string; level: number; fileValue: string };
    assert.deepEqual([overridden.level, overridden.key, overridden.fileValue], [40, "passive.ports", "22020-22029"]);
    assert.equal(await greeting(srv.port), "220 second banner");
    // The session opened before the reload goes on working.
    assert.match(await old.cmd("PWD"), /^257 /);
    assert.match(await old.cmd("QUIT"), /^221 /);

    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("SIGHUP and the admin socket: a passive.address that does not resolve, which a start refuses, is refused by a reload too; the current configuration stays", async () => {
    const srv = await serve('server:\n  banner: "first banner"\n', 8, { BERTH_ADMIN_SOCKET: "run/admin.sock" });
    const sock = path.join(srv.cwd, "run", "admin.sock");
    await srv.waitLog(/"event":"admin-socket"/);
    // .invalid never resolves (RFC 6761).
    writeConfig(srv.cwd, 'server:\n  banner: "second banner"\npassive:\n  address: "ftp.invalid"\n');
    const mark = srv.mark();
    srv.child.kill("SIGHUP");
    const failed = await srv.waitLog(/reload failed|"event":"reloaded"/, mark);
    assert.match(failed, /"event":"reload-failed".*passive\.address ftp\.invalid cannot be resolved/);
    assert.equal(await greeting(srv.port), "220 first banner");
    const refused = await admin(sock, { cmd: "reload" });
    assert.equal(refused.ok, false);
    assert.match(String(refused.error), /passive\.address ftp\.invalid cannot be resolved/);
    assert.equal(await greeting(srv.port), "220 first banner");
    // A request sent after the reload is answered after it, in order.
    writeConfig(srv.cwd, 'server:\n  banner: "second banner"\npassive:\n  address: "127.0.0.1"\n');
    assert.deepEqual(await adminRaw(sock, ['{"cmd":"reload"}\n{"cmd":"kick","id":"nope"}\n'], true), [
      '{"ok":true,"applied":["passive.address","server.banner"],"needRestart":[]}',
      '{"ok":false,"error":"no session nope"}',
    ]);
    assert.equal(await greeting(srv.port), "220 second banner");
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("SIGHUP with a broken config still opens log.xferlog again: a file logrotate moved away is let go, and the next transfer's line is in the new file", async () => {
    const srv = await serve("", 8, { BERTH_LOG_XFERLOG: "xferlog" });
    const xferlog = path.join(srv.cwd, "xferlog");
    const c = new Control(srv.port);
    await c.login();
    assert.match(await c.cmd("TYPE I"), /^200 /);
    const upload = async (name: string, size: number): Promise<void> => {
      const data = await c.pasv();
      assert.match(await c.cmd(`STOR ${name}`), /^150 /);
      data.end(Buffer.alloc(size, 1));
      assert.match(await c.reply(), /^226 /);
    };
    await upload("one.bin", 10);
    // logrotate moves the file, then reloads the server, while the config is in the middle of an edit.
    renameSync(xferlog, `${xferlog}.1`);
    writeConfig(srv.cwd, "limits:\n  idleTimeout: -5\n");
    const mark = srv.mark();
    srv.child.kill("SIGHUP");
    await srv.waitLog(/reload failed/, mark);
    await upload("two.bin", 20);
    assert.match(await c.cmd("QUIT"), /^221 /);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
    const old = readFileSync(`${xferlog}.1`, "utf8").trim().split("\n");
    assert.equal(old.length, 1);
    assert.match(old[0] ?? "", / 10 \/one\.bin b /);
    assert.ok(existsSync(xferlog), "a new xferlog is made at the path");
    const now = readFileSync(xferlog, "utf8").trim().split("\n");
    assert.equal(now.length, 1);
    assert.match(now[0] ?? "", / 20 \/two\.bin b /);
  });

  void test("SIGHUP with TLS on says the certificate was read again, though no key changed (a renewal keeps the paths)", async () => {
    const srv = await serve('tls:\n  mode: "explicit"\n');
    const mark = srv.mark();
    srv.child.kill("SIGHUP");
    const reloaded = JSON.parse(await srv.waitLog(/"event":"reloaded"/, mark)) as { applied: string[]; certificate?: string };
    assert.deepEqual(reloaded.applied, []);
    assert.equal(reloaded.certificate, path.join(srv.cwd, "users", "selfsigned-cert.pem"));
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("SIGHUP: tls.require true with tls.mode changed from off waits for the restart tls.mode needs; logins go on", async () => {
    const srv = await serve('tls:\n  mode: "off"\n');
    writeConfig(srv.cwd, 'server:\n  banner: "after"\ntls:\n  mode: explicit\n  require: true\n');
    const mark = srv.mark();
    srv.child.kill("SIGHUP");
    const reloaded = JSON.parse(await srv.waitLog(/"event":"reloaded"/, mark)) as { applied: string[]; needRestart: string[] };
    assert.deepEqual(reloaded.applied, ["server.banner"]);
    assert.deepEqual(reloaded.needRestart, ["tls.mode", "tls.require"]);
    // Without TLS there is no AUTH TLS to offer: with tls.require applied nobody could log in.
    const c = new Control(srv.port);
    await c.login();
    assert.match(await c.cmd("QUIT"), /^221 /);
    assert.equal(await greeting(srv.port), "220 after");
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("SIGHUP: a new storage.root needs a restart; users' homes stay where the running server found them", async () => {
    const srv = await serve('storage:\n  root: "first"\n');
    writeConfig(srv.cwd, 'storage:\n  root: "second"\n');
    const mark = srv.mark();
    srv.child.kill("SIGHUP");
    const reloaded = JSON.parse(await srv.waitLog(/"event":"reloaded"/, mark)) as { applied: string[]; needRestart: string[] };
    assert.deepEqual(reloaded.applied, []);
    assert.deepEqual(reloaded.needRestart, ["storage.root"]);
    const c = new Control(srv.port);
    await c.login();
    assert.match(await c.cmd("MKD made"), /^257 /);
    assert.ok(existsSync(path.join(srv.cwd, "first", "svc", "made")));
    assert.ok(!existsSync(path.join(srv.cwd, "second")));
    assert.match(await c.cmd("QUIT"), /^221 /);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("metrics.listen with port 0: the port picked is logged, and the endpoint answers there", async () => {
    const srv = await serve("", 8, { BERTH_METRICS_LISTEN: "127.0.0.1:0" });
    const line = JSON.parse(await srv.waitLog(/"event":"metrics"/)) as { listen: string; port: number; msg: string };
    assert.equal(line.listen, "127.0.0.1:0");
    assert.ok(line.port > 0, `a real port: ${JSON.stringify(line)}`);
    assert.equal(line.msg, `metrics on http://127.0.0.1:${line.port}/metrics`);
    const res = await fetch(`http://127.0.0.1:${line.port}/metrics`);
    assert.equal(res.status, 200);
    assert.match(await res.text(), /^# HELP berth_/m);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("SIGTERM: idle sessions get 421, a running upload completes, exit 0", async () => {
    const srv = await serve("", 8);
    const idle = new Control(srv.port);
    await idle.login();
    const up = new Control(srv.port);
    await up.login();
    const data = await up.pasv();
    assert.match(await up.cmd("STOR during.bin"), /^150 /);
    const chunk = Buffer.alloc(64 * 1024, 7);
    data.write(chunk);
    await sleep(200);

    const t0 = Date.now();
    srv.child.kill("SIGTERM");
    assert.match(await idle.reply(), /^421 /);
    for (let i = 0; i < 9; i++) {
      data.write(chunk);
      await sleep(100);
    }
    data.end();
    assert.match(await up.reply(), /^226 /);
    assert.equal(await srv.exited, 0);
    assert.ok(Date.now() - t0 < 8000, "exited within the grace time");
    const home = path.join(srv.cwd, "data", "svc");
    assert.equal(readFileSync(path.join(home, "during.bin")).length, 10 * chunk.length);
  });

  void test("SIGKILL mid-upload: the replaced file stays whole, its temp file is never listed, and after a restart the directory it was left in can be removed", async () => {
    const { cwd, dir, original, temps } = await killMidReplace();
    const again = await serve("", 8, {}, undefined, cwd);
    const c2 = new Control(again.port);
    await c2.login();
    assert.deepEqual(readFileSync(path.join(dir, "f.bin")), original);
    assert.deepEqual(await nlst(c2, "d"), ["d/f.bin"]);
    assert.equal(temps().length, 1, "a temp file written to moments ago stays");
    assert.match(await c2.cmd("DELE d/f.bin"), /^250 /);
    assert.deepEqual(await nlst(c2, "d"), []);
    // The directory lists empty: RMD removes it, and the temp file nobody could see or name with it.
    assert.match(await c2.cmd("RMD d"), /^250 /);
    assert.equal(existsSync(dir), false);
    again.child.kill("SIGTERM");
    assert.equal(await again.exited, 0);
  });

  void test("SIGKILL mid-upload, then a day: a listing of the directory removes the temp file left behind and logs it", async () => {
    const { cwd, dir, original, temps } = await killMidReplace();
    const again = await serve("", 8, {}, undefined, cwd);
    const c2 = new Control(again.port);
    await c2.login();
    const [left] = temps();
    assert.ok(left !== undefined);
    const bytes = statSync(path.join(dir, left)).size;
    const day = Date.now() / 1000 - 25 * 3600;
    utimesSync(path.join(dir, left), day, day);
    const mark = again.mark();
    assert.deepEqual(await nlst(c2, "d"), ["d/f.bin"]);
    assert.deepEqual(temps(), []);
    const line = JSON.parse(await again.waitLog(/"event":"stale-temp"/, mark)) as Record<string, unknown>;
    assert.equal(line.dir, "/d");
    assert.equal(line.name, left);
    assert.equal(line.bytes, bytes);
    assert.equal(line.user, "svc");
    assert.deepEqual(readFileSync(path.join(dir, "f.bin")), original);
    again.child.kill("SIGTERM");
    assert.equal(await again.exited, 0);
  });

  void test("SIGTERM after the grace time: a client that stays after its 421 is told once, a transfer still running is cut with 426 and logged", async () => {
    const srv = await serve("", 1, { BERTH_LOG_XFERLOG: "xferlog" });
    const stays = new Control(srv.port);
    await stays.login();
    const up = new Control(srv.port);
    await up.login();
    const data = await up.pasv();
    assert.match(await up.cmd("STOR cut.bin"), /^150 /);
    data.write(Buffer.alloc(64 * 1024, 7));
    await sleep(200);
    const mark = srv.mark();
    srv.child.kill("SIGTERM");
    assert.match(await stays.reply(), /^421 /);
    // The upload never ends: at the end of the grace time it is cut and answered.
    assert.equal(await up.reply(), "426 Transfer aborted: server shutting down");
    assert.equal(await srv.exited, 0);
    const after = srv.lines().slice(mark).map((l) => JSON.parse(l) as { event?: string; result?: string; path?: string; bytes?: number });
    // One 421 line per session, however long its client stays after it: the idle one at once, the
    // other once its transfer was cut.
    const told = after.filter((l) => l.event === "timeout") as { session?: string }[];
    assert.equal(told.length, 2, JSON.stringify(after));
    assert.notEqual(told[0]?.session, told[1]?.session);
    const cut = after.filter((l) => l.event === "transfer");
    assert.equal(cut.length, 1);
    assert.equal(cut[0]?.result, "shutdown");
    assert.equal(cut[0]?.path, "/cut.bin");
    const xfer = readFileSync(path.join(srv.cwd, "xferlog"), "utf8").trim().split("\n");
    assert.equal(xfer.length, 1);
    assert.match(xfer[0] ?? "", /\/cut\.bin a _ i r svc ftp 0 \* i$/); // ASCII: this client sent no TYPE I
    data.destroy();
  });

  void test("a second SIGTERM exits at once: an upload replacing a file leaves the old file and no temp file", async () => {
    const srv = await serve("", 8);
    const home = path.join(srv.cwd, "data", "svc");
    writeFileSync(path.join(home, "kept.bin"), "the old content");
    const up = new Control(srv.port);
    await up.login();
    const data = await up.pasv();
    assert.match(await up.cmd("STOR kept.bin"), /^150 /);
    data.write(Buffer.alloc(64 * 1024, 7));
    const temps = (): string[] => readdirSync(home).filter((n) => n.startsWith(".berth-upload-"));
    for (let i = 0; i < 50 && temps().length === 0; i++) await sleep(20);
    assert.equal(temps().length, 1, "the upload writes a temp file");
    srv.child.kill("SIGTERM");
    await srv.waitLog(/shutting down/);
    // Sent as an operator would, once the first was seen: the same signal again within half a
    // second is that one delivered twice (npm start under a Ctrl-C), not a second one.
    await sleep(700);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
    assert.ok(!srv.lines().some((l) => l.includes('"event":"stopped"')), "exited at once, not drained");
    assert.deepEqual(temps(), []);
    assert.equal(readFileSync(path.join(home, "kept.bin"), "utf8"), "the old content");
    data.destroy();
    up.socket.destroy();
  });

  void test("a second drain on the admin socket is answered and lets the running upload finish: only a second signal exits at once", async () => {
    const srv = await serve("", 8, { BERTH_ADMIN_SOCKET: "run/admin.sock" });
    const sock = path.join(srv.cwd, "run", "admin.sock");
    await srv.waitLog(/"event":"admin-socket"/);
    const up = new Control(srv.port);
    await up.login();
    const data = await up.pasv();
    assert.match(await up.cmd("STOR drained.bin"), /^150 /);
    const chunk = Buffer.alloc(64 * 1024, 7);
    data.write(chunk);
    assert.deepEqual(await adminRaw(sock, ['{"cmd":"drain"}\n'], true), ['{"ok":true}']);
    // The log says what started the shutdown: no signal was sent.
    const stopping = await srv.waitLog(/shutting down/);
    assert.doesNotMatch(stopping, /"signal"|SIGTERM/);
    assert.match(stopping, /"cause":"drain on the admin socket"/);
    // Run again (a script, an operator checking): the same drain, not a kill.
    assert.deepEqual(await adminRaw(sock, ['{"cmd":"drain"}\n'], true), ['{"ok":true}']);
    data.end(chunk);
    assert.match(await up.reply(), /^226 /);
    assert.equal(await srv.exited, 0);
    assert.equal(readFileSync(path.join(srv.cwd, "data", "svc", "drained.bin")).length, 2 * chunk.length);
  });

  void test("SIGHUP that turns anonymous FTP on with a root holding a user's home, or shadowing a user, warns of it as a start does", async () => {
    const srv = await serve("", 8, { BERTH_USER: "ftp" });
    assert.equal(srv.lines().filter((l) => l.includes('"event":"anonymous-root"')).length, 0);
    writeConfig(srv.cwd, 'anonymous:\n  enabled: true\n  root: "."\n');
    const mark = srv.mark();
    srv.child.kill("SIGHUP");
    const reloaded = JSON.parse(await srv.waitLog(/"event":"reloaded"/, mark)) as { applied: string[] };
    assert.deepEqual(reloaded.applied, ["anonymous.enabled", "anonymous.root"]);
    // Written with the reload's own lines; 10 s is only a guard against waiting for good.
    const soon = (re: RegExp): Promise<string> => Promise.race([srv.waitLog(re, mark), sleep(10_000).then(() => `no line ${String(re)}`)]);
    const line = await soon(/"event":"anonymous-root"/);
    assert.match(line, /^\{/, line);
    const warned = JSON.parse(line) as { level: number; root: string; users: string[] };
    assert.deepEqual([warned.level, warned.root, warned.users], [40, path.join(srv.cwd, "data"), ["ftp"]]);
    assert.match(await soon(/user \\"ftp\\" cannot log in while anonymous\.enabled is true/), /"level":40/);
    // A reload that leaves anonymous FTP as it was says nothing more.
    writeConfig(srv.cwd, 'anonymous:\n  enabled: true\n  root: "."\nserver:\n  banner: "again"\n');
    const again = srv.mark();
    srv.child.kill("SIGHUP");
    await srv.waitLog(/"event":"reloaded"/, again);
    assert.equal(srv.lines().slice(again).filter((l) => l.includes("anonymous")).length, 0, srv.lines().slice(again).join("\n"));
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("SIGHUP that gives passive.address an address clients from outside cannot reach warns of it as a start does", async () => {
    // Listening on every address: on loopback alone any announced address is fine.
    const srv = await serve('passive:\n  address: "203.0.113.7"\n', 8, { BERTH_LISTEN_HOST: "0.0.0.0" });
    assert.equal(srv.lines().filter((l) => l.includes('"event":"passive-check"')).length, 0);
    writeConfig(srv.cwd, 'passive:\n  address: "10.1.2.3"\n');
    const mark = srv.mark();
    srv.child.kill("SIGHUP");
    const reloaded = JSON.parse(await srv.waitLog(/"event":"reloaded"/, mark)) as { applied: string[] };
    assert.deepEqual(reloaded.applied, ["passive.address"]);
    // Written with the reload's own lines; 10 s is only a guard against waiting for good.
    const line = await Promise.race([srv.waitLog(/"event":"passive-check"/, mark), sleep(10_000).then(() => "no passive-check line")]);
    assert.match(line, /"level":40.*passive\.address 10\.1\.2\.3 is a private address/, line);
    // A reload that leaves it as it was says nothing more.
    writeConfig(srv.cwd, 'passive:\n  address: "10.1.2.3"\nserver:\n  banner: "again"\n');
    const again = srv.mark();
    srv.child.kill("SIGHUP");
    await srv.waitLog(/"event":"reloaded"/, again);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
    assert.equal(srv.lines().slice(again).filter((l) => l.includes('"event":"passive-check"')).length, 0);
  });

  void test("SIGHUP: a new log.level applies to the sessions opened after it, not to those already open", async () => {
    const srv = await serve("log:\n  level: info\n");
    const before = new Control(srv.port);
    await before.login();
    assert.match(await before.cmd("NOOP"), /^200 /);
    assert.equal(srv.lines().filter((l) => l.includes('"event":"command"')).length, 0, "no debug lines at info");
    writeConfig(srv.cwd, "log:\n  level: debug\n");
    const mark = srv.mark();
    srv.child.kill("SIGHUP");
    const reloaded = JSON.parse(await srv.waitLog(/"event":"reloaded"/, mark)) as { applied: string[] };
    assert.deepEqual(reloaded.applied, ["log.level"]);
    // The session opened before keeps its level: its NOOP is no debug line.
    assert.match(await before.cmd("NOOP"), /^200 /);
    await before.cmd("QUIT");
    const after = new Control(srv.port);
    await after.login();
    assert.match(await after.cmd("NOOP"), /^200 /);
    await srv.waitLog(/"event":"command".*"verb":"NOOP"/, mark);
    await after.cmd("QUIT");
    const commands = srv.lines().filter((l) => l.includes('"event":"command"'));
    assert.deepEqual(
      commands.filter((l) => l.includes('"verb":"NOOP"')).map((l) => (JSON.parse(l) as { user?: string }).user),
      ["svc"],
      "one NOOP logged, by the session opened after the reload",
    );
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("SIGHUP: a session open across a reload to a higher log.level keeps its own level, before its login and after", async () => {
    const srv = await serve("log:\n  level: debug\n");
    const open = new Control(srv.port);
    assert.match(await open.reply(), /^220 /);
    const session = (JSON.parse(await srv.waitLog(/"event":"connect"/)) as { session: string }).session;
    // At warn the reload writes no line: the new banner shows it was applied.
    writeConfig(srv.cwd, "log:\n  level: warn\nserver:\n  banner: reloaded\n");
    const mark = srv.mark();
    srv.child.kill("SIGHUP");
    for (let i = 0; ; i++) {
      const probe = new Control(srv.port);
      const banner = await probe.reply();
      probe.socket.destroy();
      if (banner === "220 reloaded") break;
      assert.ok(i < 100, "the reload was applied");
      await sleep(50);
    }
    assert.match(await open.cmd("USER svc"), /^331 /);
    assert.match(await open.cmd("PASS wrong"), /^530 /);
    assert.match(await open.cmd("USER svc"), /^331 /);
    assert.match(await open.cmd("PASS svc-password"), /^230 /);
    assert.match(await open.cmd("NOOP"), /^200 /);
    assert.match(await open.cmd("QUIT"), /^221 /);
    // This session's own end (the probes above that came before the reload end at debug too).
    const end = srv.waitLog(new RegExp(`"session":"${session.replace(/[^\w-]/g, "")}".*"event":"disconnect"`), mark);
    assert.ok(await Promise.race([end.then(() => true), sleep(5000).then(() => false)]), "the session's end is written at debug");
    const own = srv
      .lines()
      .slice(mark)
      .map((l) => JSON.parse(l) as { session?: string; event?: string; verb?: string; result?: string })
      .filter((l) => l.session === session);
    assert.deepEqual(
      own.map((l) => [l.event, l.verb ?? l.result ?? ""]),
      [
        ["command", "USER"],
        ["command", "PASS"],
        ["login", "fail"],
        ["command", "USER"],
        ["command", "PASS"],
        ["login", "ok"],
        ["command", "NOOP"],
        ["command", "QUIT"],
        ["disconnect", ""],
      ],
      "every line of the session at debug, the level it opened with",
    );
    // A session opened after the reload writes at warn: none of these. Counted from here: the
    // probes above that connected before the reload took effect opened at debug, and their lines
    // (the last one's end included) were written by the time the open session had its replies.
    const afterMark = srv.mark();
    const after = new Control(srv.port);
    await after.login();
    assert.match(await after.cmd("QUIT"), /^221 /);
    await after.closed;
    const others = srv
      .lines()
      .slice(afterMark)
      .map((l) => JSON.parse(l) as { session?: string; level: number })
      .filter((l) => l.session !== undefined && l.session !== session && l.level < 40);
    assert.deepEqual(others, []);
    srv.child.kill("SIGTERM");
    assert.equal(await srv.exited, 0);
  });

  void test("admin socket: mode 0660, status, sessions, kick, reload, drain", async () => {
    const srv = await serve("", 8, { BERTH_ADMIN_SOCKET: "run/admin.sock" });
    const sock = path.join(srv.cwd, "run", "admin.sock");
    await srv.waitLog(/"event":"admin-socket"/);
    const st = statSync(sock);
    assert.ok(st.isSocket());
    assert.equal(st.mode & 0o777, 0o660);

    const c = new Control(srv.port);
    await c.login();
    const status = await admin(sock, { cmd: "status" });
    assert.equal(status.ok, true);
    assert.equal(status.sessions, 1);
    const list = (await admin(sock, { cmd: "sessions" })).sessions as { id: string; user: string | null }[];
    assert.equal(list.length, 1);
    assert.equal(list[0]?.user, "svc");
    assert.deepEqual(await admin(sock, { cmd: "kick", id: "nope" }), { ok: false, error: "no session nope" });
    // A kicked session's running upload is cut with 426 saying why, then the session with 421.
    const data = await c.pasv();
    assert.match(await c.cmd("STOR kicked.bin"), /^150 /);
    data.on("error", () => undefined);
    data.write(Buffer.alloc(64 * 1024, 7));
    for (let i = 0; i < 100; i++) {
      const now = (await admin(sock, { cmd: "sessions" })).sessions as { transfer: unknown }[];
      if (now[0]?.transfer) break;
      await sleep(20);
    }
    assert.deepEqual(await admin(sock, { cmd: "kick", id: list[0]?.id }), { ok: true, kicked: list[0]?.id });
    assert.equal(await c.reply(), "426 Transfer aborted: disconnected by the administrator");
    assert.match(await c.reply(), /^421 /);
    await c.closed;
    data.destroy();
    assert.deepEqual(await admin(sock, { cmd: "bogus" }), { ok: false, error: 'unknown command "bogus" (one of status, sessions, kick, reload, drain)' });
    // Requests of the wrong shape say what a request is.
    for (const req of [{}, [], null, 42, { cmd: 5 }]) {
      assert.deepEqual(await admin(sock, req), { ok: false, error: 'a request is an object with "cmd": one of status, sessions, kick, reload, drain' }, JSON.stringify(req));
    }
    for (const req of [{ cmd: "kick" }, { cmd: "kick", id: { a: 1 } }, { cmd: "kick", id: "" }]) {
      assert.deepEqual(await admin(sock, req), { ok: false, error: 'kick needs "id": a session id (see "sessions")' }, JSON.stringify(req));
    }
    // A last request without a newline, the client's side then ended, is answered before the close.
    assert.deepEqual(await adminRaw(sock, ['{"cmd":"kick","id":"nope"}'], true), ['{"ok":false,"error":"no session nope"}']);
    // Two requests in one write, one of them split inside a character ("é" is two bytes).
    const e = Buffer.from('{"cmd":"kick","id":"\u00e9"}\n', "utf8");
    const at = e.indexOf(0xc3) + 1;
    assert.deepEqual(await adminRaw(sock, [Buffer.concat([Buffer.from('{"cmd":"bogus"}\n'), e.subarray(0, at)]), e.subarray(at)], true), [
      '{"ok":false,"error":"unknown command \\"bogus\\" (one of status, sessions, kick, reload, drain)"}',
      '{"ok":false,"error":"no session \u00e9"}',
    ]);
    // A line longer than 64 KiB is refused in words, and the connection closed.
    assert.deepEqual(await adminRaw(sock, ["x".repeat(70_000)], false), ['{"ok":false,"error":"a request is one line of at most 65536 characters"}']);
    assert.deepEqual(await admin(sock, { cmd: "reload" }), { ok: true, applied: [], needRestart: [] });
    assert.deepEqual(await admin(sock, { cmd: "drain" }), { ok: true });
    assert.equal(await srv.exited, 0);
    assert.throws(() => statSync(sock), /ENOENT/);
  });

  void test("admin socket: a reload is logged as SIGHUP's is, a refused one too (the operator reading the log learns the config in use is the old one)", async () => {
    const srv = await serve('server:\n  banner: "first banner"\n', 8, { BERTH_ADMIN_SOCKET: "run/admin.sock" });
    const sock = path.join(srv.cwd, "run", "admin.sock");
    await srv.waitLog(/"event":"admin-socket"/);
    writeConfig(srv.cwd, "limits:\n  idleTimeout: -5\n");
    const mark = srv.mark();
    const refused = await admin(sock, { cmd: "reload" });
    assert.equal(refused.ok, false);
    assert.match(String(refused.error), /limits\.idleTimeout/);
    assert.equal(await greeting(srv.port), "220 first banner");
    // A key that needs a restart is warned of, as after SIGHUP.
    writeConfig(srv.cwd, 'server:\n  banner: "second banner"\nstorage:\n  root: elsewhere\n');
    assert.deepEqual(await admin(sock, { cmd: "reload" }), { ok: true, applied: ["server.banner"], needRestart: ["storage.root"] });
    assert.deepEqual(await admin(sock, { cmd: "drain" }), { ok: true });
    assert.equal(await srv.exited, 0);
    const seen = srv.lines().slice(mark);
    const failed = seen.find((l) => /reload failed/.test(l));
    assert.ok(failed !== undefined, `a refused reload is logged: ${seen.join("\n")}`);
    assert.match(failed, /"event":"reload-failed".*limits\.idleTimeout/);
    assert.ok(seen.some((l) => /"needRestart":\["storage\.root"\].*need a restart/.test(l)), "the keys that need a restart are warned of");
  });
});