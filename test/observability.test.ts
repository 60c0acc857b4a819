import assert from "node:assert/strict";
import { mkdir, mkdtemp, readFile, rename, rm, symlink, unlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { EventEmitter, once } from "node:events";
import { connect, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { describe, it } from "node:test";
import { Client } from "basic-ftp";
import pino from "pino";
import { ConfigError } from "../src/config/load.ts";
import { createLogger } from "../src/log/logger.ts";
import { Metrics, METRICS_MAX_CONNECTIONS, serveMetrics, type Gauges } from "../src/log/metrics.ts";
import { formatXferLine, XferLog, XFERLOG_MAX_PENDING, type XferEntry } from "../src/log/xferlog.ts";
import { RawClient } from "./helpers/raw.ts";
import { withServer } from "./helpers/run.ts";
import { openFds, startTestServer, waitFor } from "./helpers/server.ts";

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

describe("Prometheus endpoint and xferlog", () => {
  it("counts logins, transfers and bytes, and writes one xferlog line per file transfer", async () => {
    const port = await freePort();
    const dir = await mkdtemp(join(tmpdir(), "berth-xferlog-"));
    const xferlog = join(dir, "xferlog");
    const s = await startTestServer({
      config: { metrics: { listen: `127.0.0.1:${port}` }, log: { xferlog } },
    });
    try {
      const bad = new Client();
      await assert.rejects(bad.access({ host: "127.0.0.1", port: s.port, user: "alice", password: "nope" }));
      bad.close();
      const c = new Client();
      await c.access({ host: "127.0.0.1", port: s.port, user: "alice", password: "alice-pw" });
      await c.uploadFrom(Readable.from([Buffer.alloc(1000, 1)]), "up load.bin");
      await c.downloadTo(new Writable({ write: (_c, _e, cb) => cb() }), "up load.bin");
      await c.list();
      c.close();

      const res = await fetch(`http://127.0.0.1:${port}/metrics`);
      assert.equal(res.status, 200);
      const text = await res.text();
      assert.match(text, /^berth_logins_total\{result="ok"\} 1$/m);
      assert.match(text, /^berth_logins_total\{result="fail"\} 1$/m);
      assert.match(text, /^berth_transfer_bytes_total\{direction="upload"\} 1000$/m);
      assert.match(text, /^berth_transfer_bytes_total\{direction="download"\} 1000$/m);
      assert.match(text, /^berth_transfers_total\{direction="upload",result="ok"\} 1$/m);
      assert.match(text, /^berth_transfers_total\{direction="list",result="ok"\} 1$/m);
      assert.match(text, /^# TYPE berth_sessions gauge$/m);
      assert.match(text, /^berth_passive_ports_in_use 0$/m);
      assert.equal((await fetch(`http://127.0.0.1:${port}/other`)).status, 404);
      // A logged-in session's lines carry its id, the client address and the user.
      const transfers = s.logs.filter((l) => l.event === "transfer");
      assert.equal(transfers.length, 2);
      for (const l of transfers) {
        assert.match(String(l.session), /^[0-9a-f]{8}$/);
        assert.equal(l.remote, "127.0.0.1");
        assert.equal(l.user, "alice");
      }
      // Each connection has an id of its own (the refused login's session and the one above).
      const ids = new Set(s.logs.filter((l) => l.session !== undefined).map((l) => String(l.session)));
      assert.equal(ids.size, 2);
      for (const id of ids) assert.match(id, /^[0-9a-f]{8}$/);
    } finally {
      await s.close().catch(() => undefined);
    }
    const lines = (await readFile(xferlog, "utf8")).trim().split("\n");
    assert.equal(lines.length, 2);
    assert.match(lines[0] ?? "", / 127\.0\.0\.1 1000 \/up_load\.bin b _ i r alice ftp 0 \* c$/);
    assert.match(lines[1] ?? "", / 127\.0\.0\.1 1000 \/up_load\.bin b _ o r alice ftp 0 \* c$/);
    await rm(dir, { recursive: true, force: true });
  });

  it("a download whose data connection the client closes before the end (curl -r, lftp pget) is result closed, not error, in the log and the metrics", async () => {
    const port = await freePort();
    const s = await startTestServer({ config: { metrics: { listen: `127.0.0.1:${port}` } } });
    try {
      await writeFile(join(s.home("alice"), "big.bin"), Buffer.alloc(8 << 20, 7));
      const raw = await RawClient.connect(s.port);
      await raw.login();
      await raw.expect("TYPE I", 200);
      const data = await raw.pausedRetr("big.bin");
      // Some bytes taken, then the connection reset, as a client that has the range it wanted does.
      data.resume();
      await once(data, "data");
      data.resetAndDestroy();
      assert.equal((await raw.expectReply(426)).message, "Connection closed; transfer aborted");
      await raw.expect("NOOP", 200);
      await raw.close();
      const line = s.logs.find((l) => l.event === "transfer" && l.path === "/big.bin");
      assert.deepEqual([line?.level, line?.result, line?.reply], [30, "closed", 426]);
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      assert.match(text, /^berth_transfers_total\{direction="download",result="closed"\} 1$/m);
      assert.doesNotMatch(text, /result="error"/);
    } finally {
      await s.close().catch(() => undefined);
    }
  });

  it("the endpoint holds a bounded number of connections: one past it (an idle or slow client's) is closed at once, those held are answered", async () => {
    const port = await freePort();
    const s = await startTestServer({ config: { metrics: { listen: `127.0.0.1:${port}` } } });
    /** One request on a new connection: what came back before the server closed it. */
    const scrape = async (): Promise<string> => {
      const c = connect(port, "127.0.0.1");
      c.on("error", () => undefined);
      let got = "";
      c.on("data", (d: Buffer) => (got += d.toString("utf8")));
      c.write("GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
      await once(c, "close");
      return got;
    };
    const held: Socket[] = [];
    try {
      // Each sends the start of a request and never finishes it.
      for (let i = 0; i < METRICS_MAX_CONNECTIONS; i++) {
        const c = connect(port, "127.0.0.1");
        c.on("error", () => undefined);
        await once(c, "connect");
        c.write("GET /metrics HTTP/1.1\r\n");
        held.push(c);
      }
      assert.equal(await scrape(), "");
      // A held one that finishes its request is answered; once it is gone, a new one is taken again.
      const first = held[0] as Socket;
      let answer = "";
      first.on("data", (d: Buffer) => (answer += d.toString("utf8")));
      first.write("Host: x\r\nConnection: close\r\n\r\n");
      await once(first, "close");
      assert.match(answer, /^HTTP\/1\.1 200 /);
      assert.match(answer, /^berth_sessions 0$/m);
      let again = "";
      for (let i = 0; i < 100 && again === ""; i++) again = await scrape();
      assert.match(again, /^HTTP\/1\.1 200 /);
    } finally {
      for (const c of held) c.destroy();
      await s.close().catch(() => undefined);
    }
  });

  it("HEAD /metrics is answered as GET is, without the body; another method on /metrics is 405 naming the allowed ones", async () => {
    const defender = { enabled: true, banned: 0, tracked: 0, bansTotal: 0, offences: { login: 0, limit: 0, abuse: 0 }, bans: [] };
    const gauges = (): Gauges => ({ sessions: 0, passivePortsInUse: 0, passivePortsTotal: 1, defender });
    const srv = await serveMetrics("127.0.0.1:0", new Metrics(), gauges, pino({ level: "silent" }));
    const url = `http://127.0.0.1:${(srv.address() as { port: number }).port}/metrics`;
    try {
      const head = await fetch(url, { method: "HEAD" });
      assert.equal(head.status, 200);
      assert.equal(head.headers.get("content-type"), "text/plain; version=0.0.4");
      assert.equal(await head.text(), "");
      for (const method of ["POST", "PUT", "DELETE"]) {
        const res = await fetch(url, { method });
        assert.equal(res.status, 405, method);
        assert.equal(res.headers.get("allow"), "GET, HEAD", method);
        await res.text();
      }
      // A query string is no other path, whatever the method.
      assert.equal((await fetch(`${url}?x=1`, { method: "HEAD" })).status, 200);
      const other = await fetch(url.replace(/metrics$/, "other"), { method: "POST" });
      assert.equal(other.status, 404);
      await other.text();
    } finally {
      srv.closeAllConnections();
      await new Promise((r) => srv.close(r));
    }
  });

  it("an error of the endpoint's listener once it listens (accept: out of descriptors) leaves it serving, not the process crashed", async () => {
    const defender = { enabled: true, banned: 0, tracked: 0, bansTotal: 0, offences: { login: 0, limit: 0, abuse: 0 }, bans: [] };
    const gauges = (): Gauges => ({ sessions: 0, passivePortsInUse: 0, passivePortsTotal: 1, defender });
    const srv = await serveMetrics("127.0.0.1:0", new Metrics(), gauges, pino({ level: "silent" }));
    try {
      // What Node's listener emits when accept(2) fails with EMFILE: unheard, an uncaught exception.
      const err = Object.assign(new Error("accept EMFILE"), { code: "EMFILE", errno: -24, syscall: "accept" });
      assert.doesNotThrow(() => srv.emit("error", err));
      const res = await fetch(`http://127.0.0.1:${(srv.address() as { port: number }).port}/metrics`);
      assert.equal(res.status, 200);
      await res.text();
    } finally {
      srv.closeAllConnections();
      await new Promise((r) => srv.close(r));
    }
  });

  it("an anonymous download's xferlog line has access mode a, the login name, and never the anonymous password", async () => {
    const dir = await mkdtemp(join(tmpdir(), "berth-xferlog-"));
    const xferlog = join(dir, "xferlog");
    const s = await startTestServer({ config: { anonymous: { enabled: true }, log: { xferlog } } });
    try {
      await mkdir(join(s.dataRoot, "anonymous"), { recursive: true });
      await writeFile(join(s.dataRoot, "anonymous", "pub.txt"), "public");
      const c = new Client();
      await c.access({ host: "127.0.0.1", port: s.port, user: "anonymous", password: "someone@example.com" });
      await c.downloadTo(new Writable({ write: (_c, _e, cb) => cb() }), "pub.txt");
      c.close();
      const a = new Client();
      await a.access({ host: "127.0.0.1", port: s.port, user: "alice", password: "alice-pw" });
      await a.uploadFrom(Readable.from([Buffer.from("mine")]), "mine.txt");
      a.close();
    } finally {
      await s.close().catch(() => undefined);
    }
    const lines = (await readFile(xferlog, "utf8")).trim().split("\n");
    assert.equal(lines.length, 2, lines.join("\n"));
    assert.match(lines[0] ?? "", / 127\.0\.0\.1 6 \/pub\.txt b _ o a anonymous ftp 0 \* c$/);
    assert.match(lines[1] ?? "", / 127\.0\.0\.1 4 \/mine\.txt b _ i r alice ftp 0 \* c$/);
    assert.ok(!lines.join("\n").includes("someone@example.com"), "the anonymous password was written");
    await rm(dir, { recursive: true, force: true });
  });

  it("formats xferlog lines like wu-ftpd", () => {
    const line = formatXferLine({
      when: new Date(2026, 10, 5, 8, 7, 6),
      ms: 2400,
      remote: "203.0.113.7",
      bytes: 42,
      path: "/a b.txt",
      ascii: true,
      direction: "download",
      user: "bob",
      anonymous: false,
      complete: false,
    });
    assert.equal(line, "Thu Nov  5 08:07:06 2026 2 203.0.113.7 42 /a_b.txt a _ o r bob ftp 0 * i\n");
  });

  it("writes DEL and the C1 controls of a name (U+0085 NEL, U+009B CSI) in xferlog as \\xNN", () => {
    // A client may name a file with any of them (only C0 is refused), and the log is read on a
    // terminal (tail -f), which takes U+009B as the start of an escape sequence and U+0085 as a
    // line end: the name would move the cursor and write over the lines before it.
    const line = formatXferLine({
      when: new Date(2026, 10, 5, 8, 7, 6),
      ms: 2400,
      remote: "203.0.113.7",
      bytes: 42,
      path: "/a\u009b1A\u009b2Kb\u0085c\u007fd",
      ascii: false,
      direction: "upload",
      user: "bob",
      anonymous: false,
      complete: true,
    });
    assert.equal(line, "Thu Nov  5 08:07:06 2026 2 203.0.113.7 42 /a\\x9b1A\\x9b2Kb\\x85c\\x7fd b _ i r bob ftp 0 * c\n");
  });

  it("passive ports a client never connects to warn at the 1st, 2nd, 4th… of a session, the rest at debug", async () => {
    await withServer(async (t) => {
      const raw = await RawClient.connect(t.port);
      await raw.login("alice");
      const ports: number[] = [];
      for (let i = 0; i < 6; i++) {
        const m = /\(\|\|\|(\d+)\|\)/.exec((await raw.expect("EPSV", 229)).lines.join(""));
        ports.push(Number(m?.[1]));
      }
      await raw.expect("QUIT", 221);
      await raw.close();
      const deadline = Date.now() + 5000;
      const unused = (): { level: number; port: number; unused: number }[] =>
        t.logLines.filter((l) => l.includes('"event":"passive-unused"')).map((l) => JSON.parse(l) as { level: number; port: number; unused: number });
      while (unused().length < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const lines = unused();
      // Each port once, counted in order; warn (40) at 1, 2 and 4, debug (20) otherwise.
      assert.deepEqual(
        lines.map((l) => l.port),
        ports,
      );
      assert.deepEqual(
        lines.map((l) => [l.unused, l.level]),
        [
          [1, 40],
          [2, 40],
          [3, 20],
          [4, 40],
          [5, 20],
          [6, 20],
        ],
      );
    });
  });

  it("a session's log lines name the CLNT client once, the latest name, before and after the login", async () => {
    await withServer(async (t) => {
      const raw = await RawClient.connect(t.port);
      // FEAT offers it: clients such as FileZilla send their name only then.
      assert.ok((await raw.expect("FEAT", 211)).lines.includes(" CLNT"));
      await raw.expect("CLNT first-name", 200);
      await raw.expect("CLNT second-name", 200);
      await raw.expect("NOOP", 200);
      await raw.login("alice");
      await raw.expect("NOOP", 200);
      await raw.expect("CLNT third-name", 200);
      await raw.expect("NOOP", 200);
      await raw.expect("QUIT", 221);
      await raw.close();
      const noops = t.logLines.filter((l) => l.includes('"verb":"NOOP"'));
      assert.equal(noops.length, 3);
      // Each line carries the key once (a logger made a child of itself repeats it), with the
      // latest name; the login keeps it and adds the user.
      const expected: [string, string | undefined][] = [
        ["second-name", undefined],
        ["second-name", "alice"],
        ["third-name", "alice"],
      ];
      noops.forEach((line, i) => {
        const [client, user] = expected[i] as [string, string | undefined];
        assert.equal(line.split('"client":').length - 1, 1, line);
        assert.equal(line.split('"session":').length - 1, 1, line);
        const parsed = JSON.parse(line) as Record<string, unknown>;
        assert.equal(parsed.client, client);
        assert.equal(parsed.user, user);
      });
    });
  });

  it("a login's lines name the user as `user`, as a logged-in session's do, never as `name`: readable output (pino-pretty) prints `name` as the logger's, in the line's header", async () => {
    await withServer(
      async (t) => {
        const wrong = await RawClient.connect(t.port);
        await wrong.expect("USER nobody-here", 331);
        await wrong.expect("PASS not-the-password", 530);
        await wrong.close();
        const full = await Promise.all([RawClient.connect(t.port), RawClient.connect(t.port)]);
        await (full[0] as RawClient).login("alice");
        await (full[1] as RawClient).expect("USER alice", 331);
        await (full[1] as RawClient).expect("PASS alice-pw", 421);
        await Promise.all(full.map((c) => c.close()));
        const logins = t.logs.filter((l) => l.event === "login");
        assert.deepEqual(
          logins.map((l) => [l.result, l.user, "name" in l]),
          [
            ["fail", "nobody-here", false],
            ["ok", "alice", false],
            ["refused", "alice", false],
          ],
        );
      },
      { config: { limits: { maxSessionsPerUser: 1 } } },
    );
  });

  it("a JSON log line holds DEL, the C1 controls and U+2028/U+2029 of a name as \\u escapes: the same value to a JSON reader, nothing a terminal or a line splitter acts on", () => {
    // A name may hold any of them (only C0 is refused in a path), and JSON.stringify writes them as
    // they are: U+009B is a terminal's CSI (docker logs, tail -f), U+0085, U+2028 and U+2029 end a
    // line for many splitters (Python's splitlines, JavaScript's own line terminators).
    const chunks: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _enc, done) {
        chunks.push(chunk.toString("utf8"));
        done();
      },
    });
    const logger = createLogger({ level: "info", pretty: "never", destination });
    const path = "/a\u009b2Jb\u0085c\u2028d\u2029e\u007ff\u00a0g\u00e9h";
    logger.info({ event: "transfer", path }, "upload %s complete", path);
    const text = chunks.join("");
    const lines = text.split("\n").filter(Boolean);
    assert.equal(lines.length, 1, text);
    assert.doesNotMatch(text, /[\u007f-\u009f\u2028\u2029]/);
    const parsed = JSON.parse(lines[0] as string) as { path: string; msg: string };
    assert.equal(parsed.path, path);
    assert.equal(parsed.msg, `upload ${path} complete`);
    // Other characters stay as they are.
    assert.ok(text.includes("\u00a0g\u00e9h"), text);
  });

  it("a log output that fails for a while (a full disk under `berth serve >> file`) drops the lines it cannot take, says so once on stderr, and takes lines again once it can", () => {
    // What standard output is when it is a file: each write is tried, and fails or lands on its own.
    class FileLike extends EventEmitter {
      full = false;
      readonly landed: string[] = [];
      write(text: string, done?: (err?: Error | null) => void): boolean {
        if (this.full) {
          const err = Object.assign(new Error("no space left on device"), { code: "ENOSPC" });
          done?.(err);
          this.emit("error", err);
          return false;
        }
        this.landed.push(text);
        done?.(null);
        return true;
      }
    }
    const out = new FileLike();
    const said: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((text: string) => said.push(text) > 0) as typeof process.stderr.write;
    try {
      const logger = createLogger({ level: "info", pretty: "never", destination: out as unknown as NodeJS.WritableStream });
      logger.info("before");
      out.full = true;
      logger.info("lost 1");
      logger.info("lost 2");
      out.full = false;
      logger.info("after");
      logger.info("after again");
    } finally {
      process.stderr.write = write;
    }
    assert.deepEqual(out.landed.map((l) => (JSON.parse(l) as { msg: string }).msg), ["before", "after", "after again"]);
    assert.equal(said.length, 2, said.join(""));
    assert.match(said[0] ?? "", /^berth: log output failed \(ENOSPC\); lines are dropped until it takes them again, serving goes on\n$/);
    assert.match(said[1] ?? "", /^berth: log output takes lines again; 2 were dropped\n$/);
  });

  it("readable output (log.pretty, what a terminal gets) writes a name's DEL, C1 controls and U+2028/U+2029 as \\u escapes too, in the message and in every field", () => {
    // pino-pretty writes a field's value as JSON.stringify does, which leaves DEL, C1 and
    // U+2028/U+2029 as they are: on the terminal it was made for, U+009B is a CSI.
    const chunks: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _enc, done) {
        chunks.push(chunk.toString("utf8"));
        done();
      },
    });
    const logger = createLogger({ level: "info", pretty: "always", destination });
    const user = "a\u009b2Jb\u0085c\u2028d\u2029e\u007ff\u00a0g\u00e9h";
    logger.info({ event: "login", result: "fail", user, path: `/${user}` }, "failed login %s", user);
    const text = chunks.join("");
    assert.doesNotMatch(text, /[\u007f-\u009f\u2028\u2029]/, JSON.stringify(text));
    assert.ok(text.includes("\\u009b2Jb"), text);
    assert.ok(text.includes("\u00a0g\u00e9h"), text);
  });
});

