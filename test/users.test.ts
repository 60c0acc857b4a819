import assert from "node:assert/strict";
import bcrypt from "bcrypt";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, symlinkSync, utimesSync, writeFileSync } from "node:fs";
import fsp from "node:fs/promises";
import { syncBuiltinESMExports } from "node:module";
import { tmpdir } from "node:os";
import path from "node:path";
import { Readable, Writable } from "node:stream";
import { after, describe, test } from "node:test";
import { writeFileAtomic } from "../src/auth/atomic.ts";
import { withFileLock } from "../src/auth/lock.ts";
import { parseUsersFile, readPassword, UserError, UserStore, type UserStoreOptions } from "../src/auth/store.ts";
import { PERMS } from "../src/auth/types.ts";
import { formatUserTable, homeUsage } from "../src/cli/commands.ts";
import { Limiter, scanUsage } from "../src/fs/usage.ts";
import { createLogger } from "../src/log/logger.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A temp directory with a users file path and a storage root inside it. */
function sandbox(): { dir: string; file: string; root: string } {
  const dir = mkdtempSync(path.join(tmpdir(), "berth-users-"));
  dirs.push(dir);
  return { dir, file: path.join(dir, "users", "users.json"), root: path.join(dir, "data") };
}

/** A fast store (bcrypt cost 4, no reload throttle unless given). */
function storeOn(box: { file: string; root: string }, extra: Partial<UserStoreOptions> = {}): UserStore {
  return new UserStore({ file: box.file, storageRoot: box.root, bcryptCost: 4, reloadIntervalMs: 0, ...extra });
}

/** A logger writing into an array of lines. */
function captureLogger(): { logger: ReturnType<typeof createLogger>; lines: string[] } {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
      done();
    },
  });
  return { logger: createLogger({ level: "debug", pretty: "never", destination }), lines };
}

/** Asserts that `promise` rejects with a UserError of `kind`; returns its message. */
async function rejectsWith(promise: Promise<unknown>, kind: UserError["kind"]): Promise<string> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof UserError, `expected UserError, got ${String(err)}`);
    assert.equal(err.kind, kind);
    assert.ok(!err.message.includes("\n"));
    return err.message;
  }
  assert.fail("expected a rejection");
}

