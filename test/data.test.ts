/**
 * Data connections against a real server: the passive range (random, bounded, exhausted → 425,
 * released on every path), foreign connections to a passive port, active mode, ABOR and STAT
 * during a transfer, downloads around the buffer sizes (REST, TYPE A, files changing while sent),
 * timeouts, and IPv6.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { closeSync, readdirSync } from "node:fs";
import { appendFile, readdir, readFile, truncate, writeFile } from "node:fs/promises";
import { networkInterfaces } from "node:os";
import { join } from "node:path";
import { connect, createServer, type Socket } from "node:net";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { listenBinding, pendingBinding, receiveBinding, sendfileBinding } from "../src/native.ts";
import { HANDOFF_AT } from "../src/data/receive.ts";
import { SPARE_MS } from "../src/data/passive.ts";
import { hold150 } from "../src/protocol/commands/xfer.ts";
import { afterStrayBytes, dataConnect, listenLocal, RawClient, readAll, retrieve, retrieveText, writeAll } from "./helpers/raw.ts";
import { payload, rawLogin, withServer } from "./helpers/run.ts";
import { freshRange, waitFor, type TestServer } from "./helpers/server.ts";

/** A file big enough that a client that stops reading stalls the transfer half-way. */
const BIG = 16 << 20;

function rangeOf(t: TestServer): { min: number; max: number } {
  const [min, max] = t.config.passive.ports.split("-").map(Number) as [number, number];
  return { min, max };
}

const MIB = 1 << 20;

async function portsReleased(t: TestServer, ms = 2000): Promise<void> {
  assert.ok(await waitFor(() => t.server.context.pool.used === 0, ms), `ports held: ${t.server.context.pool.used}`);
}

function pasvPort(message: string): number {
  const m = /\(\d+,\d+,\d+,\d+,(\d+),(\d+)\)/.exec(message);
  assert.ok(m, message);
  return Number(m[1]) * 256 + Number(m[2]);
}

/** RETR `name` over a new connection to `port` (announced by the caller's PASV/EPSV): its bytes as
 * text, once the 226 has come. */
async function retrOn(raw: RawClient, port: number, name: string): Promise<string> {
  const data = await dataConnect(port);
  raw.send(`RETR ${name}`);
  await raw.expectReply(150);
  const text = (await readAll(data)).toString();
  await raw.expectReply(226);
  return text;
}

/** A port on 127.0.0.1 whose connections are never accepted and whose queue is full, so a connect
 * to it waits without an answer (its SYN is dropped); needs the addon's bare listener. */
async function silentPort(): Promise<{ port: number; close(): void }> {
  const probe = createServer();
  await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve));
  const port = (probe.address() as { port: number }).port;
  await new Promise((resolve) => probe.close(resolve));
  const fd = (listenBinding() as NonNullable<ReturnType<typeof listenBinding>>).listenTcp("127.0.0.1", port, 1);
  assert.ok(fd >= 0, `listen on ${port}: ${fd}`);
  const fillers: Socket[] = [];
  for (let i = 0; i < 4; i++) fillers.push(connect(port, "127.0.0.1").on("error", () => undefined));
  await sleep(200);
  return {
    port,
    close() {
      for (const f of fillers) f.destroy();
      closeSync(fd);
    },
  };
}

