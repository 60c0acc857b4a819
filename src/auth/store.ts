/**
 * The users file and everything done with it: bcrypt authentication, and the admin operations of
 * `berth user …`. The file is only ever replaced atomically; a running server sees changes made by
 * another process through a cheap stat (at most once per `reloadIntervalMs`) before authenticating,
 * and a read as well for a few seconds after the file changed (see RACY_MS).
 *
 * File format: `{ "version": 1, "users": [ { "name", "hash", "home", "readOnly", ... } ] }`. `home` is
 * kept as given: a relative home is resolved against `storageRoot` when used. Optional per-user keys:
 * `perms` (array of PERMS; absent = all), `dirs` ({ "/virtual/dir": [perms] }: overrides inside the
 * home), `quotaBytes`, `quotaFiles`, `bandwidthUp`, `bandwidthDown` (bytes per second) and
 * `maxSessions` (0 or absent = the config's default).
 */
import bcrypt from "bcrypt";
import { createHash, createHmac, randomBytes } from "node:crypto";
import { createReadStream } from "node:fs";
import { lchown, readlink, stat } from "node:fs/promises";
import path from "node:path";
import { errnoCode, systemErrorText } from "../config/syserr.ts";
import { makeDirs } from "../fs/mkdirs.ts";
import { DEFAULT_UMASK, fixDirMode, modesFor } from "../fs/modes.ts";
import type { Logger } from "../log/logger.ts";
import { readRegularFile, writeFileAtomic } from "./atomic.ts";
import type { CredentialSource } from "./cache.ts";
import { LockError, withFileLock, type LockOptions } from "./lock.ts";
import { normalizeDirPath } from "./perms.ts";
import { NO_LIMITS, PERMS, READ_PERMS, type DirPerms, type Perm, type User, type UserLimits } from "./types.ts";

/** Why a user operation was refused: "invalid" input is a usage error, the rest are failures
 * ("busy": another process held the users file's lock for the whole wait). */
export type UserErrorKind = "invalid" | "conflict" | "not-found" | "corrupt" | "io" | "busy";

/** An operator mistake or a failed user operation; the message is one clean line, never a secret. */
export class UserError extends Error {
  /** What went wrong, for the exit status. */
  readonly kind: UserErrorKind;

  /** Builds an error with a one-line message. */
  constructor(kind: UserErrorKind, message: string) {
    super(message);
    this.name = "UserError";
    this.kind = kind;
  }
}

/** Names of the per-user limits, as stored in the users file. */
export const LIMIT_KEYS = ["quotaBytes", "quotaFiles", "bandwidthUp", "bandwidthDown", "maxSessions"] as const;

/** One record of the users file. */
export interface UserRecord extends Partial<UserLimits> {
  readonly name: string;
  /** bcrypt hash of the password. */
  readonly hash: string;
  /** Home as given: absolute, or relative to the storage root. */
  readonly home: string;
  readonly readOnly: boolean;
  /** What the user may do; absent = every permission. */
  readonly perms?: readonly Perm[] | undefined;
  /** Per-directory overrides: virtual path inside the home → permissions there and below. */
  readonly dirs?: Readonly<Record<string, readonly Perm[]>> | undefined;
  /** Keys of the entry berth does not use (an operator's note, a key of a later version), written
   * back as they were whenever the file is written again. */
  readonly extra?: Readonly<Record<string, unknown>> | undefined;
}

/** A users file as read: its users, and the top-level keys other than `version` and `users`. */
export interface UsersDocument {
  readonly users: UserRecord[];
  readonly extra: Readonly<Record<string, unknown>>;
}

/** The keys of an entry berth reads. */
const RECORD_KEYS: ReadonlySet<string> = new Set(["name", "hash", "home", "readOnly", "perms", "dirs", ...LIMIT_KEYS]);

/** What `list()` shows of a user: never the hash. */
export type UserInfo = User;

/** What `set()` may change; an absent field stays as it is, `null` resets perms or dirs to the default. */
export interface UserChanges extends Partial<UserLimits> {
  readonly root?: string | undefined;
  readonly readOnly?: boolean | undefined;
  readonly perms?: readonly Perm[] | null | undefined;
  readonly dirs?: Readonly<Record<string, readonly Perm[]>> | null | undefined;
}

/** Options of UserStore. */
export interface UserStoreOptions {
  /** Path of the users file (resolved against the working directory when relative). */
  readonly file: string;
  /** Parent of relative homes (resolved against the working directory when relative). */
  readonly storageRoot: string;
  /** bcrypt cost of new hashes (4..15). */
  readonly bcryptCost: number;
  readonly logger?: Logger | undefined;
  /** Least time between two stats of the file on authenticate; default 1000 ms. */
  readonly reloadIntervalMs?: number | undefined;
  /** Clock in milliseconds; default Date.now. */
  readonly now?: (() => number) | undefined;
  /** Umask of the home directories it creates (config `storage.umask`); default 022. */
  readonly umask?: number | undefined;
  /** Waiting for, and judging stale, the lock `<file>.lock` that every change holds (tests). */
  readonly lock?: LockOptions | undefined;
}

/** Options of `add`: the home (absolute, or relative to the storage root; default the name) and the rest of UserChanges. */
export type AddOptions = UserChanges;

/** What ensureEnvUser did with the user BERTH_USER names. */
export interface EnvUserResult {
  readonly name: string;
  readonly action: "created" | "updated" | "unchanged";
}

/** The user createDemoUser made; the password is to be shown once. */
export interface DemoUser {
  readonly name: string;
  readonly password: string;
}

/** Longest password bcrypt takes into account, in UTF-8 bytes. */
export const MAX_PASSWORD_BYTES = 72;

const NAME_RE = /^[A-Za-z0-9_@-][A-Za-z0-9._@-]{0,63}$/;
const HASH_RE = /^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$/;

