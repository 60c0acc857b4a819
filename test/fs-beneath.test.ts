/**
 * Opens below the jail's root held open (fs/beneath.ts, native/beneath.c): what the kernel call
 * refuses, that the jail's common operations take the shortcut and give the answers of the way
 * through fs/pin.ts (links inside followed, links out refused), and that the root's descriptor is
 * shared by the sessions of one home, follows a home replaced on disk and is closed with the last
 * session. test/fs-by-path.test.ts runs the jail's suites with the shortcut off.
 */
import assert from "node:assert/strict";
import { closeSync, constants, existsSync, fstatSync, openSync, readdirSync, readFileSync, statSync, symlinkSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rename, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { Writable } from "node:stream";
import { after, afterEach, before, describe, it } from "node:test";
import { beneathNow, heldRoots, holdRoot, releaseRoot, setBeneathForTest } from "../src/fs/beneath.ts";
import { JailedFs } from "../src/fs/jail.ts";
import { holdTarget, pinParent } from "../src/fs/pin.ts";
import { O_PATH } from "../src/fs/quick.ts";
import type { VirtualPath } from "../src/fs/types.ts";
import { resolveVirtual, ROOT } from "../src/fs/vpath.ts";
import { FtpError } from "../src/protocol/errors.ts";
import { beneathBinding, createBeneathBinding, type BeneathBinding, type CreateBeneathBinding } from "../src/native.ts";
import { setTimeout as sleep } from "node:timers/promises";
import type { FsFactory } from "../src/protocol/context.ts";
import { RawClient, storeCode } from "./helpers/raw.ts";
import { ftpLogin, rawLogin, withServer } from "./helpers/run.ts";
import { openFds, waitFor } from "./helpers/server.ts";

const binding = beneathBinding();
const createBinding = createBeneathBinding();
const skip = (binding === null || createBinding === null || !beneathNow()) && "openat2 not available here (addon not built, or kernel before 5.6)";
const vp = (arg: string): VirtualPath => resolveVirtual(ROOT, arg);
const ENOENT = -2;
const EINVAL = -22;
const ELOOP = -40;
const EXDEV = -18;
const EEXIST = -17;

let base: string;
before(async () => {
  base = await mkdtemp(path.join(tmpdir(), "beneath-"));
});
after(async () => {
  await rm(base, { recursive: true, force: true });
});

/** Counts the addon's openBeneath and createBeneath calls and what they returned while `body`
 * runs. */
async function counting<T>(body: () => Promise<T>): Promise<{ result: T; calls: number[]; creates: number[] }> {
  const b = binding as BeneathBinding;
  const c = createBinding as CreateBeneathBinding;
  const real = b.openBeneath;
  const realCreate = c.createBeneath;
  const calls: number[] = [];
  const creates: number[] = [];
  b.openBeneath = (dir, p, flags) => {
    const fd = real(dir, p, flags);
    calls.push(fd);
    return fd;
  };
  c.createBeneath = (dir, p, flags, mode) => {
    const fd = realCreate(dir, p, flags, mode);
    creates.push(fd);
    return fd;
  };
  try {
    return { result: await body(), calls, creates };
  } finally {
    b.openBeneath = real;
    c.createBeneath = realCreate;
  }
}

async function refused(p: Promise<unknown>): Promise<void> {
  await assert.rejects(p, (err: unknown) => err instanceof FtpError && err.code === 550 && !err.message.includes(base));
}

void describe("openBeneath: openat2 below a directory, no link and no way up", { skip }, () => {
  let dir: string;
  let fd: number;
  before(async () => {
    dir = path.join(base, "raw");
    await mkdir(path.join(dir, "d"), { recursive: true });
    await writeFile(path.join(dir, "d", "f"), "inside");
    await symlink("f", path.join(dir, "d", "link-in"));
    await symlink("/etc", path.join(dir, "abs"));
    fd = openSync(dir, O_PATH | constants.O_DIRECTORY);
  });
  after(() => closeSync(fd));
  const b = (): BeneathBinding => binding as BeneathBinding;

  void it("opens a plain path below the directory, close-on-exec", () => {
    const f = b().openBeneath(fd, "d/f", constants.O_RDONLY);
    assert.ok(f >= 0, `errno ${-f}`);
    try {
      assert.equal(readFileSync(f, "utf8"), "inside");
      const flags = /flags:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${f}`, "utf8"))?.[1];
      assert.ok(flags !== undefined && (parseInt(flags, 8) & constants.O_NONBLOCK) === 0);
      assert.ok((parseInt(flags, 8) & 0o2000000) !== 0, "O_CLOEXEC missing");
    } finally {
      closeSync(f);
    }
    const d = b().openBeneath(fd, ".", O_PATH | constants.O_DIRECTORY);
    assert.ok(d >= 0);
    assert.equal(fstatSync(d).ino, statSync(dir).ino);
    closeSync(d);
  });

  void it("refuses a symlink anywhere on the way, even one that stays inside", () => {
    assert.equal(b().openBeneath(fd, "d/link-in", constants.O_RDONLY), ELOOP);
    assert.equal(b().openBeneath(fd, "abs/passwd", constants.O_RDONLY), ELOOP);
  });

  void it("refuses a way up or an absolute path", () => {
    assert.equal(b().openBeneath(fd, "../raw/d/f", constants.O_RDONLY), EXDEV);
    assert.equal(b().openBeneath(fd, "d/../../raw/d/f", constants.O_RDONLY), EXDEV);
    assert.equal(b().openBeneath(fd, "/etc/passwd", constants.O_RDONLY), EXDEV);
  });

  void it("answers a missing name, a NUL inside a name and O_CREAT clearly", () => {
    assert.equal(b().openBeneath(fd, "d/missing", constants.O_RDONLY), ENOENT);
    assert.equal(b().openBeneath(fd, "d/f\0x", constants.O_RDONLY), EINVAL);
    assert.throws(() => b().openBeneath(fd, "d/new", constants.O_CREAT | constants.O_WRONLY), TypeError);
  });

  void it("createBeneath makes a new file with the mode given, close-on-exec, and nothing else", () => {
    const c = createBinding as CreateBeneathBinding;
    const { O_CREAT, O_EXCL, O_WRONLY, O_NOFOLLOW, O_NONBLOCK } = constants;
    const NEW = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_NONBLOCK;
    const f = c.createBeneath(fd, "d/made", NEW, 0o600);
    assert.ok(f >= 0, `errno ${-f}`);
    try {
      const st = fstatSync(f);
      assert.ok(st.isFile());
      assert.equal(st.size, 0);
      assert.equal(st.mode & 0o777, 0o600);
      assert.equal(st.ino, statSync(path.join(dir, "d", "made")).ino);
      const flags = /flags:\s+(\d+)/.exec(readFileSync(`/proc/self/fdinfo/${f}`, "utf8"))?.[1];
      assert.ok(flags !== undefined && (parseInt(flags, 8) & 0o2000000) !== 0, "O_CLOEXEC missing");
    } finally {
      closeSync(f);
    }
    // A name already there: a file, a symlink inside, a symlink out (not followed: nothing is made
    // where it points), a directory.
    assert.equal(c.createBeneath(fd, "d/f", NEW, 0o644), EEXIST);
    assert.equal(c.createBeneath(fd, "d/link-in", NEW, 0o644), EEXIST);
    assert.equal(c.createBeneath(fd, "d", NEW, 0o644), EEXIST);
    symlinkSync(path.join(base, "made-outside"), path.join(dir, "d", "link-out"));
    assert.equal(c.createBeneath(fd, "d/link-out", NEW, 0o644), EEXIST);
    assert.equal(existsSync(path.join(base, "made-outside")), false);
    assert.equal(readFileSync(path.join(dir, "d", "f"), "utf8"), "inside");
    // A link on the way, a way up, an absolute path, a missing directory, a NUL.
    assert.equal(c.createBeneath(fd, "abs/new", NEW, 0o644), ELOOP);
    assert.equal(c.createBeneath(fd, "../new", NEW, 0o644), EXDEV);
    assert.equal(c.createBeneath(fd, "/tmp/new", NEW, 0o644), EXDEV);
    assert.equal(c.createBeneath(fd, "nodir/new", NEW, 0o644), ENOENT);
    assert.equal(c.createBeneath(fd, "d/n\0x", NEW, 0o644), EINVAL);
    assert.equal(existsSync(path.join(base, "new")), false);
    // Only exclusive creates, and only with a mode.
    assert.throws(() => c.createBeneath(fd, "d/x", O_WRONLY | O_CREAT, 0o644), TypeError);
    assert.throws(() => c.createBeneath(fd, "d/x", O_WRONLY, 0o644), TypeError);
    assert.throws(() => (c.createBeneath as (...a: unknown[]) => number)(fd, "d/x", NEW), TypeError);
    for (const mode of [0o170000, -1, 2 ** 32 + 0o644, 0.5, NaN]) assert.throws(() => c.createBeneath(fd, "d/x", NEW, mode), TypeError, String(mode));
    assert.equal(existsSync(path.join(dir, "d", "x")), false);
  });
});

void describe("the jail takes the shortcut, with the answers of its other way", { skip }, () => {
  let jail: JailedFs;
  let outside: string;
  before(async () => {
    const home = path.join(base, "home1");
    outside = path.join(base, "outside1");
    await mkdir(path.join(home, "a"), { recursive: true });
    await mkdir(outside);
    await writeFile(path.join(home, "a", "b.txt"), "bee");
    await writeFile(path.join(outside, "secret.txt"), "secret");
    await symlink("a/b.txt", path.join(home, "in"));
    await symlink(path.join(home, "a"), path.join(home, "abs-in"));
    await symlink(path.join(outside, "secret.txt"), path.join(home, "out"));
    await symlink(outside, path.join(home, "out-dir"));
    jail = await JailedFs.open(home);
  });
  after(() => jail.close());
  afterEach(() => {
    setBeneathForTest(undefined);
    beneathNow(); // found out again here, not inside a count
  });

  async function read(v: string): Promise<string> {
    const dl = await jail.openDownload(vp(v));
    try {
      const buf = Buffer.alloc(dl.size);
      await dl.handle.read(buf, 0, dl.size, 0);
      return buf.toString();
    } finally {
      await dl.handle.close();
    }
  }

  void it("a download, a stat, a listing and an upload each open once below the root", async () => {
    const dl = await counting(() => read("/a/b.txt"));
    assert.equal(dl.result, "bee");
    assert.equal(dl.calls.length, 1);
    assert.ok(dl.calls[0]! >= 0);
    const st = await counting(() => jail.stat(vp("/a/b.txt")));
    assert.equal(st.result.size, 3);
    assert.deepEqual(st.calls.length, 1);
    const ls = await counting(() => jail.list(vp("/a")));
    assert.deepEqual(
      ls.result.map((e) => e.name),
      ["b.txt"],
    );
    assert.equal(ls.calls.length, 1);
    const fds = openFds();
    const up = await counting(async () => {
      const u = await jail.openUpload(vp("/a/new.txt"), { kind: "store", offset: 0, exclusive: false });
      await u.handle.write(Buffer.from("new"), 0, 3, 0);
      await u.commit();
    });
    // A new file: created in one call, nothing else opened, nothing left open.
    assert.deepEqual(up.calls, []);
    assert.equal(up.creates.length, 1);
    assert.ok(up.creates[0]! >= 0);
    assert.equal(openFds(), fds);
    assert.equal(await readFile(path.join(jail.root, "a", "new.txt"), "utf8"), "new");
    // Replacing it: the create says EEXIST, and the directory is held for the temp file's way.
    const again = await counting(async () => {
      const u = await jail.openUpload(vp("/a/new.txt"), { kind: "store", offset: 0, exclusive: false });
      await u.handle.write(Buffer.from("newer"), 0, 5, 0);
      await u.commit();
    });
    assert.deepEqual(again.creates, [EEXIST]);
    assert.ok(again.calls.length >= 1 && again.calls.every((fd) => fd >= 0), `calls ${JSON.stringify(again.calls)}`);
    assert.equal(openFds(), fds);
    assert.equal(await readFile(path.join(jail.root, "a", "new.txt"), "utf8"), "newer");
  });

  void it("a new file's upload undone removes its own file where it is now, inside the jail, and nothing else", async () => {
    const store = { kind: "store", offset: 0, exclusive: false } as const;
    const fds = openFds();
    // Aborted before any byte: the empty file goes.
    const a = await jail.openUpload(vp("/a/gone.txt"), store);
    await a.abort();
    assert.equal(existsSync(path.join(jail.root, "a", "gone.txt")), false);
    // Aborted with bytes: kept, for REST+STOR or APPE.
    const p = await jail.openUpload(vp("/a/part.txt"), store);
    await p.handle.write(Buffer.from("part"), 0, 4, 0);
    await p.abort();
    assert.equal(await readFile(path.join(jail.root, "a", "part.txt"), "utf8"), "part");
    // Rolled back: removed, bytes and all.
    const r = await jail.openUpload(vp("/a/back.txt"), store);
    await r.handle.write(Buffer.from("back"), 0, 4, 0);
    await r.rollback();
    assert.equal(existsSync(path.join(jail.root, "a", "back.txt")), false);
    // Rolled back after another file took its name: that file stays.
    const o = await jail.openUpload(vp("/a/other.txt"), store);
    await rm(path.join(jail.root, "a", "other.txt"));
    await writeFile(path.join(jail.root, "a", "other.txt"), "someone else's");
    await o.rollback();
    assert.equal(await readFile(path.join(jail.root, "a", "other.txt"), "utf8"), "someone else's");
    // Its directory moved meanwhile: the file is removed where it went with it (a rollback by the
    // quota leaves no bytes behind), and a file put at the old path meanwhile stays.
    await mkdir(path.join(jail.root, "m"));
    const m = await jail.openUpload(vp("/m/moved.txt"), store);
    await m.handle.write(Buffer.from("moved"), 0, 5, 0);
    await rename(path.join(jail.root, "m"), path.join(jail.root, "m2"));
    await mkdir(path.join(jail.root, "m"));
    await writeFile(path.join(jail.root, "m", "moved.txt"), "someone else's");
    await m.rollback();
    assert.equal(existsSync(path.join(jail.root, "m2", "moved.txt")), false);
    assert.equal(await readFile(path.join(jail.root, "m", "moved.txt"), "utf8"), "someone else's");
    await rm(path.join(jail.root, "m"), { recursive: true });
    // ... and with a link out of the jail put at the directory's old path, nothing outside is
    // touched: the empty file is removed where it is now.
    await writeFile(path.join(outside, "moved.txt"), "");
    await symlink(outside, path.join(jail.root, "m"));
    await mkdir(path.join(jail.root, "n"));
    const n = await jail.openUpload(vp("/n/moved.txt"), store);
    await rename(path.join(jail.root, "n"), path.join(jail.root, "n2"));
    await symlink(outside, path.join(jail.root, "n"));
    await n.abort();
    assert.equal(existsSync(path.join(outside, "moved.txt")), true);
    assert.equal(existsSync(path.join(jail.root, "n2", "moved.txt")), false);
    // Its directory moved out of the jail (by someone on the machine): nothing is removed there.
    await mkdir(path.join(jail.root, "o"));
    const q = await jail.openUpload(vp("/o/out.txt"), store);
    await rename(path.join(jail.root, "o"), path.join(outside, "o"));
    await q.abort();
    assert.equal(existsSync(path.join(outside, "o", "out.txt")), true);
    assert.equal(openFds(), fds);
  });

  void it("an upload undone follows its own file renamed meanwhile, inside the jail, by either way and for every kind", async () => {
    const store = { kind: "store", offset: 0, exclusive: false } as const;
    const append = { kind: "append", offset: 0, exclusive: false } as const;
    const at = (...p: string[]): string => path.join(jail.root, ...p);
    const fds = openFds();
    for (const shortcut of [true, false]) {
      if (!shortcut) setBeneathForTest(false);
      await mkdir(at("r"));
      await mkdir(at("r2"));
      // A new file rolled back after another session renamed it: removed under its new name, and
      // a file put at its old name meanwhile stays.
      const n = await jail.openUpload(vp("/r/new.txt"), store);
      await n.handle.write(Buffer.from("new"), 0, 3, 0);
      await rename(at("r", "new.txt"), at("r", "renamed.txt"));
      await writeFile(at("r", "new.txt"), "someone else's");
      await n.rollback();
      assert.deepEqual(readdirSync(at("r")), ["new.txt"], `shortcut ${shortcut}`);
      assert.equal(await readFile(at("r", "new.txt"), "utf8"), "someone else's");
      // ... renamed into another directory: removed there.
      const d = await jail.openUpload(vp("/r/far.txt"), store);
      await d.handle.write(Buffer.from("far"), 0, 3, 0);
      await rename(at("r", "far.txt"), at("r2", "far-away.txt"));
      await d.rollback();
      assert.deepEqual(readdirSync(at("r2")), [], `shortcut ${shortcut}`);
      // Aborted empty after a rename: removed; aborted with bytes: kept, under its new name.
      const e = await jail.openUpload(vp("/r/empty.txt"), store);
      await rename(at("r", "empty.txt"), at("r", "empty2.txt"));
      await e.abort();
      assert.equal(existsSync(at("r", "empty2.txt")), false);
      const k = await jail.openUpload(vp("/r/kept.txt"), store);
      await k.handle.write(Buffer.from("kept"), 0, 4, 0);
      await rename(at("r", "kept.txt"), at("r", "kept2.txt"));
      await k.abort();
      assert.equal(await readFile(at("r", "kept2.txt"), "utf8"), "kept");
      // APPE to a file that was there, rolled back after a rename: cut back to what it had.
      await writeFile(at("r", "log.txt"), "old");
      const a = await jail.openUpload(vp("/r/log.txt"), append);
      await a.handle.write(Buffer.from("more"), 0, 4, 3);
      await rename(at("r", "log.txt"), at("r2", "log2.txt"));
      await a.rollback();
      assert.equal(await readFile(at("r2", "log2.txt"), "utf8"), "old");
      // APPE that made the file: removed under its new name.
      const c = await jail.openUpload(vp("/r/made.txt"), append);
      await c.handle.write(Buffer.from("made"), 0, 4, 0);
      await rename(at("r", "made.txt"), at("r", "made2.txt"));
      await c.rollback();
      assert.equal(existsSync(at("r", "made2.txt")), false);
      // REST 2 + STOR: cut back to the offset under its new name.
      await writeFile(at("r", "rest.txt"), "abcdef");
      const r = await jail.openUpload(vp("/r/rest.txt"), { kind: "store", offset: 2, exclusive: false });
      await r.handle.write(Buffer.from("XYZW"), 0, 4, 2);
      await rename(at("r", "rest.txt"), at("r", "rest2.txt"));
      await r.rollback();
      assert.equal(await readFile(at("r", "rest2.txt"), "utf8"), "ab");
      // Renamed, then someone else's file put at the new name: that file is not touched.
      const o = await jail.openUpload(vp("/r/swap.txt"), store);
      await o.handle.write(Buffer.from("swap"), 0, 4, 0);
      await rename(at("r", "swap.txt"), at("r", "swap2.txt"));
      await writeFile(at("r", "swap3.txt"), "someone else's");
      await rename(at("r", "swap3.txt"), at("r", "swap2.txt"));
      await o.rollback();
      assert.equal(await readFile(at("r", "swap2.txt"), "utf8"), "someone else's");
      // Renamed out of the jail (by someone on the machine): nothing outside is removed or cut.
      const x = await jail.openUpload(vp("/r/out.txt"), store);
      await x.handle.write(Buffer.from("out"), 0, 3, 0);
      await rename(at("r", "out.txt"), path.join(outside, `out-${shortcut}.txt`));
      await x.rollback();
      assert.equal(await readFile(path.join(outside, `out-${shortcut}.txt`), "utf8"), "out");
      await writeFile(at("r", "log3.txt"), "old");
      const y = await jail.openUpload(vp("/r/log3.txt"), append);
      await y.handle.write(Buffer.from("more"), 0, 4, 3);
      await rename(at("r", "log3.txt"), path.join(outside, `log3-${shortcut}.txt`));
      await y.rollback();
      assert.equal(await readFile(path.join(outside, `log3-${shortcut}.txt`), "utf8"), "oldmore");
      await rm(at("r"), { recursive: true });
      await rm(at("r2"), { recursive: true });
    }
    assert.equal(openFds(), fds);
  });

  void it("a link inside the jail is refused by the shortcut and followed by the other way", async () => {
    for (const v of ["/in", "/abs-in/b.txt"]) {
      const { result, calls } = await counting(() => read(v));
      assert.equal(result, "bee", v);
      // The path itself fails with ELOOP; the other way then opens what it can below the root
      // (the directories before the link), and a link fails the same way there.
      assert.equal(calls[0], ELOOP, v);
      assert.ok(calls.every((fd) => fd >= 0 || fd === ELOOP), `${v}: ${JSON.stringify(calls)}`);
    }
    const { result } = await counting(() => jail.stat(vp("/abs-in")));
    assert.equal(result.type, "dir");
  });

  void it("a link out of the jail is refused by both", async () => {
    for (const v of ["/out", "/out-dir/secret.txt"]) {
      const { calls } = await counting(() => refused(jail.openDownload(vp(v))));
      assert.equal(calls[0], ELOOP, v);
      assert.ok(calls.every((fd) => fd >= 0 || fd === ELOOP), `${v}: ${JSON.stringify(calls)}`);
      await refused(jail.stat(vp(v)));
    }
  });

  void it("switched off, nothing opens below the root and the answers are the same", async () => {
    setBeneathForTest(false);
    const { result, calls } = await counting(async () => [await read("/a/b.txt"), await read("/in"), (await jail.stat(vp("/a"))).type]);
    assert.deepEqual(result, ["bee", "bee", "dir"]);
    assert.deepEqual(calls, []);
    await refused(jail.openDownload(vp("/out")));
  });

  void it("pinParent and holdTarget of the root itself", async () => {
    const t = await holdTarget(jail.root, ROOT);
    assert.ok(t.stats.isDirectory());
    t.release();
    const p = await pinParent(jail.root, vp("/a"));
    assert.ok(p !== null);
    assert.equal(p.name, "a");
    assert.equal(p.dir.real, jail.root);
    p.dir.release();
  });
});

void describe("the root held open", { skip }, () => {
  void it("is one descriptor for the jails of one home, closed with the last", async () => {
    const home = path.join(base, "home2");
    const fds = openFds();
    const roots = heldRoots();
    const a = await JailedFs.open(home); // created by this first login
    const b = await JailedFs.open(home);
    assert.equal(heldRoots(), roots + 1);
    assert.equal(openFds(), fds + 1);
    a.close();
    a.close(); // harmless twice
    assert.equal(heldRoots(), roots + 1);
    assert.equal((await b.stat(ROOT)).type, "dir");
    b.close();
    assert.equal(heldRoots(), roots);
    assert.equal(openFds(), fds);
    // A closed jail still answers, by its paths.
    await writeFile(path.join(home, "f"), "x");
    assert.equal((await b.stat(vp("/f"))).size, 1);
  });

  void it("is not taken for a home whose path now leads elsewhere", async () => {
    const home = path.join(base, "home3");
    await mkdir(home);
    const real = (await JailedFs.open(home)).root;
    const other = statSync(base);
    assert.equal(holdRoot(real, other), null);
    const held = holdRoot(real, statSync(home));
    assert.ok(held !== null);
    releaseRoot(real, held);
  });

  void it("follows a home replaced on disk: the next login opens the new one, the old closes with its sessions", async () => {
    const home = path.join(base, "home4");
    await mkdir(home);
    await writeFile(path.join(home, "f.txt"), "old");
    const fds = openFds();
    const first = await JailedFs.open(home);
    await rename(home, `${home}.moved`);
    await mkdir(home);
    await writeFile(path.join(home, "f.txt"), "new!");
    await writeFile(path.join(home, "only-new.txt"), "");
    // Until a login sees the change, the shortcut stays below the directory entered.
    assert.equal((await first.stat(vp("/f.txt"))).size, 3);
    const second = await JailedFs.open(home);
    assert.equal(openFds(), fds + 2);
    for (const jail of [first, second]) {
      assert.equal((await jail.stat(vp("/f.txt"))).size, 4);
      assert.equal((await jail.stat(vp("/only-new.txt"))).size, 0);
    }
    first.close();
    assert.equal(openFds(), fds + 1);
    assert.equal((await second.stat(vp("/f.txt"))).size, 4);
    second.close();
    assert.equal(openFds(), fds);
  });
});

void describe("sessions of a real server", { skip }, () => {
  void it("hold their home's root while logged in and let it go when they end", async () => {
    const roots = heldRoots();
    await withServer(async (t) => {
      await mkdir(t.home("alice"), { recursive: true });
      await writeFile(path.join(t.home("alice"), "hello.txt"), "hello");
      const clients = [await ftpLogin(t), await ftpLogin(t), await ftpLogin(t, "bob")];
      assert.equal(heldRoots(), roots + 2);
      for (const c of clients) {
        const chunks: Buffer[] = [];
        await c.downloadTo(
          new Writable({
            write(chunk: Buffer, _e, cb) {
              chunks.push(chunk);
              cb();
            },
          }),
          "hello.txt",
        ).catch(() => undefined);
        c.close();
      }
      assert.ok(await waitFor(() => heldRoots() === roots, 3000), `roots still held: ${heldRoots() - roots}`);
    });
  });

  void it("a login whose connection closes while its home is being opened lets the root go", async () => {
    const roots = heldRoots();
    let opened = 0;
    // The home is opened (its root held), then the login is slow to finish: the client is gone by
    // the time the session would enter it.
    const slowFs: FsFactory = async (home, opts) => {
      const jail = await JailedFs.open(home, opts);
      opened++;
      await sleep(300);
      return jail;
    };
    await withServer(
      async (t) => {
        const raw = await RawClient.connect(t.port);
        await raw.expect("USER alice", 331);
        raw.send("PASS alice-pw");
        assert.ok(await waitFor(() => opened === 1, 3000), "the home was opened");
        assert.equal(heldRoots(), roots + 1);
        await raw.close();
        assert.ok(await waitFor(() => heldRoots() === roots, 3000), `roots still held: ${heldRoots() - roots}`);
      },
      { openFs: slowFs },
    );
  });
});

void describe("STOR of new files over a real connection", { skip }, () => {
  const store = (raw: RawClient, name: string, data: string): Promise<number> => storeCode(raw, `STOR ${name}`, data);

  void it("each bad target gets its clear reply and makes nothing, inside or out; good ones are created in one call; the session goes on", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      const outside = await mkdtemp(path.join(tmpdir(), "stor-out-"));
      try {
        await mkdir(path.join(home, "d"));
        await mkdir(path.join(home, "taken-dir"));
        await symlink(outside, path.join(home, "out-dir"));
        await symlink(path.join(outside, "made-here"), path.join(home, "dangling-out"));
        await symlink("d", path.join(home, "in-dir"));
        const raw = await rawLogin(t);
        try {
          await raw.expect("TYPE I", 200);
          const bad = await counting(async () => [
            await store(raw, "out-dir/x.txt", "x"), // a link out on the way
            await store(raw, "dangling-out", "x"), // a link out, dangling, at the name
            await store(raw, "missing/x.txt", "x"), // a directory that is not there
            await store(raw, "../../x.txt", "x"), // a way up: the root stays the root
            await store(raw, "taken-dir", "x"), // a directory at the name
            await store(raw, "n".repeat(300), "x"), // a name over NAME_MAX
          ]);
          assert.deepEqual(bad.result, [550, 550, 550, 226, 550, 553]);
          // "../../x.txt" is /x.txt in the home, created there in one call like any new file.
          assert.equal(await readFile(path.join(home, "x.txt"), "utf8"), "x");
          assert.deepEqual(readdirSync(outside), []);
          assert.deepEqual(readdirSync(path.join(home, "d")), []);
          // The link on the way and the name taken were tried in one call and refused by it; the
          // missing directory too; the over-long name never reached the disk.
          assert.ok(bad.creates.includes(ELOOP) && bad.creates.includes(EEXIST) && bad.creates.includes(ENOENT), JSON.stringify(bad.creates));
          // A link inside on the way is followed the other way, into the directory it names.
          const good = await counting(async () => [await store(raw, "d/new.txt", "new"), await store(raw, "in-dir/via.txt", "via")]);
          assert.deepEqual(good.result, [226, 226]);
          assert.deepEqual(good.creates.slice(0, 2).map((fd) => (fd >= 0 ? "fd" : fd)), ["fd", ELOOP]);
          assert.equal(await readFile(path.join(home, "d", "new.txt"), "utf8"), "new");
          assert.equal(await readFile(path.join(home, "d", "via.txt"), "utf8"), "via");
          await raw.expect("NOOP", 200);
        } finally {
          await raw.close();
        }
      } finally {
        await rm(outside, { recursive: true, force: true });
      }
    });
  });
});
