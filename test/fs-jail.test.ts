import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { chmod, link, lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, utimes, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { JailedFs } from "../src/fs/jail.ts";
import { readListing, type ListingExtras } from "../src/fs/listing.ts";
import { setPinningForTest } from "../src/fs/pin.ts";
import type { RealPath, Upload, VirtualPath } from "../src/fs/types.ts";
import { resolveVirtual, ROOT } from "../src/fs/vpath.ts";
import { FtpError } from "../src/protocol/errors.ts";
import { openFds } from "./helpers/server.ts";

const SECRET = "TOP SECRET outside the jail";
let base: string;
let outside: string;
let jail: JailedFs;

const vp = (arg: string): VirtualPath => resolveVirtual(ROOT, arg);
const store = { kind: "store", offset: 0, exclusive: false } as const;
/** The uid of "nobody", an account that owns nothing here. */
const NOBODY = 65534;

/** Asserts that `p` rejects with an FtpError (of `code` if given) whose message hides real paths. */
async function refused(p: Promise<unknown>, code = 550, message?: string): Promise<FtpError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof FtpError, `not an FtpError: ${String(err)}`);
    assert.equal(err.code, code, `${err.code} ${err.message}`);
    if (message !== undefined) assert.equal(err.message, message);
    assert.ok(!err.message.includes(base), "message shows a real path");
    assert.ok(!err.message.includes(tmpdir()), "message shows a real path");
    return err;
  }
  assert.fail("expected a refusal");
}

async function write(upload: Upload, text: string): Promise<void> {
  const buf = Buffer.from(text);
  await upload.handle.write(buf, 0, buf.length, upload.position);
}

async function put(v: string, text: string): Promise<void> {
  const up = await jail.openUpload(vp(v), store);
  await write(up, text);
  await up.commit();
}

const home = (...parts: string[]): string => path.join(jail.root, ...parts);
const readHome = (...parts: string[]): Promise<string> => readFile(home(...parts), "utf8");

/** An upload to `v` is refused, or it creates exactly home + v. */
async function uploadLandsInside(v: VirtualPath): Promise<void> {
  let up: Upload;
  try {
    up = await jail.openUpload(v, store);
  } catch (err) {
    assert.ok(err instanceof FtpError && err.code === 550, String(err));
    return;
  }
  await write(up, "pwned");
  await up.commit();
  assert.equal(await readFile(path.join(jail.root, v), "utf8"), "pwned");
  await jail.unlink(v);
}

/** mkdir `v` is refused, or it creates exactly home + v. */
async function mkdirLandsInside(v: VirtualPath): Promise<void> {
  try {
    await jail.mkdir(v);
  } catch (err) {
    assert.ok(err instanceof FtpError && err.code === 550, String(err));
    return;
  }
  assert.ok((await stat(path.join(jail.root, v))).isDirectory());
  await jail.rmdir(v);
}

async function outsideUntouched(): Promise<void> {
  assert.equal(await readFile(path.join(outside, "secret.txt"), "utf8"), SECRET);
  assert.deepEqual((await readdir(outside)).sort(), ["dir", "secret.txt"]);
  assert.deepEqual(await readdir(path.join(outside, "dir")), []);
  assert.equal((await stat(path.join(outside, "secret.txt"))).mode & 0o777, 0o600);
}

before(async () => {
  base = await mkdtemp(path.join(tmpdir(), "fsjail-"));
  outside = path.join(base, "outside");
  await mkdir(path.join(outside, "dir"), { recursive: true });
  await writeFile(path.join(outside, "secret.txt"), SECRET, { mode: 0o600 });
  jail = await JailedFs.open(path.join(base, "home"));
  await mkdir(home("pub", "sub"), { recursive: true });
  await writeFile(home("pub", "hello.txt"), "hello");
  await symlink(outside, home("out-dir"));
  await symlink(path.join(outside, "secret.txt"), home("out-file"));
  await symlink("../../outside/secret.txt", home("pub", "rel-out-file"));
  await symlink("../..", home("pub", "up"));
  await symlink(path.join(outside, "nope"), home("dangling"));
  await symlink("nothing-here", home("dangling-in"));
  await symlink("pub", home("in-dir"));
  await symlink("pub/hello.txt", home("in-file"));
  await symlink(home("pub", "hello.txt"), home("abs-in-file"));
  await symlink("loop", home("loop"));
});

after(async () => {
  await rm(base, { recursive: true, force: true });
});

void describe("JailedFs.open", () => {
  void it("creates a missing home like mkdir -p and canonicalizes it", async () => {
    const j = await JailedFs.open(path.join(base, "deep", "er", "home", ".", ""));
    assert.equal(j.root, path.join(base, "deep", "er", "home"));
    assert.ok((await stat(j.root)).isDirectory());
    assert.deepEqual(await j.list(ROOT), []);
  });

  void it("realpaths a home reached through a symlink", async () => {
    await symlink(path.join(base, "home"), path.join(base, "home-link"));
    const j = await JailedFs.open(path.join(base, "home-link"));
    assert.equal(j.root, jail.root);
  });
});

