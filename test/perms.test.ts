/**
 * Permissions (issue "Abuse resistance", part 3): the pure policy, then real sessions — every
 * permission refused and allowed, per-directory overrides with a rename across them, hidden and
 * denied names, MLSD perm facts of a restricted user, anonymous login on and off, and the modes
 * of what berth creates under storage.umask.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, it } from "node:test";
import type { FTPError } from "basic-ftp";
import { anonymousUser, isAnonymousName, shadowedNames } from "../src/auth/anonymous.ts";
import {
  checkAccess,
  compilePatterns,
  namePolicy,
  parseDirPerms,
  parsePermList,
  permFact,
  permsAt,
  type Access,
} from "../src/auth/perms.ts";
import { PERMS, type Perm } from "../src/auth/types.ts";
import { DEFAULTS } from "../src/config/schema.ts";
import { JailedFs } from "../src/fs/jail.ts";
import { backOff } from "../src/fs/quick.ts";
import type { FsFactory } from "../src/protocol/context.ts";
import { renameBinding, type RenameBinding } from "../src/native.ts";
import { readAll, RawClient, writeAll } from "./helpers/raw.ts";
import { download, ftpLogin, rawLogin, upload, withServer } from "./helpers/run.ts";
import type { TestServer } from "./helpers/server.ts";

const set = (...p: Perm[]): ReadonlySet<Perm> => new Set(p);
const carolPerms = {
  perms: set("list"),
  dirPerms: [
    { path: "/pub/deep", perms: set() },
    { path: "/pub", perms: set("list", "download", "rename") },
    { path: "/in", perms: set("list", "upload", "rename") },
  ],
};
const access = (path: string, need: Perm[], more: Partial<Access> = {}): Access => ({
  path,
  need,
  scope: "entry",
  creates: false,
  named: false,
  replaces: false,
  ...more,
});

void describe("permission policy (pure)", () => {
  void it("takes the longest matching directory override, else the user's own", () => {
    assert.deepEqual([...permsAt(carolPerms, "/")], ["list"]);
    assert.deepEqual([...permsAt(carolPerms, "/pub")], ["list", "download", "rename"]);
    assert.deepEqual([...permsAt(carolPerms, "/pub/a/b")], ["list", "download", "rename"]);
    assert.deepEqual([...permsAt(carolPerms, "/pub/deep/x")], []);
    assert.deepEqual([...permsAt(carolPerms, "/public")], ["list"], "a prefix of a name is not a parent");
    assert.deepEqual([...permsAt({ perms: set(), dirPerms: [{ path: "/", perms: set("list") }] }, "/x")], ["list"]);
  });

  void it("compiles comma-separated globs on names", () => {
    const m = compilePatterns(" .*, *.part ,, a?c ");
    for (const yes of [".hidden", ".", "x.part", "abc", "a.c"]) assert.equal(m(yes), true, yes);
    for (const no of ["visible", "x.part.1", "abbc", "X.PART"]) assert.equal(m(no), false, no);
    assert.equal(compilePatterns("")("anything"), false);
    assert.equal(compilePatterns("a+b(c)")("a+b(c)"), true, "regex characters are literal");
  });

  void it("matches names a client chose against patterns with many stars without backtracking (a regular expression took seconds for 3 stars over 255 characters, and hours for 5)", () => {
    const m = compilePatterns("*a*a*a*a*b, .*");
    assert.equal(m("a".repeat(255)), false);
    assert.equal(m(`${"a".repeat(254)}b`), true);
    assert.equal(compilePatterns(`${"*a".repeat(100)}`)("a".repeat(255)), true);
    assert.equal(compilePatterns(`${"*a".repeat(100)}*b`)("a".repeat(255)), false);
    // "*" and "?" take any character: a leading dot, and one outside the BMP as one character.
    assert.equal(compilePatterns("*")(".x"), true);
    assert.equal(compilePatterns("a?c")("a\u{1F600}c"), true);
    assert.equal(compilePatterns("[ab]")("[ab]"), true, "a bracket is a plain character here");
    assert.equal(compilePatterns("[ab]")("a"), false);
  });

  void it("checks hidden (any segment), denied (the entry's name), then permissions", () => {
    const policy = namePolicy({ hide: ".*", deny: "*.exe" });
    assert.deepEqual(checkAccess(carolPerms, policy, access("/.git/config", ["list"])), { kind: "hidden" });
    assert.deepEqual(checkAccess(carolPerms, policy, access("/in/.x", ["upload"], { creates: true })), { kind: "name" });
    assert.deepEqual(checkAccess(carolPerms, policy, access("/in/a.exe", ["upload"], { named: true })), { kind: "name" });
    assert.equal(checkAccess(carolPerms, policy, access("/in/a.exe", ["rename"])), null, "only named accesses check deny");
    assert.deepEqual(checkAccess(carolPerms, policy, access("/a", ["upload"])), { kind: "perm", perm: "upload" });
    assert.equal(checkAccess(carolPerms, policy, access("/in/a", ["upload"])), null);
    assert.deepEqual(checkAccess(carolPerms, policy, access("/in/a", ["upload"], { replaces: true })), {
      kind: "perm",
      perm: "overwrite",
    });
    assert.equal(checkAccess(carolPerms, policy, access("/pub/f", ["list", "download"])), null, "any one suffices");
    assert.equal(checkAccess(carolPerms, policy, access("/pub", ["download"], { scope: "dir" })), null);
  });

  void it("computes RFC 3659 perm facts from the permissions where the entry is", () => {
    const all = { perms: new Set(PERMS), dirPerms: [] };
    assert.equal(permFact(all, "file", "/", "f"), "rawdf");
    assert.equal(permFact(all, "file", "/", "f.exe", true), "df", "a denied name is neither read nor written");
    assert.equal(permFact(all, "dir", "/", "d"), "elcmpdf");
    assert.equal(permFact(all, "dir", "/", ""), "elcmp", "the root can be neither removed nor renamed");
    assert.equal(permFact(all, "link", "/", "l"), "df");
    assert.equal(permFact(all, "other", "/", "p"), "df", "a FIFO, socket or device is removed and renamed as a link is");
    assert.equal(permFact(carolPerms, "dir", "/", "in"), "elc");
    assert.equal(permFact(carolPerms, "dir", "/", "pub"), "el");
    assert.equal(permFact(carolPerms, "file", "/", "top.txt"), "");
    assert.equal(permFact(carolPerms, "file", "/in", "a"), "f", "upload without overwrite: no a, no w");
    assert.equal(permFact(carolPerms, "file", "/pub", "p"), "rf");
    assert.equal(permFact(carolPerms, "dir", "/pub", "deep"), "e", "a directory with permissions of its own is not renamed");
    assert.equal(permFact({ perms: new Set(PERMS), dirPerms: carolPerms.dirPerms }, "dir", "/", "pub"), "eld", "nor one that holds such a directory");
  });

  void it("parses permission lists and directory overrides", () => {
    assert.deepEqual(parsePermList("download, list"), ["list", "download"]);
    assert.deepEqual(parsePermList("none"), []);
    assert.deepEqual(parsePermList("all"), [...PERMS]);
    assert.equal(parsePermList("list,fly"), null);
    assert.deepEqual(parseDirPerms("/pub/=list,download; in=upload"), { "/pub": ["list", "download"], "/in": ["upload"] });
    assert.deepEqual(parseDirPerms(""), {});
    assert.equal(parseDirPerms("/../x=list"), null);
    assert.equal(parseDirPerms("/x"), null);
  });

  void it("builds the anonymous user from the config", () => {
    const u = anonymousUser(DEFAULTS.anonymous, "/srv/data");
    assert.equal(u.home, "/srv/data/anonymous");
    assert.equal(u.anonymous, true);
    assert.equal(u.readOnly, true);
    assert.deepEqual([...u.perms], ["list", "download"]);
    const up = anonymousUser({ ...DEFAULTS.anonymous, root: "/srv/ftp", dirPerms: "/incoming=upload" }, "/srv/data");
    assert.equal(up.home, "/srv/ftp");
    assert.equal(up.readOnly, false);
    assert.deepEqual(up.dirPerms.map((d) => [d.path, [...d.perms]]), [["/incoming", ["upload"]]]);
    assert.equal(isAnonymousName("FTP"), true);
    assert.deepEqual(shadowedNames(["alice", "anonymous", "Ftp"]), ["anonymous", "Ftp"]);
  });
});

/** Sends a data command that must be refused before 150; the prepared data connection is dropped. */
async function refusedData(raw: RawClient, line: string, text: RegExp): Promise<void> {
  const data = await raw.pasv();
  const r = await raw.expect(line, 550);
  assert.match(r.message, text, line);
  data.destroy();
}

