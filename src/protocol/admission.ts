/**
 * Who may open a session and who may log in (issue "Abuse resistance", limits): sessions in total,
 * per address and per user. The server asks at connect, PASS asks once the password is right; the
 * counts go down when the session closes.
 */
import type { Config } from "../config/schema.ts";

/** Session counts of one server. */
export class Admission {
  #total = 0;
  readonly #perAddress = new Map<string, number>();
  readonly #perUser = new Map<string, number>();

  /** Sessions open now. */
  get total(): number {
    return this.#total;
  }

  /** Counts a new connection from `address`, or returns why it is refused (nothing counted). */
  connect(address: string, limits: Config["limits"]): string | null {
    if (this.#total >= limits.maxSessions) return "Too many connections; try again later";
    if ((this.#perAddress.get(address) ?? 0) >= limits.maxSessionsPerAddress) return "Too many connections from your address";
    this.#total++;
    bump(this.#perAddress, address, 1);
    return null;
  }

  /** Forgets a connection counted by connect(). */
  disconnect(address: string): void {
    this.#total = Math.max(0, this.#total - 1);
    bump(this.#perAddress, address, -1);
  }

  /** Counts a login of `name` unless it already has `max` sessions (0 = unlimited); true when counted. */
  login(name: string, max: number): boolean {
    if (max > 0 && (this.#perUser.get(name) ?? 0) >= max) return false;
    bump(this.#perUser, name, 1);
    return true;
  }

  /** Forgets a login counted by login(). */
  logout(name: string): void {
    bump(this.#perUser, name, -1);
  }

  /** Sessions open now from `address`. */
  sessionsFrom(address: string): number {
    return this.#perAddress.get(address) ?? 0;
  }

  /** Logged-in sessions of `name` now. */
  sessionsOf(name: string): number {
    return this.#perUser.get(name) ?? 0;
  }
}

function bump(map: Map<string, number>, key: string, by: number): void {
  const n = (map.get(key) ?? 0) + by;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}
