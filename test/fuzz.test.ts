/**
 * Random command sequences against one live server: a few raw clients at once send lines drawn
 * from every verb berth knows and many it does not, with arguments good and bad (paths out of the
 * jail, overlong, control characters, odd numbers), junk bytes, lines split across writes, and data
 * connections (passive and active) that read, send, reset or stall; once with TLS off, once with
 * sessions that start plain, with AUTH TLS or on the implicit port, upgrade whenever an AUTH is
 * accepted, and open TLS data connections under PROT P. Every complete line gets a well-formed
 * reply within a bound, and the connection closes only after a reply that says so; afterwards no
 * session, passive port or descriptor is left, the read-only user's home and everything outside
 * the homes are as they were, nothing from outside the jail (a marker file, a password hash) reached
 * a client through a link in the home that leads out, and a normal client works as before.
 *
 * The sequence comes from a seed (printed with any failure; FUZZ_SEED=n repeats it); FUZZ_MS=n
 * runs it longer than the default 8 s.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { lstat, mkdir, readdir, readFile, symlink, writeFile } from "node:fs/promises";
import { once } from "node:events";
import { createServer, type Socket } from "node:net";
import { join, relative } from "node:path";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import { describe, it } from "node:test";
import { setTimeout as sleep } from "node:timers/promises";
import { TEST_TLS } from "./helpers/ftps.ts";
import { dataConnect, RawClient, type Reply } from "./helpers/raw.ts";
import { download, ftpLogin, payload, upload, withServer } from "./helpers/run.ts";
import { waitFor, type ConfigPatch, type TestServer } from "./helpers/server.ts";

/** How long the clients run, and how many at once (the test server has five passive ports). */
const RUN_MS = Number(process.env.FUZZ_MS ?? 8000);
const CLIENTS = 4;
/** A final reply must come within this (data waits and stalls are 1 s here). */
const REPLY_MS = 8000;

const VERBS = [
  "USER", "PASS", "ACCT", "CWD", "CDUP", "XCWD", "XCUP", "SMNT", "REIN", "QUIT", "PORT", "PASV", "EPRT", "EPSV",
  "TYPE", "STRU", "MODE", "RETR", "STOR", "STOU", "APPE", "ALLO", "REST", "RNFR", "RNTO", "ABOR", "DELE",
  "RMD", "XRMD", "MKD", "XMKD", "PWD", "XPWD", "LIST", "NLST", "MLSD", "MLST", "SITE", "SYST", "STAT", "HELP",
  "NOOP", "FEAT", "OPTS", "MDTM", "MFMT", "SIZE", "AUTH", "PBSZ", "PROT", "CCC", "HOST", "LANG", "CLNT",
  "HASH", "XCRC", "MD5", "XMD5", "XSHA", "XSHA1", "XSHA256", "XSHA512", "OPTS HASH", "EPSV ALL", "SITE CHMOD", "SITE UTIME", "SITE UMASK", "SITE HELP", "SITE IDLE", "SITE WHO",
  "retr", "Stor", "X", "",
];
const ARGS = [
  "", "/", ".", "..", "../..", "/../../etc/passwd", "d", "d/a.txt", "d/../d/b.txt", "big.bin", "small.txt",
  "new.bin", "d/new", "nope", "nope/deeper", "~", "*", "-la", "-a d", "A", "A N", "I", "E", "L 8", "N", "F",
  "S", "B", "UTF8 ON", "UTF8 OFF", "MLST type;size;modify;", "MLST", "0", "1", "-1", "12", "99999999999999999999",
  "1,2,3,4,5,6", "127,0,0,1,300,1", "127,0,0,1,0,21", "|1|127.0.0.1|1|", "|2|::1|1|", "|3|x|1|", "||||",
  "ALL", "1", "2", "TLS", "SSL", "P", "C", "S", "777 small.txt", "0777 d", "20201010101010 small.txt",
  "19700101000000 nope", "éè/中文", "a".repeat(300), "b".repeat(5000), "x\ty", "%s%n%x", "d/" + "e/".repeat(80),
  "small.txt small.txt", " leading", "trailing ", "\u00a0", "\ud83d\ude00",
  // Checksum arguments: algorithms (OPTS HASH), ranges, quoted names.
  "SHA-512", "md5", "CRC64", "small.txt 0 5", "big.bin 10 20", "big.bin 5 5", "big.bin 0 99999999999", '"small.txt"', '"d/a.txt" 1 2', "small.txt 3",
  // Links in alice's home: one out of the jail, one inside it.
  "out", "out/", "out/users", "out/users/users.json", "out/data/bob/small.txt", "out/new.txt", "out/marker.txt", "inner", "inner/a.txt", "inner/../small.txt",
];
/** Verbs that take a data connection. */
const TRANSFERS = ["LIST out", "RETR out/users/users.json", "RETR out/marker.txt", "STOR out/new.txt", "STOR inner/up", "MLSD inner", "LIST", "NLST", "MLSD", "RETR big.bin", "RETR small.txt", "RETR d/a.txt", "RETR nope", "STOR up.bin", "STOR d/up", "APPE ap.bin", "STOU", "STOU d", "LIST d", "MLSD nope", "RETR d", "STOR d", "NLST -la"];

