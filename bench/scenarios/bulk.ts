/**
 * Single-stream transfers: RETR and STOR of one big file (1 GiB; 256 MiB with --quick), plain and
 * over explicit FTPS. Figures: MB/s (10^6 bytes per second) and server CPU seconds per GiB moved;
 * each case runs in two passes over the servers (the second in reverse order; one with --quick),
 * and the faster run is kept. Right before each STOR the
 * bench writes and removes a file of the upload's size (fixtures.ts primeMemory), so that every
 * server's upload meets page-cache memory in the same state.
 */
import path from "node:path";
import { primeMemory, removeUpload, warmFile } from "../lib/fixtures.ts";
import { FtpClient } from "../lib/ftp.ts";
import { withCpu } from "../lib/proc.ts";
import { quiesce } from "../lib/quiesce.ts";
import type { Measurement, Scenario, ScenarioContext } from "../lib/types.ts";

const GIB = 1 << 30;
const UPLOAD_CHUNK = Buffer.alloc(1 << 20, 0x5a);

async function once(ctx: ScenarioContext, secure: boolean, dir: "RETR" | "STOR"): Promise<Measurement> {
  const { server, fixtures } = ctx;
  const name = secure ? `${dir} TLS` : `${dir} plain`;
  const size = fixtures.big.size;
  const upload = `${fixtures.upDir}/bulk-${server.spec.port}.bin`;
  const c = await FtpClient.connect({
    host: "127.0.0.1",
    port: server.spec.port,
    timeoutMs: 30_000,
    transferTimeoutMs: 180_000,
    tlsDataAfter150: server.spec.tlsDataAfter150,
  });
  try {
    if (secure) await c.secure();
    await c.login("bench", "bench");
    await c.cmd("TYPE I", [200]);
    if (dir === "RETR") warmFile(path.join(fixtures.root, fixtures.big.name));
    await quiesce(500);
    // After quiesce: its pause must not outlast the ~2 s after which freed pages go back to the host.
    if (dir === "STOR") primeMemory(path.join(fixtures.root, fixtures.upDir), size + (64 << 20));
    const m = await withCpu(server.pid, () =>
      dir === "RETR" ? c.retr(fixtures.big.name) : c.stor(upload, size, UPLOAD_CHUNK),
    );
    if (m.result !== size) throw new Error(`${dir} moved ${m.result} bytes, not ${size}`);
    return {
      scenario: "",
      case: name,
      server: server.spec.name,
      value: size / 1e6 / m.seconds,
      serverCpu: m.serverCpu,
      clientCpu: m.clientCpu,
      seconds: m.seconds,
      extra: { cpuPerGiB: (m.serverCpu * GIB) / size },
    };
  } finally {
    c.close();
    if (dir === "STOR") removeUpload(path.join(fixtures.root, upload));
  }
}

async function runCases(ctx: ScenarioContext, secure: boolean, id: string): Promise<Measurement[]> {
  const out: Measurement[] = [];
  for (const dir of ["RETR", "STOR"] as const) {
    try {
      out.push({ ...(await once(ctx, secure, dir)), scenario: id });
    } catch (err) {
      const note = err instanceof Error ? err.message : String(err);
      ctx.log(`  ${dir} failed: ${note}`);
      out.push({ scenario: id, case: secure ? `${dir} TLS` : `${dir} plain`, server: ctx.server.spec.name, value: null, note });
    }
  }
  return out;
}

const common = {
  unit: "MB/s",
  higherIsBetter: true,
  passes: 2,
  columns: [
    { key: "cpuPerGiB", header: "server CPU s/GiB" },
  ],
} as const;

/** Plain single-stream transfers. */
export const bulk: Scenario = {
  ...common,
  id: "bulk",
  title: "Single-stream RETR and STOR, plain",
  mode: "off",
  description: "One session, TYPE I, passive mode; the faster of two passes over the servers (the second in reverse order); the file is in the page cache before RETR; STOR writes to the server's disk (page cache), right after the bench has written and removed a file of the same size (on this VM, memory freed more than about 2 s earlier goes back to the host and is slow to touch again; see the analysis).",
  run: (ctx) => runCases(ctx, false, "bulk"),
};

/** Single-stream transfers over explicit FTPS (AUTH TLS, PROT P). */
export const bulkTls: Scenario = {
  ...common,
  id: "bulk-tls",
  title: "Single-stream RETR and STOR, explicit FTPS",
  mode: "explicit",
  description: "AUTH TLS, PBSZ 0, PROT P; the faster of two passes, as in the plain case; the data connection resumes the control connection's TLS session; same certificate (RSA 2048) for every server; STOR is primed as in the plain case.",
  run: (ctx) => runCases(ctx, true, "bulk-tls"),
};
