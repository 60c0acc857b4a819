import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { chmodSync, chownSync, closeSync, existsSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { PERMS } from "../src/auth/types.ts";
import { UserStore } from "../src/auth/store.ts";
import { assertLogsIn, assertOneLineError, baseEnv, berth, listeningPort, MAIN, SETPRIV, startServe, TSX, workdir } from "./helpers/cli.ts";
import { track } from "./helpers/reap.ts";

const HAS_SERVER = existsSync(fileURLToPath(new URL("../src/server.ts", import.meta.url)));

void describe("berth user", () => {
  void test("add, list, passwd, del through the command line", async () => {
    const cwd = workdir();
    const add = await berth(cwd, ["user", "add", "alice", "--password-stdin"], { input: "first-pw\n" });
    assert.equal(add.code, 0, add.stderr);
    assert.match(add.stdout, /added user "alice"/);
    assert.ok(existsSync(path.join(cwd, "data", "alice")), "home created under storage.root");

    const ro = await berth(cwd, ["user", "add", "bob", "--root", "shared", "--read-only", "--password-stdin"], {
      input: "bob-pw",
    });
    assert.equal(ro.code, 0, ro.stderr);

    const list = await berth(cwd, ["user", "list"]);
    assert.equal(list.code, 0, list.stderr);
    const rows = list.stdout.trim().split("\n");
    assert.match(rows[0] ?? "", /^NAME\s+HOME\s+READ-ONLY\s+PERMS\s+USED\s+LIMITS$/);
    assert.match(rows[1] ?? "", new RegExp(`^alice\\s+${path.join(cwd, "data", "alice")}\\s+no\\s+all\\s+0 B, 0 files\\s+-$`));
    assert.match(rows[2] ?? "", new RegExp(`^bob\\s+${path.join(cwd, "data", "shared")}\\s+yes\\s+list,download\\s+0 B, 0 files\\s+-$`));

    const set = await berth(cwd, [
      "user", "set", "alice", "--perms", "list,download,upload", "--dir-perms", "/pub=list;in/=all",
      "--quota-bytes", "10M", "--quota-files", "50", "--bandwidth-down", "1.5M", "--max-sessions", "2",
    ]);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /updated user "alice" .*perms list,download,upload, \/pub: list, \/in: all, quota 10 MiB, quota 50 files, down 1\.5 MiB\/s, max 2 sessions/);
    const record = JSON.parse(readFileSync(path.join(cwd, "users/users.json"), "utf8")).users[0];
    assert.deepEqual(
      [record.perms, record.dirs, record.quotaBytes, record.quotaFiles, record.bandwidthDown, record.maxSessions],
      [["list", "download", "upload"], { "/pub": ["list"], "/in": [...PERMS] }, 10485760, 50, 1572864, 2],
    );
    assert.match((await berth(cwd, ["user", "list"])).stdout, /alice .* list,download,upload \/pub:list \/in:all\s+0 B, 0 files\s+quota 10 MiB\/50 files down 1\.5 MiB\/s sessions 2/);
    assertOneLineError(await berth(cwd, ["user", "set", "alice", "--perms", "fly"]), 2, "--perms");
    assertOneLineError(await berth(cwd, ["user", "set", "alice", "--dir-perms", "/../x=list"]), 2, "--dir-perms");
    assertOneLineError(await berth(cwd, ["user", "set", "alice", "--dir-perms", "=list"]), 2, '--dir-perms needs a DIR before "=" in "=list"');
    assertOneLineError(await berth(cwd, ["user", "set", "alice", "--dir-perms", "/pub=list; =all"]), 2, '"=all"');
    // The same directory twice, however spelled, would keep only its last entry.
    assertOneLineError(await berth(cwd, ["user", "set", "alice", "--dir-perms", "/a=list;/a/=upload"]), 2, "--dir-perms", '"/a"', "twice");
    assertOneLineError(await berth(cwd, ["user", "set", "alice", "--dir-perms", "pub=list;/pub=list"]), 2, "--dir-perms", '"/pub"', "twice");
    assertOneLineError(await berth(cwd, ["user", "set", "alice", "--quota-bytes", "lots"]), 2, "--quota-bytes");
    assertOneLineError(await berth(cwd, ["user", "set", "alice"]), 2, "nothing to change");
    assertOneLineError(await berth(cwd, ["user", "set", "nobody", "--read-only"]), 1, "no user");

    const passwd = await berth(cwd, ["user", "passwd", "alice", "--password-stdin"], { input: "second-pw\n" });
    assert.equal(passwd.code, 0, passwd.stderr);
    const store = new UserStore({ file: path.join(cwd, "users/users.json"), storageRoot: path.join(cwd, "data"), bcryptCost: 4 });
    assert.ok(await store.authenticate("alice", "second-pw"));
    assert.equal(await store.authenticate("alice", "first-pw"), null);
    assert.ok(!readFileSync(path.join(cwd, "users/users.json"), "utf8").includes("second-pw"));

    const del = await berth(cwd, ["user", "del", "alice"]);
    assert.equal(del.code, 0, del.stderr);
    const after = await berth(cwd, ["user", "list"]);
    assert.doesNotMatch(after.stdout, /alice/);
    assert.match(after.stdout, /bob/);
  });

  void test("a home at the filesystem's root is made, with one warning on stderr", async () => {
    const cwd = workdir();
    const warning = (name: string): string => `berth: warning: the home of "${name}" is /: every file the server process can read is within their reach\n`;
    for (const [name, root] of [["rooted", "/"], ["dotted", "/tmp/.."]] as const) {
      const add = await berth(cwd, ["user", "add", name, "--root", root, "--password-stdin"], { input: "pw" });
      assert.equal(add.code, 0, add.stderr);
      assert.equal(add.stdout, `berth: added user "${name}" (home /)\n`);
      assert.equal(add.stderr, warning(name));
    }
    const plain = await berth(cwd, ["user", "add", "plain", "--password-stdin"], { input: "pw" });
    assert.equal(plain.stderr, "");
    const moved = await berth(cwd, ["user", "set", "plain", "--root", "/"]);
    assert.equal(moved.code, 0, moved.stderr);
    assert.equal(moved.stderr, warning("plain"));
    // Other changes to such a user say nothing more.
    const ro = await berth(cwd, ["user", "set", "plain", "--read-only"]);
    assert.equal(ro.code, 0, ro.stderr);
    assert.equal(ro.stderr, "");
  });

  void test("a user named as anonymous FTP is added, with a warning while anonymous FTP is on: that name can never log in", async () => {
    const cwd = workdir();
    const on = { BERTH_ANONYMOUS_ENABLED: "true" };
    const warning = (name: string): string => `berth: warning: "${name}" cannot log in while anonymous.enabled is true (the name means anonymous FTP)\n`;
    for (const name of ["ftp", "Anonymous"]) {
      const add = await berth(cwd, ["user", "add", name, "--password-stdin"], { input: "pw", env: on });
      assert.equal(add.code, 0, add.stderr);
      assert.equal(add.stderr, warning(name));
      const passwd = await berth(cwd, ["user", "passwd", name, "--password-stdin"], { input: "pw2", env: on });
      assert.equal(passwd.code, 0, passwd.stderr);
      assert.equal(passwd.stderr, warning(name));
    }
    assert.equal((await berth(cwd, ["user", "add", "ftpuser", "--password-stdin"], { input: "pw", env: on })).stderr, "");
    assert.equal((await berth(cwd, ["user", "passwd", "ftp", "--password-stdin"], { input: "pw3" })).stderr, "", "an ordinary name while it is off");
  });

  void test("operator mistakes: one line, the right exit status", async () => {
    const cwd = workdir();
    assert.equal((await berth(cwd, ["user", "add", "carol", "--password-stdin"], { input: "pw" })).code, 0);
    assertOneLineError(await berth(cwd, ["user", "add", "carol", "--password-stdin"], { input: "pw" }), 1, "already exists");
    assertOneLineError(await berth(cwd, ["user", "add", ".bad", "--password-stdin"], { input: "pw" }), 2, "invalid user name");
    assertOneLineError(await berth(cwd, ["user", "add", "dave"]), 2, "--password-stdin");
    assertOneLineError(await berth(cwd, ["user", "add", "dave", "--password-stdin"], { input: "\n" }), 2, "empty");
    // Latin-1 "café": stored as it decodes (with U+FFFD), it would be a password no client can send.
    assertOneLineError(await berth(cwd, ["user", "add", "dave", "--password-stdin"], { input: Buffer.from("caf\xe9\n", "latin1") }), 2, "not valid UTF-8");
    assertOneLineError(await berth(cwd, ["user", "passwd", "nobody", "--password-stdin"], { input: "x" }), 1, "no user");
    assertOneLineError(await berth(cwd, ["user", "del", "nobody"]), 1, "no user");
    assertOneLineError(await berth(cwd, ["user", "add"]), 2, "NAME");
    assertOneLineError(await berth(cwd, ["user", "list", "extra"]), 2, '"extra"');
    assertOneLineError(await berth(cwd, ["user", "add", "x", "--bogus"]), 2, "--bogus");
    assertOneLineError(await berth(cwd, ["user"]), 2, "subcommand");
    assertOneLineError(await berth(cwd, ["user", "remove", "x"]), 2, "user remove");
    // Below /proc, where Node's recursive mkdir would spin forever: one line, at once.
    if (process.platform === "linux") {
      assertOneLineError(await berth(cwd, ["user", "add", "procky", "--root", "/proc/berth-no-such-dir/procky", "--password-stdin"], { input: "pw" }), 1, "cannot create home directory", "no such file or directory");
    }
  });

  void test("a password on standard input that never ends (`yes | berth user add NAME --password-stdin`) is refused with one line, not read until memory runs out", { skip: existsSync("/dev/zero") ? false : "needs /dev/zero" }, async () => {
    const cwd = workdir();
    const stdin = openSync("/dev/zero", "r");
    try {
      const child = track(spawn(process.execPath, ["--import", TSX, MAIN, "user", "add", "endless", "--password-stdin"], { cwd, env: baseEnv(), stdio: [stdin, "pipe", "pipe"], timeout: 20_000, killSignal: "SIGKILL" }));
      let stdout = "";
      let stderr = "";
      child.stdout?.on("data", (c: Buffer) => (stdout += c.toString("utf8")));
      child.stderr?.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
      const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
      assertOneLineError({ code, stdout, stderr }, 2, "longer than 72 bytes");
      assert.ok(!existsSync(path.join(cwd, "users", "users.json")), "nobody was added");
    } finally {
      closeSync(stdin);
    }
  });
});