/** A small deterministic generator (the test must be repeatable from its seed). */
function generator(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 2 ** 32;
  };
}

interface Totals {
  sessions: number;
  lines: number;
  replies: number;
  dataConnections: number;
  tlsDataConnections: number;
  activeConnections: number;
  upgrades: number;
  closedByServer: number;
}

/** How a session's control connection starts: plain, AUTH TLS first, or the implicit port. */
type Start = "plain" | "explicit" | "implicit";

/** One fuzzing session's control connection and what it knows of its TLS state. */
interface Control {
  raw: RawClient;
  /** The latest TLS session the server gave the control connection (presented on data ones). */
  session: Buffer | null;
  /** PROT P is in force: data connections are TLS. */
  protect: boolean;
}

/** Whether the server may close the connection after `code` in reply to `line`: QUIT's 221, a
 * 421, or a failed login (the third closes). */
function mayClose(code: number, line: string): boolean {
  return code === 221 || code === 421 || (code === 530 && /^PASS/.test(line));
}

/** The TLS handshake on a control connection whose AUTH got 234; the client reads through it from then on. */
async function upgrade(c: Control): Promise<void> {
  const plain = c.raw.socket;
  plain.removeAllListeners("data");
  c.raw = RawClient.over(await secure(tlsConnect({ socket: plain, ...TEST_TLS }), c));
}

/** Waits for `socket`'s handshake, keeping the sessions the server issues in `c`. */
async function secure(socket: TLSSocket, c: { session: Buffer | null }): Promise<TLSSocket> {
  socket.on("session", (s: Buffer) => (c.session = s));
  socket.on("error", () => undefined);
  await Promise.race([
    once(socket, "secureConnect"),
    once(socket, "close").then(() => {
      throw new Error("control connection closed during its TLS handshake");
    }),
  ]);
  return socket;
}

async function openControl(t: TestServer, start: Start): Promise<Control> {
  if (start === "implicit") {
    const sink: { session: Buffer | null } = { session: null };
    const socket = await secure(tlsConnect({ port: t.implicitPort as number, host: "127.0.0.1", ...TEST_TLS }), sink);
    // The control is the sink itself: sessions issued later land in it too. PROT P is in force
    // from the start on the implicit port.
    const c: Control = Object.assign(sink, { raw: RawClient.over(socket), protect: true });
    assert.equal((await c.raw.reply()).code, 220);
    return c;
  }
  const c: Control = { raw: await RawClient.connect(t.port), session: null, protect: false };
  if (start === "explicit") {
    assert.equal((await c.raw.cmd("AUTH TLS")).code, 234);
    await upgrade(c);
  }
  return c;
}

