/**
 * The command line checks before it acts: `user add` and `user passwd` refuse what they would
 * refuse before asking for a password, `config check` refuses what `serve` would, and `serve`
 * names the key of a host that does not resolve.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { createPrivateKey, X509Certificate } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { parse } from "yaml";
import { UserStore } from "../src/auth/store.ts";
import type { Config } from "../src/config/schema.ts";
import { makeSelfSigned } from "../src/data/selfsigned.ts";
import { assertLogsIn, assertOneLineError, baseEnv, berth, type CliResult, listeningPort, MAIN, startServe, TSX, workdir } from "./helpers/cli.ts";

/** A certificate with a 512-bit RSA key (and its key), which OpenSSL refuses as too weak to use:
 * made once with `openssl req -x509 -newkey rsa:512 -nodes -days 36500 -subj /CN=weak`. */
const WEAK_CERT = [
  "-----BEGIN CERTIFICATE-----",
  "MIIBdzCCASGgAwIBAgIUTjpCTvuKp+Ev4S8jfEs+nXxk1zwwDQYJKoZIhvcNAQEL",
  "BQAwDzENMAsGA1UEAwwEd2VhazAgFw0yNjEyMDYxNjA1NTVaGA8yMTI2MTExMjE2",
  "MDU1NVowDzENMAsGA1UEAwwEd2VhazBcMA0GCSqGSIb3DQEBAQUAA0sAMEgCQQDD",
  "rHnWXhT6Uh2wA1aJSWXnmV/lyo/kvYKxuJmSX5an53L1b/K352XKTF7P4r50OgCw",
  "3xM/w8AR6Xvx9lhmGW3jAgMBAAGjUzBRMB0GA1UdDgQWBBSW2iuh5vzx4rn3jpdb",
  "oE12UoRLGDAfBgNVHSMEGDAWgBSW2iuh5vzx4rn3jpdboE12UoRLGDAPBgNVHRMB",
  "Af8EBTADAQH/MA0GCSqGSIb3DQEBCwUAA0EAn++9zOdXnKDYmk3RhJWxSLqgyvtL",
  "tQ4PlfjNtyQLi1egf0t12oNslLjZiw2+vW+qJQFnXzAv/TEsKUIt6y9ArQ==",
  "-----END CERTIFICATE-----",
].join("\n");
const WEAK_KEY = [
  "-----BEGIN PRIVATE KEY-----",
  "MIIBVQIBADANBgkqhkiG9w0BAQEFAASCAT8wggE7AgEAAkEAw6x51l4U+lIdsANW",
  "iUll55lf5cqP5L2CsbiZkl+Wp+dy9W/yt+dlykxez+K+dDoAsN8TP8PAEel78fZY",
  "Zhlt4wIDAQABAkEAmsgXRHP9ghlstGufi0+NFYukaQA3nMgv1udgS4HjiYJQRMXA",
  "TEbJrY0m0nDz3TGvfoFlqPZfRB+qCDGchheiaQIhAOuyBBic8tzviQZl/pNlSuBE",
  "ut4o+BctMd8bF8PCQrjPAiEA1IfUauHyz7c4CuGfmF04oginDGlYzTOOOZt9WW2D",
  "Vq0CIQCtE0rYvB/HR4qKjUk0+XPTXgUO8GzFsCVoHOAFm1gdlwIgCzoZqIPDFeHx",
  "3fFJQv05rqWSXX97J2vfyX9DQeQdGgkCIGjfETB0042kOX8fCGew4OYL1Mrz6e+E",
  "0q1Y/nWC9qN4",
  "-----END PRIVATE KEY-----",
].join("\n");

const HAVE_PYTHON3 = spawnSync("python3", ["-c", "import pty"]).status === 0;

/** Runs the CLI on a pseudo-terminal (python3's pty module) whose input ends at once: a command
 * that asks for a password there waits, and is killed when `until` shows up in its output or
 * after `timeoutMs`. Output and errors come back together, as a terminal shows them. */
