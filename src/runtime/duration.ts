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

/** Formats milliseconds for people, rounded: `850ms`, `12.5s`, `4m 10s`, `3h 5m`, `2d 4h`. */
export function humanDuration(ms: number): string {
  if (!Number.isFinite(ms)) return ms > 0 ? 'forever' : '-forever';
  const sign = ms < 0 ? '-' : '';
  const a = Math.abs(Math.round(ms));
  if (a < 1000) return `${sign}${a}ms`;
  if (a < 60_000) return `${sign}${Number((a / 1000).toFixed(1))}s`;
  const parts = (big: number, bigUnit: string, small: number, smallUnit: string): string => {
    const b = Math.floor(a / big);
    const s = Math.floor((a % big) / small);
    return `${sign}${b}${bigUnit}${s ? ` ${s}${smallUnit}` : ''}`;
  };
  if (a < 3_600_000) return parts(60_000, 'm', 1000, 's');
  if (a < 86_400_000) return parts(3_600_000, 'h', 60_000, 'm');
  return parts(86_400_000, 'd', 3_600_000, 'h');
}
