/** Name patterns of LIST and NLST arguments (fs/glob.ts). */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { compileGlob, globMatch, globOf } from "../src/fs/glob.ts";

describe("name patterns", () => {
  it("finds the pattern in the last component only", () => {
    assert.equal(globOf("*.txt"), "*.txt");
    assert.equal(globOf("sub/a?.txt"), "a?.txt");
    assert.equal(globOf("sub\\a?.txt"), "a?.txt", "a backslash is a slash, as in every path");
    assert.equal(globOf("/x/[ab].txt"), "[ab].txt");
    assert.equal(globOf("s*b/a.txt"), null);
    assert.equal(globOf("plain.txt"), null);
    assert.equal(globOf(""), null);
  });

  it("matches *, ? and sets as a shell does", () => {
    const table: [string, string, boolean][] = [
      ["*.txt", "a.txt", true],
      ["*.txt", ".txt", false], // a leading dot is matched only by a dot
      [".*", ".hidden", true],
      ["*.txt", "a.txt.bak", false],
      ["*", "anything at all", true],
      ["a*b*c", "aXXbYYc", true],
      ["a*b*c", "aXXbYY", false],
      ["a?c", "abc", true],
      ["a?c", "ac", false],
      ["a?c", "aüc", true], // one character, not one byte
      ["a?c", "a\u{1F600}c", true], // nor one UTF-16 unit
      ["[\u{1F600}x]*", "\u{1F600}.txt", true],
      ["[abc]1", "b1", true],
      ["[a-c]1", "d1", false],
      ["[!a-c]1", "d1", true],
      ["[^a-c]1", "a1", false],
      ["[]]x", "]x", true],
      ["[a", "[a", true], // an unclosed set is a literal "["
      ["***", "", true],
      ["", "", true],
      ["", "a", false],
    ];
    for (const [pattern, name, want] of table) assert.equal(globMatch(pattern, name), want, `${pattern} ~ ${name}`);
  });

  it("answers patterns made to backtrack (a backtracking matcher would not finish: 200 stars over 255 characters)", () => {
    assert.equal(globMatch(`${"a*".repeat(200)}b`, "a".repeat(255)), false);
    assert.equal(globMatch(`${"a*".repeat(200)}`, "a".repeat(255)), true);
  });

  it("answers a pattern of unclosed sets over a directory of long names (one that looked for each set's end at every try would take minutes)", () => {
    // "[" with no "]" is a literal "[": 253 of them after a star, tried at every position of
    // every name, each one scanned to the end of the pattern for its "]".
    const matches = compileGlob(`*${"[".repeat(253)}a`);
    const names = Array.from({ length: 5000 }, (_, i) => `${"[".repeat(250)}${String(i).padStart(4, "0")}`);
    assert.equal(names.filter(matches).length, 0);
    assert.equal(matches(`x${"[".repeat(253)}a`), true);
    assert.equal(compileGlob("[ab")("[ab"), true);
    assert.equal(compileGlob("[*")("[anything"), true, "after an unclosed [ the rest is pattern again");
  });
});