describe("passive port range", () => {
  it("takes ports from the range only, answers 425 when exhausted, and reuses freed ports", async () => {
    await withServer(
      async (t) => {
        const { min, max } = rangeOf(t);
        const a = await rawLogin(t);
        const b = await rawLogin(t);
        const c = await rawLogin(t);
        try {
          const pa = pasvPort((await a.expect("PASV", 227)).message);
          const pb = (await b.epsvPort());
          for (const p of [pa, pb]) assert.ok(p >= min && p <= max, `${p} outside ${min}-${max}`);
          assert.notEqual(pa, pb);
          await c.expect("PASV", 425);
          await c.expect("EPSV", 425);
          assert.equal(t.server.context.pool.used, 2);
          await a.expect("ABOR", 226);
          await portsReleasedTo(t, 1);
          const pc = await c.epsvPort();
          assert.equal(pc, pa);
        } finally {
          await Promise.all([a.close(), b.close(), c.close()]);
        }
        await portsReleased(t);
      },
      { config: { passive: { ports: freshRange(2) } } },
    );
  });

  it("holds the port until the transfer ends", async () => {
    await withServer(
      async (t) => {
        await writeFile(join(t.home("alice"), "big.bin"), Buffer.alloc(BIG));
        const a = await rawLogin(t);
        const b = await rawLogin(t);
        try {
          const data = await a.pausedRetr("big.bin");
          await b.expect("EPSV", 425);
          assert.equal(t.server.context.pool.used, 1);
          await a.expect("ABOR", 426);
          await a.expectReply(226);
          data.destroy();
          await b.expect("EPSV", 229);
        } finally {
          await Promise.all([a.close(), b.close()]);
        }
      },
      { config: { passive: { ports: freshRange(1) } } },
    );
  });

  it("a transfer refused before 150: a client connecting late gets a clean end, not a refusal; the port goes back", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t, "bob"); // read-only: STOR is refused before 150
      try {
        for (const refused of ["STOR new.bin", "RETR missing.bin"]) {
          const port = await raw.epsvPort();
          await raw.expect(refused, 550);
          // As FileZilla does when the refusal crosses its connect: the connection still succeeds
          // and ends with a FIN (no ECONNREFUSED, no reset).
          const data = await dataConnect(port);
          const got = await readAll(data);
          assert.equal(got.length, 0);
          assert.equal(data.errored, null);
        }
        // A late client that never comes: the port is back within the grace time.
        await raw.epsvPort();
        await raw.expect("RETR missing.bin", 550);
        assert.ok(await waitFor(() => t.server.context.pool.used === 0, 4000), `ports held: ${t.server.context.pool.used}`);
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
      // Refused by the transfer itself (the quota, before 150), not by the dispatcher's checks.
      const alice = await rawLogin(t, "alice");
      try {
        const port = await alice.epsvPort();
        await alice.expect("ALLO 5000", 202);
        await alice.expect("STOR big.bin", 552);
        const data = await dataConnect(port);
        assert.equal((await readAll(data)).length, 0);
        assert.equal(data.errored, null);
      } finally {
        await alice.close();
      }
      await portsReleased(t);
    }, { config: { quota: { bytes: 1000 } } });
  });

  it("refused transfers repeated at once hold at most one extra port per session", async () => {
    await withServer(
      async (t) => {
        const raw = await rawLogin(t, "alice");
        try {
          // Refused by the dispatcher (a bad path) and by the transfer itself (the quota, before 150),
          // over and over, never connecting: the range of two ports never runs out.
          for (let i = 0; i < 6; i++) {
            await raw.epsvPort();
            if (i % 2 === 0) await raw.expect("RETR ../../etc/passwd", 550);
            else {
              await raw.expect("ALLO 5000", 202);
              await raw.expect("STOR big.bin", 552);
            }
            assert.ok(t.server.context.pool.used <= 1, `ports held: ${t.server.context.pool.used}`);
          }
        } finally {
          await raw.close();
        }
        await portsReleased(t);
      },
      { config: { passive: { ports: freshRange(2) }, quota: { bytes: 1000 } } },
    );
  });

  it("in a range of one port, the PASV/EPSV right after a refused transfer command gets the port, and its transfer works; so does another session's", async () => {
    await withServer(
      async (t) => {
        await writeFile(join(t.home("alice"), "f.txt"), "hello\n");
        await writeFile(join(t.home("bob"), "g.txt"), "bob's\n");
        const raw = await rawLogin(t);
        const other = await rawLogin(t, "bob");
        try {
          await raw.expect("TYPE I", 200);
          // Refused by the transfer (a missing file) and by the dispatcher (a path out of the home),
          // each followed at once by the session's own next request for a port.
          await raw.expect("PASV", 227);
          await raw.expect("RETR missing.bin", 550);
          assert.equal(await retrOn(raw, await raw.epsvPort(), "f.txt"), "hello\n");
          await raw.expect("EPSV", 229);
          await raw.expect("LIST ../../nope", 550);
          assert.equal(pasvPort((await raw.expect("PASV", 227)).message), rangeOf(t).min);
          await raw.expect("ABOR", 226);
          // Another session, while the port is still in its grace time after a refusal.
          await raw.expect("EPSV", 229);
          await raw.expect("RETR missing.bin", 550);
          await other.expect("TYPE I", 200);
          assert.equal(await retrOn(other, await other.epsvPort(), "g.txt"), "bob's\n");
        } finally {
          await Promise.all([raw.close(), other.close()]);
        }
        await portsReleased(t);
      },
      { config: { passive: { ports: freshRange(1) } } },
    );
  });

  it("a client that closes while its PASV waits for passive.address to resolve leaves no port held", async () => {
    await withServer(
      async (t) => {
        // A slow lookup of the configured name (a resolver taking its time), as the server meets it.
        const announce = t.server.context.announce;
        let asked = 0;
        announce.forConnection = async () => {
          asked++;
          await sleep(300);
          return "127.0.0.1";
        };
        const raw = await rawLogin(t);
        raw.send("PASV");
        assert.ok(await waitFor(() => asked === 1, 2000), "PASV asks for the address");
        await raw.close();
        assert.ok(await waitFor(() => t.server.sessions.size === 0, 2000));
        await sleep(500);
        assert.equal(t.server.context.pool.used, 0, "the port of the PASV answered to nobody is back");
      },
      { config: { limits: { dataTimeout: 60 } } },
    );
  });

  it("a second PASV on one session gives back the first port", async () => {
    await withServer(
      async (t) => {
        const raw = await rawLogin(t);
        try {
          for (let i = 0; i < 6; i++) await raw.expect(i % 2 ? "PASV" : "EPSV", i % 2 ? 227 : 229);
          assert.equal(t.server.context.pool.used, 1);
        } finally {
          await raw.close();
        }
        await portsReleased(t);
      },
      { config: { passive: { ports: freshRange(1) } } },
    );
  });

  it("keeps a session's port for its next PASV/EPSV after a transfer, and gives it back after a moment", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "f.txt"), "data");
      const raw = await rawLogin(t);
      try {
        const first = await raw.epsvPort();
        assert.equal(await retrOn(raw, first, "f.txt"), "data");
        assert.equal(t.server.context.pool.used, 1);
        // The next PASV gets the same port; so does the EPSV after that transfer.
        assert.equal(pasvPort((await raw.expect("PASV", 227)).message), first);
        assert.equal(await retrOn(raw, first, "f.txt"), "data");
        assert.equal(await raw.epsvPort(), first);
        const data = await dataConnect(first);
        raw.send("STOR g.txt");
        await raw.expectReply(150);
        await writeAll(data, "up");
        await raw.expectReply(226);
        assert.equal(await readFile(join(t.home("alice"), "g.txt"), "utf8"), "up");
        // No further PASV: the port goes back while the session stays.
        const t0 = Date.now();
        await portsReleased(t, SPARE_MS + 1000);
        assert.ok(Date.now() - t0 >= SPARE_MS - 200, `released after ${Date.now() - t0} ms`);
        await assert.rejects(dataConnect(first), /ECONNREFUSED/);
        await raw.expect("NOOP", 200);
        assert.equal(await retrieveText(raw, "f.txt"), "data");
      } finally {
        await raw.close();
      }
    });
  });

  it("keeps no port that anyone else touched: a connection to a kept port closes it; one that saw a foreign or second connection, or whose transfer failed, is not kept", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "f.txt"), "data");
      await writeFile(join(t.home("alice"), "big.bin"), Buffer.alloc(BIG));
      const raw = await rawLogin(t);
      const closedAtOnce = async (): Promise<void> => {
        assert.ok(await waitFor(() => t.server.context.pool.used === 0, SPARE_MS / 2), `ports held: ${t.server.context.pool.used}`);
      };
      try {
        // A probe of the kept port gets nothing, and the port goes at once.
        const kept = await raw.epsvPort();
        assert.equal(await retrOn(raw, kept, "f.txt"), "data");
        assert.equal(t.server.context.pool.used, 1);
        const probe = await dataConnect(kept);
        assert.equal((await readAll(probe)).length, 0);
        await closedAtOnce();
        await assert.rejects(dataConnect(kept), /ECONNREFUSED/);
        // A foreign address tried the port before the client connected: not kept.
        let port = await raw.epsvPort();
        const thief = await dataConnect(port, "127.0.0.1", "127.0.0.2");
        assert.equal((await readAll(thief)).length, 0);
        assert.equal(await retrOn(raw, port, "f.txt"), "data");
        await closedAtOnce();
        // A second connection during the transfer: dropped, and the port is not kept.
        port = await raw.epsvPort();
        let data = await dataConnect(port);
        data.pause();
        raw.send("RETR big.bin");
        await raw.expectReply(150);
        const second = await dataConnect(port);
        assert.equal((await readAll(second)).length, 0);
        data.resume();
        assert.equal((await readAll(data)).length, BIG);
        await raw.expectReply(226);
        await closedAtOnce();
        // A transfer that failed (here aborted): not kept either.
        data = await raw.pausedRetr("big.bin");
        raw.send("ABOR");
        await raw.expectReply(426);
        await raw.expectReply(226);
        data.destroy();
        await closedAtOnce();
        // The kept port handed to a PASV whose command is refused before 150 (outside the jail, too
        // long a name): a client connecting late gets a clean end, then the port goes.
        for (const [refused, code] of [["RETR ../../etc/passwd", 550], [`RETR ${"x".repeat(300)}`, 550]] as const) {
          port = await raw.epsvPort();
          assert.equal(await retrOn(raw, port, "f.txt"), "data");
          assert.equal(await raw.epsvPort(), port);
          await raw.expect(refused, code);
          const late = await dataConnect(port);
          assert.equal((await readAll(late)).length, 0);
          assert.equal(late.errored, null);
          assert.ok(await waitFor(() => t.server.context.pool.used === 0, 3000), `ports held: ${t.server.context.pool.used}`);
        }
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
    });
  });

  it("a session's kept port goes to another session when the range is full, and back at once when the session ends", async () => {
    await withServer(
      async (t) => {
        await writeFile(join(t.home("alice"), "f.txt"), "data");
        const a = await rawLogin(t);
        const b = await rawLogin(t);
        try {
          assert.equal((await retrieve(a, "f.txt")).data.toString(), "data");
          assert.equal(t.server.context.pool.used, 1);
          // The only port is a's spare: b takes it, a then finds the range full.
          const port = await b.epsvPort();
          await a.expect("EPSV", 425);
          const data = await dataConnect(port);
          b.send("RETR f.txt");
          await b.expectReply(150);
          assert.equal((await readAll(data)).toString(), "data");
          await b.expectReply(226);
          // b's spare now; b leaves and it is free long before the spare's time is up.
          await b.expect("QUIT", 221);
          assert.ok(await waitFor(() => t.server.context.pool.used === 0, SPARE_MS / 2), `ports held: ${t.server.context.pool.used}`);
          assert.equal((await retrieve(a, "f.txt")).data.toString(), "data");
        } finally {
          await Promise.all([a.close(), b.close()]);
        }
      },
      { config: { passive: { ports: freshRange(1) } } },
    );
  });

  it("picks ports in a random order", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        const seen = new Set<number>();
        for (let i = 0; i < 20; i++) {
          seen.add(await raw.epsvPort());
          await raw.expect("ABOR", 226);
        }
        assert.ok(seen.size >= 2, `always ${[...seen].join(",")}`);
      } finally {
        await raw.close();
      }
    });
  });

  it("releases the port after success, a failed command, ABOR, and a client that vanishes", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "f.txt"), "data");
      const raw = await rawLogin(t);
      try {
        assert.equal(await retrieveText(raw, "f.txt"), "data");
        // Kept for the session's next PASV/EPSV for a moment (see the spare tests below).
        await portsReleased(t, SPARE_MS + 1000);

        const data = await raw.pasv();
        await raw.expect("RETR missing.txt", 550);
        await portsReleased(t);
        await readAll(data);

        await raw.expect("PASV", 227);
        await raw.expect("STOR /no/such/dir/x", 550);
        await portsReleased(t);

        await raw.expect("EPSV", 229);
        await raw.expect("ABOR", 226);
        await portsReleased(t);

        await raw.expect("EPSV", 229);
        await raw.expect("STOR", 501);
        await portsReleased(t);

        await raw.expect("EPSV", 229);
      } finally {
        await raw.close();
      }
      await portsReleased(t);
    });
  });
});

describe("passive listeners made by the addon (native/listen.c)", { skip: !listenBinding() && "addon not built" }, () => {
  it("an accept that fails (out of descriptors) is 425 for that transfer only: the port goes back, nothing leaks, the next transfer works", async () => {
    const b = listenBinding()!;
    const original = b.acceptInto;
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "f.txt"), "data");
      const raw = await rawLogin(t);
      try {
        b.acceptInto = () => -24; // EMFILE
        const port = await raw.epsvPort();
        // The listener goes as the connection comes: the connection is reset or closed (even
        // before the client sees it made), never served.
        const data = await dataConnect(port).catch(() => null);
        if (data !== null) assert.equal((await readAll(data).catch(() => Buffer.alloc(0))).length, 0);
        raw.send("RETR f.txt");
        const r = await raw.reply();
        assert.equal(r.code, 425, r.message);
        await portsReleased(t);
        b.acceptInto = original;
        assert.equal(await retrieveText(raw, "f.txt"), "data");
        await raw.expect("NOOP", 200);
      } finally {
        b.acceptInto = original;
        await raw.close();
      }
    });
  });

  it("a host the addon cannot bind falls back to a net.Server; a port taken by someone else is skipped, and a range all taken is 425", async () => {
    const b = listenBinding()!;
    const original = b.listenTcp;
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "f.txt"), "data");
      const raw = await rawLogin(t);
      try {
        b.listenTcp = () => -22; // EINVAL: not a numeric address
        assert.equal(await retrieveText(raw, "f.txt"), "data");
        await raw.expect("PASV", 227); // drops the kept port
        assert.equal(Math.floor((await raw.cmd("ABOR")).code / 100), 2);
        b.listenTcp = () => -98; // EADDRINUSE, on every port
        const r = await raw.cmd("EPSV");
        assert.equal(r.code, 425, r.message);
        assert.match(r.message, /no free data port/);
        await portsReleased(t);
        b.listenTcp = original;
        assert.equal(await retrieveText(raw, "f.txt"), "data");
      } finally {
        b.listenTcp = original;
        await raw.close();
      }
    });
  });
});