/** Sends a data command that must succeed; returns what came over the data connection. */
async function okData(raw: RawClient, line: string, send?: string): Promise<string> {
  const data = await raw.pasv();
  raw.send(line);
  await raw.expectReply(150);
  let got = "";
  if (send === undefined) got = (await readAll(data)).toString("utf8");
  else await writeAll(data, send);
  await raw.expectReply(226);
  return got;
}

async function seed(home: string): Promise<void> {
  await writeFile(join(home, "f.txt"), "content");
  await mkdir(join(home, "empty"), { recursive: true });
}

/** The command that needs each permission, run by a user who lacks exactly that one. */
const REFUSALS: Record<Perm, (raw: RawClient) => Promise<void>> = {
  list: async (raw) => {
    await refusedData(raw, "LIST", /no list permission/);
    await refusedData(raw, "MLSD", /no list permission/);
    await refusedData(raw, "NLST", /no list permission/);
    await raw.expect("STAT /", 550);
    await raw.expect("MLST f.txt", 550);
    await raw.expect("SIZE f.txt", 213, undefined); // download still allows SIZE
  },
  download: async (raw) => {
    await refusedData(raw, "RETR f.txt", /no download permission/);
  },
  upload: async (raw) => {
    await refusedData(raw, "STOR new.txt", /no upload permission/);
    await refusedData(raw, "APPE new.txt", /no upload permission/);
    await refusedData(raw, "STOU", /no upload permission/);
  },
  overwrite: async (raw) => {
    await refusedData(raw, "STOR f.txt", /no overwrite permission/);
    await refusedData(raw, "APPE f.txt", /no overwrite permission/);
    await raw.expect("MFMT 20200101000000 f.txt", 550);
    await raw.expect("RNFR empty", 350);
    await raw.expect("RNTO f.txt", 550); // replacing an existing name
    assert.equal(await okData(raw, "STOR fresh.txt", "new"), "", "a new file is fine without overwrite");
  },
  delete: async (raw) => {
    await raw.expect("DELE f.txt", 550);
  },
  rename: async (raw) => {
    await raw.expect("RNFR f.txt", 550);
    // The RNFR was refused, so there is nothing to rename: a bad sequence, as for anyone.
    await raw.expect("RNTO g.txt", 503);
  },
  mkdir: async (raw) => {
    await raw.expect("MKD d", 550);
    await raw.expect("XMKD d", 550);
  },
  rmdir: async (raw) => {
    await raw.expect("RMD empty", 550);
  },
  chmod: async (raw) => {
    const r = await raw.expect("SITE CHMOD 600 f.txt", 550);
    assert.match(r.message, /no chmod permission/);
  },
};

void describe("each permission, refused and allowed", () => {
  const users = PERMS.map((p) => ({ name: `no-${p}`, password: `no-${p}-pw`, perms: PERMS.filter((q) => q !== p) }));

  void it("a user without one permission gets 550 for exactly the commands that need it", async () => {
    await withServer(
      async (t) => {
        for (const perm of PERMS) {
          const name = `no-${perm}`;
          await seed(t.home(name));
          const raw = await rawLogin(t, name);
          try {
            await raw.expect("TYPE I", 200);
            await REFUSALS[perm](raw);
            // Everything else still works for this user.
            if (perm !== "download") assert.equal(await okData(raw, "RETR f.txt"), "content");
            if (perm !== "list") assert.match(await okData(raw, "NLST"), /f\.txt/);
          } finally {
            await raw.close();
          }
          assert.equal(await readFile(join(t.home(name), "f.txt"), "utf8"), "content", `${perm}: file untouched`);
        }
      },
      { users },
    );
  });

  void it("a user with every permission may do all of it", async () => {
    await withServer(async (t) => {
      await seed(t.home("alice"));
      const raw = await rawLogin(t);
      try {
        assert.match(await okData(raw, "LIST"), /f\.txt/);
        assert.equal(await okData(raw, "RETR f.txt"), "content");
        await okData(raw, "STOR f.txt", "replaced");
        await okData(raw, "APPE f.txt", "+more");
        await raw.expect("MFMT 20200101000000 f.txt", 213);
        await raw.expect("SITE CHMOD 600 f.txt", 200);
        assert.equal((await stat(join(t.home("alice"), "f.txt"))).mode & 0o777, 0o600);
        await raw.expect("RNFR f.txt", 350);
        await raw.expect("RNTO g.txt", 250);
        await raw.expect("MKD d", 257);
        await raw.expect("RMD empty", 250);
        await raw.expect("DELE g.txt", 250);
      } finally {
        await raw.close();
      }
    });
  });

  void it("read-only is list and download only, with the reason in the reply", async () => {
    await withServer(async (t) => {
      await seed(t.home("bob"));
      const raw = await rawLogin(t, "bob");
      try {
        await refusedData(raw, "STOR x.txt", /^Permission denied: no upload permission here$/);
        await raw.expect("SITE CHMOD 644 f.txt", 550);
        await raw.expect("SITE CHMOD 4755 f.txt", 501, undefined); // bad mode is a syntax error first
        assert.equal(await okData(raw, "RETR f.txt"), "content");
      } finally {
        await raw.close();
      }
    });
  });

  void it("RNTO without RNFR is a bad sequence (503) for a read-only user too, as for one who may rename", async () => {
    await withServer(async (t) => {
      await seed(t.home("bob"));
      const raw = await rawLogin(t, "bob");
      try {
        await raw.expect("RNTO g.txt", 503);
        await raw.expect("RNFR f.txt", 550);
        await raw.expect("RNTO g.txt", 503);
      } finally {
        await raw.close();
      }
    });
  });
});

