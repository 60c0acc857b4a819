/**
 * Downloads (data/transfer.ts sendFile) over a real socket pair, by both paths: sendfile(2)
 * (src/native.ts: from this thread while the disk answers fast, else from the addon's own thread)
 * and the user-space loop (read straight from the page cache while the disk answers fast, through
 * the thread pool after a back-off). Every byte in order from any offset; a read that fails ends
 * the transfer with its error; a file sendfile refuses goes through user space; a download the
 * client stops reading is aborted or given up as stalled without leaving a descriptor or a thread.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { readdirSync, readFileSync } from "node:fs";
import fsCjs from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { once } from "node:events";
import { after, before, describe, it } from "node:test";
import { READ_CHUNK, sendBuffer, sendFile, Transfer } from "../src/data/transfer.ts";
import { lstatBinding, pendingBinding, sendfileBinding } from "../src/native.ts";
import { transferThreads } from "../src/data/threads.ts";
import * as quick from "../src/fs/quick.ts";
import { countCalls } from "./helpers/handles.ts";
import { openFds, waitFor } from "./helpers/server.ts";
import { socketPair } from "./helpers/sockets.ts";

const NO_SENDFILE = sendfileBinding() === null && "sendfile support not built (native/)";

/** Whether descriptor `fd` of this process has O_NONBLOCK (its flags, in octal, in /proc). */
function nonBlocking(fd: number): boolean {
  const flags = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "latin1"));
  assert.ok(flags, `flags of descriptor ${fd}`);
  return (Number.parseInt(flags[1] as string, 8) & fsCjs.constants.O_NONBLOCK) !== 0;
}

function threadCount(): number {
  return readdirSync("/proc/self/task").length;
}

function existsEnviron(): boolean {
  try {
    readFileSync("/proc/self/environ");
    return true;
  } catch {
    return false;
  }
}

/** Counts fs.readSync calls (on any descriptor) until stop(): the named exports of node:fs, which
 * the server's modules use, follow its default export after syncBuiltinESMExports(). */
function countReadSync(): { count: () => number; stop: () => void } {
  const orig = fsCjs.readSync;
  let calls = 0;
  fsCjs.readSync = ((...args: Parameters<typeof fsCjs.readSync>) => {
    calls++;
    return orig(...args);
  }) as typeof fsCjs.readSync;
  syncBuiltinESMExports();
  return {
    count: () => calls,
    stop: () => {
      fsCjs.readSync = orig;
      syncBuiltinESMExports();
    },
  };
}

const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

/** Everything the client side receives until the server ends the connection. */
function collect(client: Socket): Promise<Buffer> {
  const parts: Buffer[] = [];
  client.on("data", (b: Buffer) => parts.push(b));
  return new Promise((resolve, reject) => {
    client.once("end", () => resolve(Buffer.concat(parts)));
    client.once("error", reject);
  });
}

/** Whether a C compiler is on PATH (what native/build.mjs needs besides Node's headers). */
function haveCompiler(): boolean {
  return spawnSync(process.env.CC || "cc", ["--version"], { stdio: "ignore" }).status === 0;
}

const BUILD_SKIP = process.platform !== "linux" ? "Linux only" : !haveCompiler() ? "no C compiler on PATH" : false;

it("the native part (sendfile, lstatNames) is built and loads on Linux wherever a C compiler is", { skip: BUILD_SKIP }, () => {
  const why = "native/build/berth_native.node: run `node native/build.mjs` to see why it is missing or old";
  assert.ok(sendfileBinding(), why);
  assert.ok(lstatBinding(), why);
});