describe("xferlog file trouble", () => {
  const entry = (path: string): XferEntry => ({ when: new Date(), ms: 5, remote: "192.0.2.1", bytes: 10, path, ascii: false, direction: "upload", user: "alice", anonymous: false, complete: true });
  function capture() {
    const logs: Record<string, unknown>[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const line of chunk.toString().split("\n")) if (line) logs.push(JSON.parse(line) as Record<string, unknown>);
        cb();
      },
    });
    return { logger: pino({ level: "info" }, sink), logs };
  }

  it("a path that cannot be opened is a config error naming log.xferlog, not a log that never appears", async () => {
    const dir = await mkdtemp(join(tmpdir(), "berth-xferlog-"));
    try {
      const missing = join(dir, "no-such-dir", "xferlog");
      assert.throws(
        () => XferLog.open(missing, capture().logger),
        (err: unknown) => err instanceof ConfigError && err.key === "log.xferlog" && err.message === `config: log.xferlog cannot be opened: ${missing} (no such file or directory)`,
      );
      assert.throws(() => XferLog.open(dir, capture().logger), /log\.xferlog cannot be opened: .* \(is a directory\)$/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("failed writes drop their lines with one warning; after a reopen the next line lands and says how many were lost", async () => {
    const dir = await mkdtemp(join(tmpdir(), "berth-xferlog-"));
    const { logger, logs } = capture();
    const path = join(dir, "xferlog");
    // Every write to /dev/full fails with ENOSPC, as on a full disk.
    await symlink("/dev/full", path);
    const x = XferLog.open(path, logger);
    try {
      for (const name of ["/a", "/b", "/c"]) x.write(entry(name));
      assert.ok(await waitFor(() => logs.some((l) => l.event === "xferlog-failed"), 3000));
      // The disk "frees up" and the file is rotated: the link now leads to a regular file.
      await unlink(path);
      await writeFile(join(dir, "real"), "");
      await symlink(join(dir, "real"), path);
      x.reopen();
      x.write(entry("/d"));
      assert.ok(await waitFor(() => logs.some((l) => l.event === "xferlog-resumed"), 3000));
    } finally {
      await x.close();
    }
    const failed = logs.filter((l) => l.event === "xferlog-failed");
    assert.equal(failed.length, 1, "one warning for the whole run of failures");
    assert.equal(failed[0]?.level, 40);
    assert.equal(failed[0]?.code, "ENOSPC");
    assert.match(String(failed[0]?.msg), /no space left on device/);
    const resumed = logs.filter((l) => l.event === "xferlog-resumed");
    assert.equal(resumed.length, 1);
    assert.equal(resumed[0]?.dropped, 3);
    const lines = (await readFile(join(dir, "real"), "utf8")).split("\n").filter(Boolean);
    assert.equal(lines.length, 1);
    assert.match(lines[0] ?? "", / \/d b _ i r alice ftp 0 \* c$/);
    await rm(dir, { recursive: true, force: true });
  });

  it("lines beyond what the disk has taken so far are dropped, counted, and the memory held stays bounded", async () => {
    const dir = await mkdtemp(join(tmpdir(), "berth-xferlog-"));
    const { logger, logs } = capture();
    const path = join(dir, "xferlog");
    const x = XferLog.open(path, logger);
    // More lines in one turn of the event loop than the queue holds: the first write is still on
    // its way when the rest arrive.
    const total = Math.ceil(XFERLOG_MAX_PENDING / 60) + 1000;
    for (let i = 0; i < total; i++) x.write(entry(`/f${i}`));
    x.write(entry("/after")); // still dropped: the queue is full
    await x.close();
    const failed = logs.filter((l) => l.event === "xferlog-failed");
    assert.equal(failed.length, 1);
    assert.equal(failed[0]?.code, "EAGAIN");
    const resumed = logs.filter((l) => l.event === "xferlog-resumed");
    assert.equal(resumed.length, 1);
    const dropped = Number(resumed[0]?.dropped);
    assert.ok(dropped > 0);
    const lines = (await readFile(path, "utf8")).split("\n");
    assert.equal(lines.pop(), "", "the file ends with a whole line");
    assert.equal(lines.length, total + 1 - dropped);
    assert.ok(Buffer.byteLength(lines.join("\n")) <= XFERLOG_MAX_PENDING + 200);
    for (const [i, line] of lines.entries()) assert.match(line, new RegExp(` /f${i} b _ i r alice ftp 0 \\* c$`));
    await rm(dir, { recursive: true, force: true });
  });

  it("a reload opens the path again, so a rotated file is let go; nothing is left open", async () => {
    const dir = await mkdtemp(join(tmpdir(), "berth-xferlog-"));
    const xferlog = join(dir, "xferlog");
    const s = await startTestServer({ config: { log: { xferlog } } });
    try {
      const c = new Client();
      await c.access({ host: "127.0.0.1", port: s.port, user: "alice", password: "alice-pw" });
      await c.uploadFrom(Readable.from([Buffer.alloc(10, 1)]), "one.bin");
      await rename(xferlog, `${xferlog}.1`);
      s.server.reload(s.config);
      await c.uploadFrom(Readable.from([Buffer.alloc(20, 1)]), "two.bin");
      c.close();
    } finally {
      await s.close();
    }
    const old = (await readFile(`${xferlog}.1`, "utf8")).trim().split("\n");
    const now = (await readFile(xferlog, "utf8")).trim().split("\n");
    assert.equal(old.length, 1);
    assert.match(old[0] ?? "", / 10 \/one\.bin b /);
    assert.equal(now.length, 1);
    assert.match(now[0] ?? "", / 20 \/two\.bin b /);
    await rm(dir, { recursive: true, force: true });
  });

  it("a server that cannot listen closes the xferlog it opened", async () => {
    const dir = await mkdtemp(join(tmpdir(), "berth-xferlog-"));
    const taken = createServer();
    await new Promise<void>((r) => taken.listen(0, "127.0.0.1", r));
    const before = openFds();
    try {
      await assert.rejects(
        startTestServer({ config: { listen: { host: "127.0.0.1", port: (taken.address() as { port: number }).port }, log: { xferlog: join(dir, "xferlog") } } }),
        /EADDRINUSE/,
      );
      assert.ok(await waitFor(() => openFds() <= before, 3000), `descriptors: ${openFds()} after, ${before} before`);
    } finally {
      await new Promise((r) => taken.close(r));
      await rm(dir, { recursive: true, force: true });
    }
  });
});
