/**
 * The transfer loop's promise settles only when no write to the file is in flight (the contract of
 * data/hook.ts): a quota rollback that truncates or removes the file right after must be final.
 */
import assert from "node:assert/strict";
import { mkdtemp, open, readFile, rm, truncate } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import type { TransferHook } from "../src/data/hook.ts";
import { receiveFile, Transfer } from "../src/data/transfer.ts";
import { FtpError } from "../src/protocol/errors.ts";
import { socketPair } from "./helpers/sockets.ts";

describe("receiveFile settles after its last write", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), "berth-settle-"));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it("a hook that stops the upload while a slow write is in flight: nothing lands after the promise settles", async () => {
    const file = join(dir, "up.bin");
    const handle = await open(file, "w");
    // A slow disk: every write takes 150 ms; count those in flight.
    let inFlight = 0;
    for (const name of ["write", "writev"] as const) {
      const real = handle[name].bind(handle) as (...a: unknown[]) => Promise<unknown>;
      (handle as unknown as Record<string, unknown>)[name] = async (...args: unknown[]) => {
        inFlight++;
        await new Promise((r) => setTimeout(r, 150));
        try {
          return await real(...args);
        } finally {
          inFlight--;
        }
      };
    }
    let taken = 0;
    const hook: TransferHook = {
      chunkSize: () => 64 << 10,
      take: (n) => {
        taken += n;
        if (taken > 256 << 10) throw new FtpError(552, "Quota exceeded");
        return 0;
      },
      release: () => undefined,
    };
    const [server, client] = await socketPair();
    client.on("error", () => undefined);
    const t = new Transfer("upload", "/up.bin", null);
    const done = receiveFile(t, server, handle, 0, false, 10_000, hook);
    // The first chunks go to the file (a write starts), then the limit is crossed.
    client.write(Buffer.alloc(128 << 10, 1));
    await new Promise((r) => setTimeout(r, 50));
    client.write(Buffer.alloc(512 << 10, 2));
    await assert.rejects(done, (err: unknown) => err instanceof FtpError && err.code === 552);
    assert.equal(inFlight, 0, "no write in flight when the transfer settles");
    // The rollback (by path, as Upload.rollback does): what was written is cut away, and it stays cut.
    await truncate(file, 0);
    await new Promise((r) => setTimeout(r, 400));
    await handle.close().catch(() => undefined);
    assert.equal((await readFile(file)).length, 0);
    client.destroy();
  });
});