/** Throws UserError("invalid") unless `name` is 1-64 of [A-Za-z0-9._@-], not starting with ".". */
export function checkUserName(name: string): void {
  if (!NAME_RE.test(name)) {
    throw new UserError(
      "invalid",
      `invalid user name ${quote(name)}: use 1-64 letters, digits, ".", "_", "@" or "-", not starting with "."`,
    );
  }
}

/** Throws UserError("invalid") unless `password` is usable (never echoes the password). */
export function checkPassword(password: string): void {
  if (password === "") throw new UserError("invalid", "the password must not be empty");
  if (Buffer.byteLength(password, "utf8") > MAX_PASSWORD_BYTES) {
    throw new UserError("invalid", `the password is longer than ${MAX_PASSWORD_BYTES} bytes (the bcrypt limit)`);
  }
  if (/[\r\n\0]/.test(password)) throw new UserError("invalid", "the password must not contain a line break or NUL");
  // U+FFFD is what bytes that are not UTF-8 decode to (a Latin-1 terminal, a file in another
  // encoding): stored so, it would be a password no client sends, as clients send UTF-8.
  if (password.includes("\uFFFD")) throw new UserError("invalid", "the password is not valid UTF-8 text");
}

/** Whether `password` is the one `hash` holds, for every kind of bcrypt hash the file takes: the
 * bcrypt module knows "$2y$" (written by `htpasswd -B` and PHP, the same algorithm as "$2b$") only
 * by that other name, and would never match a hash pasted in from there. */
function matches(password: string, hash: string): Promise<boolean> {
  return bcrypt.compare(password, hash.startsWith("$2y$") ? `$2b$${hash.slice(4)}` : hash);
}

/** The highest cost of a stored hash (htpasswd -B's highest): a login at 17 is already about 128
 * times the default 10. A hash of a higher cost, only ever a hand edit, would hold one of the few
 * threads that do bcrypt (and file I/O) for minutes to days on each login of the user, and on
 * each login of an unknown name given that cost (#dummyHash), so a handful of them would stall the
 * whole server. */
const MAX_STORED_COST = 17;

/** The cost a bcrypt hash was made with ("$2b$12$…" → 12), or null when it names none bcrypt takes. */
function costOf(hash: string): number | null {
  const m = /^\$2[aby]\$(\d\d)\$/.exec(hash);
  const cost = m === null ? NaN : Number(m[1]);
  return cost >= 4 && cost <= 31 ? cost : null;
}

/** A name for messages: JSON-quoted and shortened. */
function quote(name: string): string {
  const s = JSON.stringify(name);
  return s.length > 70 ? `${s.slice(0, 67)}..."` : s;
}

/** Parses and checks the users file; throws UserError("corrupt") without quoting the content. */
export function parseUsersFile(text: string, file: string): UserRecord[] {
  return parseUsersDocument(text, file).users;
}

/** parseUsersFile, with the file's top-level keys berth does not use. */
export function parseUsersDocument(text: string, file: string): UsersDocument {
  // A byte order mark, as some Windows editors put before a file saved by hand, is no part of the
  // JSON text and may be ignored (RFC 8259 §8.1); JSON.parse refuses it, and every login with it.
  if (text.startsWith("\uFEFF")) text = text.slice(1);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch {
    // The parser's message may quote the file, hashes included: never pass it on. Where the file
    // stops being JSON is said instead, so that a hand edit gone wrong can be found.
    throw new UserError("corrupt", `users file ${file} ${jsonErrorText(text)}`);
  }
  const top = data as { version?: unknown; users?: unknown } | null;
  if (typeof top !== "object" || top === null || top.version !== 1 || !Array.isArray(top.users)) {
    throw new UserError("corrupt", `users file ${file} is not a version 1 users file`);
  }
  const seen = new Set<string>();
  const users = top.users.map((raw: unknown, i) => {
    const rec = toRecord(raw);
    if (typeof rec === "string") throw new UserError("corrupt", `users file ${file}: entry ${i + 1}${rec}`);
    if (seen.has(rec.name)) throw new UserError("corrupt", `users file ${file}: user ${quote(rec.name)} appears twice`);
    seen.add(rec.name);
    return rec;
  });
  const { version: _v, users: _u, ...extra } = top as Record<string, unknown>;
  return { users, extra };
}

/** What is wrong with `text`, which JSON.parse refused, for a message that never quotes it: empty,
 * cut short, or the line and column of its first character that is not JSON. */
function jsonErrorText(text: string): string {
  // berth never writes an empty one (atomic replacement): an empty file was made or cut by hand, and
  // what to do about it is not to be guessed (no users would lock every user out without a word).
  if (text.trim() === "") return "is empty: restore it from a backup, or remove it, and the next start or user add makes a new one";
  let at: number;
  try {
    at = jsonErrorOffset(text);
  } catch {
    // Nested deeper than the stack goes: no place to point at.
    at = -1;
  }
  if (at < 0) return "is not valid JSON";
  const before = text.slice(0, at);
  // Cut short, the line named is that of its last word, not an empty one after it.
  if (at >= text.length) return `is not valid JSON: it ends too soon, at line ${text.trimEnd().split("\n").length}`;
  const line = before.split("\n").length;
  const column = [...before.slice(before.lastIndexOf("\n") + 1)].length + 1;
  return `is not valid JSON: line ${line}, column ${column}`;
}

/** The offset of the first character where `text` stops being JSON (RFC 8259), its length when it
 * ends too soon, or -1 when it is JSON. JSON.parse says this only in messages that differ between
 * errors and versions, some quoting the text, so the syntax is followed here, as small as it is. */