void describe("UserStore", () => {
  void test("add, authenticate, list, passwd, del", async () => {
    const box = sandbox();
    const store = storeOn(box);
    const bob = await store.add("bob", "s3cret-pw");
    assert.deepEqual(
      { name: bob.name, home: bob.home, readOnly: bob.readOnly, perms: [...bob.perms], anonymous: bob.anonymous },
      { name: "bob", home: path.join(box.root, "bob"), readOnly: false, perms: [...PERMS], anonymous: false },
    );
    assert.ok(statSync(bob.home).isDirectory(), "home created");
    await store.add("ro", "pw2", { root: "shared/ro", readOnly: true });
    await store.add("abs", "pw3", { root: path.join(box.dir, "elsewhere") });

    assert.deepEqual(await store.authenticate("bob", "s3cret-pw"), bob);
    assert.deepEqual(
      (await store.list()).map((u) => [u.name, u.home, u.readOnly]),
      [
        ["abs", path.join(box.dir, "elsewhere"), false],
        ["bob", path.join(box.root, "bob"), false],
        ["ro", path.join(box.root, "shared/ro"), true],
      ],
    );
    const raw = JSON.parse(readFileSync(box.file, "utf8")) as { version: number; users: { home: string }[] };
    assert.equal(raw.version, 1);
    assert.deepEqual(raw.users.map((u) => u.home), [path.join(box.dir, "elsewhere"), "bob", "shared/ro"]);
    assert.ok(!readFileSync(box.file, "utf8").includes("s3cret-pw"), "no clear password in the file");

    await store.passwd("bob", "new-pw");
    assert.equal(await store.authenticate("bob", "s3cret-pw"), null);
    assert.deepEqual(await store.authenticate("bob", "new-pw"), bob);

    const gone = await store.del("bob");
    assert.equal(gone.name, "bob");
    assert.equal(await store.authenticate("bob", "new-pw"), null);
    assert.ok(existsSync(bob.home), "home kept after del");
    assert.deepEqual((await store.list()).map((u) => u.name), ["abs", "ro"]);
  });

  void test("the file is written atomically with mode 0600 and leaves no temp file", async () => {
    const box = sandbox();
    const store = storeOn(box);
    await Promise.all([store.add("a", "pw"), store.add("b", "pw"), store.add("c", "pw")]);
    assert.deepEqual(readdirSync(path.dirname(box.file)), ["users.json"]);
    assert.equal(statSync(box.file).mode & 0o777, 0o600);
    assert.deepEqual((await store.list()).map((u) => u.name), ["a", "b", "c"], "concurrent adds all kept");
  });

  void test("a home that is a symbolic link to nothing is refused, not taken as made: the user is not added", async () => {
    const box = sandbox();
    const store = storeOn(box);
    mkdirSync(box.root, { recursive: true });
    const gone = path.join(box.dir, "gone");
    symlinkSync(gone, path.join(box.root, "dangling"));
    const message = await rejectsWith(store.add("dangling", "pw"), "io");
    assert.equal(message, `cannot create home directory ${path.join(box.root, "dangling")}: it is a symbolic link to ${gone}, which does not exist`);
    assert.ok(!existsSync(box.file), "no user written");
    await store.add("other", "pw");
    await rejectsWith(store.set("other", { root: "dangling" }), "io");
    assert.equal((await store.list())[0]?.home, path.join(box.root, "other"), "the home is not changed");
    // A link to a directory is a home like any other.
    mkdirSync(gone);
    assert.equal((await store.add("dangling", "pw")).home, path.join(box.root, "dangling"));
  });

  void test("refuses bad names, duplicates, bad passwords and unknown users", async () => {
    const store = storeOn(sandbox());
    await store.add("ok.name@x-y_z", "pw");
    for (const bad of ["", ".hidden", "..", "a/b", "a b", "x".repeat(65), "é"]) {
      await rejectsWith(store.add(bad, "pw"), "invalid");
    }
    assert.match(await rejectsWith(store.add("ok.name@x-y_z", "pw"), "conflict"), /already exists/);
    assert.match(await rejectsWith(store.add("p1", ""), "invalid"), /empty/);
    const long = await rejectsWith(store.add("p2", "x".repeat(73)), "invalid");
    assert.match(long, /72 bytes/);
    assert.ok(!long.includes("xxxx"), "the password is never echoed");
    await rejectsWith(store.add("p3", "é".repeat(37)), "invalid");
    await rejectsWith(store.add("p4", "a\nb"), "invalid");
    await rejectsWith(store.passwd("nobody", "pw"), "not-found");
    await rejectsWith(store.del("nobody"), "not-found");
  });

  void test("unknown user and wrong password both give null, never throw", async () => {
    const store = storeOn(sandbox());
    await store.add("bob", "right");
    assert.equal(await store.authenticate("bob", "wrong"), null);
    assert.equal(await store.authenticate("nobody", "right"), null);
    assert.equal(await store.authenticate("__proto__", ""), null);
    assert.equal(await store.authenticate("bob", `right${"x".repeat(80)}`), null);
    assert.equal(await storeOn(sandbox()).authenticate("bob", "right"), null, "no file at all");
  });

  void test("an unknown name is checked against a hash of a stored user's cost, the same one each time; the configured cost only with no user", async () => {
    const box = sandbox();
    await storeOn(box, { bcryptCost: 5 }).add("five", "pw");
    await storeOn(box, { bcryptCost: 6 }).add("six", "pw");
    const costs: number[] = [];
    const compare = bcrypt.compare;
    // The real bcrypt still does the work; this only notes the cost of each hash it is given.
    bcrypt.compare = ((data: string, hash: string) => {
      costs.push(Number(hash.slice(4, 6)));
      return compare(data, hash);
    }) as typeof bcrypt.compare;
    try {
      const server = storeOn(box);
      const byName = new Map<string, number>();
      for (let i = 0; i < 40; i++) {
        const name = `nobody${i}`;
        assert.equal(await server.authenticate(name, "pw"), null);
        byName.set(name, costs.at(-1)!);
        assert.equal(await server.authenticate(name, "other"), null);
        assert.equal(costs.at(-1), byName.get(name), `${name}: the same cost again`);
      }
      assert.deepEqual([...new Set(byName.values())].sort(), [5, 6], "both stored costs, never the configured 4");
      costs.length = 0;
      assert.equal(await storeOn(sandbox()).authenticate("nobody", "pw"), null);
      assert.deepEqual(costs, [4], "no users: the configured cost");
    } finally {
      bcrypt.compare = compare;
    }
  });

  void test("a temp file a killed writer left beside the users file goes with the next change; other files stay", async () => {
    const box = sandbox();
    const store = storeOn(box);
    await store.add("first", "pw");
    const dir = path.dirname(box.file);
    writeFileSync(path.join(dir, "users.json.tmp-99999-0123456789ab"), '{"users": [');
    writeFileSync(path.join(dir, "notes.txt"), "kept");
    await store.add("second", "pw");
    const left = readdirSync(dir);
    assert.ok(left.includes("notes.txt") && left.includes("users.json"), left.join(" "));
    assert.ok(!left.some((n) => n.includes(".tmp-")), left.join(" "));
    assert.ok(await store.authenticate("second", "pw"));
  });

  void test("a system clock set back (NTP, a VM restored) does not stop changes being seen until it catches up", async () => {
    const box = sandbox();
    let clock = 10 * 3600_000;
    const server = storeOn(box, { reloadIntervalMs: 1000, now: () => clock });
    const admin = storeOn(box);
    await admin.add("bob", "pw");
    assert.ok(await server.authenticate("bob", "pw"));
    clock -= 3600_000;
    await admin.del("bob");
    assert.equal(await server.authenticate("bob", "pw"), null, "the deletion is seen at once, not in an hour");
    await admin.add("carol", "pw");
    assert.equal(await server.authenticate("carol", "pw"), null, "then looked at once a second again");
    clock += 1000;
    assert.ok(await server.authenticate("carol", "pw"));
  });

  void test("a change that leaves the file's inode, size and mtime as they were (a file system with one-second times) is still seen", async () => {
    const box = sandbox();
    const server = storeOn(box);
    const admin = storeOn(box);
    await admin.add("bob", "pw-0");
    // Times of whole seconds, as such a file system keeps them: every write below within that second.
    const second = Math.floor(Date.now() / 1000);
    utimesSync(box.file, second, second);
    const before = statSync(box.file);
    assert.ok(await server.authenticate("bob", "pw-0"));
    // Two password changes (atomic replacements: the second may take the first inode again).
    await admin.passwd("bob", "pw-1");
    utimesSync(box.file, second, second);
    await admin.passwd("bob", "pw-2");
    utimesSync(box.file, second, second);
    assert.equal(statSync(box.file).size, before.size);
    assert.ok(await server.authenticate("bob", "pw-2"), "the last password works");
    assert.equal(await server.authenticate("bob", "pw-0"), null, "the first one no longer does");
    // A hand edit in place: the very same inode, size and mtime.
    const text = readFileSync(box.file, "utf8");
    const hash = (JSON.parse(text) as { users: { hash: string }[] }).users[0]!.hash;
    const at = statSync(box.file).ino;
    writeFileSync(box.file, text.replace(hash, bcrypt.hashSync("pw-3", 4)));
    utimesSync(box.file, second, second);
    const after = statSync(box.file);
    assert.deepEqual([after.ino, after.size, after.mtimeMs], [at, before.size, before.mtimeMs]);
    assert.ok(await server.authenticate("bob", "pw-3"), "the edited password works");
    assert.equal(await server.authenticate("bob", "pw-2"), null);
  });

  void test("a login checked while the server writes the users file itself (the demo user of a first start) keeps what was written, and logs no removal", async () => {
    const box = sandbox();
    const { logger, lines } = captureLogger();
    const server = storeOn(box, { logger });
    await server.load();
    // The login's look at the file (the first stat of it from here) is answered before the demo
    // user is written, and only after that write has ended does the login go on.
    const stat = fsp.stat;
    let held = false;
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    fsp.stat = (async (...args: Parameters<typeof stat>) => {
      const first = !held && args[0] === box.file;
      if (first) held = true;
      const result = await stat(...args).then((s) => ({ s, err: null }), (err: unknown) => ({ s: null, err }));
      if (first) await released;
      if (result.s === null) throw result.err;
      return result.s;
    }) as typeof stat;
    syncBuiltinESMExports();
    let demo;
    try {
      const login = server.authenticate("demo", "guess");
      assert.ok(held, "the login looked at the file");
      demo = await server.createDemoUser();
      release();
      assert.equal(await login, null);
    } finally {
      fsp.stat = stat;
      syncBuiltinESMExports();
    }
    assert.ok(demo !== null);
    assert.deepEqual(server.loaded().map((u) => u.name), ["demo"], "what the server wrote stays in use");
    assert.ok(!lines.some((l) => l.includes("users file removed")), lines.join("\n"));
    assert.ok(await server.authenticate("demo", demo.password));
  });

  void test("a change made by another instance is seen without restart", async () => {
    const box = sandbox();
    let clock = 0;
    const server = storeOn(box, { reloadIntervalMs: 1000, now: () => clock });
    const admin = storeOn(box);
    await admin.add("first", "pw");
    assert.ok(await server.authenticate("first", "pw"));
    await admin.add("second", "pw2");
    assert.equal(await server.authenticate("second", "pw2"), null, "not looked at again within the interval");
    clock += 1000;
    assert.ok(await server.authenticate("second", "pw2"), "seen after the interval");
    await admin.del("first");
    clock += 1000;
    assert.equal(await server.authenticate("first", "pw"), null);
  });

  void test("a hash of the $2y$ and $2a$ kinds a users file takes (htpasswd -B and PHP write $2y$) is checked as the bcrypt it is", async () => {
    const box = sandbox();
    const store = storeOn(box);
    await store.add("made", "pw");
    const hash = (JSON.parse(readFileSync(box.file, "utf8")) as { users: { hash: string }[] }).users[0]?.hash ?? "";
    assert.match(hash, /^\$2b\$/);
    const users = ["2a", "2y"].map((kind) => ({ name: `hand-${kind}`, hash: hash.replace("$2b$", `$${kind}$`), home: "h", readOnly: false }));
    writeFileSync(box.file, JSON.stringify({ version: 1, users }));
    for (const { name } of users) {
      assert.ok(await store.authenticate(name, "pw"), name);
      assert.equal(await store.authenticate(name, "other"), null, name);
    }
    assert.deepEqual(await store.ensureEnvUser({ BERTH_USER: "hand-2y", BERTH_PASSWORD: "pw" }), { name: "hand-2y", action: "unchanged" });
  });

  void test("a corrupt users file is logged and the last good copy kept", async () => {
    const box = sandbox();
    const { logger, lines } = captureLogger();
    const server = storeOn(box, { logger });
    const admin = storeOn(box);
    await admin.add("bob", "pw");
    assert.ok(await server.authenticate("bob", "pw"));
    writeFileSync(box.file, '{"version": 1, "users": [{"name": "bob", "hash": "$2b$04$abc"');
    assert.ok(await server.authenticate("bob", "pw"), "last good copy still used");
    const errors = lines.filter((l) => (JSON.parse(l) as { level: number }).level === 50);
    assert.equal(errors.length, 1);
    assert.match(errors[0] ?? "", /not valid JSON/);
    assert.ok(!lines.some((l) => l.includes("$2b$")), "no hash in the log");
    assert.match(await rejectsWith(admin.add("carol", "pw"), "corrupt"), /not valid JSON/);
    await rejectsWith(admin.list(), "corrupt");
    writeFileSync(box.file, JSON.stringify({ version: 1, users: [{ name: "bob", hash: "x", home: "bob", readOnly: false }] }));
    assert.ok(await server.authenticate("bob", "pw"), "a malformed record is also refused as a whole");
  });

  void test("a hash of a cost too high to verify in time (a hand edit: $2b$31$ is days of work) is refused with the file, naming the user and the cost", async () => {
    const box = sandbox();
    const { logger, lines } = captureLogger();
    const server = storeOn(box, { logger });
    const admin = storeOn(box);
    await admin.add("bob", "pw");
    assert.ok(await server.authenticate("bob", "pw"));
    const table = JSON.parse(readFileSync(box.file, "utf8")) as { version: 1; users: { name: string; hash: string }[] };
    const good = table.users[0]!;
    const at = (cost: string): { name: string; hash: string } => ({ ...good, name: `cost${cost}`, hash: good.hash.replace(/^\$2b\$04\$/, `$2b$${cost}$`) });
    // htpasswd -B makes costs up to 17: those are taken.
    writeFileSync(box.file, JSON.stringify({ ...table, users: [good, at("17")] }));
    assert.deepEqual((await admin.list()).map((u) => u.name), ["bob", "cost17"]);
    for (const cost of ["18", "31"]) {
      writeFileSync(box.file, JSON.stringify({ ...table, users: [good, at(cost)] }));
      const message = await rejectsWith(admin.list(), "corrupt");
      assert.match(message, new RegExp(`entry 2 \\("cost${cost}"\\): "hash" has bcrypt cost ${cost}; berth checks hashes of cost up to 17`));
      assert.ok(!message.includes("$2b$"), "no hash in the message");
    }
    // The server keeps its last good copy (without cost31) and says why.
    assert.ok(await server.authenticate("bob", "pw"), "last good copy still used");
    assert.equal(await server.authenticate("cost31", "pw"), null);
    assert.ok(lines.some((l) => /cost31.*cost 31/.test(l)), "the refusal is logged");
  });

  void test("a users file broken by hand is named with the line and column where it stops being JSON, never its content", async () => {
    const parseError = (text: string): string => {
      try {
        parseUsersFile(text, "/etc/berth/users.json");
      } catch (err) {
        assert.ok(err instanceof UserError && err.kind === "corrupt", String(err));
        assert.ok(!err.message.includes("\n") && !err.message.includes("$2b$"), err.message);
        return err.message;
      }
      return assert.fail("parsed");
    };
    const entry = '    { "name": "bob", "hash": "$2b$04$abcdefghijklmnopqrstuv", "home": "bob", "readOnly": false, }';
    const trailingComma = `{\n  "version": 1,\n  "users": [\n${entry}\n  ]\n}\n`;
    assert.equal(parseError(trailingComma), `users file /etc/berth/users.json is not valid JSON: line 4, column ${entry.lastIndexOf("}") + 1}`);
    assert.equal(parseError('{\n  "version": 1,\n  "users": [\n    { "name": "é", "home": tru }\n  ]\n}'), "users file /etc/berth/users.json is not valid JSON: line 4, column 31");
    for (const end of ["", "\n", "\n\n  "]) {
      assert.equal(parseError(`{\n  "version": 1,\n  "users": [${end}`), "users file /etc/berth/users.json is not valid JSON: it ends too soon, at line 3");
    }
    assert.equal(parseError('{"version": 1, "users": []}\n}\n'), "users file /etc/berth/users.json is not valid JSON: line 2, column 1");
    for (const empty of ["", " \n\n"]) assert.equal(parseError(empty), "users file /etc/berth/users.json is empty: restore it from a backup, or remove it, and the next start or user add makes a new one");

    const box = sandbox();
    mkdirSync(path.dirname(box.file), { recursive: true });
    writeFileSync(box.file, trailingComma);
    assert.match(await rejectsWith(storeOn(box).list(), "corrupt"), new RegExp(`${box.file} is not valid JSON: line 4, column \\d+$`));
  });

  void test("a malformed entry of a users file is named by its place and name, with the key that is wrong, never the value", () => {
    const hash = "$2b$04$abcdefghijklmnopqrstuvabcdefghijklmnopqrstuvwxyz01234";
    const good = { name: "alice", hash, home: "alice", readOnly: false };
    const refusal = (entry: unknown): string => {
      try {
        parseUsersFile(JSON.stringify({ version: 1, users: [good, entry] }), "/u.json");
      } catch (err) {
        assert.ok(err instanceof UserError && err.kind === "corrupt", String(err));
        assert.ok(!err.message.includes("$2") && !err.message.includes("s3cret"), err.message);
        return err.message;
      }
      return assert.fail("parsed");
    };
    assert.equal(refusal("bob"), "users file /u.json: entry 2 is not an object");
    assert.equal(refusal({ ...good, name: "b b" }), 'users file /u.json: entry 2: "name" must be 1-64 letters, digits, ".", "_", "@" or "-", not starting with "."');
    assert.equal(refusal({ ...good, name: "bob", hash: "s3cret" }), 'users file /u.json: entry 2 ("bob"): "hash" must be a bcrypt hash');
    assert.equal(refusal({ ...good, name: "bob", hash: undefined }), 'users file /u.json: entry 2 ("bob"): "hash" must be a bcrypt hash');
    // bcrypt takes costs 4 to 31 only: with another, no password would ever match, and nothing would say why.
    for (const cost of ["00", "03", "32", "99"]) {
      assert.equal(refusal({ ...good, name: "bob", hash: hash.replace("$04$", `$${cost}$`) }), `users file /u.json: entry 2 ("bob"): "hash" has bcrypt cost ${cost}, which bcrypt does not take (4 to 31)`);
    }
    assert.equal(refusal({ ...good, name: "bob", home: "" }), 'users file /u.json: entry 2 ("bob"): "home" must be a non-empty path');
    assert.equal(refusal({ ...good, name: "bob", readOnly: "no" }), 'users file /u.json: entry 2 ("bob"): "readOnly" must be true or false');
    assert.match(refusal({ ...good, name: "bob", perms: ["list", "fly"] }), /^users file \/u\.json: entry 2 \("bob"\): "perms" must be a list of /);
    assert.match(refusal({ ...good, name: "bob", dirs: { "/../x": ["list"] } }), /^users file \/u\.json: entry 2 \("bob"\): "dirs" must /);
    assert.equal(refusal({ ...good, name: "bob", quotaBytes: -1 }), 'users file /u.json: entry 2 ("bob"): "quotaBytes" must be a whole number >= 0');
  });

  void test("a key named __proto__ in an entry, added by hand, is kept as it is, like any key berth does not use", async () => {
    const box = sandbox();
    const { logger, lines } = captureLogger();
    const store = storeOn(box, { logger });
    await store.add("alice", "pw");
    await store.add("bob", "pw");
    // JSON.parse makes "__proto__" a key of its own, as every other key: a value of each kind.
    const text = readFileSync(box.file, "utf8")
      .replace('"name": "alice",', '"name": "alice", "__proto__": { "owner": "ops" }, "note": 1,')
      .replace('"name": "bob",', '"name": "bob", "__proto__": "text",');
    writeFileSync(box.file, text);
    await store.load();
    await store.add("carol", "pw");
    const entries = (JSON.parse(readFileSync(box.file, "utf8")) as { users: Record<string, unknown>[] }).users;
    const own = (name: string): unknown[] => {
      const entry = entries.find((u) => u.name === name)!;
      return [Object.hasOwn(entry, "__proto__"), Object.getOwnPropertyDescriptor(entry, "__proto__")?.value];
    };
    assert.deepEqual(own("alice"), [true, { owner: "ops" }]);
    assert.deepEqual(own("bob"), [true, "text"]);
    assert.equal(entries.find((u) => u.name === "alice")?.note, 1);
    const warned = lines.map((l) => JSON.parse(l) as { user?: string; keys?: string[] }).filter((l) => l.keys !== undefined);
    assert.deepEqual(warned.map((l) => [l.user, l.keys]), [["alice", ["__proto__", "note"]], ["bob", ["__proto__"]]]);
  });

  void test("a users file saved with a byte order mark (as some Windows editors do) is read, and written back without one", async () => {
    const box = sandbox();
    const admin = storeOn(box);
    await admin.add("bob", "pw");
    writeFileSync(box.file, `\uFEFF${readFileSync(box.file, "utf8")}`);
    const server = storeOn(box);
    assert.ok(await server.authenticate("bob", "pw"));
    assert.deepEqual((await admin.list()).map((u) => u.name), ["bob"]);
    await admin.add("carol", "pw");
    assert.ok(!readFileSync(box.file, "utf8").startsWith("\uFEFF"));
    assert.deepEqual((await admin.list()).map((u) => u.name), ["bob", "carol"]);
  });

  void test("a users file removed under a running server is logged once as a warning; its return is loaded", async () => {
    const box = sandbox();
    const { logger, lines } = captureLogger();
    const server = storeOn(box, { logger });
    const admin = storeOn(box);
    await admin.add("bob", "pw");
    assert.ok(await server.authenticate("bob", "pw"));
    const saved = readFileSync(box.file);
    rmSync(box.file);
    assert.equal(await server.authenticate("bob", "pw"), null);
    assert.equal(await server.authenticate("bob", "pw"), null);
    const warned = lines.filter((l) => (JSON.parse(l) as { level: number }).level === 40);
    assert.equal(warned.length, 1, lines.join("\n"));
    assert.match(warned[0] ?? "", /users file removed; no user can log in/);
    assert.match(warned[0] ?? "", /"dropped":1/);
    writeFileSync(box.file, saved);
    assert.ok(await server.authenticate("bob", "pw"), "the file back: bob logs in again");
  });

  void test("no warning for a users file that never existed", async () => {
    const box = sandbox();
    const { logger, lines } = captureLogger();
    const server = storeOn(box, { logger });
    assert.equal(await server.authenticate("bob", "pw"), null);
    assert.equal(await server.authenticate("bob", "pw"), null);
    assert.deepEqual(lines.filter((l) => (JSON.parse(l) as { level: number }).level >= 40), []);
  });

  void test("createDemoUser: demo user once, then nothing", async () => {
    const box = sandbox();
    const store = storeOn(box);
    const first = await store.createDemoUser();
    assert.ok(first);
    assert.equal(first.name, "demo");
    assert.match(first.password, /^[A-Za-z0-9_-]{16}$/);
    assert.ok(await store.authenticate("demo", first.password));
    assert.equal(await store.createDemoUser(), null);
  });

  void test("createDemoUser: no demo user in a users file that exists without users", async () => {
    const box = sandbox();
    const store = storeOn(box);
    await store.add("only", "pw");
    await store.del("only");
    assert.equal(await store.createDemoUser(), null);
    assert.deepEqual(await store.list(), []);
    assert.deepEqual(JSON.parse(readFileSync(box.file, "utf8")), { version: 1, users: [] });
  });

  void test("ensureEnvUser: BERTH_USER with BERTH_PASSWORD or BERTH_PASSWORD_FILE", async () => {
    const box = sandbox();
    const store = storeOn(box);
    assert.equal(await store.ensureEnvUser({}), undefined);
    assert.ok(!existsSync(box.file), "nothing written without BERTH_USER");
    assert.deepEqual(await store.ensureEnvUser({ BERTH_USER: "ops", BERTH_PASSWORD: "one" }), { name: "ops", action: "created" });
    const pwFile = path.join(box.dir, "secret");
    writeFileSync(pwFile, "two\n");
    assert.deepEqual(await store.ensureEnvUser({ BERTH_USER: "ops", BERTH_PASSWORD_FILE: pwFile }), { name: "ops", action: "updated" });
    assert.ok(await store.authenticate("ops", "two"));
    assert.deepEqual(await store.ensureEnvUser({ BERTH_USER: "ops", BERTH_PASSWORD: "two" }), { name: "ops", action: "unchanged" });
    assert.deepEqual((await store.list()).map((u) => u.name), ["ops"]);
    await rejectsWith(store.ensureEnvUser({ BERTH_USER: "ops" }), "invalid");
    await rejectsWith(store.ensureEnvUser({ BERTH_PASSWORD: "x" }), "invalid");
    await rejectsWith(store.ensureEnvUser({ BERTH_USER: "ops", BERTH_PASSWORD_FILE: "/nonexistent/pw" }), "invalid");
    await rejectsWith(store.ensureEnvUser({ BERTH_USER: "bad name", BERTH_PASSWORD: "x" }), "invalid");
  });

  void test("a password file or standard input saved with a byte order mark (Windows Notepad) gives the password without it", async () => {
    const box = sandbox();
    const store = storeOn(box);
    const pwFile = path.join(box.dir, "secret");
    writeFileSync(pwFile, "\uFEFFthree\r\n");
    assert.deepEqual(await store.ensureEnvUser({ BERTH_USER: "ops", BERTH_PASSWORD_FILE: pwFile }), { name: "ops", action: "created" });
    assert.ok(await store.authenticate("ops", "three"));
    const bom = Buffer.from("\uFEFF", "utf8");
    assert.equal(await readPassword(Readable.from([bom.subarray(0, 2), Buffer.concat([bom.subarray(2), Buffer.from("four\n")])])), "four");
    assert.equal(await readPassword(Readable.from([Buffer.from("fi\uFEFFve")])), "fi\uFEFFve", "only a leading mark is dropped");
    // Byte by byte, a password one byte too long behind the mark is still read whole, and refused.
    const bytes = Buffer.concat([bom, Buffer.from(`${"x".repeat(73)}\n`)]);
    const slow = await readPassword(Readable.from([...bytes].map((b) => Buffer.from([b]))));
    assert.ok(slow.length > 72, `read ${slow.length} bytes`);
  });

  void test("ensureEnvUser: a BERTH_PASSWORD_FILE that never ends (/dev/zero) or is far too long is read only as far as a password goes, and refused", async () => {
    const box = sandbox();
    const store = storeOn(box);
    const long = path.join(box.dir, "long");
    writeFileSync(long, "x".repeat(1 << 20));
    for (const file of ["/dev/zero", long]) {
      assert.match(await rejectsWith(store.ensureEnvUser({ BERTH_USER: "ops", BERTH_PASSWORD_FILE: file }), "invalid"), /longer than 72 bytes/);
    }
    assert.ok(!existsSync(box.file), "no user was made");
  });

  void test("a lock left with this process's pid by an earlier process (a container's server started again gets the same pid) is taken over; a lock this process holds is waited for", async () => {
    const box = sandbox();
    const store = storeOn(box, { lock: { waitMs: 200 } });
    await store.add("first", "pw");
    writeFileSync(`${box.file}.lock`, `${process.pid}\n`);
    await store.add("second", "pw");
    assert.ok(!existsSync(`${box.file}.lock`), "the left lock is gone, and so is the store's own");
    // Two stores of this process changing the file at once: each waits for the other's lock, and
    // every change is kept.
    const one = storeOn(box, { lock: { waitMs: 10_000 } });
    const two = storeOn(box, { lock: { waitMs: 10_000 } });
    const names = ["a", "b", "c"];
    await Promise.all(names.flatMap((n) => [one.add(`one-${n}`, "pw"), two.add(`two-${n}`, "pw")]));
    const expected = ["first", "second", ...names.flatMap((n) => [`one-${n}`, `two-${n}`])].sort();
    assert.deepEqual((await store.list()).map((u) => u.name), expected);
    assert.ok(!existsSync(`${box.file}.lock`));
  });

  void test("a live lock is waited for as long as asked on a monotonic clock: a wall clock that stands still or is set back meanwhile does not hold the change for longer", { timeout: 120_000 }, async () => {
    const box = sandbox();
    const store = storeOn(box, { lock: { waitMs: 100 } });
    await store.add("first", "pw");
    const lock = `${box.file}.lock`;
    // The pid of a live process that is not this one: its lock is waited for.
    writeFileSync(lock, `${process.ppid}\n`);
    const now = Date.now;
    const stopped = now();
    Date.now = () => stopped;
    try {
      assert.match(await rejectsWith(store.add("second", "pw"), "busy"), new RegExp(`is held by process ${process.ppid}`));
    } finally {
      Date.now = now;
    }
    assert.equal(readFileSync(lock, "utf8"), `${process.ppid}\n`, "someone else's lock is never removed");
  });

  void test("a lock written further ahead of the clock than a stale lock is old (the clock set back since) is stale, with or without a live pid in it", async () => {
    const box = sandbox();
    const store = storeOn(box, { lock: { waitMs: 100 } });
    await store.add("first", "pw");
    const lock = `${box.file}.lock`;
    const inSeconds = (s: number): number => Date.now() / 1000 + s;
    for (const [i, content] of [`${process.ppid}\n`, ""].entries()) {
      writeFileSync(lock, content);
      utimesSync(lock, inSeconds(3600), inSeconds(3600));
      await store.add(`user${i}`, "pw");
      assert.ok(!existsSync(lock), `an hour ahead, ${JSON.stringify(content)}: taken over, and the store's own gone`);
    }
    // A little ahead is young still: a live holder's is waited for.
    writeFileSync(lock, `${process.ppid}\n`);
    utimesSync(lock, inSeconds(60), inSeconds(60));
    await rejectsWith(store.add("late", "pw"), "busy");
    assert.equal(readFileSync(lock, "utf8"), `${process.ppid}\n`);
  });

  void test("a lock whose pid is now another process's (pid reuse) is taken over at once: the lock records when its process started", { skip: !existsSync("/proc/self/ns/pid") && "needs /proc" }, async () => {
    const box = sandbox();
    const store = storeOn(box, { lock: { waitMs: 100 } });
    await store.add("first", "pw");
    const lock = `${box.file}.lock`;
    const started = (pid: number): string => {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]!;
    };
    const ns = readlinkSync("/proc/self/ns/pid");
    // What a lock holds: its process's pid, when that process started, and its pid namespace.
    assert.equal(await withFileLock(lock, async () => readFileSync(lock, "utf8")), `${process.pid} ${started(process.pid)} ${ns}\n`);
    // The pid of a live process, but a start that is not that process's: the one that wrote it is gone.
    writeFileSync(lock, `${process.ppid} ${Number(started(process.ppid)) + 1} ${ns}\n`);
    await store.add("fourth", "pw");
    assert.ok(!existsSync(lock), "taken over, and the store's own gone");
    // The live process that wrote it: waited for.
    writeFileSync(lock, `${process.ppid} ${started(process.ppid)} ${ns}\n`);
    assert.match(await rejectsWith(store.add("fifth", "pw"), "busy"), new RegExp(`is held by process ${process.ppid};`));
  });

  void test("a lock made in another pid namespace (another container sharing the volume) is judged by its age alone, its pid meaning nothing here", { skip: !existsSync("/proc/self/ns/pid") && "needs /proc" }, async () => {
    const box = sandbox();
    const store = storeOn(box, { lock: { waitMs: 100 } });
    await store.add("first", "pw");
    const lock = `${box.file}.lock`;
    const ours = readlinkSync("/proc/self/ns/pid");
    assert.match(await withFileLock(lock, async () => readFileSync(lock, "utf8")), new RegExp(`^${process.pid} \\d+ ${ours.replace(/[[\]]/g, "\\$&")}\n$`));
    // Both containers' processes are pid 1, say: here, the pid names this process, which holds no lock.
    const foreign = "pid:[1]";
    for (const pid of [process.pid, 999_999_999]) {
      writeFileSync(lock, `${pid} 12345 ${foreign}\n`);
      assert.match(await rejectsWith(store.add("second", "pw"), "busy"), new RegExp(`is held by process ${pid};`));
      assert.equal(readFileSync(lock, "utf8"), `${pid} 12345 ${foreign}\n`, "left as it was");
    }
    // Old enough, it is stale all the same.
    utimesSync(lock, Date.now() / 1000 - 3600, Date.now() / 1000 - 3600);
    await store.add("second", "pw");
    assert.ok(!existsSync(lock));
  });

  void test("a users file that is a mount point of its own (a single file bind-mounted into a container) is refused in one line saying so, not as EBUSY", { skip: process.getuid?.() !== 0 && "needs root to bind-mount" }, async (t) => {
    const box = sandbox();
    const store = storeOn(box);
    await store.add("first", "pw");
    const outside = path.join(box.dir, "outside.json");
    writeFileSync(outside, readFileSync(box.file));
    if (spawnSync("mount", ["--bind", outside, box.file]).status !== 0) return t.skip("mount --bind is not allowed here");
    try {
      const message = await rejectsWith(store.add("second", "pw"), "io");
      assert.match(message, /is a mount point of its own/);
      assert.match(message, /mount the directory that holds it/);
      assert.ok(!readFileSync(box.file, "utf8").includes("second"), "nothing changed");
    } finally {
      spawnSync("umount", [box.file]);
    }
  });

  void test("ensureEnvUser: a password that is already the user's changes nothing and needs no lock, so a users file the server may not write (a read-only volume) still starts", async () => {
    const box = sandbox();
    const store = storeOn(box);
    await store.add("ops", "same");
    // Whatever keeps the lock from being taken (a read-only directory, for a user who is not root).
    mkdirSync(`${box.file}.lock`);
    assert.deepEqual(await store.ensureEnvUser({ BERTH_USER: "ops", BERTH_PASSWORD: "same" }), { name: "ops", action: "unchanged" });
    // A change still takes the lock, and says so when it cannot.
    await rejectsWith(store.ensureEnvUser({ BERTH_USER: "ops", BERTH_PASSWORD: "other" }), "io");
  });
});

