/**
 * STOU and the name rules over real connections: the names it makes after the one asked for skip
 * hidden and denied ones with no argument, into a subdirectory, under per-directory permissions,
 * when the name is taken between the look and the create, and across sessions racing on a slow
 * disk; the 150 and 226 name the file made; a refusal from inside the open frees its port.
 */
import assert from "node:assert/strict";
import fs, { constants, existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync, type Mode, type PathLike } from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import path from "node:path";
import { describe, it } from "node:test";
import type { Perm } from "../src/auth/types.ts";
import { backOff } from "../src/fs/quick.ts";
import { writeAll, type RawClient } from "./helpers/raw.ts";
import { rawLogin, withServer } from "./helpers/run.ts";
import { portsFree } from "./helpers/uploads.ts";

type Outcome = { made: string; opening: string; done: string } | { code: number; text: string };

/** `line` on a new passive connection, `body` sent after its 150: the name the 150 and the 226
 * give (they must agree), or the refusal. */
async function stou(raw: RawClient, line: string, body: string): Promise<Outcome> {
  const data = await raw.pasv();
  raw.send(line);
  const first = await raw.reply();
  if (first.code !== 150) {
    data.destroy();
    return { code: first.code, text: first.message };
  }
  await writeAll(data, body);
  const last = await raw.reply();
  assert.equal(last.code, 226, last.message);
  const opening = /^FILE: (.+)$/.exec(first.message)?.[1] ?? "";
  const done = /\(unique file name: (.+)\)$/.exec(last.message)?.[1] ?? "";
  assert.equal(opening, done, `${first.message} / ${last.message}`);
  return { made: opening, opening: first.message, done: last.message };
}

function madeName(o: Outcome): string {
  assert.ok("made" in o, JSON.stringify(o));
  return o.made;
}

/** Runs `body` with fs.promises.open wrapped: `before(p, flags)` runs first (on a slow disk every
 * upload's open goes there). */
async function withOpenHook(before: (p: string, flags: number) => void, body: () => Promise<void>): Promise<void> {
  const realOpen = fs.promises.open;
  fs.promises.open = (async (p: PathLike, flags?: string | number, mode?: Mode) => {
    if (typeof flags === "number") before(String(p), flags);
    return realOpen(p, flags, mode);
  }) as typeof fs.promises.open;
  syncBuiltinESMExports();
  backOff(60_000);
  try {
    await body();
  } finally {
    backOff(0);
    fs.promises.open = realOpen;
    syncBuiltinESMExports();
  }
}

