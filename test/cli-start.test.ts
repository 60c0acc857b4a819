/**
 * How `berth serve` starts: every check before anything is written, the demo user of a true
 * first start made once the server listens with a hint that fits how berth was started, and a
 * users file whose users were all deleted.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, symlinkSync, truncateSync, writeFileSync } from "node:fs";
import { createServer, type AddressInfo } from "node:net";
import path from "node:path";
import { describe, test } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { Client } from "basic-ftp";
import { assertOneLineError, berth, BIN, listeningPort, MAIN, startServe, TSX, workdir } from "./helpers/cli.ts";
import { RawClient } from "./helpers/raw.ts";

const env = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22030-22039", BERTH_LOG_LEVEL: "info" };

void describe("berth serve: the first start", () => {
  void test("a first start that is refused creates nothing: no users file, no demo password, whether the config or the listen fails", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const taken = String((blocker.address() as AddressInfo).port);
    const cases: [Record<string, string>, number, string][] = [
      [{ BERTH_TLS_MODE: "explicit", BERTH_TLS_CERT: "/nonexistent/cert.pem", BERTH_TLS_KEY: "/nonexistent/key.pem" }, 2, "tls.cert cannot be read"],
      [{ BERTH_TLS_MODE: "explicit", BERTH_TLS_KEY: "/nonexistent/key.pem" }, 2, "tls.cert and tls.key must be set together"],
      [{ BERTH_LOG_XFERLOG: "no-such-dir/xferlog" }, 2, "log.xferlog cannot be opened"],
      [{ BERTH_LISTEN_HOST: "ftp.invalid" }, 2, "listen.host ftp.invalid cannot be resolved"],
      // Where the demo user's home was to be made: found before listening, not after.
      [{ BERTH_STORAGE_ROOT: "/dev/null" }, 2, "storage.root /dev/null is not a directory"],
      [{ BERTH_LISTEN_PORT: taken }, 1, `cannot listen on 127.0.0.1:${taken}: address in use`],
      // Which listener it was is said: the address alone may look like the FTP port's.
      [{ BERTH_METRICS_LISTEN: `127.0.0.1:${taken}` }, 1, `cannot listen on 127.0.0.1:${taken}: address in use (metrics.listen)`],
      [{ BERTH_TLS_MODE: "both", BERTH_TLS_IMPLICIT_PORT: taken }, 1, `cannot listen on 127.0.0.1:${taken}: address in use (tls.implicitPort)`],
      // TEST-NET-1 (RFC 5737): an address this machine does not have.
      [{ BERTH_LISTEN_HOST: "192.0.2.1" }, 1, "cannot listen on 192.0.2.1:0: address not available"],
    ];
    try {
      const results = await Promise.all(
        cases.map(async ([extra, code, message]) => {
          const cwd = workdir();
          return { extra, code, message, cwd, r: await berth(cwd, ["serve"], { env: { ...env, ...extra } }) };
        }),
      );
      for (const { extra, code, message, cwd, r } of results) {
        assertOneLineError(r, code, message);
        assert.doesNotMatch(r.stdout, /"event":"listening"/, `${JSON.stringify(extra)}: never listening`);
        assert.doesNotMatch(r.stdout, /created user|password/, `${JSON.stringify(extra)}: no password printed`);
        assert.ok(!existsSync(path.join(cwd, "users", "users.json")), `${JSON.stringify(extra)}: no users file`);
        assert.ok(!existsSync(path.join(cwd, "data", "demo")), `${JSON.stringify(extra)}: no demo home`);
      }
    } finally {
      blocker.close();
    }
    // The next start after a refused one is still a first start: it makes the demo user and says so.
    const cwd = workdir();
    assertOneLineError(await berth(cwd, ["serve"], { env: { ...env, BERTH_LISTEN_HOST: "192.0.2.1" } }), 1, "cannot listen");
    const run = startServe(cwd, env, /add real users with: .*\n/);
    await run.ready;
    assert.match(run.output().stdout, /created user "demo" with password "[A-Za-z0-9_-]{16}"/);
    run.child.kill("SIGTERM");
    assert.equal(await run.exited, 0);
  });

  void test("a metrics.listen that cannot be bound is never logged as a server listening: the one line names the key", async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, "127.0.0.1", resolve));
    const taken = String((blocker.address() as AddressInfo).port);
    try {
      const r = await berth(workdir(), ["serve"], { env: { ...env, BERTH_METRICS_LISTEN: `127.0.0.1:${taken}` } });
      assertOneLineError(r, 1, `cannot listen on 127.0.0.1:${taken}: address in use (metrics.listen)`);
      // The server never served: no line may say it listened, on the FTP port or for metrics.
      assert.doesNotMatch(r.stdout, /listening|"event":"metrics"/);
    } finally {
      blocker.close();
    }
  });

  void test("a link-local IPv6 address without its interface (EINVAL from listen) is one line naming the key, not an unexpected error", async () => {
    const cases: [Record<string, string>, string][] = [
      [{ BERTH_LISTEN_HOST: "fe80::1" }, "cannot listen on [fe80::1]:0: "],
      [{ BERTH_METRICS_LISTEN: "[fe80::1]:0" }, "cannot listen on [fe80::1]:0: "],
    ];
    const results = await Promise.all(cases.map(async ([extra]) => berth(workdir(), ["serve"], { env: { ...env, ...extra } })));
    results.forEach((r, i) => {
      const [extra, message] = cases[i] as [Record<string, string>, string];
      assertOneLineError(r, 1, message);
      assert.doesNotMatch(r.stderr, /unexpected error/, JSON.stringify(extra));
      if (extra.BERTH_METRICS_LISTEN !== undefined) assert.match(r.stderr, /\(metrics\.listen\)/);
      // Where the kernel has IPv6, the address needs its interface, and the line says how to give it.
      if (!r.stderr.includes("address family not supported")) assert.match(r.stderr, /: invalid argument.*fe80::1%eth0/);
    });
  });

  void test("an admin socket that cannot be made is one line naming admin.socket, exit 2, and no demo user", async () => {
    const cwd = workdir();
    writeFileSync(path.join(cwd, "afile"), "");
    const r = await berth(cwd, ["serve"], { env: { ...env, BERTH_ADMIN_SOCKET: "afile/admin.sock" } });
    assertOneLineError(r, 2);
    // Found when the path is checked for a server already answering there, before anything else.
    assert.equal(r.stderr, `berth: config: admin.socket ${path.join(cwd, "afile", "admin.sock")} cannot be checked: not a directory; not starting\n`);
    assert.ok(!existsSync(path.join(cwd, "users", "users.json")), "no users file");
  });

  void test("an admin socket in a directory where no socket can be bound is refused before listening: one line, exit 2, no demo user", { skip: process.platform !== "linux" && "needs /proc" }, async () => {
    const cwd = workdir();
    // Nobody, root included, can make a file in /proc: lstat says there is nothing, bind fails.
    const socketPath = "/proc/berth-test-admin.sock";
    const r = await berth(cwd, ["serve"], { env: { ...env, BERTH_ADMIN_SOCKET: socketPath } });
    assertOneLineError(r, 2);
    assert.equal(r.stderr, `berth: config: admin.socket cannot be opened: ${socketPath} (permission denied)\n`);
    assert.doesNotMatch(r.stdout, /"event":"listening"|created user/, "refused before listening");
    assert.ok(!existsSync(path.join(cwd, "users", "users.json")), "no users file");
  });

  void test("a relative admin.socket that the working directory makes longer than a socket path can be is refused before listening, naming its length", async () => {
    const cwd = path.join(workdir(), "d".repeat(100));
    mkdirSync(cwd);
    const socketPath = path.join(cwd, "run", "admin.sock");
    const r = await berth(cwd, ["serve"], { env: { ...env, BERTH_ADMIN_SOCKET: "run/admin.sock" } });
    assertOneLineError(r, 2);
    assert.equal(r.stderr, `berth: config: admin.socket ${socketPath} is ${Buffer.byteLength(socketPath)} bytes long, more than a Unix socket path can be (100): give a shorter path; not starting\n`);
    assert.doesNotMatch(r.stdout, /"event":"listening"|created user/, "refused before listening");
    assert.ok(!existsSync(path.join(cwd, "users", "users.json")), "no users file");
  });

  void test("anonymous FTP whose root is the storage root or holds a user's home is warned of once at start, naming the users; its own directory is not", async () => {
    const cwd = workdir();
    assert.equal((await berth(cwd, ["user", "add", "kept", "--password-stdin"], { input: "pw" })).code, 0);
    const started = await Promise.all(
      [".", "kept/..", "anonymous"].map(async (root) => {
        const run = startServe(cwd, { ...env, BERTH_ANONYMOUS_ENABLED: "true", BERTH_ANONYMOUS_ROOT: root }, /"event":"listening"/);
        await run.ready;
        run.child.kill("SIGTERM");
        return { root, code: await run.exited, stdout: run.output().stdout };
      }),
    );
    for (const { root, code, stdout } of started) {
      assert.equal(code, 0, stdout);
      const warned = stdout.split("\n").filter((l) => l.includes('"event":"anonymous-root"'));
      if (root === "anonymous") {
        assert.deepEqual(warned, [], stdout);
        continue;
      }
      assert.equal(warned.length, 1, stdout);
      const line = JSON.parse(warned[0] ?? "") as { level: number; root: string; users: string[]; msg: string };
      assert.deepEqual([line.level, line.root, line.users], [40, path.join(cwd, "data"), ["kept"]]);
      assert.match(line.msg, /holds the home of "kept": anonymous FTP can read what is there/);
    }
  });

  void test("a users file whose users were all deleted stays empty: no demo user, a warning that nobody can log in", async () => {
    const cwd = workdir();
    assert.equal((await berth(cwd, ["user", "add", "only", "--password-stdin"], { input: "pw" })).code, 0);
    assert.equal((await berth(cwd, ["user", "del", "only"])).code, 0);
    const usersFile = path.join(cwd, "users", "users.json");
    const emptied = readFileSync(usersFile, "utf8");
    assert.deepEqual(JSON.parse(emptied), { version: 1, users: [] });
    const started = await Promise.all(
      ["false", "true"].map(async (anonymous) => {
        const run = startServe(cwd, { ...env, BERTH_ANONYMOUS_ENABLED: anonymous }, /"event":"listening"/);
        await run.ready;
        run.child.kill("SIGTERM");
        return { anonymous, code: await run.exited, stdout: run.output().stdout };
      }),
    );
    for (const { anonymous, code, stdout } of started) {
      assert.equal(code, 0);
      assert.doesNotMatch(stdout, /no users yet|created user/);
      const warned = stdout.split("\n").filter((l) => l.includes("nobody can log in"));
      if (anonymous === "true") assert.deepEqual(warned, [], "anonymous FTP is on: someone can log in");
      else {
        assert.equal(warned.length, 1, stdout);
        const line = JSON.parse(warned[0] ?? "") as { level: number; event: string; file: string; msg: string };
        assert.deepEqual([line.level, line.event, line.file], [40, "no-users", usersFile]);
        assert.match(line.msg, /^the users file has no users: nobody can log in/);
      }
    }
    assert.equal(readFileSync(usersFile, "utf8"), emptied, "the users file is left as it is");
  });

  void test("a BERTH_USER or password that cannot be used is one line naming the variable it came from, without the password", async () => {
    const pwFile = path.join(workdir(), "pw.txt");
    // Two lines: a file written with a trailing blank line, or a note under the password.
    writeFileSync(pwFile, "file-secret\n\n");
    const cases: [Record<string, string>, string, string][] = [
      [{ BERTH_USER: "bad name", BERTH_PASSWORD: "env-secret" }, 'invalid user name "bad name"', "[from BERTH_USER]"],
      [{ BERTH_USER: "ops", BERTH_PASSWORD: "env-secret\nsecond" }, "the password must not contain a line break or NUL", "[from BERTH_PASSWORD]"],
      [{ BERTH_USER: "ops", BERTH_PASSWORD: "env-secret".repeat(8) }, "the password is longer than 72 bytes", "[from BERTH_PASSWORD]"],
      [{ BERTH_USER: "ops", BERTH_PASSWORD_FILE: pwFile }, "the password must not contain a line break or NUL", `[from BERTH_PASSWORD_FILE ${pwFile}]`],
    ];
    const results = await Promise.all(cases.map(([extra]) => berth(workdir(), ["serve"], { env: { ...env, ...extra } })));
    results.forEach((r, i) => {
      const [extra, message, source] = cases[i] as [Record<string, string>, string, string];
      assertOneLineError(r, 2, message, source);
      assert.doesNotMatch(r.stderr + r.stdout, /secret/, `${JSON.stringify(extra)}: no password shown`);
    });
  });

  void test("BERTH_USER, BERTH_PASSWORD and BERTH_PASSWORD_FILE set to \"\" (an .env file listing all three) count as not set", async () => {
    const pwFile = path.join(workdir(), "pw.txt");
    writeFileSync(pwFile, "from-file\n");
    /** Starts serve with `extra`, and logs in as `user` with `password` over a real connection. */
    const loginAfterStart = async (extra: Record<string, string>, user: string, password?: string): Promise<string> => {
      // The demo user's password is printed once the server listens.
      const run = startServe(workdir(), { ...env, ...extra }, password === undefined ? /add real users with: [^\n]*\n/ : /"event":"listening".*\n/);
      try {
        await run.ready;
        const port = Number(/"event":"listening"[^\n]*"port":(\d+)/.exec(run.output().stdout)?.[1]);
        const pw = password ?? /password "([^"]+)"/.exec(run.output().stdout)?.[1] ?? "";
        const client = new Client(10_000);
        try {
          await client.access({ host: "127.0.0.1", port, user, password: pw });
          return "logged in";
        } finally {
          client.close();
        }
      } finally {
        run.child.kill("SIGTERM");
        assert.equal(await run.exited, 0);
      }
    };
    const all = { BERTH_USER: "", BERTH_PASSWORD: "", BERTH_PASSWORD_FILE: "" };
    assert.equal(await loginAfterStart(all, "demo"), "logged in", "all three empty: a first start with the demo user");
    assert.equal(await loginAfterStart({ ...all, BERTH_USER: "ops", BERTH_PASSWORD: "from-env" }, "ops", "from-env"), "logged in");
    assert.equal(await loginAfterStart({ ...all, BERTH_USER: "ops", BERTH_PASSWORD_FILE: pwFile }, "ops", "from-file"), "logged in");
    // A user with no password at all is still refused, before anything listens.
    const refused = await berth(workdir(), ["serve"], { env: { ...env, ...all, BERTH_USER: "ops" } });
    assertOneLineError(refused, 2, "BERTH_USER is set but neither BERTH_PASSWORD nor BERTH_PASSWORD_FILE (or both are empty)");
  });

  void test("the first-start hint says how to add users the way berth was started, with --config when another file was used and the users file and storage root the environment sets", async () => {
    // bin/berth finds node on the PATH (#!/usr/bin/env node); a directory on the PATH holds a link to it.
    const onPath = workdir();
    symlinkSync(BIN, path.join(onPath, "berth"));
    const withNode = `${path.dirname(process.execPath)}:${process.env.PATH ?? ""}`;
    const hint = async (command: readonly string[], extra: Record<string, string> = {}, config?: string): Promise<string> => {
      const cwd = workdir();
      if (config !== undefined) {
        mkdirSync(path.dirname(path.join(cwd, config)), { recursive: true });
        writeFileSync(path.join(cwd, config), "log:\n  level: info\n");
      }
      const run = startServe(cwd, { ...env, PATH: withNode, ...extra }, /add real users with: [^\n]*\n/, command);
      await run.ready;
      run.child.kill("SIGTERM");
      assert.equal(await run.exited, 0);
      return /add real users with: ([^\n]*)\n/.exec(run.output().stdout)?.[1] ?? "";
    };
    const main = [process.execPath, "--import", TSX, MAIN, "serve"];
    const linked = path.join(onPath, "berth");
    const cases: [Promise<string>, string][] = [
      [hint(main), "npm run --silent berth -- user add NAME"],
      [hint([...main, "--config", "etc/b.yaml"], {}, "etc/b.yaml"), "npm run --silent berth -- user add NAME --config etc/b.yaml"],
      // The default file named explicitly is still the default.
      [hint([...main, "--config", "config/berth.yaml"], {}, "config/berth.yaml"), "npm run --silent berth -- user add NAME"],
      [hint([BIN, "serve"]), `${BIN} user add NAME`],
      [hint(["berth", "serve"], { PATH: `${onPath}:${withNode}` }), "berth user add NAME"],
      [hint(["berth", "serve"], { PATH: `${onPath}:${withNode}`, BERTH_CONFIG: "my conf.yaml" }, "my conf.yaml"), "berth user add NAME --config 'my conf.yaml'"],
      [hint([linked, "serve", "--config=/dev/null"]), `${linked} user add NAME --config /dev/null`],
      // The users file and storage root set in the environment (a systemd EnvironmentFile) go with
      // the command, or it would write to another users file.
      [
        hint([...main, "--config", "etc/b.yaml"], { BERTH_USERS_FILE: "u dir/it's.json", BERTH_STORAGE_ROOT: "files" }, "etc/b.yaml"),
        `BERTH_STORAGE_ROOT=files BERTH_USERS_FILE='u dir/it'\\''s.json' npm run --silent berth -- user add NAME --config etc/b.yaml`,
      ],
      [hint(main, { BERTH_USERS_FILE: "etc/users.json" }), "BERTH_USERS_FILE=etc/users.json npm run --silent berth -- user add NAME"],
    ];
    const shown = await Promise.all(cases.map(([p]) => p));
    assert.deepEqual(shown, cases.map(([, expected]) => expected));

    // Typed into a shell without those variables, the command adds the user to the server's file.
    const cwd = workdir();
    const where = { BERTH_USERS_FILE: "u dir/users.json", BERTH_STORAGE_ROOT: "my files" };
    const run = startServe(cwd, { ...env, PATH: withNode, ...where }, /add real users with: [^\n]*\n/, [BIN, "serve"]);
    await run.ready;
    run.child.kill("SIGTERM");
    assert.equal(await run.exited, 0);
    const typed = /add real users with: ([^\n]*)\n/.exec(run.output().stdout)?.[1] ?? "";
    const added = spawnSync("/bin/sh", ["-c", typed.replace(" NAME", " bob --password-stdin")], {
      cwd, input: "bob-pw", encoding: "utf8", env: { PATH: withNode, HOME: process.env.HOME ?? "", BERTH_USERS_BCRYPT_COST: "4" },
    });
    assert.equal(added.status, 0, added.stderr);
    const users = JSON.parse(readFileSync(path.join(cwd, "u dir", "users.json"), "utf8")) as { users: { name: string }[] };
    assert.deepEqual(users.users.map((u) => u.name).sort(), ["bob", "demo"]);
    assert.ok(existsSync(path.join(cwd, "my files", "bob")), "bob's home is under the storage root in use");
    assert.ok(!existsSync(path.join(cwd, "users")), "no other users file was made");
  });
});

