import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, chownSync, closeSync, existsSync, mkdirSync, openSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { Readable } from "node:stream";
import { describe, test } from "node:test";
import { Client } from "basic-ftp";
import { assertLogsIn, assertOneLineError, baseEnv, berth, listeningPort, MAIN, SETPRIV, startServe, TSX, workdir, type CliResult } from "./helpers/cli.ts";

void describe("keys of the users file that berth does not use", () => {
  void test("are written back by every command, and the server warns of them by name, never by value", async () => {
    const cwd = workdir();
    const file = path.join(cwd, "users", "users.json");
    assert.equal((await berth(cwd, ["user", "add", "alice", "--password-stdin"], { input: "alice-pw" })).code, 0);
    const doc = JSON.parse(readFileSync(file, "utf8")) as { users: Record<string, unknown>[] } & Record<string, unknown>;
    doc.comment = "edited by hand";
    Object.assign(doc.users[0] ?? {}, { note: { owner: "ops", ticket: 42 }, quotabytes: 1000, secretish: "do-not-log-me" });
    writeFileSync(file, JSON.stringify(doc));

    for (const args of [
      ["user", "passwd", "alice", "--password-stdin"],
      ["user", "add", "bob", "--password-stdin"],
      ["user", "set", "alice", "--max-sessions", "3"],
      ["user", "del", "bob"],
    ]) {
      const r = await berth(cwd, args, { input: "next-pw" });
      assert.equal(r.code, 0, `${args.join(" ")}: ${r.stderr}`);
      const now = JSON.parse(readFileSync(file, "utf8")) as { users: Record<string, unknown>[] } & Record<string, unknown>;
      assert.equal(now.comment, "edited by hand", `${args.join(" ")} keeps the top-level key`);
      const alice = now.users.find((u) => u.name === "alice");
      assert.deepEqual([alice?.note, alice?.quotabytes, alice?.secretish], [{ owner: "ops", ticket: 42 }, 1000, "do-not-log-me"], `${args.join(" ")} keeps alice's keys`);
    }
    const final = JSON.parse(readFileSync(file, "utf8")) as { users: Record<string, unknown>[] };
    assert.equal(final.users[0]?.maxSessions, 3, "the change itself is made");
    assert.equal(final.users.length, 1);

    const serve = startServe(cwd, { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22110-22119", BERTH_LOG_LEVEL: "info" }, /"event":"listening"/);
    try {
      await serve.ready;
      await assertLogsIn(listeningPort(serve.output().stdout), "alice", "next-pw");
    } finally {
      serve.child.kill("SIGTERM");
      await serve.exited;
    }
    const out = serve.output().stdout;
    const warn = out.split("\n").find((l) => l.includes("keys berth does not use"));
    assert.ok(warn !== undefined, `a warning names the unused keys:\n${out}`);
    assert.deepEqual((JSON.parse(warn) as { user: string; keys: string[] }).keys, ["note", "quotabytes", "secretish"]);
    assert.equal((JSON.parse(warn) as { user: string }).user, "alice");
    assert.ok(!out.includes("do-not-log-me") && !serve.output().stderr.includes("do-not-log-me"), "values never logged");
  });
});

void describe("a users file or lock that is not a regular file", () => {
  const mkfifo = (p: string): void => {
    assert.equal(spawnSync("mkfifo", [p]).status, 0, "mkfifo");
  };

  void test("a FIFO as the users file: user list, user add and serve exit 1 with one line instead of waiting for a writer", async () => {
    const cwd = workdir();
    mkdirSync(path.join(cwd, "users"));
    mkfifo(path.join(cwd, "users", "users.json"));
    assertOneLineError(await berth(cwd, ["user", "list"]), 1, "users.json", "not a regular file");
    assertOneLineError(await berth(cwd, ["user", "add", "alice", "--password-stdin"], { input: "pw" }), 1, "users.json", "not a regular file");
    const serve = startServe(cwd, { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22120-22129" }, /"event":"listening"/);
    serve.ready.catch(() => undefined);
    const timer = setTimeout(() => serve.child.kill("SIGKILL"), 15_000);
    const code = await serve.exited;
    clearTimeout(timer);
    assert.equal(code, 1, "exits 1 on its own");
    assertOneLineError({ code: 1, stdout: "", stderr: serve.output().stderr }, 1, "users.json", "not a regular file");
    assert.ok(statSync(path.join(cwd, "users", "users.json")).isFIFO(), "left as it was");
  });

  void test("a directory, a FIFO or a symbolic link in the lock's place: a user command exits 1 with one line naming it", async () => {
    const outside = path.join(workdir(), "old-file");
    writeFileSync(outside, "kept\n");
    const links = [(p: string) => symlinkSync(outside, p), (p: string) => symlinkSync(path.join(path.dirname(p), "nothing"), p)];
    for (const make of [(p: string) => mkdirSync(p), mkfifo, ...links]) {
      const cwd = workdir();
      mkdirSync(path.join(cwd, "users"));
      const lock = path.join(cwd, "users", "users.json.lock");
      make(lock);
      const r = await berth(cwd, ["user", "add", "alice", "--password-stdin"], { input: "pw" });
      assertOneLineError(r, 1, lock, "not a lock file");
      assert.ok(!existsSync(path.join(cwd, "users", "users.json")), "nothing written");
    }
    assert.equal(readFileSync(outside, "utf8"), "kept\n", "what a link leads to is left as it was");
  });
});

void describe("homes made by a command run as root", () => {
  const skip = process.getuid?.() !== 0 ? "needs root" : SETPRIV === undefined ? "needs setpriv" : false;

  void test("belong to the server's user (the users file's owner): the new user can upload at once", { skip }, async () => {
    const cwd = workdir();
    chmodSync(cwd, 0o755);
    const file = path.join(cwd, "users", "users.json");
    // The server's user (nobody here) owns the users file, as the service set-up has it.
    mkdirSync(path.dirname(file));
    writeFileSync(file, '{ "version": 1, "users": [] }\n', { mode: 0o600 });
    chownSync(path.dirname(file), 65534, 65534);
    chownSync(file, 65534, 65534);
    const serve = startServe(cwd, { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22100-22109" }, /"event":"listening"/, [
      SETPRIV ?? "", "--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, "--import", TSX, MAIN, "serve",
    ]);
    await serve.ready;
    const port = listeningPort(serve.output().stdout);
    const add = await berth(cwd, ["user", "add", "bob", "--password-stdin"], { input: "bob-pw" });
    assert.equal(add.code, 0, add.stderr);
    for (const dir of ["data", "data/bob"]) {
      const st = statSync(path.join(cwd, dir));
      assert.deepEqual([st.uid, st.gid], [65534, 65534], `${dir} belongs to the server's user`);
    }
    const client = new Client(5000);
    try {
      await client.access({ host: "127.0.0.1", port, user: "bob", password: "bob-pw" });
      await client.uploadFrom(Readable.from([Buffer.from("hello")]), "first.txt");
      assert.equal(readFileSync(path.join(cwd, "data", "bob", "first.txt"), "utf8"), "hello");
    } finally {
      client.close();
      serve.child.kill("SIGTERM");
      await serve.exited;
    }
  });
});

void describe("a users file made by a command run as root", () => {
  const skip = process.getuid?.() !== 0 ? "needs root" : SETPRIV === undefined ? "needs setpriv" : false;

  void test("belongs to the owner of its directory (the server's user), who can then start and serve it", { skip }, async () => {
    const cwd = workdir();
    chmodSync(cwd, 0o755);
    const file = path.join(cwd, "users", "users.json");
    // The service set-up: the users directory is the server's user's (nobody here), no file yet.
    mkdirSync(path.dirname(file));
    chownSync(path.dirname(file), 65534, 65534);
    const add = await berth(cwd, ["user", "add", "bob", "--password-stdin"], { input: "bob-pw" });
    assert.equal(add.code, 0, add.stderr);
    const st = statSync(file);
    assert.deepEqual([st.uid, st.gid, st.mode & 0o777], [65534, 65534, 0o600]);
    const serve = startServe(cwd, { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22100-22109" }, /"event":"listening"/, [
      SETPRIV ?? "", "--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, "--import", TSX, MAIN, "serve",
    ]);
    try {
      await serve.ready;
      await assertLogsIn(listeningPort(serve.output().stdout), "bob", "bob-pw");
    } finally {
      serve.child.kill("SIGTERM");
      await serve.exited;
    }
  });
});

void describe("output that cannot be written", { skip: existsSync("/dev/full") ? false : "needs /dev/full" }, () => {
  /** Runs the CLI in `cwd` with its stdout on /dev/full (every write fails: no space left). */
  const toFullDisk = (cwd: string, args: string[]): Promise<CliResult> =>
    new Promise((resolve, reject) => {
      const full = openSync("/dev/full", "w");
      const child = spawn(process.execPath, ["--import", TSX, MAIN, ...args], { cwd, env: baseEnv(), stdio: ["ignore", full, "pipe"] });
      closeSync(full);
      let stderr = "";
      child.stderr?.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
      child.on("error", reject);
      child.on("close", (code) => resolve({ code, stdout: "", stderr }));
    });

  void test("user list and config check into a full disk exit 1 with one line, not 0", async () => {
    const cwd = workdir();
    assert.equal((await berth(cwd, ["user", "add", "alice", "--password-stdin"], { input: "pw" })).code, 0);
    assertOneLineError(await toFullDisk(cwd, ["user", "list"]), 1, "cannot write the output: no space left on device");
    assertOneLineError(await toFullDisk(cwd, ["config", "check"]), 1, "cannot write the output: no space left on device");
    // A reader that stops early (| head -1) is no failure.
    const child = spawn(process.execPath, ["--import", TSX, MAIN, "user", "list"], { cwd, env: baseEnv(), stdio: ["ignore", "pipe", "pipe"] });
    child.stdout.destroy();
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
    assert.deepEqual([code, stderr], [0, ""]);
  });
});
