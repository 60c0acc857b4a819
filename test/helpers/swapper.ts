/**
 * A process that swaps a directory and a symlink round and round, as fast as it can: `dir` →
 * `away`, `link` → `dir`, then back. For races between a path's check and its use (fs/pin.ts).
 */
import { spawn, type ChildProcess } from "node:child_process";

const CODE = `
  const fs = require("node:fs");
  const [dir, link, away] = process.argv.slice(1);
  let stop = false;
  process.on("message", () => { stop = true; });
  process.channel.unref();
  (function loop() {
    for (let i = 0; i < 200 && !stop; i++) {
      try { fs.renameSync(dir, away); fs.renameSync(link, dir); fs.renameSync(dir, link); fs.renameSync(away, dir); } catch {}
    }
    if (stop) { try { fs.renameSync(away, dir); } catch {} process.exit(0); }
    setImmediate(loop);
  })();
`;

/** A running swapper; `stop()` waits until it has put `dir` back and exited. */
export interface Swapper {
  stop(): Promise<void>;
}

export function startSwapper(dir: string, link: string, away: string): Swapper {
  const child: ChildProcess = spawn(process.execPath, ["-e", CODE, dir, link, away], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
  return {
    stop: async () => {
      if (child.exitCode !== null) return;
      const exited = new Promise((resolve) => child.once("exit", resolve));
      child.send("stop");
      await exited;
    },
  };
}