/** While `body` runs, the addon's renameNoReplace calls `before(to)` first, then itself unless
 * `fake` gives its result; `calls` counts them. */
async function hookedRename<T>(before: (to: string) => void, fake: number | null, body: (calls: { n: number }) => Promise<T>): Promise<T> {
  const b = renameBinding() as RenameBinding;
  const real = b.renameNoReplace;
  const calls = { n: 0 };
  b.renameNoReplace = (from, to) => {
    calls.n++;
    before(to);
    return fake ?? real(from, to);
  };
  try {
    return await body(calls);
  } finally {
    b.renameNoReplace = real;
  }
}

void describe("RNTO by a user without overwrite", { skip: !renameBinding() && "addon not built" }, () => {
  const users = [
    { name: "keeper", password: "keeper-pw", perms: PERMS.filter((p) => p !== "overwrite") },
    // Per-directory permissions: the target directory's decide.
    { name: "carol", password: "carol-pw", perms: ["list"] as Perm[], dirs: { "/in": ["list", "upload", "rename"] } as Record<string, Perm[]> },
  ];

  void it("a file another session creates at the new name after the check is kept, not replaced: 550, both files as they were", async () => {
    await withServer(
      async (t) => {
        await writeFile(join(t.home("keeper"), "mine.txt"), "mine");
        await mkdir(join(t.home("carol"), "in"), { recursive: true });
        await writeFile(join(t.home("carol"), "in", "mine.txt"), "carol's");
        for (const [name, dir] of [["keeper", ""], ["carol", "in/"]] as const) {
          const raw = await rawLogin(t, name);
          try {
            await hookedRename((to) => writeFileSync(to, "theirs", { flag: "wx" }), null, async (calls) => {
              await raw.expect(`RNFR ${dir}mine.txt`, 350);
              const r = await raw.expect(`RNTO ${dir}theirs.txt`, 550);
              assert.match(r.message, /File exists/);
              assert.equal(calls.n, 1, `${name}: the rename went through renameNoReplace`);
            });
            assert.equal(await readFile(join(t.home(name), dir, "theirs.txt"), "utf8"), "theirs", `${name}: the other file kept`);
            assert.equal(await readFile(join(t.home(name), dir, "mine.txt"), "utf8"), name === "carol" ? "carol's" : "mine", `${name}: the source kept`);
            // A free name is renamed through the same call, and the session goes on.
            await hookedRename(() => undefined, null, async (calls) => {
              await raw.expect(`RNFR ${dir}mine.txt`, 350);
              await raw.expect(`RNTO ${dir}moved.txt`, 250);
              assert.equal(calls.n, 1);
            });
            assert.deepEqual((await readdir(join(t.home(name), dir))).sort(), ["moved.txt", "theirs.txt"]);
          } finally {
            await raw.close();
          }
        }
      },
      { users },
    );
  });

  void it("bad targets get a clear reply and move nothing: too long, a missing directory, outside the jail, through a link out, a temp file's name, a CR, a NUL; the session goes on", async () => {
    await withServer(
      async (t) => {
        const home = t.home("keeper");
        await writeFile(join(home, "a.txt"), "a");
        const outside = await mkdtemp(join(tmpdir(), "berth-rnto-out-"));
        await symlink(outside, join(home, "out"));
        const raw = await rawLogin(t, "keeper");
        try {
          const cases: [string, number][] = [
            [`RNTO ${"n".repeat(3000)}`, 553],
            ["RNTO missing/b.txt", 550],
            ["RNTO ../../../../etc/b.txt", 550],
            ["RNTO out/b.txt", 550],
            ["RNTO .berth-upload-0123456789abcdef", 553],
          ];
          for (const [line, code] of cases) {
            await raw.expect("RNFR a.txt", 350);
            await raw.expect(line, code);
          }
          for (const bad of ["RNTO b\rc.txt\r\n", "RNTO b\u0000c.txt\r\n"]) {
            await raw.expect("RNFR a.txt", 350);
            raw.sendRaw(bad);
            await raw.expectReply(501);
          }
          await raw.expect("NOOP", 200);
          assert.deepEqual((await readdir(home)).sort(), ["a.txt", "out"]);
          assert.equal(await readFile(join(home, "a.txt"), "utf8"), "a");
          assert.deepEqual(await readdir(outside), []);
        } finally {
          await raw.close();
          await rm(outside, { recursive: true, force: true });
        }
      },
      { users },
    );
  });

  void it("where the kernel or the filesystem lacks RENAME_NOREPLACE, or a seccomp filter refuses renameat2 (ENOSYS, EPERM), the plain rename is made, after the check", async () => {
    await withServer(
      async (t) => {
        await writeFile(join(t.home("keeper"), "a.txt"), "a");
        await writeFile(join(t.home("keeper"), "taken.txt"), "taken");
        const raw = await rawLogin(t, "keeper");
        try {
          for (const errno of [-38, -22, -1]) {
            await hookedRename(() => undefined, errno, async (calls) => {
              await raw.expect("RNFR a.txt", 350);
              await raw.expect(`RNTO b${-errno}.txt`, 250);
              assert.equal(calls.n, 1);
              await raw.expect(`RNFR b${-errno}.txt`, 350);
              await raw.expect("RNTO a.txt", 250);
            });
          }
          await raw.expect("RNFR a.txt", 350);
          await raw.expect("RNTO taken.txt", 550); // the check still refuses what is there
          assert.equal(await readFile(join(t.home("keeper"), "taken.txt"), "utf8"), "taken");
          assert.equal(await readFile(join(t.home("keeper"), "a.txt"), "utf8"), "a");
        } finally {
          await raw.close();
        }
      },
      { users },
    );
  });

  void it("a user with overwrite replaces the file at the new name, without the no-replace call", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "new.txt"), "new");
      await writeFile(join(t.home("alice"), "old.txt"), "old");
      const raw = await rawLogin(t);
      try {
        await hookedRename(() => undefined, null, async (calls) => {
          await raw.expect("RNFR new.txt", 350);
          await raw.expect("RNTO old.txt", 250);
          assert.equal(calls.n, 0);
        });
        assert.deepEqual(await readdir(t.home("alice")), ["old.txt"]);
        assert.equal(await readFile(join(t.home("alice"), "old.txt"), "utf8"), "new");
      } finally {
        await raw.close();
      }
    });
  });

  void it("while the disk is slow the no-replace rename runs on the thread pool: other sessions are answered meanwhile, and a file that appears at the new name is still kept", async () => {
    const b = renameBinding() as RenameBinding;
    const real = { now: b.renameNoReplace, later: b.renameNoReplaceAsync };
    const calls = { now: 0, later: 0 };
    let before: (to: string) => void = () => undefined;
    // A disk on which this rename takes 300 ms, made in whichever form berth calls it.
    b.renameNoReplace = (from, to) => {
      calls.now++;
      before(to);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
      return real.now(from, to);
    };
    b.renameNoReplaceAsync = async (from, to) => {
      calls.later++;
      before(to);
      await new Promise((r) => setTimeout(r, 300));
      return real.later(from, to);
    };
    try {
      await withServer(
        async (t) => {
          await writeFile(join(t.home("keeper"), "mine.txt"), "mine");
          const keeper = await rawLogin(t, "keeper");
          const other = await rawLogin(t);
          try {
            // The disk was found slow: file calls go to the thread pool (fs/quick.ts).
            backOff(60_000);
            await keeper.expect("RNFR mine.txt", 350);
            // Another session's command sent once the rename has begun (the server runs in this
            // process: a rename that holds its thread holds this test's client too).
            let noop: Promise<number> | null = null;
            before = () => {
              other.send("NOOP");
              noop = other.expectReply(200).then(() => performance.now());
            };
            await keeper.expect("RNTO moved.txt", 250);
            const renamedAt = performance.now();
            before = () => undefined;
            assert.ok(noop !== null, "the rename was made through the addon");
            const answeredAt = await (noop as Promise<number>);
            assert.ok(answeredAt < renamedAt - 150, `the NOOP was answered ${(answeredAt - renamedAt).toFixed(0)} ms after the RNTO, not while its rename ran`);
            assert.deepEqual(calls, { now: 0, later: 1 });
            // The pool's form keeps a file created at the new name after the check, as the other does.
            before = (to) => writeFileSync(to, "theirs", { flag: "wx" });
            await keeper.expect("RNFR moved.txt", 350);
            assert.match((await keeper.expect("RNTO theirs.txt", 550)).message, /File exists/);
            assert.equal(await readFile(join(t.home("keeper"), "theirs.txt"), "utf8"), "theirs");
            assert.equal(await readFile(join(t.home("keeper"), "moved.txt"), "utf8"), "mine");
          } finally {
            backOff(0);
            await keeper.close();
            await other.close();
          }
        },
        { users },
      );
    } finally {
      b.renameNoReplace = real.now;
      b.renameNoReplaceAsync = real.later;
    }
  });
});