function jsonErrorOffset(text: string): number {
  let i = 0;
  const fail = (): never => {
    throw new JsonSyntaxAt(i);
  };
  const space = (): void => {
    while (text[i] === " " || text[i] === "\t" || text[i] === "\n" || text[i] === "\r") i++;
  };
  const expect = (ch: string): void => {
    if (text[i] !== ch) fail();
    i++;
  };
  const string = (): void => {
    expect('"');
    for (;;) {
      const ch = text[i];
      if (ch === undefined || ch < " ") fail();
      i++;
      if (ch === '"') return;
      if (ch !== "\\") continue;
      const esc = text[i];
      if (esc === "u") {
        for (let k = 0; k < 4; k++) {
          i++;
          if (!/[0-9A-Fa-f]/.test(text[i] ?? "")) fail();
        }
        i++;
      } else if (esc !== undefined && '"\\/bfnrt'.includes(esc)) i++;
      else fail();
    }
  };
  const value = (): void => {
    space();
    const ch = text[i];
    if (ch === "{" || ch === "[") {
      const close = ch === "{" ? "}" : "]";
      i++;
      space();
      if (text[i] === close) {
        i++;
        return;
      }
      for (;;) {
        if (close === "}") {
          space();
          string();
          space();
          expect(":");
        }
        value();
        space();
        if (text[i] === close) {
          i++;
          return;
        }
        expect(",");
      }
    }
    if (ch === '"') return string();
    for (const word of ["true", "false", "null"]) {
      if (ch !== word[0]) continue;
      for (const letter of word) expect(letter);
      return;
    }
    const number = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
    number.lastIndex = i;
    if (!number.test(text)) fail();
    i = number.lastIndex;
  };
  try {
    value();
    space();
    if (i < text.length) fail();
    return -1;
  } catch (err) {
    if (err instanceof JsonSyntaxAt) return err.offset;
    throw err;
  }
}

/** Where jsonErrorOffset found the text to stop being JSON. */
class JsonSyntaxAt {
  constructor(readonly offset: number) {}
}

/** The keys of `raw` berth does not read, with their values; undefined when there are none. */
function unknownKeys(raw: Record<string, unknown>): Record<string, unknown> | undefined {
  let extra: Record<string, unknown> | undefined;
  for (const key of Object.keys(raw)) {
    if (RECORD_KEYS.has(key)) continue;
    // With no prototype: a key "__proto__" (JSON.parse makes it one of the entry's own) is then
    // kept as a key of its own too, where on a plain object it would set the prototype and be lost.
    extra ??= Object.create(null) as Record<string, unknown>;
    extra[key] = raw[key];
  }
  return extra;
}

/** A checked copy of one raw record, or, when malformed, what is wrong with it, to follow "entry N"
 * in a message: the key at fault and the entry's name once that is known, never a value (the one
 * at fault may be a password pasted where the hash goes). */
function toRecord(raw: unknown): UserRecord | string {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return " is not an object";
  const r = raw as Record<string, unknown>;
  const { name, hash, home, readOnly } = r;
  if (typeof name !== "string" || !NAME_RE.test(name)) return ': "name" must be 1-64 letters, digits, ".", "_", "@" or "-", not starting with "."';
  const wrong = (what: string): string => ` (${quote(name)}): ${what}`;
  if (typeof hash !== "string" || !HASH_RE.test(hash)) return wrong('"hash" must be a bcrypt hash');
  // With a cost bcrypt does not take, every password check is false at once: a user no login could
  // ever be, and one an unknown name would not take as long as.
  const cost = costOf(hash);
  if (cost === null) return wrong(`"hash" has bcrypt cost ${hash.slice(4, 6)}, which bcrypt does not take (4 to 31)`);
  if (cost > MAX_STORED_COST) return wrong(`"hash" has bcrypt cost ${cost}; berth checks hashes of cost up to ${MAX_STORED_COST}, as each step doubles the time a login takes`);
  if (typeof home !== "string" || home === "" || home.includes("\0")) return wrong('"home" must be a non-empty path');
  if (typeof readOnly !== "boolean") return wrong('"readOnly" must be true or false');
  const perms = r.perms === undefined ? undefined : toPerms(r.perms);
  if (perms === null) return wrong(`"perms" must be a list of ${PERMS.join(", ")}`);
  const dirs = r.dirs === undefined ? undefined : toDirs(r.dirs);
  if (dirs === null) return wrong('"dirs" must map paths inside the home (no "..") to lists of permissions');
  const limits: Partial<Record<(typeof LIMIT_KEYS)[number], number>> = {};
  for (const key of LIMIT_KEYS) {
    const v = r[key];
    if (v === undefined) continue;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) return wrong(`"${key}" must be a whole number >= 0`);
    limits[key] = v;
  }
  const extra = unknownKeys(r);
  return { name, hash, home, readOnly, ...(perms && { perms }), ...(dirs && { dirs }), ...limits, ...(extra && { extra }) };
}

/** A checked, de-duplicated permission list in PERMS order; null when malformed. */
export function toPerms(raw: unknown): Perm[] | null {
  if (!Array.isArray(raw)) return null;
  if (!raw.every((p) => typeof p === "string" && (PERMS as readonly string[]).includes(p))) return null;
  return PERMS.filter((p) => raw.includes(p));
}

/** Checked per-directory overrides with normalized paths; null when malformed. */
function toDirs(raw: unknown): Record<string, Perm[]> | null {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return null;
  const out: Record<string, Perm[]> = {};
  for (const [dir, list] of Object.entries(raw)) {
    const key = normalizeDir(dir);
    const perms = toPerms(list);
    if (key === null || perms === null) return null;
    out[key] = perms;
  }
  return out;
}

/** "/pub/in/" → "/pub/in"; relative paths are taken from the home; null for "..", NUL or backslash. */
export const normalizeDir = normalizeDirPath;

/** The text of a users file holding `users` (sorted by name for stable diffs) and the top-level
 * keys `extra`; the keys berth does not use, top-level and per user, are written as they were read. */
export function formatUsersFile(users: readonly UserRecord[], extra: Readonly<Record<string, unknown>> = {}): string {
  const sorted = [...users].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const plain = sorted.map((u) => {
    const { name, hash, home, readOnly, perms, dirs } = u;
    const limits = Object.fromEntries(LIMIT_KEYS.filter((k) => (u[k] ?? 0) > 0).map((k) => [k, u[k]]));
    return { name, hash, home, readOnly, ...(perms && { perms }), ...(dirs && { dirs }), ...limits, ...u.extra };
  });
  return `${JSON.stringify({ version: 1, ...extra, users: plain }, null, 2)}\n`;
}

