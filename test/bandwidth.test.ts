/**
 * Bandwidth limits against a real server (issue "Abuse resistance" part 5): a download and an
 * upload capped at 1 MiB/s, a per-user cap shared by two sessions, the per-address and global
 * levels, and a reload changing the rate of a running transfer. The issue asks for these rates to
 * be measured, so these tests assert timings: over about 3 s, from the first byte, within ±10%.
 * Every measurement must stay under the cap's +10%. A measurement under its -10% is taken again,
 * up to three times in all: a busy machine can slow the client between transfers, and only the
 * client; the server is never let through faster than the cap by a retry.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, it } from "node:test";
import { Bandwidth, TokenBucket } from "../src/data/bandwidth.ts";
import { hookStage } from "../src/data/hook.ts";
import { MAX_TIMER_MS } from "../src/config/units.ts";
import { DEFAULTS } from "../src/config/schema.ts";
import { dataConnect, RawClient } from "./helpers/raw.ts";
import { payload, withServer } from "./helpers/run.ts";
import { startTestServer, waitFor, type TestServer } from "./helpers/server.ts";

const MIB = 1 << 20;
const ZERO = DEFAULTS.bandwidth;

/** One timed transfer: bytes moved, and when the first and the last byte moved (ms). */
interface Timed {
  readonly bytes: number;
  readonly first: number;
  readonly last: number;
}

function pasvPort(message: string): number {
  const m = /\(\d+,\d+,\d+,\d+,(\d+),(\d+)\)/.exec(message);
  assert.ok(m, message);
  return Number(m[1]) * 256 + Number(m[2]);
}

async function login(t: TestServer, user: string, local?: string): Promise<RawClient> {
  const c = await RawClient.connect(t.port, "127.0.0.1", local);
  await c.login(user);
  await c.expect("TYPE I", 200);
  return c;
}

/** RETR through the raw client, timed from the first byte received to the last. */
async function timedDownload(c: RawClient, name: string, local?: string): Promise<Timed> {
  const sock = await dataConnect(pasvPort((await c.expect("PASV", 227)).message), "127.0.0.1", local);
  let bytes = 0;
  let first = 0;
  let last = 0;
  sock.on("data", (b: Buffer) => {
    last = performance.now();
    if (bytes === 0) first = last;
    bytes += b.length;
  });
  const closed = once(sock, "close");
  await c.expect(`RETR ${name}`, 150);
  await closed;
  await c.expectReply(226, 30_000);
  return { bytes, first, last };
}

/** STOR through the raw client, timed from the first byte sent to the 226 (all of it on disk). */
async function timedUpload(c: RawClient, name: string, data: Buffer, local?: string): Promise<Timed> {
  const sock = await dataConnect(pasvPort((await c.expect("PASV", 227)).message), "127.0.0.1", local);
  await c.expect(`STOR ${name}`, 150);
  const first = performance.now();
  sock.end(data);
  sock.resume();
  await c.expectReply(226, 30_000);
  return { bytes: data.length, first, last: performance.now() };
}

/** Bytes per second of transfers taken together, from the first first byte to the last last one. */
function rateOf(...runs: Timed[]): number {
  const bytes = runs.reduce((n, r) => n + r.bytes, 0);
  const first = Math.min(...runs.map((r) => r.first));
  const last = Math.max(...runs.map((r) => r.last));
  return bytes / ((last - first) / 1000);
}

const ATTEMPTS = 3;

/**
 * Measures a rate (bytes per second) until it is within ±10% of the cap, at most ATTEMPTS times.
 * Each measurement over the cap's +10% fails at once; only one under its -10% is taken again.
 *
 * A series of transfers each no bigger than the cap's burst reaches the cap only while the client's
 * commands between them take less time than the cap gives each file: otherwise the bucket fills
 * again in the gap and the series goes at the client's pace, under the cap, whatever the server
 * does. `unlimited`, given for such a series, times the same series with no cap; a slow
 * measurement counts only when that pace was well inside the cap's, and when none could be taken
 * so (a machine too busy) the -10% bound is left unmeasured, said through `skip`. The +10% bound
 * is checked on every measurement all the same.
 */