void describe("per-directory permissions", () => {
  const carol = {
    name: "carol",
    password: "carol-pw",
    perms: ["list"] as Perm[],
    dirs: { "/in": ["list", "upload", "rename"], "/pub": ["list", "download", "rename"] } as Record<string, Perm[]>,
  };
  const drop = { name: "drop", password: "drop-pw", perms: [] as Perm[], dirs: { "/in": ["upload"] } as Record<string, Perm[]> };

  async function prepare(t: TestServer): Promise<void> {
    for (const d of ["in", "pub"]) await mkdir(join(t.home("carol"), d), { recursive: true });
    await writeFile(join(t.home("carol"), "pub", "p.txt"), "public");
    await writeFile(join(t.home("carol"), "top.txt"), "top");
    await mkdir(join(t.home("drop"), "in"), { recursive: true });
  }

  void it("upload only in /in, download only in /pub, and a rename across them", async () => {
    await withServer(
      async (t) => {
        await prepare(t);
        const client = await ftpLogin(t, "carol");
        try {
          await upload(client, "incoming", "/in/a.txt");
          await assert.rejects(upload(client, "x", "/pub/x.txt"), (e: FTPError) => e.code === 550);
          await assert.rejects(upload(client, "x", "/x.txt"), (e: FTPError) => e.code === 550);
          assert.equal((await download(client, "/pub/p.txt")).toString(), "public");
          await assert.rejects(download(client, "/in/a.txt"), (e: FTPError) => e.code === 550);
          await assert.rejects(download(client, "/top.txt"), (e: FTPError) => e.code === 550);
          // Rename needs rename in the source directory and in the target directory.
          await client.rename("/in/a.txt", "/pub/a.txt");
          assert.equal(await readFile(join(t.home("carol"), "pub", "a.txt"), "utf8"), "incoming");
          assert.equal((await download(client, "/pub/a.txt")).toString(), "incoming");
          await assert.rejects(client.rename("/pub/a.txt", "/a.txt"), (e: FTPError) => e.code === 550);
          await assert.rejects(client.rename("/top.txt", "/in/top.txt"), (e: FTPError) => e.code === 550);
          assert.equal(await readFile(join(t.home("carol"), "pub", "a.txt"), "utf8"), "incoming");
          assert.deepEqual((await client.list("/")).map((f) => f.name).sort(), ["in", "pub", "top.txt"]);
        } finally {
          client.close();
        }
      },
      { users: [carol, drop] },
    );
  });

  void it("a drop box: CWD works, listing and replacing do not", async () => {
    await withServer(
      async (t) => {
        await prepare(t);
        const raw = await rawLogin(t, "drop");
        try {
          await raw.expect("TYPE I", 200);
          await raw.expect("CWD /in", 250);
          await refusedData(raw, "LIST", /no list permission/);
          await okData(raw, "STOR letter.txt", "dear");
          await refusedData(raw, "STOR letter.txt", /no overwrite permission/);
          await refusedData(raw, "APPE letter.txt", /no overwrite permission/);
          await raw.expect("REST 2", 350);
          await refusedData(raw, "STOR letter.txt", /no overwrite permission/);
          await refusedData(raw, "RETR letter.txt", /no download permission/);
          await raw.expect("DELE letter.txt", 550);
          await raw.expect("CWD /", 250);
          await refusedData(raw, "STOR root.txt", /no upload permission/);
        } finally {
          await raw.close();
        }
        assert.equal(await readFile(join(t.home("drop"), "in", "letter.txt"), "utf8"), "dear");
      },
      { users: [carol, drop] },
    );
  });

  void it("a drop box: a file that appears between the check and the upload is not written to, by STOR or APPE", async () => {
    // Another session's upload lands after the permission check saw no file there.
    const racing: FsFactory = async (home, opts) => {
      const jail = await JailedFs.open(home, opts);
      const open = jail.openUpload.bind(jail);
      jail.openUpload = async (v, o) => {
        if (v.startsWith("/in/theirs-")) await writeFile(join(home, v), "theirs\n");
        return open(v, o);
      };
      return jail;
    };
    await withServer(
      async (t) => {
        await prepare(t);
        const raw = await rawLogin(t, "drop");
        try {
          await raw.expect("TYPE I", 200);
          await refusedData(raw, "STOR /in/theirs-stor.txt", /File exists/);
          await refusedData(raw, "APPE /in/theirs-appe.txt", /File exists/);
          await okData(raw, "APPE /in/mine.txt", "mine\n"); // a new file is still fine
        } finally {
          await raw.close();
        }
        const dir = join(t.home("drop"), "in");
        assert.equal(await readFile(join(dir, "theirs-stor.txt"), "utf8"), "theirs\n");
        assert.equal(await readFile(join(dir, "theirs-appe.txt"), "utf8"), "theirs\n");
        assert.equal(await readFile(join(dir, "mine.txt"), "utf8"), "mine\n");
      },
      { users: [carol, drop], openFs: racing },
    );
  });

  void it("a directory with permissions of its own, or one holding such a directory, cannot be renamed out from under them", async () => {
    // Everything in the home but a read-only /pub (and /a/ro below /a): renamed elsewhere, their
    // files would fall under the user's own permissions.
    const dave = readOnlyUser("pub");
    await withServer(
      async (t) => {
        const home = await readOnlyHome(t.home("dave"), "pub");
        await mkdir(join(home, "mine"));
        await writeFile(join(home, "pub", "keep.txt"), "keep");
        await writeFile(join(home, "a", "ro", "keep.txt"), "keep");
        const raw = await rawLogin(t, "dave");
        try {
          await raw.expect("DELE /pub/keep.txt", 550);
          for (const from of ["/pub", "pub/", "/a", "/a/ro"]) {
            const r = await raw.expect(`RNFR ${from}`, 550);
            assert.match(r.message, /permissions of its own/, from);
            await raw.expect("RNTO /moved", 503);
          }
          await raw.expect("MLST /pub", 250).then((r) => assert.match(r.lines[1] ?? "", /perm=eld;/));
          await raw.expect("MLST /a", 250).then((r) => assert.match(r.lines[1] ?? "", /perm=elcmpd;/));
          // A directory without permissions of its own still moves, into and out of the others.
          await raw.expect("RNFR /mine", 350);
          await raw.expect("RNTO /a/mine", 250);
          await raw.expect("DELE /pub/keep.txt", 550);
        } finally {
          await raw.close();
        }
        assert.equal(await readFile(join(home, "pub", "keep.txt"), "utf8"), "keep");
        assert.equal(await readFile(join(home, "a", "ro", "keep.txt"), "utf8"), "keep");
        assert.ok((await stat(join(home, "a", "mine"))).isDirectory());
      },
      { users: [dave] },
    );
  });

  void it("nothing is renamed onto a directory with permissions of its own, or onto one holding such a directory", async () => {
    // A directory moved over an empty read-only /pub (or to /a/ro's place, or to /a when it is
    // empty of files) would put its files under those permissions without upload there.
    const dave = readOnlyUser("pub");
    await withServer(
      async (t) => {
        const home = await readOnlyHome(t.home("dave"), "pub");
        await mkdir(join(home, "mine"));
        await writeFile(join(home, "mine", "planted.txt"), "planted");
        await writeFile(join(home, "f.txt"), "f");
        const raw = await rawLogin(t, "dave");
        try {
          for (const to of ["/pub", "pub/", "/a/ro", "/a"]) {
            await raw.expect("RNFR /mine", 350);
            assert.match((await raw.expect(`RNTO ${to}`, 550)).message, /permissions of its own/, to);
            await raw.expect("RNFR /f.txt", 350);
            assert.match((await raw.expect(`RNTO ${to}`, 550)).message, /permissions of its own/, to);
          }
          // Elsewhere, and into /a beside /a/ro, a directory still moves.
          await raw.expect("RNFR /mine", 350);
          await raw.expect("RNTO /a/mine", 250);
        } finally {
          await raw.close();
        }
        assert.deepEqual(await readdir(join(home, "pub")), []);
        assert.deepEqual((await readdir(join(home, "a"))).sort(), ["mine", "ro"]);
        assert.deepEqual(await readdir(join(home, "a", "ro")), []);
      },
      { users: [dave] },
    );
  });

  void it("a link the operator put in the home leads to the permissions of the directory it names", async () => {
    // Everything in the home but a read-only /ro (and /a/ro); /rolink leads to ro, /alink to a,
    // /kl to the file ro/keep.txt.
    // carol may only list at the top and upload in /in; /inlink leads to in.
    const dave = readOnlyUser("ro");
    await withServer(
      async (t) => {
        const home = await readOnlyHome(t.home("dave"), "ro");
        await writeFile(join(home, "ro", "keep.txt"), "keep");
        await symlink("ro", join(home, "rolink"));
        await symlink("a", join(home, "alink"));
        await symlink("ro/keep.txt", join(home, "kl"));
        await writeFile(join(home, "top.txt"), "top");
        await mkdir(join(t.home("carol"), "in"), { recursive: true });
        await symlink("in", join(t.home("carol"), "inlink"));
        const raw = await rawLogin(t, "dave");
        try {
          await raw.expect("TYPE I", 200);
          await raw.expect("DELE rolink/keep.txt", 550);
          await refusedData(raw, "STOR rolink/new.txt", /no upload permission/);
          await refusedData(raw, "APPE rolink/keep.txt", /no upload permission/);
          await raw.expect("MFMT 20200101000000 rolink/keep.txt", 550);
          await raw.expect("SITE CHMOD 777 rolink/keep.txt", 550);
          await raw.expect("MKD rolink/sub", 550);
          await raw.expect("RNFR rolink/keep.txt", 550);
          assert.match((await raw.expect("RNFR alink/ro", 550)).message, /permissions of its own/);
          assert.equal(await okData(raw, "RETR rolink/keep.txt"), "keep");
          // A link to a file: its bytes and its time are those of the file in /ro.
          await refusedData(raw, "STOR kl", /no upload permission/);
          await refusedData(raw, "APPE kl", /no upload permission/);
          await raw.expect("MFMT 20200101000000 kl", 550);
          await raw.expect("SITE UTIME 202001010000 kl", 550);
          assert.equal(await okData(raw, "RETR kl"), "keep");
          assert.match((await raw.expect("MLST kl", 250)).lines[1] ?? "", /;perm=rdf;/);
          const top = await okData(raw, "MLSD /");
          assert.match(top, /;perm=rdf;[^\r]* kl\r\n/, "a link to a file in /ro, listed");
          assert.match(top, /;perm=rawdf;[^\r]* top\.txt\r\n/, "a file of the top, listed");
          // The facts say the same: read only, in the listing and of the entry.
          assert.match(await okData(raw, "MLSD rolink"), /;perm=r;[^\r]* keep\.txt\r\n/);
          assert.match((await raw.expect("MLST rolink/keep.txt", 250)).lines[1] ?? "", /;perm=r;/);
          assert.match((await raw.expect("MLST rolink", 250)).lines[1] ?? "", /^ type=OS\.unix=symlink;.*;perm=df;/);
          assert.match(await okData(raw, "MLSD alink"), /;perm=eld;[^\r]* ro\r\n/);
          // From inside, by its relative names, too.
          await raw.expect("CWD /rolink", 250);
          await raw.expect("DELE keep.txt", 550);
          // Elsewhere nothing changed.
          await raw.expect("CWD /", 250);
          await okData(raw, "STOR mine.txt", "mine");
          await raw.expect("DELE mine.txt", 250);
          await raw.expect("DELE kl", 250); // the link itself, where it is
        } finally {
          await raw.close();
        }
        assert.equal(await readFile(join(home, "ro", "keep.txt"), "utf8"), "keep");
        assert.ok((await stat(join(home, "ro", "keep.txt"))).mtimeMs > Date.UTC(2021, 0, 1), "its time untouched");
        assert.deepEqual(await readdir(join(home, "ro")), ["keep.txt"]);
        assert.ok((await stat(join(home, "a", "ro"))).isDirectory());
        // And a link to a directory where more is allowed allows it.
        const c = await rawLogin(t, "carol");
        try {
          await c.expect("TYPE I", 200);
          await okData(c, "STOR inlink/x.txt", "x");
          await refusedData(c, "STOR x.txt", /no upload permission/);
          assert.match(await okData(c, "MLSD inlink"), /;perm=f;[^\r]* x\.txt\r\n/);
        } finally {
          await c.close();
        }
        assert.equal(await readFile(join(t.home("carol"), "in", "x.txt"), "utf8"), "x");
      },
      { users: [dave, carol] },
    );
  });

  void it("a directory of --dir-perms that is a link: its permissions apply where it leads, by the link's path and by the real one", async () => {
    // /pub=list,download, and /pub is a link to releases/2024; /in=upload for a user with no
    // permissions of their own, and /in is a link to spool/in.
    const erin = { name: "erin", password: "erin-pw", dirs: { "/pub": ["list", "download"] } as Record<string, Perm[]> };
    const drop = { name: "drop", password: "drop-pw", perms: [] as Perm[], dirs: { "/in": ["upload"] } as Record<string, Perm[]> };
    await withServer(
      async (t) => {
        const home = t.home("erin");
        await mkdir(join(home, "releases", "2024"), { recursive: true });
        await writeFile(join(home, "releases", "2024", "r.txt"), "release");
        await symlink("releases/2024", join(home, "pub"));
        await mkdir(join(t.home("drop"), "spool", "in"), { recursive: true });
        await symlink("spool/in", join(t.home("drop"), "in"));
        const raw = await rawLogin(t, "erin");
        try {
          await raw.expect("TYPE I", 200);
          for (const path of ["pub", "releases/2024"]) {
            await raw.expect(`DELE ${path}/r.txt`, 550);
            await raw.expect(`MKD ${path}/new`, 550);
            await refusedData(raw, `STOR ${path}/new.txt`, /no upload permission/);
            assert.equal(await okData(raw, `RETR ${path}/r.txt`), "release");
            assert.match(await okData(raw, `MLSD ${path}`), /;perm=r;[^\r]* r\.txt\r\n/);
          }
          // Moved away, its files would leave those permissions behind.
          assert.match((await raw.expect("RNFR releases", 550)).message, /permissions of its own/);
          assert.match((await raw.expect("RNFR releases/2024", 550)).message, /permissions of its own/);
        } finally {
          await raw.close();
        }
        assert.deepEqual(await readdir(join(home, "releases", "2024")), ["r.txt"]);
        const d = await rawLogin(t, "drop");
        try {
          await d.expect("TYPE I", 200);
          await okData(d, "STOR in/letter.txt", "dear");
        } finally {
          await d.close();
        }
        assert.equal(await readFile(join(t.home("drop"), "spool", "in", "letter.txt"), "utf8"), "dear");
      },
      { users: [erin, drop] },
    );
  });

  void it("a link that is a directory of --dir-perms has no f in its perm fact, since RNFR refuses it", async () => {
    // /pub=list,download is a link to releases/2024; /other, another link beside it, is renamed.
    const erin = { name: "erin", password: "erin-pw", dirs: { "/pub": ["list", "download"] } as Record<string, Perm[]> };
    await withServer(
      async (t) => {
        const home = t.home("erin");
        await mkdir(join(home, "releases", "2024"), { recursive: true });
        await symlink("releases/2024", join(home, "pub"));
        await symlink("releases", join(home, "other"));
        const raw = await rawLogin(t, "erin");
        try {
          const listed = await okData(raw, "MLSD /");
          assert.match(listed, /^type=OS\.unix=symlink;[^\r]*;perm=d;[^\r]* pub\r$/m);
          assert.match(listed, /^type=OS\.unix=symlink;[^\r]*;perm=df;[^\r]* other\r$/m);
          assert.match((await raw.expect("MLST pub", 250)).lines[1] ?? "", /;perm=d;/);
          assert.match((await raw.expect("RNFR pub", 550)).message, /permissions of its own/);
          await raw.expect("RNFR other", 350);
          await raw.expect("RNTO other2", 250);
        } finally {
          await raw.close();
        }
      },
      { users: [erin] },
    );
  });

  void it("MLSD of a directory near PATH_MAX still lists a link whose own path is longer than a path may be", async () => {
    const erin = { name: "erin", password: "erin-pw", dirs: { "/pub": ["list", "download"] } as Record<string, Perm[]> };
    await withServer(
      async (t) => {
        const home = t.home("erin");
        // Directories of 250 bytes down to a virtual path of 3765 bytes, and in it one of 140 (a
        // path of 3906) that holds a file and a link to it named with 250 bytes: the link's path
        // would be 4157 bytes. The link is made nearer the top and moved down, as a path that long
        // cannot be written.
        const names = Array.from({ length: 15 }, (_, i) => `${String.fromCharCode(97 + i)}`.repeat(250));
        const deep = join(home, ...names);
        await mkdir(deep, { recursive: true });
        const near = "n".repeat(140);
        await mkdir(join(home, near));
        await writeFile(join(home, near, "x.txt"), "x");
        await symlink("x.txt", join(home, near, "l".repeat(250)));
        await rename(join(home, near), join(deep, near));
        const raw = await rawLogin(t, "erin");
        try {
          const listed = await okData(raw, `MLSD /${names.join("/")}/${near}`);
          assert.match(listed, /;perm=[a-z]*;[^\r]* x\.txt\r$/m);
          // No command can name the link (its path is too long), so nothing may be done to it.
          assert.match(listed, new RegExp(`;perm=;[^\\r]* ${"l".repeat(250)}\\r$`, "m"));
        } finally {
          await raw.close();
          // Moved up again, so that the home can be removed by its paths.
          await rename(join(deep, near), join(home, near));
        }
      },
      { users: [erin] },
    );
  });

  void it("MLSD shows perm facts of what the user may do", async () => {
    await withServer(
      async (t) => {
        await prepare(t);
        await writeFile(join(t.home("carol"), "in", "a.txt"), "a");
        const raw = await rawLogin(t, "carol");
        try {
          const facts = (text: string): Record<string, string> =>
            Object.fromEntries(
              text
                .trim()
                .split("\r\n")
                .map((l) => [l.slice(l.indexOf(" ") + 1), /perm=([a-z]*);/.exec(l)?.[1] ?? "?"]),
            );
          assert.deepEqual(facts(await okData(raw, "MLSD /")), { in: "elc", pub: "el", "top.txt": "" });
          assert.deepEqual(facts(await okData(raw, "MLSD /in")), { "a.txt": "f" });
          assert.deepEqual(facts(await okData(raw, "MLSD /pub")), { "p.txt": "rf" });
          const r = await raw.expect("MLST /pub/p.txt", 250);
          assert.match(r.lines[1] ?? "", /perm=rf;/);
        } finally {
          await raw.close();
        }
      },
      { users: [carol, drop] },
    );
  });
});

