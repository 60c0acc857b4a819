/**
 * A directory swapped for a link after containment checked it (fs/pin.ts). Containment resolves a
 * path and checks it; the kernel walks the path again when it is used. Here a directory of the
 * jail is renamed away and a link to outside the jail renamed into its place — by hand between the
 * check and the use, and by another process as fast as it can while the jail works.
 */
import assert from "node:assert/strict";
import { lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { after, before, describe, it } from "node:test";
import { JailedFs } from "../src/fs/jail.ts";
import { chmodNoFollow, holdTarget, pinDir, pinning, setPinningForTest } from "../src/fs/pin.ts";
import type { RealPath, VirtualPath } from "../src/fs/types.ts";
import { resolveVirtual, ROOT } from "../src/fs/vpath.ts";
import { FtpError } from "../src/protocol/errors.ts";
import { scanUsage } from "../src/fs/usage.ts";
import { startSwapper } from "./helpers/swapper.ts";

const SECRET = "TOP SECRET outside the jail";
const INSIDE = "inside, and longer than the secret is";
let base: string;
let outside: string;
let jail: JailedFs;

const vp = (arg: string): VirtualPath => resolveVirtual(ROOT, arg);
const home = (...parts: string[]): string => path.join(jail.root, ...parts);

/** The outside directory as it was made: its names and the secret's content and mode. */
async function outsideUntouched(): Promise<void> {
  assert.deepEqual((await readdir(outside)).sort(), ["outside-only.txt", "secret.txt", "victim.txt"]);
  assert.equal(await readFile(path.join(outside, "secret.txt"), "utf8"), SECRET);
  assert.equal((await stat(path.join(outside, "secret.txt"))).mode & 0o777, 0o600);
  assert.equal(await readFile(path.join(outside, "victim.txt"), "utf8"), "victim");
}

async function refused(p: Promise<unknown>): Promise<void> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof FtpError, `not an FtpError: ${String(err)}`);
    assert.equal(err.code, 550);
    assert.ok(!err.message.includes(base), "message shows a real path");
    return;
  }
  assert.fail("expected a refusal");
}

before(async () => {
  base = await mkdtemp(path.join(tmpdir(), "fspin-"));
  outside = path.join(base, "outside");
  await mkdir(outside);
  await writeFile(path.join(outside, "secret.txt"), SECRET, { mode: 0o600 });
  await writeFile(path.join(outside, "victim.txt"), "victim");
  await writeFile(path.join(outside, "outside-only.txt"), "");
  jail = await JailedFs.open(path.join(base, "home"));
});

after(async () => {
  await rm(base, { recursive: true, force: true });
});

