/**
 * One bench run at a time per state directory ($FTPB_STATE): two at once rewrite each other's
 * fixtures (the users file, the upload directories) and records, and the first run's logins then
 * fail and get its address banned. The lock is a file holding the run's pid, made exclusively and
 * removed when the process exits; one left by a run that no longer exists is taken over.
 */
import { closeSync, openSync, readFileSync, rmSync, writeSync } from "node:fs";
import path from "node:path";

/** Takes the state directory's lock, or throws naming the run that holds it. */
export function lockState(state: string): void {
  const file = path.join(state, "bench.lock");
  for (let tries = 0; tries < 3; tries++) {
    let fd: number;
    try {
      fd = openSync(file, "wx");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
      const pid = holder(file);
      if (pid !== null && alive(pid)) {
        throw new Error(`another bench run (pid ${pid}) is using ${state}; wait for it to end or stop it`);
      }
      rmSync(file, { force: true }); // left by a run that has ended
      continue;
    }
    writeSync(fd, `${process.pid}\n`);
    closeSync(fd);
    process.once("exit", () => {
      if (holder(file) === process.pid) rmSync(file, { force: true });
    });
    return;
  }
  throw new Error(`cannot take ${file}`);
}

/** The pid in the lock file; null when it is gone or unreadable. */
function holder(file: string): number | null {
  try {
    const pid = Number.parseInt(readFileSync(file, "utf8"), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === "EPERM";
  }
}
