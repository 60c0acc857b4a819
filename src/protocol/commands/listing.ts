/**
 * Listings: LIST and NLST (RFC 959 §4.1.3), MLSD and MLST (RFC 3659 §7), and STAT <path>. The
 * listing is built before 150, so a bad path is a plain 550 and no data connection is wasted.
 */
import { Transfer, sendBuffer } from "../../data/transfer.ts";
import { formatListLine, formatMlsxSelected, permFacts } from "../../fs/format.ts";
import type { DirEntry, VirtualPath } from "../../fs/types.ts";
import { FtpError } from "../errors.ts";
import { formatBlockReply } from "../reply.ts";
import type { CommandSpec } from "../registry.ts";
import type { Session } from "../session.ts";
import { runTransfer } from "./xfer.ts";

/** Splits "LIST -la dir" into options and path; clients send ls-style flags. */
export function splitListArg(arg: string): string {
  let rest = arg.trim();
  while (rest.startsWith("-")) {
    const sp = rest.indexOf(" ");
    if (sp === -1) return "";
    rest = rest.slice(sp + 1).trimStart();
  }
  return rest;
}

async function entriesOf(s: Session, arg: string): Promise<{ path: VirtualPath; entries: DirEntry[] }> {
  const path = s.resolve(splitListArg(arg));
  return { path, entries: await s.requireFs().list(path) };
}

async function sendListing(s: Session, path: VirtualPath, text: string): Promise<void> {
  const data = Buffer.from(text, "utf8");
  const t = new Transfer("list", path, data.length);
  await runTransfer(s, {
    transfer: t,
    opening: "Here comes the directory listing",
    open: async () => undefined,
    move: (tr, socket) => sendBuffer(tr, socket, data, s.ctx.config.limits.stalledTimeout * 1000),
    done: "Directory send OK",
  });
}

async function list(s: Session, arg: string): Promise<void> {
  const { path, entries } = await entriesOf(s, arg);
  const now = new Date();
  let text = "";
  for (const e of entries) text += formatListLine(e, now) + "\r\n";
  await sendListing(s, path, text);
}

async function nlst(s: Session, arg: string): Promise<void> {
  const { path, entries } = await entriesOf(s, arg);
  let text = "";
  for (const e of entries) text += e.name + "\r\n";
  await sendListing(s, path, text);
}

function mlsxLine(s: Session, e: DirEntry): string {
  const perm = permFacts(e.stat, s.user?.readOnly ?? true);
  return formatMlsxSelected(e, s.mlstFacts, { perm });
}

async function mlsd(s: Session, arg: string): Promise<void> {
  const path = s.resolve(arg);
  const fs = s.requireFs();
  // RFC 3659 §7.2.1: MLSD of something that is not a directory is an error.
  if (!(await fs.isDirectory(path))) throw new FtpError(501, "Not a directory");
  const entries = await fs.list(path);
  let text = "";
  for (const e of entries) text += mlsxLine(s, e) + "\r\n";
  await sendListing(s, path, text);
}

async function mlst(s: Session, arg: string): Promise<void> {
  const path = s.resolve(arg);
  const st = await s.requireFs().stat(path);
  const line = mlsxLine(s, { name: path, stat: st });
  // RFC 3659 §7.2: the fact line starts with one space.
  s.write(formatBlockReply(250, `Listing ${path}`, [` ${line}`], "End"));
}

/** STAT <path>: the LIST output over the control connection (RFC 959 §4.1.3, code 213). */
export async function statPath(s: Session, arg: string): Promise<void> {
  const { path, entries } = await entriesOf(s, arg);
  const now = new Date();
  const lines = entries.map((e) => ` ${formatListLine(e, now)}`);
  s.write(formatBlockReply(213, `Status of ${path}:`, lines, "End of status"));
}

const base = { needsLogin: true, opensData: true, rfc: "RFC 959 §4.1.3" } as const;

/** The listing family. */
export const listingCommands: CommandSpec[] = [
  { ...base, verb: "LIST", arg: "optional", handler: list, help: "LIST [<path>]" },
  { ...base, verb: "NLST", arg: "optional", handler: nlst, help: "NLST [<path>]" },
  { ...base, verb: "MLSD", arg: "optional", handler: mlsd, help: "MLSD [<path>]", rfc: "RFC 3659 §7" },
  {
    verb: "MLST",
    needsLogin: true,
    arg: "optional",
    handler: mlst,
    feat: () => ["TVFS"],
    help: "MLST [<path>]",
    rfc: "RFC 3659 §7",
  },
];
