// Reconnection pacing for the NATS client: exponential backoff with jitter, so a fleet of instances
// does not hammer a restarting server in lock-step, and a new outage starts again from a short wait.

import { isTransientNatsError } from './nats-errors.js';

/** Delays for nats.js `reconnectDelayHandler`: `base` doubling up to `max`, half of it random. */
export function reconnectBackoff(base = 250, max = 5000, quiet = 30_000): () => number {
  let attempt = 0;
  let last = 0;
  return () => {
    const now = Date.now();
    // A long gap since the last attempt means the previous outage ended: start over.
    if (now - last > quiet) attempt = 0;
    last = now;
    const d = Math.min(max, base * 2 ** Math.min(attempt++, 20));
    return d / 2 + Math.random() * (d / 2);
  };
}

/**
 * Runs `step` again and again, with `reconnectBackoff` between tries, while it fails with a NATS error
 * that retrying can cure (a cluster electing leaders, a node failing over); any other error, a stop
 * (`stopping`) or, when given, `giveUpAfterMs` ends the tries with the last error. `onRetry` says why.
 */
export async function retryTransient<T>(step: () => Promise<T>, o: { stopping: () => boolean; onRetry: (e: Error, waitMs: number) => void; giveUpAfterMs?: number }): Promise<T> {
  const backoff = reconnectBackoff();
  const deadline = o.giveUpAfterMs === undefined ? Infinity : Date.now() + o.giveUpAfterMs;
  for (;;) {
    try {
      return await step();
    } catch (e) {
      if (!isTransientNatsError(e) || o.stopping() || Date.now() > deadline) throw e;
      const wait = backoff();
      o.onRetry(e as Error, wait);
      await new Promise((r) => setTimeout(r, wait));
    }
  }
}
