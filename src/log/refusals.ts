/**
 * Connections refused at connect (the session limits, a banned address, a shutdown) told to the
 * operator: one line for a kind of refusal, then at most one a `windowMs` for that kind, which
 * says how many were left out since, so a flood of connections cannot flood the log.
 */
import type { Logger } from "./logger.ts";

/** Why a connection was refused at connect. */
export type RefusalKind = "max-sessions" | "max-sessions-per-address" | "banned" | "shutdown";

/** Throttled log lines of refused connections. */
export class RefusalLog {
  readonly #last = new Map<RefusalKind, { at: number; left: number }>();

  constructor(
    private readonly logger: Logger,
    private readonly windowMs = 10_000,
  ) {}

  /** Notes that `remote` got `text` (the 421's) for `kind`. The server's own limit on sessions in
   * total is a warning (it is full); the others are the limits and bans working, at info. */
  note(kind: RefusalKind, remote: string, text: string): void {
    // A monotonic clock: the wall clock set back (NTP, a restored virtual machine) would leave every
    // refusal of a kind unlogged for as long as it went back.
    const now = performance.now();
    const seen = this.#last.get(kind);
    if (seen !== undefined && now - seen.at < this.windowMs) {
      seen.left++;
      return;
    }
    this.#last.set(kind, { at: now, left: 0 });
    const fields: Record<string, unknown> = { event: "refused", remote, kind, reason: text };
    if (seen !== undefined && seen.left > 0) fields.alsoRefused = seen.left;
    const more = seen !== undefined && seen.left > 0 ? ` (and ${seen.left} more of this kind since the last such line)` : "";
    this.logger[kind === "max-sessions" ? "warn" : "info"](fields, "connection from %s refused: %s%s", remote, text, more);
  }
}
