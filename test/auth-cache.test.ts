import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, describe, test } from "node:test";
import { LoginCache, type CredentialSource } from "../src/auth/cache.ts";
import { toUser, UserStore } from "../src/auth/store.ts";
import type { User } from "../src/auth/types.ts";
import type { Config } from "../src/config/schema.ts";
import { RawClient } from "./helpers/raw.ts";
import { withServer } from "./helpers/run.ts";
import type { TestServer } from "./helpers/server.ts";

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A real store on a temp users file (bcrypt cost 4, reload check on every call). */
function tempStore(): { store: UserStore; file: string; root: string } {
  const dir = mkdtempSync(path.join(tmpdir(), "berth-cache-"));
  dirs.push(dir);
  const file = path.join(dir, "users.json");
  const root = path.join(dir, "data");
  return { store: new UserStore({ file, storageRoot: root, bcryptCost: 4, reloadIntervalMs: 0 }), file, root };
}

/** An in-memory source that counts the full checks it does. */
class FakeSource implements CredentialSource {
  checks = 0;
  readonly passwords = new Map<string, string>();
  version = 1;
  gate: Promise<void> = Promise.resolve();

  async authenticate(name: string, password: string): Promise<User | null> {
    this.checks++;
    await this.gate;
    return this.passwords.get(name) === password ? toUser({ name, hash: "", home: name, readOnly: false }, `/home/${name}`) : null;
  }

  async credentialStamp(name: string): Promise<string | null> {
    return this.passwords.has(name) ? `v${this.version}` : null;
  }
}

void describe("LoginCache", () => {
  void test("a good login is checked once within the window, then answered from memory", async () => {
    const src = new FakeSource();
    src.passwords.set("bob", "pw");
    const cache = new LoginCache(src, { ttlMs: 60_000, maxEntries: 10 });
    assert.deepEqual(await cache.authenticate("bob", "pw"), toUser({ name: "bob", hash: "", home: "bob", readOnly: false }, "/home/bob"));
    assert.equal((await cache.authenticate("bob", "pw"))?.name, "bob");
    assert.equal(src.checks, 1);
    assert.equal(cache.size, 1);
  });

  void test("failures are never cached and a wrong password never matches a cached entry", async () => {
    const src = new FakeSource();
    src.passwords.set("bob", "pw");
    const cache = new LoginCache(src, { ttlMs: 60_000, maxEntries: 10 });
    assert.equal(await cache.authenticate("bob", "nope"), null);
    assert.equal(await cache.authenticate("bob", "nope"), null);
    assert.equal(src.checks, 2);
    await cache.authenticate("bob", "pw");
    assert.equal(await cache.authenticate("bob", "pw2"), null);
    assert.equal(await cache.authenticate("bob", "p"), null);
    assert.equal(await cache.authenticate("ghost", "pw"), null);
    assert.equal(src.checks, 6);
    assert.equal(cache.size, 1);
  });

  void test("entries expire after the TTL", async () => {
    let now = 1_000;
    const src = new FakeSource();
    src.passwords.set("bob", "pw");
    const cache = new LoginCache(src, { ttlMs: 5_000, maxEntries: 10, now: () => now });
    await cache.authenticate("bob", "pw");
    now += 4_999;
    await cache.authenticate("bob", "pw");
    assert.equal(src.checks, 1);
    now += 1;
    await cache.authenticate("bob", "pw");
    assert.equal(src.checks, 2);
  });

  void test("at most maxEntries are kept, least recently used dropped first", async () => {
    const src = new FakeSource();
    for (const n of ["a", "b", "c"]) src.passwords.set(n, `pw-${n}`);
    const cache = new LoginCache(src, { ttlMs: 60_000, maxEntries: 2 });
    await cache.authenticate("a", "pw-a");
    await cache.authenticate("b", "pw-b");
    await cache.authenticate("a", "pw-a"); // a is now the most recent
    await cache.authenticate("c", "pw-c"); // evicts b
    assert.equal(cache.size, 2);
    assert.equal(src.checks, 3);
    await cache.authenticate("a", "pw-a");
    assert.equal(src.checks, 3);
    await cache.authenticate("b", "pw-b");
    assert.equal(src.checks, 4);
  });

  void test("a change of the stored credentials invalidates at once", async () => {
    const src = new FakeSource();
    src.passwords.set("bob", "pw");
    const cache = new LoginCache(src, { ttlMs: 60_000, maxEntries: 10 });
    await cache.authenticate("bob", "pw");
    src.version++;
    await cache.authenticate("bob", "pw");
    assert.equal(src.checks, 2);
  });

  void test("identical checks at the same moment share one full check", async () => {
    const src = new FakeSource();
    src.passwords.set("bob", "pw");
    let open = (): void => undefined;
    src.gate = new Promise((r) => (open = r));
    const cache = new LoginCache(src, { ttlMs: 60_000, maxEntries: 10 });
    const all = Array.from({ length: 20 }, () => cache.authenticate("bob", "pw"));
    const wrong = cache.authenticate("bob", "bad");
    await new Promise((r) => setImmediate(r));
    open();
    const users = await Promise.all(all);
    assert.ok(users.every((u) => u?.name === "bob"));
    assert.equal(await wrong, null);
    assert.equal(src.checks, 2);
  });

  void test("ttl 0 turns the cache off", async () => {
    const src = new FakeSource();
    src.passwords.set("bob", "pw");
    const cache = new LoginCache(src, { ttlMs: 0, maxEntries: 10 });
    await cache.authenticate("bob", "pw");
    await cache.authenticate("bob", "pw");
    assert.equal(src.checks, 2);
    assert.equal(cache.size, 0);
  });

  void test("with the real store: passwd and del take effect on the next login", async () => {
    const { store } = tempStore();
    await store.add("alice", "first-pw");
    const cache = new LoginCache(store, { ttlMs: 60_000, maxEntries: 10 });
    assert.equal((await cache.authenticate("alice", "first-pw"))?.name, "alice");
    await store.passwd("alice", "second-pw");
    assert.equal(await cache.authenticate("alice", "first-pw"), null);
    assert.equal((await cache.authenticate("alice", "second-pw"))?.name, "alice");
    await store.del("alice");
    assert.equal(await cache.authenticate("alice", "second-pw"), null);
  });

  void test("with the real store: a change made by another process is seen", async () => {
    const { store, file, root } = tempStore();
    await store.add("carol", "old-pw");
    const cache = new LoginCache(store, { ttlMs: 60_000, maxEntries: 10 });
    assert.ok(await cache.authenticate("carol", "old-pw"));
    // Another process (here: another store on the same file) changes the password.
    const other = new UserStore({ file, storageRoot: root, bcryptCost: 4 });
    await other.passwd("carol", "new-pw");
    assert.equal(await cache.authenticate("carol", "old-pw"), null);
    assert.ok(await cache.authenticate("carol", "new-pw"));
  });

  void test("the stamp names no password and changes with the hash", async () => {
    const { store } = tempStore();
    await store.add("dave", "secret-pw");
    const before = await store.credentialStamp("dave");
    assert.ok(before !== null && !before.includes("secret-pw"));
    await store.passwd("dave", "secret-pw");
    assert.notEqual(await store.credentialStamp("dave"), before, "a new salt makes a new stamp");
    assert.equal(await store.credentialStamp("nobody"), null);
  });
});

