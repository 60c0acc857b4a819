/**
 * startTestServer(): a real berth on 127.0.0.1:0 with a temp root, a tiny passive range, a real
 * user store (bcrypt cost 4 for speed) and a teardown that checks nothing leaked.
 */
import { mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import pino from "pino";
import type { Defender } from "../../src/auth/defender.ts";
import { UserStore, type UserChanges } from "../../src/auth/store.ts";
import { DEFAULTS, type Config } from "../../src/config/schema.ts";
import type { TlsProvider } from "../../src/data/tls.ts";
import type { FsFactory } from "../../src/protocol/context.ts";
import { startServer, type BerthServer } from "../../src/server.ts";

/** Deep partial of Config for overrides. */
export type ConfigPatch = { [K in keyof Config]?: Partial<Config[K]> };

/** Options of startTestServer. */
export interface TestServerOptions {
  readonly config?: ConfigPatch;
  readonly openFs?: FsFactory;
  /** Default: the server's own, from the config (which this helper sets to a high threshold). */
  readonly defender?: Defender;
  readonly tls?: TlsProvider | null;
  /** Level of the server's logger (default debug: every command is logged). */
  readonly logLevel?: "debug" | "info" | "warn";
  /** Extra users besides alice (rw) and bob (read-only), with any UserChanges (perms, dirs, limits). */
  readonly users?: readonly ({ name: string; password: string } & UserChanges)[];
}

/** A running test server and what a test needs to reach it. */
export interface TestServer {
  readonly server: BerthServer;
  readonly port: number;
  readonly implicitPort: number | null;
  readonly root: string;
  readonly dataRoot: string;
  readonly config: Config;
  readonly store: UserStore;
  /** JSON log lines the server wrote, parsed. */
  readonly logs: Record<string, unknown>[];
  /** The same lines as written (a key written twice shows here; parsing keeps one). */
  readonly logLines: string[];
  /** The home directory of a user. */
  home(name: string): string;
  /** Shuts down and checks: no session, no passive port and no file descriptor left. */
  close(): Promise<void>;
}

let nextRange = 0;

/** Passive ports of the tests: windows of WINDOW_PORTS from PORTS_BASE, below the kernel's
 * ephemeral range (32768+), where outgoing client sockets would take ports from under a listener,
 * and clear of FileZilla's active-mode ports (22200-22299). */
const PORTS_BASE = 23000;
const WINDOW_PORTS = 50;
const WINDOWS = 180;
let window: number | null = null;

/** A passive range of `size` ports (at most 5) no other test server uses: of this process (its
 * ranges take turns in its window) or of another (test files run in parallel, and so may the tests
 * of another checkout on the machine): a test that fills its range on purpose then never takes the
 * ports of another's PASV. */
export function freshRange(size = 5): string {
  const base = PORTS_BASE + claimWindow() * WINDOW_PORTS + (nextRange++ % 10) * 5;
  return `${base}-${base + Math.min(Math.max(size, 1), 5) - 1}`;
}

/** This process's window of ports, claimed in a directory every test process of the machine
 * shares: a file per window holds its claimant's pid, and goes when that process exits; one whose
 * process is gone (killed) is taken over. With every window claimed, one is shared, as before. */
function claimWindow(): number {
  if (window !== null) return window;
  const dir = join(tmpdir(), "berth-test-ports");
  mkdirSync(dir, { recursive: true });
  const start = (process.pid * 37) % WINDOWS;
  for (let i = 0; i < WINDOWS; i++) {
    const w = (start + i) % WINDOWS;
    const file = join(dir, String(w));
    if (!claim(file)) continue;
    window = w;
    process.once("exit", () => {
      try {
        if (readFileSync(file, "utf8") === String(process.pid)) unlinkSync(file);
      } catch {
        // gone already
      }
    });
    return w;
  }
  window = start;
  return start;
}

/** Takes the claim file `file`: true when it now holds this process's pid. */
function claim(file: string): boolean {
  try {
    writeFileSync(file, String(process.pid), { flag: "wx" });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
  }
  let owner: number;
  try {
    owner = Number(readFileSync(file, "utf8"));
  } catch {
    return false; // released meanwhile: another window will do
  }
  // Our own pid: a killed process that had it left the file, and this process claims nothing twice.
  if (owner === process.pid) return true;
  if (alive(owner)) return false;
  try {
    unlinkSync(file);
    writeFileSync(file, String(process.pid), { flag: "wx" });
    return readFileSync(file, "utf8") === String(process.pid);
  } catch {
    return false; // another process took it over first
  }
}

/** Whether a process of that pid runs (EPERM: it does, as another user's). */
function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}

