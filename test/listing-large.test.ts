/**
 * Listings of a directory large enough to be stat'ed from both ends at once (the stat worker takes
 * the second half, fs/listing.ts): over real sockets, LIST, MLSD and STAT show every entry with
 * the facts lstat gives it, whether the main thread's half is stat'ed by synchronous calls or
 * through the pool (after a slow disk), links inward by their target, hidden and denied names as
 * the configuration says. A listing that removes thousands of upload temp files left behind
 * leaves the other sessions their turns meanwhile.
 */
import assert from "node:assert/strict";
import type { Stats } from "node:fs";
import { chmod, lstat, mkdir, readdir, symlink, utimes, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import * as quick from "../src/fs/quick.ts";
import { readAll, type RawClient } from "./helpers/raw.ts";
import { rawLogin, withServer } from "./helpers/run.ts";

/** More than the 2,048 entries from which the main thread and the worker share a directory. */
const COUNT = 2600;

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];

/** Entry `i`: a file of i % 997 bytes (every 50th a directory, every 7th mode 0600). */
function entryName(i: number): string {
  return `e${String(i).padStart(5, "0")}${i % 50 === 0 ? "-dir" : ""}`;
}

async function makeTree(dir: string): Promise<void> {
  await mkdir(dir);
  for (let i = 0; i < COUNT; i += 200) {
    await Promise.all(
      Array.from({ length: Math.min(200, COUNT - i) }, async (_, j) => {
        const n = i + j;
        const p = join(dir, entryName(n));
        if (n % 50 === 0) await mkdir(p);
        else {
          await writeFile(p, "x".repeat(n % 997));
          if (n % 7 === 0) await chmod(p, 0o600);
        }
      }),
    );
  }
  await symlink(entryName(3), join(dir, "zz-in-link"));
  await symlink("/etc/passwd", join(dir, "zz-out-link"));
  await writeFile(join(dir, "zz.part"), "hidden by storage.hide");
  await writeFile(join(dir, "zz.exe"), "denied by storage.deny");
}

/** What `ls -l` (and berth's LIST) shows of a mode: type letter and rwx bits. */
function modeText(type: string, mode: number): string {
  let out = type;
  for (const shift of [6, 3, 0]) {
    const b = (mode >> shift) & 7;
    out += (b & 4 ? "r" : "-") + (b & 2 ? "w" : "-") + (b & 1 ? "x" : "-");
  }
  return out;
}

/** The LIST line berth gives an entry whose lstat (or, for a link inside, its target's) is `st`. */
function expectedListLine(name: string, st: Stats, type: string, now: number): string {
  const m = new Date(Math.floor(st.mtimeMs));
  const day = `${MONTHS[m.getUTCMonth()]} ${String(m.getUTCDate()).padStart(2)}`;
  const recent = now - st.mtimeMs < 15_778_476_000;
  const when = recent ? `${day} ${String(m.getUTCHours()).padStart(2, "0")}:${String(m.getUTCMinutes()).padStart(2, "0")}` : `${day} ${String(m.getUTCFullYear()).padStart(5)}`;
  return `${modeText(type, st.mode)} ${String(st.nlink).padStart(4)} ftp      ftp      ${String(st.size).padStart(8)} ${when} ${name}`;
}

function mdtm(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, "0");
  return `${d.getUTCFullYear()}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}${p(d.getUTCSeconds())}`;
}

async function listing(raw: RawClient, command: string): Promise<string[]> {
  const data = await raw.pasv();
  raw.send(command);
  await raw.expectReply(150);
  const text = (await readAll(data)).toString();
  await raw.expectReply(226);
  assert.ok(text.endsWith("\r\n"), command);
  return text.slice(0, -2).split("\r\n");
}

