/**
 * How many of the addon's transfer threads (native/: plain downloads by sendfile, large plain
 * uploads) run at once. Past the limit a transfer goes on from the event loop, as it does where the
 * addon is not built: many large transfers at once never make as many threads.
 */

/** The limit (tests lower it) and the threads running now. */
export const transferThreads = { max: 256, running: 0 };

/** Takes a slot for a thread about to start; false when every slot is taken. */
export function claimThread(): boolean {
  if (transferThreads.running >= transferThreads.max) return false;
  transferThreads.running++;
  return true;
}

/** Gives back the slot of a thread that ended, or that could not start. */
export function releaseThread(): void {
  if (transferThreads.running > 0) transferThreads.running--;
}
