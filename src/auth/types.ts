/** The actions a user may be allowed, each checked before the command that needs it. */
export const PERMS = ["list", "download", "upload", "overwrite", "delete", "rename", "mkdir", "rmdir", "chmod"] as const;

/** One permission of PERMS. */
export type Perm = (typeof PERMS)[number];

/** What read-only leaves of any permission set. */
export const READ_PERMS: ReadonlySet<Perm> = new Set<Perm>(["list", "download"]);

/** Permissions that apply inside one directory of the home (and below it), overriding the user's. */
export interface DirPerms {
  /** Virtual path inside the home, normalized: "/", "/pub", "/pub/incoming". */
  readonly path: string;
  readonly perms: ReadonlySet<Perm>;
}

/** Per-user limits; 0 means "none of its own": the config's default applies (and 0 there = unlimited). */
export interface UserLimits {
  /** Most bytes stored in the home. */
  readonly quotaBytes: number;
  /** Most files stored in the home. */
  readonly quotaFiles: number;
  /** Upload rate across all of the user's sessions, bytes per second. */
  readonly bandwidthUp: number;
  /** Download rate across all of the user's sessions, bytes per second. */
  readonly bandwidthDown: number;
  /** Sessions at once. */
  readonly maxSessions: number;
}

/** What the protocol engine knows of an authenticated user. */
export interface User {
  /** Login name. */
  readonly name: string;
  /** Absolute path of the user's home (the jail root); may not exist yet. */
  readonly home: string;
  /** True: no command that changes the filesystem is allowed (perms hold at most list and download). */
  readonly readOnly: boolean;
  /** What the user may do in the home, read-only already applied. */
  readonly perms: ReadonlySet<Perm>;
  /** Per-directory overrides, longest path first; read-only already applied. */
  readonly dirPerms: readonly DirPerms[];
  /** The user's own limits (0 = the config default). */
  readonly limits: UserLimits;
  /** Logged in as the anonymous user. */
  readonly anonymous: boolean;
}

/** No limits of one's own. */
export const NO_LIMITS: UserLimits = { quotaBytes: 0, quotaFiles: 0, bandwidthUp: 0, bandwidthDown: 0, maxSessions: 0 };

/** Checks credentials. Implementations take about the same time for unknown names and bad passwords. */
export interface Authenticator {
  /** Resolves to the user on success, null on bad credentials; rejects only when credentials
   * cannot be checked at all (the PASS handler answers 421 and counts no failure). */
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
