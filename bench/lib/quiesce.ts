/**
 * Lets the machine settle before a measurement: dirty pages of earlier uploads are written out now
 * (their writeback would otherwise steal CPU and disk from whatever runs next), then a short pause.
 */
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";

function dirtyKiB(): number {
  const m = readFileSync("/proc/meminfo", "utf8");
  const kb = (k: string): number => Number(new RegExp(`^${k}:\\s+(\\d+)`, "m").exec(m)?.[1] ?? 0);
  return kb("Dirty") + kb("Writeback");
}

/** sync, wait (at most 60 s) until under 64 MiB are dirty, then pause `pauseMs`. */
export async function quiesce(pauseMs = 1000): Promise<void> {
  spawnSync("sync", { stdio: "ignore", timeout: 120_000 });
  for (let i = 0; i < 120 && dirtyKiB() >= 64 * 1024; i++) await new Promise((r) => setTimeout(r, 500));
  await new Promise((r) => setTimeout(r, pauseMs));
}
