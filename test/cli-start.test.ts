/**
 * How `berth serve` starts: the demo user of a true first start, and a users file whose users
 * were all deleted.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { berth, startServe, workdir } from "./helpers/cli.ts";

const env = { BERTH_LISTEN_HOST: "127.0.0.1", BERTH_LISTEN_PORT: "0", BERTH_PASSIVE_PORTS: "22030-22039", BERTH_LOG_LEVEL: "info" };

void describe("berth serve: the first start", () => {
  void test("a users file whose users were all deleted stays empty: no demo user, a warning that nobody can log in", async () => {
    const cwd = workdir();
    assert.equal((await berth(cwd, ["user", "add", "only", "--password-stdin"], { input: "pw" })).code, 0);
    assert.equal((await berth(cwd, ["user", "del", "only"])).code, 0);
    const usersFile = path.join(cwd, "users", "users.json");
    const emptied = readFileSync(usersFile, "utf8");
    assert.deepEqual(JSON.parse(emptied), { version: 1, users: [] });
    const started = await Promise.all(
      ["false", "true"].map(async (anonymous) => {
        const run = startServe(cwd, { ...env, BERTH_ANONYMOUS_ENABLED: anonymous }, /"event":"listening"/);
        await run.ready;
        run.child.kill("SIGTERM");
        return { anonymous, code: await run.exited, stdout: run.output().stdout };
      }),
    );
    for (const { anonymous, code, stdout } of started) {
      assert.equal(code, 0);
      assert.doesNotMatch(stdout, /no users yet|created user/);
      const warned = stdout.split("\n").filter((l) => l.includes("nobody can log in"));
      if (anonymous === "true") assert.deepEqual(warned, [], "anonymous FTP is on: someone can log in");
      else {
        assert.equal(warned.length, 1, stdout);
        const line = JSON.parse(warned[0] ?? "") as { level: number; event: string; file: string; msg: string };
        assert.deepEqual([line.level, line.event, line.file], [40, "no-users", usersFile]);
        assert.match(line.msg, /^the users file has no users: nobody can log in/);
      }
    }
    assert.equal(readFileSync(usersFile, "utf8"), emptied, "the users file is left as it is");
  });
});
