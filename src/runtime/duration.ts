// The one duration parser: `250ms`, `30s`, `10m`, `1h`, `2d` (and plain `0`).
// Every flag and config value that takes a DUR goes through here.

import { TidemarkError } from '../errors.js';

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses a duration like `30s` into milliseconds; `what` names the flag in the error. */
export function parseDuration(text: string, what = 'duration'): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(String(text).trim());
  if (!m || (m[2] === undefined && Number(m[1]) !== 0)) {
    throw new TidemarkError('BAD_FLAG', `${what}: "${text}" is not a duration; use e.g. 250ms, 30s, 10m, 1h`);
  }
  const ms = Number(m[1]) * UNITS[m[2] ?? 'ms']!;
  if (!Number.isSafeInteger(Math.round(ms))) throw new TidemarkError('BAD_FLAG', `${what}: "${text}" is too large`);
  return Math.round(ms);
}

/** Formats milliseconds back into the shortest exact duration string. */
export function formatDuration(ms: number): string {
  for (const [unit, size] of [['d', 86_400_000], ['h', 3_600_000], ['m', 60_000], ['s', 1000]] as const) {
    if (ms !== 0 && ms % size === 0) return `${ms / size}${unit}`;
  }
  return `${ms}ms`;
}
