/**
 * Load-generator processes: the concurrent-sessions and idle-sessions scenarios spread their
 * clients over a few worker processes (one per core), so the generator is never one busy thread.
 * Each task is one message per worker; each worker answers once with its figures and its own CPU.
 */
import { fork, type ChildProcess } from "node:child_process";
import path from "node:path";
import { REPO } from "./servers.ts";

/** Where a worker connects, and how. */
export interface Target {
  readonly host: string;
  readonly port: number;
  readonly tlsDataAfter150: boolean;
}

/** Task of the concurrent-sessions scenario. */
export interface SessionsTask {
  readonly type: "sessions";
  readonly target: Target;
  readonly clients: number;
  /** Epoch ms when every client starts. */
  readonly startAt: number;
  /** The window opens this long after `startAt`; sessions that end before it are not counted. */
  readonly rampMs: number;
  readonly windowMs: number;
  readonly timeoutMs: number;
  readonly listArg: string;
  readonly listLines: number;
  readonly retrPath: string;
  readonly retrBytes: number;
}

/** What one worker measured in a sessions task. */
export interface SessionsResult {
  /** Sessions completed inside the window. */
  readonly completed: number;
  /** Sessions completed after it (their latency counts, their number does not). */
  readonly late: number;
  /** Failed sessions, from the start (ramp included) to the end. */
  readonly errors: number;
  readonly errorSamples: readonly string[];
  /** Latencies of the sessions that ended once the window was open. */
  readonly latenciesMs: readonly number[];
  /** CPU seconds of this worker inside the window. */
  readonly cpu: number;
}

/** Opens `count` more logged-in idle sessions. */
export interface IdleOpenTask {
  readonly type: "idle-open";
  readonly target: Target;
  readonly count: number;
  readonly concurrency: number;
  readonly timeoutMs: number;
}

/** Closes every idle session. */
export interface IdleCloseTask {
  readonly type: "idle-close";
}

/** What one worker did in an idle task. */
export interface IdleResult {
  readonly open: number;
  readonly failed: number;
  readonly errorSamples: readonly string[];
  readonly cpu: number;
}

export type Task = SessionsTask | IdleOpenTask | IdleCloseTask;

/** A few forked load-generator processes. */
export class WorkerPool {
  private readonly workers: ChildProcess[] = [];

  constructor(readonly size: number) {
    const file = path.join(REPO, "bench/workers/load.ts");
    for (let i = 0; i < size; i++) {
      const w = fork(file, [], { execArgv: ["--import", import.meta.resolve("tsx")], stdio: ["ignore", "inherit", "inherit", "ipc"] });
      w.on("error", () => undefined);
      this.workers.push(w);
    }
  }

  /** Pids of the workers (for their CPU, read from /proc as a check). */
  get pids(): number[] {
    return this.workers.map((w) => w.pid ?? 0);
  }

  /** Sends task i to worker i and resolves with every answer; rejects after `timeoutMs`. */
  run<R>(tasks: readonly Task[], timeoutMs: number): Promise<R[]> {
    const jobs = tasks.map(
      (task, i) =>
        new Promise<R>((resolve, reject) => {
          const w = this.workers[i % this.workers.length] as ChildProcess;
          const timer = setTimeout(() => {
            w.removeListener("message", onMessage);
            reject(new Error(`load worker ${i} did not answer within ${timeoutMs} ms`));
          }, timeoutMs);
          const onMessage = (m: unknown): void => {
            clearTimeout(timer);
            w.removeListener("message", onMessage);
            resolve(m as R);
          };
          w.on("message", onMessage);
          w.send(task);
        }),
    );
    return Promise.all(jobs);
  }

  /** Splits `total` over the workers. */
  split(total: number): number[] {
    const n = this.workers.length;
    return Array.from({ length: n }, (_, i) => Math.floor(total / n) + (i < total % n ? 1 : 0));
  }

  /** Ends every worker. */
  close(): void {
    for (const w of this.workers) {
      if (w.connected) w.disconnect();
      w.kill("SIGTERM");
    }
  }
}
