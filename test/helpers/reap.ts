/**
 * Child processes a test file starts (berth serve, the CLI) end with it: at its `after` hook, and
 * also when the runner ends the file early (a file that overruns --test-timeout is sent SIGTERM,
 * and no `after` hook runs then), so that no server is left listening behind a failed run.
 */
import type { ChildProcess } from "node:child_process";
import process from "node:process";

const children = new Set<ChildProcess>();

function reap(): void {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  children.clear();
}

process.on("exit", reap);
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.once(signal, () => {
    reap();
    process.kill(process.pid, signal);
  });
}

/** Ends `child` when the test file ends, however it ends. */
export function track<C extends ChildProcess>(child: C): C {
  children.add(child);
  child.once("exit", () => children.delete(child));
  return child;
}

/** Ends every tracked child now (an `after` hook). */
export function reapAll(): void {
  reap();
}
