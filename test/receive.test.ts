/**
 * Uploads read through one reused buffer (data/receive.ts), plain and over TLS: every byte lands in
 * order, in every shape the data can arrive in, the socket pauses while the disk is behind, and a failure on
 * either side settles only once no write is in flight.
 */
import assert from "node:assert/strict";
import { randomBytes, createHash } from "node:crypto";
import { once } from "node:events";
import { mkdtemp, open, readFile, rm, stat, type FileHandle } from "node:fs/promises";
import { constants as fsConstants, readdirSync, readFileSync } from "node:fs";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, describe, it } from "node:test";
import { HANDOFF_AT, receiveDirect, type DirectProgress, type UploadThread } from "../src/data/receive.ts";
import { userBufferReads } from "../src/data/userbuffer.ts";
import { receiveBinding, type ReceiveBinding } from "../src/native.ts";
import { transferThreads } from "../src/data/threads.ts";
import * as quick from "../src/fs/quick.ts";
import { requireCloseNotify } from "../src/data/tls.ts";
import { receiveFile, Transfer } from "../src/data/transfer.ts";
import { countCalls } from "./helpers/handles.ts";
import { openFds, waitFor } from "./helpers/server.ts";
import { socketPair, tlsSocketPair } from "./helpers/sockets.ts";

const sha = (b: Uint8Array): string => createHash("sha256").update(b).digest("hex");

/** A disk whose every write takes `ms` (and, with `failAt`, whose write number `failAt` fails with
 * ENOSPC), counting the writes made and those in flight. */
function slowDisk(real: FileHandle, ms: number, failAt = 0): { handle: FileHandle; writes: () => number; inFlight: () => number } {
  let writes = 0;
  let inFlight = 0;
  const handle = {
    write: async (buf: Buffer, off: number, len: number, pos: number) => {
      writes++;
      inFlight++;
      try {
        await sleep(ms);
        if (writes === failAt) throw Object.assign(new Error("no space left on device"), { code: "ENOSPC" });
        return await real.write(buf, off, len, pos);
      } finally {
        inFlight--;
      }
    },
  } as unknown as FileHandle;
  return { handle, writes: () => writes, inFlight: () => inFlight };
}