describe("foreign data connections", () => {
  it("drops a connection from another IP and still serves the real client", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "secret.txt"), "for alice only");
      const raw = await rawLogin(t);
      try {
        const port = await raw.epsvPort();
        const thief = await dataConnect(port, "127.0.0.1", "127.0.0.2");
        const stolen = await readAll(thief);
        assert.equal(stolen.length, 0);
        const data = await dataConnect(port);
        raw.send("RETR secret.txt");
        await raw.expectReply(150);
        assert.equal((await readAll(data)).toString(), "for alice only");
        await raw.expectReply(226);
        assert.ok(t.logs.some((l) => l.event === "foreign-data-connection"));
      } finally {
        await raw.close();
      }
    });
  });

  it("drops several foreign connections queued at once and still serves the real client", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "secret.txt"), "for alice only");
      const raw = await rawLogin(t);
      try {
        const port = await raw.epsvPort();
        // As many as the listen backlog holds (more would wait in the kernel for room).
        const thieves = await Promise.all(Array.from({ length: 8 }, () => dataConnect(port, "127.0.0.1", "127.0.0.2").catch(() => null)));
        const stolen = await Promise.all(thieves.map((s) => (s === null ? Buffer.alloc(0) : readAll(s).catch(() => Buffer.alloc(0)))));
        assert.ok(stolen.every((b) => b.length === 0));
        const data = await dataConnect(port);
        raw.send("RETR secret.txt");
        await raw.expectReply(150);
        assert.equal((await readAll(data)).toString(), "for alice only");
        await raw.expectReply(226);
        assert.ok(t.logs.filter((l) => l.event === "foreign-data-connection").length >= thieves.filter((s) => s !== null).length);
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
    });
  });

  it("a stream of foreign connections to a data port writes only a few warning lines; each is still a debug line", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "secret.txt"), "mine");
      const raw = await rawLogin(t);
      try {
        const port = await raw.epsvPort();
        const thieves = 40;
        for (let i = 0; i < thieves; i++) await readAll(await dataConnect(port, "127.0.0.1", "127.0.0.2"));
        const data = await dataConnect(port);
        raw.send("RETR secret.txt");
        await raw.expectReply(150);
        assert.equal((await readAll(data)).toString(), "mine");
        await raw.expectReply(226);
        const foreign = t.logs.filter((l) => l.event === "foreign-data-connection");
        assert.equal(foreign.length, thieves);
        // pino's levels: 40 warn, 20 debug. The 1st, 2nd, 4th, 8th… warn, with the count so far.
        const warned = foreign.filter((l) => l.level === 40);
        assert.deepEqual(
          warned.map((l) => l.foreign),
          [1, 2, 4, 8, 16, 32],
        );
        assert.ok(foreign.every((l) => l.level === 40 || l.level === 20));
      } finally {
        await raw.close();
      }
    });
  });

  it("drops a foreign connection that arrives while the transfer command waits", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "secret.txt"), "mine");
      const raw = await rawLogin(t);
      try {
        const port = await raw.epsvPort();
        raw.send("RETR secret.txt");
        await new Promise((r) => setTimeout(r, 50));
        const thief = await dataConnect(port, "127.0.0.1", "127.0.0.2");
        assert.equal((await readAll(thief)).length, 0);
        const data = await dataConnect(port);
        await raw.expectReply(150);
        assert.equal((await readAll(data)).toString(), "mine");
        await raw.expectReply(226);
      } finally {
        await raw.close();
      }
    });
  });
});

describe("active mode", () => {
  it("PORT: the server dials our listener for RETR and STOR", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "a.bin"), payload(50_000));
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        let wait = await raw.port();
        raw.send("RETR a.bin");
        await raw.expectReply(150);
        const got = await readAll(await wait.accepted);
        wait.close();
        assert.deepEqual(got, payload(50_000));
        await raw.expectReply(226);

        wait = await raw.port();
        raw.send("STOR b.bin");
        await raw.expectReply(150);
        await writeAll(await wait.accepted, payload(10_000, 7));
        wait.close();
        await raw.expectReply(226);
        assert.deepEqual(await readFile(join(t.home("alice"), "b.bin")), payload(10_000, 7));
      } finally {
        await raw.close();
      }
    });
  });

  it("EPRT works the same and a refused connection is 425", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        const wait = await raw.eprt();
        raw.send("NLST");
        await raw.expectReply(150);
        assert.equal((await readAll(await wait.accepted)).length, 0);
        await raw.expectReply(226);
        // A port nobody listens on any more: the server's connect is refused.
        const p = (wait.server.address() as { port: number }).port;
        wait.close();
        await once(wait.server, "close");
        await raw.expect(`EPRT |1|127.0.0.1|${p}|`, 200);
        await raw.expect("LIST", 425);
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
    });
  });

  it("a download whose client half-closes its side of the data connection at once (sends its FIN, reads on) gets every byte and 226, active as passive", async () => {
    await withServer(async (t) => {
      const content = payload(BIG, 5);
      await writeFile(join(t.home("alice"), "half.bin"), content);
      const raw = await rawLogin(t);
      try {
        for (const type of ["I", "A"]) {
          await raw.expect(`TYPE ${type}`, 200);
          for (const mode of ["passive", "active"]) {
            let data: Socket;
            if (mode === "passive") {
              data = await raw.pasv();
              data.end();
              raw.send("RETR half.bin");
            } else {
              const wait = await raw.port();
              raw.send("RETR half.bin");
              data = await wait.accepted;
              wait.close();
              data.end();
            }
            const got = readAll(data);
            await raw.expectReply(150);
            const body = await got;
            const done = await raw.reply();
            assert.equal(done.code, 226, `${mode}, TYPE ${type}: ${done.lines.join(" | ")} after ${body.length} bytes`);
            if (type === "I") assert.ok(body.equals(content), `${mode}: every byte`);
            data.destroy();
          }
        }
      } finally {
        await raw.close();
      }
    });
  });

  it("ABOR while the server dials a client port that never answers is 426 then 226 at once; a session closed meanwhile leaves nothing behind", { skip: !listenBinding() && "addon not built" }, async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "a.txt"), "active");
      const silent = await silentPort();
      try {
        const raw = await rawLogin(t);
        try {
          await raw.expect(`PORT 127,0,0,1,${silent.port >> 8},${silent.port & 0xff}`, 200);
          raw.send("RETR a.txt");
          const dialling = (): boolean => [...t.server.sessions].some((s) => s.transfer !== null);
          assert.ok(await waitFor(dialling, 5000), "RETR dials the client");
          raw.send("ABOR");
          await raw.expectReply(426, 1000);
          await raw.expectReply(226, 1000);
          await raw.expect("NOOP", 200);
          // The same wait ended by the client going away: its file and socket go with it.
          await raw.expect(`EPRT |1|127.0.0.1|${silent.port}|`, 200);
          raw.send("RETR a.txt");
          assert.ok(await waitFor(dialling, 5000), "RETR dials the client");
        } finally {
          await raw.close();
        }
        assert.ok(await waitFor(() => t.server.sessions.size === 0, 2000), "session gone");
      } finally {
        silent.close();
      }
    });
  });

  it("PORT, RETR and NOOP pipelined in one packet are answered in order", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "p.txt"), "pipelined");
      const raw = await rawLogin(t);
      try {
        const wait = await raw.port();
        const p = (wait.server.address() as { port: number }).port;
        raw.sendRaw(`PORT 127,0,0,1,${p >> 8},${p & 0xff}\r\nRETR p.txt\r\nNOOP\r\nPWD\r\n`);
        await raw.expectReply(200);
        await raw.expectReply(150);
        assert.equal((await readAll(await wait.accepted)).toString(), "pipelined");
        wait.close();
        await raw.expectReply(226);
        await raw.expectReply(200);
        await raw.expectReply(257);
      } finally {
        await raw.close();
      }
    });
  });

  it("is refused when active.enabled is false, whatever the argument", async () => {
    await withServer(
      async (t) => {
        const raw = await rawLogin(t);
        try {
          await raw.expect("PORT 127,0,0,1,39,16", 502);
          await raw.expect("EPRT |1|127.0.0.1|10000|", 502);
          // Every form is 502: a 522 would name a family to use (RFC 2428 §2) where none works.
          await raw.expect("EPRT |2|::1|10000|", 502);
          await raw.expect("EPRT |3|127.0.0.1|10000|", 502);
          await raw.expect("PORT 127,0,0,1,39", 502);
          await raw.expect("EPRT 127.0.0.1", 502);
        } finally {
          await raw.close();
        }
      },
      { config: { active: { enabled: false } } },
    );
  });

  it("is left out of FEAT when active.enabled is false (RFC 2389: only what works is listed), EPSV stays", async () => {
    await withServer(
      async (t) => {
        const raw = await RawClient.connect(t.port);
        try {
          const before = (await raw.expect("FEAT", 211)).lines;
          assert.ok(!before.includes(" EPRT"), before.join("\n"));
          assert.ok(before.includes(" EPSV") && before.includes(" PASV"), before.join("\n"));
          await raw.login();
          const after = (await raw.expect("FEAT", 211)).lines;
          assert.ok(!after.includes(" EPRT"), after.join("\n"));
          await raw.expect("EPRT |1|127.0.0.1|10000|", 502);
        } finally {
          await raw.close();
        }
      },
      { config: { active: { enabled: false } } },
    );
  });
});