void describe("path attacks", () => {
  const attacks = [
    "..",
    "../../etc/passwd",
    "/../..",
    "\\..\\..",
    "a/../../..",
    "../outside/secret.txt",
    "/../outside/secret.txt",
    "\\..\\outside\\secret.txt",
    "pub/../../outside/secret.txt",
    "%2e%2e/outside/secret.txt",
    "%2e%2e%2foutside%2fsecret.txt",
    "..%2foutside%2fsecret.txt",
    "/etc/passwd",
    "....//outside/secret.txt",
  ];
  for (const arg of attacks) {
    void it(`${JSON.stringify(arg)} never reaches outside`, async () => {
      const v = vp(arg);
      assert.ok(!v.split("/").includes(".."), v);
      await refused(jail.openDownload(v));
      await uploadLandsInside(v);
      await mkdirLandsInside(v);
      const listed = await jail.list(v).catch(() => []);
      assert.ok(!listed.some((e) => e.name === "secret.txt"));
      await outsideUntouched();
    });
  }

  void it("absolute real paths are just names inside the jail", async () => {
    const v = vp(path.join(outside, "secret.txt"));
    await refused(jail.openDownload(v), 550, "No such file or directory");
    await refused(jail.openUpload(v, store), 550, "No such file or directory");
    await refused(jail.stat(vp(outside)), 550);
  });

  void it("NUL bytes and control characters are refused before the filesystem", () => {
    for (const arg of ["secret.txt\0.jpg", "../\0", "a\nb"]) {
      assert.throws(() => vp(arg), (e: unknown) => e instanceof FtpError && e.code === 501);
    }
  });

  void it("very long names are refused with 553", async () => {
    assert.throws(() => vp("x".repeat(300)), (e: unknown) => e instanceof FtpError && e.code === 553);
    assert.throws(() => vp("y/".repeat(3000)), (e: unknown) => e instanceof FtpError && e.code === 553);
    // 255 bytes is allowed by resolveVirtual and handled by the filesystem
    await put(`/${"z".repeat(255)}`, "long");
    assert.equal(await readHome("z".repeat(255)), "long");
  });

  void it("nothing is made whose real path would be longer than PATH_MAX, though its virtual path is not: the deepest directory made can be entered", async () => {
    // 15 directories of 255 bytes, then a name of 255: a virtual path of 4096 bytes, which the
    // home's own path makes longer than the kernel takes in one path.
    const deep = vp(Array.from({ length: 15 }, () => "d".repeat(255)).join("/"));
    let at = ROOT as VirtualPath;
    for (const name of deep.split("/").slice(1)) {
      at = vp(`${at}/${name}`);
      await jail.mkdir(at);
    }
    try {
      assert.ok(await jail.isDirectory(deep), "the deepest directory made can be entered");
      const v = vp(`${deep}/${"e".repeat(255)}`);
      assert.ok(path.join(jail.root, v).length > 4095);
      await refused(jail.mkdir(v), 553, "File name not allowed");
      await refused(jail.openUpload(v, store), 553, "File name not allowed");
      await refused(jail.openUpload(v, { kind: "append", offset: 0, exclusive: false }), 553, "File name not allowed");
      await refused(jail.openUpload(v, { kind: "store", offset: 0, exclusive: true }), 553, "File name not allowed");
      await put(`${deep}/f`, "f");
      await refused(jail.rename(vp(`${deep}/f`), v), 553, "File name not allowed");
      assert.deepEqual(await readdir(path.join(jail.root, deep)), ["f"]);
    } finally {
      await rm(home("d".repeat(255)), { recursive: true, force: true });
    }
  });

  void it("a forged VirtualPath with .. or NUL is refused", async () => {
    for (const forged of ["/../outside/secret.txt", "/pub/../../outside", "/a\0b"]) {
      await refused(jail.stat(forged as VirtualPath), 553);
      await refused(jail.openDownload(forged as VirtualPath), 553);
    }
  });
});

