/**
 * Anonymous FTP (RFC 1635), off unless `anonymous.enabled`: USER anonymous or ftp with any password
 * logs in to one shared root with the permissions of `anonymous.perms` (default read-only).
 * While it is on, those two names always mean anonymous, as in vsftpd and ProFTPD: a users-file
 * account with either name cannot log in over FTP (`berth serve` warns about it at start).
 */
import path from "node:path";
import type { Config } from "../config/schema.ts";
import { parseDirPerms, parsePermList } from "./perms.ts";
import { NO_LIMITS, READ_PERMS, type DirPerms, type Perm, type User } from "./types.ts";

/** The login names of anonymous FTP (RFC 1635 §2), compared case-insensitively. */
export const ANONYMOUS_NAMES: readonly string[] = ["anonymous", "ftp"];

/** True when `name` asks for anonymous FTP. */
export function isAnonymousName(name: string): boolean {
  return ANONYMOUS_NAMES.includes(name.toLowerCase());
}

/** The anonymous user of `config` (absolute home: `anonymous.root` against the storage root). */
export function anonymousUser(anon: Config["anonymous"], storageRoot: string): User {
  const perms = new Set<Perm>(parsePermList(anon.perms) ?? []);
  const dirPerms: DirPerms[] = Object.entries(parseDirPerms(anon.dirPerms) ?? {})
    .map(([p, list]) => ({ path: p, perms: new Set<Perm>(list) }))
    .sort((a, b) => b.path.length - a.path.length);
  const readOnly = [perms, ...dirPerms.map((d) => d.perms)].every((set) => [...set].every((p) => READ_PERMS.has(p)));
  return {
    name: "anonymous",
    home: path.resolve(storageRoot, anon.root),
    readOnly,
    perms,
    dirPerms,
    limits: NO_LIMITS,
    anonymous: true,
  };
}

/** The users-file names that anonymous FTP hides while it is enabled. */
export function shadowedNames(names: readonly string[]): string[] {
  return names.filter(isAnonymousName);
}
