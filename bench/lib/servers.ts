/**
 * Starting and stopping the servers under test, all on 127.0.0.1 with the same user (bench/bench),
 * the same jail (the bench root) and passive ranges of the same size. berth runs as its own process
 * from this checkout; each peer through its start/stop script in ../shared/tools/peers/.
 */
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync, closeSync } from "node:fs";
import { connect } from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { UserStore } from "../../src/auth/store.ts";

/** The repository root. */
export const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
/** Where the peer scripts live, relative to the repository root. */
export const PEERS_REL = "../shared/tools/peers";
/** Absolute path of the peer scripts: `FTPB_PEERS` when set (a clone that is not next to
 * `shared/`), otherwise PEERS_REL from the repository root. */
export const PEERS_DIR = process.env.FTPB_PEERS ? path.resolve(process.env.FTPB_PEERS) : path.resolve(REPO, PEERS_REL);

/** TLS mode a server is started in. */
export type TlsMode = "off" | "explicit";

/** A server under test. */
export interface ServerSpec {
  /** Name in tables ("berth", "vsftpd", …). */
  readonly name: string;
  /** Peer script file name, or null for berth. */
  readonly script: string | null;
  /** Control port. */
  readonly port: number;
  readonly pasvMin: number;
  readonly pasvMax: number;
  /** One process holds every session (RSS at 10,000 sessions is measured only for these). */
  readonly singleProcess: boolean;
  /** Starts the data-connection TLS handshake only after 150 (the peer resets an earlier one). */
  readonly tlsDataAfter150: boolean;
  /** Supports MLSD. */
  readonly mlsd: boolean;
  /** Most sessions the peer's own script lets it hold (its configured connection cap). */
  readonly maxSessions: number;
  /** berth only: keep the login cache off (to show what bcrypt alone costs). */
  readonly noLoginCache?: boolean;
  /** Scenarios to run on this server; all when undefined. */
  readonly scenarios?: readonly string[];
  /** The sessions scenario's client counts on this server, of those the run has; all when undefined. */
  readonly clientCounts?: readonly number[];
}

/** A started server. */
export interface RunningServer {
  readonly spec: ServerSpec;
  readonly mode: TlsMode;
  /** Root of the server's process tree (what CPU and memory are read from). */
  readonly pid: number;
  stop(): Promise<void>;
}

const PASV_BLOCK = 1500;

/** Every server the bench knows, in table order. */
export function allServers(): ServerSpec[] {
  const mk = (
    i: number,
    name: string,
    script: string | null,
    extra: Partial<ServerSpec> = {},
  ): ServerSpec => ({
    name,
    script,
    port: 2150 + i,
    pasvMin: 20000 + i * PASV_BLOCK,
    pasvMax: 20000 + i * PASV_BLOCK + PASV_BLOCK - 1,
    singleProcess: false,
    tlsDataAfter150: false,
    mlsd: true,
    maxSessions: 100_000,
    ...extra,
  });
  return [
    mk(0, "berth", null, { singleProcess: true }),
    mk(1, "vsftpd", "vsftpd.sh", { mlsd: false }),
    mk(2, "pure-ftpd", "pureftpd.sh", { maxSessions: 2000 }),
    mk(3, "proftpd", "proftpd.sh", { maxSessions: 2000 }),
    // pyftpdlib resets a TLS handshake that starts before its 150 reply (DESIGN pitfalls);
    // its script caps sockets (control + data + listeners) at 4,000.
    mk(4, "pyftpdlib", "pyftpdlib.sh", { singleProcess: true, tlsDataAfter150: true, maxSessions: 3900 }),
    mk(5, "ftp-srv", "ftpsrv.sh", { singleProcess: true, mlsd: false }),
    // What bcrypt alone costs shows at the fewest clients and at the first target count; its
    // other cases (sessions timing out after 10 s) would add most of a minute to a full run.
    mk(6, "berth (no login cache)", null, { singleProcess: true, noLoginCache: true, scenarios: ["sessions"], clientCounts: [50, 500] }),
  ];
}