/** How long after a version's mtime a later version may still have the same signature: a file
 * system that keeps whole seconds (two on FAT) gives every write of one second the same mtime,
 * the inode one atomic replacement frees is often the next one's (ext4 takes them in turn), and a
 * changed password or setting leaves the size as it was. A version whose text was last read
 * before this long past its mtime has its text compared at each check, until it is read later. */
const RACY_MS = 3_000;

/** Identity of one version of a file (`id`) and its mtime; null when it does not exist. */
async function signature(file: string): Promise<{ id: string; mtimeMs: number } | null> {
  try {
    const s = await stat(file);
    return { id: `${s.ino}:${s.size}:${s.mtimeMs}`, mtimeMs: s.mtimeMs };
  } catch (err) {
    if (errnoCode(err) === "ENOENT") return null;
    throw err;
  }
}

/** A digest of a version's text, to tell it from another of the same signature. */
function digestOf(text: string): string {
  return createHash("sha256").update(text).digest("base64");
}

/** The users file, bcrypt authentication, and the admin operations on users. */
export class UserStore implements CredentialSource {
  readonly #file: string;
  readonly #root: string;
  readonly #cost: number;
  readonly #logger: Logger | undefined;
  readonly #interval: number;
  readonly #now: () => number;
  readonly #dirMode: number;
  readonly #lock: LockOptions;
  /** Last good content of the file, by name. */
  #users = new Map<string, UserRecord>();
  /** Signature of the file version last looked at; undefined before the first look. */
  #seen: string | null | undefined = undefined;
  /** Digest of that version's text; null when it does not exist. */
  #seenDigest: string | null = null;
  /** That version's text was read too soon after its mtime for the signature alone to tell it from
   * a later version (see RACY_MS): its text is read and compared at each check until it is not. */
  #unsure = false;
  #checkedAt = 0;
  /** Counts the versions this store took itself (load, its own writes): a check that began before
   * one of them read the file before it too, and must not put its older look in its place. */
  #taken = 0;
  /** A version of the file (or its absence) has been taken: `#users` is what it holds. */
  #loaded = false;
  /** Why the file could not be read or parsed at the last look (null when it could). */
  #failure: string | null = null;
  #refreshing: Promise<void> | null = null;
  /** Dummy hashes by cost (see #dummyHash); bcrypt's costs are 4 to 31, so few. */
  readonly #dummies = new Map<number, Promise<string>>();
  /** The stored hashes' costs, sorted, for the user table they were read from. */
  #costs: { readonly of: Map<string, UserRecord>; readonly costs: readonly number[] } | undefined;
  /** Picks an unknown name's dummy cost (#dummyHash): random per process, so no one can tell
   * ahead which cost a name gets. */
  readonly #nameKey = randomBytes(32);
  /** Serializes this process's writes. */
  #queue: Promise<unknown> = Promise.resolve();

  /** Creates a store on `opts.file`; nothing is read until first use. */
  constructor(opts: UserStoreOptions) {
    this.#file = path.resolve(opts.file);
    this.#root = path.resolve(opts.storageRoot);
    this.#cost = opts.bcryptCost;
    this.#logger = opts.logger;
    this.#interval = opts.reloadIntervalMs ?? 1000;
    this.#now = opts.now ?? Date.now;
    this.#dirMode = modesFor(opts.umask ?? DEFAULT_UMASK).dir;
    this.#lock = opts.lock ?? {};
  }

  /** Absolute path of the users file. */
  get file(): string {
    return this.#file;
  }

