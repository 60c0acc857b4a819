/**
 * `berth serve` run as a user without the right to bind ports below 1024 (as the container image's
 * node is when started with no-new-privileges): the one-line error says what grants the port and
 * how to do without it. Needs root (to start berth as another user) and setpriv; skipped otherwise.
 */
import { spawnSync } from "node:child_process";
import { chmodSync } from "node:fs";
import process from "node:process";
import { describe, test } from "node:test";
import { assertOneLineError, berth, workdir, type CliResult } from "./helpers/cli.ts";

const canDrop = process.getuid?.() === 0 && spawnSync("setpriv", ["--version"]).status === 0;

/** Runs `berth serve` in `cwd` as uid/gid 1000 with no capabilities. */
function serveUnprivileged(cwd: string, env: Record<string, string>): Promise<CliResult> {
  return berth(cwd, ["serve"], { env, via: ["setpriv", "--reuid=1000", "--regid=1000", "--clear-groups", "--inh-caps=-all"] });
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