/** `npm start` in this checkout with `extra` in its environment (besides `env`, a low bcrypt cost
 * and a users file and storage root in `cwd`), in a process group of its own when `group` (a
 * terminal's Ctrl-C signals the whole group); resolves once it listens, with what its listening
 * line says. */
async function npmStart(root: string, cwd: string, extra: Record<string, string>, group = false) {
  const child = spawn("npm", ["start"], {
    cwd: root,
    detached: group,
    env: {
      PATH: process.env.PATH ?? "",
      HOME: process.env.HOME ?? "",
      ...env,
      BERTH_USERS_BCRYPT_COST: "4",
      BERTH_STORAGE_ROOT: path.join(cwd, "data"),
      BERTH_USERS_FILE: path.join(cwd, "users", "users.json"),
      ...extra,
    },
  });
  let stdout = "";
  child.stdout.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
  child.stderr.resume();
  // "exit", not "close": a server left behind would hold npm's output open.
  const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
  const deadline = Date.now() + 60_000;
  while (!/"event":"listening"/.test(stdout) && Date.now() < deadline) await sleep(50);
  const line = /^.*"event":"listening".*$/m.exec(stdout)?.[0];
  assert.ok(line !== undefined, `the server started under npm:\n${stdout}`);
  const { pid, port } = JSON.parse(line) as { pid: number; port: number };
  return { child, pid, port, exited, stdout: () => stdout };
}