describe("downloads", () => {
  let dir: string;
  let file: string;
  const data = randomBytes(3 * READ_CHUNK + 12_345);
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-send-"));
    file = join(dir, "f.bin");
    await writeFile(file, data);
  });
  after(async () => {
    quick.backOff(0);
    await rm(dir, { recursive: true, force: true });
  });

  for (const kernel of [false, true]) {
    const path = kernel ? "sendfile" : "user space";
    const skip = kernel && NO_SENDFILE;
    for (const disk of ["fast", "backed off"] as const) {
      for (const start of [0, 1, READ_CHUNK + 7, data.length]) {
        it(`${path}: sends every byte from offset ${start}, ${disk} disk`, { skip }, async () => {
          // A synchronous read that the machine made slow (another test's load) sends the rest of
          // a "fast disk" download to the pool, as it should; such a try says nothing about the
          // fast path and is made again (at most three times).
          for (let tries = 1; ; tries++) {
            const [server, client] = await socketPair();
            const handle = await open(file, "r");
            const reads = countCalls(handle, "read");
            const syncReads = countReadSync();
            const received = collect(client);
            quick.backOff(disk === "fast" ? 0 : 60_000);
            let slowed = false;
            try {
              const t = new Transfer("download", "/f.bin", data.length - start);
              const sent = await sendFile(t, server, handle, start, false, 10_000, null, kernel);
              assert.equal(sent, data.length - start);
              assert.equal(t.bytes, sent);
              slowed = disk === "fast" && quick.backOffLeft() > 0;
            } finally {
              quick.backOff(0);
              syncReads.stop();
              await handle.close();
            }
            assert.equal(sha(await received), sha(data.subarray(start)));
            if (slowed && tries < 3) continue;
            const left = start < data.length;
            if (kernel) {
              assert.equal(reads() + syncReads.count(), 0, "no read at all: sendfile");
            } else if (disk === "fast") {
              assert.equal(reads(), 0, "read at once, not through the pool");
              if (left) assert.ok(syncReads.count() > 0, "read synchronously");
            } else if (left) {
              assert.ok(reads() > 0, "read through the pool");
            }
            return;
          }
        });
      }
    }

    it(`${path}: a transfer aborted before it begins sends nothing and says 426`, { skip }, async () => {
      const [server, client] = await socketPair();
      client.on("error", () => undefined);
      const received = collect(client).catch(() => Buffer.alloc(0));
      const handle = await open(file, "r");
      try {
        const t = new Transfer("download", "/f.bin", data.length);
        t.abort("abort");
        await assert.rejects(sendFile(t, server, handle, 0, false, 10_000, null, kernel), { code: 426, message: "Transfer aborted" });
        assert.equal(server.destroyed, true);
      } finally {
        await handle.close();
      }
      assert.equal((await received).length, 0);
    });

    it(`${path}: a read that fails ends the transfer with the read's error and destroys the socket`, { skip }, async () => {
      for (const disk of ["fast", "backed off"] as const) {
        const [server, client] = await socketPair();
        client.on("error", () => undefined);
        client.resume();
        // Opened for writing only: every read (and sendfile from it) is EBADF.
        const writeOnly = await open(join(dir, "w.bin"), "w");
        quick.backOff(disk === "fast" ? 0 : 60_000);
        try {
          const t = new Transfer("download", "/w.bin", 1000);
          await assert.rejects(sendFile(t, server, writeOnly, 0, false, 10_000, null, kernel), { code: "EBADF" }, disk);
          assert.equal(server.destroyed, true);
        } finally {
          quick.backOff(0);
          await writeOnly.close();
          client.destroy();
        }
      }
    });
  }

  it("sendfile: a small file goes out in one call, none more to find its end (the size known at open)", { skip: NO_SENDFILE }, async () => {
    // Linux counts a sendfile as a read system call of the calling thread (/proc/thread-self/io,
    // syscr), and the calls from this thread happen before sendFile's first await.
    const readCount = (): number => Number(/^syscr: (\d+)$/m.exec(readFileSync("/proc/thread-self/io", "utf8"))?.[1]);
    // Reading the counter costs reads of its own: measured with nothing in between.
    const a = readCount();
    const own = readCount() - a;
    const since = (before: number): number => readCount() - before - own;
    const small = join(dir, "small.bin");
    await writeFile(small, data.subarray(0, 4096));
    /** The read system calls of one send of `small` from `start` (`expected` bytes, or null when
     * the size is not known), its bytes checked. Anything else the thread reads meanwhile only
     * adds to the count: the least of up to three sends is what sendFile itself made. */
    const calls = async (start: number, expected: number | null, want: number): Promise<number> => {
      let least = Infinity;
      for (let attempt = 0; attempt < 3 && least > want; attempt++) {
        const [server, client] = await socketPair();
        const handle = await open(small, "r");
        const received = collect(client);
        try {
          const t = new Transfer("download", "/small.bin", expected);
          const before = readCount();
          const sending = sendFile(t, server, handle, start, false, 10_000, null, true);
          least = Math.min(least, since(before));
          assert.equal(await sending, 4096 - start);
        } finally {
          await handle.close();
        }
        assert.equal(sha(await received), sha(data.subarray(start, 4096)));
      }
      return least;
    };
    for (const [start, expected] of [[0, 4096], [100, 3996]] as const) {
      assert.equal(await calls(start, expected, 1), 1, "one sendfile");
    }
    // Size unknown (expected null): the end is found by a call that sends nothing.
    assert.equal(await calls(0, null, 2), 2, "a second sendfile finds the end");
  });

  it("sendfile: a file of exactly the main thread's budget (1 MiB) ends there, without a thread that finds nothing", { skip: NO_SENDFILE }, async (t) => {
    const native = sendfileBinding();
    assert.ok(native);
    const MIB = 1 << 20;
    const exact = join(dir, "exact.bin");
    const content = randomBytes(MIB);
    await writeFile(exact, content);
    const { sendNow, start } = native;
    let sentHere = 0;
    let threads = 0;
    native.sendNow = (...a) => {
      const n = sendNow.apply(native, a);
      if (n > 0) sentHere += n;
      return n;
    };
    native.start = (...a) => {
      threads++;
      return start.apply(native, a);
    };
    const [server, client] = await socketPair();
    const handle = await open(exact, "r");
    const received = collect(client);
    try {
      assert.equal(await sendFile(new Transfer("download", "/exact.bin", MIB), server, handle, 0, false, 10_000, null, true), MIB);
    } finally {
      native.sendNow = sendNow;
      native.start = start;
      await handle.close();
    }
    assert.ok((await received).equals(content));
    // The case only arises when the socket took the whole megabyte at once (it does on loopback).
    if (sentHere < MIB) {
      t.skip(`the socket took ${sentHere} bytes at once, not the whole megabyte`);
      return;
    }
    assert.equal(threads, 0, "no thread was started");
    // A file that grew past the size known at open: the call after the budget sends more, and the
    // rest goes out as usual (from the thread), every byte of it.
    const grown = Buffer.concat([content, randomBytes(100)]);
    await writeFile(exact, grown);
    const [server2, client2] = await socketPair();
    const handle2 = await open(exact, "r");
    const received2 = collect(client2);
    try {
      assert.equal(await sendFile(new Transfer("download", "/exact.bin", MIB), server2, handle2, 0, false, 10_000, null, true), MIB + 100);
    } finally {
      await handle2.close();
    }
    assert.ok((await received2).equals(grown));
  });

  it("sendfile: a file sendfile refuses (EINVAL) is sent through user space", { skip: NO_SENDFILE || !existsEnviron() }, async () => {
    const native = sendfileBinding();
    assert.ok(native);
    // /proc/self/environ does not change while the process runs, and sendfile cannot read it.
    const expected = readFileSync("/proc/self/environ");
    const [server, client] = await socketPair();
    const handle = await open("/proc/self/environ", "r");
    const received = collect(client);
    try {
      const fd = (server as unknown as { _handle: { fd: number } })._handle.fd;
      assert.equal(native.sendNow(fd, handle.fd, 0, 100), -22, "the precondition: EINVAL");
      const t = new Transfer("download", "/environ", 0);
      assert.equal(await sendFile(t, server, handle, 0, false, 10_000, null, true), expected.length);
    } finally {
      await handle.close();
    }
    assert.ok((await received).equals(expected));
  });

  // A passive data connection is accepted paused and never read during a download: the job makes
  // the socket blocking (sendfile waits for room in the kernel). A socket the event loop reads
  // (an active connection, which Node reads from connect) keeps its poll() loop.
  for (const paused of [true, false]) describe(`sendfile from the addon's thread, to a client that stops reading (${paused ? "a paused socket: blocking sendfile" : "a socket being read: poll()"})`, { skip: NO_SENDFILE }, () => {
    const MIB = 1 << 20;
    let bigFile: string;
    before(async () => {
      bigFile = join(dir, "big.bin");
      await writeFile(bigFile, Buffer.alloc(64 * MIB, 7));
    });

    /** A download of 64 MiB into a client that reads nothing: the server fills the socket buffers,
     * then its sendfile thread waits. Resolves once the transfer has stopped moving. */
    async function stuck(stalledMs: number): Promise<{ t: Transfer; sending: Promise<number>; client: Socket; server: Socket; close: () => Promise<void> }> {
      const [server, client] = await socketPair(paused);
      client.pause();
      client.on("error", () => undefined);
      const handle = await open(bigFile, "r");
      const t = new Transfer("download", "/big.bin", 64 * MIB);
      const sending = sendFile(t, server, handle, 0, false, stalledMs, null, true);
      sending.catch(() => undefined);
      let last = -1;
      while (t.bytes !== last) {
        last = t.bytes;
        await new Promise((r) => setTimeout(r, 150));
      }
      return { t, sending, client, server, close: () => handle.close() };
    }

    it("ABOR: 426 at once; the thread and its descriptors are gone", async () => {
      const fds = openFds();
      const threads = threadCount();
      const s = await stuck(60_000);
      try {
        assert.ok(s.t.bytes > 0 && s.t.bytes < 64 * MIB, `${s.t.bytes} bytes sent before the client stopped`);
        assert.equal(threadCount(), threads + 1, "one thread sends");
        assert.equal(transferThreads.running, 1, "it holds a thread slot");
        assert.equal(openFds(), fds + 2 + 3, "the job's two copies, besides the pair and the file");
        const t0 = Date.now();
        s.t.abort("abort");
        await assert.rejects(s.sending, { code: 426, message: "Transfer aborted" });
        assert.ok(Date.now() - t0 < 1000, `aborted in ${Date.now() - t0} ms`);
      } finally {
        s.client.destroy();
        await s.close();
      }
      assert.ok(await waitFor(() => threadCount() === threads && openFds() === fds, 2000), "no thread or descriptor left");
      assert.ok(await waitFor(() => transferThreads.running === 0, 2000), "its slot given back");
    });

    it("every thread slot taken: the rest goes out from the event loop, every byte, and no thread starts", async () => {
      const binding = sendfileBinding()!;
      const start = binding.start;
      let started = 0;
      binding.start = (...args: Parameters<typeof start>) => {
        started++;
        return start(...args);
      };
      const max = transferThreads.max;
      transferThreads.max = 0;
      const threads = threadCount();
      const [server, client] = await socketPair(paused);
      const handle = await open(bigFile, "r");
      try {
        const received = collect(client);
        const t = new Transfer("download", "/big.bin", 64 * MIB);
        const sending = sendFile(t, server, handle, 0, false, 10_000, null, true);
        // Past the main thread's first megabyte, a thread would send the rest.
        assert.ok(await waitFor(() => t.bytes > 2 * MIB, 5000), "sending on");
        assert.equal(threadCount(), threads, "no thread");
        assert.equal(await sending, 64 * MIB);
        server.end();
        const got = await received;
        assert.equal(got.length, 64 * MIB);
        assert.ok(got.every((b) => b === 7));
      } finally {
        transferThreads.max = max;
        binding.start = start;
        client.destroy();
        server.destroy();
        await handle.close();
      }
      // Both ends closed before the next test counts descriptors.
      if (!server.closed) await once(server, "close");
      if (!client.closed) await once(client, "close");
      assert.equal(started, 0, "the addon's thread never asked for");
      assert.equal(transferThreads.running, 0);
    });

    it("a client that reads nothing for the stall time: 426, stalled", async () => {
      const fds = openFds();
      const s = await stuck(700);
      try {
        await assert.rejects(s.sending, { code: 426, message: "Transfer aborted: no data moved for too long" });
        assert.equal(s.t.aborted, "stalled");
        assert.equal(s.server.destroyed, true);
      } finally {
        s.client.destroy();
        await s.close();
      }
      assert.ok(await waitFor(() => openFds() === fds, 2000), "no descriptor left");
    });

    it("a client that resets the connection: 426, and the file's descriptor is ours to close", async () => {
      const fds = openFds();
      const s = await stuck(60_000);
      try {
        s.client.resetAndDestroy();
        await assert.rejects(s.sending, { code: 426 });
      } finally {
        await s.close();
      }
      assert.ok(await waitFor(() => openFds() === fds, 2000), "no descriptor left");
    });

    it("a client that starts reading again gets every byte; the socket is non-blocking again afterwards", async () => {
      const s = await stuck(60_000);
      const fd = (s.server as unknown as { _handle: { fd: number } })._handle.fd;
      // The job's copy shares the socket's flags: blocking while it sends, only if nobody reads.
      assert.equal(nonBlocking(fd), !paused, paused ? "blocking while the job sends" : "left non-blocking");
      const received = collect(s.client);
      s.client.resume();
      // The download's end would close the socket at once once the client has everything
      // (data/linger.ts endSent); kept open here so that its flags can be read after the job.
      const pending = pendingBinding();
      const real = pending?.nothingPending;
      if (pending) pending.nothingPending = () => 0;
      try {
        assert.equal(await s.sending, 64 * MIB);
        assert.equal(nonBlocking(fd), true, "O_NONBLOCK is back once the job has ended");
        // Node's own writes on it still work as before (the end of a download).
        s.server.end();
      } finally {
        if (pending && real) pending.nothingPending = real;
        await s.close();
      }
      const got = await received;
      assert.equal(got.length, 64 * MIB);
      assert.ok(got.every((b) => b === 7));
    });
  });
});

describe("listings (sendBuffer)", () => {
  it("to a client that reset the connection: rejected with the write's error, never taken as sent", async () => {
    for (const size of [100, 300_000]) {
      const [server, client] = await socketPair(true);
      client.resetAndDestroy();
      await waitFor(() => server.readableEnded || server.destroyed || client.destroyed, 1000);
      await new Promise((r) => setTimeout(r, 30));
      const t = new Transfer("list", "/", size);
      await assert.rejects(sendBuffer(t, server, Buffer.alloc(size, 65), 10_000), { code: "ECONNRESET" }, `${size} bytes`);
      server.destroy();
    }
  });
});
