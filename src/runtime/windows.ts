// Window assigners (Flink's WindowAssigner): which windows does an event time belong to?
// Tumbling and sliding windows are fixed by `ts` alone; sessions are resolved per key in session.ts.

import { TidemarkError } from '../errors.js';
import { parseDuration, formatDuration } from './duration.js';

export interface Window {
  start: number;
  end: number;
}

export type WindowSpec =
  | { kind: 'tumbling'; size: number }
  | { kind: 'sliding'; size: number; slide: number }
  | { kind: 'session'; gap: number };

/** Parses `tumbling:SIZE`, `sliding:SIZE,SLIDE` or `session:GAP`. */
export function parseWindowSpec(text: string, flag = '--window'): WindowSpec {
  const accepted = 'accepted: tumbling:SIZE, sliding:SIZE,SLIDE, session:GAP (e.g. tumbling:1m)';
  const m = /^(tumbling|sliding|session):(.+)$/.exec(String(text).trim());
  if (!m) throw new TidemarkError('BAD_FLAG', `${flag}: "${text}" is not a window; ${accepted}`);
  const kind = m[1]!;
  const args = m[2]!.split(',');
  const positive = (s: string): number => {
    const v = parseDuration(s, flag);
    if (v <= 0) throw new TidemarkError('BAD_FLAG', `${flag}: "${text}": sizes must be greater than 0`);
    return v;
  };
  if (kind === 'tumbling' && args.length === 1) return { kind, size: positive(args[0]!) };
  if (kind === 'session' && args.length === 1) return { kind, gap: positive(args[0]!) };
  if (kind === 'sliding' && args.length === 2) {
    const size = positive(args[0]!);
    const slide = positive(args[1]!);
    if (size % slide !== 0) throw new TidemarkError('BAD_FLAG', `${flag}: "${text}": SIZE must be a multiple of SLIDE`);
    return { kind, size, slide };
  }
  throw new TidemarkError('BAD_FLAG', `${flag}: "${text}" is not a window; ${accepted}`);
}

/** Canonical text of a window spec (used in state compatibility checks and logs). */
export function formatWindowSpec(spec: WindowSpec): string {
  if (spec.kind === 'tumbling') return `tumbling:${formatDuration(spec.size)}`;
  if (spec.kind === 'sliding') return `sliding:${formatDuration(spec.size)},${formatDuration(spec.slide)}`;
  return `session:${formatDuration(spec.gap)}`;
}

const floorTo = (ts: number, step: number): number => Math.floor(ts / step) * step;

/** Tumbling windows start at multiples of `size` since the epoch. */
export function tumblingWindow(ts: number, size: number): Window {
  const start = floorTo(ts, size);
  return { start, end: start + size };
}

/** The SIZE/SLIDE sliding windows containing `ts`, latest start first. */
export function slidingWindows(ts: number, size: number, slide: number): Window[] {
  const out: Window[] = [];
  for (let start = floorTo(ts, slide); start > ts - size; start -= slide) out.push({ start, end: start + size });
  return out;
}

/** Fixed windows for a timestamp; sessions have none (they depend on the key's other posts). */
export function fixedWindows(spec: WindowSpec, ts: number): Window[] {
  if (spec.kind === 'tumbling') return [tumblingWindow(ts, spec.size)];
  if (spec.kind === 'sliding') return slidingWindows(ts, spec.size, spec.slide);
  throw new Error('session windows are not fixed');
}

/** Every watermark value at which some window of this spec could fire or close (for fixed windows). */
export function boundaryStep(spec: WindowSpec): number | undefined {
  if (spec.kind === 'tumbling') return spec.size;
  if (spec.kind === 'sliding') return spec.slide;
  return undefined;
}