describe("uploads through a reused read buffer", () => {
  let dir: string;
  let n = 0;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-receive-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** Writes `data` from the client in pieces of `piece` bytes, `gapMs` apart, then ends. */
  async function send(client: Socket, data: Buffer, piece: number, gapMs = 0): Promise<void> {
    for (let at = 0; at < data.length; at += piece) {
      if (!client.write(data.subarray(at, at + piece))) await once(client, "drain");
      if (gapMs > 0) await sleep(gapMs);
    }
    client.end();
  }

  async function tempFile(): Promise<[string, FileHandle]> {
    const file = join(dir, `up-${n++}.bin`);
    return [file, await open(file, "w")];
  }

  it("is available for a plain accepted socket and for a TLS one on this Node", async () => {
    const [server, client] = await socketPair(true);
    assert.equal(userBufferReads(server), true, "the fast path must stay available on supported Node versions");
    client.destroy();
    server.destroy();
    const [tlsServer, tlsClient] = await tlsSocketPair();
    assert.equal(userBufferReads(tlsServer), true, "the fast path must stay available for TLS on supported Node versions");
    tlsClient.destroy();
    tlsServer.destroy();
  });

  /** [server side, client side, the client's TCP socket], plain or TLS, the server side not reading yet. */
  const pair = async (tls: boolean): Promise<[Socket, Socket, Socket]> => {
    if (tls) return tlsSocketPair();
    const [server, client] = await socketPair(true);
    return [server, client, client];
  };

  for (const [name, size, piece, gap] of [
    ["nothing", 0, 1, 0],
    ["one byte", 1, 1, 0],
    ["4 KiB", 4096, 4096, 0],
    ["300 KiB in odd pieces", 300 * 1024 + 7, 9973, 0],
    ["5 MiB in large writes", 5 * 1024 * 1024 + 3, 1 << 20, 0],
    ["a trickle of small pieces", 64 * 1024, 1000, 1],
  ] as const) {
    for (const tls of [false, true]) {
    // A fast disk: each read is written at once from the read buffer (fs/quick.ts writeNow). Backed
    // off (a slow disk): reads are staged and written through the handle, one write in flight.
    for (const disk of ["fast", "backed off"] as const) {
    it(`lands every byte in order${tls ? " over TLS" : ""}, ${disk} disk: ${name}`, async () => {
      const data = randomBytes(size);
      const [server, client] = await pair(tls);
      const [file, handle] = await tempFile();
      const writes = countCalls(handle, "write");
      const progress = { written: 0 };
      quick.backOff(disk === "fast" ? 0 : 60_000);
      try {
        const sending = send(client, data, piece, gap);
        client.resume();
        await receiveDirect(server, handle, 0, progress);
        await sending;
      } finally {
        quick.backOff(0);
      }
      await handle.close();
      server.destroy();
      assert.equal(progress.written, size);
      assert.equal(sha(await readFile(file)), sha(data));
      if (disk === "fast") assert.equal(writes(), 0, "written from the read buffer, not through the handle");
      else if (size > 0) assert.ok(writes() > 0);
    });
    }
    }
  }

  it("takes what the socket read before the switch, even when the client had already ended", async () => {
    const data = randomBytes(40_000);
    // Not paused: the socket reads into its own buffers until the upload starts.
    const [server, client] = await socketPair(false);
    client.end(data);
    await once(server, "readable");
    await sleep(50);
    const [file, handle] = await tempFile();
    const progress = { written: 0 };
    await receiveDirect(server, handle, 0, progress);
    await handle.close();
    server.destroy();
    assert.equal(sha(await readFile(file)), sha(data));
  });

  it("writes at the starting position (a resumed upload) and leaves what is before it", async () => {
    const [file, handle] = await tempFile();
    await handle.write(Buffer.from("head-"), 0, 5, 0);
    const data = randomBytes(2 * 1024 * 1024);
    const [server, client] = await socketPair(true);
    const sending = send(client, data, 65536);
    await receiveDirect(server, handle, 5, { written: 0 });
    await sending;
    await handle.close();
    server.destroy();
    const got = await readFile(file);
    assert.equal(got.subarray(0, 5).toString(), "head-");
    assert.equal(sha(got.subarray(5)), sha(data));
  });

  for (const tls of [false, true]) {
  it(`pauses the socket while the disk is behind, and still lands every byte${tls ? " (TLS)" : ""}`, async () => {
    const [file, real] = await tempFile();
    const slow = slowDisk(real, 40);
    const data = randomBytes(12 * 1024 * 1024);
    const [server, client] = await pair(tls);
    const sending = send(client, data, 1 << 20);
    const t0 = Date.now();
    await receiveDirect(server, slow.handle, 0, { written: 0 });
    await sending;
    await real.close();
    server.destroy();
    assert.ok(slow.writes() >= 12, `${slow.writes()} writes`);
    // Twelve writes of 40 ms, one at a time: the socket waited for them.
    assert.ok(Date.now() - t0 >= 12 * 40 - 20);
    assert.equal(sha(await readFile(file)), sha(data));
  });
  }

  it("a write error ends the upload with that error, the socket destroyed, no write left in flight", async () => {
    const [, real] = await tempFile();
    const failing = slowDisk(real, 20, 2);
    const [server, client] = await socketPair(true);
    client.on("error", () => undefined);
    void send(client, randomBytes(8 * 1024 * 1024), 1 << 20).catch(() => undefined);
    await assert.rejects(receiveDirect(server, failing.handle, 0, { written: 0 }), { code: "ENOSPC" });
    assert.equal(failing.inFlight(), 0);
    assert.equal(server.destroyed, true);
    await real.close();
    client.destroy();
  });

  for (const tls of [false, true]) {
  it(`a failing synchronous write ends the upload with its error, the socket destroyed${tls ? " (TLS: records gathered, then written)" : ""}`, async () => {
    const [file] = await tempFile();
    const readOnly = await open(file, "r");
    const [server, client] = await pair(tls);
    client.on("error", () => undefined);
    void send(client, randomBytes(2 * 1024 * 1024), 1 << 16).catch(() => undefined);
    quick.backOff(0);
    await assert.rejects(receiveDirect(server, readOnly, 0, { written: 0 }), { code: "EBADF" });
    assert.equal(server.destroyed, true);
    await readOnly.close();
    client.destroy();
  });
  }

  // Over TLS a reset or a cut is told apart from a clean end by close_notify, which the data
  // connection checks (data/tls.ts, test/tls.test.ts), not this module.
  it("a client that resets mid-way fails the upload once the write in flight has returned", async () => {
    const [, real] = await tempFile();
    const slow = slowDisk(real, 200);
    const [server, client] = await socketPair(true);
    // Enough to start a write (which takes 200 ms), not enough to pause the socket: the server is
    // reading, with a write in flight, when the reset comes.
    client.write(randomBytes(900 * 1024));
    setTimeout(() => client.resetAndDestroy(), 80);
    await assert.rejects(receiveDirect(server, slow.handle, 0, { written: 0 }), { code: "ECONNRESET" });
    assert.equal(slow.inFlight(), 0);
    await real.close();
  });

  // The disk is slow, so reading is paused for backpressure when the end arrives: a TCP end without
  // close_notify must still fail the upload, and close_notify must still end it cleanly.
  for (const ending of ["close_notify", "cut"] as const) {
    it(`over TLS with reading paused: ${ending === "cut" ? "a TCP end without close_notify fails with 426" : "close_notify lands every byte"}`, async () => {
      const [file, real] = await tempFile();
      const slow = slowDisk(real, 40);
      const data = randomBytes(6 * 1024 * 1024);
      const [server, client, raw] = await tlsSocketPair();
      requireCloseNotify(server as TLSSocket);
      client.on("error", () => undefined);
      const receiving = receiveDirect(server, slow.handle, 0, { written: 0 });
      receiving.catch(() => undefined);
      await new Promise<void>((resolve) => client.write(data, () => resolve()));
      if (ending === "close_notify") client.end();
      else raw.end();
      if (ending === "cut") await assert.rejects(receiving, { code: 426 });
      else await receiving;
      assert.equal(slow.inFlight(), 0);
      assert.ok(slow.writes() >= 6, `${slow.writes()} writes: reading was paused`);
      await real.close();
      client.destroy();
      if (ending === "close_notify") assert.equal(sha(await readFile(file)), sha(data));
    });
  }

  it("receiveFile uses it for a plain binary upload and settles with the bytes written", async () => {
    const data = randomBytes(3 * 1024 * 1024 + 11);
    const [server, client] = await socketPair(true);
    const [file, handle] = await tempFile();
    const t = new Transfer("upload", "/up.bin", null);
    const sending = send(client, data, 100_000);
    client.resume();
    const got = await receiveFile(t, server, handle, 0, false, 10_000);
    await sending;
    await handle.close();
    assert.equal(got, data.length);
    assert.equal(t.bytes, data.length);
    assert.equal(sha(await readFile(file)), sha(data));
  });

  it("an aborted transfer (ABOR) gives 426 and no write in flight", async () => {
    const [, real] = await tempFile();
    const slow = slowDisk(real, 30);
    const [server, client] = await socketPair(true);
    client.on("error", () => undefined);
    const t = new Transfer("upload", "/up.bin", null);
    client.write(randomBytes(4 * 1024 * 1024));
    setTimeout(() => t.abort("abort"), 20);
    await assert.rejects(receiveFile(t, server, slow.handle, 0, false, 10_000), { code: 426 });
    assert.equal(slow.inFlight(), 0);
    await real.close();
    client.destroy();
  });

  // Node reports a reset that comes while data is still unread as a clean end (libuv ends the short
  // read on the hang-up without reading the error): receiveFile must ask the kernel before it calls
  // the upload complete. The client sends, then resets or ends, before the server reads a byte.
  const paths = {
    binary: { ascii: false, hook: null },
    ASCII: { ascii: true, hook: null },
    "bandwidth-limited": { ascii: false, hook: { chunkSize: () => 64 << 10, take: () => 1, release: () => undefined } },
  } as const;
  for (const [name, { ascii, hook }] of Object.entries(paths)) {
    for (const ending of ["reset", "end"] as const) {
      it(`${name}: a client that ${ending === "reset" ? "resets with data unread fails with 426" : "ends with data unread lands every byte"}`, async () => {
        const [file, real] = await tempFile();
        // Letters only: ASCII mode leaves them as they are.
        const data = Buffer.from(randomBytes(2 * 1024 * 1024).map((b) => 0x61 + (b % 26)));
        const [server, client] = await socketPair(true);
        client.on("error", () => undefined);
        client.write(data);
        await sleep(50);
        if (ending === "reset") client.resetAndDestroy();
        else client.end();
        await sleep(20);
        const t = new Transfer("upload", "/up.bin", null);
        const receiving = receiveFile(t, server, real, 0, ascii, 10_000, hook);
        if (ending === "reset") {
          await assert.rejects(receiving, { code: 426 });
          assert.ok(server.bytesRead > 0, "the reset came with data unread");
        } else {
          assert.equal(await receiving, data.length);
          assert.equal(sha(await readFile(file)), sha(data));
        }
        await real.close();
        client.destroy();
        server.destroy();
      });
    }
  }
});

