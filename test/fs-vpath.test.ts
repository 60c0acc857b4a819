import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { FtpError } from "../src/protocol/errors.ts";
import type { VirtualPath } from "../src/fs/types.ts";
import { basename, dirname, isPlainName, joinVirtual, namesDirectory, quote257, resolveVirtual, ROOT } from "../src/fs/vpath.ts";
import { toReal } from "../src/fs/contain.ts";
import type { RealPath } from "../src/fs/types.ts";
import path from "node:path";

const v = (s: string): VirtualPath => s as VirtualPath;

function rejectsWith(fn: () => unknown, code: number, message: string): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof FtpError);
    assert.equal(err.code, code);
    assert.equal(err.message, message);
    return true;
  });
}

void describe("resolveVirtual", () => {
  const cases: Array<[cwd: string, arg: string, expected: string]> = [
    ["/", "", "/"],
    ["/a/b", "", "/a/b"],
    ["/", "a", "/a"],
    ["/a", "b/c", "/a/b/c"],
    ["/a/b", "..", "/a"],
    ["/a/b", "../..", "/"],
    ["/", "..", "/"],
    ["/", "../../etc/passwd", "/etc/passwd"],
    ["/a", "/../..", "/"],
    ["/a", "\\..\\..", "/"],
    ["/a", "a\\b", "/a/a/b"],
    ["/", "a/../../..", "/"],
    ["/x", "/abs/path", "/abs/path"],
    ["/", "//a///b//", "/a/b"],
    ["/", "./a/./b/.", "/a/b"],
    ["/", "%2e%2e/", "/%2e%2e"],
    ["/", "%2e%2e%2f..", "/%2e%2e%2f.."],
    ["/", "...", "/..."],
    ["/", "a b/ c ", "/a b/ c "],
    ["/", 'quo"te', '/quo"te'],
    ["/", "ünïcødé/日本", "/ünïcødé/日本"],
    ["/a/b/c", "../../../../../../x", "/x"],
    // "~" leading, alone or before a slash, is the home (the root); anywhere else, a name.
    ["/a", "~", "/"],
    ["/a", "~/", "/"],
    ["/a", "~/b/c", "/b/c"],
    ["/a", "~\\b", "/b"],
    ["/a", "~/../..", "/"],
    ["/a", "~root/.ssh", "/a/~root/.ssh"],
    ["/a", "./~", "/a/~"],
    ["/a", "b/~", "/a/b/~"],
    ["/a", "~~", "/a/~~"],
  ];
  for (const [cwd, arg, expected] of cases) {
    void it(`${JSON.stringify(arg)} from ${cwd} → ${expected}`, () => {
      assert.equal(resolveVirtual(v(cwd), arg), expected);
    });
  }

  void it("lists each name of the argument a .. steps back out of, never one of the cwd", () => {
    const cases: [string, string, string, string[]][] = [
      ["/", "a.txt/../b.txt", "/b.txt", ["/a.txt"]],
      ["/d", "x/y/../../z", "/d/z", ["/d/x/y", "/d/x"]],
      ["/d", "../e/..", "/", ["/e"]],
      ["/d/e", "/a\\..\\b", "/b", ["/a"]],
      ["/", "../../a", "/a", []],
      ["/d", "./x/./..", "/d", ["/d/x"]],
      ["/", "a/b", "/a/b", []],
    ];
    for (const [cwd, arg, expected, through] of cases) {
      const walked: VirtualPath[] = [];
      assert.equal(resolveVirtual(v(cwd), arg, walked), expected, arg);
      assert.deepEqual(walked, through, arg);
    }
  });

  void it("refuses NUL and every other control character with 501", () => {
    for (const arg of ["a\0b", "\0", "a\r\nDELE x", "tab\there", "\x1f"]) {
      rejectsWith(() => resolveVirtual(ROOT, arg), 501, "Invalid character in path");
    }
  });

  void it("refuses a segment over 255 UTF-8 bytes with 553", () => {
    assert.equal(resolveVirtual(ROOT, "a".repeat(255)), "/" + "a".repeat(255));
    rejectsWith(() => resolveVirtual(ROOT, "a".repeat(256)), 553, "File name not allowed");
    // 128 two-byte characters = 256 bytes
    rejectsWith(() => resolveVirtual(ROOT, "é".repeat(128)), 553, "File name not allowed");
  });

  void it("refuses a path over 4096 bytes with 553", () => {
    const long = Array.from({ length: 20 }, () => "b".repeat(250)).join("/");
    rejectsWith(() => resolveVirtual(ROOT, long), 553, "File name not allowed");
    const cwd = resolveVirtual(ROOT, Array.from({ length: 16 }, () => "c".repeat(250)).join("/"));
    rejectsWith(() => resolveVirtual(cwd, "d".repeat(200)), 553, "File name not allowed");
  });
});

