/**
 * berth for the benchmarks when the command line cannot yet switch the login cache on: the same
 * start-up as `berth serve --config FILE` (config file + environment, user store, server), with the store wrapped in the login cache (src/auth/cache.ts) for
 * BENCH_LOGIN_CACHE_TTL seconds (default 60; 0 = off). Exits on SIGTERM/SIGINT.
 *
 *   node --import tsx bench/berth-server.ts serve --config berth.yaml
 */
import { LoginCache } from "../src/auth/cache.ts";
import { UserStore } from "../src/auth/store.ts";
import { loadConfig, resolvePath } from "../src/config/load.ts";
import { createLogger } from "../src/log/logger.ts";
import { startServer } from "../src/server.ts";

const argv = process.argv.slice(2);
const at = argv.indexOf("--config");
const file = at >= 0 ? argv[at + 1] : undefined;
const config = loadConfig({ file, env: process.env, cwd: process.cwd() });
const logger = createLogger({ level: config.log.level, pretty: "never" });
const store = new UserStore({
  file: resolvePath(config.users.file, process.cwd()),
  storageRoot: resolvePath(config.storage.root, process.cwd()),
  bcryptCost: config.users.bcryptCost,
  logger,
});
const ttl = Number(process.env.BENCH_LOGIN_CACHE_TTL ?? "60");
const users = ttl > 0 ? new LoginCache(store, { ttlMs: ttl * 1000, maxEntries: 10_000 }) : store;
const server = await startServer({ config, logger, users });

let stopping = false;
const stop = (): void => {
  if (stopping) process.exit(0);
  stopping = true;
  void server.shutdown(1000).then(() => process.exit(0));
};
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
