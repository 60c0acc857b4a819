/**
 * Uploads held open over a raw connection while something else happens (another session renames,
 * removes or stores; someone on the machine moves things), for the quota and undo tests.
 */
import assert from "node:assert/strict";
import { lstatSync, mkdirSync, readdirSync, readlinkSync } from "node:fs";
import { readdir, stat } from "node:fs/promises";
import type { Socket } from "node:net";
import path from "node:path";
import { SPARE_MS } from "../../src/data/passive.ts";
import { dataConnect, type RawClient } from "./raw.ts";
import { rawLogin } from "./run.ts";
import { waitFor, type TestServer } from "./server.ts";

/** The port of a 227 reply. */
export function pasvPort(message: string): number {
  const m = /\(\d+,\d+,\d+,\d+,(\d+),(\d+)\)/.exec(message);
  assert.ok(m, message);
  return Number(m[1]) * 256 + Number(m[2]);
}

/** All passive ports back: also the one a session keeps for a moment after a transfer (SPARE_MS). */
export async function portsFree(t: TestServer): Promise<void> {
  assert.ok(await waitFor(() => t.server.context.pool.used === 0, SPARE_MS + 1000), `ports held: ${t.server.context.pool.used}`);
}

/** The upload temp files in `dir`. */
export async function tempFiles(dir: string): Promise<string[]> {
  return (await readdir(dir)).filter((n) => n.startsWith(".berth-upload-"));
}

/** PASV, connect, `verb name` (150), and `first` sent: the data connection, still open. */
export async function startUpload(c: RawClient, verb: string, name: string, first: Buffer): Promise<Socket> {
  const sock = await dataConnect(pasvPort((await c.expect("PASV", 227)).message));
  await c.expect(`${verb} ${name}`, 150);
  if (first.length > 0) sock.write(first);
  return sock;
}

/** Ends an upload started by startUpload with `rest`; the final reply's code. */
export async function endUpload(c: RawClient, sock: Socket, rest: Buffer): Promise<number> {
  const closed = new Promise<void>((resolve) => sock.once("close", () => resolve()));
  sock.end(rest);
  sock.resume();
  const reply = await c.reply(10_000);
  await closed;
  return reply.code;
}

/** Waits until the file at `p` (or, for a directory, its temp file) holds `size` bytes. */
export async function sizeReached(p: string, size: number): Promise<void> {
  const at = async (): Promise<number> => {
    const temps = await tempFiles(p).catch(() => null);
    const f = temps === null ? p : path.join(p, temps[0] ?? "-");
    return stat(f).then((s) => s.size, () => -1);
  };
  const end = Date.now() + 5000;
  while ((await at()) !== size) {
    assert.ok(Date.now() < end, `${p} never reached ${size} bytes`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Two sessions of `user` (carol: her home made first), in TYPE I. */
export async function twoSessions(t: TestServer, user = "carol"): Promise<[RawClient, RawClient]> {
  mkdirSync(t.home(user), { recursive: true });
  const a = await rawLogin(t, user);
  const b = await rawLogin(t, user);
  await a.expect("TYPE I", 200);
  await b.expect("TYPE I", 200);
  return [a, b];
}

/** What this process has open under `dir` (the real paths of its descriptors): nothing, once an
 * upload and the sessions that held the home have ended. */
export function openIn(dir: string): string[] {
  const out: string[] = [];
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const p = readlinkSync(`/proc/self/fd/${fd}`);
      if (p === dir || p.startsWith(`${dir}/`)) out.push(p);
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** What the files below `dir` hold, counted as the quota counts them: bytes and regular files. */
export function diskUsage(dir: string): { bytes: number; files: number } {
  let bytes = 0;
  let files = 0;
  for (const n of readdirSync(dir)) {
    const p = path.join(dir, n);
    const s = lstatSync(p);
    if (s.isDirectory()) {
      const w = diskUsage(p);
      bytes += w.bytes;
      files += w.files;
    } else if (s.isFile()) {
      bytes += s.size;
      files += 1;
    }
  }
  return { bytes, files };
}
