/**
 * The command line's names: unknown commands and options, help for every command, --version, and
 * names that every object has. (Split from cli-config.test.ts: each file runs within the per-file
 * timeout, and the two run side by side.)
 */
import assert from "node:assert/strict";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { describe, test } from "node:test";
import { assertOneLineError, berth, MAIN, startServe, TSX, workdir } from "./helpers/cli.ts";

void describe("berth's commands, help and unknown names", () => {
  void test("an unknown command exits 2; help exits 0, for a known command too; --version takes nothing more", async () => {
    const cwd = workdir();
    assertOneLineError(await berth(cwd, ["frobnicate"]), 2, '"frobnicate"');
    for (const args of [["--help"], ["help"], ["user", "--help"], ["help", "user"], ["help", "user", "add"], ["help", "ctl", "status"]]) {
      const help = await berth(cwd, args);
      assert.equal(help.code, 0, args.join(" "));
      assert.match(help.stdout, /^usage: berth/);
    }
    assertOneLineError(await berth(cwd, ["help", "frobnicate"]), 2, 'unknown command "frobnicate"');
    assertOneLineError(await berth(cwd, ["help", "user", "nope"]), 2, 'unknown command "user nope"');
    assertOneLineError(await berth(cwd, ["help", "-x"]), 2, 'unexpected option "-x" for "berth help"');
    assertOneLineError(await berth(cwd, ["--help", "user", "--root"]), 2, 'unexpected option "--root" for "berth --help"');
    const version = await berth(cwd, ["--version"]);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /^berth \d+\.\d+\.\d+\n$/);
    assertOneLineError(await berth(cwd, ["--version", "extra"]), 2, 'unexpected argument "extra"');
    // A password typed after the name is never echoed back.
    for (const sub of ["add", "passwd"]) {
      const r = await berth(cwd, ["user", sub, "bob", "s3cret-pw"]);
      assertOneLineError(r, 2, `unexpected argument after NAME for "berth user ${sub}"`, "--password-stdin");
      assert.doesNotMatch(r.stderr + r.stdout, /s3cret-pw/);
    }
    // `user set` changes a user, not the password, but one typed after the name is just as private.
    const set = await berth(cwd, ["user", "set", "bob", "s3cret-pw"]);
    assertOneLineError(set, 2, 'unexpected argument after NAME for "berth user set"', "berth user passwd NAME");
    assert.doesNotMatch(set.stderr + set.stdout, /s3cret-pw/);
    assertOneLineError(await berth(cwd, ["user", "del", "bob", "extra"]), 2, 'unexpected argument "extra" for "berth user del"');
  });

  void test("--help lists every command under commands:, and the user options' section holds only options", async () => {
    const help = await berth(workdir(), ["--help"]);
    assert.equal(help.code, 0);
    // The text's sections: a heading at the start of a line ending in ":", then its indented lines.
    const sections = new Map<string, string[]>();
    let current = "";
    for (const line of help.stdout.split("\n")) {
      if (/^\S.*:$/.test(line)) sections.set((current = line), []);
      else if (line.startsWith("  ")) sections.get(current)?.push(line);
    }
    const commands = (sections.get("commands:") ?? []).join("\n");
    for (const command of ["serve", "user add", "user set", "user passwd", "user del", "user list", "config check", "ctl status", "selftest", "help"]) {
      assert.match(commands, new RegExp(`^  ${command}\\b`, "m"), `${command} is listed under commands:`);
    }
    const userOptions = sections.get("limits and permissions (user add, user set):") ?? [];
    assert.ok(userOptions.length > 0, "the section of user add/set options is there");
    for (const line of userOptions) assert.match(line, /^ {2}--|^ {10,}\S/, `only options and their explanations in the user options' section: ${line}`);
    assert.match(userOptions.join("\n"), /"all", "none" or a comma list/, "--perms names none too");
  });

  void test("a command or option named like a property every object has (constructor, toString, __proto__) is unknown: exit 2, one line", async () => {
    const cwd = workdir();
    const cases: [string[], string][] = [
      [["constructor"], 'unknown command "constructor"'],
      [["toString", "x"], 'unknown command "toString"'],
      [["__proto__", "x"], 'unknown command "__proto__"'],
      [["hasOwnProperty"], 'unknown command "hasOwnProperty"'],
      [["help", "valueOf"], 'unknown command "valueOf"'],
      [["serve", "--constructor"], 'unknown option --constructor for "berth serve"'],
      [["user", "add", "bob", "--toString", "x"], 'unknown option --toString for "berth user add"'],
      [["config", "check", "--__proto__=x"], 'unknown option --__proto__ for "berth config check"'],
    ];
    const results = await Promise.all(cases.map(async ([args, message]) => ({ args, message, r: await berth(cwd, args) })));
    for (const { args, message, r } of results) {
      assertOneLineError(r, 2, message);
      assert.doesNotMatch(r.stderr, /unexpected error|given twice/, args.join(" "));
    }
    assert.ok(!existsSync(path.join(cwd, "users", "users.json")), "nothing was run");
  });
  void test("--config before the command (berth --config FILE serve) is that command's --config, as after it", async () => {
    const cwd = workdir();
    mkdirSync(path.join(cwd, "etc"));
    const config = path.join("etc", "ftp.yaml");
    writeFileSync(path.join(cwd, config), 'listen:\n  host: "127.0.0.1"\n  port: 0\npassive:\n  ports: "23990-23994"\nusers:\n  file: "etc/people.json"\nstorage:\n  root: "homes"\nlog:\n  pretty: never\n');
    const check = await berth(cwd, ["--config", config, "config", "check"]);
    assert.equal(check.code, 0, check.stderr);
    assert.match(check.stdout, /file: "etc\/people\.json"/);
    const add = await berth(cwd, [`--config=${config}`, "user", "add", "bob", "--password-stdin"], { input: "bob-secret\n" });
    assert.equal(add.code, 0, add.stderr);
    assert.match(readFileSync(path.join(cwd, "etc", "people.json"), "utf8"), /"name": "bob"/);
    const list = await berth(cwd, ["--config", config, "user", "list"]);
    assert.equal(list.code, 0, list.stderr);
    assert.match(list.stdout, /^bob\b/m);
    const run = startServe(cwd, {}, /"event":"listening"/, [process.execPath, "--import", TSX, MAIN, "--config", config, "serve"]);
    await run.ready;
    assert.match(run.output().stdout, /"passive":"23990-23994"/, "the server runs with the config named");
    run.child.kill("SIGTERM");
    assert.equal(await run.exited, 0);
    // Given twice, before and after the command, it is given twice.
    assertOneLineError(await berth(cwd, ["--config", config, "config", "check", "--config", config]), 2, "option --config given twice");
    // An option other than --config before a command is still an option of serve.
    assertOneLineError(await berth(cwd, ["--socket", "x", "ctl", "status"]), 2, 'unknown option --socket for "berth serve"');
  });
});