async function assertRate(
  cap: number,
  what: string,
  measure: () => Promise<number>,
  unlimited?: { readonly rate: () => Promise<number>; readonly skip: (why: string) => void },
): Promise<void> {
  const shown = (rate: number): string => `${what}: ${(rate / MIB).toFixed(3)} MiB/s for a cap of ${(cap / MIB).toFixed(3)} MiB/s`;
  const slow: string[] = [];
  const busy: string[] = [];
  for (let i = 0; i < ATTEMPTS; i++) {
    const rate = await measure();
    assert.ok(rate / cap < 1.1, shown(rate));
    if (rate / cap > 0.9) return;
    const pace = unlimited ? await unlimited.rate() : Infinity;
    if (pace < 1.25 * cap) busy.push(`${shown(rate)}, uncapped ${(pace / MIB).toFixed(3)} MiB/s`);
    else slow.push(shown(rate));
  }
  if (slow.length === 0 && unlimited) {
    unlimited.skip(`the -10% bound is unmeasured: the client alone went under 1.25 times the cap in every attempt (${busy.join("; ")})`);
    return;
  }
  assert.fail(`under the cap's -10% in all ${ATTEMPTS} measurements: ${[...slow, ...busy].join("; ")}`);
}

async function putFile(t: TestServer, user: string, name: string, size: number): Promise<void> {
  await writeFile(path.join(t.home(user), name), payload(size));
}

async function bucketsReleased(t: TestServer): Promise<void> {
  assert.ok(await waitFor(() => t.server.context.bandwidth.sharedBuckets === 0, 2000), "shared buckets left over");
}

describe("per-transfer bandwidth", () => {
  it("a wait for the limit longer than limits.stalledTimeout is no stall: a download and an upload end 226 with every byte", async () => {
    await withServer(
      async (t) => {
        const c = await login(t, "alice");
        try {
          await putFile(t, "alice", "slow.bin", 6 * 1024);
          const down = await timedDownload(c, "slow.bin");
          assert.equal(down.bytes, 6 * 1024);
          const data = payload(6 * 1024, 3);
          await timedUpload(c, "slow-up.bin", data);
          assert.deepEqual(await readFile(path.join(t.home("alice"), "slow-up.bin")), data);
        } finally {
          await c.close();
        }
        await bucketsReleased(t);
      },
      // Each paced chunk (1 KiB at least) waits about half a second, longer than the stall limit.
      { config: { limits: { stalledTimeout: 0.3 }, bandwidth: { ...ZERO, transferDown: 2048, transferUp: 2048 } } },
    );
  });

  it("a download and an upload capped at 1 MiB/s run at 1 MiB/s (±10%)", async () => {
    await withServer(
      async (t) => {
        const c = await login(t, "alice");
        try {
          await putFile(t, "alice", "three.bin", 3 * MIB);
          await assertRate(MIB, "download", async () => {
            const down = await timedDownload(c, "three.bin");
            assert.equal(down.bytes, 3 * MIB);
            return rateOf(down);
          });
          await assertRate(MIB, "upload", async () => rateOf(await timedUpload(c, "up.bin", payload(3 * MIB, 5))));
        } finally {
          await c.close();
        }
        await bucketsReleased(t);
      },
      { config: { bandwidth: { ...ZERO, transferDown: MIB, transferUp: MIB } } },
    );
  });
});

