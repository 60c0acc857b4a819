/**
 * How the operator started berth, so that hints name a command that works for them: `berth` (the
 * image, a global install: bin/berth found on the PATH), the path of bin/berth they ran, or the
 * npm script of a checkout. With another config file than the default, the hint names it too, and
 * it sets the users file and storage root the environment sets.
 */
import { realpathSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { configFilePath, DEFAULT_CONFIG_FILE, envKey } from "../config/load.ts";

/** bin/berth of this installation. */
const BIN = fileURLToPath(new URL("../../bin/berth", import.meta.url));

/** The command line of a checkout's npm script. */
export const NPM_COMMAND = "npm run --silent berth --";

/** The real path of `file`, or null when it does not exist. */
function real(file: string): string | null {
  try {
    return realpathSync(file);
  } catch {
    return null;
  }
}

/**
 * The command that runs berth the way this process was started: `script` is the file node was
 * given (process.argv[1]). bin/berth is "berth" when the PATH finds this one under that name, else
 * the path it was run by; anything else (src/cli/main.ts through tsx) is the npm script.
 */
export function berthCommand(script: string | undefined, env: NodeJS.ProcessEnv): string {
  const bin = real(BIN);
  if (script === undefined || bin === null || real(script) !== bin) return NPM_COMMAND;
  for (const dir of (env.PATH ?? "").split(path.delimiter)) {
    if (dir === "") continue;
    const found = path.join(dir, "berth");
    if (real(found) !== null) return real(found) === bin ? "berth" : shellWord(script);
  }
  return shellWord(script);
}

/** " --config FILE" when the config file in use is not the default one, else "". */
export function configOption(given: string | undefined, env: NodeJS.ProcessEnv, cwd: string): string {
  const { file, explicit } = configFilePath({ file: given, env });
  if (!explicit || path.resolve(cwd, file) === path.resolve(cwd, DEFAULT_CONFIG_FILE)) return "";
  return ` --config ${shellWord(file)}`;
}

/** The config keys that decide which users file a `user` command changes and where it puts homes. */
const USER_STORE_KEYS = new Set(["users.file", "storage.root"]);

/**
 * "BERTH_USERS_FILE=FILE " and "BERTH_STORAGE_ROOT=DIR " for those of them `env` sets (as a systemd
 * EnvironmentFile does), else "": a hint's command typed into a shell without them would change
 * another users file. Each variable is named as it was set, since underscores inside a key's name
 * are optional.
 */
export function storeVariables(env: NodeJS.ProcessEnv): string {
  return Object.keys(env)
    .filter((name) => name.startsWith("BERTH_"))
    .sort()
    .flatMap((name) => {
      const key = envKey(name);
      const value = env[name];
      return key !== undefined && value !== undefined && USER_STORE_KEYS.has(key.join(".")) ? [`${name}=${shellWord(value)} `] : [];
    })
    .join("");
}

/** `word` as one word for a POSIX shell: as it is when it is safe, else single-quoted. */
export function shellWord(word: string): string {
  return /^[A-Za-z0-9_@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}