void describe("symlinks leading out of the jail", () => {
  const outPaths = [
    "/out-dir",
    "/out-dir/secret.txt",
    "/out-dir/dir",
    "/out-file",
    "/pub/rel-out-file",
    "/pub/up",
    "/pub/up/outside/secret.txt",
    "/in-dir/up/outside/secret.txt",
    "/dangling",
    "/loop",
  ];

  for (const p of outPaths) {
    void it(`${p}: stat, list, download, chmod, setMtime refused alike`, async () => {
      const v = vp(p);
      await refused(jail.stat(v), 550, "No such file or directory");
      await refused(jail.list(v), 550, "No such file or directory");
      await refused(jail.openDownload(v), 550, "No such file or directory");
      await refused(jail.chmod(v, 0o777), 550, "No such file or directory");
      await refused(jail.setMtime(v, new Date(0)), 550, "No such file or directory");
      assert.equal(await jail.isDirectory(v), false);
      await outsideUntouched();
    });
  }

  void it("uploads through an outside link are refused in every mode", async () => {
    const modes = [
      store,
      { kind: "store", offset: 0, exclusive: true },
      { kind: "store", offset: 3, exclusive: false },
      { kind: "append", offset: 0, exclusive: false },
    ] as const;
    for (const target of ["/out-file", "/pub/rel-out-file", "/dangling", "/out-dir/new.txt", "/out-dir/secret.txt", "/pub/up/outside/x"]) {
      for (const opts of modes) await refused(jail.openUpload(vp(target), opts), 550);
    }
    await outsideUntouched();
    await assert.rejects(lstat(path.join(outside, "nope")));
  });

  void it("mkdir, rmdir and unlink inside an outside directory are refused", async () => {
    await refused(jail.mkdir(vp("/out-dir/newdir")));
    await refused(jail.mkdir(vp("/out-dir/dir/deeper")));
    await refused(jail.rmdir(vp("/out-dir/dir")));
    await refused(jail.unlink(vp("/out-dir/secret.txt")));
    await refused(jail.unlink(vp("/pub/up/outside/secret.txt")));
    await outsideUntouched();
  });

  void it("renames into or out of an outside directory are refused", async () => {
    await refused(jail.rename(vp("/pub/hello.txt"), vp("/out-dir/stolen.txt")));
    await refused(jail.rename(vp("/out-dir/secret.txt"), vp("/pub/got.txt")));
    await refused(jail.rename(vp("/pub/up/outside/secret.txt"), vp("/got.txt")));
    await refused(jail.rename(vp("/pub/sub"), vp("/out-dir/dir/sub")));
    assert.equal(await readHome("pub", "hello.txt"), "hello");
    await outsideUntouched();
  });

  void it("an outside link can itself be renamed and deleted; its target is untouched", async () => {
    await jail.rename(vp("/out-file"), vp("/pub/moved-link"));
    assert.ok((await lstat(home("pub", "moved-link"))).isSymbolicLink());
    await refused(jail.openDownload(vp("/pub/moved-link")));
    await jail.rename(vp("/pub/moved-link"), vp("/out-file"));
    await symlink(path.join(outside, "secret.txt"), home("doomed-link"));
    await jail.unlink(vp("/doomed-link"));
    await assert.rejects(lstat(home("doomed-link")));
    await refused(jail.rmdir(vp("/out-dir")), 550, "Not a directory");
    await outsideUntouched();
  });

  void it("listing shows outside and dangling links as links with their own lstat", async () => {
    const entries = await jail.list(ROOT);
    const byName = new Map(entries.map((e) => [e.name, e.stat]));
    for (const name of ["out-dir", "out-file", "dangling", "dangling-in", "loop"]) {
      const s = byName.get(name);
      assert.ok(s, name);
      assert.equal(s.type, "link", name);
      const own = await lstat(home(name));
      assert.equal(s.size, own.size, name);
      assert.equal(s.mtimeMs, Math.floor(own.mtimeMs), name);
    }
    assert.notEqual(byName.get("out-file")?.size, SECRET.length);
    const pub = await jail.list(vp("/pub"));
    assert.equal(pub.find((e) => e.name === "up")?.stat.type, "link");
    assert.equal(pub.find((e) => e.name === "rel-out-file")?.stat.type, "link");
  });

  void it("an outside link and a dangling link give the same reply", async () => {
    const a = await refused(jail.stat(vp("/out-file")));
    const b = await refused(jail.stat(vp("/dangling")));
    const c = await refused(jail.stat(vp("/no-such-file")));
    assert.deepEqual([a.code, a.message], [b.code, b.message]);
    assert.deepEqual([a.code, a.message], [c.code, c.message]);
  });
});

