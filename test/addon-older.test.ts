/**
 * An addon built from an older source (a checkout updated without `npm ci`): berth uses what that
 * addon has whose calls are the same, and Node's own calls for the rest, never an older call as if
 * it were the newer one (src/native.ts, pick).
 *
 * The addon is replaced in this process's module cache before anything loads it, so the whole test
 * file runs against it: the helpers are imported only afterwards.
 */
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { describe, it } from "node:test";

const ADDON = fileURLToPath(new URL("../native/build/berth_native.node", import.meta.url));
const require = createRequire(import.meta.url);

/** The built addon's exports, or null where it is not built (or not Linux). */
function builtAddon(): Record<string, unknown> | null {
  if (process.platform !== "linux") return null;
  try {
    return require(ADDON) as Record<string, unknown>;
  } catch {
    return null;
  }
}

const built = builtAddon();

/** An addon from before passive connections were accepted into a typed array: its `acceptOne(fd)`
 * gave `[descriptor, remote address]` (or -errno), and it had no `acceptInto`. Made from the built
 * addon's own accept (under its name in this source), so that it accepts for real. It had no
 * `createBeneath` either (new files were created through their directory held open). */
function olderAddon(real: Record<string, unknown>): Record<string, unknown> {
  const accept = (real.acceptInto ?? real.acceptOne) as (fd: number, out: Int32Array) => string | number;
  const out = new Int32Array(1);
  const older: Record<string, unknown> = { ...real };
  delete older.acceptInto;
  delete older.createBeneath;
  older.acceptOne = (fd: number): [number, string] | number => {
    const r = accept(fd, out);
    return typeof r === "number" ? r : [out[0] as number, r];
  };
  return older;
}

describe("an addon built from the source before acceptOne changed its form", { skip: built === null && "addon not built" }, () => {
  it("passive downloads and uploads still work (through Node's listeners, and new files through their directory), the server stays up, nothing leaks", async () => {
    const cached = require.cache[require.resolve(ADDON)];
    assert.ok(cached && built);
    cached.exports = olderAddon(built);
    const { createBeneathBinding, listenBinding } = await import("../src/native.ts");
    const { retrieveText } = await import("./helpers/raw.ts");
    const { ftpLogin, rawLogin, upload, withServer } = await import("./helpers/run.ts");
    const { readFile, writeFile } = await import("node:fs/promises");
    const { join } = await import("node:path");
    await withServer(async (t) => {
      await writeFile(join(t.home("alice"), "f.txt"), "data");
      const raw = await rawLogin(t);
      try {
        for (let i = 0; i < 3; i++) assert.equal(await retrieveText(raw, "f.txt"), "data");
        await raw.expect("NOOP", 200);
      } finally {
        await raw.close();
      }
      const client = await ftpLogin(t);
      try {
        await upload(client, "new", "new.txt");
        await upload(client, "replaced", "new.txt");
      } finally {
        client.close();
      }
      assert.equal(await readFile(join(t.home("alice"), "new.txt"), "utf8"), "replaced");
    });
    assert.equal(createBeneathBinding(), null);
    // The older addon's accept was not taken for the newer one: Node's listeners served them.
    assert.equal(listenBinding(), null);
  });
});
