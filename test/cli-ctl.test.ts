/**
 * `berth ctl` against sockets that are not berth's admin socket, or answer it oddly: one line and
 * exit 1, never a hang (its own file, so that each runs within the per-file timeout on a busy
 * machine; the admin socket itself is in admin-socket.test.ts).
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { chmodSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import path from "node:path";
import { describe, test } from "node:test";
import { assertOneLineError, baseEnv, berth, MAIN, SETPRIV, TSX, workdir } from "./helpers/cli.ts";
import { track } from "./helpers/reap.ts";
import { admin, serve } from "./helpers/service.ts";

void describe("berth ctl", () => {
  void test("a --socket longer than a Unix socket path can be says so (one line, exit 1), not that nothing is there", async () => {
    const cwd = workdir();
    const long = path.join(cwd, `${"s".repeat(120)}.sock`);
    const r = await berth(cwd, ["ctl", "status", "--socket", long]);
    assertOneLineError(r, 1);
    assert.equal(r.stderr, `berth: cannot reach the admin socket ${long}: its path is ${Buffer.byteLength(long)} bytes, and a Unix socket's can be at most 107\n`);
  });

  void test("a socket that is not there says so in words; one the user may not use says that, not to check whether berth runs", async () => {
    const cwd = workdir();
    const missing = path.join(cwd, "nothing.sock");
    const r = await berth(cwd, ["ctl", "status", "--socket", missing]);
    assertOneLineError(r, 1);
    assert.equal(r.stderr, `berth: cannot reach the admin socket ${missing}: no such file or directory (is berth running with admin.socket set?)\n`);
    if (process.getuid?.() !== 0 || SETPRIV === undefined) return;
    // A server listening there, reached by a user who may not (the socket is the server's user's).
    chmodSync(cwd, 0o755);
    const sockPath = path.join(cwd, "admin.sock");
    const server = createServer((c) => c.on("error", () => undefined));
    await new Promise<void>((resolve) => server.listen(sockPath, () => resolve()));
    chmodSync(sockPath, 0o600);
    try {
      const denied = await berth(cwd, ["ctl", "status", "--socket", sockPath], { via: [SETPRIV, "--reuid=65534", "--regid=65534", "--clear-groups"] });
      assertOneLineError(denied, 1, `cannot reach the admin socket ${sockPath}: permission denied`);
      assert.doesNotMatch(denied.stderr, /is berth running/);
    } finally {
      server.close();
    }
  });

  void test("a --socket where something else than berth listens: one line, exit 1, whether it answers something else or nothing", async () => {
    const cwd = workdir();
    // An HTTP server's answer to a line that is not HTTP, and a server that never answers.
    const replies: [string, string | null][] = [["http.sock", "HTTP/1.1 400 Bad Request\r\n\r\n"], ["silent.sock", null]];
    const servers = await Promise.all(
      replies.map(([name, reply]) => {
        const server = createServer((c) => {
          c.on("error", () => undefined);
          c.once("data", () => void (reply !== null && c.write(reply)));
        });
        return new Promise<typeof server>((resolve) => server.listen(path.join(cwd, name), () => resolve(server)));
      }),
    );
    try {
      const [http, silent, watched] = await Promise.all([
        berth(cwd, ["ctl", "status", "--socket", "http.sock"]),
        berth(cwd, ["ctl", "sessions", "--socket", "silent.sock"]),
        berth(cwd, ["ctl", "watch", "--socket", "http.sock"]),
      ]);
      for (const r of [http, watched]) {
        assertOneLineError(r, 1);
        assert.equal(r.stderr, `berth: ${path.join(cwd, "http.sock")} does not answer as berth's admin socket does (got "HTTP/1.1 400 Bad Request\\r")\n`);
      }
      assertOneLineError(silent, 1);
      assert.equal(silent.stderr, `berth: no answer from ${path.join(cwd, "silent.sock")} within 10 s (is it berth's admin socket?)\n`);
    } finally {
      for (const s of servers) s.close();
    }
  });

  void test("a JSON object without the fields of berth's answer: one line naming the socket, exit 1, nothing printed as a result", async () => {
    const cwd = workdir();
    // Each answers every request with the same line.
    const replies: [string, string][] = [["bare.sock", '{"ok":true}'], ["refused.sock", '{"ok":false}'], ["odd.sock", '{"ok":true,"sessions":3,"applied":"x"}']];
    const servers = await Promise.all(
      replies.map(([name, reply]) => {
        const server = createServer((c) => {
          c.on("error", () => undefined);
          c.on("data", () => void c.write(`${reply}\n`));
        });
        return new Promise<typeof server>((resolve) => server.listen(path.join(cwd, name), () => resolve(server)));
      }),
    );
    try {
      const subs = [["status"], ["sessions"], ["kick", "abc"], ["reload"], ["watch"]];
      const runs = replies.flatMap(([name, reply]) => subs.map((sub) => ({ name, reply, sub })));
      const results = await Promise.all(runs.map(async (run) => ({ ...run, r: await berth(cwd, ["ctl", ...run.sub, "--socket", run.name]) })));
      for (const { name, reply, sub, r } of results) {
        assertOneLineError(r, 1);
        assert.equal(r.stdout, "", `ctl ${sub.join(" ")} against ${name}`);
        assert.equal(r.stderr, `berth: ${path.join(cwd, name)} does not answer as berth's admin socket does (got ${JSON.stringify(reply)})\n`, `ctl ${sub.join(" ")}`);
      }
    } finally {
      for (const s of servers) s.close();
    }
  });

  void test("reload waits past 10 s for its answer: a reload may wait for a passive.address lookup on a resolver that does not answer", async () => {
    const cwd = workdir();
    // Answers a reload 11 s after it comes, as berth does after a lookup that timed out.
    const server = createServer((c) => {
      c.on("error", () => undefined);
      c.once("data", () => void setTimeout(() => c.write(`${JSON.stringify({ ok: true, applied: ["passive.address"], needRestart: [] })}\n`), 11_000));
    });
    await new Promise<void>((resolve) => server.listen(path.join(cwd, "admin.sock"), () => resolve()));
    try {
      const r = await berth(cwd, ["ctl", "reload", "--socket", "admin.sock"]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "reloaded; applied: passive.address\n");
    } finally {
      server.close();
    }
  });

  void test("an answer whose character is split between two reads is printed whole (sessions --json)", async () => {
    const cwd = workdir();
    const session = { id: "0a1b2c3d", user: "bob", remote: "127.0.0.1", secure: false, transfer: { direction: "download", path: "/café/日本.bin", bytes: 1, expected: 2, startedAt: 0 } };
    const line = Buffer.from(`${JSON.stringify({ ok: true, now: 1, sessions: [session] })}\n`);
    // The cut falls inside the two bytes of "é"; the rest follows once the first part was read.
    const cut = line.indexOf(Buffer.from("é")) + 1;
    const server = createServer((c) => {
      c.on("error", () => undefined);
      c.once("data", () => {
        c.write(line.subarray(0, cut));
        setTimeout(() => c.write(line.subarray(cut)), 300);
      });
    });
    await new Promise<void>((resolve) => server.listen(path.join(cwd, "admin.sock"), () => resolve()));
    try {
      const r = await berth(cwd, ["ctl", "sessions", "--json", "--socket", "admin.sock"]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout), [session]);
    } finally {
      server.close();
    }
  });

  void test("sessions --json writes a path's DEL, C1 controls and U+2028/U+2029 as \\u escapes: the same value, nothing the terminal acts on", async () => {
    const cwd = workdir();
    // U+009B is a terminal's CSI: a file name a client made must not reach the operator's terminal as it is.
    const session = { id: "0a1b2c3d", user: "bob", remote: "127.0.0.1", secure: false, transfer: { direction: "download", path: "/a\u009b2Jb\u0085c\u2028d\u007fé", bytes: 1, expected: 2, startedAt: 0 } };
    const server = createServer((c) => {
      c.on("error", () => undefined);
      c.once("data", () => void c.write(`${JSON.stringify({ ok: true, now: 1, sessions: [session] })}\n`));
    });
    await new Promise<void>((resolve) => server.listen(path.join(cwd, "admin.sock"), () => resolve()));
    try {
      const r = await berth(cwd, ["ctl", "sessions", "--json", "--socket", "admin.sock"]);
      assert.equal(r.code, 0, r.stderr);
      assert.doesNotMatch(r.stdout, /[\u007f-\u009f\u2028\u2029]/);
      assert.deepEqual(JSON.parse(r.stdout), [session]);
    } finally {
      server.close();
    }
  });

  void test("watch ends, status 0, when whoever reads its output goes away (`berth ctl watch | head -1`)", async () => {
    const cwd = workdir();
    // Answers every request as berth's admin socket answers `sessions`.
    const server = createServer((c) => {
      c.on("error", () => undefined);
      c.on("data", () => void c.write(`${JSON.stringify({ ok: true, now: Date.now(), sessions: [] })}\n`));
    });
    await new Promise<void>((resolve) => server.listen(path.join(cwd, "admin.sock"), () => resolve()));
    try {
      const child = spawn(process.execPath, ["--import", TSX, MAIN, "ctl", "watch", "--socket", "admin.sock"], { cwd, env: baseEnv() });
      track(child);
      const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
      await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
      // The reader reads one screen and goes away, as `head -1` does.
      child.stdout.destroy();
      const code = await Promise.race([exited, new Promise<string>((resolve) => setTimeout(() => resolve("still running"), 5000))]);
      child.kill("SIGKILL");
      assert.equal(code, 0);
    } finally {
      server.close();
    }
  });

  void test("watch of a server that stops (a drain) ends saying the connection was closed, not after a wait as if nothing answered", async () => {
    const srv = await serve("", 8, { BERTH_ADMIN_SOCKET: "run/admin.sock" });
    const sock = path.join(srv.cwd, "run", "admin.sock");
    await srv.waitLog(/"event":"admin-socket"/);
    const child = spawn(process.execPath, ["--import", TSX, MAIN, "ctl", "watch", "--socket", sock], { cwd: srv.cwd, env: baseEnv() });
    track(child);
    let stderr = "";
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
    const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
    await new Promise<void>((resolve) => child.stdout.once("data", () => resolve()));
    assert.deepEqual(await admin(sock, { cmd: "drain" }), { ok: true });
    assert.equal(await srv.exited, 0);
    const code = await exited;
    assertOneLineError({ code, stdout: "", stderr }, 1, `${sock} closed the connection`);
    assert.doesNotMatch(stderr, /no answer/);
  });

  void test("watch ends at Ctrl-C, status 0, also while a request waits for a server that does not answer (a stopped or busy server)", async () => {
    const cwd = workdir();
    // Answers the first request as berth answers `sessions`, then nothing.
    let asked = 0;
    let secondAsked: () => void = () => undefined;
    const second = new Promise<void>((resolve) => (secondAsked = resolve));
    const server = createServer((c) => {
      c.on("error", () => undefined);
      c.on("data", () => {
        asked++;
        if (asked === 1) c.write(`${JSON.stringify({ ok: true, now: Date.now(), sessions: [] })}\n`);
        else secondAsked();
      });
    });
    await new Promise<void>((resolve) => server.listen(path.join(cwd, "admin.sock"), () => resolve()));
    try {
      const child = spawn(process.execPath, ["--import", TSX, MAIN, "ctl", "watch", "--socket", "admin.sock"], { cwd, env: baseEnv() });
      track(child);
      let stderr = "";
      child.stderr.on("data", (c: Buffer) => (stderr += c.toString("utf8")));
      const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
      await second;
      child.kill("SIGINT");
      assert.equal(await exited, 0, stderr);
      assert.equal(stderr, "");
    } finally {
      server.close();
    }
  });

  void test("a --socket that is a file or a directory, not a socket, says so, not that nothing listens there", async () => {
    const cwd = workdir();
    writeFileSync(path.join(cwd, "berth.yaml"), "admin:\n  socket: run/admin.sock\n");
    const file = await berth(cwd, ["ctl", "status", "--socket", "berth.yaml"]);
    assertOneLineError(file, 1);
    assert.equal(file.stderr, `berth: cannot reach the admin socket ${path.join(cwd, "berth.yaml")}: it is a regular file, not a socket (is it admin.socket of the config?)\n`);
    const dir = await berth(cwd, ["ctl", "status", "--socket", "."]);
    assertOneLineError(dir, 1);
    assert.equal(dir.stderr, `berth: cannot reach the admin socket ${cwd}: it is a directory, not a socket (is it admin.socket of the config?)\n`);
  });
});
