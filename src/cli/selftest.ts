/**
 * `berth selftest [--host H] [--port P]`: checks a running server the way a client sees it. Adds a
 * throw-away user (the server picks up the users file change), then through basic-ftp: login
 * (TLS when tls.mode is on), EPSV and PASV listings, upload, download, resumed download; removes
 * the user and its home, prints a pass/fail table and the `docker run -p` mapping the config needs.
 */
import { randomBytes } from "node:crypto";
import { isIP } from "node:net";
import { existsSync } from "node:fs";
import { rm } from "node:fs/promises";
import { Readable, Writable } from "node:stream";
import { Client, enterPassiveModeIPv4, enterPassiveModeIPv6 } from "basic-ftp";
import { parsePortRange, type Config } from "../config/schema.ts";
import { unmapIPv4 } from "../data/address.ts";
import { CliError, type ParsedCommand } from "./args.ts";
import { configFor, storeFor, type CliContext } from "./commands.ts";

/** One line of the result table; a step skipped counts as passed. */
interface Step {
  readonly name: string;
  ok: boolean;
  skipped?: boolean;
  detail: string;
}

/** Collects a download into memory. */
function sink(): { stream: Writable; data: () => Buffer } {
  const parts: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, done) {
      parts.push(chunk);
      done();
    },
  });
  return { stream, data: () => Buffer.concat(parts) };
}

/** The `docker run` port mapping and passive address the config needs. */
export function dockerMapping(config: Config): string {
  const range = parsePortRange(config.passive.ports);
  const r = range ? (range.min === range.max ? `${range.min}` : `${range.min}-${range.max}`) : config.passive.ports;
  const parts = [];
  // Port 0 is a free port picked at each start: no mapping can publish it ("-p 0:0" would give the
  // host a random port to a container port that is not the one listening), so a fixed one is asked for.
  const unfixed: string[] = [];
  const publish = (port: number, key: string, variable: string, example: number): void => {
    if (port !== 0) return void parts.push(`-p ${port}:${port}`);
    parts.push("-p PORT:PORT");
    unfixed.push(`${key} is 0, a free port at each start: set a fixed one, e.g. ${variable}=${example}, and publish it`);
  };
  if (config.tls.mode !== "implicit") publish(config.listen.port, "listen.port", "BERTH_LISTEN_PORT", 2121);
  if (config.tls.mode === "implicit" || config.tls.mode === "both") publish(config.tls.implicitPort, "tls.implicitPort", "BERTH_TLS_IMPLICIT_PORT", 990);
  parts.push(`-p ${r}:${r}`);
  parts.push(`-e BERTH_PASSIVE_ADDRESS=${config.passive.address || "<address clients use to reach the host>"}`);
  return `docker run ${parts.join(" ")} ...${unfixed.map((u) => ` (${u})`).join("")}`;
}

/** Where to log in without --host: passive.address, where clients from outside reach the server;
 * else the one address listen.host names (nothing listens on 127.0.0.1 then), or 127.0.0.1 for a
 * wildcard, as the container's health check picks. */
function defaultHost(config: Config): string {
  if (config.passive.address !== "") return config.passive.address;
  const listen = config.listen.host;
  return listen === "::" || listen === "0.0.0.0" ? "127.0.0.1" : listen;
}

/** The port to test: --port when given (a usage error unless 1..65535), else `key`'s value. */
function selftestPort(given: string | true | undefined, configured: number, key: string): number {
  if (typeof given === "string") {
    const port = /^\d{1,5}$/.test(given) ? Number(given) : 0;
    if (port < 1 || port > 65535) throw new CliError(`--port ${given} is not a port number (1..65535)`, 2);
    return port;
  }
  // listen.port 0 picks a free port at start: which one, only the running server knows.
  if (configured === 0) throw new CliError(`selftest needs the server's port (${key} is 0; pass --port N)`, 2);
  return configured;
}

