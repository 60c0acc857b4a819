/**
 * The command line checks before it acts: `user add` and `user passwd` refuse what they would
 * refuse before asking for a password.
 */
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { assertOneLineError, baseEnv, berth, MAIN, TSX, workdir } from "./helpers/cli.ts";

const HAVE_PYTHON3 = spawnSync("python3", ["-c", "import pty"]).status === 0;

/** Runs the CLI on a pseudo-terminal (python3's pty module) whose input ends at once: a command
 * that asks for a password there waits, and is killed when `until` shows up in its output or
 * after `timeoutMs`. Output and errors come back together, as a terminal shows them. */
function berthOnTerminal(cwd: string, args: string[], until?: RegExp, timeoutMs = 15_000): Promise<{ code: number | null; output: string }> {
  const onPty = "import os, pty, sys; sys.exit(os.waitstatus_to_exitcode(pty.spawn(sys.argv[1:])))";
  return new Promise((resolve, reject) => {
    const child = spawn("python3", ["-c", onPty, process.execPath, "--import", TSX, MAIN, ...args], {
      cwd,
      env: baseEnv(),
      timeout: timeoutMs,
      killSignal: "SIGKILL",
    });
    let output = "";
    const take = (c: Buffer): void => {
      output += c.toString("utf8");
      if (until?.test(output)) child.kill("SIGKILL");
    };
    child.stdout.on("data", take);
    child.stderr.on("data", take);
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, output }));
    child.stdin.end();
  });
}

void describe("berth user: checks before the password", () => {
  void test("a bad name, an existing user or a missing one is refused before any password is asked for", async () => {
    const cwd = workdir();
    assert.equal((await berth(cwd, ["user", "add", "zed", "--password-stdin"], { input: "pw" })).code, 0);
    const before = readFileSync(path.join(cwd, "users", "users.json"), "utf8");
    // Without a terminal and without --password-stdin, the password cannot be had: the mistake
    // in the command is what is reported, not that.
    const [exists, badName, badPerms, missing, existsStdin] = await Promise.all([
      berth(cwd, ["user", "add", "zed"]),
      berth(cwd, ["user", "add", "bad name"]),
      berth(cwd, ["user", "add", "ok", "--perms", "fly"]),
      berth(cwd, ["user", "passwd", "nobody"]),
      berth(cwd, ["user", "add", "zed", "--password-stdin"], { input: "other" }),
    ]);
    assertOneLineError(exists, 1, 'user "zed" already exists');
    assertOneLineError(badName, 2, 'invalid user name "bad name"');
    assertOneLineError(badPerms, 2, "--perms");
    assertOneLineError(missing, 1, 'no user "nobody"');
    assertOneLineError(existsStdin, 1, "already exists");
    assert.equal(readFileSync(path.join(cwd, "users", "users.json"), "utf8"), before, "the users file is unchanged");
  });

  void test("on a terminal, the same mistakes end at once without a password prompt", { skip: HAVE_PYTHON3 ? false : "python3 with pty not installed" }, async () => {
    const cwd = workdir();
    assert.equal((await berth(cwd, ["user", "add", "zed", "--password-stdin"], { input: "pw" })).code, 0);
    const cases = [
      [["user", "add", "zed"], 1, 'berth: user "zed" already exists'],
      [["user", "add", "bad name"], 2, 'berth: invalid user name "bad name"'],
      [["user", "passwd", "nobody"], 1, 'berth: no user "nobody"'],
    ] as const;
    const results = await Promise.all(cases.map(async ([args, code, message]) => ({ args, code, message, r: await berthOnTerminal(cwd, [...args]) })));
    for (const { args, code, message, r } of results) {
      assert.doesNotMatch(r.output, /password/i, `${args.join(" ")}: no prompt (output: ${JSON.stringify(r.output)})`);
      assert.equal(r.code, code, `${args.join(" ")}: ${r.output}`);
      assert.ok(r.output.includes(message), `${args.join(" ")}: ${r.output}`);
    }
    // The prompt itself is still there for a command that can go on.
    const asks = await berthOnTerminal(cwd, ["user", "passwd", "zed"], /new password for "zed": /);
    assert.match(asks.output, /new password for "zed": /);
  });
});