describe("ABOR and STAT during a transfer", () => {
  it("ABOR mid-download answers 426 then 226 and the session goes on", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "big.bin"), Buffer.alloc(BIG, 1));
      await writeFile(join(t.home("alice"), "small.txt"), "after");
      const raw = await rawLogin(t);
      try {
        const data = await raw.pausedRetr("big.bin");
        await waitFor(() => (t.server.sessions.values().next().value?.transfer?.bytes ?? 0) > 0, 2000);
        const st = await raw.expect("STAT", 211);
        const line = st.lines.find((l) => l.includes("Transfer in progress")) ?? "";
        const m = /download \/big\.bin, (\d+) of (\d+) bytes done/.exec(line);
        assert.ok(m, st.lines.join("\n"));
        assert.ok(Number(m[1]) > 0 && Number(m[1]) < BIG, line);
        assert.equal(Number(m[2]), BIG);
        raw.sendRaw(Buffer.concat([Buffer.from([0xff, 0xf4, 0xff, 0xf2]), Buffer.from("ABOR\r\n")]));
        await raw.expectReply(426);
        await raw.expectReply(226);
        data.destroy();
        await raw.expect("NOOP", 200);
        assert.equal(await retrieveText(raw, "small.txt"), "after");
      } finally {
        await raw.close();
      }
      await portsReleased(t);
    });
  });

  it("ABOR stops a download behind the Telnet bytes lftp and BSD ftp leave once their urgent byte is gone", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "big.bin"), Buffer.alloc(BIG, 1));
      const raw = await rawLogin(t);
      try {
        // lftp sends "IAC IP IAC" and an urgent DM; BSD ftp sends "IAC IP" and an urgent IAC, then "DM ABOR".
        for (const interrupt of [[0xff, 0xf4, 0xff], [0xff, 0xf4, 0xf2]]) {
          const data = await raw.pausedRetr("big.bin");
          await waitFor(() => (t.server.sessions.values().next().value?.transfer?.bytes ?? 0) > 0, 2000);
          raw.sendRaw(Buffer.concat([Buffer.from(interrupt), Buffer.from("ABOR\r\n")]));
          await raw.expectReply(426);
          await raw.expectReply(226);
          data.destroy();
          await raw.expect("NOOP", 200);
        }
      } finally {
        await raw.close();
      }
      await portsReleased(t);
    });
  });

  it("an AUTH sent during a transfer does not stop the ABOR behind it (AUTH is refused in its turn, before the ABOR's 226)", async () => {
    await withServer(
      async (t) => {
        await writeFile(join(t.home("alice"), "big.bin"), Buffer.alloc(BIG, 1));
        const raw = await rawLogin(t);
        try {
          const data = await raw.pausedRetr("big.bin");
          // Logged in, so this AUTH can only be refused: the lines after it are read as usual.
          raw.send("AUTH TLS");
          await new Promise((r) => setTimeout(r, 50));
          raw.send("ABOR");
          await raw.expectReply(426);
          await raw.expectReply(503);
          await raw.expectReply(226);
          data.destroy();
          await raw.expect("NOOP", 200);
        } finally {
          await raw.close();
        }
        await portsReleased(t);
      },
      { config: { tls: { mode: "explicit", require: false } } },
    );
  });

  it("STAT sent again and again during a transfer by a client that reads no reply holds a bounded amount of replies; an ABOR from a client that reads them is answered", async () => {
    await withServer(
      async (t) => {
        await writeFile(join(t.home("alice"), "big.bin"), Buffer.alloc(BIG, 1));
        const raw = await rawLogin(t);
        try {
          const data = await raw.pausedRetr("big.bin");
          raw.socket.pause();
          // 40,000 STATs, about 10 MB of 211 replies, in one go (commandRate 0: no flood limit).
          raw.sendRaw("STAT\r\n".repeat(40_000));
          await sleep(1000);
          const [session] = t.server.sessions;
          assert.ok(session);
          assert.ok(session.socket.writableLength < 2 * MIB, `replies held: ${session.socket.writableLength} bytes`);
          data.destroy();
        } finally {
          await raw.close();
        }
        const reader = await rawLogin(t);
        try {
          const data = await reader.pausedRetr("big.bin");
          reader.send("STAT");
          await reader.expectReply(211);
          reader.send("ABOR");
          await reader.expectReply(426);
          await reader.expectReply(226);
          data.destroy();
        } finally {
          await reader.close();
        }
      },
      { config: { limits: { commandRate: 0 } } },
    );
  });

  it("a command other than ABOR, STAT or QUIT waits for the transfer's reply", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "w.bin"), payload(BIG));
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        const data = await raw.pausedRetr("w.bin");
        raw.send("PWD");
        await assert.rejects(raw.reply(200), /no reply/);
        data.resume();
        assert.equal((await readAll(data)).length, BIG);
        await raw.expectReply(226);
        await raw.expectReply(257);
      } finally {
        await raw.close();
      }
    });
  });

  it("ABOR sent in the same packet as RETR, STOR or LIST (before the transfer has begun) stops it: 426 then 226 at once, nothing made, the port back, the session goes on", async () => {
    await withServer(
      async (t) => {
        await writeFile(join(t.home("alice"), "w.bin"), payload(BIG));
        await writeFile(join(t.home("alice"), "keep.bin"), "old");
        const raw = await rawLogin(t);
        try {
          await raw.expect("TYPE I", 200);
          for (const cmd of ["RETR w.bin", "STOR keep.bin", "STOR new.bin", "LIST", "MLSD"]) {
            // The client connects, and reads nothing: without the ABOR a download would stall, and an
            // upload wait for data, until limits.stalledTimeout.
            const data = await raw.pasv();
            data.pause();
            raw.sendRaw(`${cmd}\r\nABOR\r\n`);
            const first = await raw.reply(2000);
            assert.equal(first.code, 426, `${cmd}: ${first.lines.join(" | ")}`);
            await raw.expectReply(226, 2000);
            data.destroy();
            await raw.expect("NOOP", 200);
          }
          // QUIT in the same packet: the transfer goes on to its end, then 221.
          const data = await raw.pasv();
          raw.sendRaw("RETR w.bin\r\nQUIT\r\n");
          await raw.expectReply(150);
          assert.equal((await readAll(data)).length, BIG);
          await raw.expectReply(226);
          await raw.expectReply(221);
        } finally {
          await raw.close();
        }
        assert.deepEqual((await readdir(t.home("alice"))).sort(), ["keep.bin", "w.bin"]);
        assert.equal(await readFile(join(t.home("alice"), "keep.bin"), "utf8"), "old");
        await portsReleased(t);
      },
      { config: { limits: { stalledTimeout: 10 } } },
    );
  });

  it("ABOR mid-upload answers 426 then 226 and keeps the partial new file for resuming", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        const data = await raw.pasv();
        raw.send("STOR part.bin");
        await raw.expectReply(150);
        data.write(payload(100_000));
        await waitFor(() => (t.server.sessions.values().next().value?.transfer?.bytes ?? 0) >= 100_000, 2000);
        const st = await raw.expect("STAT", 211);
        assert.ok(st.lines.some((l) => /upload \/part\.bin, 100000 bytes done/.test(l)), st.lines.join("\n"));
        await raw.expect("ABOR", 426);
        await raw.expectReply(226);
        data.destroy();
        const size = Number((await raw.expect("SIZE part.bin", 213)).message);
        assert.equal(size, 100_000);
        await raw.expect(`REST ${size}`, 350);
        const rest = await raw.pasv();
        raw.send("STOR part.bin");
        await raw.expectReply(150);
        await writeAll(rest, payload(150_000).subarray(100_000));
        await raw.expectReply(226);
        assert.deepEqual(await readFile(join(t.home("alice"), "part.bin")), payload(150_000));
      } finally {
        await raw.close();
      }
    });
  });

  it("ABOR of an upload that replaces a file keeps the old file and no temp file", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "keep.bin"), "old");
      const raw = await rawLogin(t);
      try {
        const data = await raw.pasv();
        raw.send("STOR keep.bin");
        await raw.expectReply(150);
        data.write(payload(50_000));
        await waitFor(() => (t.server.sessions.values().next().value?.transfer?.bytes ?? 0) > 0, 2000);
        await raw.expect("ABOR", 426);
        await raw.expectReply(226);
        data.destroy();
        assert.equal(await readFile(join(t.home("alice"), "keep.bin"), "utf8"), "old");
        assert.deepEqual(await readdir(t.home("alice")), ["keep.bin"]);
      } finally {
        await raw.close();
      }
    });
  });

  it("ABOR while the transfer waits for its data connection is 426 then 226", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        await raw.expect("PASV", 227);
        raw.send("LIST");
        // ABOR must come once LIST is really waiting (before that it is a plain "no transfer" 226).
        const waiting = (): boolean => [...t.server.sessions].some((s) => s.transfer !== null);
        assert.ok(await waitFor(waiting, 5000), "LIST waits for its data connection");
        raw.send("ABOR");
        await raw.expectReply(426);
        await raw.expectReply(226);
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
      await portsReleased(t);
    });
  });

  it("a client that vanishes mid-transfer leaves nothing behind", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "big.bin"), Buffer.alloc(BIG, 2));
      const raw = await rawLogin(t);
      const data = await raw.pausedRetr("big.bin");
      await raw.close();
      data.destroy();
      assert.ok(await waitFor(() => t.server.sessions.size === 0, 2000));
      const up = await rawLogin(t);
      const d2 = await up.pasv();
      up.send("STOR vanish.bin");
      await up.expectReply(150);
      d2.write(payload(1000));
      await new Promise((r) => setTimeout(r, 50));
      await up.close();
      d2.destroy();
      assert.ok(await waitFor(() => t.server.sessions.size === 0, 2000));
    });
  });

  it("QUIT during a transfer waits for its reply, then says 221", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "q.bin"), payload(200_000));
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        const data = await raw.pausedRetr("q.bin");
        raw.send("QUIT");
        data.resume();
        assert.equal((await readAll(data)).length, 200_000);
        await raw.expectReply(226);
        await raw.expectReply(221);
        await raw.closed();
      } finally {
        await raw.close();
      }
    });
  });

  it("QUIT during a transfer, then the client's FIN on the control connection (it sends nothing more): the transfer still ends with 226, then 221", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "big.bin"), payload(BIG, 3));
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        const data = await raw.pausedRetr("big.bin");
        raw.socket.end("QUIT\r\n");
        await sleep(100);
        data.resume();
        assert.equal((await readAll(data)).length, BIG);
        await raw.expectReply(226);
        await raw.expectReply(221);
        await raw.closed();
      } finally {
        await raw.close();
      }
    });
  });

  it("ABOR and QUIT sent together during a transfer: 426 for the transfer, 226 for the ABOR, then 221", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "aq.bin"), payload(BIG));
      for (const cmd of ["RETR aq.bin", "STOR up.bin"]) {
        const raw = await rawLogin(t);
        try {
          const { data, codes } = await threeRepliesDuring(raw, cmd, "ABOR\r\nQUIT\r\n");
          assert.deepEqual(codes, [426, 226, 221], cmd);
          await raw.closed();
          data.destroy();
        } finally {
          await raw.close();
        }
      }
      await portsReleased(t);
    });
  });

  it("QUIT during a transfer behind a queued command: the transfer's reply, the command's, then 221", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "q.bin"), payload(BIG));
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        const data = await raw.pausedRetr("q.bin");
        raw.send("NOOP");
        raw.send("QUIT");
        await assert.rejects(raw.reply(200), /no reply/);
        data.resume();
        assert.equal((await readAll(data)).length, BIG);
        await raw.expectReply(226);
        await raw.expectReply(200);
        await raw.expectReply(221);
        await raw.closed();
      } finally {
        await raw.close();
      }
    });
  });

  it("STAT during a transfer behind a queued command keeps its place: the transfer's reply, the command's, then the STAT's", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "s.bin"), payload(BIG));
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        const data = await raw.pausedRetr("s.bin");
        raw.sendRaw("NOOP\r\nSTAT\r\n");
        await assert.rejects(raw.reply(200), /no reply/);
        data.resume();
        assert.equal((await readAll(data)).length, BIG);
        await raw.expectReply(226);
        await raw.expectReply(200);
        await raw.expectReply(211);
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
    });
  });

  it("ABOR after 40 keep-alive NOOPs sent during a download is still read: it stops the transfer at once, and every NOOP is answered before its 226", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "k.bin"), payload(BIG));
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        const data = await raw.pausedRetr("k.bin");
        const [session] = t.server.sessions;
        assert.ok(session);
        // One at a time, as a client sends them over a long download: each is read before the next.
        for (let i = 0; i < 40; i++) {
          raw.send("NOOP");
          await sleep(5);
        }
        assert.ok(await waitFor(() => session.transfer !== null, 2000));
        await sleep(100);
        raw.send("ABOR");
        const first = await raw.reply();
        assert.equal(first.code, 426, first.lines.join(" | "));
        for (let i = 0; i < 40; i++) await raw.expectReply(200);
        await raw.expectReply(226);
        data.destroy();
        await raw.expect("NOOP", 200);
        // A flood during a transfer still stops the reading, with a bounded amount queued.
        const more = await raw.pausedRetr("k.bin");
        raw.sendRaw("NOOP\r\n".repeat(5000));
        assert.ok(await waitFor(() => session.socket.isPaused(), 5000), "reading stopped");
        more.destroy();
      } finally {
        await raw.close();
      }
      await portsReleased(t);
    });
  });

  it("ABOR during a transfer behind a queued command stops it at once and keeps its place: 426 for the transfer, the command's reply, then 226", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "a.bin"), payload(BIG));
      for (const cmd of ["RETR a.bin", "STOR up.bin"]) {
        const raw = await rawLogin(t);
        try {
          // The client reads and sends nothing on the data connection: only the ABOR ends it.
          const { data, codes } = await threeRepliesDuring(raw, cmd, "NOOP\r\nABOR\r\n");
          assert.deepEqual(codes, [426, 200, 226], cmd);
          data.destroy();
          await raw.expect("ABOR", 225);
          await raw.expect("NOOP", 200);
        } finally {
          await raw.close();
        }
      }
      await portsReleased(t);
    });
  });

  it("an ABOR with an argument of non-ASCII spaces waiting behind a command does not stop the transfer: it is refused 501 in its turn, and a plain ABOR after it stops the transfer", async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "a.bin"), payload(BIG));
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        const data = await raw.pasv();
        data.pause();
        raw.send("RETR a.bin");
        await raw.expectReply(150);
        // U+00A0 is no ASCII space: the ABOR has an argument, and the dispatcher refuses it.
        raw.sendRaw("NOOP\r\nABOR \u00a0\r\n");
        await new Promise((r) => setTimeout(r, 500));
        raw.sendRaw("ABOR\r\n");
        const codes = [];
        for (let i = 0; i < 4; i++) codes.push((await raw.reply()).code);
        assert.deepEqual(codes, [426, 200, 501, 226]);
        data.destroy();
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
      await portsReleased(t);
    });
  });
});

