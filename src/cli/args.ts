/**
 * The command line grammar: which commands exist, their arguments and options, the usage text,
 * and a parser that turns argv into a ParsedCommand or a CliError with one clear line.
 */

/** An error the CLI reports as one line `berth: <message>` and exits with `exitCode`. */
export class CliError extends Error {
  /** 2 for a usage or config mistake, 1 for any other failure. */
  readonly exitCode: 1 | 2;

  /** Builds an error with a one-line message. */
  constructor(message: string, exitCode: 1 | 2) {
    super(message);
    this.name = "CliError";
    this.exitCode = exitCode;
  }
}

/** A usage mistake (exit 2). */
export function usageError(message: string): CliError {
  return new CliError(`${message} (see: berth --help)`, 2);
}

/** Names of the commands. */
export type CommandName =
  | "serve"
  | "user add"
  | "user passwd"
  | "user set"
  | "user del"
  | "user list"
  | "config check"
  | "ctl status"
  | "ctl sessions"
  | "ctl kick"
  | "ctl reload"
  | "ctl drain"
  | "ctl watch"
  | "selftest"
  | "help"
  | "version";

/** One command's grammar. */
interface CommandSpec {
  readonly name: CommandName;
  readonly positionals: readonly string[];
  /** Option name (without "--") → whether it takes a value. */
  readonly options: Readonly<Record<string, "value" | "flag">>;
}

const CONFIG = { config: "value" } as const;
const PASSWORD_STDIN = { "password-stdin": "flag" } as const;
const CTL = { ...CONFIG, socket: "value" } as const;
/** What `user add` and `user set` can give a user besides the password. */
const USER_POLICY = {
  root: "value",
  "read-only": "flag",
  perms: "value",
  "dir-perms": "value",
  "quota-bytes": "value",
  "quota-files": "value",
  "bandwidth-up": "value",
  "bandwidth-down": "value",
  "max-sessions": "value",
} as const;

const SPECS: readonly CommandSpec[] = [
  { name: "serve", positionals: [], options: CONFIG },
  {
    name: "user add",
    positionals: ["NAME"],
    options: { ...CONFIG, ...PASSWORD_STDIN, ...USER_POLICY },
  },
  { name: "user set", positionals: ["NAME"], options: { ...CONFIG, ...USER_POLICY, "read-write": "flag" } },
  { name: "user passwd", positionals: ["NAME"], options: { ...CONFIG, ...PASSWORD_STDIN } },
  { name: "user del", positionals: ["NAME"], options: CONFIG },
  { name: "user list", positionals: [], options: CONFIG },
  { name: "config check", positionals: [], options: CONFIG },
  { name: "ctl status", positionals: [], options: CTL },
  { name: "ctl sessions", positionals: [], options: { ...CTL, json: "flag" } },
  { name: "ctl kick", positionals: ["ID"], options: CTL },
  { name: "ctl reload", positionals: [], options: CTL },
  { name: "ctl drain", positionals: [], options: CTL },
  { name: "ctl watch", positionals: [], options: CTL },
  { name: "selftest", positionals: [], options: { ...CONFIG, host: "value", port: "value" } },
];