/** Kills what is left of a process group started by npmStart(…, true). */
function killGroup(child: ChildProcess): void {
  try {
    process.kill(-(child.pid ?? 0), "SIGKILL");
  } catch {
    // already gone
  }
}

void describe("npm start", () => {
  const root = path.resolve(path.dirname(MAIN), "../..");
  const checkout = spawnSync("git", ["rev-parse", "--is-inside-work-tree"], { cwd: root, encoding: "utf8" }).stdout?.trim() === "true";
  void test("what a start in the checkout writes beside users/users.json (hashes, a self-signed private key, a lock) is kept out of git", { skip: checkout ? false : "not a git checkout" }, () => {
    const written = ["users/users.json", "users/selfsigned-key.pem", "users/selfsigned-cert.pem", "users/users.json.lock", "users/users.json.tmp-1-abc"];
    const r = spawnSync("git", ["check-ignore", "--no-index", ...written], { cwd: root, encoding: "utf8" });
    assert.deepEqual(r.stdout.split("\n").filter((l) => l !== ""), written);
  });

  void test("a SIGTERM sent to npm alone (a supervisor that signals its child only) stops the server: none is left holding the port", async () => {
    const { child, pid, port, exited } = await npmStart(root, workdir(), {});
    assert.notEqual(pid, child.pid, "the server is a process below npm");
    child.kill("SIGTERM");
    await exited;
    let gone = false;
    for (let i = 0; i < 200 && !gone; i++) {
      try {
        process.kill(pid, 0);
        await sleep(50);
      } catch {
        gone = true;
      }
    }
    if (!gone) process.kill(pid, "SIGKILL");
    assert.ok(gone, "the server process ended with npm");
    const probe = createServer();
    await new Promise<void>((resolve, reject) => {
      probe.once("error", reject);
      probe.listen(port, "127.0.0.1", resolve);
    });
    probe.close();
  });

  void test("Ctrl-C at the terminal (SIGINT to npm's whole process group) is one signal: a running download gets the grace, then 426, and the server stops as drained", async () => {
    // The terminal signals npm and berth together, and npm passes the signal on: berth gets it
    // twice within milliseconds, which is no operator's second signal.
    const cwd = workdir();
    mkdirSync(path.join(cwd, "data", "u"), { recursive: true });
    writeFileSync(path.join(cwd, "data", "u", "big.bin"), "");
    truncateSync(path.join(cwd, "data", "u", "big.bin"), 1 << 30);
    const { child, port, exited, stdout } = await npmStart(root, cwd, { BERTH_USER: "u", BERTH_PASSWORD: "u-pw", BERTH_LIMITS_SHUTDOWN_GRACE: "2" }, true);
    try {
      const raw = await RawClient.connect(port);
      await raw.login("u");
      await raw.expect("TYPE I", 200);
      const data = await raw.pausedRetr("big.bin");
      process.kill(-(child.pid ?? 0), "SIGINT");
      // Drained: the download is cut only after the grace, with its 426, then the 421 of shutdown.
      const cut = await raw.reply(30_000);
      assert.equal(cut.code, 426, cut.lines.join(" | "));
      assert.match(cut.message, /shutting down/);
      await raw.expectReply(421, 30_000);
      data.destroy();
      await exited;
      assert.match(stdout(), /"event":"stopped"/, stdout());
      assert.equal(stdout().split("\n").filter((l) => l.includes('"msg":"shutting down')).length, 1, stdout());
    } finally {
      killGroup(child);
    }
  });
});