describe("shared bandwidth levels", () => {
  it("a user's own cap is shared by two sessions of that user (sum within ±10%)", async () => {
    await withServer(
      async (t) => {
        await putFile(t, "carol", "a.bin", 1.5 * MIB);
        await putFile(t, "carol", "b.bin", 1.5 * MIB);
        const [c1, c2] = await Promise.all([login(t, "carol"), login(t, "carol")]);
        try {
          await assertRate(MIB, "two sessions of one user", async () => {
            const runs = await Promise.all([timedDownload(c1, "a.bin"), timedDownload(c2, "b.bin")]);
            // Fair sharing: neither transfer finished in much less than the whole time.
            const [a, b] = runs as [Timed, Timed];
            assert.ok(Math.abs(a.last - b.last) < 800, `ends ${Math.round(a.last - b.last)} ms apart`);
            return rateOf(...runs);
          });
        } finally {
          await Promise.all([c1.close(), c2.close()]);
        }
        await bucketsReleased(t);
      },
      // The config's userDown (4 MiB/s) is overridden by carol's own 1 MiB/s.
      { config: { bandwidth: { ...ZERO, userDown: 4 * MIB } }, users: [{ name: "carol", password: "carol-pw", bandwidthDown: MIB }] },
    );
  });

  it("the per-address cap is shared by different users from one address", async () => {
    await withServer(
      async (t) => {
        await putFile(t, "alice", "a.bin", 1.5 * MIB);
        await putFile(t, "dave", "d.bin", 1.5 * MIB);
        const [a, d] = await Promise.all([login(t, "alice"), login(t, "dave")]);
        try {
          await assertRate(MIB, "two users from one address", async () =>
            rateOf(...(await Promise.all([timedDownload(a, "a.bin"), timedDownload(d, "d.bin")]))),
          );
        } finally {
          await Promise.all([a.close(), d.close()]);
        }
      },
      { config: { bandwidth: { ...ZERO, addressDown: MIB } }, users: [{ name: "dave", password: "dave-pw" }] },
    );
  });

  it("the global cap is shared by uploads from different addresses", async () => {
    await withServer(
      async (t) => {
        const [a, d] = await Promise.all([login(t, "alice", "127.0.0.1"), login(t, "dave", "127.0.0.2")]);
        try {
          await assertRate(MIB, "uploads from two addresses", async () => {
            const runs = await Promise.all([
              timedUpload(a, "a.bin", payload(1.5 * MIB, 1), "127.0.0.1"),
              timedUpload(d, "d.bin", payload(1.5 * MIB, 2), "127.0.0.2"),
            ]);
            return rateOf(...runs);
          });
        } finally {
          await Promise.all([a.close(), d.close()]);
        }
      },
      { config: { bandwidth: { ...ZERO, globalUp: MIB } }, users: [{ name: "dave", password: "dave-pw" }] },
    );
  });
});

describe("bandwidth across transfers", () => {
  // Each file is one burst's worth (a tenth of a second at the cap): a shared bucket made afresh
  // for each transfer let every one of them through at once, at dozens of times the cap.
  const SMALL = 10 * 1024;
  const CAP = 100 * 1024;

  it("a series of small downloads, then of small uploads, holds the user's cap (±10%)", async (ctx) => {
    await withServer(
      async (t) => {
        await putFile(t, "carol", "small.bin", SMALL);
        await putFile(t, "alice", "small.bin", SMALL);
        const c = await login(t, "carol");
        // alice has no cap: the same series from her is the client's own pace on this machine now.
        const free = await login(t, "alice");
        const skip = (why: string): void => ctx.skip(why);
        const downloads = async (client: RawClient): Promise<number> => {
          const downs: Timed[] = [];
          for (let i = 0; i < 25; i++) downs.push(await timedDownload(client, "small.bin"));
          assert.ok(downs.every((d) => d.bytes === SMALL));
          return rateOf(...downs);
        };
        const uploads = async (client: RawClient): Promise<number> => {
          const ups: Timed[] = [];
          for (let i = 0; i < 25; i++) ups.push(await timedUpload(client, `up${i}.bin`, payload(SMALL, i)));
          return rateOf(...ups);
        };
        try {
          await assertRate(CAP, "25 small downloads in a row", () => downloads(c), { rate: () => downloads(free), skip });
          await assertRate(CAP, "25 small uploads in a row", () => uploads(c), { rate: () => uploads(free), skip });
        } finally {
          await c.close();
          await free.close();
        }
        await bucketsReleased(t);
      },
      { users: [{ name: "carol", password: "carol-pw", bandwidthDown: CAP, bandwidthUp: CAP }] },
    );
  });

  it("a series of small downloads from one address holds the address's cap (±10%)", async (ctx) => {
    // Every address is capped here: the client's own pace is taken against a server with no cap.
    const uncapped = await startTestServer();
    try {
      await putFile(uncapped, "alice", "small.bin", SMALL);
      const free = await login(uncapped, "alice");
      await withServer(
        async (t) => {
          await putFile(t, "alice", "small.bin", SMALL);
          const c = await login(t, "alice");
          const downloads = async (client: RawClient): Promise<number> => {
            const downs: Timed[] = [];
            for (let i = 0; i < 25; i++) downs.push(await timedDownload(client, "small.bin"));
            return rateOf(...downs);
          };
          try {
            await assertRate(CAP, "25 small downloads in a row", () => downloads(c), { rate: () => downloads(free), skip: (why) => ctx.skip(why) });
          } finally {
            await c.close();
            await free.close();
          }
          await bucketsReleased(t);
        },
        { config: { bandwidth: { ...ZERO, addressDown: CAP } } },
      );
    } finally {
      await uncapped.close();
    }
  });
});

