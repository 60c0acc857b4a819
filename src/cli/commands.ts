/**
 * The `user …` and `config check` commands. Each returns its exit status; mistakes are thrown
 * (CliError, ConfigError, UserError) and turned into one line by main.ts.
 */
import { existsSync } from "node:fs";
import path from "node:path";
import { stringify } from "yaml";
import { configFilePath, loadConfig, redactConfig, resolvePath } from "../config/load.ts";
import type { Config } from "../config/schema.ts";
import type { Logger } from "../log/logger.ts";
import { UserStore, type UserInfo } from "../auth/store.ts";
import type { ParsedCommand } from "./args.ts";
import { newPassword, type Streams } from "./prompt.ts";

/** What a command may use of the process: streams, environment and working directory. */
export interface CliContext extends Streams {
  readonly env: NodeJS.ProcessEnv;
  readonly cwd: string;
}

/** Loads the config named by --config (or the default) for this context. */
export function configFor(cmd: ParsedCommand, ctx: CliContext): Config {
  const file = cmd.options.config;
  return loadConfig({ file: typeof file === "string" ? file : undefined, env: ctx.env, cwd: ctx.cwd });
}

/** The user store of `config`, with paths resolved against the working directory. */
export function storeFor(config: Config, cwd: string, logger?: Logger): UserStore {
  return new UserStore({
    file: resolvePath(config.users.file, cwd),
    storageRoot: resolvePath(config.storage.root, cwd),
    bcryptCost: config.users.bcryptCost,
    logger,
  });
}

/** Runs `user add|passwd|del|list`. */
export async function runUser(cmd: ParsedCommand, ctx: CliContext): Promise<number> {
  const store = storeFor(configFor(cmd, ctx), ctx.cwd);
  const name = cmd.args.NAME ?? "";
  const fromStdin = cmd.options["password-stdin"] === true;
  const say = (line: string): void => void ctx.stdout.write(`${line}\n`);
  switch (cmd.name) {
    case "user add": {
      const root = cmd.options.root;
      const password = await newPassword(ctx, fromStdin, `"${name}"`);
      const user = await store.add(name, password, {
        root: typeof root === "string" ? root : undefined,
        readOnly: cmd.options["read-only"] === true,
      });
      say(`berth: added user "${user.name}" (home ${user.home}${user.readOnly ? ", read-only" : ""})`);
      return 0;
    }
    case "user passwd":
      await store.passwd(name, await newPassword(ctx, fromStdin, `"${name}"`));
      say(`berth: password of "${name}" changed`);
      return 0;
    case "user del": {
      const gone = await store.del(name);
      say(`berth: deleted user "${gone.name}" (files in ${gone.home} kept)`);
      return 0;
    }
    default:
      say(formatUserTable(await store.list()));
      return 0;
  }
}

/** A plain-text table of users: name, home, read-only. */
export function formatUserTable(users: readonly UserInfo[]): string {
  if (users.length === 0) return "no users";
  const rows = [["NAME", "HOME", "READ-ONLY"], ...users.map((u) => [u.name, u.home, u.readOnly ? "yes" : "no"])];
  const width = (col: number): number => Math.max(...rows.map((r) => (r[col] ?? "").length));
  const w0 = width(0);
  const w1 = width(1);
  return rows.map(([a = "", b = "", c = ""]) => `${a.padEnd(w0)}  ${b.padEnd(w1)}  ${c}`.trimEnd()).join("\n");
}

/** Runs `config check`: validates, then prints the effective config as YAML with secrets hidden. */
export function runConfigCheck(cmd: ParsedCommand, ctx: CliContext): number {
  const config = configFor(cmd, ctx);
  const given = cmd.options.config;
  const { file } = configFilePath({ file: typeof given === "string" ? given : undefined, env: ctx.env });
  const found = existsSync(path.resolve(ctx.cwd, file));
  ctx.stdout.write(`# effective configuration: ${found ? file : "defaults (no config file)"} + environment\n`);
  ctx.stdout.write(stringify(redactConfig(config), { defaultStringType: "QUOTE_DOUBLE", defaultKeyType: "PLAIN" }));
  return 0;
}