/** A limiter whose every filesystem call takes 20 ms. */
class SlowLimiter extends Limiter {
  override run<T>(step: () => Promise<T>): Promise<T> {
    return new Promise((r) => setTimeout(r, 20)).then(step);
  }
}

/** Ten directories, one inside the other, below `top`, with a one-byte file "f" in `top` and in
 * each but the last. */
function deepTree(top: string): void {
  let dir = top;
  for (let i = 0; i < 10; i++) {
    writeFileSync(path.join(dir, "f"), "x");
    dir = path.join(dir, `d${i}`);
    mkdirSync(dir);
  }
}

void describe("user list usage", () => {
  test("users sharing a home show the same usage; a missing home shows none", async () => {
    const box = sandbox();
    const store = storeOn(box);
    await store.add("ann", "pw", { root: "shared" });
    await store.add("ben", "pw", { root: "shared" });
    await store.add("cat", "pw", {});
    const shared = path.join(box.root, "shared");
    writeFileSync(path.join(shared, "a.bin"), Buffer.alloc(1000));
    writeFileSync(path.join(shared, "b.bin"), Buffer.alloc(24));
    rmSync(path.join(box.root, "cat"), { recursive: true });
    const usage = await homeUsage(await store.list());
    assert.deepEqual(usage.get("ann"), { bytes: 1024, files: 2 });
    assert.deepEqual(usage.get("ben"), { bytes: 1024, files: 2 });
    assert.equal(usage.get("cat"), null);
  });

  test("a home too big to count in time shows what was counted as a lower bound", async () => {
    const box = sandbox();
    const store = storeOn(box);
    await store.add("deep", "pw", {});
    deepTree(path.join(box.root, "deep"));
    // Every filesystem call takes 20 ms: the walk goes one level down per three calls.
    const partial = await scanUsage(path.join(box.root, "deep"), new SlowLimiter(1), Date.now() + 150);
    assert.equal(partial.partial, true);
    assert.ok(partial.files >= 1 && partial.files < 10, `${partial.files} files counted`);
    assert.equal(partial.bytes, partial.files);
    assert.deepEqual(await scanUsage(path.join(box.root, "deep"), new SlowLimiter(1)), { bytes: 10, files: 10 });
    // user list says so.
    const users = await store.list();
    const table = formatUserTable(users, await homeUsage(users, -1));
    assert.match(table, /at least 0 B, 0 files \(counting stopped after 5 s\)/);
    assert.match(formatUserTable(users, await homeUsage(users)), /10 B, 10 files/);
  });

  test("many homes too big to count share one time budget: the list is not held for one budget per home", async () => {
    const box = sandbox();
    const store = storeOn(box);
    const names = ["h1", "h2", "h3", "h4", "h5", "h6", "h7", "h8"];
    for (const name of names) {
      await store.add(name, "pw", {});
      deepTree(path.join(box.root, name));
    }
    // Every filesystem call takes 20 ms: no home is counted within 200 ms.
    const started = Date.now();
    const usage = await homeUsage(await store.list(), 200, new SlowLimiter(16));
    const took = Date.now() - started;
    assert.ok(took < 800, `took ${took} ms for a budget of 200 ms (8 homes)`);
    for (const name of names) assert.equal(usage.get(name)?.partial, true, `${name} shown as a lower bound`);
  });
});