describe("STOU's names and the name rules, over the wire", () => {
  it("no argument, a path into a subdirectory, a hidden directory on the way", async () => {
    await withServer(
      async (t) => {
        const home = t.home("alice");
        writeFileSync(path.join(home, "file"), "x");
        mkdirSync(path.join(home, "sub"));
        mkdirSync(path.join(home, "secret"));
        writeFileSync(path.join(home, "sub", "x"), "x");
        const raw = await rawLogin(t);
        try {
          assert.equal(madeName(await stou(raw, "STOU", "a")), "file.2");
          // Outside the cwd the texts name the whole path.
          assert.equal(madeName(await stou(raw, "STOU sub/x", "b")), "/sub/x.2");
          assert.deepEqual(await stou(raw, "STOU secret/x", "c"), { code: 550, text: "Permission denied: name not allowed" });
          await raw.expect("CWD sub", 250);
          assert.equal(madeName(await stou(raw, "STOU x", "d")), "x.3");
          assert.equal(madeName(await stou(raw, "STOU ../sub/x", "e")), "x.4");
          await raw.expect("NOOP", 200);
          assert.deepEqual(readdirSync(path.join(home, "sub")).sort(), ["x", "x.2", "x.3", "x.4"]);
          assert.equal(readFileSync(path.join(home, "sub", "x.3"), "utf8"), "d");
          assert.deepEqual(readdirSync(path.join(home, "secret")), []);
        } finally {
          await raw.close();
        }
        await portsFree(t);
      },
      { config: { storage: { hide: "*.1,secret", deny: "" } } },
    );
  });

  it("a directory's name (ending in a slash): a unique name made inside it, never a file beside it under the directory's name", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      mkdirSync(path.join(home, "sub"));
      const raw = await rawLogin(t);
      try {
        assert.equal(madeName(await stou(raw, "STOU sub/", "a")), "/sub/file");
        assert.equal(madeName(await stou(raw, "STOU /sub\\", "b")), "/sub/file.1");
        // A directory that is not there: refused, and nothing made under its name.
        const refused = await stou(raw, "STOU new/", "c");
        assert.ok("code" in refused && refused.code === 550, JSON.stringify(refused));
        await raw.expect("NOOP", 200);
        assert.deepEqual(readdirSync(home).sort(), ["sub"]);
        assert.deepEqual(readdirSync(path.join(home, "sub")).sort(), ["file", "file.1"]);
        assert.equal(readFileSync(path.join(home, "sub", "file.1"), "utf8"), "b");
      } finally {
        await raw.close();
      }
      await portsFree(t);
    });
  });

  it("'.', '..' and '~' name directories too: the unique name is made inside the cwd, its parent or the home, with their permissions, never beside them under their names", async () => {
    const drop = { name: "drop", password: "drop-pw", perms: [] as Perm[], dirs: { "/in": ["upload"] } as Record<string, Perm[]> };
    await withServer(
      async (t) => {
        const home = t.home("alice");
        mkdirSync(path.join(home, "sub", "deep"), { recursive: true });
        mkdirSync(path.join(t.home("drop"), "in"), { recursive: true });
        const raw = await rawLogin(t);
        try {
          await raw.expect("CWD /sub/deep", 250);
          assert.equal(madeName(await stou(raw, "STOU .", "a")), "file");
          assert.equal(madeName(await stou(raw, "STOU ..", "b")), "/sub/file");
          assert.equal(madeName(await stou(raw, "STOU ~", "c")), "/file");
        } finally {
          await raw.close();
        }
        assert.deepEqual(readdirSync(home).sort(), ["file", "sub"]);
        assert.deepEqual(readdirSync(path.join(home, "sub")).sort(), ["deep", "file"]);
        assert.deepEqual(readdirSync(path.join(home, "sub", "deep")), ["file"]);
        assert.equal(readFileSync(path.join(home, "sub", "deep", "file"), "utf8"), "a");
        // A drop box entered: STOU . uploads into it, where upload is allowed, not beside it.
        const d = await rawLogin(t, "drop");
        try {
          await d.expect("CWD /in", 250);
          assert.equal(madeName(await stou(d, "STOU .", "d")), "file");
          assert.deepEqual(await stou(d, "STOU ..", "e"), { code: 550, text: "Permission denied: no upload permission here" });
        } finally {
          await d.close();
        }
        assert.deepEqual(readdirSync(t.home("drop")), ["in"]);
        assert.deepEqual(readdirSync(path.join(t.home("drop"), "in")), ["file"]);
        await portsFree(t);
      },
      { users: [drop] },
    );
  });

  it("a name taken that is as long as a name may be (255 bytes): the names made after it are cut to fit, never refused as too long", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      // 254 bytes: "é" is two bytes in UTF-8, and a cut never splits one.
      const long = "a".repeat(252) + "é";
      const ascii = "b".repeat(255);
      writeFileSync(path.join(home, long), "x");
      writeFileSync(path.join(home, ascii), "x");
      const raw = await rawLogin(t);
      try {
        await raw.expect("OPTS UTF8 ON", 200);
        assert.equal(madeName(await stou(raw, `STOU ${long}`, "a")), `${"a".repeat(252)}.1`);
        const second = madeName(await stou(raw, `STOU ${ascii}`, "b"));
        assert.equal(second, `${"b".repeat(253)}.1`);
        const third = madeName(await stou(raw, `STOU ${ascii}`, "c"));
        assert.equal(third, `${"b".repeat(253)}.2`);
        assert.equal(readFileSync(path.join(home, third), "utf8"), "c");
        assert.equal(readFileSync(path.join(home, ascii), "utf8"), "x");
      } finally {
        await raw.close();
      }
      await portsFree(t);
    });
  });

  it("per-directory permissions: made where upload is allowed, refused elsewhere", async () => {
    const drop = { name: "drop", password: "drop-pw", perms: [] as Perm[], dirs: { "/in": ["upload"] } as Record<string, Perm[]> };
    await withServer(
      async (t) => {
        const home = t.home("drop");
        mkdirSync(path.join(home, "in"), { recursive: true });
        mkdirSync(path.join(home, "out"), { recursive: true });
        writeFileSync(path.join(home, "in", "x"), "x");
        const raw = await rawLogin(t, "drop");
        try {
          assert.equal(madeName(await stou(raw, "STOU in/x", "a")), "/in/x.2");
          assert.equal(madeName(await stou(raw, "STOU in/x", "b")), "/in/x.3");
          assert.deepEqual(await stou(raw, "STOU out/x", "c"), { code: 550, text: "Permission denied: no upload permission here" });
          assert.deepEqual(await stou(raw, "STOU", "d"), { code: 550, text: "Permission denied: no upload permission here" });
          await raw.expect("NOOP", 200);
          assert.deepEqual(readdirSync(path.join(home, "in")).sort(), ["x", "x.2", "x.3"]);
          assert.deepEqual(readdirSync(path.join(home, "out")), []);
        } finally {
          await raw.close();
        }
        await portsFree(t);
      },
      { users: [drop], config: { storage: { hide: "*.1", deny: "" } } },
    );
  });

  it("names taken between the look and the create: the next allowed free one, named by 150 and 226", async () => {
    await withServer(
      async (t) => {
        const home = t.home("alice");
        writeFileSync(path.join(home, "r"), "x");
        const raw = await rawLogin(t);
        let taken = 0;
        try {
          // r.1, then r.3 and r.4 are made by someone else just before each create; r.2 is hidden.
          await withOpenHook(
            (p, flags) => {
              const name = path.basename(p);
              if (/^r\.\d+$/.test(name) && (flags & constants.O_EXCL) !== 0 && taken < 3 && !existsSync(path.join(home, name))) {
                taken++;
                writeFileSync(path.join(home, name), "theirs");
              }
            },
            async () => {
              const o = await stou(raw, "STOU r", "mine");
              assert.equal(madeName(o), "r.5");
            },
          );
          assert.equal(taken, 3);
          const files = readdirSync(home).sort();
          assert.deepEqual(files, ["r", "r.1", "r.3", "r.4", "r.5"]);
          assert.equal(readFileSync(path.join(home, "r.5"), "utf8"), "mine");
          for (const n of ["r.1", "r.3", "r.4"]) assert.equal(readFileSync(path.join(home, n), "utf8"), "theirs");
          await raw.expect("NOOP", 200);
        } finally {
          await raw.close();
        }
        await portsFree(t);
      },
      { config: { storage: { hide: "*.2", deny: "" } } },
    );
  });

  it("the name taken at the create and every other one denied: 550 from the open, its port back, the session goes on", async () => {
    await withServer(
      async (t) => {
        const home = t.home("alice");
        const raw = await rawLogin(t);
        try {
          await withOpenHook(
            (p, flags) => {
              if (path.basename(p) === "q" && (flags & constants.O_EXCL) !== 0 && !existsSync(path.join(home, "q"))) writeFileSync(path.join(home, "q"), "theirs");
            },
            async () => {
              assert.deepEqual(await stou(raw, "STOU q", "mine"), { code: 550, text: "Permission denied: name not allowed" });
            },
          );
          await portsFree(t);
          await raw.expect("NOOP", 200);
          assert.deepEqual(readdirSync(home), ["q"]);
          assert.equal(readFileSync(path.join(home, "q"), "utf8"), "theirs");
        } finally {
          await raw.close();
        }
        await portsFree(t);
      },
      { config: { storage: { hide: "", deny: "q.*" } } },
    );
  });

  it("four sessions STOU the same name at once on a slow disk: distinct allowed names, each its own bytes", async () => {
    await withServer(
      async (t) => {
        const home = t.home("alice");
        writeFileSync(path.join(home, "c"), "x");
        const raws = await Promise.all([1, 2, 3, 4].map(() => rawLogin(t)));
        backOff(60_000);
        try {
          const made = new Set<string>();
          for (let round = 0; round < 5; round++) {
            const outcomes = await Promise.all(raws.map((r, i) => stou(r, "STOU c", `s${round}-${i}`)));
            for (const [i, o] of outcomes.entries()) {
              const name = madeName(o);
              assert.ok(!/\.(1|3)$/.test(name), name);
              assert.ok(!made.has(name), `${name} made twice`);
              made.add(name);
              assert.equal(readFileSync(path.join(home, name), "utf8"), `s${round}-${i}`);
            }
          }
          assert.equal(made.size, 20);
          for (const r of raws) await r.expect("NOOP", 200);
        } finally {
          backOff(0);
          for (const r of raws) await r.close();
        }
        await portsFree(t);
      },
      { config: { storage: { hide: "*.1,*.3", deny: "" } } },
    );
  });
});