describe("downloads", () => {

  /** RETR `name` (after REST `rest` when given): the bytes and the final reply's code. */
  async function retr(raw: RawClient, name: string, rest?: number): Promise<{ data: Buffer; code: number }> {
    const { data, reply } = await retrieve(raw, name, rest);
    return { data, code: reply.code };
  }

  /** The running transfer's byte count once it stops moving (the client stopped reading). */
  async function stalledAt(t: TestServer): Promise<number> {
    const bytes = (): number => t.server.sessions.values().next().value?.transfer?.bytes ?? 0;
    assert.ok(await waitFor(() => bytes() > 0, 5000), "the download started");
    let last = -1;
    while (bytes() !== last) {
      last = bytes();
      await new Promise((r) => setTimeout(r, 200));
    }
    return last;
  }

  /** RETR of `name` into a data socket that is not read, until the server stalls: the socket and
   * the bytes the server had sent by then. */
  async function stalledRetr(t: TestServer, raw: RawClient, name: string): Promise<{ sock: Socket; sent: number }> {
    await raw.expect("TYPE I", 200);
    const sock = await raw.pausedRetr(name);
    return { sock, sent: await stalledAt(t) };
  }

  for (const sendfile of [true, false]) {
    it(`sends empty, tiny and buffer-sized files byte for byte (transfer.sendfile: ${sendfile})`, async () => {
      await withServer(async (t) => {
        const sizes = [0, 1, 4096, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, MIB - 1, MIB, MIB + 1, 3 * MIB + 5];
        for (const size of sizes) await writeFile(join(t.home("alice"), `s${size}.bin`), payload(size, size + 1));
        const raw = await rawLogin(t);
        try {
          await raw.expect("TYPE I", 200);
          for (const size of sizes) {
            const { data, code } = await retr(raw, `s${size}.bin`);
            assert.equal(code, 226, `s${size}.bin`);
            assert.equal(data.length, size, `s${size}.bin`);
            assert.ok(data.equals(payload(size, size + 1)), `s${size}.bin content`);
          }
        } finally {
          await raw.close();
        }
      }, { config: { transfer: { sendfile } } });
    });
  }

  it("plain STOR, REST + STOR and APPE at sizes around the upload buffers land every byte", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      const store = async (verb: string, name: string, data: Buffer, rest?: number): Promise<number> => {
        if (rest !== undefined) await raw.expect(`REST ${rest}`, 350);
        const sock = await raw.pasv();
        raw.send(`${verb} ${name}`);
        await raw.expectReply(150);
        await writeAll(sock, data);
        return (await raw.reply()).code;
      };
      try {
        await raw.expect("TYPE I", 200);
        // The read buffer is 256 KiB and a staging buffer 1 MiB; from HANDOFF_AT on, a thread
        // writes (data/receive.ts).
        for (const size of [0, 1, 256 * 1024 - 1, 256 * 1024 + 1, MIB - 1, MIB, MIB + 1, HANDOFF_AT - 1, HANDOFF_AT + 1, 9 * MIB + 3]) {
          const data = payload(size, size % 251);
          assert.equal(await store("STOR", `s${size}.bin`, data), 226, `STOR ${size}`);
          assert.ok((await readFile(join(t.home("alice"), `s${size}.bin`))).equals(data), `STOR ${size}`);
        }
        // Resumed and appended: the thread goes on from where the file is.
        for (const [mid, size] of [[2 * MIB, 3 * MIB + 5], [6 * MIB + 3, 12 * MIB + 5]] as const) {
          const whole = payload(size, 3);
          const cut = MIB + 17;
          assert.equal(await store("STOR", "r.bin", whole.subarray(0, cut)), 226);
          assert.equal(await store("STOR", "r.bin", whole.subarray(cut, mid), cut), 226);
          assert.equal(await store("APPE", "r.bin", whole.subarray(mid)), 226);
          assert.ok((await readFile(join(t.home("alice"), "r.bin"))).equals(whole), `${size} bytes`);
        }
      } finally {
        await raw.close();
      }
    });
  });

  for (const sendfile of [true, false]) {
    it(`REST + RETR at offsets around the buffer sizes (transfer.sendfile: ${sendfile})`, async () => {
      await withServer(async (t) => {
        const whole = payload(2 * MIB + 7);
        await writeFile(join(t.home("alice"), "r.bin"), whole);
        const raw = await rawLogin(t);
        try {
          await raw.expect("TYPE I", 200);
          for (const rest of [1, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, MIB - 1, MIB, MIB + 1, whole.length - 1, whole.length]) {
            const { data, code } = await retr(raw, "r.bin", rest);
            assert.equal(code, 226, `REST ${rest}`);
            assert.ok(data.equals(whole.subarray(rest)), `REST ${rest}: ${data.length} bytes`);
          }
        } finally {
          await raw.close();
        }
      }, { config: { transfer: { sendfile } } });
    });
  }

  it("TYPE A: a CRLF split between two reads stays one CRLF", async () => {
    await withServer(async (t) => {
      const text = Buffer.alloc(MIB + 100, 0x61);
      for (const [at, byte] of [[0, 0x0a], [10, 0x0a], [MIB - 1, 0x0d], [MIB, 0x0a], [MIB + 1, 0x0a], [MIB + 99, 0x0a]] as const) {
        text[at] = byte;
      }
      await writeFile(join(t.home("alice"), "a.txt"), text);
      const expected: number[] = [];
      text.forEach((b, i) => {
        if (b === 0x0a && (i === 0 || text[i - 1] !== 0x0d)) expected.push(0x0d);
        expected.push(b);
      });
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE A", 200);
        const { data, code } = await retr(raw, "a.txt");
        assert.equal(code, 226);
        assert.equal(data.length, text.length + 4);
        assert.ok(data.equals(Buffer.from(expected)));
      } finally {
        await raw.close();
      }
    });
  });

  it("a file that grows while it is sent is sent to its new end", async () => {
    await withServer(async (t) => {
      const file = join(t.home("alice"), "grow.bin");
      const first = payload(32 * MIB);
      const more = payload(MIB, 7);
      await writeFile(file, first);
      const raw = await rawLogin(t);
      try {
        const { sock, sent } = await stalledRetr(t, raw, "grow.bin");
        assert.ok(sent < 30 * MIB, `the server got ahead: ${sent}`);
        await appendFile(file, more);
        sock.resume();
        const data = await readAll(sock);
        await raw.expectReply(226);
        assert.equal(data.length, first.length + more.length);
        assert.ok(data.equals(Buffer.concat([first, more])));
      } finally {
        await raw.close();
      }
    });
  });

  it("a file that shrinks while it is sent ends where the file now ends", async () => {
    await withServer(async (t) => {
      const file = join(t.home("alice"), "shrink.bin");
      const whole = payload(32 * MIB);
      await writeFile(file, whole);
      const raw = await rawLogin(t);
      try {
        const { sock, sent } = await stalledRetr(t, raw, "shrink.bin");
        // At most one chunk is read ahead of what went to the socket.
        assert.ok(sent < 22 * MIB, `the server got ahead: ${sent}`);
        await truncate(file, 24 * MIB);
        sock.resume();
        const data = await readAll(sock);
        await raw.expectReply(226);
        assert.equal(data.length, 24 * MIB);
        assert.ok(data.equals(whole.subarray(0, 24 * MIB)));
      } finally {
        await raw.close();
      }
    });
  });
});

