/**
 * A worker thread that answers requests by id: the stat worker of listings (fs/statworker.ts) and
 * the digest worker of checksums (fs/digest.ts). It is started at the first request, from plain
 * CommonJS source (a worker runs no loader), and never keeps the process alive while idle: it is
 * referenced only while an answer is owed. When it fails or exits, every request still waiting
 * hears it (reject) and the next request starts a new one; after MAX_FAILURES in a row, with no
 * request answered between them, none is started and requests are refused (ask() is false: the
 * caller does the work itself). Failures far apart, each followed by work done, are not counted
 * up over the months a server runs.
 */
import { Worker } from "node:worker_threads";

/** Failures in a row (no request answered between them) after which no worker is started again. */
export const MAX_FAILURES = 3;

/** Every answer names the request it answers. */
export interface WorkerAnswer {
  readonly id: number;
}

/** A request waiting for its answers. */
export interface PendingRequest<A extends WorkerAnswer> {
  /** An answer for this request; true when it was the last. */
  answer(msg: A): boolean;
  /** The worker failed or was stopped before the last answer: a WorkerStopped for stop(). */
  reject(err: Error): void;
}

/** What waiting requests hear when the worker is stopped on purpose (stop()). */
export class WorkerStopped extends Error {
  constructor(name: string) {
    super(`${name} stopped`);
    this.name = "WorkerStopped";
  }
}

export class RequestWorker<A extends WorkerAnswer> {
  private worker: Worker | null = null;
  private failures = 0;
  private nextId = 1;
  private readonly pending = new Map<number, PendingRequest<A>>();

  /** `name` for messages ("stat worker"); `source()` the worker's CommonJS code, asked at each
   * start; `onAnswer` sees every answer first. */
  constructor(
    private readonly name: string,
    private readonly source: () => string,
    private readonly onAnswer?: (msg: A) => void,
  ) {}

  /** Requests waiting for their last answer. */
  get waiting(): number {
    return this.pending.size;
  }

  /** False once the worker has failed MAX_FAILURES times in a row. */
  get usable(): boolean {
    return this.failures < MAX_FAILURES;
  }

  /** Sends `request` (its id added) to the worker, started if needed; false when none can take it. */
  ask(request: object, p: PendingRequest<A>): boolean {
    const w = this.start();
    if (w === null) return false;
    const id = this.nextId++;
    this.pending.set(id, p);
    // Referenced while it owes an answer, so work in progress is never cut short by an idle exit.
    w.ref();
    w.postMessage({ id, ...request });
    return true;
  }

  /** Stops the worker (shutdown, tests); waiting requests hear a WorkerStopped. The next request
   * starts a new one. */
  async stop(): Promise<void> {
    const w = this.worker;
    if (w === null) return;
    this.worker = null;
    this.rejectAll(new WorkerStopped(this.name));
    await w.terminate();
  }

  /** For tests: stopped, and its failures forgotten, or (`failed`) counted as too many. */
  async reset(failed: boolean): Promise<void> {
    await this.stop();
    this.failures = failed ? MAX_FAILURES : 0;
  }

  private start(): Worker | null {
    if (this.worker !== null) return this.worker;
    if (this.failures >= MAX_FAILURES) return null;
    let w: Worker;
    try {
      w = new Worker(this.source(), { eval: true, execArgv: [], stdout: false, stderr: false });
    } catch {
      this.failures++;
      return null;
    }
    w.unref();
    w.on("message", (msg: A) => {
      this.onAnswer?.(msg);
      const p = this.pending.get(msg.id);
      if (p === undefined || !p.answer(msg)) return;
      this.pending.delete(msg.id);
      // A request answered whole: this worker works, and the failures before it are behind it.
      this.failures = 0;
      if (this.pending.size === 0) w.unref();
    });
    w.on("error", (err) => this.fail(w, err));
    w.on("exit", (code) => this.fail(w, new Error(`${this.name} exited (${code})`)));
    this.worker = w;
    return w;
  }

  private fail(w: Worker, err: Error): void {
    if (this.worker !== w) return;
    this.worker = null;
    this.failures++;
    this.rejectAll(err);
  }

  private rejectAll(err: Error): void {
    const waiting = [...this.pending.values()];
    this.pending.clear();
    for (const p of waiting) p.reject(err);
  }
}
