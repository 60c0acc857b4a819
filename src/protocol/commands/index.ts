/** Assembles the registry from the command families (one file per family). */
import { Registry } from "../registry.ts";
import { authCommands } from "./auth.ts";
import { dataCommands } from "./data.ts";
import { digestCommands } from "./digest.ts";
import { dirCommands } from "./dirs.ts";
import { fileCommands } from "./files.ts";
import { listingCommands } from "./listing.ts";
import { miscCommands } from "./misc.ts";
import { tlsCommands } from "./tls.ts";
import { transferCommands } from "./transfer.ts";

/** The full command registry of berth. */
export function buildRegistry(): Registry {
  const registry = new Registry();
  registry
    .add(authCommands)
    .add(miscCommands(registry))
    .add(dirCommands)
    .add(fileCommands)
    .add(digestCommands)
    .add(listingCommands)
    .add(transferCommands)
    .add(dataCommands)
    .add(tlsCommands);
  return registry;
}