void describe("hidden and denied names", () => {
  const config = { storage: { hide: ".*, *.part", deny: "*.exe" } };

  void it("hidden entries are not listed and not found; denied names are refused", async () => {
    await withServer(
      async (t) => {
        const home = t.home("alice");
        await writeFile(join(home, ".secret"), "s");
        await writeFile(join(home, "a.part"), "p");
        await writeFile(join(home, "ok.txt"), "ok");
        await writeFile(join(home, "bad.exe"), "mz");
        await mkdir(join(home, ".hdir"));
        await writeFile(join(home, ".hdir", "inner.txt"), "i");
        const raw = await rawLogin(t);
        try {
          assert.deepEqual((await okData(raw, "NLST")).trim().split("\r\n").sort(), ["bad.exe", "ok.txt"]);
          const list = await okData(raw, "LIST -a");
          assert.doesNotMatch(list, /secret|a\.part|hdir/);
          const mlsd = await okData(raw, "MLSD");
          assert.doesNotMatch(mlsd, /secret|a\.part|hdir/);
          // The perm fact of a denied name: neither read nor written, only deleted or renamed away.
          assert.match(mlsd, /;perm=df;[^\r]* bad\.exe\r\n/);
          assert.match(mlsd, /;perm=rawdf;[^\r]* ok\.txt\r\n/);
          assert.match((await raw.expect("MLST bad.exe", 250)).lines[1] ?? "", /;perm=df;/);
          for (const line of ["RETR .secret", "RETR .hdir/inner.txt", "LIST .hdir", "MLSD .hdir"]) {
            await refusedData(raw, line, /^No such file or directory$/);
          }
          for (const line of ["SIZE a.part", "MDTM .secret", "CWD .hdir", "MLST .secret", "DELE .secret", "RNFR a.part", "STAT .hdir"]) {
            const r = await raw.expect(line, 550);
            assert.match(r.message, /No such file or directory/, line);
          }
          for (const line of ["STOR x.part", "STOR y.exe", "STOR .dot", "APPE z.exe", "RETR bad.exe"]) {
            await refusedData(raw, line, /^Permission denied: name not allowed$/);
          }
          await raw.expect("MKD new.exe", 550);
          await raw.expect("MKD .newdir", 550);
          await raw.expect("RNFR ok.txt", 350);
          await raw.expect("RNTO ok.exe", 550);
          await raw.expect("RNFR ok.txt", 350);
          await raw.expect("RNTO .ok", 550);
          await raw.expect("DELE bad.exe", 250); // a denied name can still be removed
          assert.equal(await okData(raw, "RETR ok.txt"), "ok");
        } finally {
          await raw.close();
        }
        assert.equal(await readFile(join(home, ".secret"), "utf8"), "s");
        assert.equal(await readFile(join(home, "ok.txt"), "utf8"), "ok");
      },
      { config },
    );
  });
});

