/**
 * transfer.fsync: an upload's file, and the directory holding its name, are flushed to the disk
 * before its 226 (a new file, a replaced one, APPE, and a large upload through the upload thread);
 * off (the default), nothing is flushed, as vsftpd and ProFTPD leave it to the kernel.
 */
import assert from "node:assert/strict";
import fsDefault, { fstatSync, readFileSync } from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import { join } from "node:path";
import { Readable } from "node:stream";
import { describe, it } from "node:test";
import { Client } from "basic-ftp";
import { payload, withServer } from "./helpers/run.ts";

type Fsync = typeof fsDefault.fsync;

/** Runs `body` with node:fs's fsync counted: what each call flushed, a file or a directory. */
async function counting(body: (flushed: ("file" | "dir")[]) => Promise<void>): Promise<void> {
  const real = fsDefault.fsync;
  const flushed: ("file" | "dir")[] = [];
  const spy = ((fd: number, cb: Parameters<Fsync>[1]) => {
    flushed.push(fstatSync(fd).isDirectory() ? "dir" : "file");
    real(fd, cb);
  }) as Fsync;
  (fsDefault as { fsync: Fsync }).fsync = spy;
  syncBuiltinESMExports();
  try {
    await body(flushed);
  } finally {
    (fsDefault as { fsync: Fsync }).fsync = real;
    syncBuiltinESMExports();
  }
}

async function uploads(port: number): Promise<void> {
  const c = new Client();
  try {
    await c.access({ host: "127.0.0.1", port, user: "alice", password: "alice-pw" });
    await c.uploadFrom(Readable.from([payload(1000, 1)]), "new.bin");
    await c.uploadFrom(Readable.from([payload(2000, 2)]), "new.bin");
    await c.appendFrom(Readable.from([payload(500, 3)]), "new.bin");
    await c.ensureDir("/sub");
    await c.uploadFrom(Readable.from([payload(6 << 20, 4)]), "big.bin");
  } finally {
    c.close();
  }
}

describe("transfer.fsync", () => {
  it("on: each upload's file and its directory are flushed before its 226", async () => {
    await withServer(
      async (t) => {
        await counting(async (flushed) => {
          await uploads(t.port);
          // A new file, a replaced one, an append, a large upload (the upload thread): a file and a
          // directory each.
          assert.deepEqual(flushed, ["file", "dir", "file", "dir", "file", "dir", "file", "dir"]);
        });
        assert.deepEqual(readFileSync(join(t.home("alice"), "new.bin")), Buffer.concat([payload(2000, 2), payload(500, 3)]));
        assert.deepEqual(readFileSync(join(t.home("alice"), "sub", "big.bin")), payload(6 << 20, 4));
      },
      { config: { transfer: { fsync: true } } },
    );
  });

  it("off (the default): nothing is flushed", async () => {
    await withServer(async (t) => {
      await counting(async (flushed) => {
        await uploads(t.port);
        assert.deepEqual(flushed, []);
      });
    });
  });
});
