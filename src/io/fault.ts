// Fault injection for the recovery tests: TIDEMARK_FAULT=point:K makes the process SIGKILL
// itself the K-th time it reaches `point` (e.g. in the middle of a checkpoint write).

const spec = process.env.TIDEMARK_FAULT;
const [target, countText] = spec ? spec.split(':') : [];
let remaining = Number(countText ?? 1);

/** Marks a named point; dies here with SIGKILL when TIDEMARK_FAULT names it. */
export function faultPoint(point: string): void {
  if (target !== point) return;
  if (--remaining <= 0) process.kill(process.pid, 'SIGKILL');
}

/**
 * Drops a message: true the K-th time `point` is reached when TIDEMARK_FAULT names it (the channel
 * tests: a batch lost on the way must be noticed as a gap and recovered from the checkpoint).
 */
export function faultDrop(point: string): boolean {
  if (target !== point) return false;
  return --remaining === 0;
}
