// @ts-check
// Per-device sessions of sensor readings `{ device, ts, temp }`: a session lasts while a device keeps
// reporting with gaps under 5 minutes; each gives the count and the min / max / average temperature.

import { defineJob, RejectRecord } from 'tidemark';

/** @typedef {{ device: string, ts: number | string, temp: number }} Reading */
/** @typedef {{ count: number, min: number | null, max: number | null, tenths: number }} Acc */

const text = new TextDecoder();

export default defineJob({
  name: 'sensors',
  window: 'session:5m',
  maxOutOfOrderness: '10s',
  emit: 'final',
  /** @returns {Reading} */
  decode: (bytes) => {
    const r = JSON.parse(text.decode(bytes));
    if (typeof r?.device !== 'string' || r.device === '' || typeof r.temp !== 'number' || !Number.isFinite(r.temp)) throw new RejectRecord('bad_reading');
    return r;
  },
  eventTime: (r) => r.ts,
  keys: (r) => [r.device],
  aggregate: {
    // No Infinity for an empty min/max: accumulators are checkpointed as msgpack, null survives.
    /** @returns {Acc} */
    init: () => ({ count: 0, min: null, max: null, tenths: 0 }),
    // The sum is kept in whole tenths of a degree: float addition depends on grouping, and the
    // engine merges partial sums in groupings that depend on batching.
    add: (acc, r) => ({
      count: acc.count + 1,
      min: acc.min === null ? r.temp : Math.min(acc.min, r.temp),
      max: acc.max === null ? r.temp : Math.max(acc.max, r.temp),
      tenths: acc.tenths + Math.round(r.temp * 10),
    }),
    merge: (a, b) => ({
      count: a.count + b.count,
      min: a.min === null ? b.min : b.min === null ? a.min : Math.min(a.min, b.min),
      max: a.max === null ? b.max : b.max === null ? a.max : Math.max(a.max, b.max),
      tenths: a.tenths + b.tenths,
    }),
    result: (acc) => ({
      readings: acc.count,
      minTemp: acc.min,
      maxTemp: acc.max,
      avgTemp: acc.count === 0 ? null : Math.round((acc.tenths * 10) / acc.count) / 100,
    }),
  },
});

/** Example readings for `tidemark check-job` (it draws lists of them, in any order and number). */
export const samples = [
  { device: 'greenhouse-1', ts: 1_764_000_000_000, temp: 21.5 },
  { device: 'greenhouse-1', ts: 1_764_000_030_000, temp: 22.1 },
  { device: 'greenhouse-1', ts: 1_764_000_060_000, temp: -0.3 },
  { device: 'freezer-7', ts: 1_764_000_010_000, temp: -18.4 },
  { device: 'freezer-7', ts: '2025-11-24T16:00:40Z', temp: -17.9 },
  { device: 'attic', ts: 1_764_000_020_000, temp: 35 },
];