async function fuzzClient(t: TestServer, rnd: () => number, until: number, totals: Totals, starts: readonly Start[], seed: number): Promise<void> {
  const pick = <T>(a: readonly T[]): T => a[Math.floor(rnd() * a.length)] as T;
  // Our own listener for PORT and EPRT: the server's connections to it act as ours to it do.
  let current: Control | null = null;
  const accepted = new Set<Socket>();
  const active = createServer((s) => {
    totals.activeConnections++;
    accepted.add(s);
    s.once("close", () => accepted.delete(s));
    s.on("error", () => undefined);
    if (current?.protect && rnd() < 0.9) {
      totals.tlsDataConnections++;
      const d = tlsConnect({ socket: s, ...TEST_TLS, ...(current.session ? { session: current.session } : {}) });
      behave(d, s, rnd);
    } else behave(s, s, rnd);
  });
  await new Promise<void>((resolve) => active.listen(0, "127.0.0.1", resolve));
  const activePort = (active.address() as { port: number }).port;
  try {
    while (Date.now() < until) {
      const start = pick(starts);
      const c = await openControl(t, start);
      current = c;
      totals.sessions++;
      const data: Socket[] = [];
      // Mostly alice (read-write); bob is read-only, so his sessions take the permission refusals.
      const user = rnd() < 0.7 ? "alice" : "bob";
      const history: string[] = [start, user];
      let offerDataNext = false;
      try {
        const count = 5 + Math.floor(rnd() * 60);
        for (let i = 0; i < count && Date.now() < until; i++) {
          let line: string | Buffer;
          if (i === 0 && rnd() < 0.85) line = `USER ${user}`;
          else if (i === 1 && rnd() < 0.85) line = `PASS ${user}-pw`;
          else if (i === 2 && start !== "plain" && rnd() < 0.8) line = "PBSZ 0";
          else if (i === 3 && start !== "plain" && rnd() < 0.8) line = "PROT P";
          else if (offerDataNext && rnd() < 0.75) line = pick(TRANSFERS);
          else if (rnd() < 0.3) line = pick(["PASV", "EPSV", "EPSV 1", `EPRT |1|127.0.0.1|${activePort}|`, `PORT 127,0,0,1,${activePort >> 8},${activePort & 0xff}`, "REST 5", "TYPE A", "TYPE I", "AUTH TLS", "PROT P", "PROT C"]);
          else if (rnd() < 0.04) line = junk(rnd);
          else {
            const verb = pick(VERBS);
            const arg = rnd() < 0.75 ? pick(ARGS) : "";
            line = arg ? `${verb} ${arg}` : verb;
          }
          const shown = typeof line === "string" ? line.slice(0, 80) : `<${line.length} junk bytes>`;
          history.push(shown);
          const bytes = Buffer.concat([typeof line === "string" ? Buffer.from(line) : line, Buffer.from(rnd() < 0.9 ? "\r\n" : "\n")]);
          if (rnd() < 0.1 && bytes.length > 2) {
            // One line in two writes, a moment apart.
            const cut = 1 + Math.floor(rnd() * (bytes.length - 1));
            c.raw.sendRaw(bytes.subarray(0, cut));
            await sleep(2);
            c.raw.sendRaw(bytes.subarray(cut));
          } else c.raw.sendRaw(bytes);
          totals.lines++;
          let reply: Reply;
          for (;;) {
            try {
              reply = await c.raw.reply(REPLY_MS);
            } catch (err) {
              if (c.raw.isClosed) throw new Error(`closed without a closing reply after ${JSON.stringify(history.slice(-5))}`);
              throw new Error(`${(err as Error).message} after ${JSON.stringify(history.slice(-5))}`);
            }
            totals.replies++;
            for (const l of reply.lines) noteLeak(l, `a reply to ${shown}`);
            for (const l of reply.lines) {
              // eslint-disable-next-line no-control-regex -- a control character would let input forge or break a reply
              assert.doesNotMatch(l, /[\x00-\x08\x0a-\x1f\x7f]/, `control character in a reply line after ${shown}: ${JSON.stringify(l)}`);
            }
            if (reply.code >= 200) break;
            assert.ok(reply.code >= 100, `${reply.code} after ${shown}`);
          }
          assert.ok(reply.code >= 200 && reply.code < 600, `${reply.code} after ${shown}`);
          if (reply.code === 234) {
            // AUTH accepted: the handshake follows at once, as a client's would.
            await upgrade(c);
            totals.upgrades++;
            continue;
          }
          const prot = /^PROT\s+(\S+)$/i.exec(shown);
          if (prot && reply.code === 200) c.protect = (prot[1] as string).toUpperCase() === "P";
          offerDataNext = [227, 229, 200, 350].includes(reply.code) && /^(PASV|EPSV|EPRT|PORT|REST)/.test(shown);
          if (reply.code === 227 || reply.code === 229) {
            const m = reply.code === 227 ? /\((\d+),(\d+),(\d+),(\d+),(\d+),(\d+)\)/.exec(reply.message) : /\(\|\|\|(\d+)\|\)/.exec(reply.message);
            assert.ok(m, reply.message);
            const port = reply.code === 227 ? Number(m[5]) * 256 + Number(m[6]) : Number(m[1]);
            if (rnd() < 0.85) {
              const s = await dataConnect(port).catch(() => null);
              if (s !== null) {
                totals.dataConnections++;
                data.push(s);
                if (c.protect && rnd() < 0.9) {
                  totals.tlsDataConnections++;
                  const d = tlsConnect({ socket: s, ...TEST_TLS, ...(c.session ? { session: c.session } : {}) });
                  behave(d, s, rnd);
                } else behave(s, s, rnd);
              }
            }
          }
          if (mayClose(reply.code, shown) && (await closedSoon(c.raw))) {
            totals.closedByServer++;
            break;
          }
          if (c.raw.isClosed) throw new Error(`closed after ${reply.code} (${shown}), not a closing reply`);
        }
        if (!c.raw.isClosed && rnd() < 0.5) {
          const bye = await c.raw.cmd("QUIT", REPLY_MS);
          assert.equal(bye.code, 221);
        }
      } catch (err) {
        throw new Error(`seed ${seed}: ${(err as Error).message}`);
      } finally {
        for (const s of data) s.destroy();
        await c.raw.close();
        c.raw.socket.destroy();
      }
    }
  } finally {
    for (const s of accepted) s.destroy();
    await new Promise((resolve) => active.close(resolve));
  }
}