/** Whether descriptor `fd` of this process has O_NONBLOCK (its flags, in octal, in /proc). */
function nonBlocking(fd: number): boolean {
  const flags = /^flags:\s*([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, "latin1"));
  assert.ok(flags, `flags of descriptor ${fd}`);
  return (Number.parseInt(flags[1] as string, 8) & fsConstants.O_NONBLOCK) !== 0;
}

const threadCount = (): number => readdirSync("/proc/self/task").length;

describe("large uploads on a thread of their own (native/receive.c)", { skip: receiveBinding() === null && "the addon is not built (native/)" }, () => {
  let dir: string;
  let n = 0;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-receive-thread-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** The addon's receive, with every call's arguments kept (and, with `refuse`, no thread). */
  function watched(refuse = false): { binding: ReceiveBinding; calls: unknown[][] } {
    const real = receiveBinding() as ReceiveBinding;
    const calls: unknown[][] = [];
    const binding: ReceiveBinding = {
      receive: (...a) => {
        calls.push(a);
        if (refuse) throw Object.assign(new Error("cannot start a transfer thread"), { code: "EAGAIN" });
        return real.receive(...a);
      },
      cancel: real.cancel,
    };
    return { binding, calls };
  }

  /** A file, the server side of a connection that is not reading yet, its client, and the way to
   * the thread for them. */
  async function setUp(stalledMs = 10_000, refuse = false) {
    const file = join(dir, `up-${n++}.bin`);
    const handle = await open(file, "w");
    const [server, client] = await socketPair(true);
    client.on("error", () => undefined);
    const { binding, calls } = watched(refuse);
    const socketFd = (server as unknown as { _handle: { fd: number } })._handle.fd;
    const thread: UploadThread = { binding, socketFd, fileFd: handle.fd, stalledMs };
    const progress: DirectProgress = { written: 0, running: null };
    return { file, handle, server, client, thread, calls, progress, socketFd };
  }

  /** Writes `data` in pieces of 1 MiB, `gapMs` apart; ends the connection unless told not to.
   * Settles early if the connection closes. */
  async function send(client: Socket, data: Buffer, gapMs = 0, end = true): Promise<void> {
    const closed = once(client, "close").catch(() => undefined);
    for (let at = 0; at < data.length && !client.destroyed; at += 1 << 20) {
      if (!client.write(data.subarray(at, at + (1 << 20)))) await Promise.race([once(client, "drain"), closed]);
      if (gapMs > 0) await sleep(gapMs);
    }
    if (end && !client.destroyed) client.end();
  }

  it(`takes over after ${HANDOFF_AT >> 20} MiB on a blocking socket, lands every byte, and counts them while it runs`, async () => {
    const data = randomBytes(16 * 1024 * 1024 + 5);
    const u = await setUp();
    const fdsBefore = openFds();
    const seen = { running: 0, blocking: false };
    const sending = send(u.client, data, 15);
    const sampler = setInterval(() => {
      const running = u.progress.running;
      if (running && (running[0] ?? 0n) > 0n) {
        seen.running = Math.max(seen.running, Number(running[0]));
        seen.blocking ||= !nonBlocking(u.socketFd);
      }
    }, 5);
    try {
      await receiveDirect(u.server, u.handle, 0, u.progress, u.thread);
      await sending;
    } finally {
      clearInterval(sampler);
    }
    await u.handle.close();
    assert.equal(u.calls.length, 1, "one thread");
    const [, , position, stalled, , , mayBlock] = u.calls[0] as [number, number, number, number, unknown, unknown, boolean];
    assert.ok(position >= HANDOFF_AT && position < HANDOFF_AT + (1 << 20), `handed over at ${position}`);
    assert.equal(stalled, 10_000);
    assert.equal(mayBlock, true);
    assert.ok(seen.running > 0, "the count moved while the thread ran");
    assert.ok(seen.blocking, "the socket was blocking while the thread read it");
    assert.ok(nonBlocking(u.socketFd), "non-blocking again once the thread is done");
    assert.equal(u.progress.running, null);
    assert.equal(transferThreads.running, 0, "its thread slot given back");
    assert.equal(u.progress.written, data.length);
    assert.equal(sha(await readFile(u.file)), sha(data));
    assert.equal(openFds(), fdsBefore - 1, "the thread's copies are closed (and the file's own handle)");
    u.server.destroy();
  });

  it("after slow writes (reads staged and written through the pool) it takes over too, once a write has returned with nothing staged", async () => {
    const data = randomBytes(16 * 1024 * 1024 + 3);
    const u = await setUp();
    quick.backOff(60_000);
    try {
      const sending = send(u.client, data, 10);
      await receiveDirect(u.server, u.handle, 0, u.progress, u.thread);
      await sending;
    } finally {
      quick.backOff(0);
    }
    await u.handle.close();
    assert.equal(u.calls.length, 1, "one thread");
    const position = (u.calls[0] as number[])[2] as number;
    assert.ok(position >= HANDOFF_AT && position < data.length, `handed over at ${position}`);
    assert.equal(u.progress.written, data.length);
    assert.equal(sha(await readFile(u.file)), sha(data));
    u.server.destroy();
  });

  it("a small upload never starts one", async () => {
    const data = randomBytes(HANDOFF_AT - 1);
    const u = await setUp();
    const threads = threadCount();
    const sending = send(u.client, data);
    await receiveDirect(u.server, u.handle, 0, u.progress, u.thread);
    await sending;
    await u.handle.close();
    assert.equal(u.calls.length, 0);
    assert.equal(threadCount(), threads);
    assert.equal(sha(await readFile(u.file)), sha(data));
    u.server.destroy();
  });

  it("a client that stops sending: the thread gives up after stalledMs with ETIMEDOUT, every byte received is in the file, nothing is left open", async () => {
    const data = randomBytes(6 * 1024 * 1024);
    const u = await setUp(300);
    const fdsBefore = openFds();
    const threads = threadCount();
    const receiving = receiveDirect(u.server, u.handle, 0, u.progress, u.thread);
    receiving.catch(() => undefined);
    await send(u.client, data, 0, false);
    const t0 = Date.now();
    await assert.rejects(receiving, { code: "ETIMEDOUT", syscall: "recv" });
    assert.ok(Date.now() - t0 >= 250, `gave up ${Date.now() - t0} ms after the last write`);
    assert.equal(u.calls.length, 1);
    assert.equal(u.server.destroyed, true);
    assert.equal(u.progress.written, data.length);
    await u.handle.close();
    assert.equal(sha(await readFile(u.file)), sha(data));
    assert.ok(await waitFor(() => threadCount() === threads, 2000), "the thread is gone");
    assert.ok(await waitFor(() => openFds() <= fdsBefore - 2, 2000), `${openFds()} descriptors open, ${fdsBefore} before (socket and file closed since)`);
    u.client.destroy();
  });

  it("a client that resets while the thread reads fails the upload with ECONNRESET", async () => {
    const u = await setUp();
    const receiving = receiveDirect(u.server, u.handle, 0, u.progress, u.thread);
    receiving.catch(() => undefined);
    await send(u.client, randomBytes(6 * 1024 * 1024), 0, false);
    assert.ok(await waitFor(() => u.progress.written + Number(u.progress.running?.[0] ?? 0n) >= 6 * 1024 * 1024, 5000), "the thread wrote what came");
    u.client.resetAndDestroy();
    await assert.rejects(receiving, { code: "ECONNRESET" });
    assert.equal(u.server.destroyed, true);
    await u.handle.close();
  });

  it("a socket destroyed meanwhile (ABOR, a closed control connection) cancels the thread; nothing is written after the upload has failed", async () => {
    const u = await setUp();
    const threads = threadCount();
    // Sending on, for the thread to read.
    const sending = send(u.client, randomBytes(64 * 1024 * 1024), 20, false).catch(() => undefined);
    const receiving = receiveDirect(u.server, u.handle, 0, u.progress, u.thread);
    assert.ok(await waitFor(() => (u.progress.running?.[0] ?? 0n) > 0n, 5000), "the thread runs");
    u.server.destroy();
    await assert.rejects(receiving, { code: "ERR_STREAM_PREMATURE_CLOSE" });
    const size = (await stat(u.file)).size;
    assert.equal(size, u.progress.written);
    await sleep(100);
    assert.equal((await stat(u.file)).size, size, "no write after the upload failed");
    assert.ok(await waitFor(() => threadCount() === threads, 2000), "the thread is gone");
    u.client.destroy();
    await sending;
    await u.handle.close();
  });

  it("a write that fails on the thread (ENOSPC) fails the upload with the file's error", async () => {
    const u = await setUp();
    // The first megabytes go to the real file, the thread's to /dev/full.
    const full = await open("/dev/full", "w");
    const thread: UploadThread = { ...u.thread, fileFd: full.fd };
    void send(u.client, randomBytes(8 * 1024 * 1024), 0, false).catch(() => undefined);
    await assert.rejects(receiveDirect(u.server, u.handle, 0, u.progress, thread), { code: "ENOSPC", syscall: "write" });
    assert.equal(u.server.destroyed, true);
    assert.ok(u.progress.written >= HANDOFF_AT, `${u.progress.written} bytes written before the thread`);
    await full.close();
    await u.handle.close();
    u.client.destroy();
  });

  it("every thread slot taken (downloads' and uploads' together): the upload goes on from the event loop, no thread asked for", async () => {
    const data = randomBytes(8 * 1024 * 1024 + 1);
    const u = await setUp();
    const max = transferThreads.max;
    transferThreads.max = 0;
    try {
      const sending = send(u.client, data, 5);
      await receiveDirect(u.server, u.handle, 0, u.progress, u.thread);
      await sending;
    } finally {
      transferThreads.max = max;
    }
    await u.handle.close();
    assert.equal(u.calls.length, 0, "no thread asked for");
    assert.equal(transferThreads.running, 0);
    assert.equal(u.progress.written, data.length);
    assert.equal(sha(await readFile(u.file)), sha(data));
    u.server.destroy();
  });

  it("no thread to be had: the upload goes on from the event loop, its idle timer armed again", async () => {
    const data = randomBytes(8 * 1024 * 1024 + 1);
    const u = await setUp(10_000, true);
    u.server.setTimeout(10_000, () => assert.fail("no idle timeout expected"));
    const sending = send(u.client, data, 5);
    await receiveDirect(u.server, u.handle, 0, u.progress, u.thread);
    await sending;
    await u.handle.close();
    assert.equal(u.calls.length, 1, "a thread was asked for");
    assert.equal(u.server.timeout, 10_000);
    assert.equal(u.progress.written, data.length);
    assert.equal(sha(await readFile(u.file)), sha(data));
    u.server.destroy();
  });

  it("receiveFile: a large plain upload goes to the thread; STAT's count (Transfer.bytes) follows it; a stall on the thread is the transfer's stall (426)", async () => {
    const binding = receiveBinding() as ReceiveBinding;
    const { receive } = binding;
    let calls = 0;
    binding.receive = (...a) => {
      calls++;
      return receive.apply(binding, a);
    };
    try {
      const data = randomBytes(12 * 1024 * 1024);
      const u = await setUp();
      const t = new Transfer("upload", "/up.bin", null);
      const sending = send(u.client, data, 10);
      // Counts seen between the hand-over and the end: the thread's bytes are in Transfer.bytes.
      const between: number[] = [];
      const sampler = setInterval(() => {
        if (t.bytes > HANDOFF_AT + (2 << 20) && t.bytes < data.length) between.push(t.bytes);
      }, 5);
      try {
        assert.equal(await receiveFile(t, u.server, u.handle, 0, false, 10_000), data.length);
      } finally {
        clearInterval(sampler);
      }
      await sending;
      assert.equal(t.bytes, data.length);
      assert.ok(between.length > 0, "the count moved while the thread ran");
      assert.equal(calls, 1);
      await u.handle.close();
      assert.equal(sha(await readFile(u.file)), sha(data));

      const s = await setUp();
      const stalled = new Transfer("upload", "/up.bin", null);
      const failing = receiveFile(stalled, s.server, s.handle, 0, false, 300);
      failing.catch(() => undefined);
      await send(s.client, randomBytes(5 * 1024 * 1024), 0, false);
      await assert.rejects(failing, { code: 426, message: /no data moved/ });
      assert.equal(stalled.aborted, "stalled");
      assert.equal(calls, 2);
      assert.equal(stalled.bytes, 5 * 1024 * 1024);
      await s.handle.close();
      s.client.destroy();

      const off = await setUp();
      const sendingOff = send(off.client, data);
      assert.equal(await receiveFile(new Transfer("upload", "/up.bin", null), off.server, off.handle, 0, false, 10_000, null, false), data.length);
      await sendingOff;
      assert.equal(calls, 2, "transfer.uploadThreads off: no thread");
      await off.handle.close();
    } finally {
      binding.receive = receive;
    }
  });

  it("receiveFile: a client that resets right behind its last bytes fails with 426, whatever the thread read first", async () => {
    for (let i = 0; i < 3; i++) {
      const u = await setUp();
      u.client.write(randomBytes(6 * 1024 * 1024));
      const t = new Transfer("upload", "/up.bin", null);
      const receiving = receiveFile(t, u.server, u.handle, 0, false, 10_000);
      await sleep(30);
      u.client.resetAndDestroy();
      await assert.rejects(receiving, { code: 426 });
      await u.handle.close();
    }
  });
});