void describe("symlinks inside the jail", () => {
  void it("work for stat, list and download", async () => {
    assert.equal((await jail.stat(vp("/in-dir"))).type, "dir");
    assert.equal(await jail.isDirectory(vp("/in-dir")), true);
    assert.ok((await jail.list(vp("/in-dir"))).some((e) => e.name === "hello.txt"));
    for (const p of ["/in-file", "/abs-in-file", "/in-dir/hello.txt"]) {
      const d = await jail.openDownload(vp(p));
      assert.equal(d.size, 5);
      const buf = Buffer.alloc(16);
      const { bytesRead } = await d.handle.read(buf, 0, 16, 0);
      assert.equal(buf.subarray(0, bytesRead).toString("utf8"), "hello");
      await d.handle.close();
    }
    const root = new Map((await jail.list(ROOT)).map((e) => [e.name, e.stat]));
    // A link to a directory is listed as a link, with its own lstat: a client removing a tree must
    // not descend into it (linkStat in fs/listing.ts).
    assert.equal(root.get("in-dir")?.type, "link");
    assert.equal(root.get("in-dir")?.size, (await lstat(home("in-dir"))).size);
    assert.equal(root.get("in-file")?.type, "file");
    assert.equal(root.get("in-file")?.size, 5);
    assert.equal(root.get("abs-in-file")?.type, "file");
  });

  void it("list of a file (through a link) is that single entry", async () => {
    const list = await jail.list(vp("/in-file"));
    assert.equal(list.length, 1);
    assert.equal(list[0]?.name, "in-file");
    assert.equal(list[0]?.stat.type, "file");
  });

  void it("uploads and mkdir through an inside directory link land inside", async () => {
    await put("/in-dir/via-link.txt", "via");
    assert.equal(await readHome("pub", "via-link.txt"), "via");
    await jail.mkdir(vp("/in-dir/made"));
    assert.ok((await stat(home("pub", "made"))).isDirectory());
    await jail.rmdir(vp("/in-dir/made"));
  });

  void it("a dangling inside link is neither readable nor writable", async () => {
    await refused(jail.openDownload(vp("/dangling-in")), 550, "No such file or directory");
    await refused(jail.openUpload(vp("/dangling-in"), store), 550);
    await assert.rejects(lstat(home("nothing-here")));
  });
});

