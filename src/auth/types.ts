/** What the protocol engine knows of an authenticated user. */
export interface User {
  /** Login name. */
  readonly name: string;
  /** Absolute path of the user's home (the jail root); may not exist yet. */
  readonly home: string;
  /** True: no command that changes the filesystem is allowed. */
  readonly readOnly: boolean;
}

/** Checks credentials. Implementations take about the same time for unknown names and bad passwords. */
export interface Authenticator {
  /** Resolves to the user on success, null on any failure (never throws for bad credentials). */
  authenticate(name: string, password: string): Promise<User | null>;
}

/** Per-address failed-login policy (SPEC: repeated failures are slowed, then refused for a while). */
export interface LoginGuard {
  /** True while `address` is refused. */
  isBanned(address: string): boolean;
  /** Counts one failed login from `address`. */
  recordFailure(address: string): void;
  /** Clears the failure count of `address` after a good login. */
  recordSuccess(address: string): void;
}
