// Routes scored posts to key partitions and decides which watermark markers each partition needs.
// Markers are what make firing deterministic: a window fires on the first watermark value ≥ its end.

import type { Op, PostItem } from './window-operator.js';
import { boundaryStep, type WindowSpec } from './windows.js';

/** FNV-1a hash of a key: stable across processes and machines. */
export function hashKey(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Partition that owns `key`. */
export const partitionOf = (key: string, partitions: number): number => hashKey(key) % partitions;

/** Builds one batch of ops per partition. */
export class BatchRouter {
  private ops: Op[][];
  private readonly lastSent: number[];
  private readonly step: number | undefined;

  constructor(
    readonly partitions: number,
    spec: WindowSpec,
    private readonly lateness: number,
  ) {
    this.ops = Array.from({ length: partitions }, () => []);
    this.lastSent = Array.from({ length: partitions }, () => -Infinity);
    this.step = boundaryStep(spec);
  }

  /** Adds a post for one key; `wmBefore` is the watermark in force before the post. */
  post(item: PostItem, wmBefore: number): void {
    const p = partitionOf(item.k, this.partitions);
    if (this.lastSent[p] !== wmBefore) {
      this.ops[p]!.push(wmBefore);
      this.lastSent[p] = wmBefore;
    }
    this.ops[p]!.push(item);
  }

  /** The watermark moved from `from` to `to`: tell every partition if some window may fire or close. */
  advance(from: number, to: number): void {
    if (!(to > from) || !this.crossesBoundary(from, to)) return;
    for (let p = 0; p < this.partitions; p++) {
      this.ops[p]!.push(to);
      this.lastSent[p] = to;
    }
  }

  /** Takes the ops gathered since the last call, one array per partition. */
  take(): Op[][] {
    const out = this.ops;
    this.ops = Array.from({ length: this.partitions }, () => []);
    return out;
  }

  /** Restores which watermark each partition last saw (after a checkpoint restore). */
  reset(watermark: number): void {
    this.lastSent.fill(watermark);
  }

  // Fixed windows end (and close) only on multiples of the slide (plus the lateness);
  // session ends are arbitrary, so every advance matters.
  private crossesBoundary(from: number, to: number): boolean {
    const step = this.step;
    if (step === undefined || !Number.isFinite(from) || !Number.isFinite(to)) return true;
    const L = this.lateness;
    return Math.floor(to / step) > Math.floor(from / step) || Math.floor((to - L) / step) > Math.floor((from - L) / step);
  }
}
