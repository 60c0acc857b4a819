/**
 * `berth serve` run as a user without the right to bind ports below 1024 (as the container image's
 * node is when started with no-new-privileges): the one-line error says what grants the port and
 * how to do without it. Needs root (to start berth as another user) and setpriv; skipped otherwise.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { chmodSync } from "node:fs";
import process from "node:process";
import { describe, test } from "node:test";
import { assertOneLineError, berth, listeningPort, MAIN, startServe, TSX, workdir, type CliResult } from "./helpers/cli.ts";
import { RawClient } from "./helpers/raw.ts";

const canDrop = process.getuid?.() === 0 && spawnSync("setpriv", ["--version"]).status === 0;

/** setpriv and its arguments: what follows runs as uid/gid 1000 with no capabilities. */
const UNPRIVILEGED = ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "--inh-caps=-all"] as const;

/** Runs `berth serve` in `cwd` as uid/gid 1000 with no capabilities. */
function serveUnprivileged(cwd: string, env: Record<string, string>): Promise<CliResult> {
  return berth(cwd, ["serve"], { env, via: UNPRIVILEGED });
}

void describe("berth serve on a port below 1024 without the right to bind it", () => {
  void test("the error names NET_BIND_SERVICE and no-new-privileges and says to publish a port from 1024 up", { skip: !canDrop && "needs root and setpriv" }, async () => {
    const cwd = workdir();
    chmodSync(cwd, 0o777);
    const port = 900 + Math.floor(Math.random() * 100);
    const r = await serveUnprivileged(cwd, {
      BERTH_LISTEN_HOST: "127.0.0.1",
      BERTH_LISTEN_PORT: String(port),
      BERTH_PASSIVE_PORTS: "22040-22049",
      BERTH_USER: "alice",
      BERTH_PASSWORD: "alice-pw-1",
    });
    assertOneLineError(r, 1, `cannot listen on 127.0.0.1:${port}: permission denied`, "NET_BIND_SERVICE", "no-new-privileges", "BERTH_LISTEN_PORT=2121", "-p 21:2121");
  });
});

void describe("berth serve with passive ports below 1024 without the right to bind them", () => {
  void test("PASV and EPSV get a 425 that says permission denied, not that the range is full, and the log names passive.ports and NET_BIND_SERVICE", { skip: !canDrop && "needs root and setpriv" }, async () => {
    const cwd = workdir();
    chmodSync(cwd, 0o777);
    const low = 900 + Math.floor(Math.random() * 90);
    const env = {
      BERTH_LISTEN_HOST: "127.0.0.1",
      BERTH_LISTEN_PORT: "0",
      BERTH_PASSIVE_PORTS: `${low}-${low + 2}`,
      BERTH_USER: "alice",
      BERTH_PASSWORD: "alice-pw-1",
    };
    const run = startServe(cwd, env, /"event":"listening".*\n/, [...UNPRIVILEGED, process.execPath, "--import", TSX, MAIN, "serve"]);
    try {
      await run.ready;
      const raw = await RawClient.connect(listeningPort(run.output().stdout));
      try {
        await raw.login("alice", "alice-pw-1");
        for (const verb of ["PASV", "EPSV"]) {
          const r = await raw.expect(verb, 425);
          assert.match(r.message, /permission denied/i, r.message);
        }
      } finally {
        await raw.close();
      }
      const warned = run.output().stdout.split("\n").filter((l) => l.includes('"level":40') && l.includes(`passive.ports ${low}-${low + 2}`));
      assert.ok(warned.length > 0, run.output().stdout);
      assert.match(warned[0] ?? "", /NET_BIND_SERVICE/);
    } finally {
      run.child.kill("SIGTERM");
      await run.exited;
    }
  });
});
