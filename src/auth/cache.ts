/**
 * A short-lived, in-memory cache of verified logins, so that bcrypt (slow on purpose) is paid once
 * per credentials within a window rather than on every login. Entries are keyed by an HMAC-SHA256,
 * under a random key made per process, of name, password and the user's current credential stamp
 * (their stored hash): the password is never kept, and a `user passwd`, `user del` or any other
 * change of the users file makes old entries unreachable at once. Only successes are cached;
 * failures always pay the full check. Identical checks running at the same moment share one bcrypt.
 */
import { createHmac, randomBytes } from "node:crypto";
import type { Authenticator, User } from "./types.ts";

/** An authenticator that can tell, cheaply, what the stored credentials of a user are now. */
export interface CredentialSource extends Authenticator {
  /** A value that changes whenever the user's password or record changes; null for unknown names. */
  credentialStamp(name: string): Promise<string | null>;
}

/** Options of LoginCache. */
export interface LoginCacheOptions {
  /** How long a verified login is trusted, in milliseconds; 0 turns the cache off. */
  readonly ttlMs: number;
  /** Most entries kept; the least recently used goes first. */
  readonly maxEntries: number;
  /** Clock in milliseconds; default Date.now. */
  readonly now?: (() => number) | undefined;
}

interface Entry {
  readonly user: User;
  readonly expires: number;
}

/** Wraps a CredentialSource; answers repeated good logins from memory within `ttlMs`. */
export class LoginCache implements Authenticator {
  readonly #inner: CredentialSource;
  #ttl: number;
  readonly #max: number;
  readonly #now: () => number;
  /** Per-process secret: keys mean nothing outside this process and say nothing of the password. */
  readonly #key = randomBytes(32);
  readonly #entries = new Map<string, Entry>();
  /** Checks in progress, so a burst of identical logins costs one bcrypt. */
  readonly #pending = new Map<string, Promise<User | null>>();

  /** Creates a cache in front of `inner`. */
  constructor(inner: CredentialSource, opts: LoginCacheOptions) {
    this.#inner = inner;
    this.#ttl = Math.max(0, opts.ttlMs);
    this.#max = Math.max(0, Math.floor(opts.maxEntries));
    this.#now = opts.now ?? Date.now;
  }

  /** Entries held (for tests and metrics). */
  get size(): number {
    return this.#entries.size;
  }

  /** Changes how long verified logins are trusted (a reload); shortening or turning it off forgets them all. */
  setTtl(ttlMs: number): void {
    const next = Math.max(0, ttlMs);
    if (next < this.#ttl) this.clear();
    this.#ttl = next;
  }

  /** Forgets every verified login. */
  clear(): void {
    this.#entries.clear();
  }

  /** The user on good credentials, else null; never throws for bad credentials. */
  async authenticate(name: string, password: string): Promise<User | null> {
    if (this.#ttl === 0 || this.#max === 0) return this.#inner.authenticate(name, password);
    const stamp = await this.#inner.credentialStamp(name).catch(() => null);
    // Unknown names are never cached: the inner check answers them in the usual time.
    if (stamp === null) return this.#inner.authenticate(name, password);
    const key = this.#keyOf(name, password, stamp);
    const hit = this.#lookup(key);
    if (hit !== null) return hit;
    const running = this.#pending.get(key);
    if (running !== undefined) return running;
    const check = this.#verify(key, name, password);
    this.#pending.set(key, check);
    try {
      return await check;
    } finally {
      this.#pending.delete(key);
    }
  }

  async #verify(key: string, name: string, password: string): Promise<User | null> {
    const user = await this.#inner.authenticate(name, password);
    if (user !== null) this.#store(key, user);
    return user;
  }

  #keyOf(name: string, password: string, stamp: string): string {
    return createHmac("sha256", this.#key).update(`${name}\0${password}\0${stamp}`, "utf8").digest("base64");
  }

  #lookup(key: string): User | null {
    const entry = this.#entries.get(key);
    if (entry === undefined) return null;
    this.#entries.delete(key);
    if (entry.expires <= this.#now()) return null;
    this.#entries.set(key, entry); // most recently used goes last
    return entry.user;
  }

  #store(key: string, user: User): void {
    this.#entries.delete(key);
    this.#entries.set(key, { user, expires: this.#now() + this.#ttl });
    while (this.#entries.size > this.#max) {
      const oldest = this.#entries.keys().next();
      if (oldest.done === true) break;
      this.#entries.delete(oldest.value);
    }
  }
}