/** The usage text printed by `berth --help`. */
export const USAGE = `usage: berth [command] [options]

commands:
  serve [--config FILE]              run the server in the foreground (the default)
  user add NAME [--root DIR] [--read-only] [--password-stdin] [limits and permissions]
                                     add a user; --root is absolute or relative to storage.root
                                     (default <storage.root>/NAME); asks for the password on the
                                     terminal unless --password-stdin
  user set NAME [--root DIR] [--read-only|--read-write] [limits and permissions]
                                     change a user (the password stays)
  user passwd NAME [--password-stdin]
                                     change a user's password
  user del NAME                      delete a user (their files are kept)
  user list                          list the users, their permissions, limits and quota use
  config check [--config FILE]       validate and print the effective config (secrets hidden)
  ctl status|sessions|kick ID|reload|drain|watch [--socket PATH]
                                     talk to a running server through its admin socket
                                     (admin.socket): overview, session list (--json), disconnect
                                     a session, reload the config, graceful stop, live view
  selftest [--host H] [--port P]     check a running server as a client would (temporary user,
                                     EPSV/PASV, upload, download, resume, TLS when on) and print
                                     the docker port mapping the config needs
  help, --help                       show this text
  --version                          show the version

limits and permissions (user add, user set):
  --perms LIST                       what the user may do: "all", "none" or a comma list of
                                     list,download,upload,overwrite,delete,rename,mkdir,rmdir,chmod
  --dir-perms "DIR=LIST;DIR=LIST"    overrides inside the home, e.g. "/pub=list,download;/in=list,upload"
                                     ("none" removes them)
  --quota-bytes SIZE --quota-files N most bytes and files in the home (e.g. 10G; 0 = config default)
  --bandwidth-up RATE --bandwidth-down RATE
                                     bytes per second across the user's sessions (e.g. 5M; 0 = default)
  --max-sessions N                   sessions at once (0 = limits.maxSessionsPerUser)

options:
  --config FILE   config file (default $BERTH_CONFIG, else config/berth.yaml); every command takes it,
                  after its name or before it (berth --config FILE serve)

Every config key can be overridden by an environment variable named after its path, e.g.
BERTH_LISTEN_PORT=21 or BERTH_PASSIVE_PORTS=30000-30009.
Exit status: 0 success, 2 usage or config error, 1 other failure.
`;

/** A command with its arguments. */
export interface ParsedCommand {
  readonly name: CommandName;
  /** Positional arguments by their names ("NAME"). */
  readonly args: Readonly<Record<string, string>>;
  /** Options given: a string for value options, true for flags. */
  readonly options: Readonly<Record<string, string | true>>;
}

const HELP_WORDS = new Set(["help", "--help", "-h"]);
const VERSION_WORDS = new Set(["version", "--version", "-V"]);
const GROUPS: Readonly<Record<string, readonly string[]>> = {
  user: ["add", "set", "passwd", "del", "list"],
  config: ["check"],
  ctl: ["status", "sessions", "kick", "reload", "drain", "watch"],
};

/** The subcommands of group `word`, or undefined when it names none (also for words such as
 * "constructor" that every object inherits). */
function groupOf(word: string): readonly string[] | undefined {
  return Object.hasOwn(GROUPS, word) ? GROUPS[word] : undefined;
}

/** Finds the command named at the start of argv; returns it and the remaining tokens. */
function pickCommand(argv: readonly string[]): { spec: CommandSpec | "help" | "version"; rest: readonly string[] } {
  const [first, second] = argv;
  if (first === undefined || (first.startsWith("-") && !HELP_WORDS.has(first) && !VERSION_WORDS.has(first))) {
    return { spec: specOf("serve"), rest: argv };
  }
  if (HELP_WORDS.has(first)) {
    // `help user`, `help user add`: the one usage text covers every command; an unknown one is a
    // mistake, said as for the command itself.
    const topic = argv.slice(1).filter((t) => !HELP_WORDS.has(t));
    const option = topic.find((t) => t.startsWith("-"));
    if (option !== undefined) throw usageError(`unexpected option "${option}" for "berth ${first}"`);
    if (topic.length > 0 && !(topic.length === 1 && groupOf(topic[0] as string) !== undefined)) pickCommand(topic);
    return { spec: "help", rest: [] };
  }
  if (VERSION_WORDS.has(first)) {
    if (second !== undefined) throw usageError(`unexpected argument "${second}" for "berth ${first}"`);
    return { spec: "version", rest: [] };
  }
  if (first === "serve") return { spec: specOf("serve"), rest: argv.slice(1) };
  if (first === "selftest") return { spec: specOf("selftest"), rest: argv.slice(1) };
  const subs = groupOf(first);
  if (subs === undefined) throw usageError(`unknown command "${first}"`);
  if (second === undefined || second.startsWith("-")) {
    if (second !== undefined && HELP_WORDS.has(second)) return { spec: "help", rest: [] };
    throw usageError(`"${first}" needs a subcommand: ${subs.join(", ")}`);
  }
  if (!subs.includes(second)) throw usageError(`unknown command "${first} ${second}" (try: ${subs.join(", ")})`);
  return { spec: specOf(`${first} ${second}` as CommandName), rest: argv.slice(2) };
}

/** The spec of a known command. */
function specOf(name: CommandName): CommandSpec {
  const spec = SPECS.find((s) => s.name === name);
  if (spec === undefined) throw new Error(`no spec for ${name}`);
  return spec;
}

