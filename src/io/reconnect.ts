// Reconnection pacing for the NATS client: exponential backoff with jitter, so a fleet of instances
// does not hammer a restarting server in lock-step, and a new outage starts again from a short wait.

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