describe("the 150 of a download", () => {
  /** Runs `body` with the 150 of downloads held for `ms` at most. */
  async function holding(ms: number, body: () => Promise<void>): Promise<void> {
    const before = hold150.ms;
    hold150.ms = ms;
    try {
      await body();
    } finally {
      hold150.ms = before;
    }
  }

  for (const tls of ["off", "explicit"] as const) {
    it(`goes out in one write with the 226 when the download is over at once (RETR, LIST, MLSD; TLS ${tls}, data in the clear)`, async () => {
      await holding(60_000, () =>
        withServer(
          async (t) => {
            await writeFile(join(t.home("alice"), "small.bin"), payload(4096));
            const raw = await rawLogin(t);
            try {
              await raw.expect("TYPE I", 200);
              for (const cmd of ["RETR small.bin", "LIST", "MLSD"]) {
                const data = await raw.pasv();
                const chunks: string[] = [];
                const record = (c: Buffer): void => void chunks.push(c.toString("latin1"));
                raw.socket.on("data", record);
                raw.send(cmd);
                const body = await readAll(data);
                if (cmd.startsWith("RETR")) assert.deepEqual(body, payload(4096));
                else assert.match(body.toString(), /small\.bin\r\n/);
                await raw.expectReply(150);
                await raw.expectReply(226);
                raw.socket.off("data", record);
                assert.equal(chunks.length, 1, `${cmd}: ${JSON.stringify(chunks)}`);
                assert.match(chunks[0] as string, /^150 [^\r]*\r\n226 [^\r]*\r\n$/, cmd);
              }
            } finally {
              await raw.close();
            }
          },
          { config: { tls: { mode: tls } } },
        ),
      );
    });
  }

  it("goes out after the hold time when the client reads nothing before it, each time in a session", async () => {
    await holding(200, () =>
      withServer(async (t) => {
        await writeFile(join(t.home("alice"), "big.bin"), payload(BIG));
        await writeFile(join(t.home("alice"), "small.bin"), payload(4096));
        const raw = await rawLogin(t);
        try {
          await raw.expect("TYPE I", 200);
          // The session's hold timer is made by the first download and moved on by the next
          // ones: a small download that releases its 150 at once, then two the client stalls.
          for (const name of ["small.bin", "big.bin", "big.bin"]) {
            const data = await raw.pausedRetr(name);
            data.resume();
            assert.deepEqual(await readAll(data), payload(name === "big.bin" ? BIG : 4096));
            await raw.expectReply(226);
          }
        } finally {
          await raw.close();
        }
      }),
    );
  });

  it("comes before the 426 and 226 of an ABOR that ends the download while it is held", async () => {
    await holding(60_000, () =>
      withServer(async (t) => {
        await writeFile(join(t.home("alice"), "big.bin"), payload(BIG));
        const raw = await rawLogin(t);
        try {
          const data = await raw.pasv();
          data.pause();
          raw.send("RETR big.bin");
          assert.ok(await waitFor(() => (t.server.sessions.values().next().value?.transfer?.bytes ?? 0) > 0, 2000));
          await assert.rejects(raw.reply(100), /no reply/);
          raw.send("ABOR");
          await raw.expectReply(150);
          await raw.expectReply(426);
          await raw.expectReply(226);
          data.destroy();
          await raw.expect("NOOP", 200);
        } finally {
          await raw.close();
        }
        await portsReleased(t);
      }),
    );
  });
});

