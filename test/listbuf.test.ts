/**
 * Listings built in pooled memory (data/listbuf.ts): the bytes are exactly the UTF-8 of the lines,
 * in every size and across chunk boundaries, and a pooled buffer is reused only once the data
 * connection that sent it has closed, so a slow reader never sees another listing's bytes.
 */
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { ListingBuffer, listingPool, pooledListingBuffers } from "../src/data/listbuf.ts";
import { readAll } from "./helpers/raw.ts";
import { rawLogin, withServer } from "./helpers/run.ts";
import { socketPair } from "./helpers/sockets.ts";

function expected(lines: readonly string[]): Buffer {
  return Buffer.from(lines.map((l) => l + "\r\n").join(""), "utf8");
}

void describe("ListingBuffer", () => {
  for (const [name, count, make] of [
    ["nothing", 0, (i: number) => `x${i}`],
    ["one short line", 1, (i: number) => `-rw-r--r-- 1 ftp ftp 0 Jan  1 00:00 f${i}`],
    ["lines past several chunks and buffer growths", 40_000, (i: number) => `-rw-r--r--    1 ftp      ftp   ${i} Jan  1 00:00 file-${i}`],
    ["multi-byte names across chunk boundaries", 9_000, (i: number) => `type=file;size=${i}; Grüße-日本語-🚀-${i}`],
  ] as const) {
    void it(`holds exactly the lines' UTF-8: ${name}`, () => {
      const lines = Array.from({ length: count }, (_, i) => make(i));
      const b = new ListingBuffer();
      for (const l of lines) b.add(l);
      const bytes = b.bytes();
      assert.ok(bytes.equals(expected(lines)));
      b.release();
    });
  }

  void it("holds exactly the lines' UTF-8 whatever size it was told to expect: none, too small, exact, far too large", () => {
    const lines = Array.from({ length: 30_000 }, (_, i) => `type=file;size=${i}; Grüße-日本語-🚀-${i}`);
    const want = expected(lines);
    for (const hint of [0, 1000, want.length, want.length * 10]) {
      const b = new ListingBuffer(hint);
      for (const l of lines) b.add(l);
      assert.ok(b.bytes().equals(want), `expected ${hint} bytes`);
      b.release();
    }
  });

  void it("keeps released buffers for later listings, a few at most", () => {
    const held: ListingBuffer[] = [];
    for (let n = 0; n < 8; n++) {
      const b = new ListingBuffer();
      for (let i = 0; i < 5_000; i++) b.add(`line ${n} ${i} ${"x".repeat(40)}`);
      b.bytes();
      held.push(b);
    }
    for (const b of held) b.release();
    const kept = pooledListingBuffers();
    assert.ok(kept >= 1 && kept <= 4, `${kept} buffers kept`);
    // A later listing takes one of them and gives it back.
    const again = new ListingBuffer();
    for (let i = 0; i < 5_000; i++) again.add(`again ${i} ${"y".repeat(40)}`);
    again.bytes();
    assert.equal(pooledListingBuffers(), kept - 1);
    again.release();
    assert.equal(pooledListingBuffers(), kept);
  });

  void it("goes back to the pool only once the socket sending it has closed, so a slow reader gets its own bytes", async () => {
    // More than the kernel holds for a reader that does not read, so most of it waits in the
    // buffer; the pool is told to keep a buffer that large.
    const saved = { ...listingPool };
    listingPool.maxBytes = 64 << 20;
    try {
      const lines = (tag: string): string[] => Array.from({ length: 240_000 }, (_, i) => `${tag} ${i} ${"z".repeat(80)}`);
      const first = new ListingBuffer();
      for (const l of lines("first")) first.add(l);
      const [server, client] = await socketPair();
      client.pause();
      const want = expected(lines("first"));
      server.end(first.bytes());
      first.releaseAfter(server);
      // Not closed yet (the reader has not read): the buffer is still this listing's.
      const before = pooledListingBuffers();
      const second = new ListingBuffer();
      for (const l of lines("second")) second.add(l);
      assert.ok(second.bytes().equals(expected(lines("second"))));
      second.release();
      const reading = readAll(client);
      client.resume();
      assert.ok((await reading).equals(want), "the slow reader got another listing's bytes");
      if (!server.closed) await new Promise((resolve) => server.once("close", resolve));
      assert.ok(pooledListingBuffers() >= Math.min(before + 1, listingPool.buffers));
    } finally {
      Object.assign(listingPool, saved);
    }
  });

  void it("refuses a second bytes() call", () => {
    const b = new ListingBuffer();
    b.add("a");
    b.bytes();
    assert.throws(() => b.bytes());
  });
});

void describe("large listings over a real server", () => {
  void it("a client that reads its listing slowly gets its own bytes while other listings are made", async () => {
    await withServer(async (t) => {
      const home = t.home("alice");
      const names = (tag: string): string[] => Array.from({ length: 2_000 }, (_, i) => `${tag}-${String(i).padStart(5, "0")}-${"n".repeat(190)}`);
      for (const tag of ["slow", "fast"]) {
        await mkdir(join(home, tag));
        await Promise.all(names(tag).map((n) => writeFile(join(home, tag, n), "")));
      }
      const slow = await rawLogin(t);
      const fast = await rawLogin(t);
      try {
        // The slow listing is sent, and its data socket not read yet.
        const data = await slow.pasv();
        data.pause();
        slow.send("NLST slow");
        await slow.expectReply(150);
        // Meanwhile other listings take buffers from the pool and fill them.
        for (let i = 0; i < 6; i++) {
          const d = await fast.pasv();
          fast.send("NLST fast");
          const got = await readAll(d);
          assert.deepEqual(got.toString("utf8").split("\r\n").filter(Boolean).sort(), names("fast").map((n) => `fast/${n}`));
          await fast.expectReply(150);
          await fast.expectReply(226);
        }
        const reading = readAll(data);
        data.resume();
        const got = await reading;
        assert.deepEqual(got.toString("utf8").split("\r\n").filter(Boolean).sort(), names("slow").map((n) => `slow/${n}`));
        await slow.expectReply(226);
      } finally {
        await slow.close();
        await fast.close();
      }
    });
  });
});