void describe("a directory checked, then swapped for a link out of the jail", { skip: !pinning() && "no /proc/self/fd here" }, () => {
  /** Makes directory d (with secret.txt holding INSIDE) and link `evil` → outside; returns the swap. */
  async function setUp(d: string): Promise<{ swap: () => Promise<void>; stale: RealPath }> {
    await mkdir(home(d));
    await writeFile(home(d, "secret.txt"), INSIDE);
    await symlink(outside, home(`${d}-evil`));
    return {
      stale: home(d) as RealPath,
      swap: async () => {
        await rename(home(d), home(`${d}-away`));
        await rename(home(`${d}-evil`), home(d));
      },
    };
  }

  void it("holding it: pinDir and holdTarget refuse what the old path now leads to", async () => {
    const { swap, stale } = await setUp("held");
    await swap();
    await refused(pinDir(jail.root, stale));
    await refused(holdTarget(jail.root, vp("/held/secret.txt")));
    await refused(holdTarget(jail.root, vp("/held")));
    await outsideUntouched();
  });

  void it("a directory held open keeps naming itself after its path is swapped", async () => {
    const { swap, stale } = await setUp("kept");
    const d = await pinDir(jail.root, stale);
    try {
      await swap();
      await writeFile(d.at("new.txt"), "written");
      assert.equal(await readFile(home("kept-away", "new.txt"), "utf8"), "written");
      assert.deepEqual((await readdir(d.at())).sort(), ["new.txt", "secret.txt"]);
    } finally {
      d.release();
    }
    await outsideUntouched();
  });

  void it("chmodNoFollow refuses a link and leaves its target alone; changes a file", async () => {
    await symlink(path.join(outside, "secret.txt"), home("to-secret"));
    await refused(chmodNoFollow(home("to-secret"), 0o666));
    await writeFile(home("plain.txt"), "x");
    await chmodNoFollow(home("plain.txt"), 0o640);
    assert.equal((await stat(home("plain.txt"))).mode & 0o777, 0o640);
    assert.ok((await lstat(home("to-secret"))).isSymbolicLink());
    await outsideUntouched();
  });

  void it("while another process swaps a directory for a link out of the jail as fast as it can, nothing the jail does reaches outside", async () => {
    await mkdir(home("race"));
    await writeFile(home("race", "secret.txt"), INSIDE);
    await writeFile(home("race", "victim.txt"), "inside victim");
    await symlink(outside, home("race-evil"));
    const swapper = startSwapper(home("race"), home("race-evil"), home("race-away"));
    const seen = { read: 0, listed: 0, stored: 0, made: 0, stat: 0, removed: 0, chmod: 0 };
    try {
      // At least 1 s, and on until each kind has got through once (a busy machine fits fewer
      // rounds in, with the swap in the way of some), at most 20 s.
      const start = Date.now();
      const more = (): boolean => Date.now() - start < 1000 || (Object.values(seen).some((n) => n === 0) && Date.now() - start < 20_000);
      for (let i = 0; more(); i++) {
        await attempt(async () => {
          const dl = await jail.openDownload(vp("/race/secret.txt"));
          try {
            const buf = Buffer.alloc(256);
            const { bytesRead } = await dl.handle.read(buf, 0, buf.length, 0);
            assert.equal(buf.toString("utf8", 0, bytesRead), INSIDE, "a download read outside the jail");
            seen.read++;
          } finally {
            await dl.handle.close();
          }
        });
        await attempt(async () => {
          const names = (await jail.list(vp("/race"))).map((e) => e.name);
          assert.ok(!names.includes("outside-only.txt"), "a listing showed what is outside the jail");
          seen.listed++;
        });
        await attempt(async () => {
          const s = await jail.stat(vp("/race/secret.txt"));
          assert.equal(s.size, Buffer.byteLength(INSIDE), "a stat saw outside the jail");
          seen.stat++;
        });
        await attempt(async () => {
          const up = await jail.openUpload(vp(`/race/new-${i}`), { kind: "store", offset: 0, exclusive: false });
          await up.handle.write(Buffer.from("up"), 0, 2, 0);
          await up.commit();
          seen.stored++;
        });
        await attempt(async () => {
          await jail.mkdir(vp(`/race/dir-${i}`));
          seen.made++;
        });
        await attempt(async () => {
          await jail.chmod(vp("/race/secret.txt"), 0o644);
          seen.chmod++;
        });
        await attempt(async () => {
          await jail.unlink(vp("/race/victim.txt"));
          seen.removed++;
          // Put back through the jail (a path of the test's own could land outside mid-swap).
          const up = await jail.openUpload(vp("/race/victim.txt"), { kind: "store", offset: 0, exclusive: false });
          await up.commit();
        });
      }
    } finally {
      await swapper.stop();
    }
    await outsideUntouched();
    // The race ran: each kind of call got through at least once between the swaps.
    for (const [what, n] of Object.entries(seen)) assert.ok(n > 0, `${what} never got through: ${JSON.stringify(seen)}`);
  });
});

void describe("counting a home (quota) while a directory of it is swapped for a link out of it", { skip: !pinning() && "no /proc/self/fd here" }, () => {
  void it("no count ever includes what is outside", async () => {
    const top = path.join(base, "usage-home");
    await mkdir(path.join(top, "d"), { recursive: true });
    await writeFile(path.join(top, "d", "secret.txt"), INSIDE);
    await symlink(outside, path.join(top, "d-evil"));
    const swapper = startSwapper(path.join(top, "d"), path.join(top, "d-evil"), path.join(top, "d-away"));
    const seen = new Set<string>();
    try {
      for (const until = Date.now() + 1000; Date.now() < until; ) {
        const u = await scanUsage(top);
        seen.add(`${u.bytes}/${u.files}`);
      }
    } finally {
      await swapper.stop();
    }
    // The directory is counted, or missed while it is away; what the link leads to, never.
    for (const s of seen) assert.ok(s === `${Buffer.byteLength(INSIDE)}/1` || s === "0/0", `counted ${s}: ${[...seen].join(", ")}`);
    assert.deepEqual(await scanUsage(top), { bytes: Buffer.byteLength(INSIDE), files: 1 });
    await outsideUntouched();
  });
});

