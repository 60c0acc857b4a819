/**
 * Downloads (data/transfer.ts sendFile) over a real socket pair: every byte in order from any
 * offset, read straight from the page cache while the disk answers fast and through the thread
 * pool after a back-off, and a read that fails ends the transfer with its error.
 */
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import type { Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { READ_CHUNK, sendFile, Transfer } from "../src/data/transfer.ts";
import * as quick from "../src/fs/quick.ts";
import { countCalls } from "./helpers/handles.ts";
import { socketPair } from "./helpers/sockets.ts";

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

  for (const disk of ["fast", "backed off"] as const) {
    for (const start of [0, 1, READ_CHUNK + 7, data.length]) {
      it(`sends every byte from offset ${start}, ${disk} disk`, async () => {
        const [server, client] = await socketPair();
        const handle = await open(file, "r");
        const reads = countCalls(handle, "read");
        const received = collect(client);
        quick.backOff(disk === "fast" ? 0 : 60_000);
        try {
          const t = new Transfer("download", "/f.bin", data.length - start);
          const sent = await sendFile(t, server, handle, start, false, 10_000);
          assert.equal(sent, data.length - start);
        } finally {
          quick.backOff(0);
          await handle.close();
        }
        assert.equal(sha(await received), sha(data.subarray(start)));
        if (disk === "fast") assert.equal(reads(), 0, "read at once, not through the pool");
        else if (start < data.length) assert.ok(reads() > 0);
      });
    }
  }

  it("a read that fails ends the transfer with the read's error and destroys the socket", async () => {
    const [server, client] = await socketPair();
    client.on("error", () => undefined);
    client.resume();
    // Opened for writing only: every read is EBADF.
    const writeOnly = await open(join(dir, "w.bin"), "w");
    try {
      quick.backOff(0);
      const t = new Transfer("download", "/w.bin", 1000);
      await assert.rejects(sendFile(t, server, writeOnly, 0, false, 10_000), { code: "EBADF" });
      assert.equal(server.destroyed, true);
    } finally {
      await writeOnly.close();
      client.destroy();
    }
  });
});
