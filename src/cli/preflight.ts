/**
 * What `berth serve` checks of its config before anything is created or listens, beyond the
 * config's own rules: the certificate and key it will read, the transfer log it will open.
 * `berth config check` runs the same checks, so a config it takes is one serve takes.
 */
import type { Config } from "../config/schema.ts";
import { checkTlsFiles } from "../data/tls.ts";
import { checkXferlogPath } from "../log/xferlog.ts";

/** Throws the ConfigError serve would stop with for `config`; creates nothing. */
export function checkBeforeStart(config: Config, cwd: string): void {
  checkTlsFiles(config, cwd);
  if (config.log.xferlog !== "") checkXferlogPath(config.log.xferlog, cwd);
}
