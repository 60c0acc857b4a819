/**
 * The reply writer (protocol/reply.ts): a CR, LF or NUL in a reply's text (a file name echoed in
 * it) can never start another reply line, wherever it is in the text and however the text was
 * made; multi-line replies take the RFC 959 form.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { formatBlockReply, formatReply, stripControl } from "../src/protocol/reply.ts";

/** A text joined from parts at run time, as reply texts with a name in them are. */
function joined(...parts: string[]): string {
  let s = "";
  for (const p of parts) s = `${s}${p}`;
  return s;
}

describe("reply writer", () => {
  it("writes a clean one-line text as it is", () => {
    assert.equal(formatReply(200, "NOOP ok"), "200 NOOP ok\r\n");
    assert.equal(formatReply(150, joined("Opening BINARY mode data connection for ", "é€😀.bin", " (4096 bytes)")), "150 Opening BINARY mode data connection for é€😀.bin (4096 bytes)\r\n");
    assert.equal(formatReply(226, ""), "226 \r\n");
    // Control characters other than CR, LF and NUL are no line break, and stay.
    assert.equal(formatReply(257, '"/a\tb\x0bc\x0c"'), '257 "/a\tb\x0bc\x0c"\r\n');
  });

  it("drops a NUL and a CR anywhere, and takes an LF as the start of another line of one reply", () => {
    for (const [text, want] of [
      ["\0name", "550 name\r\n"],
      ["na\0me", "550 name\r\n"],
      ["name\0", "550 name\r\n"],
      ["na\rme", "550 name\r\n"],
      ["name\r", "550 name\r\n"],
      ["a\nb", "550-a\r\n550 b\r\n"],
      ["a\r\nb", "550-a\r\n550 b\r\n"],
      ["a\nb\nc", "550-a\r\n b\r\n550 c\r\n"],
    ] as const) {
      for (const t of [text, joined("", ...text.split(""))]) {
        const out = formatReply(550, t);
        assert.equal(out, want, JSON.stringify(t));
        // Every line but the last starts with the code and "-" or a space; only the last is "550 ".
        const lines = out.split("\r\n").slice(0, -1);
        assert.ok(lines.slice(0, -1).every((l) => !l.startsWith("550 ")), out);
      }
    }
  });

  it("cleans every line of a multi-line reply, and the middle lines of a block reply", () => {
    assert.equal(formatReply(211, ["first\0", "mid\rdle", "last"]), "211-first\r\n middle\r\n211 last\r\n");
    assert.equal(formatBlockReply(211, "Features:", [" MDTM", " X\r\n211 forged"], "End"), "211-Features:\r\n MDTM\r\n X211 forged\r\n211 End\r\n");
    assert.equal(stripControl(joined("a", "\r", "b\n", "\0c")), "abc");
    assert.equal(stripControl("clean"), "clean");
  });
});