/** Whether the server closes the connection within a moment (after 221, 421 or a last failed login). */
async function closedSoon(raw: RawClient): Promise<boolean> {
  try {
    await raw.closed(300);
    return true;
  } catch {
    return false;
  }
}

/** What must never reach a client: the marker file outside the homes, and a password hash. */
const OUTSIDE = /OUTSIDE-MARKER|\$2[aby]\$/;
/** The first thing a client received that it must not have (checked after the run). */
let leak: string | null = null;

function noteLeak(text: string, where: string): void {
  if (leak === null && OUTSIDE.test(text)) leak = `${where}: ${JSON.stringify(text.slice(0, 120))}`;
}

/** Every entry under `dir` (but those under `skip`): a file by its content's digest, a directory
 * or link by its kind and mode. The users file is left out (logins may rewrite it). */
async function snapshot(dir: string, skip: readonly string[] = []): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (d: string): Promise<void> => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (skip.includes(p) || e.name === "users.json") continue;
      const st = await lstat(p);
      if (e.isDirectory()) {
        out.set(relative(dir, p), `dir ${st.mode.toString(8)}`);
        await walk(p);
      } else if (e.isFile()) out.set(relative(dir, p), `file ${st.mode.toString(8)} ${createHash("sha256").update(await readFile(p)).digest("hex")}`);
      else out.set(relative(dir, p), `other ${st.mode.toString(8)}`);
    }
  };
  await walk(dir);
  return out;
}

/** Random bytes without a line end. */
function junk(rnd: () => number): Buffer {
  const b = Buffer.alloc(1 + Math.floor(rnd() * 120));
  for (let i = 0; i < b.length; i++) {
    let v = Math.floor(rnd() * 256);
    if (v === 0x0a || v === 0x0d) v = 0x20;
    b[i] = v;
  }
  return b;
}

/** What a data connection does (ours to the server, or the server's to our active listener):
 * `stream` is what it reads and writes (TLS or not), `tcp` the connection under it. */
function behave(stream: Socket, tcp: Socket, rnd: () => number): void {
  stream.on("error", () => undefined);
  stream.on("data", (chunk: Buffer) => noteLeak(chunk.toString("latin1"), "a data connection"));
  tcp.on("error", () => undefined);
  const r = rnd();
  if (r < 0.45) stream.resume();
  else if (r < 0.65) {
    stream.resume();
    stream.write(Buffer.alloc(Math.floor(rnd() * 200_000), 0x41));
    if (rnd() < 0.7) stream.end();
  } else if (r < 0.8) setTimeout(() => stream.destroy(), rnd() * 50);
  else if (r < 0.9) tcp.resetAndDestroy();
  else stream.pause(); // never read: a download stalls, an upload waits
}