void describe("users file that cannot be used", () => {
  test("never read: a login cannot be checked (UserError io, not a failed login) until the file reads", async () => {
    const box = sandbox();
    const { logger, lines } = captureLogger();
    const server = storeOn(box, { logger });
    // A directory where the file should be: stat works, reading fails (EISDIR).
    mkdirSync(box.file, { recursive: true });
    assert.match(await rejectsWith(server.authenticate("bob", "pw"), "io"), /no usable users file yet: .*directory/i);
    assert.match(await rejectsWith(server.authenticate("bob", "pw"), "io"), /no usable users file yet/);
    const unreadable = lines.filter((l) => l.includes("users file unreadable"));
    assert.equal(unreadable.length, 1, "logged once while it lasts");
    rmSync(box.file, { recursive: true });
    await storeOn(box).add("bob", "pw");
    assert.ok(await server.authenticate("bob", "pw"));
    assert.equal(await server.authenticate("bob", "wrong"), null);
  });

  test("never parsed: a corrupt file makes logins uncheckable rather than failed", async () => {
    const box = sandbox();
    const { logger, lines } = captureLogger();
    const server = storeOn(box, { logger });
    mkdirSync(path.dirname(box.file), { recursive: true });
    writeFileSync(box.file, "{ not json");
    assert.match(await rejectsWith(server.authenticate("bob", "pw"), "io"), /not valid JSON/);
    const logged = lines.filter((l) => l.includes("users file unusable"));
    assert.equal(logged.length, 1);
    assert.match(logged[0] ?? "", /"users file unusable; no good copy yet: logins cannot be checked until it is fixed"/);
    assert.doesNotMatch(logged[0] ?? "", /last good copy|"kept"/, "no copy is claimed");
    // No file at all is a valid state: no users, so a wrong login is just that.
    rmSync(box.file);
    assert.equal(await server.authenticate("bob", "pw"), null);
  });

  test("after a good copy, an unreadable file keeps the good copy in use", async () => {
    const box = sandbox();
    const server = storeOn(box);
    await storeOn(box).add("bob", "pw");
    assert.ok(await server.authenticate("bob", "pw"));
    rmSync(box.file);
    mkdirSync(box.file);
    assert.ok(await server.authenticate("bob", "pw"), "the last good copy");
  });
});