void describe("STOU's names and the name rules", () => {
  void it("a name STOU makes is never a hidden or denied one: it skips them, or refuses when every one would be", async () => {
    await withServer(
      async (t) => {
        const home = t.home("alice");
        await writeFile(join(home, "up"), "taken");
        await writeFile(join(home, "photo.jpg"), "taken");
        const raw = await rawLogin(t);
        try {
          const data = await raw.pasv();
          raw.send("STOU up");
          // up.1 would be hidden (*.1): the next free name that is neither.
          assert.match((await raw.expectReply(150)).message, /FILE: up\.2$/);
          await writeAll(data, "unique");
          await raw.expectReply(226);
          assert.equal(await readFile(join(home, "up.2"), "utf8"), "unique");
          // Every name after photo.jpg has a second extension (denied: *.*.*), the random one too.
          await refusedData(raw, "STOU photo.jpg", /^Permission denied: name not allowed$/);
          assert.deepEqual((await readdir(home)).sort(), ["photo.jpg", "up", "up.2"]);
          await raw.expect("NOOP", 200);
        } finally {
          await raw.close();
        }
      },
      { config: { storage: { hide: "*.1", deny: "*.*.*" } } },
    );
  });
});

void describe("names with pattern characters", () => {
  void it("a hidden directory or one without list permission whose name holds *, ? or [ is not listed by that name", async () => {
    const eve = { name: "eve", password: "eve-pw", dirs: { "/Archive [2019]": [] } as Record<string, Perm[]> };
    await withServer(
      async (t) => {
        await mkdir(join(t.home("alice"), ".trash [old]"), { recursive: true });
        await writeFile(join(t.home("alice"), ".trash [old]", "secret.txt"), "s");
        await mkdir(join(t.home("alice"), "photos [2019]"), { recursive: true });
        await writeFile(join(t.home("alice"), "photos [2019]", "a.jpg"), "a");
        await mkdir(join(t.home("eve"), "Archive [2019]"), { recursive: true });
        await writeFile(join(t.home("eve"), "Archive [2019]", "private.txt"), "p");
        await writeFile(join(t.home("eve"), "Archive 1"), "1");
        const raw = await rawLogin(t);
        try {
          for (const line of ["LIST .trash [old]", "NLST .trash [old]", "LIST -d .trash [old]", "LIST -a .trash*"]) {
            if (line.endsWith("*")) assert.equal(await okData(raw, line), "", line);
            else await refusedData(raw, line, /^No such file or directory$/);
          }
          assert.match((await raw.expect("STAT .trash [old]", 550)).message, /^No such file or directory$/);
          // A visible one is listed by its name, and a pattern still picks.
          assert.match(await okData(raw, "LIST photos [2019]"), /a\.jpg/);
          assert.equal(await okData(raw, "NLST photos*"), "photos [2019]\r\n");
        } finally {
          await raw.close();
        }
        const e = await rawLogin(t, "eve");
        try {
          for (const line of ["LIST Archive [2019]", "NLST Archive [2019]", "LIST -d Archive [2019]"]) {
            await refusedData(e, line, /no list permission/);
          }
          assert.match((await e.expect("STAT Archive [2019]", 550)).message, /no list permission/);
          assert.equal(await okData(e, "NLST Archive ?"), "Archive 1\r\n", "the pattern picks from /, where listing is allowed");
        } finally {
          await e.close();
        }
      },
      { config: { storage: { hide: ".*" } }, users: [eve] },
    );
  });
});