void describe("npm start, a Ctrl-C while the server's event loop is busy", () => {
  // tsx's own command line, as a parent between npm and the server, passes a signal on and kills
  // the server (SIGKILL) when it has not said within 30 ms that it got the signal: a busy event
  // loop (a large listing, a collection) at the moment of the Ctrl-C cost the drain and every
  // transfer. A stopped process stands for one that does not run for that long.
  void test("still drains: no process between npm and the server kills it", async () => {
    const root = path.resolve(path.dirname(MAIN), "../..");
    const cwd = workdir();
    const { child, pid, exited, stdout } = await npmStart(root, cwd, { BERTH_USER: "u", BERTH_PASSWORD: "u-pw" }, true);
    try {
      process.kill(pid, "SIGSTOP");
      process.kill(-(child.pid ?? 0), "SIGINT");
      await sleep(300);
      assert.doesNotThrow(() => process.kill(pid, "SIGCONT"), "the server was killed while it did not run");
      await exited;
      assert.match(stdout(), /"msg":"shutting down/, stdout());
      assert.match(stdout(), /"event":"stopped"/, stdout());
    } finally {
      killGroup(child);
    }
  });
});

void describe("berth serve in a sandbox without netlink", () => {
  // systemd's RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX (as docs/systemd/berth.service had it)
  // refuses netlink sockets, over which the network interfaces are listed.
  const cc = process.env.CC || "cc";
  const skip = process.platform !== "linux" ? "needs Linux (seccomp)" : spawnSync(cc, ["--version"], { stdio: "ignore" }).status !== 0 ? "needs a C compiler" : false;

  void test("starts and serves PASV when the network interfaces cannot be listed, with one warning when passive.address is set", { skip }, async () => {
    const cwd = workdir();
    const wrapper = path.join(cwd, "no-netlink");
    const built = spawnSync(cc, ["-O2", "-o", wrapper, fileURLToPath(new URL("./helpers/no-netlink.c", import.meta.url))], { encoding: "utf8" });
    assert.equal(built.status, 0, built.stderr);
    const run = startServe(
      cwd,
      { ...env, BERTH_PASSIVE_ADDRESS: "203.0.113.9", BERTH_USER: "alice", BERTH_PASSWORD: "alice-pw" },
      /"event":"listening"/,
      [wrapper, process.execPath, "--import", TSX, MAIN, "serve"],
    );
    await run.ready;
    const { stdout } = run.output();
    const port = listeningPort(stdout);
    const warnings = stdout.split("\n").filter((l) => l.includes("the network interfaces cannot be read"));
    assert.equal(warnings.length, 1, stdout);
    assert.match(warnings[0] ?? "", /"level":40/);
    const raw = await RawClient.connect(port);
    try {
      await raw.login("alice", "alice-pw");
      // Loopback is still a direct client: it gets the local address, not passive.address.
      const pasv = await raw.cmd("PASV");
      assert.equal(pasv.code, 227, pasv.message);
      assert.match(pasv.message, /\(127,0,0,1,\d+,\d+\)/);
    } finally {
      await raw.close();
    }
    run.child.kill("SIGTERM");
    assert.equal(await run.exited, 0);
  });
});

void describe("bin/berth where the temporary directory cannot be written", () => {
  // docker run --read-only gives no writable /tmp (podman's mounts a tmpfs there, Docker's does
  // not): tsx, which keeps compiled modules in <tmpdir>/tsx-<uid>, cannot make that directory.
  // TMPDIR naming a file stands for it here, as root can write a read-only directory.
  void test("runs the command all the same, with no stack trace", () => {
    const cwd = workdir();
    const notADirectory = path.join(cwd, "tmp");
    writeFileSync(notADirectory, "");
    const r = spawnSync(BIN, ["config", "check"], {
      cwd,
      encoding: "utf8",
      env: { PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ""}`, HOME: process.env.HOME ?? "", TMPDIR: notADirectory },
      timeout: 60_000,
    });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^listen:$/m);
    assert.equal(r.stderr, "");
  });
});

void describe("bin/berth run from a working directory that was removed", () => {
  // `cd /tmp/x && rm -rf /tmp/x && berth user list`: the process has no working directory, which
  // relative paths of the config are read against.
  void test("says so in one line, exit 1, with no stack trace", () => {
    const gone = path.join(workdir(), "gone");
    mkdirSync(gone);
    const r = spawnSync("/bin/sh", ["-c", 'cd "$1" && rmdir "$1" && exec "$2" user list', "sh", gone, BIN], {
      encoding: "utf8",
      env: { PATH: `${path.dirname(process.execPath)}:${process.env.PATH ?? ""}`, HOME: process.env.HOME ?? "" },
      timeout: 60_000,
    });
    assertOneLineError({ code: r.status, stdout: r.stdout, stderr: r.stderr }, 1, "working directory");
    assert.equal(r.stdout, "");
  });
});