describe("timeouts", () => {
  it("an upload whose data connection never comes is 425 and leaves no empty file", async () => {
    await withServer(
      async (t) => {
        const raw = await rawLogin(t);
        try {
          await raw.expect("PASV", 227);
          await raw.expect("STOR never.bin", 425);
          await raw.expect("SIZE never.bin", 550);
          await raw.expect("EPSV", 229);
          await raw.expect("APPE never.bin", 425);
          await raw.expect("SIZE never.bin", 550);
          await raw.expect("PASV", 227);
          await raw.expect("STOU", 425);
          assert.deepEqual(await readdir(t.home("alice")), []);
          await portsReleased(t);
        } finally {
          await raw.close();
        }
      },
      { config: { limits: { dataTimeout: 0.2 } } },
    );
  });

  it("an upload to a bad path is 550 at once, without waiting for the data connection", async () => {
    await withServer(async (t) => {
      const raw = await rawLogin(t);
      try {
        await raw.expect("PASV", 227);
        const started = Date.now();
        await raw.expect("STOR /no/such/dir/x", 550);
        await raw.expect("PASV", 227);
        await raw.expect("APPE /", 550);
        assert.ok(Date.now() - started < 2000);
        await portsReleased(t);
      } finally {
        await raw.close();
      }
    });
  });

  it("a passive data connection that never comes is 425 after limits.dataTimeout", async () => {
    await withServer(
      async (t) => {
        const raw = await rawLogin(t);
        try {
          await raw.expect("PASV", 227);
          const started = Date.now();
          await raw.expect("LIST", 425);
          assert.ok(Date.now() - started >= 250);
          await portsReleased(t);
          await raw.expect("NOOP", 200);
        } finally {
          await raw.close();
        }
      },
      { config: { limits: { dataTimeout: 0.3 } } },
    );
  });

  for (const sendfile of [true, false]) {
    it(`a download the client stops reading is aborted with 426 after limits.stalledTimeout; the session goes on (transfer.sendfile: ${sendfile})`, async () => {
      await withServer(
        async (t) => {
          await writeFile(join(t.home("alice"), "big.bin"), Buffer.alloc(BIG, 3));
          await writeFile(join(t.home("alice"), "small.txt"), "after");
          const raw = await rawLogin(t);
          try {
            await raw.expect("TYPE I", 200);
            const data = await raw.pausedRetr("big.bin");
            const r = await raw.expectReply(426, 5000);
            assert.match(r.message, /no data moved/);
            data.destroy();
            assert.equal(await retrieveText(raw, "small.txt"), "after");
          } finally {
            await raw.close();
          }
        },
        { config: { limits: { stalledTimeout: 0.5 }, transfer: { sendfile } } },
      );
    });
  }

  /** Runs `body` with `binding[method]` wrapped, and returns the `mayBlock` argument (the seventh)
   * of each call made meanwhile, in order. */
  async function mayBlockArgs<T extends object>(binding: T, method: keyof T & string, body: () => Promise<void>): Promise<boolean[]> {
    const target = binding as unknown as Record<string, (...a: unknown[]) => unknown>;
    const real = target[method] as (...a: unknown[]) => unknown;
    const seen: boolean[] = [];
    target[method] = (...a: unknown[]) => {
      seen.push(a[6] as boolean);
      return real.apply(binding, a);
    };
    try {
      await body();
    } finally {
      target[method] = real;
    }
    return seen;
  }

  /** Alice's six.bin: 6 MiB, past the main thread's first megabyte of a sendfile download. */
  async function sixMiB(t: TestServer, seed: number): Promise<Buffer> {
    const content = payload(6 << 20, seed);
    await writeFile(join(t.home("alice"), "six.bin"), content);
    return content;
  }

  it("a large download: the sendfile job may block on a passive connection (accepted paused) and an active one (dialled paused); every byte arrives either way", { skip: !sendfileBinding() }, async () => {
    const native = sendfileBinding();
    assert.ok(native);
    const mayBlock = await mayBlockArgs(native, "start", () =>
      withServer(async (t) => {
        const content = await sixMiB(t, 9);
        const raw = await rawLogin(t);
        try {
          await raw.expect("TYPE I", 200);
          const passive = await retrieve(raw, "six.bin");
          assert.equal(passive.reply.code, 226);
          assert.ok(passive.data.equals(content), "passive: every byte");
          const wait = await raw.port();
          raw.send("RETR six.bin");
          await raw.expectReply(150);
          const got = await readAll(await wait.accepted);
          wait.close();
          await raw.expectReply(226);
          assert.ok(got.equals(content), "active: every byte");
        } finally {
          await raw.close();
        }
      }),
    );
    assert.deepEqual(mayBlock, [true, true]);
  });

  it("a large upload, passive or active, goes on a thread of its own after its first megabytes; transfer.uploadThreads: false keeps it on the event loop; every byte lands either way", { skip: !receiveBinding() }, async () => {
    const native = receiveBinding();
    assert.ok(native);
    const mayBlock = await mayBlockArgs(native, "receive", async () => {
      for (const uploadThreads of [true, false]) {
        await withServer(
          async (t) => {
            const content = payload(10 * MIB + 1, 21);
            const raw = await rawLogin(t);
            try {
              await raw.expect("TYPE I", 200);
              const passive = await raw.pasv();
              raw.send("STOR p.bin");
              await raw.expectReply(150);
              await writeAll(passive, content);
              await raw.expectReply(226);
              assert.ok((await readFile(join(t.home("alice"), "p.bin"))).equals(content), "passive: every byte");
              const wait = await raw.port();
              raw.send("STOR a.bin");
              await raw.expectReply(150);
              await writeAll(await wait.accepted, content);
              wait.close();
              await raw.expectReply(226);
              assert.ok((await readFile(join(t.home("alice"), "a.bin"))).equals(content), "active: every byte");
            } finally {
              await raw.close();
            }
          },
          { config: { transfer: { uploadThreads } } },
        );
      }
    });
    assert.deepEqual(mayBlock, [true, true], "two threads, both with the event loop no longer reading, none with uploadThreads off");
  });

  it("on the upload thread: STAT counts its bytes, ABOR is 426 then 226 with the file it replaced intact, a stall is 426, a reset is 426; the session goes on, no thread left", async () => {
    const threads = (): number => readdirSync("/proc/self/task").length;
    const transferBytes = (t: TestServer): number => t.server.sessions.values().next().value?.transfer?.bytes ?? 0;
    await withServer(
      async (t) => {
        await writeFile(join(t.home("alice"), "keep.bin"), "old");
        const before = threads();
        const raw = await rawLogin(t);
        try {
          await raw.expect("TYPE I", 200);
          // ABOR while the thread reads: the upload replacing keep.bin is dropped.
          let data = await raw.pasv();
          raw.send("STOR keep.bin");
          await raw.expectReply(150);
          data.write(payload(HANDOFF_AT + 3 * MIB, 5));
          assert.ok(await waitFor(() => transferBytes(t) >= HANDOFF_AT + 3 * MIB, 5000), `${transferBytes(t)} bytes counted`);
          if (receiveBinding()) assert.ok(threads() > before, "the upload thread runs");
          const st = await raw.expect("STAT", 211);
          assert.ok(st.lines.some((l) => l.includes(`upload /keep.bin, ${HANDOFF_AT + 3 * MIB} bytes done`)), st.lines.join("\n"));
          await raw.expect("ABOR", 426);
          await raw.expectReply(226);
          data.destroy();
          assert.equal(await readFile(join(t.home("alice"), "keep.bin"), "utf8"), "old");
          assert.deepEqual(await readdir(t.home("alice")), ["keep.bin"]);
          assert.ok(await waitFor(() => threads() <= before, 3000), `${threads()} threads, ${before} before`);

          // A client that stops sending: 426 after limits.stalledTimeout; the partial new file stays.
          data = await raw.pasv();
          raw.send("STOR stall.bin");
          await raw.expectReply(150);
          data.write(payload(HANDOFF_AT + MIB, 6));
          const r = await raw.expectReply(426, 10_000);
          assert.match(r.message, /no data moved/);
          data.destroy();
          assert.equal(Number((await raw.expect("SIZE stall.bin", 213)).message), HANDOFF_AT + MIB);

          // A client that resets: 426, the file it replaced intact.
          data = await raw.pasv();
          raw.send("STOR keep.bin");
          await raw.expectReply(150);
          data.write(payload(HANDOFF_AT + 2 * MIB, 7));
          assert.ok(await waitFor(() => transferBytes(t) >= HANDOFF_AT + 2 * MIB, 5000), `${transferBytes(t)} bytes counted`);
          data.resetAndDestroy();
          await raw.expectReply(426);
          assert.equal(await readFile(join(t.home("alice"), "keep.bin"), "utf8"), "old");
          await raw.expect("NOOP", 200);
          assert.ok(await waitFor(() => threads() <= before, 3000), `${threads()} threads, ${before} before`);
        } finally {
          await raw.close();
        }
      },
      // Long enough that a loaded machine does not turn the ABOR and reset cases into stalls.
      { config: { limits: { stalledTimeout: 2 } } },
    );
  });

  it("a control connection closed while the upload thread reads ends the transfer, its thread and its descriptors; the partial new file stays", async () => {
    const threads = (): number => readdirSync("/proc/self/task").length;
    await withServer(async (t) => {
      const before = threads();
      const raw = await rawLogin(t);
      await raw.expect("TYPE I", 200);
      const data = await raw.pasv();
      data.on("error", () => undefined);
      raw.send("STOR gone.bin");
      await raw.expectReply(150);
      data.write(payload(HANDOFF_AT + 2 * MIB, 8));
      const bytes = (): number => t.server.sessions.values().next().value?.transfer?.bytes ?? 0;
      assert.ok(await waitFor(() => bytes() >= HANDOFF_AT + 2 * MIB, 5000), `${bytes()} bytes counted`);
      if (receiveBinding()) assert.ok(threads() > before, "the upload thread runs");
      await raw.close();
      assert.ok(await waitFor(() => t.server.sessions.size === 0, 3000), "the session ended");
      assert.ok(await waitFor(() => threads() <= before, 3000), `${threads()} threads, ${before} before`);
      data.destroy();
      assert.equal((await readFile(join(t.home("alice"), "gone.bin"))).length, HANDOFF_AT + 2 * MIB);
      // (withServer's teardown fails the test on a descriptor left open.)
    });
  });

  it("a large passive download whose client writes into the data connection and stops reading: the session answers STAT meanwhile, and every byte arrives once it reads again", async () => {
    await withServer(async (t) => {
      const content = await sixMiB(t, 11);
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        const data = await raw.pausedRetr("six.bin");
        // Bytes a download never reads: with the sendfile thread sending blocking, nothing on the
        // event loop may read this socket before the end (a blocking read would stall it).
        data.write(Buffer.alloc(200_000, 1));
        const sending = await waitFor(() => (t.server.sessions.values().next().value?.transfer?.bytes ?? 0) > 1 << 20, 5000);
        if (sendfileBinding()) assert.ok(sending, "past the first megabyte: the sendfile thread sends");
        for (let i = 0; i < 3; i++) {
          const r = await raw.expect("STAT", 211);
          assert.match(r.lines.join("\n"), /six\.bin/);
        }
        const got = await readAll(data.resume());
        assert.ok(got.equals(content), `${got.length} bytes of ${content.length}`);
        await raw.expectReply(226);
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
    });
  });

  it("a control connection closed during a download the client does not read ends the transfer, its thread and its descriptors", async () => {
    const threads = (): number => readdirSync("/proc/self/task").length;
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "big.bin"), Buffer.alloc(BIG, 4));
      const before = threads();
      const raw = await rawLogin(t);
      await raw.expect("TYPE I", 200);
      const data = await raw.pausedRetr("big.bin");
      await waitFor(() => (t.server.sessions.values().next().value?.transfer?.bytes ?? 0) > 0, 2000);
      if (sendfileBinding()) assert.ok(await waitFor(() => threads() > before, 2000), "the sendfile thread runs");
      await raw.close();
      assert.ok(await waitFor(() => t.server.sessions.size === 0, 3000), "the session ended");
      assert.ok(await waitFor(() => threads() <= before, 3000), `${threads()} threads, ${before} before`);
      data.destroy();
      // (withServer's teardown fails the test on a descriptor left open.)
    });
  });

  it("after a finished download, a client that keeps its data connection open, sending now and then, loses it after limits.stalledTimeout", async () => {
    // The client sends from the start, so its bytes wait unread when the download ends: the server
    // then lingers (data/linger.ts endUnused) instead of closing at once (endSent).
    await withServer(
      async (t) => {
        await writeFile(join(t.home("alice"), "small.txt"), "bytes");
        const raw = await rawLogin(t);
        try {
          const port = await raw.epsvPort();
          // Half-open allowed: our side stays open after the server's FIN.
          const data = connect({ port, host: "127.0.0.1", allowHalfOpen: true });
          await once(data, "connect");
          // (events.once would reject on the EPIPE below.)
          const closed = new Promise((resolve) => data.once("close", resolve));
          const serverEnded = new Promise((resolve) => data.once("end", resolve));
          data.on("error", () => undefined);
          const got: Buffer[] = [];
          data.on("data", (b: Buffer) => got.push(b));
          await new Promise((resolve) => data.write("x", resolve));
          await sleep(50);
          raw.send("RETR small.txt");
          await raw.expectReply(150);
          // A byte every 100 ms: an idle timer would never fire. Once the server has closed, a
          // write fails (EPIPE): that is the point.
          const trickle = setInterval(() => {
            if (!data.destroyed) data.write("x", () => undefined);
          }, 100);
          try {
            await serverEnded;
            await raw.expectReply(226, 3000);
            assert.equal(Buffer.concat(got).toString(), "bytes");
            const t0 = Date.now();
            const outcome = await Promise.race([closed.then(() => "closed"), sleep(4000).then(() => "still open")]);
            assert.equal(outcome, "closed", `${Date.now() - t0} ms after the 226`);
            assert.ok(Date.now() - t0 < 2500, `closed ${Date.now() - t0} ms after the 226`);
            assert.ok(Date.now() - t0 >= 300, `closed ${Date.now() - t0} ms after the 226: no lingering`);
          } finally {
            clearInterval(trickle);
            data.destroy();
          }
          await raw.expect("NOOP", 200);
        } finally {
          await raw.close();
        }
      },
      { config: { limits: { stalledTimeout: 0.6 } } },
    );
  });

  it("nothingPending: 1 once the peer has acknowledged every byte and sent nothing unread", { skip: !pendingBinding() && "addon not built" }, async () => {
    const b = pendingBinding()!;
    const server = (await import("node:net")).createServer();
    server.listen(0, "127.0.0.1");
    await once(server, "listening");
    const accepted = once(server, "connection") as Promise<[Socket]>;
    const client = connect({ port: (server.address() as { port: number }).port, host: "127.0.0.1", allowHalfOpen: true });
    client.on("error", () => undefined);
    const [sock] = await accepted;
    const fd = (sock as unknown as { _handle: { fd: number } })._handle.fd;
    try {
      const got = readAll(client);
      sock.end(Buffer.alloc(64 << 10, 1));
      await once(sock, "finish");
      assert.equal((await got).length, 64 << 10);
      assert.ok(await waitFor(() => b.nothingPending(fd) === 1, 2000), "acknowledged, nothing unread");
      client.write("unread");
      assert.ok(await waitFor(() => b.nothingPending(fd) === 0, 2000), "bytes from the peer wait unread");
      assert.throws(() => b.nothingPending(-1), TypeError);
    } finally {
      sock.destroy();
      client.destroy();
      server.close();
    }
  });

  it("a finished download or listing whose client acknowledged everything closes its data connection at once", { skip: !pendingBinding() && "addon not built" }, async () => {
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "small.txt"), "bytes");
      const raw = await rawLogin(t);
      try {
        for (const command of ["RETR small.txt", "LIST", "MLSD"]) {
          const port = await raw.epsvPort();
          // Half-open allowed: the client keeps its side open after the server's FIN.
          const data = connect({ port, host: "127.0.0.1", allowHalfOpen: true });
          await once(data, "connect");
          const reset = new Promise<string>((resolve) => data.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? "error")));
          const got = readAll(data);
          raw.send(command);
          await raw.expectReply(150);
          const body = (await got).toString();
          await raw.expectReply(226, 3000);
          if (command.startsWith("RETR")) assert.equal(body, "bytes");
          else assert.match(body, /small\.txt/);
          // The server's socket is gone: what the client sends now is answered with a reset, which
          // the next write reports. A server still lingering would read and drop it all.
          const late = setInterval(() => data.write("late", () => undefined), 50);
          const outcome = await Promise.race([reset, sleep(1500).then(() => "no reset")]);
          clearInterval(late);
          assert.match(outcome, /ECONNRESET|EPIPE/, command);
          data.destroy();
        }
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
    });
  });

  it("a client that sent bytes on a download's data connection still gets every byte, without a reset", async () => {
    await withServer(async (t) => {
      const content = payload(3 << 20);
      await writeFile(join(t.home("alice"), "big.bin"), content);
      const raw = await rawLogin(t);
      try {
        await raw.expect("TYPE I", 200);
        for (let round = 0; round < 3; round++) {
          const { body, failed } = await afterStrayBytes(raw, "RETR big.bin");
          assert.equal(failed, null);
          assert.equal(body.length, content.length);
          assert.ok(body.equals(content), "content differs");
        }
      } finally {
        await raw.close();
      }
    });
  });

  it("a stalled transfer is aborted with 426 after limits.stalledTimeout", async () => {
    await withServer(
      async (t) => {
        const raw = await rawLogin(t);
        try {
          const data = await raw.pasv();
          raw.send("STOR slow.bin");
          await raw.expectReply(150);
          data.write("some");
          await raw.expectReply(426, 3000);
          data.destroy();
          await raw.expect("NOOP", 200);
        } finally {
          await raw.close();
        }
      },
      { config: { limits: { stalledTimeout: 0.4 } } },
    );
  });
});