void describe("anonymous login", () => {
  const anonymous = { name: "anonymous", password: "real-anon-pw" };

  void it("is off by default: anonymous is just a user name", async () => {
    await withServer(
      async (t) => {
        const raw = await RawClient.connect(t.port);
        try {
          await raw.expect("USER ftp", 331);
          await raw.expect("PASS guest@example.com", 530);
          await raw.login("anonymous", "real-anon-pw");
          await raw.expect("PWD", 257);
        } finally {
          await raw.close();
        }
      },
      { users: [anonymous] },
    );
  });

  void it("when enabled: any password, jailed to its root, read-only by default; the password is never logged", async () => {
    await withServer(
      async (t) => {
        const root = join(t.dataRoot, "anonymous");
        await mkdir(join(root, "incoming"), { recursive: true });
        await writeFile(join(root, "readme.txt"), "welcome");
        for (const name of ["anonymous", "FTP"]) {
          const raw = await RawClient.connect(t.port);
          try {
            await raw.expect(`USER ${name}`, 331);
            await raw.expect("PASS secret-mail@example.com", 230);
            assert.match(await okData(raw, "NLST"), /readme\.txt/);
            assert.equal(await okData(raw, "RETR readme.txt"), "welcome");
            await refusedData(raw, "STOR x.txt", /no upload permission/);
            await okData(raw, `STOR incoming/${name}.txt`, "dropped");
            await raw.expect("DELE readme.txt", 550);
          } finally {
            await raw.close();
          }
        }
        assert.equal(await readFile(join(root, "incoming", "FTP.txt"), "utf8"), "dropped");
        assert.ok(t.logs.some((l) => l.event === "login" && l.anonymous === true));
        assert.ok(!JSON.stringify(t.logs).includes("secret-mail"), "the password is not logged");
      },
      { users: [anonymous], config: { anonymous: { enabled: true, dirPerms: "/incoming=upload" } } },
    );
  });
});