function berthOnTerminal(cwd: string, args: string[], until?: RegExp, timeoutMs = 15_000): Promise<{ code: number | null; output: string }> {
  const onPty = "import os, pty, sys; sys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))";
  return new Promise((resolve, reject) => {
    const child = spawn("python3", ["-c", onPty, process.execPath, "--import", TSX, MAIN, ...args], {
      cwd,
      env: baseEnv(),
      timeout: timeoutMs,
      killSignal: "SIGKILL",
    });
    let output = "";
    const take = (c: Buffer): void => {
      output += c.toString("utf8");
      if (until?.test(output)) child.kill("SIGKILL");
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
    child.stdin.end();
  });
}

void describe("berth user: checks before the password", () => {
  void test("a bad name, an existing user or a missing one is refused before any password is asked for", async () => {
    const cwd = workdir();
    assert.equal((await berth(cwd, ["user", "add", "zed", "--password-stdin"], { input: "pw" })).code, 0);
    const before = readFileSync(path.join(cwd, "users", "users.json"), "utf8");
    // Without a terminal and without --password-stdin, the password cannot be had: the mistake
    // in the command is what is reported, not that.
    const [exists, badName, badPerms, sepPerms, sepDirPerms, missing, existsStdin] = await Promise.all([
      berth(cwd, ["user", "add", "zed"]),
      berth(cwd, ["user", "add", "bad name"]),
      berth(cwd, ["user", "add", "ok", "--perms", "fly"]),
      // Separators alone name no permission: a mistake, not "none", which is said as such.
      berth(cwd, ["user", "add", "ok", "--perms", " , "]),
      berth(cwd, ["user", "add", "ok", "--dir-perms", "/in=,"]),
      berth(cwd, ["user", "passwd", "nobody"]),
      berth(cwd, ["user", "add", "zed", "--password-stdin"], { input: "other" }),
    ]);
    assertOneLineError(exists, 1, 'user "zed" already exists');
    assertOneLineError(badName, 2, 'invalid user name "bad name"');
    assertOneLineError(badPerms, 2, "--perms");
    assertOneLineError(sepPerms, 2, "--perms");
    assertOneLineError(sepDirPerms, 2, "--dir-perms");
    assertOneLineError(missing, 1, 'no user "nobody"');
    assertOneLineError(existsStdin, 1, "already exists");
    assert.equal(readFileSync(path.join(cwd, "users", "users.json"), "utf8"), before, "the users file is unchanged");
    const none = await berth(cwd, ["user", "add", "ok", "--perms", "none", "--dir-perms", "/in=none", "--password-stdin"], { input: "pw" });
    assert.equal(none.code, 0, none.stderr);
  });

  void test("del, passwd and set of a user where there is no users file yet: one line each, and no users directory left behind", async () => {
    const cwd = workdir();
    const results = await Promise.all([
      berth(cwd, ["user", "del", "nobody"]),
      berth(cwd, ["user", "passwd", "nobody", "--password-stdin"], { input: "a-good-password" }),
      berth(cwd, ["user", "set", "nobody", "--read-only"]),
    ]);
    for (const r of results) assertOneLineError(r, 1, 'no user "nobody"');
    assert.ok(!existsSync(path.join(cwd, "users")), "no users directory made");
    // An add still makes it, and the next del of a missing user leaves the file as it is.
    assert.equal((await berth(cwd, ["user", "add", "zed", "--password-stdin"], { input: "a-good-password" })).code, 0);
    const before = readFileSync(path.join(cwd, "users", "users.json"), "utf8");
    assertOneLineError(await berth(cwd, ["user", "del", "nobody"]), 1, 'no user "nobody"');
    assert.equal(readFileSync(path.join(cwd, "users", "users.json"), "utf8"), before);
  });

  void test("on a terminal, the same mistakes end at once without a password prompt", { skip: HAVE_PYTHON3 ? false : "python3 with pty not installed" }, async () => {
    const cwd = workdir();
    assert.equal((await berth(cwd, ["user", "add", "zed", "--password-stdin"], { input: "pw" })).code, 0);
    const cases = [
      [["user", "add", "zed"], 1, 'berth: user "zed" already exists'],
      [["user", "add", "bad name"], 2, 'berth: invalid user name "bad name"'],
      [["user", "passwd", "nobody"], 1, 'berth: no user "nobody"'],
    ] as const;
    const results = await Promise.all(cases.map(async ([args, code, message]) => ({ args, code, message, r: await berthOnTerminal(cwd, [...args]) })));
    for (const { args, code, message, r } of results) {
      assert.doesNotMatch(r.output, /password/i, `${args.join(" ")}: no prompt (output: ${JSON.stringify(r.output)})`);
      assert.equal(r.code, code, `${args.join(" ")}: ${r.output}`);
      assert.ok(r.output.includes(message), `${args.join(" ")}: ${r.output}`);
    }
    // The prompt itself is still there for a command that can go on.
    const asks = await berthOnTerminal(cwd, ["user", "passwd", "zed"], /new password for "zed": /);
    assert.match(asks.output, /new password for "zed": /);
  });
});

void describe("berth user: the password asked on the terminal", () => {
  // On a pseudo-terminal: once the first prompt shows, both lines are written in one go.
  const script = [
    "import os, pty, sys",
    "pid, fd = pty.fork()",
    "if pid == 0: os.execv(sys.argv[1], sys.argv[1:])",
    "out = b''",
    "while b'new password for' not in out: out += os.read(fd, 1024)",
    "os.write(fd, sys.stdin.buffer.read())",
    "while True:",
    "  try: chunk = os.read(fd, 1024)",
    "  except OSError: break",
    "  if not chunk: break",
    "  out += chunk",
    "sys.stdout.buffer.write(out)",
    "sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))",
  ].join("\n");
  const onTerminal = (cwd: string, args: string[], typed: string): Promise<{ code: number | null; output: string }> =>
    new Promise((resolve, reject) => {
      const child = spawn("python3", ["-c", script, process.execPath, "--import", TSX, MAIN, ...args], { cwd, env: baseEnv(), timeout: 20_000, killSignal: "SIGKILL" });
      let output = "";
      child.stdout.on("data", (c: Buffer) => (output += c.toString("utf8")));
      child.stderr.on("data", (c: Buffer) => (output += c.toString("utf8")));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, output }));
      child.stdin.end(typed);
    });

  void test("both lines arriving in one read (typed ahead or pasted at once) are the password and its repetition", { skip: HAVE_PYTHON3 ? false : "python3 with pty not installed" }, async () => {
    const cwd = workdir();
    const added = await onTerminal(cwd, ["user", "add", "typist"], "ahead-pw\rahead-pw\r");
    assert.equal(added.code, 0, added.output);
    assert.match(added.output, /again: [^]*added user "typist"/);
    const differ = await onTerminal(cwd, ["user", "passwd", "typist"], "one-pw\rtwo-pw\r");
    assert.equal(differ.code, 1, differ.output);
    assert.match(differ.output, /the two passwords differ; nothing changed/);
    // The password set is the one typed, as a real login shows.
    const env = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22040-22049" };
    const run = startServe(cwd, env, /"event":"listening".*\n/);
    try {
      await run.ready;
      await assertLogsIn(listeningPort(run.output().stdout), "typist", "ahead-pw");
    } finally {
      run.child.kill("SIGTERM");
      assert.equal(await run.exited, 0);
    }
  });

  void test("--password-stdin on a terminal reads the one line with echo off", { skip: HAVE_PYTHON3 ? false : "python3 with pty not installed" }, async () => {
    const cwd = workdir();
    const added = await onTerminal(cwd, ["user", "add", "quiet", "--password-stdin"], "quiet-secret\r");
    assert.equal(added.code, 0, added.output);
    assert.ok(!added.output.includes("quiet-secret"), added.output);
    const store = new UserStore({ file: path.join(cwd, "users", "users.json"), storageRoot: path.join(cwd, "data"), bcryptCost: 4 });
    assert.ok(await store.authenticate("quiet", "quiet-secret"), "the password is the one typed");
  });

  void test("a cursor key, Home, End or a pasted control character in the password is refused at the end of its line, not stored in part", { skip: HAVE_PYTHON3 ? false : "python3 with pty not installed" }, async () => {
    const cwd = workdir();
    const file = path.join(cwd, "users", "users.json");
    // Left arrow (CSI), Home (CSI H), End (SS3 F, in application mode), Delete (CSI 3 ~), Ctrl-A.
    const keys = ["\u001b[D", "\u001b[H", "\u001bOF", "\u001b[3~", "\u0001"];
    const results = await Promise.all(keys.map((key, i) => onTerminal(cwd, ["user", "add", `keys${i}`], `ab${key}c\rab${key}c\r`)));
    results.forEach((r, i) => {
      assert.equal(r.code, 1, `${JSON.stringify(keys[i])}: ${r.output}`);
      assert.match(r.output, /berth: the password was typed with a cursor key or a control character[^\n]*; nothing changed\r?\n/, JSON.stringify(keys[i]));
      assert.doesNotMatch(r.output, /again: /, `${JSON.stringify(keys[i])}: refused at the first line`);
    });
    assert.ok(!existsSync(file), "no user added");
    // Both lines in one read, only the second with the key: refused too.
    const second = await onTerminal(cwd, ["user", "add", "late"], "abc\rab\u001b[Dc\r");
    assert.equal(second.code, 1, second.output);
    assert.match(second.output, /cursor key or a control character/);
    assert.ok(!existsSync(file), "no user added");
  });

  void test("a tab typed in the password is kept, as --password-stdin keeps it and a client sends it", { skip: HAVE_PYTHON3 ? false : "python3 with pty not installed" }, async () => {
    const cwd = workdir();
    const added = await onTerminal(cwd, ["user", "add", "tabby"], "tab\tpw\rtab\tpw\r");
    assert.equal(added.code, 0, added.output);
    const store = new UserStore({ file: path.join(cwd, "users", "users.json"), storageRoot: path.join(cwd, "data"), bcryptCost: 4 });
    assert.ok(await store.authenticate("tabby", "tab\tpw"), "the password is the one typed");
  });
});

