/**
 * Directory commands (RFC 959 §4.1.1, §4.1.3): PWD, CWD, CDUP, MKD, RMD and their RFC 775 X-aliases.
 * 257 replies quote the path and double any quote in it (RFC 959 appendix II).
 */
import { quote257 } from "../../fs/vpath.ts";
import { FtpError } from "../errors.ts";
import { alias, type CommandSpec } from "../registry.ts";
import type { Session } from "../session.ts";

async function cwd(s: Session, arg: string): Promise<void> {
  await changeDir(s, arg);
  s.reply(250, "Directory successfully changed");
}

async function cdup(s: Session): Promise<void> {
  await changeDir(s, "..");
  s.reply(200, "Directory successfully changed");
}

async function changeDir(s: Session, arg: string): Promise<void> {
  const target = s.resolve(arg);
  const fs = s.requireFs();
  if (!(await fs.canEnter(target))) {
    // A file there is there: "No such directory" would tell the client the name is free. A link
    // that leads nowhere (or out of the jail) leads to no file either.
    const file = await fs.stat(target).then(
      (st) => st.type !== "dir",
      () => false,
    );
    throw new FtpError(550, file ? "Not a directory" : "No such directory");
  }
  s.cwd = target;
}

async function mkd(s: Session, arg: string): Promise<void> {
  const target = s.resolve(arg);
  await s.requireFs().mkdir(target);
  s.reply(257, `${quote257(target)} created`);
}

async function rmd(s: Session, arg: string): Promise<void> {
  const target = s.resolve(arg);
  if (target === s.cwd || s.cwd.startsWith(target + "/")) {
    throw new FtpError(550, "Can't remove the current directory");
  }
  await s.requireFs().rmdir(target);
  s.reply(250, "Directory removed");
}

const base = { needsLogin: true, rfc: "RFC 959 §4.1.3" } as const;
const PWD: CommandSpec = {
  ...base,
  verb: "PWD",
  arg: "none",
  handler: (s) => s.reply(257, `${quote257(s.cwd)} is the current directory`),
  help: "PWD",
};
// CWD needs no permission, only a visible directory (as in ProFTPD and SFTPGo): a drop box
// ("/in=upload", nothing else) must be enterable without being listable.
const CWD: CommandSpec = {
  ...base,
  verb: "CWD",
  arg: "required",
  perm: { need: [], scope: "dir" },
  handler: cwd,
  help: "CWD <path>",
  rfc: "RFC 959 §4.1.1",
};
const CDUP: CommandSpec = { ...base, verb: "CDUP", arg: "none", handler: cdup, help: "CDUP", rfc: "RFC 959 §4.1.1" };
const MKD: CommandSpec = {
  ...base,
  verb: "MKD",
  arg: "required",
  perm: { need: ["mkdir"], creates: true, named: true },
  handler: mkd,
  help: "MKD <path>",
};
const RMD: CommandSpec = { ...base, verb: "RMD", arg: "required", perm: { need: ["rmdir"] }, handler: rmd, help: "RMD <path>" };

/** The directory family. */
export const dirCommands: CommandSpec[] = [
  PWD,
  CWD,
  CDUP,
  MKD,
  RMD,
  alias("XPWD", PWD),
  alias("XCWD", CWD),
  alias("XCUP", CDUP),
  alias("XMKD", MKD),
  alias("XRMD", RMD),
];
