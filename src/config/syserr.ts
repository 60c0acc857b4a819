/**
 * Short, operator-facing wording for Node system errors (errno codes). The FTP side maps errno to
 * reply codes elsewhere; this is only for one-line messages on the command line and in logs.
 */

const TEXT: Readonly<Record<string, string>> = {
  ENOENT: "no such file or directory",
  EACCES: "permission denied",
  EPERM: "operation not permitted",
  EISDIR: "is a directory",
  ENOTDIR: "not a directory",
  EFTYPE: "not a regular file",
  EROFS: "read-only file system",
  ENOSPC: "no space left on device",
  EEXIST: "already exists",
  EADDRINUSE: "address in use",
  EADDRNOTAVAIL: "address not available",
  ECONNREFUSED: "connection refused",
  EAFNOSUPPORT: "address family not supported",
  EINVAL: "invalid argument",
  ELOOP: "too many symbolic links",
  EMFILE: "too many open files",
  ENOTFOUND: "no such host",
  EAI_AGAIN: "temporary failure in name resolution",
};

/** The errno code of `err` ("ENOENT"…), or undefined when it is not a system error. */
export function errnoCode(err: unknown): string | undefined {
  if (typeof err !== "object" || err === null || !("code" in err)) return undefined;
  const code = (err as { code: unknown }).code;
  return typeof code === "string" ? code : undefined;
}

/** A short lowercase description of a system error, e.g. "permission denied". */
export function systemErrorText(err: unknown): string {
  const code = errnoCode(err);
  if (code !== undefined && TEXT[code] !== undefined) return TEXT[code];
  if (code !== undefined) return code;
  return err instanceof Error ? firstLine(err.message) : String(err);
}

/** The first line of `text`, trimmed (messages of berth are always one line). */
export function firstLine(text: string): string {
  return (text.split(/\r?\n/, 1)[0] ?? "").trim();
}