/** True when this machine has an IPv6 loopback (containers may have IPv6 turned off). */
const HAS_IPV6 = Object.values(networkInterfaces()).some((l) => l?.some((i) => i.address === "::1"));

describe("IPv6", { skip: HAS_IPV6 ? false : "no ::1 on this machine" }, () => {
  it("EPSV and EPRT |2| work on ::1; PASV is 522 there", async () => {
    await withServer(
      async (t) => {
        await writeFile(join(t.home("alice"), "six.txt"), "v6");
        const raw = await RawClient.connect(t.port, "::1");
        try {
          await raw.login();
          const data = await raw.epsv();
          raw.send("RETR six.txt");
          await raw.expectReply(150);
          assert.equal((await readAll(data)).toString(), "v6");
          await raw.expectReply(226);
          await raw.expect("EPSV 2", 229);
          await raw.expect("EPSV 1", 522);
          await raw.expect("PASV", 522);
          await raw.expect("EPRT |1|127.0.0.1|5000|", 522);
          const wait = await raw.eprt();
          raw.send("RETR six.txt");
          await raw.expectReply(150);
          assert.equal((await readAll(await wait.accepted)).toString(), "v6");
          wait.close();
          await raw.expectReply(226);
          // Any spelling of the client's own address (RFC 4291 §2.2) is its address.
          for (const spelling of ["0:0:0:0:0:0:0:1", "0000::0001", "::0:1"]) {
            const other = await listenLocal("::1");
            try {
              await raw.expect(`EPRT |2|${spelling}|${(other.server.address() as { port: number }).port}|`, 200);
              raw.send("RETR six.txt");
              await raw.expectReply(150);
              assert.equal((await readAll(await other.accepted)).toString(), "v6");
              await raw.expectReply(226);
            } finally {
              other.close();
            }
          }
          await raw.expect("EPRT |2|::2|5000|", 500);
        } finally {
          await raw.close();
        }
      },
      { config: { listen: { host: "::1" } } },
    );
  });

  it("on '::' an IPv4 client gets PASV with its IPv4 address and an IPv6 client EPSV", async () => {
    await withServer(
      async (t) => {
        const six = await RawClient.connect(t.port, "::1");
        try {
          await six.login();
          const data = await six.epsv();
          six.send("NLST");
          await six.expectReply(150);
          await readAll(data);
          await six.expectReply(226);
        } finally {
          await six.close();
        }
        const raw = await rawLogin(t);
        try {
          assert.match((await raw.expect("PASV", 227)).message, /\(127,0,0,1,/);
          const data = await raw.pasv();
          raw.send("NLST");
          await raw.expectReply(150);
          await readAll(data);
          await raw.expectReply(226);
          const wait = await raw.port();
          raw.send("NLST");
          await raw.expectReply(150);
          await readAll(await wait.accepted);
          wait.close();
          await raw.expectReply(226);
        } finally {
          await raw.close();
        }
      },
      { config: { listen: { host: "::" } } },
    );
  });
});

/** A link-local IPv6 address of this machine with its zone ("fe80::1%eth0"), or null. */
function linkLocal(): string | null {
  for (const [name, list] of Object.entries(networkInterfaces())) {
    const found = list?.find((i) => i.family === "IPv6" && i.address.toLowerCase().startsWith("fe80:"));
    if (found) return `${found.address.split("%")[0] ?? ""}%${name}`;
  }
  return null;
}
const LINK_LOCAL = linkLocal();

describe("a link-local IPv6 client", { skip: LINK_LOCAL === null ? "no link-local IPv6 address on this machine" : false }, () => {
  it("gets its EPSV data connection and its EPRT one, though the system names its data peer without the zone and EPRT cannot carry it", async () => {
    const full = LINK_LOCAL ?? "";
    const bare = full.split("%")[0] ?? "";
    await withServer(
      async (t) => {
        await writeFile(join(t.home("alice"), "ll.txt"), "link-local");
        const raw = await RawClient.connect(t.port, full);
        try {
          await raw.login();
          const data = await raw.epsv();
          raw.send("RETR ll.txt");
          await raw.expectReply(150);
          assert.equal((await readAll(data)).toString(), "link-local");
          await raw.expectReply(226);
          // EPRT as clients send it (curl, lftp): the address without its zone.
          const wait = await listenLocal(full);
          try {
            await raw.expect(`EPRT |2|${bare}|${(wait.server.address() as { port: number }).port}|`, 200);
            raw.send("RETR ll.txt");
            await raw.expectReply(150);
            assert.equal((await readAll(await wait.accepted)).toString(), "link-local");
            await raw.expectReply(226);
          } finally {
            wait.close();
          }
          // Another host on the link is still refused (no bounce).
          await raw.expect("EPRT |2|fe80::dead:beef|5000|", 500);
        } finally {
          await raw.close();
        }
        assert.ok(!t.logs.some((l) => l.event === "foreign-data-connection"), "the client's own data connection was taken for a foreign one");
      },
      { config: { listen: { host: "::" } } },
    );
  });
});

async function portsReleasedTo(t: TestServer, n: number): Promise<void> {
  assert.ok(await waitFor(() => t.server.context.pool.used === n, 2000), `ports held: ${t.server.context.pool.used}`);
}

/** Runs `cmd` (a RETR or STOR in TYPE I whose data connection the client neither reads nor
 * writes) and sends `lines` in one packet once it has begun: the codes of the next three replies,
 * and the data connection, left paused. */
async function threeRepliesDuring(raw: RawClient, cmd: string, lines: string): Promise<{ data: Socket; codes: number[] }> {
  await raw.expect("TYPE I", 200);
  const data = await raw.pasv();
  data.pause();
  raw.send(cmd);
  await raw.expectReply(150);
  raw.sendRaw(lines);
  const codes = [];
  for (let i = 0; i < 3; i++) codes.push((await raw.reply()).code);
  return { data, codes };
}