describe("random command sequences", () => {
  const cases: { name: string; starts: readonly Start[]; config: ConfigPatch }[] = [
    { name: "plain FTP", starts: ["plain"], config: {} },
    { name: "FTPS (explicit, implicit, and plain beside them)", starts: ["explicit", "implicit", "plain"], config: { tls: { mode: "both", implicitPort: 0 } } },
  ];
  for (const { name, starts, config } of cases) {
    it(`${name}: every line gets a well-formed reply in time, nothing leaks, and a normal client works after`, async (ctx) => {
      const seed = Number(process.env.FUZZ_SEED ?? Math.floor(Math.random() * 2 ** 31));
      await withServer(
        async (t) => {
          for (const name of ["alice", "bob"]) {
            const dir = t.home(name);
            await mkdir(join(dir, "d"), { recursive: true });
            await writeFile(join(dir, "d", "a.txt"), "a\n");
            await writeFile(join(dir, "d", "b.txt"), "b\n");
            await writeFile(join(dir, "small.txt"), "hello\n");
            await writeFile(join(dir, "big.bin"), payload(1 << 20));
          }
          const home = t.home("alice");
          await symlink(t.root, join(home, "out"));
          await writeFile(join(t.root, "marker.txt"), "OUTSIDE-MARKER\n");
          leak = null;
          await symlink("d", join(home, "inner"));
          // What the fuzz may not change: bob's home (he is read-only), and anything outside the homes.
          const bobBefore = await snapshot(t.home("bob"));
          const outsideBefore = await snapshot(t.root, [t.home("alice"), t.home("bob")]);
          const totals: Totals = { sessions: 0, lines: 0, replies: 0, dataConnections: 0, tlsDataConnections: 0, activeConnections: 0, upgrades: 0, closedByServer: 0 };
          const seeds = generator(seed);
          // A seed whose sequences make too few data connections of a kind runs on (the same seed, the
          // same further sequences), up to three times as long, so that the counts below hold.
          const tooFew = (): boolean => totals.lines < 200 || totals.dataConnections < 20 || (starts.includes("explicit") && totals.tlsDataConnections < 10);
          for (let round = 0; round === 0 || (round < 3 && tooFew()); round++) {
            const until = Date.now() + RUN_MS;
            await Promise.all(Array.from({ length: CLIENTS }, () => fuzzClient(t, generator(Math.floor(seeds() * 2 ** 32)), until, totals, starts, seed)));
          }
          const summary = `seed ${seed}: ${JSON.stringify(totals)}`;
          ctx.diagnostic(summary);
          assert.equal(leak, null, `read from outside the jail: ${summary}`);
          assert.deepEqual(await snapshot(t.home("bob")), bobBefore, `bob's home changed: ${summary}`);
          assert.deepEqual(await snapshot(t.root, [t.home("alice"), t.home("bob")]), outsideBefore, `something changed outside the homes: ${summary}`);
          assert.ok(totals.lines >= 200 && totals.dataConnections >= 20, summary);
          if (starts.includes("explicit")) assert.ok(totals.tlsDataConnections >= 10, summary);
          assert.ok(await waitFor(() => t.server.sessions.size === 0, 10_000), `sessions left: ${t.server.sessions.size}; ${summary}`);
          assert.ok(await waitFor(() => t.server.context.pool.used === 0, 5000), `passive ports held: ${t.server.context.pool.used}; ${summary}`);
          // The server is as it was for a normal client.
          const c = await ftpLogin(t);
          try {
            const body = payload(300_000, 7);
            await upload(c, body, "after.bin");
            assert.deepEqual(await download(c, "after.bin"), body);
            // A file written beside the server (the fuzz may have removed or renamed big.bin).
            await writeFile(join(home, "written.bin"), payload(1 << 20, 3));
            assert.deepEqual(await download(c, "written.bin"), payload(1 << 20, 3));
            assert.ok((await c.list()).some((e) => e.name === "after.bin"));
          } finally {
            c.close();
          }
        },
        {
          logLevel: "warn",
          config: { ...config, limits: { dataTimeout: 1, stalledTimeout: 1, loginTimeout: 10, idleTimeout: 30, commandRate: 0 } },
        },
      );
    });
  }
});
