/**
 * The control connection's line framer (protocol/framing.ts): UTF-8 decoded per whole line, so a
 * character split across reads, two sessions' framers used in turn, and invalid bytes all give the
 * same lines as one read of each line would.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { LineFramer } from "../src/protocol/framing.ts";

function texts(lines: ReturnType<LineFramer["push"]>): string[] {
  return lines.map((l) => (l.kind === "line" ? l.text : "<overlong>"));
}

describe("line framer", () => {
  it("bounds a line at maxLength bytes with its CRLF, in one read or byte by byte, and reports it once", () => {
    for (const split of [false, true]) {
      const f = new LineFramer(8);
      const feed = (text: string): string[] =>
        split ? [...Buffer.from(text)].flatMap((b) => texts(f.push(Buffer.from([b])))) : texts(f.push(Buffer.from(text)));
      assert.deepEqual(feed("ABCDEF\r\n"), ["ABCDEF"], "8 bytes with CRLF");
      assert.deepEqual(feed("ABCDEFG\r\n"), ["<overlong>"], "9 bytes with CRLF");
      assert.deepEqual(feed("ABCDEFG\n"), ["ABCDEFG"], "8 bytes with a bare LF");
      assert.deepEqual(feed("ABCDEFGH\n"), ["<overlong>"], "9 bytes with a bare LF");
      assert.deepEqual(feed("ABCDEFGHIJKL\r\nNOOP\r\n"), ["<overlong>", "NOOP"], "one notice, then the next line");
    }
  });

  it("decodes a UTF-8 character split across reads, with two framers fed in turn", () => {
    const a = new LineFramer(512);
    const b = new LineFramer(512);
    const lineA = Buffer.from("STOR Grüße 日本.txt\r\n");
    const lineB = Buffer.from("MKD Ordner ü\r\n");
    const cutA = lineA.indexOf(0xc3) + 1; // inside the two bytes of "ü"
    const cutB = lineB.length - 3; // inside "ü" too
    assert.deepEqual(texts(a.push(lineA.subarray(0, cutA))), []);
    assert.deepEqual(texts(b.push(lineB.subarray(0, cutB))), []);
    assert.deepEqual(texts(a.push(lineA.subarray(cutA))), ["STOR Grüße 日本.txt"]);
    assert.deepEqual(texts(b.push(lineB.subarray(cutB))), ["MKD Ordner ü"]);
  });

  it("turns invalid UTF-8 into U+FFFD, marks that line only, and not a line with a real U+FFFD", () => {
    const f = new LineFramer(512);
    const lines = f.push(Buffer.from([0x43, 0x57, 0x44, 0x20, 0xc3, 0x0d, 0x0a, 0x50, 0x57, 0x44, 0x0d, 0x0a]));
    assert.deepEqual(texts(lines), ["CWD \ufffd", "PWD"]);
    assert.deepEqual(lines.map((l) => l.kind === "line" && l.notUtf8 === true), [true, false]);
    const real = f.push(Buffer.from("CWD \ufffd\r\n"))[0];
    assert.ok(real?.kind === "line" && real.text === "CWD \ufffd" && real.notUtf8 === undefined);
  });

  it("finds ABOR behind every form of Telnet interrupt a client leaves in the stream", () => {
    const f = new LineFramer(512);
    const abor = (prefix: number[]): string[] => texts(f.push(Buffer.concat([Buffer.from(prefix), Buffer.from("ABOR\r\n")])));
    assert.deepEqual(abor([0xff, 0xf4, 0xff, 0xf2]), ["ABOR"]); // IAC IP IAC DM, all in band
    assert.deepEqual(abor([0xff, 0xf4, 0xff]), ["ABOR"]); // lftp: the DM went as urgent data
    assert.deepEqual(abor([0xff, 0xf4, 0xf2]), ["ABOR"]); // BSD ftp: the second IAC went as urgent data
    assert.deepEqual(abor([0xff, 0xf4]), ["ABOR"]);
    assert.deepEqual(abor([0xff, 0xfb, 0x01]), ["ABOR"]); // IAC WILL ECHO
  });

  it("keeps IAC IAC as one 0xFF and the byte after a lone IAC", () => {
    const f = new LineFramer(512);
    const raw = (bytes: number[]): Buffer => {
      const line = f.push(Buffer.from([...bytes, 0x0d, 0x0a]))[0];
      assert.ok(line?.kind === "line");
      return Buffer.from(line.text, "latin1");
    };
    assert.deepEqual([...Buffer.from(texts(f.push(Buffer.from([0x41, 0xff, 0xff, 0x42, 0x0d, 0x0a])))[0] as string)], [0x41, 0xef, 0xbf, 0xbd, 0x42]);
    assert.equal(raw([0x41, 0xff, 0x42]).toString("latin1"), "AB");
    assert.equal(raw([0x41, 0xff]).toString("latin1"), "A");
  });
  it("gives the same lines whatever the reads: whole, byte by byte or cut at random, for ASCII and other bytes, CRs, IACs and lines near the bound", () => {
    // A fixed generator, so a failure repeats.
    let seed = 12345;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const alphabet = [0x41, 0x61, 0x20, 0x2f, 0x30, 0x0d, 0x00, 0x09, 0x7f, 0xc3, 0xa9, 0xe2, 0x82, 0xac, 0xff, 0xf4, 0xf2, 0x80];
    for (let round = 0; round < 300; round++) {
      const bytes: number[] = [];
      const lines = 1 + rand(6);
      for (let l = 0; l < lines; l++) {
        const len = rand(4) === 0 ? 14 + rand(4) : rand(12);
        for (let k = 0; k < len; k++) bytes.push(rand(3) === 0 ? (alphabet[rand(alphabet.length)] as number) : 0x41 + rand(26));
        if (rand(2) === 0) bytes.push(0x0d);
        bytes.push(0x0a);
      }
      if (rand(3) === 0) bytes.push(0x41, 0x42);
      const data = Buffer.from(bytes);
      const feed = (cuts: number[]): ReturnType<LineFramer["push"]> => {
        const f = new LineFramer(16);
        const out: ReturnType<LineFramer["push"]> = [];
        let at = 0;
        for (const c of [...cuts, data.length]) {
          out.push(...f.push(data.subarray(at, c)));
          at = c;
        }
        return out;
      };
      const whole = feed([]);
      assert.deepEqual(feed(Array.from({ length: data.length }, (_, k) => k)), whole, `byte by byte: ${data.toString("hex")}`);
      const cuts = Array.from({ length: 3 }, () => rand(data.length + 1)).sort((a, b) => a - b);
      assert.deepEqual(feed(cuts), whole, `cut at ${cuts.join(",")}: ${data.toString("hex")}`);
    }
  });
});