void describe("looking at entries while a directory is swapped for a link out of the jail", { skip: !pinning() && "no /proc/self/fd here" }, () => {
  void it("a listed link shows what it leads to inside, or itself; an existence check never sees outside", async () => {
    await mkdir(home("look"));
    await writeFile(home("look", "secret.txt"), INSIDE);
    await symlink(outside, home("look-evil"));
    await mkdir(home("links"));
    await symlink(home("look", "secret.txt"), home("links", "to-secret"));
    const swapper = startSwapper(home("look"), home("look-evil"), home("look-away"));
    const seen = { target: 0, link: 0, exists: 0, missing: 0 };
    try {
      // At least 1 s, and on until the two asserted below have each been seen (at most 20 s).
      const start = Date.now();
      for (; Date.now() - start < 1000 || ((seen.target === 0 || seen.exists === 0) && Date.now() - start < 20_000); ) {
        await attempt(async () => {
          const [entry] = (await jail.list(vp("/links"))).filter((e) => e.name === "to-secret");
          assert.ok(entry, "the link is not listed");
          if (entry.stat.type === "link") seen.link++;
          else {
            assert.equal(entry.stat.size, Buffer.byteLength(INSIDE), "a listed link showed what is outside the jail");
            seen.target++;
          }
        });
        await attempt(async () => {
          // Inside, only secret.txt is there; outside-only.txt exists only outside the jail.
          assert.equal(await jail.exists(vp("/look/outside-only.txt")), false, "an existence check saw outside the jail");
          if (await jail.exists(vp("/look/secret.txt"))) seen.exists++;
          else seen.missing++;
        });
      }
    } finally {
      await swapper.stop();
    }
    await outsideUntouched();
    assert.ok(seen.target > 0 && seen.exists > 0, `never got through: ${JSON.stringify(seen)}`);
  });
});

void describe("without /proc/self/fd (paths used as checked)", () => {
  before(() => setPinningForTest(false));
  after(() => setPinningForTest(undefined));

  void it("every operation still works, and links out of the jail are still refused", async () => {
    assert.equal(pinning(), false);
    await jail.mkdir(vp("/np"));
    const put = async (v: string, text: string): Promise<void> => {
      const up = await jail.openUpload(vp(v), { kind: "store", offset: 0, exclusive: false });
      await up.handle.write(Buffer.from(text), 0, Buffer.byteLength(text), 0);
      await up.commit();
    };
    await put("/np/a.txt", "first");
    await put("/np/a.txt", "second");
    const dl = await jail.openDownload(vp("/np/a.txt"));
    const buf = Buffer.alloc(16);
    const { bytesRead } = await dl.handle.read(buf, 0, buf.length, 0);
    await dl.handle.close();
    assert.equal(buf.toString("utf8", 0, bytesRead), "second");
    assert.deepEqual((await jail.list(vp("/np"))).map((e) => e.name), ["a.txt"]);
    assert.equal((await jail.stat(vp("/np/a.txt"))).size, 6);
    await jail.chmod(vp("/np/a.txt"), 0o600);
    await jail.setMtime(vp("/np/a.txt"), new Date(1_000_000_000_000));
    const st = await stat(home("np", "a.txt"));
    assert.equal(st.mode & 0o777, 0o600);
    assert.equal(st.mtimeMs, 1_000_000_000_000);
    await jail.rename(vp("/np/a.txt"), vp("/np/b.txt"));
    await jail.unlink(vp("/np/b.txt"));
    await jail.rmdir(vp("/np"));
    await symlink(outside, home("np-out"));
    await jail.mkdir(vp("/np"));
    await put("/np/target.txt", "target");
    await symlink(home("np", "target.txt"), home("np", "in-link"));
    await symlink(path.join(outside, "secret.txt"), home("np", "out-link"));
    const listed = new Map((await jail.list(vp("/np"))).map((e) => [e.name, e.stat]));
    assert.deepEqual([listed.get("in-link")?.type, listed.get("in-link")?.size], ["file", 6], "a link inside shows its target");
    assert.equal(listed.get("out-link")?.type, "link", "a link out of the jail shows only itself");
    assert.equal(await jail.exists(vp("/np/target.txt")), true);
    assert.equal(await jail.exists(vp("/np/nothing")), false);
    assert.equal(await jail.exists(vp("/np-out/secret.txt")), false);
    await refused(jail.openDownload(vp("/np-out/secret.txt")));
    await refused(jail.list(vp("/np-out")));
    await refused(jail.openUpload(vp("/np-out/new.txt"), { kind: "store", offset: 0, exclusive: false }));
    await outsideUntouched();
  });
});

/** Runs `step`; a refusal or a missing entry (the swap in progress) is fine, anything else is not. */
async function attempt(step: () => Promise<void>): Promise<void> {
  try {
    await step();
  } catch (err) {
    if (err instanceof FtpError) return;
    throw err;
  }
}