void describe("path helpers", () => {
  void it("basename and dirname", () => {
    assert.equal(basename(ROOT), "");
    assert.equal(basename(v("/a")), "a");
    assert.equal(basename(v("/a/b c")), "b c");
    assert.equal(dirname(ROOT), "/");
    assert.equal(dirname(v("/a")), "/");
    assert.equal(dirname(v("/a/b/c")), "/a/b");
  });

  void it("joinVirtual joins one plain name and refuses the rest", () => {
    assert.equal(joinVirtual(ROOT, "a"), "/a");
    assert.equal(joinVirtual(v("/a"), "b"), "/a/b");
    for (const bad of ["", ".", "..", "a/b", "a\nb", "\0"]) {
      rejectsWith(() => joinVirtual(ROOT, bad), 553, "File name not allowed");
    }
    assert.equal(isPlainName("a\\b"), true);
  });

  void it("namesDirectory: a name ending in /, /. or /.. (a backslash read as /) names a directory; . and .. alone are the cwd's", () => {
    for (const arg of ["f/", "f\\", "f/.", "f/..", "f\\.", "f\\..", "/.", "a/b/.", "./"]) assert.equal(namesDirectory(arg), true, arg);
    for (const arg of ["f", "f.", "f..", "f...", "f/...", ".", "..", ".f", "f/.f", "f/..f"]) assert.equal(namesDirectory(arg), false, arg);
  });

  void it("quote257 doubles quotes (RFC 959 appendix II)", () => {
    assert.equal(quote257(ROOT), '"/"');
    assert.equal(quote257(v('/a"b/"c"')), '"/a""b/""c"""');
  });
});

/** resolveVirtual step by step, as the RFC says it (the slow path, without its length limits). */
function reference(cwd: string, arg: string): string {
  const segments = arg.replaceAll("\\", "/").startsWith("/") ? [] : cwd.split("/").filter((x) => x !== "");
  for (const seg of arg.replaceAll("\\", "/").split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") segments.pop();
    else segments.push(seg);
  }
  return "/" + segments.join("/");
}

void describe("the one-pass paths agree with the step-by-step ones", () => {
  // Pieces that each take either way: plain names, dots, empty segments, backslashes, odd
  // characters, names at and over the lengths the one-pass check takes.
  const pieces = ["a", "bc", ".", "..", "...", ".a", "a.", "", "é", "日本", "😀", "a b", "\\", "x".repeat(85), "y".repeat(86), "z".repeat(300), "日".repeat(85), "日".repeat(86)];
  // mulberry32: a seeded generator whose every output bit varies (plain multiplication in
  // doubles loses the low bits, and a short cycle would leave pieces out).
  let seed = 7;
  const rnd = (n: number): number => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) % n;
  };
  const randomPath = (): string => {
    const parts: string[] = [];
    for (let i = rnd(5); i >= 0; i--) parts.push(pieces[rnd(pieces.length)] as string);
    return (rnd(2) === 0 ? "/" : "") + parts.join(rnd(6) === 0 ? "//" : "/") + (rnd(8) === 0 ? "/" : "");
  };

  void it("resolveVirtual, for 20,000 generated arguments against generated cwds", () => {
    for (let i = 0; i < 20_000; i++) {
      // A cwd is always a path resolveVirtual made (names within the limits).
      const cwd = reference("/", randomPath().replaceAll("z".repeat(300), "z").replaceAll("日".repeat(86), "日"));
      const arg = randomPath();
      const want = reference(cwd, arg);
      // Refused: a result over 4,096 bytes, or any name of the argument over 255 (even one a
      // later ".." takes back).
      const names = arg.replaceAll("\\", "/").split("/");
      const tooLong = Buffer.byteLength(want) > 4096 || names.some((x) => Buffer.byteLength(x) > 255);
      if (tooLong) rejectsWith(() => resolveVirtual(v(cwd), arg), 553, "File name not allowed");
      else assert.equal(resolveVirtual(v(cwd), arg), want, `cwd ${JSON.stringify(cwd)} arg ${JSON.stringify(arg)}`);
    }
  });

  void it("resolveVirtual, for paths at 4,096 bytes made of names at 255 (fewer units than bytes)", () => {
    for (const name of ["日".repeat(85), "d".repeat(255), "😀".repeat(63)]) {
      for (let count = 10; count <= 20; count++) {
        const arg = "/" + Array.from({ length: count }, () => name).join("/");
        if (Buffer.byteLength(arg) > 4096) rejectsWith(() => resolveVirtual(ROOT, arg), 553, "File name not allowed");
        else assert.equal(resolveVirtual(ROOT, arg), arg);
        const rel = Array.from({ length: count }, () => name).join("/");
        const cwd = v("/" + name);
        if (Buffer.byteLength(rel) + 1 + Buffer.byteLength(cwd) > 4096) rejectsWith(() => resolveVirtual(cwd, rel), 553, "File name not allowed");
        else assert.equal(resolveVirtual(cwd, rel), `${cwd}/${rel}`);
      }
    }
  });

  void it("toReal is path.join of the root and the names, temp names and bad segments refused", () => {
    for (const root of ["/srv/ftp/alice", "/"]) {
      for (let i = 0; i < 5_000; i++) {
        let vpath: string;
        try {
          vpath = resolveVirtual(ROOT, randomPath());
        } catch {
          continue;
        }
        assert.equal(toReal(root as RealPath, v(vpath)), path.join(root, ...vpath.split("/").filter((x) => x !== "")));
      }
      assert.equal(toReal(root as RealPath, ROOT), root);
      for (const bad of ["/a/.berth-upload-1234", "/.berth-upload-x/b", "/a/../b", "/a/./b", "/a\nb"]) {
        rejectsWith(() => toReal(root as RealPath, v(bad)), 553, "File name not allowed");
      }
    }
  });
});
