// The busiest keys in the current open windows (the `keys` endpoint): each partition ranks its own
// keys, and since partitions own disjoint keys, merging their short lists gives the global top N.

import type { WindowView } from './window-operator.js';

/** A key's records in its open windows (polarity counts: the sentiment job's, else 0). */
export interface KeyCount {
  key: string;
  /** Posts in the key's open windows (a sliding-window post counts once per window it is in). */
  count: number;
  positive: number;
  negative: number;
  neutral: number;
  /** Open windows of the key. */
  windows: number;
}

const num = (v: unknown): number => (typeof v === 'number' ? v : 0);

const byCount = (a: KeyCount, b: KeyCount): number => b.count - a.count || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

/** Ranks the keys of `views` by their posts in open windows; ties go by key. */
export function topKeys(views: readonly WindowView[], n: number): KeyCount[] {
  const byKey = new Map<string, KeyCount>();
  for (const v of views) {
    if (v.state !== 'open') continue;
    let k = byKey.get(v.key);
    if (!k) byKey.set(v.key, (k = { key: v.key, count: 0, positive: 0, negative: 0, neutral: 0, windows: 0 }));
    // Records are the engine's own count; the polarity counts are the sentiment job's result fields.
    k.count += v.records;
    k.positive += num(v.aggregate.positive);
    k.negative += num(v.aggregate.negative);
    k.neutral += num(v.aggregate.neutral);
    k.windows += 1;
  }
  return [...byKey.values()].sort(byCount).slice(0, n);
}

/** Merges per-partition top lists (disjoint keys) into the global top `n`. */
export function mergeTopKeys(lists: ReadonlyArray<readonly KeyCount[]>, n: number): KeyCount[] {
  return lists.flat().sort(byCount).slice(0, n);
}
