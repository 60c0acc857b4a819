/**
 * limits.stalledTimeout for downloads sent from the event loop (sendfile off, TYPE A, PROT P, a
 * bandwidth limit) and for listings: a client that stops reading has its transfer aborted with 426
 * once nothing has moved for the limit, not about twice the limit later (Node passes over a
 * socket's first idle timeout while the size of its write queue differs from when the last write
 * was dispatched).
 */
import assert from "node:assert/strict";
import { mkdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { describe, it } from "node:test";
import { FtpsControl } from "./helpers/ftps.ts";
import { RawClient } from "./helpers/raw.ts";
import { withServer } from "./helpers/run.ts";
import type { ConfigPatch, TestServer } from "./helpers/server.ts";

/** Far more than the loopback's socket buffers hold. */
const BIG = 32 << 20;
const STALL_S = 2;
/** The limit, plus what the check may add (a quarter of it) and room for a busy machine. */
const LATEST_MS = STALL_S * 1000 * 1.6;

async function bigFile(t: TestServer): Promise<void> {
  await writeFile(join(t.home("alice"), "big.bin"), Buffer.alloc(BIG, 7));
}

/** Ms from the client's stop (once the first bytes came) to the 426; `stopped` runs once the
 * client has stopped reading. */
async function stalledPlain(t: TestServer, type: "I" | "A", stopped?: () => Promise<void>): Promise<number> {
  const raw = await RawClient.connect(t.port);
  try {
    await raw.login();
    await raw.expect(`TYPE ${type}`, 200);
    const data = await raw.pasv();
    data.on("error", () => undefined);
    raw.send("RETR big.bin");
    await raw.expectReply(150);
    await new Promise((resolve) => data.once("data", resolve));
    data.pause();
    const pausedAt = performance.now();
    await stopped?.();
    const r = await raw.expectReply(426, 10_000);
    const ms = performance.now() - pausedAt;
    assert.match(r.message, /no data moved/);
    data.destroy();
    await raw.expect("NOOP", 200);
    return ms;
  } finally {
    await raw.close();
  }
}

async function stalledTls(t: TestServer): Promise<number> {
  const c = await FtpsControl.explicit(t.port);
  try {
    await c.login();
    await c.protect();
    await c.expect("TYPE I", 200);
    const port = await c.epsv();
    c.send("RETR big.bin");
    const data = await c.tlsData(port);
    assert.equal((await c.reply()).code, 150);
    await data.handshake;
    await new Promise((resolve) => data.socket.once("data", resolve));
    data.socket.pause();
    const stopped = Date.now();
    const r = await c.reply(10_000);
    const ms = Date.now() - stopped;
    assert.equal(r.code, 426, r.text);
    assert.match(r.text, /no data moved/);
    data.raw.destroy();
    await c.expect("NOOP", 200);
    return ms;
  } finally {
    c.destroy();
  }
}

describe("a download the client stops reading is aborted after limits.stalledTimeout, not twice it", () => {
  const cases: { name: string; config: ConfigPatch; run: (t: TestServer) => Promise<number> }[] = [
    { name: "binary, transfer.sendfile off", config: { transfer: { sendfile: false } }, run: (t) => stalledPlain(t, "I") },
    { name: "TYPE A", config: {}, run: (t) => stalledPlain(t, "A") },
    { name: "PROT P", config: { tls: { mode: "explicit" } }, run: stalledTls },
    { name: "under a bandwidth limit", config: { bandwidth: { transferDown: 1 << 30 } }, run: (t) => stalledPlain(t, "I") },
  ];
  for (const c of cases) {
    it(c.name, async () => {
      await withServer(
        async (t) => {
          await bigFile(t);
          const ms = await c.run(t);
          assert.ok(ms >= STALL_S * 1000 - 100, `426 after ${ms} ms, before the limit`);
          assert.ok(ms <= LATEST_MS, `426 after ${ms} ms; limits.stalledTimeout is ${STALL_S * 1000} ms`);
        },
        { config: { ...c.config, limits: { stalledTimeout: STALL_S } } },
      );
    });
  }
});

describe("the stall clock is steady", () => {
  it("the wall clock set back an hour (NTP, a restored virtual machine) while a client has stopped reading: the 426 still comes after the limit, not an hour later", async () => {
    await withServer(
      async (t) => {
        await bigFile(t);
        const realNow = Date.now;
        try {
          // 10 s for the 426 (stalledPlain): the limit is 2 s; a clock taken from the wall would wait
          // for an hour more.
          await stalledPlain(t, "I", async () => {
            // Half the limit on, the socket buffers are full and the stall is being counted.
            await new Promise((resolve) => setTimeout(resolve, (STALL_S * 1000) / 2));
            Date.now = () => realNow() - 3_600_000;
          });
        } finally {
          Date.now = realNow;
        }
      },
      { config: { transfer: { sendfile: false }, limits: { stalledTimeout: STALL_S } } },
    );
  });
});

/** Entries of 240-character names: a LIST of them is far more than the socket buffers hold. */
const ENTRIES = 36_000;
/** What the client reads of it before it stops. */
const READ_FIRST = 256 << 10;

describe("a listing the client stops reading is aborted after limits.stalledTimeout, not twice it", () => {
  it("LIST of a large directory", async () => {
    await withServer(
      async (t) => {
        const dir = join(t.home("alice"), "many");
        await mkdir(dir);
        for (let i = 0; i < ENTRIES; i += 500) {
          await Promise.all(Array.from({ length: 500 }, (_, j) => writeFile(join(dir, `${String(i + j).padStart(6, "0")}${"n".repeat(234)}`), "")));
        }
        const raw = await RawClient.connect(t.port);
        try {
          await raw.login();
          const data = await raw.pasv();
          data.on("error", () => undefined);
          raw.send("LIST many");
          await raw.expectReply(150, 10_000);
          // Some of it read, then no more: the server has queued the rest by then.
          let got = 0;
          await new Promise<void>((resolve) => {
            data.on("data", (c: Buffer) => {
              got += c.length;
              if (got < READ_FIRST) return;
              data.pause();
              resolve();
            });
          });
          const stopped = Date.now();
          const r = await raw.reply(10_000);
          const ms = Date.now() - stopped;
          assert.equal(r.code, 426, r.lines.join(" | "));
          data.destroy();
          assert.ok(ms >= STALL_S * 1000 - 100, `426 after ${ms} ms, before the limit`);
          assert.ok(ms <= LATEST_MS, `426 after ${ms} ms; limits.stalledTimeout is ${STALL_S * 1000} ms`);
          await raw.expect("NOOP", 200);
        } finally {
          await raw.close();
        }
      },
      { config: { limits: { stalledTimeout: STALL_S } } },
    );
  });
});