void describe("the login cache in a running server (users.loginCacheSeconds)", () => {
  /** Counts the full (bcrypt) checks the server's store does. */
  function countChecks(t: TestServer): { readonly n: number } {
    const counter = { n: 0 };
    const real = t.store.authenticate.bind(t.store);
    t.store.authenticate = async (name: string, password: string) => {
      counter.n++;
      return real(name, password);
    };
    return counter;
  }

  async function login(t: TestServer, user: string, password: string): Promise<string> {
    const raw = await RawClient.connect(t.port);
    try {
      await raw.expect(`USER ${user}`, 331);
      const r = await raw.cmd(`PASS ${password}`);
      return `${r.code} ${r.message}`;
    } finally {
      raw.socket.destroy();
    }
  }

  void test("repeated good logins pay bcrypt once; failures always; a password change and 0 end it", async () => {
    await withServer(async (t) => {
      const checks = countChecks(t);
      for (let i = 0; i < 3; i++) assert.match(await login(t, "alice", "alice-pw"), /^230 /);
      assert.equal(checks.n, 1, "one full check for three logins");
      for (let i = 0; i < 2; i++) assert.match(await login(t, "alice", "wrong-pw"), /^530 /);
      assert.equal(checks.n, 3, "every failure pays the full check");
      assert.match(await login(t, "nobody", "alice-pw"), /^530 /);
      assert.equal(checks.n, 4, "unknown names too");
      // A new password ends the cached login at once.
      await t.store.passwd("alice", "new-pw");
      assert.match(await login(t, "alice", "alice-pw"), /^530 /);
      assert.match(await login(t, "alice", "new-pw"), /^230 /);
      assert.match(await login(t, "alice", "new-pw"), /^230 /);
      assert.equal(checks.n, 6);
      // A reload to 0 turns it off.
      t.server.reload({ ...t.config, users: { ...t.config.users, loginCacheSeconds: 0 } });
      assert.match(await login(t, "alice", "new-pw"), /^230 /);
      assert.match(await login(t, "alice", "new-pw"), /^230 /);
      assert.equal(checks.n, 8, "no cache after the reload");
    });
  });

  void test("loginCacheSeconds 0 in the config: every login pays the full check", async () => {
    await withServer(
      async (t) => {
        const checks = countChecks(t);
        for (let i = 0; i < 2; i++) assert.match(await login(t, "bob", "bob-pw"), /^230 /);
        assert.equal(checks.n, 2);
      },
      { config: { users: { loginCacheSeconds: 0 } as Config["users"] } },
    );
  });
});

void describe("the user store under a burst of logins", () => {
  void test("logins that arrive while the users file is first read wait for it (none is taken for an unknown user)", async () => {
    const { store, file, root } = tempStore();
    await store.add("erin", "erin-pw");
    // A fresh store on the same file, as after a start: nothing read yet.
    const fresh = new UserStore({ file, storageRoot: root, bcryptCost: 4, reloadIntervalMs: 60_000 });
    const results = await Promise.all(Array.from({ length: 20 }, () => fresh.authenticate("erin", "erin-pw")));
    assert.deepEqual(results.map((u) => u?.name), Array.from({ length: 20 }, () => "erin"));
  });
});