describe("bandwidth and reload", () => {
  it("a reload changes the rate of a running download", async () => {
    await withServer(
      async (t) => {
        await putFile(t, "alice", "slow.bin", 2 * MIB); // 8 s at the first rate
        const c = await login(t, "alice");
        try {
          const started = performance.now();
          const running = timedDownload(c, "slow.bin");
          await new Promise((r) => setTimeout(r, 500));
          const result = t.server.reload({ ...t.server.config, bandwidth: { ...ZERO, transferDown: 4 * MIB } });
          assert.ok(result.applied.includes("bandwidth.transferDown"));
          const down = await running;
          assert.equal(down.bytes, 2 * MIB);
          const took = performance.now() - started;
          assert.ok(took < 4000, `took ${Math.round(took)} ms: the new rate did not apply`);
        } finally {
          await c.close();
        }
      },
      { config: { bandwidth: { ...ZERO, transferDown: 256 * 1024 } } },
    );
  });
});

describe("token buckets", () => {
  it("no limit at any level means no hook at all", () => {
    const bw = new Bandwidth(() => ZERO);
    assert.equal(bw.open("down", { user: "u", userRate: 0, address: "a", loggedInAt: 0 }), null);
    assert.equal(bw.sharedBuckets, 0);
    const own = bw.open("up", { user: "u", userRate: 1000, address: "a", loggedInAt: 0 });
    assert.ok(own);
    assert.equal(own.chunkSize(), 1024);
    own.release();
    own.release();
    assert.equal(bw.sharedBuckets, 0);
  });

  it("a user's own rate is that of their latest login: a transfer of a session logged in before a change does not bring back its rate", () => {
    const bw = new Bandwidth(() => ZERO);
    // Logged in with 1 MB/s; the operator then lowers it to 100 kB/s and the user logs in again.
    const before = bw.open("down", { user: "u", userRate: 1_000_000, address: "a", loggedInAt: 1 });
    const after = bw.open("down", { user: "u", userRate: 100_000, address: "a", loggedInAt: 2 });
    assert.ok(before && after);
    // Chunks are a tenth of a second at the slowest rate: 10,000 bytes at 100 kB/s.
    assert.equal(after.chunkSize(), 10_000);
    // The older session starts another download: the user's rate stays the latest login's.
    const again = bw.open("down", { user: "u", userRate: 1_000_000, address: "a", loggedInAt: 1 });
    assert.ok(again);
    assert.equal(after.chunkSize(), 10_000);
    assert.equal(again.chunkSize(), 10_000);
    for (const hook of [before, after, again]) hook.release();
  });

  it("a bucket lets a burst through, then charges the debt as a wait", () => {
    let now = 0;
    const b = new TokenBucket(() => 1000, () => now);
    assert.equal(b.take(100), 0); // 100 ms worth: the burst
    assert.equal(b.take(100), 100);
    now = 1000;
    assert.equal(b.take(50), 0);
  });

  it("a debt longer than the longest timer is waited in parts of that timer, each asked for anew", () => {
    let now = 0;
    // 1 B/s, and 3 MB owed: about 35 days, more than a timer holds (about 24.8 days).
    const b = new TokenBucket(() => 1, () => now);
    assert.equal(b.take(3_000_000), MAX_TIMER_MS);
    now += MAX_TIMER_MS;
    // Nothing more is taken: what is left of the debt, and no less.
    const left = b.take(0);
    assert.ok(Math.abs(left - (3_000_000 * 1000 - 100 - MAX_TIMER_MS)) < 1, String(left));
    now += left;
    assert.equal(b.take(0), 0);
  });

  it("a chunk held by a wait past the longest timer moves only once the wait asked for anew is over", async (ctx) => {
    ctx.mock.timers.enable({ apis: ["setTimeout"] });
    const asked: number[] = [];
    const waits = [MAX_TIMER_MS, 5, 0];
    const stage = hookStage({ chunkSize: () => 1024, take: (n) => (asked.push(n), waits.shift() ?? 0), release: () => undefined });
    const moved: Buffer[] = [];
    stage.on("data", (b: Buffer) => moved.push(b));
    stage.write(Buffer.from("abc"));
    await new Promise((resolve) => setImmediate(resolve));
    ctx.mock.timers.tick(MAX_TIMER_MS);
    await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(moved, [], "the chunk moved after the first part of its wait");
    assert.deepEqual(asked, [3, 0]);
    ctx.mock.timers.tick(5);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(Buffer.concat(moved).toString(), "abc");
    stage.destroy();
  });
});
