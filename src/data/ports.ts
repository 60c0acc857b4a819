/**
 * The passive port pool: which ports of `passive.ports` berth holds right now. Ports are tried in a
 * random order (guessing the next data port is then no help to an attacker) and a port is held from
 * PASV/EPSV until its listener closes, on every path. A session may keep its listener for its next
 * PASV/EPSV for a moment after a transfer (a spare, data/passive.ts; only while nobody else has
 * connected to it, so probing cannot tell which port comes next): such a port is held, but another
 * session that finds no free port takes it (`reclaim`); so does any session, its own included, from
 * a port kept listening for a moment after the command it was opened for was refused.
 */
import type { PortRange } from "../config/schema.ts";

/** Tracks the ports of one range that are in use by this process. */
export class PortPool {
  private readonly inUse = new Set<number>();
  /** Held ports whose listener may go at once (a session's spare, or the port of a command refused
   * before use, in its grace time), oldest first, with what gives them back. */
  private readonly spares = new Map<number, () => void>();

  /** @param range inclusive range of ports berth may listen on for passive data connections. */
  constructor(readonly range: PortRange) {}

  /** Number of ports in the range. */
  get capacity(): number {
    return this.range.max - this.range.min + 1;
  }

  /** Ports currently held. */
  get used(): number {
    return this.inUse.size;
  }

  /** Free ports in a random order (the caller tries them until one binds). */
  *candidates(): Generator<number> {
    const n = this.capacity;
    const start = Math.floor(Math.random() * n);
    // A stride coprime to n walks every port once in a scattered order.
    const stride = pickStride(n);
    for (let i = 0; i < n; i++) {
      const port = this.range.min + ((start + i * stride) % n);
      if (!this.inUse.has(port)) yield port;
    }
  }

  /** Marks a port held; false if it already was. */
  hold(port: number): boolean {
    if (this.inUse.has(port)) return false;
    this.inUse.add(port);
    return true;
  }

  /** Gives a held port back. */
  release(port: number): void {
    this.spares.delete(port);
    this.inUse.delete(port);
  }

  /** Marks a held port as a spare: `drop` closes its listener and releases it when needed. */
  spare(port: number, drop: () => void): void {
    this.spares.set(port, drop);
  }

  /** The spare on `port` is in use again. */
  unspare(port: number): void {
    this.spares.delete(port);
  }

  /** Closes the oldest spare listener, which releases its port; false when there is none. */
  reclaim(): boolean {
    const first = this.spares.entries().next();
    if (first.done) return false;
    const [port, drop] = first.value;
    this.spares.delete(port);
    drop();
    return true;
  }
}

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

function pickStride(n: number): number {
  if (n <= 2) return 1;
  for (let tries = 0; tries < 16; tries++) {
    const s = 1 + Math.floor(Math.random() * (n - 1));
    if (gcd(s, n) === 1) return s;
  }
  return 1;
}