describe("listings of a directory stat'ed by both threads", () => {
  for (const how of ["synchronous calls", "the pool"] as const) {
    it(`LIST, MLSD and STAT show every entry with its own facts (main thread's half by ${how})`, async () => {
      await withServer(
        async (t) => {
          const dir = join(t.home("alice"), "big");
          await makeTree(dir);
          // The expected lines, from lstat here: sorted by name, hidden names left out, the link
          // inside shown by its target, the one leading out as a link.
          const names = [...Array.from({ length: COUNT }, (_, i) => entryName(i)), "zz-in-link", "zz-out-link", "zz.exe"].sort();
          const facts = new Map<string, { st: Stats; type: string }>();
          for (const name of names) {
            const own = await lstat(join(dir, name));
            if (name === "zz-in-link") facts.set(name, { st: await lstat(join(dir, entryName(3))), type: "-" });
            else facts.set(name, { st: own, type: own.isDirectory() ? "d" : own.isSymbolicLink() ? "l" : "-" });
          }
          const raw = await rawLogin(t);
          try {
            quick.backOff(how === "the pool" ? 60_000 : 0);
            const now = Date.now();
            const list = await listing(raw, "LIST big");
            const mlsd = await listing(raw, "MLSD big");
            const stat = await raw.expect("STAT big", 213);
            quick.backOff(0);
            assert.deepEqual(
              list,
              names.map((n) => {
                const f = facts.get(n);
                assert.ok(f);
                return expectedListLine(n, f.st, f.type, now);
              }),
            );
            assert.deepEqual(
              mlsd,
              names.map((n) => {
                const f = facts.get(n);
                assert.ok(f);
                const type = f.type === "d" ? "dir" : f.type === "l" ? "OS.unix=symlink" : "file";
                const size = type === "file" ? `size=${f.st.size};` : "";
                // A denied name (storage.deny) may only be deleted or renamed away; a link is no file.
                const perm = type === "dir" ? "elcmpdf" : n === "zz.exe" || type !== "file" ? "df" : "rawdf";
                const mode = `0${(f.st.mode & 0o777).toString(8)}`;
                return `type=${type};${size}modify=${mdtm(new Date(Math.floor(f.st.mtimeMs)))};perm=${perm};unix.mode=${mode}; ${n}`;
              }),
            );
            // STAT <dir> is the LIST over the control connection, each line after a space.
            assert.deepEqual(stat.lines, ["213-Status of /big:", ...list.map((l) => ` ${l}`), "213 End of status"]);
            // NLST gives the same names after the argument; a pattern picks among the same
            // entries, hidden names still left out; a file is its own line.
            assert.deepEqual(await listing(raw, "NLST big"), names.map((n) => `big/${n}`));
            assert.deepEqual(
              await listing(raw, "LIST big/e0001*"),
              list.filter((l) => / e0001\d$/.test(l)),
            );
            assert.deepEqual(await listing(raw, "NLST big/zz.*"), ["big/zz.exe"]);
            assert.deepEqual(await listing(raw, `LIST big/${entryName(7)}`), list.filter((l) => l.endsWith(` ${entryName(7)}`)));
            assert.deepEqual(await listing(raw, "LIST big/zz-in-link"), list.filter((l) => l.endsWith(" zz-in-link")));
          } finally {
            quick.backOff(0);
            await raw.close();
          }
        },
        { config: { storage: { hide: "*.part", deny: "*.exe" } } },
      );
    });
  }
});

describe("upload temp files left behind in a large number", () => {
  it("a listing that removes 20,000 of them lets the other sessions' commands run in between", async () => {
    await withServer(
      async (t) => {
        const dir = join(t.home("alice"), "left");
        await mkdir(dir);
        const day = new Date(Date.now() - 25 * 3600_000);
        const left = 20_000;
        for (let i = 0; i < left; i += 500) {
          await Promise.all(
            Array.from({ length: 500 }, async (_, j) => {
              const p = join(dir, `.berth-upload-${(i + j).toString(16).padStart(16, "0")}`);
              await writeFile(p, "x");
              await utimes(p, day, day);
            }),
          );
        }
        await writeFile(join(dir, "kept.txt"), "kept");
        const raw = await rawLogin(t);
        const other = await rawLogin(t);
        try {
          let done = false;
          const pinging = (async () => {
            while (!done) await other.expect("NOOP", 200);
          })();
          const listed = await listing(raw, "NLST left");
          done = true;
          await pinging;
          assert.deepEqual(listed, ["left/kept.txt"]);
          assert.deepEqual(await readdir(dir), ["kept.txt"]);
          assert.equal(t.logs.filter((l) => l.event === "stale-temp").length, left);
          // The other session's NOOPs ran while the removals went on (its commands are logged as
          // they run): a sweep that kept the event loop would have none between its first and last.
          const stale = (l: Record<string, unknown>): boolean => l.event === "stale-temp";
          const from = t.logs.findIndex(stale);
          const to = t.logs.findLastIndex(stale);
          const between = t.logs.slice(from, to).filter((l) => l.event === "command" && l.verb === "NOOP").length;
          assert.ok(between >= 3, `NOOPs run during the removals: ${between}`);
        } finally {
          await raw.close();
          await other.close();
        }
      },
      { logLevel: "debug" },
    );
  });
});
