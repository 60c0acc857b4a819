import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { describe, it } from "node:test";
import { renderRfcTable } from "../src/protocol/rfc-table.ts";

describe("docs/rfc-compliance.md", () => {
  it("is generated from the current registry (run `npm run rfc-table` after changing commands)", () => {
    const onDisk = readFileSync(new URL("../docs/rfc-compliance.md", import.meta.url), "utf8");
    assert.equal(onDisk, renderRfcTable());
  });
});