void describe("berth user run at once", () => {
  /** The users in a users file, by name. */
  const usersIn = (cwd: string): Map<string, { hash: string; quotaFiles?: number }> => {
    const data = JSON.parse(readFileSync(path.join(cwd, "users/users.json"), "utf8")) as { users: { name: string; hash: string; quotaFiles?: number }[] };
    return new Map(data.users.map((u) => [u.name, u]));
  };
  const store = (cwd: string): UserStore => new UserStore({ file: path.join(cwd, "users/users.json"), storageRoot: path.join(cwd, "data"), bcryptCost: 4 });

  void test("commands run in parallel (and a server writing BERTH_USER) each keep their change", async () => {
    const cwd = workdir();
    assert.equal((await berth(cwd, ["user", "add", "base", "--password-stdin"], { input: "old-pw" })).code, 0);
    const names = ["u1", "u2", "u3", "u4", "u5", "u6"];
    const serve = HAS_SERVER
      ? startServe(cwd, { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22000-22009", BERTH_USER: "fromenv", BERTH_PASSWORD: "env-pw" }, /"listening"/)
      : undefined;
    const results = await Promise.all([
      ...names.map((n) => berth(cwd, ["user", "add", n, "--password-stdin"], { input: `${n}-pw` })),
      berth(cwd, ["user", "passwd", "base", "--password-stdin"], { input: "new-pw" }),
      berth(cwd, ["user", "set", "base", "--quota-files", "5"]),
    ]);
    for (const r of results) assert.equal(r.code, 0, r.stderr);
    if (serve !== undefined) {
      await serve.ready;
      serve.child.kill("SIGTERM");
      assert.equal(await serve.exited, 0);
    }
    const users = usersIn(cwd);
    assert.deepEqual([...users.keys()].sort(), ["base", ...names, ...(serve ? ["fromenv"] : [])].sort(), "no user lost");
    assert.equal(users.get("base")?.quotaFiles, 5, "user set kept");
    const check = store(cwd);
    assert.ok(await check.authenticate("base", "new-pw"), "user passwd kept");
    for (const n of names) assert.ok(await check.authenticate(n, `${n}-pw`));
    if (serve !== undefined) assert.ok(await check.authenticate("fromenv", "env-pw"));
    assert.ok(!existsSync(path.join(cwd, "users/users.json.lock")), "no lock left behind");
  });

  void test("a lock left by a process that is gone is taken over; a live holder is waited for, then refused in one line", async () => {
    const cwd = workdir();
    const lock = path.join(cwd, "users/users.json.lock");
    assert.equal((await berth(cwd, ["user", "add", "first", "--password-stdin"], { input: "pw" })).code, 0);
    // The pid of a process that has ended: its lock is stale.
    const gone = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout;
    writeFileSync(lock, `${gone}\n`);
    const taken = await berth(cwd, ["user", "add", "second", "--password-stdin"], { input: "pw" });
    assert.equal(taken.code, 0, taken.stderr);
    assert.ok(usersIn(cwd).has("second"));
    assert.ok(!existsSync(lock), "the stale lock is gone, and so is the command's own");

    // Held by a live process (this one): the command waits, then gives up, changing nothing.
    writeFileSync(lock, `${process.pid}\n`);
    const before = readFileSync(path.join(cwd, "users/users.json"), "utf8");
    const started = Date.now();
    const refused = await berth(cwd, ["user", "del", "first"]);
    assertOneLineError(refused, 1, `${lock} is held by process ${process.pid}`);
    assert.ok(Date.now() - started >= 9000, "waited for the holder");
    assert.equal(readFileSync(path.join(cwd, "users/users.json"), "utf8"), before);
    assert.equal(readFileSync(lock, "utf8"), `${process.pid}\n`, "someone else's lock is never removed");
  });
});

void describe("users file replaced by a command", () => {
  const asRoot = process.getuid?.() === 0;

  void test("keeps its mode, its owner (a command run as root) and its place behind a symbolic link", async () => {
    const cwd = workdir();
    chmodSync(cwd, 0o755);
    const real = path.join(cwd, "keep", "users.json");
    const link = path.join(cwd, "users", "users.json");
    const env = { BERTH_USERS_FILE: link };
    mkdirSync(path.dirname(link));
    mkdirSync(path.dirname(real));
    symlinkSync(real, link);
    assert.equal((await berth(cwd, ["user", "add", "alice", "--password-stdin"], { input: "pw", env })).code, 0);
    assert.ok(lstatSync(link).isSymbolicLink(), "the first write goes through the link too");
    // The server's user (nobody here) owns the file, which its group may read.
    if (asRoot) chownSync(real, 65534, 65534);
    chmodSync(real, 0o640);
    if (asRoot) chownSync(path.dirname(real), 65534, 65534);

    const serve = asRoot && SETPRIV !== undefined
      ? startServe(cwd, { ...env, BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22000-22009" }, /"event":"listening"/, [
          SETPRIV, "--reuid=65534", "--regid=65534", "--clear-groups", process.execPath, "--import", TSX, MAIN, "serve",
        ])
      : undefined;
    await serve?.ready;

    const add = await berth(cwd, ["user", "add", "bob", "--password-stdin"], { input: "bob-pw", env });
    assert.equal(add.code, 0, add.stderr);
    assert.ok(lstatSync(link).isSymbolicLink(), "the link stays a link");
    assert.match(readFileSync(real, "utf8"), /"bob"/, "the file it leads to holds the change");
    const st = statSync(real);
    assert.equal(st.mode & 0o777, 0o640, "mode kept");
    if (asRoot) assert.deepEqual([st.uid, st.gid], [65534, 65534], "owner and group kept");
    assert.deepEqual(readdirSync(path.dirname(link)), ["users.json"], "nothing written beside the link");

    if (serve !== undefined) {
      // The server, running as the file's owner, still reads it: bob logs in at once.
      try {
        await assertLogsIn(listeningPort(serve.output().stdout), "bob", "bob-pw");
      } finally {
        serve.child.kill("SIGTERM");
        await serve.exited;
      }
    }
  });
});