void describe("writeFileAtomic", () => {
  test("never replaces what is not a regular file (a device such as /dev/null given as the file, a FIFO, a directory): it stays as it was", async () => {
    const dir = mkdtempSync(path.join(tmpdir(), "berth-atomic-"));
    try {
      const fifo = path.join(dir, "fifo");
      assert.equal(spawnSync("mkfifo", [fifo]).status, 0);
      const sub = path.join(dir, "sub");
      mkdirSync(sub);
      const targets: [string, string, () => boolean][] = [
        [fifo, "EFTYPE", () => statSync(fifo).isFIFO()],
        [sub, "EISDIR", () => statSync(sub).isDirectory()],
      ];
      if (process.getuid?.() === 0) {
        // A null device of its own (major 1, minor 3), as /dev/null is.
        const dev = path.join(dir, "null");
        if (spawnSync("mknod", ["-m", "666", dev, "c", "1", "3"]).status === 0) targets.push([dev, "EFTYPE", () => statSync(dev).isCharacterDevice()]);
      }
      for (const [target, code, still] of targets) {
        await assert.rejects(writeFileAtomic(target, "{}\n"), (err: NodeJS.ErrnoException) => err.code === code, target);
        assert.ok(still(), `${target} left as it was`);
      }
      assert.deepEqual(readdirSync(dir).filter((n) => n.includes(".tmp-")), [], "no temp file left");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
