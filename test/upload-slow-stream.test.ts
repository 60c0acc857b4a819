/**
 * Uploads through a write stream on a slow disk (file calls through the thread pool, kept busy so
 * that writes queue there): TLS, TYPE A, bandwidth and quota uploads arrive byte-exact with the 226
 * after the last byte; ABOR, a reset, the quota's 552 and a shutdown leave no write landing after
 * the reply and nothing under the home open.
 */
import assert from "node:assert/strict";
import { pbkdf2 } from "node:crypto";
import fs, { mkdirSync, readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import type { Socket } from "node:net";
import { after, before, describe, it } from "node:test";
import { syncBuiltinESMExports } from "node:module";

/** Upload files opened as FileHandles (the slow disk's way), by name. */
const handleOpens = new Set<string>();
const realOpen = fs.promises.open;
before(() => {
  fs.promises.open = (async (...args: Parameters<typeof realOpen>) => {
    const h = await realOpen(...args);
    handleOpens.add(path.basename(String(args[0])));
    return h;
  }) as typeof realOpen;
  syncBuiltinESMExports();
});
after(() => {
  fs.promises.open = realOpen;
  syncBuiltinESMExports();
  // Every upload here went through a FileHandle and so through fs/quick.ts writeStreamOver.
  for (const n of ["big.bin", "ap.bin", "t.txt", "bw.bin", "ab.bin", "rs.bin", "q.bin", "sd.bin", "tls0.bin", "tlsab.bin"]) {
    assert.ok(handleOpens.has(n), `${n} was not opened as a FileHandle`);
  }
});
import { backOff } from "../src/fs/quick.ts";
import { dataConnect, storeCode, type RawClient } from "./helpers/raw.ts";
import { payload, rawLogin, withServer } from "./helpers/run.ts";
import { waitFor, type TestServer } from "./helpers/server.ts";
import { openIn, pasvPort, portsFree } from "./helpers/uploads.ts";
import { FtpsControl } from "./helpers/ftps.ts";

const KIB = 1024;
const MIB = 1024 * KIB;

/** Keeps the libuv pool busy: every file call waits behind `n` jobs of ~ms each. */
function clog(n = 4, iterations = 100_000): () => void {
  let on = true;
  const spin = (): void => {
    if (!on) return;
    pbkdf2("x", "y", iterations, 32, "sha256", () => spin());
  };
  for (let i = 0; i < n; i++) spin();
  return () => (on = false);
}

const CAROL = { name: "carol", password: "carol-pw", quotaBytes: 64 * MIB, quotaFiles: 100 };

async function session(t: TestServer): Promise<RawClient> {
  mkdirSync(t.home("carol"), { recursive: true });
  const a = await rawLogin(t, "carol");
  await a.expect("TYPE I", 200);
  return a;
}

async function sizeAtReply(a: RawClient, sock: Socket, data: Buffer, file: string): Promise<{ code: number; size: number }> {
  sock.end(data);
  sock.resume();
  const r = await a.reply(60_000);
  const size = statSync(file, { throwIfNoEntry: false })?.size ?? -1;
  return { code: r.code, size };
}

describe("uploads through a write stream on a slow disk", () => {
    async function run(body: (t: TestServer, a: RawClient, home: string) => Promise<void>, cfg = {}): Promise<void> {
      await withServer(
        async (t) => {
          const a = await session(t);
          const home = t.home("carol");
          backOff(600_000);
          const stop = clog();
          try {
            await body(t, a, home);
            await a.expect("NOOP", 200);
          } finally {
            stop();
            backOff(0);
            await a.close();
          }
          await portsFree(t);
          assert.deepEqual(t.logs.filter((l) => (l.level as number) >= 40 && l.event !== "shutdown"), []);
          assert.ok(await waitFor(() => openIn(home).length === 0, 2000), `still open: ${openIn(home).join(", ")}`);
        },
        { users: [CAROL], ...cfg },
      );
    }

    it("large quota-hooked upload: exact, 226 after the bytes", async () => {
      await run(async (_t, a, home) => {
        const data = payload(8 * MIB, 7);
        const sock = await dataConnect(pasvPort((await a.expect("PASV", 227)).message));
        await a.expect("STOR big.bin", 150);
        const r = await sizeAtReply(a, sock, data, path.join(home, "big.bin"));
        assert.equal(r.code, 226);
        assert.equal(r.size, data.length);
        assert.ok(readFileSync(path.join(home, "big.bin")).equals(data));
      });
    });

    it("APPE large quota-hooked upload onto existing", async () => {
      await run(async (_t, a, home) => {
        const first = payload(100 * KIB, 1);
        assert.equal(await storeCode(a, "STOR ap.bin", first), 226);
        const data = payload(4 * MIB, 7);
        const sock = await dataConnect(pasvPort((await a.expect("PASV", 227)).message));
        await a.expect("APPE ap.bin", 150);
        const r = await sizeAtReply(a, sock, data, path.join(home, "ap.bin"));
        assert.equal(r.code, 226);
        assert.equal(r.size, first.length + data.length);
        assert.ok(readFileSync(path.join(home, "ap.bin")).equals(Buffer.concat([first, data])));
      });
    });

    it("ASCII upload: CRLF to LF, exact", async () => {
      await run(async (_t, a, home) => {
        const lines: string[] = [];
        for (let i = 0; i < 200_000; i++) lines.push(`line ${i} ${"x".repeat(i % 37)}`);
        const wire = Buffer.from(lines.join("\r\n") + "\r\n");
        const want = Buffer.from(lines.join("\n") + "\n");
        await a.expect("TYPE A", 200);
        const sock = await dataConnect(pasvPort((await a.expect("PASV", 227)).message));
        await a.expect("STOR t.txt", 150);
        const r = await sizeAtReply(a, sock, wire, path.join(home, "t.txt"));
        assert.equal(r.code, 226);
        assert.equal(r.size, want.length);
        assert.ok(readFileSync(path.join(home, "t.txt")).equals(want));
        await a.expect("TYPE I", 200);
      });
    });

    it("bandwidth-limited upload: exact", async () => {
      await run(
        async (_t, a, home) => {
          const data = payload(3 * MIB, 9);
          const sock = await dataConnect(pasvPort((await a.expect("PASV", 227)).message));
          await a.expect("STOR bw.bin", 150);
          const r = await sizeAtReply(a, sock, data, path.join(home, "bw.bin"));
          assert.equal(r.code, 226);
          assert.equal(r.size, data.length);
          assert.ok(readFileSync(path.join(home, "bw.bin")).equals(data));
        },
        { config: { bandwidth: { transferUp: 4 * MIB } } },
      );
    });

    it("ABOR mid-upload: no write lands after the 226; a prefix; nothing open", async () => {
      await run(async (_t, a, home) => {
        const data = payload(16 * MIB, 5);
        const sock = await dataConnect(pasvPort((await a.expect("PASV", 227)).message));
        sock.on("error", () => undefined);
        await a.expect("STOR ab.bin", 150);
        sock.write(data);
        const f = path.join(home, "ab.bin");
        assert.ok(await waitFor(() => (statSync(f, { throwIfNoEntry: false })?.size ?? 0) > 1 * MIB, 20_000), "some bytes written");
        a.send("ABOR");
        const r1 = await a.reply(20_000);
        const r2 = await a.reply(20_000);
        const s1 = statSync(f, { throwIfNoEntry: false })?.size ?? -1;
        await new Promise((r) => setTimeout(r, 500));
        const s2 = statSync(f, { throwIfNoEntry: false })?.size ?? -1;
        assert.equal(r1.code, 426);
        assert.equal(r2.code, 226);
        assert.equal(s1, s2, "a write landed after the 226");
        if (s2 > 0) assert.ok(readFileSync(f).equals(data.subarray(0, s2)), "prefix");
        sock.destroy();
      });
    });

    it("client reset mid-upload", async () => {
      await run(async (_t, a, home) => {
        const data = payload(16 * MIB, 5);
        const sock = await dataConnect(pasvPort((await a.expect("PASV", 227)).message));
        sock.on("error", () => undefined);
        await a.expect("STOR rs.bin", 150);
        sock.write(data);
        const f = path.join(home, "rs.bin");
        assert.ok(await waitFor(() => (statSync(f, { throwIfNoEntry: false })?.size ?? 0) > 1 * MIB, 20_000), "some bytes written");
        sock.resetAndDestroy();
        const r1 = await a.reply(20_000);
        const s1 = statSync(f, { throwIfNoEntry: false })?.size ?? -1;
        await new Promise((r) => setTimeout(r, 500));
        const s2 = statSync(f, { throwIfNoEntry: false })?.size ?? -1;
        assert.notEqual(r1.code, 226);
        assert.equal(s1, s2, "a write landed after the reply");
        if (s2 > 0) assert.ok(readFileSync(f).equals(data.subarray(0, s2)), "prefix");
      });
    });

    it("quota 552 mid-upload: removed, nothing lands after", async () => {
      await run(
        async (_t, a, home) => {
          const data = payload(4 * MIB, 5);
          const sock = await dataConnect(pasvPort((await a.expect("PASV", 227)).message));
          sock.on("error", () => undefined);
          await a.expect("STOR q.bin", 150);
          sock.end(data);
          sock.resume();
          const r = await a.reply(20_000);
          const f = path.join(home, "q.bin");
          assert.equal(r.code, 552);
          assert.equal(fs.existsSync(f), false);
          // No write in flight recreates or extends it afterwards.
          await new Promise((res) => setTimeout(res, 500));
          assert.deepEqual(readdirSync(home), []);
          assert.equal(await storeCode(a, "STOR small.bin", payload(1 * MIB)), 226);
          assert.equal(await storeCode(a, "STOR small2.bin", payload(1 * MIB + 1)), 552);
        },
        { users: [{ ...CAROL, quotaBytes: 2 * MIB }] },
      );
    });

    it("server shutdown during an upload", async () => {
      let home = "";
      await withServer(
        async (t) => {
          const a = await session(t);
          home = t.home("carol");
          backOff(600_000);
          const stop = clog();
          try {
            const data = payload(16 * MIB, 5);
            const sock = await dataConnect(pasvPort((await a.expect("PASV", 227)).message));
            sock.on("error", () => undefined);
            await a.expect("STOR sd.bin", 150);
            sock.write(data);
            const f = path.join(home, "sd.bin");
            assert.ok(await waitFor(() => (statSync(f, { throwIfNoEntry: false })?.size ?? 0) > 1 * MIB, 20_000), "some bytes written");
            await t.server.shutdown(500);
            // Whatever the shutdown left is a prefix of what was sent, and no write lands after it.
            const s1 = statSync(f, { throwIfNoEntry: false })?.size ?? 0;
            await new Promise((res) => setTimeout(res, 300));
            assert.equal(statSync(f, { throwIfNoEntry: false })?.size ?? 0, s1);
            if (s1 > 0) assert.ok(readFileSync(f).equals(data.subarray(0, s1)));
            sock.destroy();
          } finally {
            stop();
            backOff(0);
            await a.close().catch(() => undefined);
          }
          assert.ok(await waitFor(() => openIn(home).length === 0, 3000), `still open: ${openIn(home).join(", ")}`);
        },
        { users: [CAROL] },
      );
    });

    it("explicit FTPS upload on a slow disk: exact, 226 after bytes", async () => {
      await withServer(
        async (t) => {
          mkdirSync(t.home("alice"), { recursive: true });
          const c = await FtpsControl.explicit(t.port);
          await c.login();
          await c.protect();
          await c.expect("TYPE I", 200);
          backOff(600_000);
          const stop = clog();
          try {
            for (const [i, size] of [4 * MIB, 1, 0, 300 * KIB].entries()) {
              const data = payload(size, 11 + i);
              const port = await c.epsv();
              c.send(`STOR tls${i}.bin`);
              const d = await c.tlsData(port);
              await d.handshake;
              assert.equal((await c.reply()).code, 150);
              await new Promise<void>((res) => d.socket.end(data, () => res()));
              d.socket.resume();
              const r = await c.reply(60_000);
              const f = path.join(t.home("alice"), `tls${i}.bin`);
              const size1 = statSync(f).size;
              assert.equal(r.code, 226, r.text);
              assert.equal(size1, data.length);
              assert.ok(readFileSync(f).equals(data));
              d.socket.destroy();
            }
            // TLS upload aborted mid-way
            const big = payload(16 * MIB, 3);
            const port = await c.epsv();
            c.send("STOR tlsab.bin");
            const d = await c.tlsData(port);
            await d.handshake;
            assert.equal((await c.reply()).code, 150);
            d.socket.write(big);
            const f = path.join(t.home("alice"), "tlsab.bin");
            assert.ok(await waitFor(() => (statSync(f, { throwIfNoEntry: false })?.size ?? 0) > 1 * MIB, 20_000));
            d.raw.resetAndDestroy();
            assert.equal((await c.reply(20_000)).code, 426);
            const s1 = statSync(f).size;
            await new Promise((res) => setTimeout(res, 500));
            const s2 = statSync(f).size;
            assert.equal(s1, s2);
            assert.ok(readFileSync(f).equals(big.subarray(0, s2)));
            await c.expect("NOOP", 200);
          } finally {
            stop();
            backOff(0);
            await c.quit();
          }
          assert.ok(await waitFor(() => openIn(t.home("alice")).length === 0, 2000), `still open: ${openIn(t.home("alice")).join(", ")}`);
        },
        { config: { tls: { mode: "explicit" } } },
      );
    });
  });