/** Runs the self-test; 0 when every step passed, 1 otherwise. */
export async function runSelftest(cmd: ParsedCommand, ctx: CliContext): Promise<number> {
  const config = configFor(cmd, ctx);
  const host = typeof cmd.options.host === "string" ? cmd.options.host : defaultHost(config);
  const implicit = config.tls.mode === "implicit";
  const port = implicit
    ? selftestPort(cmd.options.port, config.tls.implicitPort, "tls.implicitPort")
    : selftestPort(cmd.options.port, config.listen.port, "listen.port");
  const store = storeFor(config, ctx.cwd);
  // A server that has run with this config made its users file (a first start's demo user, or
  // BERTH_USER). Without one, no server would see the temporary user, and adding it would make
  // the file: left empty once the user is removed, it would read as a file whose users were all
  // deleted, and the first start would make no demo user.
  if (!existsSync(store.file)) {
    throw new CliError(`selftest: there is no users file ${store.file}: has berth serve run with this config? (start it first)`, 1);
  }
  const user = `selftest-${randomBytes(4).toString("hex")}`;
  const password = randomBytes(18).toString("base64url");
  const added = await store.add(user, password);
  const steps: Step[] = [];
  const step = async (name: string, body: () => Promise<string | undefined>): Promise<boolean> => {
    const s: Step = { name, ok: false, detail: "" };
    steps.push(s);
    try {
      s.detail = (await body()) ?? "";
      s.ok = true;
    } catch (err) {
      s.detail = err instanceof Error ? err.message.split("\n")[0] ?? err.name : String(err);
    }
    return s.ok;
  };
  const client = new Client(15_000);
  const payload = randomBytes(256 * 1024);
  let removed: Promise<void> | undefined;
  // Why the temporary user is still in the users file, when it is (the file locked by another
  // command all along, or made unusable meanwhile): said, or it would stay there unknown.
  let left: string | null = null;
  const removeUser = (): Promise<void> =>
    (removed ??= (async () => {
      client.close();
      await store.del(user).catch((err: unknown) => {
        left = err instanceof Error ? err.message.split("\n")[0] ?? err.name : String(err);
      });
      await rm(added.home, { recursive: true, force: true });
      if (left !== null) ctx.stderr.write(`berth: selftest: cannot remove the temporary user "${user}" (${left}); remove it with: ${ctx.command} user del ${user}\n`);
    })());
  // Ctrl-C while a step waits (a PASV that hangs is what the test is for) must not leave the
  // temporary user and its home behind: they go first, then the process ends as the signal meant.
  const onSignal = (signal: NodeJS.Signals): void => {
    void removeUser().finally(() => {
      process.off("SIGINT", onSignal);
      process.off("SIGTERM", onSignal);
      process.kill(process.pid, signal);
    });
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  try {
    // The server re-reads a changed users file at most once a second.
    await new Promise((r) => setTimeout(r, 1100));
    const secure = implicit ? "implicit" : config.tls.mode === "off" ? false : true;
    const hostPort = isIP(host) === 6 ? `[${host}]:${port}` : `${host}:${port}`;
    const loggedIn = await step(`login on ${hostPort}${secure ? " (TLS)" : ""}`, async () => {
      await client.access({ host, port, user, password, secure, secureOptions: { rejectUnauthorized: false } });
      return secure ? "TLS" : undefined;
    });
    if (loggedIn) {
      await step("EPSV listing", async () => {
        client.prepareTransfer = enterPassiveModeIPv6;
        return `${(await client.list()).length} entries`;
      });
      // PASV is for IPv4 only (RFC 2428): over IPv6 (a --host of ::1, a name that resolves to an
      // IPv6 address first) the server answers it 522, as it must, and clients use EPSV.
      if (isIP(unmapIPv4(client.ftp.socket.remoteAddress ?? "")) === 6) {
        steps.push({ name: "PASV listing", ok: true, skipped: true, detail: "IPv4 only (RFC 2428): the control connection is IPv6, where clients use EPSV" });
      } else {
        await step("PASV listing", async () => {
          client.prepareTransfer = enterPassiveModeIPv4;
          await client.list();
          return "data connection to the announced address";
        });
      }
      client.prepareTransfer = enterPassiveModeIPv6;
      await step("upload 256 kB", async () => {
        await client.uploadFrom(Readable.from([payload]), "selftest.bin");
        return undefined;
      });
      await step("download, identical", async () => {
        const s = sink();
        await client.downloadTo(s.stream, "selftest.bin");
        if (!s.data().equals(payload)) throw new Error("downloaded bytes differ");
        return undefined;
      });
      await step("resumed download (REST)", async () => {
        const s = sink();
        await client.downloadTo(s.stream, "selftest.bin", 100_000);
        if (!s.data().equals(payload.subarray(100_000))) throw new Error("resumed bytes differ");
        return "from byte 100000";
      });
    }
  } finally {
    await removeUser();
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  }
  const width = Math.max(...steps.map((s) => s.name.length));
  for (const s of steps) ctx.stdout.write(`${s.skipped === true ? "SKIP" : s.ok ? "PASS" : "FAIL"}  ${s.name.padEnd(width)}  ${s.detail}\n`);
  ctx.stdout.write(`\nin a container, this config needs: ${dockerMapping(config)}\n`);
  const failed = steps.filter((s) => !s.ok).length;
  ctx.stdout.write(failed === 0 ? "selftest: all passed\n" : `selftest: ${failed} failed\n`);
  return failed === 0 && left === null ? 0 : 1;
}