/** Merges a patch over defaults. */
export function makeConfig(root: string, patch: ConfigPatch = {}): Config {
  const c = structuredClone(DEFAULTS) as unknown as Record<string, Record<string, unknown>>;
  for (const [k, v] of Object.entries(patch)) c[k] = { ...(c[k] ?? {}), ...(v as object) };
  const cfg = c as unknown as Config;
  return {
    ...cfg,
    listen: { host: "127.0.0.1", port: 0, ...patch.listen },
    passive: { ...cfg.passive, ports: patch.passive?.ports ?? freshRange() },
    users: { ...cfg.users, file: join(root, "users", "users.json"), bcryptCost: 4 },
    storage: { ...cfg.storage, root: join(root, "data") },
    log: { level: "debug", pretty: "never", xferlog: "", ...patch.log },
    limits: { ...cfg.limits, failedLoginDelay: 0.05, ...patch.limits },
    // Tests log in wrongly on purpose from 127.0.0.1 all the time: no ban unless a test asks for one.
    defender: { ...cfg.defender, threshold: 1_000_000_000, ...patch.defender },
  };
}

/** Starts berth for one test. Users: alice/alice-pw (read-write), bob/bob-pw (read-only). */
export async function startTestServer(opts: TestServerOptions = {}): Promise<TestServer> {
  const fdsBefore = openFds();
  const root = await mkdtemp(join(tmpdir(), "berth-test-"));
  const config = makeConfig(root, opts.config);
  const logs: Record<string, unknown>[] = [];
  const logLines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString().split("\n")) {
        if (!line) continue;
        logLines.push(line);
        logs.push(JSON.parse(line) as Record<string, unknown>);
      }
      cb();
    },
  });
  const logger = pino({ level: opts.logLevel ?? "debug" }, sink);
  const store = new UserStore({ file: config.users.file, storageRoot: config.storage.root, bcryptCost: 4 });
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    await store.add("alice", "alice-pw", {});
    await store.add("bob", "bob-pw", { readOnly: true });
    for (const { name, password, ...changes } of opts.users ?? []) await store.add(name, password, changes);
    server = await startServer({
      config,
      logger,
      users: store,
      ...(opts.defender ? { defender: opts.defender } : {}),
      ...(opts.openFs ? { openFs: opts.openFs } : {}),
      ...(opts.tls !== undefined ? { tls: opts.tls } : {}),
    });
  } catch (err) {
    // A server that cannot start (a test of a bad configuration) leaves no directory behind.
    await rm(root, { recursive: true, force: true });
    throw err;
  }
  return {
    server,
    port: server.port ?? 0,
    implicitPort: server.implicitPort,
    root,
    dataRoot: config.storage.root,
    config,
    store,
    logs,
    logLines,
    home: (name) => join(config.storage.root, name),
    async close() {
      try {
        await server.shutdown(2000);
      } finally {
        // The directory goes even when the shutdown fails (the failure is the test's to see).
        await rm(root, { recursive: true, force: true });
      }
      await waitFor(() => server.sessions.size === 0 && server.context.pool.used === 0, 3000);
      await waitFor(() => openFds() <= fdsBefore, 3000);
      const fds = openFds() - fdsBefore;
      const leftover = { sessions: server.sessions.size, ports: server.context.pool.used, fds: Math.max(fds, 0) };
      if (leftover.sessions !== 0 || leftover.ports !== 0 || leftover.fds !== 0) {
        throw new Error(`leak after test: ${JSON.stringify(leftover)}`);
      }
    },
  };
}

/** Open file descriptors of this process (sockets and files alike); -1 where /proc is missing. */
export function openFds(): number {
  try {
    return readdirSync("/proc/self/fd").length;
  } catch {
    return -1;
  }
}

/** Polls a condition (test helper only) until true or the time is up. */
export async function waitFor(cond: () => boolean, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) return false;
    await new Promise((r) => setTimeout(r, 10));
  }
  return true;
}
