/**
 * berth runs its TypeScript through tsx, whose compiler keeps function names (esbuild's
 * keepNames): every named closure made at run time (`const f = () => …`, `{ f: () => … }`, a
 * class field holding an arrow, a nested function declaration) is followed by
 * `Object.defineProperty(f, "name", …)`. V8 makes that a slow runtime call that rebuilds the
 * function's map in dictionary mode (about 4,000 instructions each); before this test, a 4 KiB
 * upload made 34 of them, more than a quarter of the main thread's instructions per file. So the
 * code that runs per command, per transfer and per listed entry makes no named closures (methods,
 * classes, anonymous callbacks and functions defined once instead), and this test holds it to
 * that: it counts the names given at run time by berth's own modules while a real client works.
 *
 * Object.defineProperty is wrapped before the server's modules are loaded (each module takes its
 * own reference to it when it is evaluated), so they are imported dynamically below.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { fileURLToPath } from "node:url";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { Readable, Writable } from "node:stream";

const SRC = join(dirname(fileURLToPath(import.meta.url)), "..", "src") + "/";

/** Named closures made by berth's modules while `counting`: "name (file:line)" each. */
const made: string[] = [];
let counting = false;
const define = Object.defineProperty;
Object.defineProperty = function <T>(o: T, key: PropertyKey, desc: PropertyDescriptor & ThisType<unknown>): T {
  if (counting && key === "name" && typeof o === "function") {
    const where = madeAt();
    if (where !== null) made.push(`${String(desc.value)} (${where})`);
  }
  return define(o, key, desc);
};

/** Where in src/ a closure was named: the frame above the module's `__name` helper. */
function madeAt(): string | null {
  const holder: { stack?: string } = {};
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 4;
  Error.captureStackTrace(holder);
  Error.stackTraceLimit = limit;
  const frames = (holder.stack ?? "").split("\n").slice(1);
  // [0] this wrapper's caller chain: madeAt, defineProperty, __name, then the maker.
  const helper = frames[2] ?? "";
  if (!helper.includes(SRC)) return null;
  const maker = frames[3] ?? helper;
  const m = /\((?:file:\/\/)?([^)]+)\)$/.exec(maker.trim()) ?? /at (?:file:\/\/)?(\S+)$/.exec(maker.trim());
  return (m?.[1] ?? maker.trim()).replace(SRC, "src/");
}

const { Client } = await import("basic-ftp");
const { startTestServer } = await import("./helpers/server.ts");
const { RawClient, readAll, writeAll } = await import("./helpers/raw.ts");
const { backOff } = await import("../src/fs/quick.ts");

async function counted(what: () => Promise<void>): Promise<string[]> {
  made.length = 0;
  counting = true;
  try {
    await what();
  } finally {
    counting = false;
  }
  return [...made];
}

function sink(): Writable {
  return new Writable({ write: (_c, _e, cb) => cb() });
}

test("the command and data paths make no named closures per command, transfer or listed entry", async () => {
  const logs = mkdtempSync(join(tmpdir(), "berth-hot-"));
  // TLS offered (plain sessions then pass through its checks too) and a transfer log written.
  const srv = await startTestServer({ logLevel: "warn", config: { tls: { mode: "explicit" }, log: { xferlog: join(logs, "xferlog") } } });
  const c = new Client(10_000);
  const secure = new Client(10_000);
  const raw = await RawClient.connect(srv.port);
  try {
    await secure.access({
      host: "127.0.0.1",
      port: srv.port,
      user: "alice",
      password: "alice-pw",
      secure: true,
      secureOptions: { rejectUnauthorized: false },
    });
    await raw.login();
    await raw.expect("TYPE I", 200);
    await c.access({ host: "127.0.0.1", port: srv.port, user: "alice", password: "alice-pw" });
    await c.ensureDir("/hot");
    const body = Buffer.alloc(4096, 0x61);
    // Larger than what a download sends from the main thread: the rest goes by the addon's thread.
    await c.uploadFrom(Readable.from([Buffer.alloc(3 << 20, 0x62)]), "/hot/large.bin");
    const round = async (i: number): Promise<void> => {
      await c.uploadFrom(Readable.from([body]), `/hot/new-${i}.bin`); // a new file
      await c.uploadFrom(Readable.from([body]), "/hot/same.bin"); // a replaced one
      await c.appendFrom(Readable.from([body]), "/hot/same.bin");
      await c.downloadTo(sink(), `/hot/new-${i}.bin`);
      await c.downloadTo(sink(), "/hot/same.bin", 100); // REST + RETR
      await c.downloadTo(sink(), "/hot/large.bin");
      await c.list("/hot");
      await c.list("/hot"); // MLSD (basic-ftp prefers it when FEAT says MLST)
      await c.size(`/hot/new-${i}.bin`);
      await c.lastMod(`/hot/new-${i}.bin`);
      await c.send("MLST /hot/same.bin");
      await c.cd("/hot");
      await c.pwd();
      await c.rename(`new-${i}.bin`, `old-${i}.bin`);
      await c.remove(`old-${i}.bin`);
      await c.send("MKD sub");
      await c.send("RMD sub");
      await c.send("NOOP");
      await c.send("TYPE I");
      await c.cd("/");
      // A short session of its own: connect, login (the login cache), PWD, LIST, RETR, QUIT.
      const s = new Client(10_000);
      await s.access({ host: "127.0.0.1", port: srv.port, user: "alice", password: "alice-pw" });
      s.availableListCommands = ["LIST"];
      await s.pwd();
      await s.list("/hot");
      await s.downloadTo(sink(), "/hot/same.bin");
      s.close();
      // FTPS: PROT P transfers and a listing.
      await secure.uploadFrom(Readable.from([body]), `/hot/tls-${i}.bin`);
      await secure.downloadTo(sink(), `/hot/tls-${i}.bin`);
      await secure.list("/hot");
      // Active mode: PORT and EPRT.
      let wait = await raw.port();
      raw.send(`STOR /hot/active-${i}.bin`);
      await raw.expectReply(150);
      await writeAll(await wait.accepted, body);
      wait.close();
      await raw.expectReply(226);
      wait = await raw.eprt();
      raw.send(`RETR /hot/active-${i}.bin`);
      await raw.expectReply(150);
      assert.equal((await readAll(await wait.accepted)).length, body.length);
      wait.close();
      await raw.expectReply(226);
    };
    // Warm up, so that what is counted is the steady state, not first-use set-up.
    for (let i = 0; i < 3; i++) await round(i);
    const names = await counted(async () => {
      for (let i = 3; i < 6; i++) await round(i);
    });
    assert.deepEqual(names, [], `named closures made at run time:\n${names.join("\n")}`);
    // The same with file calls through the thread pool, as after a slow disk (fs/quick.ts).
    backOff(60_000);
    try {
      await round(6);
      const pooled = await counted(() => round(7));
      assert.deepEqual(pooled, [], `named closures made at run time, file calls pooled:\n${pooled.join("\n")}`);
    } finally {
      backOff(0);
    }
  } finally {
    c.close();
    secure.close();
    await raw.close();
    await srv.close();
    rmSync(logs, { recursive: true, force: true });
  }
});