void describe("uploads", () => {
  void it("store of a new file writes in place; an abort keeps the partial data", async () => {
    const up = await jail.openUpload(vp("/new.txt"), store);
    assert.equal(up.position, 0);
    await write(up, "part");
    await up.abort();
    assert.equal(await readHome("new.txt"), "part");
    await put("/new2.txt", "whole");
    assert.equal(await readHome("new2.txt"), "whole");
  });

  void it("store over an existing file keeps the old one on abort, replaces it on commit", async () => {
    await writeFile(home("keep.txt"), "OLD CONTENT");
    const up = await jail.openUpload(vp("/keep.txt"), store);
    await write(up, "new");
    assert.equal(await readHome("keep.txt"), "OLD CONTENT");
    assert.ok(!(await jail.list(ROOT)).some((e) => e.name.startsWith(".berth-upload-")));
    assert.ok((await readdir(jail.root)).some((n) => n.startsWith(".berth-upload-")));
    await up.abort();
    assert.equal(await readHome("keep.txt"), "OLD CONTENT");
    assert.ok(!(await readdir(jail.root)).some((n) => n.startsWith(".berth-upload-")));

    const up2 = await jail.openUpload(vp("/keep.txt"), store);
    await write(up2, "new");
    await up2.commit();
    assert.equal(await readHome("keep.txt"), "new");
    assert.ok(!(await readdir(jail.root)).some((n) => n.startsWith(".berth-upload-")));
  });

  void it("store over a file the server may not write (mode 0444) is refused as appending to it is: the file is kept, no temp file is left", async () => {
    // As root every file is writable: the upload is tried as another account (seteuid), which
    // may write the directory but not the file.
    await chmod(base, 0o711);
    await mkdir(home("ro-dir"));
    await chmod(home("ro-dir"), 0o777);
    await writeFile(home("ro-dir", "kept.txt"), "KEPT");
    await chmod(home("ro-dir", "kept.txt"), 0o444);
    const v = vp("/ro-dir/kept.txt");
    const asRoot = process.geteuid?.() === 0;
    if (asRoot) process.seteuid?.(NOBODY);
    try {
      await refused(jail.openUpload(v, { kind: "append", offset: 0, exclusive: false }), 550, "Permission denied");
      await refused(jail.openUpload(v, { kind: "store", offset: 1, exclusive: false }), 550, "Permission denied");
      await refused(jail.openUpload(v, store), 550, "Permission denied");
    } finally {
      if (asRoot) process.seteuid?.(0);
    }
    assert.equal(await readHome("ro-dir", "kept.txt"), "KEPT");
    assert.deepEqual(await readdir(home("ro-dir")), ["kept.txt"]);
  });

  void it("store over an existing file whose directory is renamed meanwhile: the directory is held, so commit replaces the file under its new name; abort keeps the old one; no temp file left", async () => {
    for (const end of ["commit", "abort"] as const) {
      await mkdir(home(`mv-${end}`));
      await writeFile(home(`mv-${end}`, "f.txt"), "OLD");
      const up = await jail.openUpload(vp(`/mv-${end}/f.txt`), store);
      await write(up, "new data");
      await rename(home(`mv-${end}`), home(`moved-${end}`));
      if (end === "commit") await up.commit();
      else await up.abort();
      assert.equal(await readHome(`moved-${end}`, "f.txt"), end === "commit" ? "new data" : "OLD");
      assert.deepEqual(await readdir(home(`moved-${end}`)), ["f.txt"], `${end}: the temp file stayed`);
    }
  });

  void it("without /proc/self/fd the same rename makes the commit 550, the old file kept, no temp file left", async () => {
    setPinningForTest(false);
    try {
      for (const end of ["commit", "abort"] as const) {
        await mkdir(home(`np-${end}`));
        await writeFile(home(`np-${end}`, "f.txt"), "OLD");
        const up = await jail.openUpload(vp(`/np-${end}/f.txt`), store);
        await write(up, "new data");
        await rename(home(`np-${end}`), home(`np-moved-${end}`));
        if (end === "commit") await refused(up.commit(), 550);
        else await up.abort();
        assert.equal(await readHome(`np-moved-${end}`, "f.txt"), "OLD");
        assert.deepEqual(await readdir(home(`np-moved-${end}`)), ["f.txt"], `${end}: the temp file stayed`);
      }
    } finally {
      setPinningForTest(undefined);
    }
  });

  void it("store through an inside file link replaces the target, keeps the link", async () => {
    await writeFile(home("pub", "target.txt"), "old");
    await symlink("pub/target.txt", home("to-target"));
    await put("/to-target", "replaced");
    assert.ok((await lstat(home("to-target"))).isSymbolicLink());
    assert.equal(await readHome("pub", "target.txt"), "replaced");
  });

  void it("store at an offset keeps the bytes before it and writes in place", async () => {
    await writeFile(home("resume.bin"), "0123456789");
    const up = await jail.openUpload(vp("/resume.bin"), { kind: "store", offset: 4, exclusive: false });
    assert.equal(up.position, 4);
    await write(up, "ab");
    await up.commit();
    assert.equal(await readHome("resume.bin"), "0123ab");

    const resume = await jail.openUpload(vp("/resume.bin"), { kind: "store", offset: 6, exclusive: false });
    await write(resume, "XY");
    await resume.abort();
    assert.equal(await readHome("resume.bin"), "0123abXY");
  });

  void it("store at an offset beyond the end is 554; on a missing file 550", async () => {
    await writeFile(home("short.bin"), "abc");
    await refused(jail.openUpload(vp("/short.bin"), { kind: "store", offset: 4, exclusive: false }), 554,
      "Restart offset beyond end of file");
    assert.equal(await readHome("short.bin"), "abc");
    await refused(jail.openUpload(vp("/missing.bin"), { kind: "store", offset: 1, exclusive: false }), 550,
      "No such file or directory");
    await refused(jail.openUpload(vp("/short.bin"), { kind: "store", offset: -1, exclusive: false }), 501);
  });

  void it("append starts at the current size and creates a missing file", async () => {
    await writeFile(home("log.txt"), "abc");
    const up = await jail.openUpload(vp("/log.txt"), { kind: "append", offset: 0, exclusive: false });
    assert.equal(up.position, 3);
    await write(up, "def");
    await up.commit();
    assert.equal(await readHome("log.txt"), "abcdef");
    const fresh = await jail.openUpload(vp("/fresh-log.txt"), { kind: "append", offset: 0, exclusive: false });
    assert.equal(fresh.position, 0);
    await write(fresh, "1");
    await fresh.commit();
    assert.equal(await readHome("fresh-log.txt"), "1");
  });

  void it("exclusive refuses an existing file and creates a missing one", async () => {
    const exclusive = { kind: "store", offset: 0, exclusive: true } as const;
    await refused(jail.openUpload(vp("/pub/hello.txt"), exclusive), 550, "File exists");
    const up = await jail.openUpload(vp("/unique.txt"), exclusive);
    await write(up, "u");
    await up.commit();
    assert.equal(await readHome("unique.txt"), "u");
  });

  void it("store over what is there (a file, a link to one, a directory, a file in a subdirectory) leaves no descriptor open, refused or done", async () => {
    await writeFile(home("again.txt"), "one");
    await symlink("again.txt", home("again-link.txt"));
    const before = openFds();
    for (let i = 0; i < 3; i++) {
      const up = await jail.openUpload(vp("/again.txt"), store);
      await write(up, `v${i}`);
      if (i === 1) await up.abort();
      else await up.commit();
      await refused(jail.openUpload(vp("/pub"), store), 550, "Is a directory");
      await refused(jail.openUpload(vp("/pub/hello.txt"), { kind: "store", offset: 0, exclusive: true }), 550, "File exists");
    }
    assert.equal(await readHome("again.txt"), "v2");
    const linked = await jail.openUpload(vp("/again-link.txt"), store);
    await write(linked, "through the link");
    await linked.commit();
    assert.equal(await readHome("again.txt"), "through the link");
    assert.ok((await lstat(home("again-link.txt"))).isSymbolicLink(), "the link kept");
    assert.equal(openFds(), before);
  });

  void it("a directory target is refused in every mode", async () => {
    for (const opts of [
      store,
      { kind: "store", offset: 1, exclusive: false },
      { kind: "append", offset: 0, exclusive: false },
    ] as const) {
      await refused(jail.openUpload(vp("/pub"), opts), 550, "Is a directory");
      await refused(jail.openUpload(ROOT, opts), 550, "Is a directory");
    }
  });

  void it("a missing parent directory is 550", async () => {
    await refused(jail.openUpload(vp("/no/such/dir/f.txt"), store), 550, "No such file or directory");
    await refused(jail.openUpload(vp("/pub/hello.txt/f.txt"), store), 550, "Not a directory");
  });

  void it("commit and abort run once", async () => {
    await writeFile(home("once.txt"), "old");
    const up = await jail.openUpload(vp("/once.txt"), store);
    await write(up, "new");
    await up.commit();
    await up.commit();
    await up.abort();
    assert.equal(await readHome("once.txt"), "new");
    const up2 = await jail.openUpload(vp("/once.txt"), store);
    await up2.abort();
    await up2.abort();
    await up2.commit();
    assert.equal(await readHome("once.txt"), "new");
  });

  void it("temp upload names are not addressable", async () => {
    await refused(jail.stat(vp("/.berth-upload-abc")), 553);
    await refused(jail.openUpload(vp("/.berth-upload-abc"), store), 553);
    await refused(jail.rename(vp("/pub/hello.txt"), vp("/.berth-upload-x")), 553);
  });
});