/** Fails with a clear message when the peer scripts are missing. */
export function checkPeersDir(): void {
  if (!existsSync(path.join(PEERS_DIR, "common.sh"))) {
    throw new Error(
      `peer scripts not found at ${process.env.FTPB_PEERS ? "FTPB_PEERS" : PEERS_REL}/ (resolved: ${PEERS_DIR}); ` +
        "they start vsftpd, pure-ftpd, proftpd, pyftpdlib and ftp-srv. Set FTPB_PEERS to their directory, or run with --only berth to bench berth alone.",
    );
  }
}

/** Environment of every peer script call. */
function peerEnv(state: string): NodeJS.ProcessEnv {
  return { ...process.env, FTPB_STATE: state };
}

/** Runs a peer script verb to completion; returns its output, throws with its stderr on failure. */
function script(spec: ServerSpec, state: string, args: string[], timeoutMs: number): string {
  const file = path.join(PEERS_DIR, spec.script as string);
  const r = spawnSync("bash", [file, ...args], { env: peerEnv(state), encoding: "utf8", timeout: timeoutMs });
  if (r.status !== 0) {
    const why = r.error ? r.error.message : (r.stderr || r.stdout || "").trim().split("\n").slice(-5).join(" | ");
    throw new Error(`${spec.name}: ${args[0]} failed: ${why}`);
  }
  return r.stdout;
}

/** Installs a peer if missing (Debian packages, or npm for ftp-srv). */
export function installPeer(spec: ServerSpec, state: string): void {
  if (spec.script) script(spec, state, ["install"], 600_000);
}

/** The shared self-signed certificate, made as the peer scripts make it (they reuse it). */
export function ensureCert(state: string): { cert: string; key: string } {
  const dir = path.join(state, "tls");
  const cert = path.join(dir, "cert.pem");
  const key = path.join(dir, "key.pem");
  if (!existsSync(cert) || !existsSync(key)) {
    mkdirSync(dir, { recursive: true });
    const r = spawnSync(
      "openssl",
      ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "60", "-subj", "/CN=127.0.0.1",
        "-addext", "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost", "-keyout", key, "-out", cert],
      { stdio: "ignore", timeout: 60_000 },
    );
    if (r.status !== 0) throw new Error("openssl could not make the bench certificate");
    writeFileSync(path.join(dir, "combined.pem"), readFileSync(key, "utf8") + readFileSync(cert, "utf8"), { mode: 0o644 });
    spawnSync("chmod", ["644", cert, key]);
  }
  return { cert, key };
}

/** Starts a server on loopback in `mode`. */
export async function startServer(spec: ServerSpec, state: string, root: string, mode: TlsMode): Promise<RunningServer> {
  if (spec.script === null) return startBerth(spec, state, root, mode);
  const out = script(spec, state, ["start", String(spec.port), String(spec.pasvMin), String(spec.pasvMax), root, mode], 120_000);
  const pid = Number(out.trim().split("\n").pop());
  if (!Number.isInteger(pid) || pid <= 0) throw new Error(`${spec.name}: start printed no pid (${out.trim()})`);
  await waitListening(spec.port, 15_000);
  return {
    spec,
    mode,
    pid,
    stop: async () => {
      script(spec, state, ["stop"], 60_000);
    },
  };
}

