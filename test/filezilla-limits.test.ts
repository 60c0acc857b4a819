/**
 * The real FileZilla client, headless under Xvfb, against berth's quotas and permissions: what
 * FileZilla's own log shows when an upload is refused, and that its queue gives up instead of
 * retrying forever. The check script expects a successful round trip, so here its FAIL is the
 * expected verdict, and the test reads FileZilla's log (transcript.txt, filezilla.log) itself.
 *
 * FileZilla 3.63 retries a failed transfer up to "Reconnect count" times (default 2), except after
 * a critical error: a 5xx answer to STOR that came before any 150. The check script turns retries
 * off (strict mode); a `filezilla` wrapper on the PATH turns them back on to FileZilla's default,
 * in the run's private profile only, so a retry would show in the log. Skips, saying why, when
 * FileZilla, Xvfb or the check script is not there. The runs go in parallel.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { chmod, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { describeRun, fzCheck, which, FZ_CHECK_SCRIPT } from "./helpers/exec.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

const SCRIPT = FZ_CHECK_SCRIPT;

function missing(): string | null {
  if (!existsSync(SCRIPT)) return `the FileZilla check script is not at ${SCRIPT} (set FZ_CHECK to its path)`;
  for (const bin of ["filezilla", "xdotool", "import", "openssl", "python3", "Xvfb"]) {
    if (!which(bin)) return `${bin} is not installed`;
  }
  return null;
}

const why = missing();

/** FileZilla's own default for "Reconnect count" (Settings › Connection › Maximum number of retries). */
const RETRIES = 2;
const QUOTA = 4096; // 4 KiB
/** Size of the file FileZilla uploads (the check script's default). */
const UPLOAD = 300_000;

/** Own passive and active ranges, apart from filezilla.test.ts (which may run at the same time). */
function passiveRange(): string {
  const base = 29000 + ((process.pid + 45) % 90) * 40;
  return `${base}-${base + 19}`;
}
const ACTIVE_PORTS = "22290-22299";

/** One FileZilla session: the check script's verdict and FileZilla's log, engine by engine. */
interface FzRun {
  readonly verdict: string;
  readonly code: number | null;
  readonly elapsedMs: number;
  /** Status/Command/Response/Error lines of the queue's transfer connection (engine 2). */
  readonly queue: string[];
  /** FileZilla's raw MLSD lines ("Listing: …"), as it logged them. */
  readonly listing: string[];
  /** The queue-completion action ran: FileZilla finished its queue. */
  readonly queueDone: boolean;
  readonly profile: string;
  readonly detail: string;
}

/** The wrapper that restores FileZilla's default retries, written into `dir`. */
async function writeRetryWrapper(dir: string): Promise<void> {
  const real = spawnSync("sh", ["-c", "command -v filezilla"], { encoding: "utf8" }).stdout.trim();
  await mkdir(dir, { recursive: true });
  const wrapper = join(dir, "filezilla");
  await writeFile(
    wrapper,
    [
      "#!/bin/sh",
      "# Edits only a profile generated under $FZ_OUT (the check script sets HOME there).",
      'case "$HOME" in "$FZ_OUT"/*)',
      `  sed -i 's|name="Reconnect count">0<|name="Reconnect count">${RETRIES}<|' "$HOME/.config/filezilla/filezilla.xml" ;;`,
      "esac",
      `exec '${real}' "$@"`,
      "",
    ].join("\n"),
  );
  await chmod(wrapper, 0o755);
}

