/**
 * The command line outside `berth user`: config check and its errors, selftest's arguments, and
 * `berth serve`'s demo credentials and refusals. Unknown commands and help are in cli-help.test.ts,
 * `berth ctl` in cli-ctl.test.ts (each file runs within the per-file timeout).
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { existsSync, mkdirSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import path from "node:path";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { parse } from "yaml";
import { dockerMapping } from "../src/cli/selftest.ts";
import { loadConfig } from "../src/config/load.ts";
import { DEFAULTS } from "../src/config/schema.ts";
import { makeSelfSigned } from "../src/data/selfsigned.ts";
import { assertOneLineError, baseEnv, berth, MAIN, startServe, TSX, workdir } from "./helpers/cli.ts";
import { track } from "./helpers/reap.ts";

const HAS_SERVER = existsSync(fileURLToPath(new URL("../src/server.ts", import.meta.url)));

void describe("berth config check and errors", () => {
  void test("config check prints the effective config as YAML and exits 0", async () => {
    const cwd = workdir();
    const r = await berth(cwd, ["config", "check"], { env: { BERTH_LISTEN_PORT: "2222" } });
    assert.equal(r.code, 0, r.stderr);
    const printed = parse(r.stdout) as typeof DEFAULTS;
    assert.deepEqual(printed, { ...DEFAULTS, listen: { ...DEFAULTS.listen, port: 2222 }, users: { ...DEFAULTS.users, bcryptCost: 4 } });
  });

  void test("config check warns on stderr of each key of the file a variable overrides, as serve does at start", async () => {
    const cwd = workdir();
    mkdirSync(path.join(cwd, "config"), { recursive: true });
    writeFileSync(path.join(cwd, "config", "berth.yaml"), 'listen:\n  port: 2100\npassive:\n  ports: "40000-40009"\n');
    const r = await berth(cwd, ["config", "check"], { env: { BERTH_LISTEN_PORT: "2222", BERTH_PASSIVE_PORTS: "40000-40009" } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, "berth: warning: BERTH_LISTEN_PORT=2222 overrides listen.port: 2100 in config/berth.yaml\n");
    assert.equal((parse(r.stdout) as typeof DEFAULTS).listen.port, 2222, "stdout is the effective config alone");
  });

  void test("--config names the file; a bad key in it exits 2 with one line", async () => {
    const cwd = workdir();
    mkdirSync(path.join(cwd, "etc"));
    writeFileSync(path.join(cwd, "etc", "b.yaml"), "listen:\n  port: 70000\n");
    assertOneLineError(await berth(cwd, ["config", "check", "--config", "etc/b.yaml"]), 2, "listen.port", "etc/b.yaml");
    writeFileSync(path.join(cwd, "etc", "c.yaml"), "listen:\n  prot: 21\n");
    assertOneLineError(await berth(cwd, ["user", "list", "--config=etc/c.yaml"]), 2, "listen.prot");
    assertOneLineError(await berth(cwd, ["serve", "--config", "etc/c.yaml"]), 2, "listen.prot");
    assertOneLineError(await berth(cwd, ["config", "check", "--config", "nope.yaml"]), 2, "nope.yaml");
  });

  void test("a config/berth.yaml that is a link to a file that is gone is refused (exit 2, one line), not taken for no file at all", async () => {
    const cwd = workdir();
    const gone = path.join(cwd, "etc", "berth.yaml");
    mkdirSync(path.join(cwd, "config"));
    symlinkSync(gone, path.join(cwd, "config", "berth.yaml"));
    const message = `cannot read config/berth.yaml: it is a symbolic link to ${gone}, which does not exist`;
    assertOneLineError(await berth(cwd, ["config", "check"]), 2, message);
    assertOneLineError(await berth(cwd, ["user", "list"]), 2, message);
    const serve = await berth(cwd, ["serve"], { env: { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0" } });
    assertOneLineError(serve, 2, message);
    assert.doesNotMatch(serve.stdout, /listening|created user/, "nothing listened");
    assert.ok(!existsSync(path.join(cwd, "users", "users.json")), "no users file");
    // Once the file is there the link is read; without any file the defaults apply, as before.
    mkdirSync(path.join(cwd, "etc"));
    writeFileSync(gone, "listen:\n  port: 2100\n");
    const linked = await berth(cwd, ["config", "check"]);
    assert.equal(linked.code, 0, linked.stderr);
    assert.equal((parse(linked.stdout) as typeof DEFAULTS).listen.port, 2100);
    const bare = workdir();
    const defaults = await berth(bare, ["config", "check"]);
    assert.equal(defaults.code, 0, defaults.stderr);
    assert.match(defaults.stdout, /^# effective configuration: defaults \(no config file\)/);
  });

  void test("a config file, certificate or key that is a named pipe is refused (exit 2, one line), not waited on for a writer that never comes", { skip: process.platform === "win32" ? "no mkfifo" : false }, async () => {
    const cwd = workdir();
    const made = spawnSync("mkfifo", [path.join(cwd, "pipe.yaml"), path.join(cwd, "pipe.pem")]);
    assert.equal(made.status, 0, "mkfifo");
    const { cert, key } = makeSelfSigned(["localhost"]);
    writeFileSync(path.join(cwd, "cert.pem"), cert);
    writeFileSync(path.join(cwd, "key.pem"), key);
    const tls = { BERTH_TLS_MODE: "explicit", BERTH_LISTEN_PORT: "0" };
    const [config, certFile, keyFile] = await Promise.all([
      berth(cwd, ["config", "check", "--config", "pipe.yaml"]),
      berth(cwd, ["config", "check"], { env: { ...tls, BERTH_TLS_CERT: "pipe.pem", BERTH_TLS_KEY: "key.pem" } }),
      berth(cwd, ["config", "check"], { env: { ...tls, BERTH_TLS_CERT: "cert.pem", BERTH_TLS_KEY: "pipe.pem" } }),
    ]);
    assertOneLineError(config, 2, "cannot read pipe.yaml", "not a regular file");
    assertOneLineError(certFile, 2, "tls.cert cannot be read", "not a regular file");
    assertOneLineError(keyFile, 2, "tls.key cannot be read", "not a regular file");
  });

  void test("a bad environment variable exits 2 naming it", async () => {
    const cwd = workdir();
    assertOneLineError(await berth(cwd, ["config", "check"], { env: { BERTH_LISTEN_PROT: "21" } }), 2, "BERTH_LISTEN_PROT");
    assertOneLineError(await berth(cwd, [], { env: { BERTH_TLS_MODE: "sometimes" } }), 2, "tls.mode", "BERTH_TLS_MODE");
    // A timeout no timer can hold: refused before anything listens, not turned into 1 ms.
    assertOneLineError(await berth(cwd, ["serve"], { env: { BERTH_LIMITS_IDLE_TIMEOUT: "3000000" } }), 2, "limits.idleTimeout", "at most 2147483");
    // A transfer log that cannot be opened: refused at the start, not a log that never appears.
    assertOneLineError(await berth(cwd, ["serve"], { env: { BERTH_LOG_XFERLOG: path.join(cwd, "no-such-dir", "xferlog") } }), 2, "log.xferlog cannot be opened", "no such file or directory");
  });
});

void describe("berth selftest", () => {
  void test("a --port that is not a port number is named as the mistake; with listen.port 0 one is asked for; exit 2", async () => {
    const cwd = workdir();
    const ports = ["abc", "0", "65536", "21.5", "-1"];
    const results = await Promise.all(ports.map(async (port) => ({ port, r: await berth(cwd, ["selftest", `--port=${port}`]) })));
    for (const { port, r } of results) assertOneLineError(r, 2, `--port ${port} is not a port number (1..65535)`);
    assertOneLineError(await berth(cwd, ["selftest"], { env: { BERTH_LISTEN_PORT: "0" } }), 2, "selftest needs the server's port (listen.port is 0; pass --port N)");
    assert.ok(!existsSync(path.join(cwd, "users", "users.json")), "no temporary user was added");
  });

  void test("the container mapping it prints never publishes port 0: with listen.port 0 it says a fixed port is needed", () => {
    const mapping = (env: Record<string, string>): string => dockerMapping(loadConfig({ cwd: workdir(), env: { BERTH_PASSIVE_PORTS: "30000-30009", ...env } }));
    assert.equal(mapping({}), "docker run -p 2121:2121 -p 30000-30009:30000-30009 -e BERTH_PASSIVE_ADDRESS=<address clients use to reach the host> ...");
    const free = mapping({ BERTH_LISTEN_PORT: "0" });
    assert.doesNotMatch(free, /-p 0:0/);
    assert.match(free, /-p PORT:PORT .*\(listen\.port is 0, a free port at each start: set a fixed one, e\.g\. BERTH_LISTEN_PORT=2121, and publish it\)$/);
  });

  void test("with no users file (no server has run with this config) it refuses, exit 1, one line, and makes no users file, which would keep a first start from making the demo user", async () => {
    const cwd = workdir();
    // A port where nothing listens: the command must stop before it would try it.
    const r = await berth(cwd, ["selftest", "--port", "1"]);
    assertOneLineError(r, 1, `selftest: there is no users file ${path.join(cwd, "users", "users.json")}`);
    assert.equal(r.stdout, "", "no steps were run");
    // An empty users file left behind would be a users file whose users were all deleted: the
    // server's first start would then make no demo user, and nobody could log in.
    assert.ok(!existsSync(path.join(cwd, "users")), "no users directory");
    assert.ok(!existsSync(path.join(cwd, "data")), "no storage root");
  });

  void test("Ctrl-C while a step waits (a server that never answers) leaves no temporary user and no home behind", async () => {
    const cwd = workdir();
    // The users file of a server that has run (selftest adds its user to it).
    mkdirSync(path.join(cwd, "users"));
    writeFileSync(path.join(cwd, "users", "users.json"), '{"version":1,"users":[]}\n');
    // Takes the connection and never greets: the login step waits for its 15 s timeout.
    const silent = createServer((c) => c.on("error", () => undefined));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", () => resolve()));
    try {
      const { port } = silent.address() as AddressInfo;
      const child = track(spawn(process.execPath, ["--import", TSX, MAIN, "selftest", "--host", "127.0.0.1", "--port", String(port)], { cwd, env: baseEnv() }));
      child.stdout.resume();
      child.stderr.resume();
      const exited = new Promise<void>((resolve) => child.on("close", () => resolve()));
      const file = path.join(cwd, "users", "users.json");
      const temporary = (): string[] => (existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as { users: { name: string }[] }).users.map((u) => u.name) : []);
      for (let i = 0; i < 200 && temporary().length === 0; i++) await sleep(50);
      assert.equal(temporary().length, 1, "the temporary user was added");
      await sleep(200);
      child.kill("SIGINT");
      await exited;
      assert.deepEqual(temporary(), []);
      assert.deepEqual(existsSync(path.join(cwd, "data")) ? readdirSync(path.join(cwd, "data")) : [], []);
    } finally {
      silent.close();
    }
  });

  void test("a temporary user that cannot be removed (the users file locked meanwhile) is said, with the command that removes it, exit 1: not left behind without a word", async () => {
    const cwd = workdir();
    mkdirSync(path.join(cwd, "users"));
    const file = path.join(cwd, "users", "users.json");
    writeFileSync(file, '{"version":1,"users":[]}\n');
    // Takes the connection and never greets: the login step waits for its 15 s timeout.
    const silent = createServer((c) => c.on("error", () => undefined));
    await new Promise<void>((resolve) => silent.listen(0, "127.0.0.1", () => resolve()));
    try {
      const { port } = silent.address() as AddressInfo;
      const child = track(spawn(process.execPath, ["--import", TSX, MAIN, "selftest", "--host", "127.0.0.1", "--port", String(port)], { cwd, env: baseEnv() }));
      let stdout = "";
      let stderr = "";
      child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
      const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
      const temporary = (): string[] => (JSON.parse(readFileSync(file, "utf8")) as { users: { name: string }[] }).users.map((u) => u.name);
      for (let i = 0; i < 200 && temporary().length === 0; i++) await sleep(50);
      const [name] = temporary();
      assert.ok(name !== undefined, "the temporary user was added");
      // A live process (this one) holds the users file's lock until the selftest has given up.
      writeFileSync(`${file}.lock`, `${process.pid}\n`);
      const code = await exited;
      assert.equal(code, 1, stdout + stderr);
      assert.match(stdout, /FAIL +login/);
      const said = `berth: selftest: cannot remove the temporary user "${name}" (cannot change users file ${file}: ${file}.lock is held by process ${process.pid}; try again, or remove it if no berth command is running); remove it with: `;
      assert.ok(stderr.startsWith(said), stderr);
      assert.ok(stderr.endsWith(` user del ${name}\n`), stderr);
      assert.equal(stderr.split("\n").length, 2, stderr);
      assert.deepEqual(temporary(), [name]);
    } finally {
      silent.close();
    }
  });
});

void describe("berth serve", { skip: HAS_SERVER ? false : "src/server.ts is not there yet" }, () => {
  const env = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22000-22009", BERTH_LOG_LEVEL: "info" };

  void test("prints demo credentials once and stops on SIGTERM with status 0", async () => {
    const cwd = workdir();
    const run = startServe(cwd, env, /add real users with: npm run --silent berth -- user add NAME\n/);
    await run.ready;
    const { stdout } = run.output();
    const m = /berth: no users yet — created user "demo" with password "([A-Za-z0-9_-]{16})"/.exec(stdout);
    assert.ok(m, stdout);
    run.child.kill("SIGTERM");
    assert.equal(await run.exited, 0);
    const again = startServe(cwd, env, /"level":30/);
    await again.ready;
    again.child.kill("SIGINT");
    assert.equal(await again.exited, 0);
    assert.doesNotMatch(again.output().stdout, /no users yet/);
  });

  void test("a port in use exits 1 with one line", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const port = (blocker.address() as AddressInfo).port;
    try {
      const r = await berth(workdir(), ["serve"], { env: { ...env, BERTH_LISTEN_PORT: String(port) } });
      assert.equal(r.code, 1, r.stderr);
      assert.ok(r.stderr.includes(`berth: cannot listen on 127.0.0.1:${port}: address in use`), r.stderr);
      assert.doesNotMatch(r.stderr, /\n\s+at /);
    } finally {
      blocker.close();
    }
  });
});
