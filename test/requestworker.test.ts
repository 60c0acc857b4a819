/**
 * The worker behind listings' stats and checksums (fs/requestworker.ts): a failed worker is started
 * again for the next request, and only failures in a row, with no answer between them, stop it for
 * good (the caller then does the work itself).
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { MAX_FAILURES, RequestWorker, type WorkerAnswer } from "../src/fs/requestworker.ts";

/** Answers {id} to a request, and exits (a crash) on one that says so. */
const SOURCE = `
const { parentPort } = require("node:worker_threads");
parentPort.on("message", (m) => {
  if (m.crash) process.exit(1);
  parentPort.postMessage({ id: m.id });
});
`;

/** Asks `w` once: "answered", "failed" (the worker died under it), or "refused" (none started). */
function ask(w: RequestWorker<WorkerAnswer>, crash: boolean): Promise<"answered" | "failed" | "refused"> {
  return new Promise((resolve) => {
    const taken = w.ask({ crash }, { answer: () => (resolve("answered"), true), reject: () => resolve("failed") });
    if (!taken) resolve("refused");
  });
}

describe("request worker", () => {
  it("failures far apart, each followed by answers, never stop it; failures in a row do", async () => {
    const w = new RequestWorker<WorkerAnswer>("test worker", () => SOURCE);
    try {
      // A server that runs for months meets a failure now and then: each is followed by work done.
      for (let i = 0; i < MAX_FAILURES * 2; i++) {
        assert.equal(await ask(w, true), "failed", `failure ${i + 1}`);
        assert.equal(await ask(w, false), "answered", `the request after failure ${i + 1}`);
      }
      assert.ok(w.usable);
      for (let i = 0; i < MAX_FAILURES; i++) assert.equal(await ask(w, true), "failed");
      assert.equal(w.usable, false);
      assert.equal(await ask(w, false), "refused");
    } finally {
      await w.stop();
    }
  });
});