describe("FileZilla (headless) against quotas and permissions", { concurrency: true }, () => {
  let t: TestServer;
  let out: string;
  let wrapperDir: string;

  before(async () => {
    if (why) return;
    t = await startTestServer({
      config: { passive: { ports: passiveRange() } },
      users: [
        { name: "full", password: "full-pw", quotaBytes: QUOTA }, // at the quota before it starts
        { name: "half", password: "half-pw", quotaBytes: UPLOAD / 3 }, // the upload crosses it mid-way
        { name: "ro", password: "ro-pw", perms: ["list", "download"] },
        { name: "box", password: "box-pw", perms: ["list", "download", "upload"], dirs: { "/pub": ["list", "download"] } },
      ],
    });
    await mkdir(t.home("full"), { recursive: true });
    await writeFile(join(t.home("full"), "filler.bin"), Buffer.alloc(QUOTA));
    await mkdir(join(t.home("ro"), "sub"), { recursive: true });
    await writeFile(join(t.home("ro"), "readme.bin"), "read me\n");
    await mkdir(join(t.home("box"), "pub"), { recursive: true });
    await writeFile(join(t.home("box"), "pub", "readme.bin"), "read me\n");
    out = await mkdtemp(join(tmpdir(), "berth-fzl-"));
    wrapperDir = join(out, "bin");
    await writeRetryWrapper(wrapperDir);
  });

  after(async () => {
    if (why) return;
    await t.close();
    await rm(out, { recursive: true, force: true });
  });

  async function fz(name: string, user: string, env: Record<string, string> = {}, mode = "passive"): Promise<FzRun> {
    const dir = join(out, name);
    const started = Date.now();
    const r = await fzCheck(["127.0.0.1", String(t.port), user, `${user}-pw`, "plain", mode], dir, {
      timeoutMs: 170_000,
      env: {
        FZ_TIMEOUT: "60",
        FZ_SIZE: String(UPLOAD),
        FZ_ACTIVE_PORTS: ACTIVE_PORTS,
        PATH: `${wrapperDir}:${process.env.PATH ?? ""}`,
        ...env,
      },
    });
    const elapsedMs = Date.now() - started;
    const read = (f: string): Promise<string> => readFile(join(dir, f), "utf8").catch(() => "");
    const transcript = (await read("transcript.txt")).split("\n");
    const log = (await read("filezilla.log")).split("\n");
    return {
      verdict: r.stdout.trim().split("\n").at(-1) ?? "",
      code: r.code,
      elapsedMs,
      queue: transcript.filter((l) => l.startsWith("2 ")).map((l) => l.slice(2)),
      listing: log.map((l) => /\d+ \d+ Listing: (.*)$/.exec(l)?.[1]).filter((l): l is string => l !== undefined),
      queueDone: existsSync(join(dir, "queue-done")),
      profile: await read("home/.config/filezilla/filezilla.xml"),
      detail: `${describeRun(r)}\n--- queue connection\n${transcript.filter((l) => l.startsWith("2 ")).join("\n")}`,
    };
  }

  /** The run failed only because the upload failed: FileZilla finished its queue, in bounded time,
   * with no dialog and no timeout (the check script's other reasons). */
  function assertGaveUp(run: FzRun): void {
    assert.equal(run.code, 1, run.detail);
    assert.match(run.verdict, /^FAIL fz-check .* connect\+list=ok upload\+download=FAILED reasons: round-trip file missing or differs \([^)]*\);Error: lines in FileZilla log screenshot=/, run.detail);
    assert.ok(run.queueDone, `FileZilla finished its queue\n${run.detail}`);
    assert.ok(run.elapsedMs < 60_000, `FileZilla gave up after ${run.elapsedMs} ms`);
    assert.match(run.profile, new RegExp(`name="Reconnect count">${RETRIES}<`), "FileZilla ran with its default retries");
  }

  /** Each STOR of the queue connection with the lines that answer it, up to the next command. */
  function storAttempts(run: FzRun): string[][] {
    const attempts: string[][] = [];
    let current: string[] | null = null;
    for (const line of run.queue) {
      if (line.startsWith("Command: STOR ")) attempts.push((current = [line]));
      else if (line.startsWith("Command: ") || line.startsWith("Status: ")) current = null;
      else current?.push(line);
    }
    return attempts;
  }

  /** One STOR answered by `reply` alone (no 150), and FileZilla's verdict: a critical error, the
   * kind it does not retry. Before it, FileZilla may log that the server closed the data
   * connection it had started writing to (EPIPE). */
  function assertRefused(attempt: string[], reply: RegExp, run: FzRun): void {
    const replies = attempt.filter((l) => l.startsWith("Response: "));
    assert.equal(replies.length, 1, run.detail);
    assert.match(replies[0]!, reply, run.detail);
    assert.equal(attempt.at(-1), "Error: Critical file transfer error", run.detail);
  }

  function uploads(user: string): Record<string, unknown>[] {
    return t.logs.filter((l) => l.event === "transfer" && l.user === user && l.direction === "upload");
  }

  it("an upload at the quota: 552 before 150, a critical error, no retry, nothing stored", { timeout: 180_000 }, async (ctx) => {
    if (why) {
      ctx.skip(why);
      return;
    }
    const run = await fz("quota-full", "full");
    assertGaveUp(run);
    const attempts = storAttempts(run);
    assert.equal(attempts.length, 1, `one STOR, no retry\n${run.detail}`);
    assertRefused(attempts[0]!, /^Response: 552 Quota exceeded: 4 KiB of 4 KiB used$/, run);
    // The server read nothing and kept nothing.
    assert.deepEqual(uploads("full").map((l) => l.bytes), [0]);
    assert.deepEqual(await readdir(t.home("full")), ["filler.bin"]);
  });

  it("an upload crossing the quota: 552 after 150, retried only as often as FileZilla's retry count", { timeout: 180_000 }, async (ctx) => {
    if (why) {
      ctx.skip(why);
      return;
    }
    const run = await fz("quota-midway", "half");
    assertGaveUp(run);
    const attempts = storAttempts(run);
    assert.equal(attempts.length, 1 + RETRIES, `the first try and ${RETRIES} retries\n${run.detail}`);
    for (const a of attempts) {
      const replies = a.filter((l) => l.startsWith("Response: "));
      assert.match(replies[0] ?? "", /^Response: 150 /, run.detail);
      assert.match(replies[1] ?? "", /^Response: 552 Quota exceeded: .*upload removed$/, run.detail);
      assert.ok(a.includes("Error: File transfer failed"), `a plain (retryable) failure\n${run.detail}`);
    }
    assert.equal(uploads("half").length, 1 + RETRIES);
    assert.deepEqual(await readdir(t.home("half")).catch(() => []), []);
  });

  it("an upload without the upload permission: 550 with the reason; MLSD perm facts reach FileZilla", { timeout: 180_000 }, async (ctx) => {
    if (why) {
      ctx.skip(why);
      return;
    }
    const run = await fz("perms-ro", "ro");
    assertGaveUp(run);
    const attempts = storAttempts(run);
    assert.equal(attempts.length, 1, `one STOR, no retry\n${run.detail}`);
    assertRefused(attempts[0]!, /^Response: 550 Permission denied: no upload permission here$/, run);
    assert.ok(run.listing.some((l) => /^type=file;.*perm=r;.* readme\.bin$/.test(l)), run.listing.join("\n"));
    assert.ok(run.listing.some((l) => /^type=dir;.*perm=el;.* sub$/.test(l)), run.listing.join("\n"));
    assert.deepEqual((await readdir(t.home("ro"))).sort(), ["readme.bin", "sub"]);
    assert.equal(uploads("ro").length, 0, "refused before any transfer started");
  });

  it("an upload into a directory whose override forbids it (active mode): 550 with the reason", { timeout: 180_000 }, async (ctx) => {
    if (why) {
      ctx.skip(why);
      return;
    }
    const run = await fz("perms-dir", "box", { FZ_REMOTE_DIR: "/pub" }, "active");
    assertGaveUp(run);
    const attempts = storAttempts(run);
    assert.equal(attempts.length, 1, `one STOR, no retry\n${run.detail}`);
    assertRefused(attempts[0]!, /^Response: 550 Permission denied: no upload permission here$/, run);
    assert.ok(run.queue.includes("Command: CWD /pub"), run.detail);
    assert.ok(run.listing.some((l) => /^type=file;.*perm=r;.* readme\.bin$/.test(l)), run.listing.join("\n"));
    assert.deepEqual(await readdir(join(t.home("box"), "pub")), ["readme.bin"]);
  });
});