/** berth: a users file with bench/bench (bcrypt cost 10) and a generated config. */
async function startBerth(spec: ServerSpec, state: string, root: string, mode: TlsMode): Promise<RunningServer> {
  // Otherwise the new process would fail to bind while waitListening saw the other one, and that
  // one would be measured.
  if (await listening(spec.port)) {
    throw new Error(`127.0.0.1:${spec.port} is already taken (a berth left running?); stop it first`);
  }
  const dir = path.join(state, spec.noLoginCache ? "berth-nocache" : "berth");
  mkdirSync(dir, { recursive: true });
  const usersFile = path.join(dir, "users.json");
  if (!existsSync(usersFile)) {
    await new UserStore({ file: usersFile, storageRoot: root, bcryptCost: 10 }).add("bench", "bench", { root });
  }
  const { cert, key } = ensureCert(state);
  writeFileSync(
    path.join(dir, "berth.yaml"),
    [
      `listen: { host: "127.0.0.1", port: ${spec.port} }`,
      `passive: { ports: "${spec.pasvMin}-${spec.pasvMax}", address: "" }`,
      `tls: { mode: "${mode}", cert: ${JSON.stringify(cert)}, key: ${JSON.stringify(key)} }`,
      `users:\n  file: "users.json"\n  bcryptCost: 10\n  loginCacheSeconds: ${spec.noLoginCache ? 0 : 60}\n`,
      `storage: { root: ${JSON.stringify(root)} }`,
      `log: { level: "warn", pretty: "never" }`,
      // Peers are measured without a command-rate limit; berth is too.
      `limits: { maxSessions: 19000, maxSessionsPerAddress: 19000, commandRate: 0 }`,
      "",
    ].join("\n"),
  );
  const entry = path.join(REPO, "src/cli/main.ts");
  const args = ["--import", import.meta.resolve("tsx"), ...berthNodeFlags(dir), entry, "serve", "--config", "berth.yaml"];
  const env = { ...process.env };
  const log = openSync(path.join(dir, "berth.log"), "a");
  let child: ChildProcess;
  try {
    child = spawn(process.execPath, args, { cwd: dir, env, stdio: ["ignore", log, log] });
  } finally {
    closeSync(log);
  }
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  try {
    await Promise.race([
      waitListening(spec.port, 20_000),
      exited.then(() => {
        throw new Error(`berth exited at start; see ${path.join(dir, "berth.log")}`);
      }),
    ]);
  } catch (err) {
    child.kill("SIGKILL");
    throw err;
  }
  return {
    spec,
    mode,
    pid: child.pid as number,
    stop: async () => {
      if (child.exitCode !== null) return;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 15_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Extra node flags for berth: BENCH_NODE_FLAGS (space-separated, for trying V8 or Node flags on
 * berth alone, not on the load generator), then a CPU profile when BENCH_PROFILE is set, or JIT
 * symbols for `perf` when BENCH_PERF is. */
function berthNodeFlags(dir: string): string[] {
  const extra = (process.env.BENCH_NODE_FLAGS ?? "").split(" ").filter((f) => f !== "");
  if (process.env.BENCH_PERF) return [...extra, "--perf-basic-prof"];
  if (!process.env.BENCH_PROFILE) return extra;
  const out = path.join(dir, "profiles");
  mkdirSync(out, { recursive: true });
  return [...extra, "--cpu-prof", `--cpu-prof-dir=${out}`];
}

/** Whether something accepts connections on 127.0.0.1:`port` now. */
function listening(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const s = connect({ host: "127.0.0.1", port });
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

/** Resolves once something accepts connections on 127.0.0.1:`port`. */
export async function waitListening(port: number, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (let i = 0; i < 1000 && Date.now() < deadline; i++) {
    if (await listening(port)) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
}

/** Versions of the servers, as installed here. */
export function versions(state: string): Record<string, string> {
  const pkgVersion = (pkg: string): string | null => {
    const r = spawnSync("dpkg-query", ["-W", "-f", "${Version}", pkg], { encoding: "utf8" });
    if (r.status === 0 && r.stdout.trim() !== "") {
      const st = spawnSync("dpkg-query", ["-W", "-f", "${Status}", pkg], { encoding: "utf8" });
      if (st.stdout.includes("installed")) return r.stdout.trim();
    }
    const debs = path.join(state, "debs");
    if (!existsSync(debs)) return null;
    const deb = readdirSync(debs).find((f) => f.startsWith(`${pkg}_`) && f.endsWith(".deb"));
    return deb ? decodeURIComponent(deb.split("_")[1] ?? "") : null;
  };
  const npmVersion = (file: string): string | null => {
    try {
      return (JSON.parse(readFileSync(file, "utf8")) as { version: string }).version;
    } catch {
      return null;
    }
  };
  const out: Record<string, string> = {
    berth: npmVersion(path.join(REPO, "package.json")) ?? "?",
    vsftpd: pkgVersion("vsftpd") ?? "?",
    "pure-ftpd": pkgVersion("pure-ftpd") ?? "?",
    proftpd: pkgVersion("proftpd-core") ?? "?",
    pyftpdlib: pkgVersion("python3-pyftpdlib") ?? "?",
    "ftp-srv": npmVersion(path.join(state, "ftp-srv/node_modules/ftp-srv/package.json")) ?? "?",
  };
  out["berth (no login cache)"] = out.berth as string;
  return out;
}

/** Removes a berth state directory (users file, config, logs). */
export function resetBerthState(state: string): void {
  for (const d of ["berth", "berth-nocache"]) rmSync(path.join(state, d), { recursive: true, force: true });
}