void describe("downloads", () => {
  void it("refuses directories", async () => {
    await refused(jail.openDownload(vp("/pub")), 550, "Not a regular file");
    await refused(jail.openDownload(ROOT), 550, "Not a regular file");
  });

  void it("refuses a FIFO without blocking", async (t) => {
    try {
      execFileSync("mkfifo", [home("fifo")]);
    } catch {
      t.skip("mkfifo not available");
      return;
    }
    await refused(jail.openDownload(vp("/fifo")), 550, "Not a regular file");
    await refused(jail.openUpload(vp("/fifo"), { kind: "append", offset: 0, exclusive: false }), 550);
    await refused(jail.openUpload(vp("/fifo"), store), 550, "Not a regular file");
    await jail.unlink(vp("/fifo"));
  });
});

void describe("directory and metadata operations", () => {
  void it("mkdir, rmdir, unlink", async () => {
    await jail.mkdir(vp("/d1"));
    await refused(jail.mkdir(vp("/d1")), 550, "File exists");
    await refused(jail.mkdir(vp("/no/parent")), 550, "No such file or directory");
    await put("/d1/f", "x");
    await refused(jail.rmdir(vp("/d1")), 550, "Directory not empty");
    await refused(jail.unlink(vp("/d1")), 550, "Is a directory");
    await refused(jail.rmdir(vp("/d1/f")), 550, "Not a directory");
    await jail.unlink(vp("/d1/f"));
    await jail.rmdir(vp("/d1"));
    assert.equal(await jail.exists(vp("/d1")), false);
    await refused(jail.unlink(vp("/d1")), 550, "No such file or directory");
  });

  void it("rmdir of a directory that lists empty removes the temp files a killed server left in it, not what is only named alike", async () => {
    const left = ".berth-upload-0123456789abcdef";
    await mkdir(home("rm-left"));
    await writeFile(home("rm-left", left), "left behind");
    await jail.rmdir(vp("/rm-left"));
    assert.equal(await jail.exists(vp("/rm-left")), false);
    // Kept by a listing (it removes only the names berth makes, files only): kept by rmdir too.
    for (const [dir, made] of [
      ["rm-restored", () => writeFile(home("rm-restored", ".berth-upload-restored"), "precious")],
      ["rm-dir", () => mkdir(home("rm-dir", left))],
    ] as const) {
      await mkdir(home(dir));
      await made();
      await refused(jail.rmdir(vp(`/${dir}`)), 550, "Directory not empty");
      assert.equal((await readdir(home(dir))).length, 1);
      await rm(home(dir), { recursive: true });
    }
  });

  void it("the root can be neither removed nor renamed", async () => {
    await refused(jail.rmdir(ROOT), 550);
    await refused(jail.rename(ROOT, vp("/x")), 550);
    await refused(jail.rename(vp("/pub"), ROOT), 550);
    await refused(jail.mkdir(ROOT), 550, "File exists");
    await refused(jail.unlink(ROOT), 550);
    assert.ok((await stat(jail.root)).isDirectory());
  });

  void it("rename moves files and directories inside the jail", async () => {
    await put("/r1.txt", "r");
    await jail.rename(vp("/r1.txt"), vp("/pub/r2.txt"));
    assert.equal(await readHome("pub", "r2.txt"), "r");
    await refused(jail.rename(vp("/r1.txt"), vp("/r3.txt")), 550, "No such file or directory");
    await jail.mkdir(vp("/rd"));
    await jail.rename(vp("/rd"), vp("/pub/rd2"));
    assert.equal(await jail.isDirectory(vp("/pub/rd2")), true);
    await refused(jail.rename(vp("/pub"), vp("/pub/sub/pub")), 550);
  });

  void it("setMtime and chmod", async () => {
    const when = new Date("2001-02-03T04:05:06Z");
    await jail.setMtime(vp("/pub/hello.txt"), when);
    assert.equal((await jail.stat(vp("/pub/hello.txt"))).mtimeMs, when.getTime());
    await jail.setMtime(vp("/in-file"), new Date("2002-02-03T04:05:06Z"));
    assert.equal((await stat(home("pub", "hello.txt"))).mtime.getUTCFullYear(), 2002);
    await refused(jail.setMtime(vp("/pub/hello.txt"), new Date(NaN)), 501);
    await refused(jail.chmod(vp("/pub/hello.txt"), 0o4600), 501);
    await jail.chmod(vp("/pub/hello.txt"), 0o600);
    assert.equal((await jail.stat(vp("/pub/hello.txt"))).mode, 0o600);
    await jail.chmod(vp("/pub/hello.txt"), 0o644);
    await refused(jail.chmod(vp("/pub/hello.txt"), 0o17777), 501);
    await refused(jail.chmod(vp("/nope"), 0o644), 550, "No such file or directory");
    // SITE CHMOD never follows a final symlink, even one that stays inside.
    await refused(jail.chmod(vp("/in-file"), 0o600), 550, "Not allowed on a symbolic link");
  });

  void it("exists and uniqueName", async () => {
    assert.equal(await jail.exists(vp("/pub/hello.txt")), true);
    assert.equal(await jail.exists(vp("/dangling")), true);
    assert.equal(await jail.exists(vp("/nope")), false);
    assert.equal(await jail.exists(vp("/out-dir/secret.txt")), false);
    assert.equal(await jail.uniqueName(vp("/pub"), "fresh.txt"), "fresh.txt");
    assert.equal(await jail.uniqueName(vp("/pub"), "hello.txt"), "hello.txt.1");
    await writeFile(home("pub", "hello.txt.1"), "");
    assert.equal(await jail.uniqueName(vp("/pub"), "hello.txt"), "hello.txt.2");
    // Names the filter refuses are skipped; when it refuses the random one as well, 550.
    assert.equal(await jail.uniqueName(vp("/pub"), "fresh.txt", (n) => !/\.txt(\.[12])?$/.test(n)), "fresh.txt.3");
    await assert.rejects(jail.uniqueName(vp("/pub"), "fresh.txt", () => false), (e: unknown) => e instanceof FtpError && e.code === 550);
    // A rule that refuses some random names (here, those with an "a"; about half): another is drawn.
    for (let i = 0; i < 30; i++) {
      assert.match(await jail.uniqueName(vp("/pub"), "hello.txt", (n) => !n.startsWith("hello.txt.") || /^hello\.txt\.[0-9b-f]{12}$/.test(n)), /^hello\.txt\.[0-9b-f]{12}$/);
    }
    assert.match(await jail.uniqueName(ROOT, ""), /^file\.[0-9a-f]{12}$/);
    await assert.rejects(jail.uniqueName(ROOT, "../x"), FtpError);
  });

  void it("stat of the root", async () => {
    assert.equal((await jail.stat(ROOT)).type, "dir");
    assert.equal(await jail.isDirectory(ROOT), true);
    assert.equal(await jail.isDirectory(vp("/pub/hello.txt")), false);
  });
});

