/**
 * Writes docs/rfc-compliance.md from the command registry (DESIGN convention 1: FEAT, HELP and
 * this table come from one source). Run with `npm run rfc-table`; a test checks it is current.
 */
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { buildRegistry } from "./commands/index.ts";
import { describePerm } from "./registry.ts";

/** The markdown table of every command berth implements. */
export function renderRfcTable(): string {
  const rows = buildRegistry()
    .all()
    .map((c) => {
      const flags = [
        c.needsLogin ? "login" : "",
        c.perm ? `perm: ${describePerm(c.perm)}` : "",
        c.opensData ? "data" : "",
        c.bypassesQueue ? "during transfer" : "",
        c.aliasOf ? `alias of ${c.aliasOf}` : "",
      ].filter(Boolean);
      return `| \`${c.verb}\` | \`${c.help.replace(/\|/g, "\\|")}\` | ${c.rfc} | ${flags.join(", ")} |`;
    });
  return [
    "# RFC compliance",
    "",
    "Generated from the command registry (`npm run rfc-table`); do not edit by hand.",
    "Any other verb of three or four letters is answered `502 Command not implemented`; any other word,",
    "`500 Syntax error, command unrecognized`.",
    "",
    "Flags: *login* = 530 before login; *perm* = the permission needed where the command acts",
    "(550 without it; hidden names are not found, see README \"Permissions\");",
    "*data* = uses the data connection and consumes REST; *during transfer* = answered while a transfer or a checksum runs.",
    "",
    "| verb | syntax | defined in | flags |",
    "| --- | --- | --- | --- |",
    ...rows,
    "",
  ].join("\n");
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(new URL("../../docs/rfc-compliance.md", import.meta.url), renderRfcTable());
}
