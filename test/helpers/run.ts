/**
 * Glue for protocol tests: run a body against a fresh server and always tear it down (the teardown
 * fails the test on a leaked session, port or descriptor), and log in with basic-ftp.
 */
import { Readable, Writable } from "node:stream";
import { Client } from "basic-ftp";
import { RawClient } from "./raw.ts";
import { startTestServer, type TestServer, type TestServerOptions } from "./server.ts";

/** Runs `body` against a new test server; the server is closed (and checked for leaks) after. */
export async function withServer(body: (t: TestServer) => Promise<void>, opts: TestServerOptions = {}): Promise<void> {
  const t = await startTestServer(opts);
  let failure: unknown = null;
  try {
    await body(t);
  } catch (err) {
    failure = err;
  }
  try {
    await t.close();
  } catch (err) {
    failure ??= err;
  }
  if (failure !== null) throw failure;
}

/** A basic-ftp client logged in as `user` (password `<user>-pw`). */
export async function ftpLogin(t: TestServer, user = "alice"): Promise<Client> {
  const client = new Client(5000);
  await client.access({ host: "127.0.0.1", port: t.port, user, password: `${user}-pw` });
  return client;
}

/** A raw client logged in as `user`. */
export async function rawLogin(t: TestServer, user = "alice"): Promise<RawClient> {
  const raw = await RawClient.connect(t.port);
  await raw.login(user);
  return raw;
}

/** Downloads `path` into memory. */
export async function download(client: Client, path: string, startAt = 0): Promise<Buffer> {
  const parts: Buffer[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      parts.push(chunk);
      cb();
    },
  });
  await client.downloadTo(sink, path, startAt);
  return Buffer.concat(parts);
}

/** Uploads `data` to `path`. */
export async function upload(client: Client, data: Buffer | string, path: string): Promise<void> {
  await client.uploadFrom(Readable.from([Buffer.from(data)]), path);
}

/** Deterministic pseudo-random bytes (a binary payload with every byte value). */
export function payload(size: number, seed = 1): Buffer {
  const b = Buffer.allocUnsafe(size);
  let x = seed;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}