void describe("storage.umask", () => {
  void it("sets the mode of uploaded files, replaced files and created directories", async () => {
    await withServer(
      async (t) => {
        const home = t.home("alice");
        const raw = await rawLogin(t);
        try {
          await okData(raw, "STOR a.txt", "a");
          await okData(raw, "STOR a.txt", "replaced via a temp file");
          await okData(raw, "APPE b.txt", "b");
          await okData(raw, "STOU", "u");
          await raw.expect("MKD d", 257);
        } finally {
          await raw.close();
        }
        const mode = async (p: string): Promise<number> => (await stat(join(home, p))).mode & 0o777;
        assert.equal(await mode("a.txt"), 0o640);
        assert.equal(await mode("b.txt"), 0o640);
        assert.equal(await mode("file"), 0o640);
        assert.equal(await mode("d"), 0o750);
      },
      { config: { storage: { umask: "027" } } },
    );
  });
});

/** dave: every permission in the home but in a read-only /`top` (list, download) and /a/ro (list). */
function readOnlyUser(top: string): { name: string; password: string; dirs: Record<string, Perm[]> } {
  return { name: "dave", password: "dave-pw", dirs: { [`/${top}`]: ["list", "download"], "/a/ro": ["list"] } };
}

/** Makes readOnlyUser's `top` and a/ro in `home`; returns `home`. */
async function readOnlyHome(home: string, top: string): Promise<string> {
  await mkdir(join(home, top), { recursive: true });
  await mkdir(join(home, "a", "ro"), { recursive: true });
  return home;
}
