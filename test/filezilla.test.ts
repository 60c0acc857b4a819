/**
 * The real FileZilla client, headless under Xvfb, against a real berth: connect, list, upload a
 * file and download it back, in plain FTP, explicit FTPS (FTPES) and implicit FTPS, passive and
 * active. The check script decides from FileZilla's own log; a FileZilla dialog (an unknown
 * certificate, a data connection that did not resume its TLS session) is a failure. Skips, saying
 * why, when FileZilla, Xvfb or the check script is not there. The runs go in parallel.
 */
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { describeRun, fzCheck, which, FZ_CHECK_SCRIPT } from "./helpers/exec.ts";
import { startTestServer, type TestServer } from "./helpers/server.ts";

const SCRIPT = FZ_CHECK_SCRIPT;

function missing(): string | null {
  if (!existsSync(SCRIPT)) return `the FileZilla check script is not at ${SCRIPT} (set FZ_CHECK to its path)`;
  for (const bin of ["filezilla", "xdotool", "import", "openssl", "python3"]) {
    if (!which(bin)) return `${bin} is not installed`;
  }
  if (!which("Xvfb") && !which("xvfb-run")) return "Xvfb is not installed";
  return null;
}

const why = missing();

/** A passive range of its own, wide enough for several FileZilla sessions at once. */
function passiveRange(): string {
  // Below the ephemeral range (32768+) and above the other tests' ranges (23000-28999).
  const base = 29000 + (process.pid % 90) * 40;
  return `${base}-${base + 39}`;
}

const RUNS = [
  { protocol: "plain", mode: "passive" },
  { protocol: "plain", mode: "active" },
  { protocol: "ftpes", mode: "passive" },
  { protocol: "ftpes", mode: "active" },
  { protocol: "ftps", mode: "passive" },
  { protocol: "ftps", mode: "active" },
] as const;

describe("FileZilla (headless)", { concurrency: true }, () => {
  let t: TestServer;
  let out: string;

  before(async () => {
    if (why) return;
    t = await startTestServer({ config: { tls: { mode: "both", implicitPort: 0 }, passive: { ports: passiveRange() } } });
    out = await mkdtemp(join(tmpdir(), "berth-fz-"));
  });

  after(async () => {
    if (why) return;
    await t.close();
    await rm(out, { recursive: true, force: true });
  });

  RUNS.forEach(({ protocol, mode }, i) => {
    it(`${protocol} ${mode}: connect, list, upload, download`, { timeout: 180_000 }, async (ctx) => {
      if (why) {
        ctx.skip(why);
        return;
      }
      const port = protocol === "ftps" ? t.implicitPort : t.port;
      assert.ok(port, "the server listens for this protocol");
      const low = 22200 + i * 15; // each run listens on its own ports in active mode
      const r = await fzCheck(["127.0.0.1", String(port), "alice", "alice-pw", protocol, mode], join(out, `${protocol}-${mode}`), {
        timeoutMs: 170_000,
        // Plain uploads past 4 MiB go on a thread of their own (data/receive.ts): 9 MB there.
        env: { FZ_ACTIVE_PORTS: `${low}-${low + 14}`, FZ_TIMEOUT: "60", FZ_SIZE: protocol === "plain" ? "9000000" : "300000" },
      });
      const verdict = r.stdout.trim().split("\n").at(-1) ?? "";
      assert.equal(r.code, 0, `fz-check ${protocol} ${mode}: ${verdict}\n${describeRun(r)}`);
      assert.match(verdict, /^PASS fz-check/);
      if (protocol !== "plain") {
        assert.match(r.stdout, /TLS Session resumed/, "data connections resumed the control connection's TLS session");
      }
      assert.equal(t.logs.filter((l) => l.event === "tls-data-refused").length, 0);
    });
  });
});