void describe("listing", () => {
  void it("hides upload temp files and names no command could address", async () => {
    await mkdir(home("hide"));
    await writeFile(home("hide", ".berth-upload-0123"), "tmp");
    await writeFile(home("hide", "line\nbreak"), "x");
    await writeFile(home("hide", "visible"), "v");
    assert.deepEqual((await jail.list(vp("/hide"))).map((e) => e.name), ["visible"]);
  });

  void it("missing directory is 550", async () => {
    await refused(jail.list(vp("/no-such-dir")), 550, "No such file or directory");
  });

  void it("tells what upload temp files a directory holds, read by the stat worker or on the main thread", async () => {
    await mkdir(home("extras"));
    await writeFile(home("extras", ".berth-upload-00000000000000a1"), "t");
    await writeFile(home("extras", "line\nbreak"), "x");
    await writeFile(home("extras", "seen"), "s");
    for (const useWorker of [true, false]) {
      const extras: ListingExtras = { temps: [] };
      const entries = await readListing(jail.root, home("extras") as RealPath, 4096, useWorker, extras);
      assert.deepEqual(entries.toArray().map((e) => e.name), ["seen"], `worker ${useWorker}`);
      assert.deepEqual(extras.temps, [".berth-upload-00000000000000a1"], `worker ${useWorker}`);
    }
    const none: ListingExtras = { temps: [] };
    await readListing(jail.root, home("pub") as RealPath, Infinity, false, none);
    assert.deepEqual(none.temps, []);
  });

  void it("removes the upload temp files a killed server left, a day after their last write; not fresh ones, links, directories or a running upload's", async () => {
    const removed: object[] = [];
    const own = await JailedFs.open(jail.root, { log: { info: (fields) => removed.push(fields) } });
    try {
      // A large directory is read on the main thread, a small one by the stat worker: both sweep.
      for (const [dir, filler] of [["sweep-small", 0], ["sweep-large", 1500]] as const) {
        await mkdir(home(dir));
        for (let i = 0; i < filler; i++) await writeFile(home(dir, `filler-${String(i).padStart(4, "0")}-with-a-longer-name`), "");
        const day = Date.now() / 1000 - 25 * 3600;
        const at = (name: string): string => home(dir, name);
        await writeFile(at(".berth-upload-00000000000000b1"), "left behind");
        await utimes(at(".berth-upload-00000000000000b1"), day, day);
        await writeFile(at(".berth-upload-00000000000000b2"), "fresh");
        // Named with the prefix but not as berth names its temp files: not berth's to remove.
        await writeFile(at(".berth-upload-restored.bin"), "someone else's");
        await utimes(at(".berth-upload-restored.bin"), day, day);
        await mkdir(at(".berth-upload-00000000000000b3"));
        await utimes(at(".berth-upload-00000000000000b3"), day, day);
        await symlink(path.join(outside, "secret.txt"), at(".berth-upload-00000000000000b4"));
        execFileSync("touch", ["-h", "-d", "@" + String(Math.floor(day)), at(".berth-upload-00000000000000b4")]);
        await writeFile(at("kept.txt"), "OLD");
        // A replacing upload still running, its temp file not written for a day.
        const up = await own.openUpload(vp(`/${dir}/kept.txt`), store);
        await write(up, "NEW");
        const running = (await readdir(home(dir))).filter((n) => /^\.berth-upload-[0-9a-f]{16}$/.test(n) && !/0000000000000b\d$/.test(n));
        assert.equal(running.length, 1);
        await utimes(at(running[0] as string), day, day);
        if (filler > 0) assert.ok((await stat(home(dir))).size > 32 * 1024, "the large directory is read on the main thread");

        const listed = (await own.list(vp(`/${dir}`))).map((e) => e.name).filter((n) => !n.startsWith("filler-"));
        assert.deepEqual(listed, ["kept.txt"]);
        const left = (await readdir(home(dir))).filter((n) => n.startsWith(".berth-upload-")).sort();
        assert.deepEqual(
          left,
          [".berth-upload-00000000000000b2", ".berth-upload-00000000000000b3", ".berth-upload-00000000000000b4", ".berth-upload-restored.bin", running[0]].sort(),
        );
        assert.deepEqual(removed.splice(0), [{ event: "stale-temp", dir: `/${dir}`, name: ".berth-upload-00000000000000b1", bytes: 11 }]);
        await up.commit();
        assert.equal(await readHome(dir, "kept.txt"), "NEW");
        // The next listing finds nothing more to remove.
        await own.list(vp(`/${dir}`));
        assert.deepEqual(removed, []);
      }
      await outsideUntouched();
    } finally {
      own.close();
    }
    // Where uploads may stall longer (limits.stalledTimeout), a day-old temp file may still be one.
    const patient = await JailedFs.open(jail.root, { log: { info: (fields) => removed.push(fields) }, staleTempMs: 3 * 24 * 3600_000 });
    try {
      await mkdir(home("sweep-patient"));
      const at = home("sweep-patient", ".berth-upload-00000000000000c1");
      await writeFile(at, "left");
      const twoDays = Date.now() / 1000 - 48 * 3600;
      await utimes(at, twoDays, twoDays);
      await patient.list(vp("/sweep-patient"));
      assert.deepEqual(await readdir(home("sweep-patient")), [".berth-upload-00000000000000c1"]);
      const fourDays = Date.now() / 1000 - 96 * 3600;
      await utimes(at, fourDays, fourDays);
      await patient.list(vp("/sweep-patient"));
      assert.deepEqual(await readdir(home("sweep-patient")), []);
      assert.equal(removed.length, 1);
    } finally {
      patient.close();
    }
  });
});

void describe("large directories", () => {
  void it("lists 10,000 entries", async () => {
    const dir = home("many");
    await mkdir(dir);
    await writeFile(home("many-source"), "sixsix");
    const names = Array.from({ length: 10_000 }, (_, i) => `f${String(i).padStart(5, "0")}`);
    // hard links: regular files to the lister, but far cheaper to make than 10,000 new inodes
    for (let i = 0; i < names.length; i += 500) {
      await Promise.all(names.slice(i, i + 500).map((n) => link(home("many-source"), path.join(dir, n))));
    }
    const entries = await jail.list(vp("/many"));
    assert.equal(entries.length, 10_000);
    assert.deepEqual(entries.map((e) => e.name), names);
    assert.ok(entries.every((e) => e.stat.type === "file" && e.stat.size === 6));
  });
});
