/**
 * Passive data connections taken as accepted (data/raw.ts): a plain download or listing that the
 * socket's buffer takes whole is written from the accepted descriptor and ended there, and no
 * `net.Socket` is made for it; everything else becomes the `Socket` the listener would have made
 * and goes on as before. Counted through the `net.server.socket` diagnostics channel, on which
 * every Socket made for an accepted connection is published (data/accept.ts).
 */
import assert from "node:assert/strict";
import { subscribe, unsubscribe } from "node:diagnostics_channel";
import { once } from "node:events";
import { createHash } from "node:crypto";
import { readdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import type { Socket } from "node:net";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { pendingBinding, sendfileBinding, watchBinding } from "../src/native.ts";
import { afterStrayBytes, dataConnect, readAll, strayBytesRun, writeAll, type RawClient } from "./helpers/raw.ts";
import { payload, rawLogin, withServer } from "./helpers/run.ts";
import { waitFor, type TestServer, type TestServerOptions } from "./helpers/server.ts";
import { socketPair } from "./helpers/sockets.ts";

const NATIVE = sendfileBinding() !== null && pendingBinding() !== null;
const WATCH = watchBinding() !== null;

/** Ports of the listeners whose accepted connections became Sockets while `body` ran. */
async function socketsMade(body: () => Promise<void>): Promise<number[]> {
  const ports: number[] = [];
  const onSocket = (m: unknown): void => {
    // The port it was accepted on (a data socket the addon accepted has no net.Server).
    ports.push((m as { socket: Socket }).socket.localPort ?? 0);
  };
  subscribe("net.server.socket", onSocket);
  try {
    await body();
  } finally {
    unsubscribe("net.server.socket", onSocket);
  }
  return ports;
}

/** Runs `command` over a new EPSV connection; returns what came and the final reply's code. */
async function transfer(raw: RawClient, command: string): Promise<{ body: Buffer; code: number }> {
  const data = await dataConnect(await raw.epsvPort());
  let failed: string | null = null;
  data.on("error", (e: NodeJS.ErrnoException) => (failed = e.code ?? "error"));
  const got = readAll(data);
  raw.send(command);
  await raw.expectReply(150);
  const body = await got;
  const final = await raw.reply(5000);
  data.destroy();
  assert.equal(failed, null, `${command}: the data connection failed`);
  return { body, code: final.code };
}

/** Uploads `content` to `name` over a new EPSV connection; returns the final reply's code. */
async function store(raw: RawClient, command: string, content: Buffer): Promise<number> {
  const data = await dataConnect(await raw.epsvPort());
  data.on("error", () => undefined);
  raw.send(command);
  await raw.expectReply(150);
  await writeAll(data, content);
  const final = await raw.reply(5000);
  data.destroy();
  return final.code;
}

function sha(b: Buffer): string {
  return createHash("sha256").update(b).digest("hex");
}

/** Runs `body` on a server, logged in as alice over a raw client in TYPE `type`; the client is
 * closed afterwards. */
async function loggedIn(body: (t: TestServer, raw: RawClient) => Promise<void>, type = "I", opts: TestServerOptions = {}): Promise<void> {
  await withServer(async (t) => {
    const raw = await rawLogin(t);
    try {
      await raw.expect(`TYPE ${type}`, 200);
      await body(t, raw);
    } finally {
      await raw.close();
    }
  }, opts);
}

function dataPorts(t: TestServer, ports: number[]): number[] {
  return ports.filter((p) => p !== t.port);
}

describe("passive connections taken as accepted", { skip: !NATIVE && "native part not built" }, () => {
  it("a small download and the listings go from the accepted descriptor: every byte, 226, a closed connection, and no Socket made", async () => {
    await loggedIn(async (t, raw) => {
      const content = payload(10_000);
      await writeFile(join(t.home("alice"), "small.bin"), content);
      const made = await socketsMade(async () => {
        for (let i = 0; i < 3; i++) {
          const { body, code } = await transfer(raw, "RETR small.bin");
          assert.equal(code, 226);
          assert.ok(body.equals(content), "content differs");
        }
        const list = await transfer(raw, "LIST");
        assert.equal(list.code, 226);
        assert.match(list.body.toString(), /small\.bin\r\n$/);
        const mlsd = await transfer(raw, "MLSD");
        assert.equal(mlsd.code, 226);
        assert.match(mlsd.body.toString(), /size=10000;.*small\.bin\r\n/);
        const nlst = await transfer(raw, "NLST");
        assert.equal(nlst.body.toString(), "small.bin\r\n");
        await raw.expect("MKD empty", 257);
        const empty = await transfer(raw, "NLST empty");
        assert.equal(empty.code, 226);
        assert.equal(empty.body.length, 0);
      });
      assert.deepEqual(dataPorts(t, made), [], "a data connection became a Socket");
      await raw.expect("NOOP", 200);
      const logged = t.logs.filter((l) => l.event === "transfer" && l.path === "/small.bin");
      assert.deepEqual(
        logged.map((l) => [l.bytes, l.result]),
        [
          [10_000, "ok"],
          [10_000, "ok"],
          [10_000, "ok"],
        ],
      );
    });
  });

  it("a download the socket does not take at once goes on as a Socket: every byte, in order, from a REST offset too", async () => {
    await loggedIn(async (t, raw) => {
      const content = payload(24 << 20, 7);
      await writeFile(join(t.home("alice"), "big.bin"), content);
      const made = await socketsMade(async () => {
        const whole = await transfer(raw, "RETR big.bin");
        assert.equal(whole.code, 226);
        assert.equal(whole.body.length, content.length);
        assert.equal(sha(whole.body), sha(content));
        await raw.expect("REST 5000000", 350);
        const tail = await transfer(raw, "RETR big.bin");
        assert.equal(tail.code, 226);
        assert.equal(sha(tail.body), sha(content.subarray(5_000_000)));
      });
      assert.equal(dataPorts(t, made).length, 2, "each became a Socket");
    });
  });

  it("a small download or listing whose client sent bytes ends without a Socket too: every byte, the FIN, no reset", async () => {
    await loggedIn(async (t, raw) => {
      await writeFile(join(t.home("alice"), "small.bin"), payload(3000));
      const made = await socketsMade(async () => {
        for (const command of ["RETR small.bin", "LIST"]) {
          const { body, failed } = await afterStrayBytes(raw, command, 50);
          assert.equal(failed, null, command);
          if (command.startsWith("RETR")) assert.equal(body.length, 3000);
          else assert.match(body.toString(), /small\.bin/);
        }
      });
      // Unread bytes keep it from closing at once: its FIN went, the rest is read and dropped,
      // and it closes when the client does (RawData.linger; a Socket does that where the addon
      // was built without its watcher).
      assert.equal(dataPorts(t, made).length, WATCH ? 0 : 2);
    });
  });

  it("a lingering download's connection closes when the client closes or resets it; what the client sends meanwhile is dropped", { skip: !(NATIVE && WATCH) && "addon not built" }, async () => {
    await loggedIn(async (t, raw) => {
      await writeFile(join(t.home("alice"), "small.bin"), payload(3000));
      const made = await socketsMade(async () => {
        for (const ending of ["close", "reset"] as const) {
          // Half-open allowed: our side stays open after the server's FIN.
          const { data, body, failed } = await strayBytesRun(raw, "RETR small.bin", true);
          assert.equal(body.length, 3000);
          // Still open, still read: more bytes are dropped, not answered with a reset.
          await new Promise((resolve) => data.write(Buffer.alloc(100_000, 1), resolve));
          await sleep(50);
          assert.equal(failed(), null, ending);
          const closed = once(data, "close");
          if (ending === "close") data.end();
          else data.resetAndDestroy();
          await closed;
          // (withServer's teardown fails the test on a descriptor left open.)
          await raw.expect("NOOP", 200);
        }
      });
      assert.deepEqual(dataPorts(t, made), []);
    });
  });

  it("a client flooding its lingering download's connection: the session answers meanwhile, and the connection closes at the deadline", { skip: !(NATIVE && WATCH) && "addon not built" }, async () => {
    await loggedIn(
      async (t, raw) => {
        await writeFile(join(t.home("alice"), "small.bin"), payload(3000));
        const { data, body } = await strayBytesRun(raw, "RETR small.bin", true);
        assert.equal(body.length, 3000);
        // (events.once would reject on the EPIPE the flood ends with.)
        const closed = new Promise((resolve) => data.once("close", resolve));
        // As fast as the socket takes it, until the server closes the connection.
        const chunk = Buffer.alloc(64 * 1024, 1);
        const flood = (async () => {
          while (!data.destroyed) {
            if (!data.write(chunk)) await Promise.race([once(data, "drain").catch(() => undefined), closed]);
          }
        })();
        for (let i = 0; i < 5; i++) await raw.expect("NOOP", 200);
        await closed;
        await flood;
        await raw.expect("NOOP", 200);
      },
      "I",
      { config: { limits: { stalledTimeout: 1 } } },
    );
  });

  it("an ASCII download takes a Socket and converts line ends", async () => {
    await loggedIn(async (t, raw) => {
      await writeFile(join(t.home("alice"), "text.txt"), "a\nb\n");
      const made = await socketsMade(async () => {
        const { body, code } = await transfer(raw, "RETR text.txt");
        assert.equal(code, 226);
        assert.equal(body.toString(), "a\r\nb\r\n");
      });
      assert.equal(dataPorts(t, made).length, 1);
    }, "A");
  });

  it("a client that reset its data connection before RETR gets 426, and the session goes on", async () => {
    await loggedIn(async (t, raw) => {
      await writeFile(join(t.home("alice"), "small.bin"), payload(3000));
      for (const command of ["RETR small.bin", "LIST"]) {
        const data = await dataConnect(await raw.epsvPort());
        await sleep(30); // accepted by the server
        data.resetAndDestroy();
        await sleep(30);
        raw.send(command);
        let reply = await raw.reply(5000);
        if (reply.code === 150) reply = await raw.reply(5000);
        assert.equal(reply.code, 426, `${command}: ${reply.lines.join(" ")}`);
      }
      await raw.expect("NOOP", 200);
      const { code } = await transfer(raw, "RETR small.bin");
      assert.equal(code, 226);
    });
  });

  describe("uploads", { skip: !WATCH && "the addon was built without libuv's header" }, () => {
    it("a small upload is read from the accepted descriptor: the file, 226, and no Socket made (new, empty, replacing, appended, resumed)", async () => {
      await loggedIn(async (t, raw) => {
        const home = t.home("alice");
        await writeFile(join(home, "old.bin"), "old content");
        const made = await socketsMade(async () => {
          assert.equal(await store(raw, "STOR new.bin", payload(10_000)), 226);
          assert.equal(await store(raw, "STOR empty.bin", Buffer.alloc(0)), 226);
          assert.equal(await store(raw, "STOR old.bin", payload(3000, 3)), 226);
          assert.equal(await store(raw, "APPE new.bin", payload(500, 5)), 226);
          await raw.expect("REST 1000", 350);
          assert.equal(await store(raw, "STOR old.bin", payload(100, 9)), 226);
        });
        assert.deepEqual(dataPorts(t, made), [], "a data connection became a Socket");
        assert.deepEqual(await readFile(join(home, "new.bin")), Buffer.concat([payload(10_000), payload(500, 5)]));
        assert.equal((await readFile(join(home, "empty.bin"))).length, 0);
        assert.deepEqual(await readFile(join(home, "old.bin")), Buffer.concat([payload(3000, 3).subarray(0, 1000), payload(100, 9)]));
        assert.deepEqual((await readdir(home)).sort(), ["empty.bin", "new.bin", "old.bin"], "no temp file left");
        await raw.expect("NOOP", 200);
      });
    });

    it("an upload larger than one read goes on as a Socket, every byte in order (past the upload thread's start too)", async () => {
      await loggedIn(async (t, raw) => {
        const content = payload(6 << 20, 11);
        const made = await socketsMade(async () => {
          assert.equal(await store(raw, "STOR big.bin", content), 226);
        });
        assert.equal(dataPorts(t, made).length, 1);
        assert.equal(sha(await readFile(join(t.home("alice"), "big.bin"))), sha(content));
      });
    });

    it("a client that resets after its bytes gets 426, and the file its upload would replace is kept", async () => {
      await loggedIn(async (t, raw) => {
        const home = t.home("alice");
        await writeFile(join(home, "kept.bin"), "precious old content");
        for (const size of [3000, 100_000]) {
          const data = await dataConnect(await raw.epsvPort());
          data.on("error", () => undefined);
          raw.send("STOR kept.bin");
          await raw.expectReply(150);
          await new Promise((resolve) => data.write(payload(size), resolve));
          await sleep(30);
          data.resetAndDestroy();
          assert.equal((await raw.reply(5000)).code, 426, `${size} bytes`);
          assert.equal(await readFile(join(home, "kept.bin"), "utf8"), "precious old content");
          assert.deepEqual(await readdir(home), ["kept.bin"]);
        }
        await raw.expect("NOOP", 200);
      });
    });

    it("where the addon cannot watch the socket, an upload, and a download that cannot close at once, take a Socket and lose nothing", async () => {
      const b = watchBinding()!;
      const original = b.watchReadable;
      b.watchReadable = () => -22;
      try {
        await loggedIn(async (t, raw) => {
          const made = await socketsMade(async () => {
            assert.equal(await store(raw, "STOR a.bin", payload(5000)), 226);
            // Bytes from the client keep the download from closing at once; its FIN has gone
            // when the watch fails, and the Socket ends it again, harmlessly.
            const { body, failed } = await afterStrayBytes(raw, "RETR a.bin", 50);
            assert.equal(failed, null);
            assert.deepEqual(body, payload(5000));
          });
          assert.equal(dataPorts(t, made).length, 2);
          assert.deepEqual(await readFile(join(t.home("alice"), "a.bin")), payload(5000));
        });
      } finally {
        b.watchReadable = original;
      }
    });
  });

  describe("the addon's socket watcher (native/watch.c)", { skip: !WATCH && "the addon was built without libuv's header" }, () => {
    it("calls back with 0 while the socket has bytes or its end, never after unwatch; bad arguments are TypeErrors", async () => {
      const b = watchBinding()!;
      assert.throws(() => b.watchReadable(-1, () => undefined), TypeError);
      assert.throws(() => (b.watchReadable as (fd: unknown, cb: unknown) => unknown)(0, "not a function"), TypeError);
      assert.throws(() => b.unwatch({} as unknown as Parameters<typeof b.unwatch>[0]), TypeError);
      const [server, client] = await socketPair(true);
      try {
        const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
        const calls: number[] = [];
        const w = b.watchReadable(fd, (status) => void calls.push(status));
        assert.ok(w > 0, `watchReadable: ${w}`);
        const watcher = w as Parameters<typeof b.unwatch>[0];
        await sleep(30);
        assert.deepEqual(calls, [], "nothing to read yet");
        client.write("x");
        await waitFor(() => calls.length > 0, 2000);
        assert.equal(calls[0], 0);
        b.unwatch(watcher);
        b.unwatch(watcher);
        const seen = calls.length;
        client.write("more");
        client.end();
        await sleep(50);
        assert.equal(calls.length, seen, "no call after unwatch");
      } finally {
        client.destroy();
        server.destroy();
      }
    });

    it("many sockets at once: one unwatched by another's callback in the same turn hears nothing more; an error is EBADF once, then silence; a stale id stops nothing", async () => {
      const b = watchBinding()!;
      const pairs = await Promise.all(Array.from({ length: 80 }, () => socketPair(true)));
      const fdOf = (s: Socket): number => (s as unknown as { _handle: { fd: number } })._handle.fd;
      const ids: number[] = [];
      try {
        const calls = pairs.map(() => [] as number[]);
        // Whoever is called first unwatches all the others: they are all readable in this turn
        // (more than one batch of events), and none of them may be called after that.
        let first = -1;
        pairs.forEach(([server], i) => {
          const id = b.watchReadable(fdOf(server), (status) => {
            calls[i]!.push(status);
            if (first === -1) {
              first = i;
              ids.forEach((other, j) => j !== i && b.unwatch(other as Parameters<typeof b.unwatch>[0]));
            }
          });
          assert.ok(id > 0, `watchReadable: ${id}`);
          ids.push(id);
        });
        assert.equal(new Set(ids).size, ids.length, "ids are distinct");
        for (const [, client] of pairs) client.write("x");
        await waitFor(() => first !== -1, 2000);
        await sleep(50);
        calls.forEach((c, i) => assert.equal(c.length, i === first ? c.length : 0, `socket ${i} called after unwatch`));
        assert.ok(calls[first]!.length >= 1);
        b.unwatch(ids[first] as Parameters<typeof b.unwatch>[0]);
        // A slot used again gets a new id; the old one's unwatch leaves the new watcher alone.
        const [server0, client0] = pairs[0]!;
        const again: number[] = [];
        const id = b.watchReadable(fdOf(server0), (status) => void again.push(status));
        assert.ok(id > 0 && !ids.includes(id), `new id ${id}`);
        for (const old of ids) b.unwatch(old as Parameters<typeof b.unwatch>[0]);
        client0.write("y");
        await waitFor(() => again.length > 0, 2000);
        assert.equal(again[0], 0);
        b.unwatch(id as Parameters<typeof b.unwatch>[0]);
        // A reset: the callback hears a negative status once, and the watch has stopped.
        const [server1, client1] = pairs[1]!;
        const errs: number[] = [];
        const id1 = b.watchReadable(fdOf(server1), (status) => void errs.push(status));
        assert.ok(id1 > 0);
        client1.resetAndDestroy();
        await waitFor(() => errs.some((s) => s < 0), 2000);
        await sleep(50);
        assert.equal(errs.filter((s) => s < 0).length, 1, `statuses: ${errs.join(",")}`);
        assert.equal(errs[errs.length - 1]! < 0, true, "nothing after the error");
        b.unwatch(id1 as Parameters<typeof b.unwatch>[0]);
      } finally {
        for (const [server, client] of pairs) {
          client.destroy();
          server.destroy();
        }
      }
    });
  });
});