/** argv with a `--config FILE` (or `--config=FILE`) written before the command moved after the
 * command and its arguments (before a "--", which ends the options): `berth --config /etc/berth.yaml
 * serve` is `berth serve --config …`, as every command takes it (git -C and docker --config are
 * written so). Read as given, the option picked the default command, serve, whose "unexpected
 * argument" was then the command itself. */
function configFirst(argv: readonly string[]): readonly string[] {
  const [first, value] = argv;
  // The value as readOption takes one: not empty, and not an option of its own.
  const taken = first === "--config" && value !== undefined && value !== "" && !value.startsWith("--") ? 2 : first?.startsWith("--config=") === true ? 1 : 0;
  const command = argv[taken];
  if (taken === 0 || command === undefined || command.startsWith("-")) return argv;
  const rest = argv.slice(taken);
  const end = rest.indexOf("--");
  const at = end === -1 ? rest.length : end;
  return [...rest.slice(0, at), ...argv.slice(0, taken), ...rest.slice(at)];
}

/** Parses argv (without node and the script) into a command; throws CliError on a usage mistake. */
export function parseArgv(argv: readonly string[]): ParsedCommand {
  const { spec, rest } = pickCommand(configFirst(argv));
  if (spec === "help" || spec === "version") return { name: spec, args: {}, options: {} };
  if (rest.some((t) => HELP_WORDS.has(t) && t !== "help")) return { name: "help", args: {}, options: {} };
  const options: Record<string, string | true> = {};
  const positionals: string[] = [];
  for (let i = 0; i < rest.length; i++) {
    const token = rest[i] ?? "";
    if (token === "--") {
      positionals.push(...rest.slice(i + 1));
      break;
    }
    if (!token.startsWith("-") || token === "-") {
      positionals.push(token);
      continue;
    }
    i += readOption(spec, token, rest[i + 1], options);
  }
  return { name: spec.name, args: bindPositionals(spec, positionals), options };
}

/** Reads one option into `options`; returns how many extra tokens it consumed (0 or 1). */
function readOption(
  spec: CommandSpec,
  token: string,
  next: string | undefined,
  options: Record<string, string | true>,
): number {
  const eq = token.indexOf("=");
  const name = token.slice(2, eq === -1 ? undefined : eq);
  const kind = token.startsWith("--") && Object.hasOwn(spec.options, name) ? spec.options[name] : undefined;
  if (kind === undefined) throw usageError(`unknown option ${token.split("=")[0] ?? token} for "berth ${spec.name}"`);
  if (Object.hasOwn(options, name)) throw usageError(`option --${name} given twice`);
  if (kind === "flag") {
    if (eq !== -1) throw usageError(`option --${name} takes no value`);
    options[name] = true;
    return 0;
  }
  const value = eq === -1 ? next : token.slice(eq + 1);
  if (value === undefined || value === "" || (eq === -1 && value.startsWith("--"))) {
    throw usageError(`option --${name} needs a value`);
  }
  options[name] = value;
  return eq === -1 ? 1 : 0;
}

/** Maps positional tokens to the spec's names; too few or too many is a usage error. */
function bindPositionals(spec: CommandSpec, tokens: readonly string[]): Record<string, string> {
  const args: Record<string, string> = {};
  spec.positionals.forEach((name, i) => {
    const value = tokens[i];
    if (value === undefined) throw usageError(`"berth ${spec.name}" needs ${name}`);
    args[name] = value;
  });
  const extra = tokens[spec.positionals.length];
  if (extra !== undefined) {
    // What follows the name of a command that sets a password is likely the password: not echoed.
    if ("password-stdin" in spec.options) {
      throw usageError(`unexpected argument after NAME for "berth ${spec.name}" (not shown; a password is read from the terminal or --password-stdin, never from an argument)`);
    }
    // `user set` keeps the password, but what follows the name there may be one all the same (a
    // new password for the user being "set"): not echoed either.
    if (spec.name === "user set") {
      throw usageError(`unexpected argument after NAME for "berth user set" (not shown, in case it is a password: "berth user passwd NAME" changes that)`);
    }
    throw usageError(`unexpected argument "${extra}" for "berth ${spec.name}"`);
  }
  return args;
}