  /** The user on a good password, else null; unknown names cost the same bcrypt work. Never
   * throws for bad credentials: only when they cannot be checked (the users file never read, as
   * with the process out of descriptors, or bcrypt failing), with UserError "io". */
  async authenticate(name: string, password: string): Promise<User | null> {
    await this.#refresh();
    if (!this.#loaded) throw new UserError("io", `no usable users file yet: ${this.#failure ?? "not read"}`);
    try {
      const record = this.#users.get(name);
      const match = await matches(password, record?.hash ?? (await this.#dummyHash(name)));
      const tooLong = Buffer.byteLength(password, "utf8") > MAX_PASSWORD_BYTES;
      return record !== undefined && match && !tooLong ? this.#toUser(record) : null;
    } catch (err) {
      throw new UserError("io", `password check failed: ${systemErrorText(err)}`);
    }
  }

  /**
   * What is stored for `name` now (hash, home, read-only) after the usual cheap reload check, or
   * null for an unknown name: it changes whenever the user's password or record does, so the login
   * cache (auth/cache.ts) can key on it. Never the password.
   */
  async credentialStamp(name: string): Promise<string | null> {
    await this.#refresh();
    const r = this.#users.get(name);
    return r === undefined ? null : JSON.stringify(r);
  }

  /** Every user, sorted by name, read fresh from the file. */
  async list(): Promise<UserInfo[]> {
    const users = await this.#readFresh();
    return users.map((u) => this.#toUser(u)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /**
   * Reads the file now and takes it as the copy logins are checked against, as a server does at
   * start: an edit that breaks the file before the first login then leaves this copy in use (and
   * is logged) rather than no copy at all. Throws UserError ("corrupt", "io") when it cannot be used.
   */
  async load(): Promise<UserInfo[]> {
    const readAt = Date.now();
    const sig = await signature(this.#file).catch((err: unknown) => {
      throw new UserError("io", `cannot read users file ${this.#file}: ${systemErrorText(err)}`);
    });
    // Its identity is taken before it is read: a change in between is read again at the next
    // check, which the first login makes whenever it comes (the interval starts there).
    const text = await this.#readText();
    const users = text === null ? [] : parseUsersFile(text, this.#file);
    this.#taken++;
    this.#users = new Map(users.map((u) => [u.name, u]));
    this.#loaded = true;
    this.#failure = null;
    this.#note(sig, text, readAt);
    this.#warnUnknownKeys(users);
    return this.loaded();
  }

  /** The users of the copy in use (what load() read, or this store's own last write), sorted by name. */
  loaded(): UserInfo[] {
    return [...this.#users.values()].map((u) => this.#toUser(u)).sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  /** Throws what add() would for `name` and `opts` whatever the password: a bad name or option, an
   * existing user, a users file that cannot be read. For the command line, before it asks for one. */
  async checkAdd(name: string, opts: AddOptions = {}): Promise<void> {
    checkUserName(name);
    applyChanges({ name, hash: "", home: opts.root ?? name, readOnly: false }, opts);
    refuseExisting(await this.#readFresh(), name);
  }

  /** Throws UserError("not-found") unless `name` is a user (and "io" or "corrupt" when the file
   * cannot be read): what passwd() would refuse whatever the password. */
  async checkExists(name: string): Promise<void> {
    refuseMissing(await this.#readFresh(), name);
  }

  /** Adds a user and creates their home directory; refuses duplicates and bad names or passwords. */
  async add(name: string, password: string, opts: AddOptions = {}): Promise<User> {
    checkUserName(name);
    checkPassword(password);
    const home = opts.root ?? name;
    const hash = await bcrypt.hash(password, this.#cost);
    const record = applyChanges({ name, hash, home, readOnly: false }, opts);
    const user = this.#toUser(record);
    await this.#update(
      (users) => {
        refuseExisting(users, name);
        return [...users, record];
      },
      () => this.#makeHome(user.home),
    );
    return user;
  }

  /** Changes the password of an existing user. */
  async passwd(name: string, password: string): Promise<void> {
    checkPassword(password);
    await this.#refuseWithoutFile(name);
    const hash = await bcrypt.hash(password, this.#cost);
    await this.#update((users) => {
      refuseMissing(users, name);
      return users.map((u) => (u.name === name ? { ...u, hash } : u));
    });
  }

  /** Changes a user's home, read-only flag, permissions or limits; the password stays. */
  async set(name: string, changes: UserChanges): Promise<User> {
    let updated: User | undefined;
    let makeHome: string | undefined;
    await this.#refuseWithoutFile(name);
    await this.#update(
      (users) => {
        const found = users.find((u) => u.name === name);
        if (found === undefined) throw new UserError("not-found", `no user ${quote(name)}`);
        const next = applyChanges(found, changes);
        updated = this.#toUser(next);
        if (next.home !== found.home) makeHome = updated.home;
        return users.map((u) => (u === found ? next : u));
      },
      async () => {
        if (makeHome !== undefined) await this.#makeHome(makeHome);
      },
    );
    return updated as User;
  }

  /** Removes a user; their home directory is left as it is. */
  async del(name: string): Promise<UserInfo> {
    let removed: UserInfo | undefined;
    await this.#refuseWithoutFile(name);
    await this.#update((users) => {
      const found = users.find((u) => u.name === name);
      if (found === undefined) throw new UserError("not-found", `no user ${quote(name)}`);
      removed = this.#toUser(found);
      return users.filter((u) => u !== found);
    });
    return removed as UserInfo;
  }

  /**
   * BERTH_USER with BERTH_PASSWORD or BERTH_PASSWORD_FILE: creates that user, or sets their
   * password when it differs. Undefined when BERTH_USER is not set; UserError("invalid") for a
   * half-set pair, an unreadable password file, or a bad name or password.
   */
  async ensureEnvUser(env: NodeJS.ProcessEnv): Promise<EnvUserResult | undefined> {
    const fromEnv = await passwordFromEnv(env);
    if (fromEnv === undefined) return undefined;
    const { name, password, source } = fromEnv;
    // Said with the variable it came from, as a config value is: in a container's log the line is
    // all there is, and "the password" alone does not say which one.
    fromVariable(() => checkUserName(name), "BERTH_USER");
    fromVariable(() => checkPassword(password), source);
    // The usual restart: the user is there with this password already. Said without the lock, which
    // a users file the server may read but not write (a read-only volume) cannot give.
    const current = (await this.#readFresh()).find((u) => u.name === name);
    if (current !== undefined && (await matches(password, current.hash))) return { name, action: "unchanged" };
    const created: UserRecord = { name, hash: await bcrypt.hash(password, this.#cost), home: name, readOnly: false };
    let action: EnvUserResult["action"] = "unchanged";
    // Decided under the lock, on the file as it is then: a `berth user` command running meanwhile
    // neither loses this change nor has its own lost.
    await this.#update(
      async (users) => {
        const existing = users.find((u) => u.name === name);
        if (existing === undefined) {
          action = "created";
          return [...users, created];
        }
        if (await matches(password, existing.hash)) return null;
        action = "updated";
        return users.map((u) => (u === existing ? { ...u, hash: created.hash } : u));
      },
      async () => {
        if (action === "created") await this.#makeHome(this.#toUser(created).home);
      },
    );
    return { name, action };
  }

  /**
   * On a true first start, when there is no users file at all, creates "demo" with a random
   * password. Null when the file exists, even with no users in it: they were deleted on purpose,
   * and a new demo user would open a door nobody asked for.
   */
  async createDemoUser(): Promise<DemoUser | null> {
    if (await this.#fileExists()) return null;
    const name = "demo";
    const password = randomBytes(12).toString("base64url");
    const record: UserRecord = { name, hash: await bcrypt.hash(password, this.#cost), home: name, readOnly: false };
    // Looked at again under the lock: a `berth user add` that made the file meanwhile wins.
    const made = await this.#update(
      (users, exists) => (exists ? null : [...users, record]),
      () => this.#makeHome(this.#toUser(record).home),
    );
    return made ? { name, password } : null;
  }

  /**
   * Read-modify-write of the file under its lock (`<file>.lock`), so that changes made at once by
   * several processes (`berth user …` commands run in parallel, a server writing BERTH_USER) each
   * start from the last one's result; one at a time in this process too. `change` gets the users
   * and whether the file exists, and returns the new list, or null to write nothing;
   * `beforeWrite` runs between. Resolves to whether the file was written.
   */
  async #update(
    change: (users: readonly UserRecord[], exists: boolean) => UserRecord[] | null | Promise<UserRecord[] | null>,
    beforeWrite?: () => Promise<void>,
  ): Promise<boolean> {
    const locked = async (): Promise<boolean> => {
      const exists = await this.#fileExists();
      const doc = await this.#readDocument();
      const next = await change(doc.users, exists);
      if (next === null) return false;
      await beforeWrite?.();
      await this.#write(next, doc.extra);
      return true;
    };
    const run = async (): Promise<boolean> => {
      try {
        await makeDirs(path.dirname(this.#file), 0o700);
      } catch (err) {
        throw new UserError("io", `cannot write users file ${this.#file}: ${systemErrorText(err)}`);
      }
      try {
        return await withFileLock(`${this.#file}.lock`, locked, this.#lock);
      } catch (err) {
        if (!(err instanceof LockError)) throw err;
        throw new UserError(err.kind, `cannot change users file ${this.#file}: ${err.message}`);
      }
    };
    const done = this.#queue.then(run, run);
    this.#queue = done.catch(() => undefined);
    return done;
  }

  /** Writes the file atomically and adopts its content as the last good copy. */
  async #write(users: readonly UserRecord[], extra: Readonly<Record<string, unknown>>): Promise<void> {
    const text = formatUsersFile(users, extra);
    try {
      // Always under the users file's lock (#update).
      await writeFileAtomic(this.#file, text, 0o600, true);
    } catch (err) {
      // rename(2) cannot replace a mount point (EBUSY): the file was bind-mounted on its own, as
      // `docker run -v ./users.json:/app/users/users.json` does, and can never be replaced whole.
      const why = errnoCode(err) === "EBUSY"
        ? "it is a mount point of its own (a file bind-mounted alone cannot be replaced atomically): mount the directory that holds it instead"
        : systemErrorText(err);
      throw new UserError("io", `cannot write users file ${this.#file}: ${why}`);
    }
    this.#taken++;
    this.#users = new Map(users.map((u) => [u.name, u]));
    this.#loaded = true;
    this.#failure = null;
    const readAt = Date.now();
    const sig = await signature(this.#file).catch(() => undefined);
    if (sig === undefined) this.#seen = undefined;
    else this.#note(sig, text, readAt);
  }

  /** UserError("not-found") for `name` when there is no users file at all: said before #update
   * makes a directory for a file that a change of a missing user would never write. */
  async #refuseWithoutFile(name: string): Promise<void> {
    if (!(await this.#fileExists())) throw new UserError("not-found", `no user ${quote(name)}`);
  }

  /** True when the users file exists (with or without users); UserError("io") when that cannot be told. */
  async #fileExists(): Promise<boolean> {
    try {
      await stat(this.#file);
      return true;
    } catch (err) {
      if (errnoCode(err) === "ENOENT") return false;
      throw new UserError("io", `cannot read users file ${this.#file}: ${systemErrorText(err)}`);
    }
  }

  /** Reads the file now; missing means no users; unreadable or corrupt throws UserError. */
  async #readFresh(): Promise<UserRecord[]> {
    return (await this.#readDocument()).users;
  }

  /** #readFresh, with the file's top-level keys berth does not use (none when it is missing). */
  async #readDocument(): Promise<UsersDocument> {
    const text = await this.#readText();
    return text === null ? { users: [], extra: {} } : parseUsersDocument(text, this.#file);
  }

  /** The file's text now; null when it is missing; UserError("io") when it cannot be read. */
  async #readText(): Promise<string | null> {
    try {
      return await readRegularFile(this.#file);
    } catch (err) {
      if (errnoCode(err) === "ENOENT") return null;
      throw new UserError("io", `cannot read users file ${this.#file}: ${systemErrorText(err)}`);
    }
  }

  /** Takes `sig` as the version looked at, its text `text` (null: no file) as read at `readAt`, a
   * time of the wall clock (as the file's mtime is) from before `sig` was taken. */
  #note(sig: { id: string; mtimeMs: number } | null, text: string | null, readAt: number): void {
    this.#seen = sig?.id ?? null;
    this.#seenDigest = text === null ? null : digestOf(text);
    // A clock set back since makes it unsure for longer, never for less: the text is read more often.
    this.#unsure = sig !== null && readAt < sig.mtimeMs + RACY_MS;
  }

  /** Checks the file (at most once per interval) and reloads it when it changed. Calls made while
   * a check is running wait for it: otherwise a burst of logins right after start would be
   * answered from the still empty table, as unknown users. */
  #refresh(): Promise<void> {
    if (this.#refreshing !== null) return this.#refreshing;
    const now = this.#now();
    // A clock set back since the last check (NTP, a restored VM) counts as time passed: otherwise
    // a deleted user or an old password would go on logging in until the clock caught up.
    const since = now - this.#checkedAt;
    if (this.#seen !== undefined && since >= 0 && since < this.#interval) return Promise.resolve();
    this.#refreshing = this.#reload(now).finally(() => {
      this.#refreshing = null;
    });
    return this.#refreshing;
  }

  /** Takes the file's current version. A file that cannot be read (EMFILE, EACCES, EIO…) is looked
   * at again at the next check; one that reads but does not parse is not, until it changes. Either
   * way the last good copy stays in use. Never throws. */
  async #reload(now: number): Promise<void> {
    this.#checkedAt = now;
    // The wall clock, whatever clock `now` is on: it is compared with the file's mtime.
    const readAt = Date.now();
    const taken = this.#taken;
    let sig: { id: string; mtimeMs: number } | null;
    let text: string | null = null;
    try {
      sig = await signature(this.#file);
      if ((sig?.id ?? null) === this.#seen && !this.#unsure) return;
      if (sig !== null) text = await readRegularFile(this.#file);
    } catch (err) {
      const reason = systemErrorText(err);
      // Logged once while it lasts: it is looked at again at every check until it reads.
      if (reason !== this.#failure) this.#logFailure("users file unreadable", reason);
      this.#failure = reason;
      return;
    }
    // The server wrote the file meanwhile (BERTH_USER, the demo user while the first logins come):
    // what was looked at here may be older than that write, even no file at all; the next check
    // reads what is newer.
    if (taken !== this.#taken) return;
    if ((sig?.id ?? null) === this.#seen && (text === null ? null : digestOf(text)) === this.#seenDigest) {
      // The same text under the same signature: the version already in use, read again later.
      this.#note(sig, text, readAt);
      return;
    }
    this.#failure = null;
    const had = this.#seen;
    this.#note(sig, text, readAt);
    if (sig === null || text === null) {
      // Gone after it was read (removed, or a volume unmounted): every login fails from now on,
      // which the operator must hear of once, rather than from the users.
      if (had !== undefined && had !== null) this.#logger?.warn({ file: this.#file, dropped: this.#users.size }, "users file removed; no user can log in until it is back");
      this.#users = new Map();
      this.#loaded = true;
      return;
    }
    try {
      const users = parseUsersFile(text, this.#file);
      this.#users = new Map(users.map((u) => [u.name, u]));
      this.#loaded = true;
      this.#logger?.info({ file: this.#file, users: users.length }, "users file loaded");
      this.#warnUnknownKeys(users);
    } catch (err) {
      const reason = err instanceof UserError ? err.message : systemErrorText(err);
      // Logged once: this version is not read again.
      this.#failure = reason;
      this.#logFailure("users file unusable", reason);
    }
  }

  /** A warning per user whose entry has keys berth does not use: a misspelt limit
   * ("quotabytes") would otherwise go unnoticed and unenforced. Names the keys, never their values. */
  #warnUnknownKeys(users: readonly UserRecord[]): void {
    for (const u of users) {
      if (u.extra === undefined) continue;
      this.#logger?.warn({ file: this.#file, user: u.name, keys: Object.keys(u.extra) }, "users file: keys berth does not use, kept as they are");
    }
  }

  /** One error line for a file that cannot be used: what stays in use, if anything does. */
  #logFailure(what: string, reason: string): void {
    if (this.#loaded) {
      this.#logger?.error({ file: this.#file, reason, kept: this.#users.size }, `${what}; keeping the last good copy`);
    } else {
      this.#logger?.error({ file: this.#file, reason }, `${what}; no good copy yet: logins cannot be checked until it is fixed`);
    }
  }

  /** A hash of a random secret, compared against for the unknown `name`. Its cost is that of a
   * stored hash, picked by a keyed hash of the name: unknown names then take as long as known
   * ones, in the same proportions, when the stored costs differ too (users.bcryptCost raised since
   * some hashes were made, which keep theirs until their password changes; a hash pasted in from
   * elsewhere); a name always gets the same one. The configured cost when none is stored. */
  #dummyHash(name: string): Promise<string> {
    if (this.#costs?.of !== this.#users) {
      const costs = [...this.#users.values()].map((u) => costOf(u.hash)).filter((c) => c !== null);
      this.#costs = { of: this.#users, costs: costs.sort((a, b) => a - b) };
    }
    const { costs } = this.#costs;
    const cost = costs.length === 0 ? this.#cost : costs[createHmac("sha256", this.#nameKey).update(name).digest().readUInt32BE(0) % costs.length]!;
    let dummy = this.#dummies.get(cost);
    if (dummy === undefined) {
      dummy = bcrypt.hash(randomBytes(16).toString("hex"), cost);
      // A failure (no thread, no memory) is not kept for every later unknown name.
      dummy.catch(() => this.#dummies.delete(cost));
      this.#dummies.set(cost, dummy);
    }
    return dummy;
  }

  /** The protocol's view of a record, with an absolute home. */
  #toUser(record: UserRecord): User {
    return toUser(record, path.resolve(this.#root, record.home));
  }

  /** Creates a home directory (mkdir -p); made by root, the directories made are given to the
   * server's user (see #serverOwner). */
  async #makeHome(home: string): Promise<void> {
    try {
      const created = await makeDirs(home, this.#dirMode);
      if (created === undefined) {
        await this.#refuseDanglingLink(home);
        return;
      }
      await fixDirMode(home, this.#dirMode);
      const owner = await this.#serverOwner();
      if (owner === null) return;
      for (let dir = home; ; dir = path.dirname(dir)) {
        await lchown(dir, owner.uid, owner.gid);
        if (dir === created || path.dirname(dir) === dir) break;
      }
    } catch (err) {
      if (err instanceof UserError) throw err;
      throw new UserError("io", `cannot create home directory ${home}: ${systemErrorText(err)}`);
    }
  }

  /** makeDirs takes an entry already at the home's path for the directory, and a symbolic link to
   * nothing is such an entry: the user would be added with a home no login can open (mkdir -p
   * refuses it too). Throws UserError("io") naming where it leads. */
  async #refuseDanglingLink(home: string): Promise<void> {
    try {
      await stat(home);
    } catch (err) {
      if (errnoCode(err) !== "ENOENT") throw err;
      const target = await readlink(home);
      throw new UserError("io", `cannot create home directory ${home}: it is a symbolic link to ${target}, which does not exist`);
    }
  }

  /**
   * Who the directories root makes for a home must belong to: the owner of the users file (else
   * of its directory), which is the server's own user (the server reads that file; the service
   * set-up chowns it to `berth`, the image's is `node`). Root running `sudo berth user add` would
   * otherwise make homes the server cannot write in. Null when not root, or the owner is root.
   */
  async #serverOwner(): Promise<{ uid: number; gid: number } | null> {
    if (process.geteuid?.() !== 0) return null;
    const st = await stat(this.#file).catch(() => stat(path.dirname(this.#file))).catch(() => null);
    if (st === null || (st.uid === 0 && st.gid === 0)) return null;
    return { uid: st.uid, gid: st.gid };
  }
}

/** Throws UserError("conflict") when `users` has one named `name`. */
function refuseExisting(users: readonly UserRecord[], name: string): void {
  if (users.some((u) => u.name === name)) throw new UserError("conflict", `user ${quote(name)} already exists`);
}

/** Throws UserError("not-found") unless `users` has one named `name`. */
function refuseMissing(users: readonly UserRecord[], name: string): void {
  if (!users.some((u) => u.name === name)) throw new UserError("not-found", `no user ${quote(name)}`);
}

/** A record with `changes` applied and checked; throws UserError("invalid") on a bad value. */
export function applyChanges(record: UserRecord, changes: UserChanges): UserRecord {
  const home = changes.root ?? record.home;
  if (home === "" || home.includes("\0")) throw new UserError("invalid", "--root must be a non-empty path");
  const { perms: _p, dirs: _d, ...rest } = record;
  const perms = changes.perms === undefined ? record.perms : (changes.perms ?? undefined);
  const dirs = changes.dirs === undefined ? record.dirs : (changes.dirs ?? undefined);
  const next: Record<string, unknown> = { ...rest, home, readOnly: changes.readOnly ?? record.readOnly };
  if (perms !== undefined) next.perms = toPerms(perms);
  if (dirs !== undefined) {
    const checked = toDirs(dirs);
    if (checked === null) throw new UserError("invalid", "directory permissions need paths inside the home (no \"..\")");
    next.dirs = checked;
  }
  for (const key of LIMIT_KEYS) {
    const v = changes[key];
    if (v === undefined) continue;
    if (!Number.isSafeInteger(v) || v < 0) throw new UserError("invalid", `${key} must be a whole number >= 0`);
    next[key] = v;
  }
  return next as unknown as UserRecord;
}

/** The protocol's view of a record: effective permissions (read-only applied) and limits. */
export function toUser(record: UserRecord, home: string, anonymous = false): User {
  const dirPerms: DirPerms[] = Object.entries(record.dirs ?? {})
    .map(([p, list]) => ({ path: p, perms: effectivePerms(record, list) }))
    .sort((a, b) => b.path.length - a.path.length);
  const limits: Record<keyof UserLimits, number> = { ...NO_LIMITS };
  for (const key of LIMIT_KEYS) limits[key] = record[key] ?? 0;
  return { name: record.name, home, readOnly: record.readOnly, perms: effectivePerms(record, record.perms), dirPerms, limits, anonymous };
}

/** A permission list (all of them when unset) with read-only applied. */
function effectivePerms(record: UserRecord, list: readonly Perm[] | undefined): ReadonlySet<Perm> {
  const all = list ?? PERMS;
  return new Set(all.filter((p) => !record.readOnly || READ_PERMS.has(p)));
}

/** The first user named by the environment, or undefined when BERTH_USER is not set. A variable
 * set to "" counts as not set (an `.env` file or a compose file that lists all three and fills in
 * some), as for BERTH_USER and BERTH_CONFIG. */
async function passwordFromEnv(env: NodeJS.ProcessEnv): Promise<{ name: string; password: string; source: string } | undefined> {
  const name = env.BERTH_USER ?? "";
  const direct = env.BERTH_PASSWORD === "" ? undefined : env.BERTH_PASSWORD;
  const file = env.BERTH_PASSWORD_FILE === "" ? undefined : env.BERTH_PASSWORD_FILE;
  if (name === "") {
    if (direct !== undefined || file !== undefined) {
      throw new UserError("invalid", "BERTH_PASSWORD or BERTH_PASSWORD_FILE is set but BERTH_USER is not");
    }
    return undefined;
  }
  if (direct !== undefined && file !== undefined) {
    throw new UserError("invalid", "set only one of BERTH_PASSWORD and BERTH_PASSWORD_FILE");
  }
  if (direct !== undefined) return { name, password: direct, source: "BERTH_PASSWORD" };
  if (file === undefined) throw new UserError("invalid", "BERTH_USER is set but neither BERTH_PASSWORD nor BERTH_PASSWORD_FILE (or both are empty)");
  // A stream, not readFile: /dev/zero, or a huge file named by mistake, is read only as far as a
  // password can go; the password check then refuses it. A FIFO is read as a file is.
  const input = createReadStream(file);
  try {
    return { name, password: await readPassword(input), source: `BERTH_PASSWORD_FILE ${file}` };
  } catch (err) {
    throw new UserError("invalid", `cannot read BERTH_PASSWORD_FILE ${file}: ${systemErrorText(err)}`);
  }
}

/** Runs `check`; a UserError it throws is thrown again with ` [from <source>]` after its message. */
function fromVariable(check: () => void, source: string): void {
  try {
    check();
  } catch (err) {
    if (!(err instanceof UserError)) throw err;
    throw new UserError(err.kind, `${err.message} [from ${source}]`);
  }
}

/** Reads a password (a file's, standard input) and drops one trailing line break, and a leading
 * byte order mark (put there by editors such as Windows Notepad: invisible, never typed at a
 * login, so a password kept with it is one nobody can give). Reading stops
 * once it holds more than any password can be (with its mark and CR LF): input that never ends (`yes |`,
 * /dev/zero) would otherwise fill memory, and the password check refuses what was read. */
export async function readPassword(input: NodeJS.ReadableStream): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of input) {
    const bytes = typeof chunk === "string" ? Buffer.from(chunk) : chunk;
    chunks.push(bytes);
    size += bytes.length;
    if (size > MAX_PASSWORD_BYTES + 5) break;
  }
  return stripNewline(Buffer.concat(chunks).toString("utf8").replace(/^\uFEFF/, ""));
}

/** Drops one trailing line break (as left by `echo` or a secrets file). */
export function stripNewline(text: string): string {
  return text.replace(/\r?\n$/, "");
}
