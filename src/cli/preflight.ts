/**
 * What `berth serve` checks of its config before anything is created or listens, beyond the
 * config's own rules: the certificate and key it will read, the transfer log it will open, the
 * path of its admin socket, the storage root, and (serve only) that the hosts it listens on resolve.
 * `berth config check` runs the same file checks, so a config it takes is one serve takes.
 */
import { statSync } from "node:fs";
import { lookup } from "node:dns/promises";
import { isIP } from "node:net";
import { checkAdminSocketPath } from "../admin/socket.ts";
import { ConfigError, resolvePath } from "../config/load.ts";
import { parseListen, type Config } from "../config/schema.ts";
import { errnoCode, systemErrorText } from "../config/syserr.ts";
import { checkTlsFiles } from "../data/tls.ts";
import { checkXferlogPath } from "../log/xferlog.ts";

/** Throws the ConfigError serve would stop with for `config`; creates nothing. */
export function checkBeforeStart(config: Config, cwd: string): void {
  checkTlsFiles(config, cwd);
  if (config.log.xferlog !== "") checkXferlogPath(config.log.xferlog, cwd);
  // Only what a path alone tells: whether a server answers there, and whether a socket can be
  // bound there, serve finds out as it starts (a running server's own socket is no mistake).
  if (config.admin.socket !== "") checkAdminSocketPath(resolvePath(config.admin.socket, cwd));
  checkStorageRoot(resolvePath(config.storage.root, cwd));
}

/** storage.root, where homes are made, must be a directory where it exists (one that does not is
 * made when a home is): a file there fails every home below it, a first start's demo user's only
 * once the server listens. What cannot be looked at (permission) is left to where homes are made. */
function checkStorageRoot(root: string): void {
  let isDirectory: boolean;
  try {
    isDirectory = statSync(root).isDirectory();
  } catch (err) {
    if (errnoCode(err) !== "ENOTDIR") return;
    isDirectory = false;
  }
  if (!isDirectory) throw new ConfigError("storage.root", `storage.root ${root} is not a directory`);
}

/**
 * Looks up the host names serve listens on (listen.host, the host of metrics.listen) as listen()
 * will, and the one PASV announces (passive.address, to IPv4); one that does not resolve is a
 * ConfigError naming its key. Not in `config check`: a name
 * may resolve only where the server runs.
 */
export async function checkHostsResolve(config: Config): Promise<void> {
  await resolves(config.listen.host, "listen.host", "listen.host");
  const metrics = config.metrics.listen === "" ? null : parseListen(config.metrics.listen);
  if (metrics !== null) await resolves(metrics.host, "metrics.listen", `metrics.listen ${JSON.stringify(config.metrics.listen)}:`);
  // What PASV announces to clients from outside: a name without an IPv4 address would give each
  // of them 425, as vsftpd and pure-ftpd refuse to start on one. Only a definite answer stops the
  // start: a resolver that does not answer now (at boot, say) is logged and asked again at PASV.
  await checkPassiveAddress(config);
}

/** The passive.address part of checkHostsResolve: also what a reload that changes the key checks. */
export async function checkPassiveAddress(config: Config): Promise<void> {
  if (config.passive.address !== "") await resolves(config.passive.address, "passive.address", "passive.address", 4);
}

/** Throws a ConfigError naming `key`, its message starting with `label`, when `host` does not
 * resolve; with `family`, only when it has no address of that family for sure (ENOTFOUND), not
 * when the lookup could not be made now. */
async function resolves(host: string, key: string, label: string, family?: 4): Promise<void> {
  if (isIP(host) !== 0) return;
  try {
    await lookup(host, family === undefined ? {} : { family });
  } catch (err) {
    if (family !== undefined && errnoCode(err) !== "ENOTFOUND") return;
    const to = family === undefined ? "" : " to an IPv4 address";
    throw new ConfigError(key, `${label} ${host} cannot be resolved${to} (${systemErrorText(err)})`);
  }
}