void describe("berth config check: what serve checks before it starts", () => {
  void test("config check refuses what serve refuses before listening (certificate, key, transfer log, storage root), with the same line and exit 2", async () => {
    const cwd = workdir();
    const { cert, key } = makeSelfSigned(["localhost"]);
    writeFileSync(path.join(cwd, "cert.pem"), cert);
    writeFileSync(path.join(cwd, "key.pem"), key);
    writeFileSync(path.join(cwd, "junk.pem"), "not a certificate\n");
    writeFileSync(path.join(cwd, "weak.pem"), `${WEAK_CERT}\n`);
    writeFileSync(path.join(cwd, "weak-key.pem"), `${WEAK_KEY}\n`);
    const listen = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22020-22029" };
    const explicit = { ...listen, BERTH_TLS_MODE: "explicit" };
    const cases: [Record<string, string>, string][] = [
      [{ ...explicit, BERTH_TLS_CERT: "/nonexistent/cert.pem", BERTH_TLS_KEY: "/nonexistent/key.pem" }, "berth: config: tls.cert cannot be read: /nonexistent/cert.pem (no such file)"],
      [{ ...explicit, BERTH_TLS_CERT: "cert.pem", BERTH_TLS_KEY: "missing-key.pem" }, `berth: config: tls.key cannot be read: ${path.join(cwd, "missing-key.pem")} (no such file)`],
      [{ ...explicit, BERTH_TLS_CERT: "cert.pem" }, "berth: config: tls.cert and tls.key must be set together (tls.key is empty)"],
      [{ ...explicit, BERTH_TLS_KEY: "key.pem" }, "berth: config: tls.cert and tls.key must be set together (tls.cert is empty)"],
      [{ ...explicit, BERTH_TLS_CERT: "junk.pem", BERTH_TLS_KEY: "key.pem" }, `berth: config: tls.cert is not a PEM certificate: ${path.join(cwd, "junk.pem")}`],
      [{ ...listen, BERTH_TLS_MODE: "implicit", BERTH_TLS_IMPLICIT_PORT: "0", BERTH_TLS_CERT: "key.pem", BERTH_TLS_KEY: "key.pem" }, `berth: config: tls.cert is not a PEM certificate: ${path.join(cwd, "key.pem")}`],
      [
        { ...explicit, BERTH_TLS_CERT: "weak.pem", BERTH_TLS_KEY: "weak-key.pem" },
        `berth: config: tls.cert has a key too small for OpenSSL to use: ${path.join(cwd, "weak.pem")} (make one with an RSA key of 2048 bits or more, or an ECDSA key)`,
      ],
      [{ ...listen, BERTH_LOG_XFERLOG: "no-such-dir/xferlog" }, "berth: config: log.xferlog cannot be opened: no-such-dir/xferlog (no such file or directory)"],
      [{ ...listen, BERTH_LOG_XFERLOG: "cert.pem/xferlog" }, "berth: config: log.xferlog cannot be opened: cert.pem/xferlog (not a directory)"],
      [{ ...listen, BERTH_STORAGE_ROOT: "cert.pem" }, `berth: config: storage.root ${path.join(cwd, "cert.pem")} is not a directory`],
      [{ ...listen, BERTH_STORAGE_ROOT: "cert.pem/data" }, `berth: config: storage.root ${path.join(cwd, "cert.pem", "data")} is not a directory`],
    ];
    const results = await Promise.all(
      cases.map(async ([env, line]) => {
        const [served, checked] = await Promise.all([berth(cwd, ["serve"], { env }), berth(cwd, ["config", "check"], { env })]);
        return { env, line, served, checked };
      }),
    );
    for (const { env, line, served, checked } of results) {
      assertOneLineError(served, 2);
      assert.equal(served.stderr, `${line}\n`, `serve with ${JSON.stringify(env)}`);
      assertOneLineError(checked, 2);
      assert.equal(checked.stderr, served.stderr, `config check with ${JSON.stringify(env)}`);
      assert.equal(checked.stdout, "", "nothing printed for a config that is refused");
    }
    // What serve takes, config check takes, and it creates nothing (no transfer log file yet).
    const good = { ...explicit, BERTH_TLS_CERT: "cert.pem", BERTH_TLS_KEY: "key.pem", BERTH_LOG_XFERLOG: "xferlog" };
    const ok = await berth(cwd, ["config", "check"], { env: good });
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal((parse(ok.stdout) as Config).tls.cert, "cert.pem");
    assert.ok(!existsSync(path.join(cwd, "xferlog")), "config check made no transfer log");
    assert.equal(ok.stderr, "", "a valid certificate: no warning");
    // With TLS off the certificate is not read, by serve or by config check.
    assert.equal((await berth(cwd, ["config", "check"], { env: { BERTH_TLS_CERT: "/nonexistent/cert.pem" } })).code, 0);
  });

  void test("a self-signed pair that cannot be written beside the users file is refused by serve and config check with exit 2 and one line naming tls.cert", async () => {
    const cwd = workdir();
    const listen = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22030-22039", BERTH_TLS_MODE: "explicit" };
    // Where the key would go there is a directory (as a read-only or foreign-owned users directory
    // would refuse it: EROFS, EACCES), and the certificate is not there yet: serve must make the pair.
    mkdirSync(path.join(cwd, "users", "selfsigned-key.pem"), { recursive: true });
    const keyPath = path.join(cwd, "users", "selfsigned-key.pem");
    const [served, checked] = await Promise.all([berth(cwd, ["serve"], { env: listen }), berth(cwd, ["config", "check"], { env: listen })]);
    const line = `berth: config: tls.cert and tls.key are empty and the self-signed certificate cannot be written: ${keyPath} (is a directory); set tls.cert and tls.key, or let the server write there\n`;
    assertOneLineError(served, 2);
    assert.equal(served.stderr, line);
    assertOneLineError(checked, 2);
    assert.equal(checked.stderr, line);
    assert.equal(checked.stdout, "", "nothing printed for a config that is refused");
    assert.ok(!existsSync(path.join(cwd, "users", "selfsigned-cert.pem")), "no half pair left behind");
    assert.ok(!existsSync(path.join(cwd, "users", "users.json")), "no users file made by a start that failed");
  });

  void test("its own self-signed pair left incomplete or unmatched passes config check and is made anew by serve, with a warning; a pair the operator named is never replaced", async () => {
    const listen = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22040-22049", BERTH_TLS_MODE: "explicit" };
    const old = makeSelfSigned(["localhost"]);
    const otherKey = makeSelfSigned(["localhost"]).key;
    const cases = [
      // The key was written and the certificate only begun (a full disk).
      { key: old.key, cert: old.cert.slice(0, 100) },
      // A new key beside the certificate of an earlier pair (killed between the two writes).
      { key: otherKey, cert: old.cert },
    ];
    for (const pair of cases) {
      const cwd = workdir();
      const certPath = path.join(cwd, "users", "selfsigned-cert.pem");
      const keyPath = path.join(cwd, "users", "selfsigned-key.pem");
      mkdirSync(path.join(cwd, "users"), { recursive: true });
      writeFileSync(keyPath, pair.key);
      writeFileSync(certPath, pair.cert);
      const checked = await berth(cwd, ["config", "check"], { env: listen });
      assert.equal(checked.code, 0, checked.stderr);
      assert.equal(readFileSync(certPath, "utf8"), pair.cert, "config check writes nothing");
      const run = startServe(cwd, listen, /"event":"listening".*\n/);
      try {
        await run.ready;
        const cert = new X509Certificate(readFileSync(certPath));
        assert.ok(cert.checkPrivateKey(createPrivateKey(readFileSync(keyPath))), "a new pair");
        const { stdout } = run.output();
        const warning = stdout.split("\n").find((l) => l.includes('"event":"tls-selfsigned"')) ?? "";
        assert.match(warning, /"level":40/);
        assert.match(warning, /incomplete or did not match: made a new pair/);
        assert.ok(!stdout.includes("PRIVATE KEY"), "no key in the log");
      } finally {
        run.child.kill("SIGTERM");
        assert.equal(await run.exited, 0);
      }
      assert.deepEqual(readdirSync(path.join(cwd, "users")).filter((f) => f.includes(".pem")).sort(), ["selfsigned-cert.pem", "selfsigned-key.pem"], "no temporary file left");
    }
    // The same unmatched pair named in tls.cert and tls.key is the operator's: refused, left as it is.
    const cwd = workdir();
    const certPath = path.join(cwd, "cert.pem");
    const keyPath = path.join(cwd, "key.pem");
    writeFileSync(certPath, old.cert);
    writeFileSync(keyPath, otherKey);
    const named = { ...listen, BERTH_TLS_CERT: certPath, BERTH_TLS_KEY: keyPath };
    const [served, checked] = await Promise.all([berth(cwd, ["serve"], { env: named }), berth(cwd, ["config", "check"], { env: named })]);
    assertOneLineError(served, 2, "tls.key is not a PEM private key matching tls.cert");
    assertOneLineError(checked, 2, "tls.key is not a PEM private key matching tls.cert");
    assert.equal(readFileSync(certPath, "utf8"), old.cert);
    assert.equal(readFileSync(keyPath, "utf8"), otherKey);
  });

  void test("config check refuses an admin.socket serve refuses (too long once resolved, not a socket), with the same line and exit 2, and takes the socket of a running server", async () => {
    const deep = path.join(workdir(), "d".repeat(100));
    mkdirSync(deep);
    const cwd = workdir();
    writeFileSync(path.join(cwd, "afile"), "");
    const listen = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22040-22049" };
    const long = path.join(deep, "run", "admin.sock");
    const cases: [string, string, string][] = [
      [deep, "run/admin.sock", `berth: config: admin.socket ${long} is ${Buffer.byteLength(long)} bytes long, more than a Unix socket path can be (100): give a shorter path; not starting`],
      [cwd, "afile", `berth: config: admin.socket ${path.join(cwd, "afile")} exists and is not a socket; not starting`],
      [cwd, "afile/admin.sock", `berth: config: admin.socket ${path.join(cwd, "afile", "admin.sock")} cannot be checked: not a directory; not starting`],
    ];
    for (const [dir, socket, line] of cases) {
      const env = { ...listen, BERTH_ADMIN_SOCKET: socket };
      const [served, checked] = await Promise.all([berth(dir, ["serve"], { env }), berth(dir, ["config", "check"], { env })]);
      assertOneLineError(served, 2);
      assert.equal(served.stderr, `${line}\n`, `serve with admin.socket ${socket}`);
      assertOneLineError(checked, 2);
      assert.equal(checked.stderr, served.stderr, `config check with admin.socket ${socket}`);
      assert.equal(checked.stdout, "", "nothing printed for a config that is refused");
    }
    assert.ok(readFileSync(path.join(cwd, "afile"), "utf8") === "", "the file that is not a socket is left as it was");
    // The socket of a server running with this config is what config check sees while it runs
    // (before a reload, say): that is no mistake in the config.
    const short = workdir();
    const env = { ...listen, BERTH_ADMIN_SOCKET: "admin.sock" };
    const run = startServe(short, env, /"event":"listening".*\n/);
    await run.ready;
    const checked = await berth(short, ["config", "check"], { env });
    run.child.kill("SIGTERM");
    assert.equal(await run.exited, 0);
    assert.equal(checked.code, 0, checked.stderr);
    assert.equal((parse(checked.stdout) as Config).admin.socket, "admin.sock");
  });

  void test("config check warns on stderr of an expired certificate, as serve does at start, and exits 0", async () => {
    const cwd = workdir();
    const expired = makeSelfSigned(["localhost"], 0); // valid from a minute ago until a minute ago
    writeFileSync(path.join(cwd, "old.pem"), expired.cert);
    writeFileSync(path.join(cwd, "old-key.pem"), expired.key);
    const r = await berth(cwd, ["config", "check"], { env: { BERTH_TLS_MODE: "explicit", BERTH_TLS_CERT: "old.pem", BERTH_TLS_KEY: "old-key.pem" } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /^berth: warning: tls\.cert \S+old\.pem expired on \w{3} +\d+ [\d:]+ \d{4} GMT: clients that check certificates refuse it; renew it\n$/);
    assert.equal((parse(r.stdout) as Config).tls.cert, "old.pem");
  });
});

void describe("a private key where tls.key wants its path", () => {
  void test("the key's text in tls.key is refused with exit 2 by config check and serve, and none of it is printed", async () => {
    const cwd = workdir();
    const { cert, key } = makeSelfSigned(["localhost"]);
    writeFileSync(path.join(cwd, "cert.pem"), cert);
    const listen = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22020-22029" };
    // The key's body: its base64 lines, each of which is a piece of the secret.
    const body = key.split("\n").filter((l) => l !== "" && !l.startsWith("-----"));
    // As a variable holds it: with its line ends, or on one line (an env file cannot hold line ends).
    const given = [key, key.replaceAll("\n", ""), key.replaceAll("\n", "\\n")];
    const runs = given.flatMap((text) =>
      [{}, { BERTH_TLS_MODE: "explicit", BERTH_TLS_CERT: "cert.pem" }].flatMap((tls) =>
        [["config", "check"], ["serve"]].map((command) => berth(cwd, command, { env: { ...listen, ...tls, BERTH_TLS_KEY: text } })),
      ),
    );
    for (const r of await Promise.all(runs)) {
      assertOneLineError(r, 2, "berth: config: tls.key must be the path of a PEM file (not the file's contents), or empty (got the text of a PEM file) [from BERTH_TLS_KEY]");
      for (const piece of body) {
        assert.ok(!r.stdout.includes(piece.slice(0, 16)) && !r.stderr.includes(piece.slice(0, 16)), `a piece of the key was printed:\n${r.stdout}${r.stderr}`);
      }
    }
  });

  void test("the key's file base64-encoded in tls.key (as a Kubernetes secret's data holds it) is refused the same way, and none of it is printed", async () => {
    const cwd = workdir();
    const { cert, key } = makeSelfSigned(["localhost"]);
    writeFileSync(path.join(cwd, "cert.pem"), cert);
    const listen = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22020-22029" };
    const encoded = Buffer.from(key).toString("base64");
    // On one line (base64 -w0), and wrapped at 76 characters as base64 writes it by default.
    const given = [encoded, encoded.replace(/.{76}/g, "$&\n")];
    const runs = given.flatMap((text) =>
      [{}, { BERTH_TLS_MODE: "explicit", BERTH_TLS_CERT: "cert.pem" }].flatMap((tls) =>
        [["config", "check"], ["serve"]].map((command) => berth(cwd, command, { env: { ...listen, ...tls, BERTH_TLS_KEY: text } })),
      ),
    );
    // Its pieces after the first, which only says "-----BEGIN PRIV".
    const pieces = (encoded.match(/.{16}/g) ?? []).slice(1);
    for (const r of await Promise.all(runs)) {
      assertOneLineError(r, 2, "berth: config: tls.key must be the path of a PEM file (not the file's contents), or empty (got the text of a PEM file, base64-encoded) [from BERTH_TLS_KEY]");
      for (const piece of pieces) {
        assert.ok(!r.stdout.includes(piece) && !r.stderr.includes(piece), `a piece of the key was printed:\n${r.stdout}${r.stderr}`);
      }
    }
  });
  void test("the key's body without its PEM lines (base64, as some secret stores hold a key) in tls.key is refused the same way, and none of it is printed", async () => {
    const cwd = workdir();
    const { cert, key } = makeSelfSigned(["localhost"]);
    writeFileSync(path.join(cwd, "cert.pem"), cert);
    const listen = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22020-22029" };
    // An EC key's own number is in the first 40 bytes of its body: no piece of it may be shown.
    const sec1 = createPrivateKey(key).export({ type: "sec1", format: "pem" }).toString();
    const runs: Promise<[CliResult, string[]]>[] = [];
    for (const pem of [key, sec1]) {
      const lines = pem.split("\n").filter((l) => l !== "" && !l.startsWith("-----"));
      const body = lines.join("");
      // On one line, with its line ends, with "\n" as an env file writes them, and its first line alone.
      for (const text of [body, lines.join("\n"), lines.join("\\n"), lines[0] ?? ""]) {
        for (const command of [["config", "check"], ["serve"]]) {
          const env = { ...listen, BERTH_TLS_MODE: "explicit", BERTH_TLS_CERT: "cert.pem", BERTH_TLS_KEY: text };
          runs.push(berth(cwd, command, { env }).then((r) => [r, body.match(/.{12}/g) ?? []]));
        }
      }
    }
    for (const [r, pieces] of await Promise.all(runs)) {
      assertOneLineError(r, 2, "berth: config: tls.key must be the path of a PEM file (not the file's contents), or empty (got the base64 text of a key or certificate) [from BERTH_TLS_KEY]");
      for (const piece of pieces) {
        assert.ok(!r.stdout.includes(piece) && !r.stderr.includes(piece), `a piece of the key was printed:\n${r.stdout}${r.stderr}`);
      }
    }
  });
});

void describe("hosts to listen on", () => {
  void test("a listen host that does not resolve is a config error naming the key, exit 2; an invalid IP is refused by config check too", async () => {
    const cwd = workdir();
    const env = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22020-22029" };
    // .invalid never resolves (RFC 6761); a resolver that cannot be reached fails the same way.
    const [host, metrics, ...invalid] = await Promise.all([
      berth(cwd, ["serve"], { env: { ...env, BERTH_LISTEN_HOST: "ftp.invalid" } }),
      berth(cwd, ["serve"], { env: { ...env, BERTH_METRICS_LISTEN: "ftp.invalid:3311" } }),
      ...[["serve"], ["config", "check"]].flatMap((command) => [
        berth(cwd, command, { env: { ...env, BERTH_LISTEN_HOST: "999.1.1.1" } }),
        berth(cwd, command, { env: { ...env, BERTH_METRICS_LISTEN: "999.1.1.1:3311" } }),
      ]),
    ]);
    assertOneLineError(host, 2, "berth: config: listen.host ftp.invalid cannot be resolved");
    assertOneLineError(metrics, 2, 'berth: config: metrics.listen "ftp.invalid:3311": ftp.invalid cannot be resolved');
    assert.equal(invalid.length, 4);
    invalid.forEach((r, i) => {
      if (i % 2 === 0) assertOneLineError(r, 2, 'listen.host must be a host name or IP address (got "999.1.1.1")');
      else assertOneLineError(r, 2, "metrics.listen", '"999.1.1.1:3311"');
    });
  });

  void test("a passive.address PASV cannot announce is a config error, exit 2: an IPv6 address (config check too), a name with no IPv4 address (serve)", async () => {
    const cwd = workdir();
    const env = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22020-22029" };
    const [v6Serve, v6Check, nameServe, nameCheck] = await Promise.all([
      berth(cwd, ["serve"], { env: { ...env, BERTH_PASSIVE_ADDRESS: "2001:db8::7" } }),
      berth(cwd, ["config", "check"], { env: { ...env, BERTH_PASSIVE_ADDRESS: "2001:db8::7" } }),
      berth(cwd, ["serve"], { env: { ...env, BERTH_PASSIVE_ADDRESS: "ftp.invalid" } }),
      berth(cwd, ["config", "check"], { env: { ...env, BERTH_PASSIVE_ADDRESS: "ftp.invalid" } }),
    ]);
    for (const r of [v6Serve, v6Check]) {
      assertOneLineError(r, 2, 'berth: config: passive.address must be an IPv4 address, a host name or empty (PASV announces IPv4) (got "2001:db8::7") [from BERTH_PASSIVE_ADDRESS]');
    }
    assertOneLineError(nameServe, 2, "berth: config: passive.address ftp.invalid cannot be resolved to an IPv4 address");
    // As for listen.host, a name may resolve only where the server runs: config check takes it.
    assert.equal(nameCheck.code, 0, nameCheck.stderr);
    // A name that resolves to IPv4 is served.
    const served = startServe(cwd, { ...env, BERTH_PASSIVE_ADDRESS: "localhost" }, /"event":"listening"/);
    await served.ready;
    served.child.kill("SIGTERM");
    assert.equal(await served.exited, 0);
  });
});
