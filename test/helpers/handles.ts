/**
 * File handles in tests: counting the calls made through a handle's own methods (the thread-pool
 * path), as opposed to the synchronous calls fs/quick.ts makes on its descriptor.
 */
import type { FileHandle } from "node:fs/promises";

/** Replaces `handle[method]` with a wrapper that counts its calls; returns the count so far. */
export function countCalls(handle: FileHandle, method: "read" | "write"): () => number {
  let calls = 0;
  const target = handle as unknown as Record<string, (...args: unknown[]) => unknown>;
  const orig = (target[method] as (...args: unknown[]) => unknown).bind(handle);
  target[method] = (...args: unknown[]) => {
    calls++;
    return orig(...args);
  };
  return () => calls;
}
