// Watermark generation (bounded out-of-orderness, per input partition, with idleness).
// W = max(ts) − maxOutOfOrderness, never decreasing; with several input partitions, the minimum
// over the partitions that are not idle. Which partitions are idle is decided elsewhere (the wall
// clock, journaled: see idleness.ts); the tracker itself is a pure function of what it is told.

/** One idleness decision, applied at a position of the input sequence (DESIGN.md §3). */
export interface IdleDecision {
  /** Input stream sequence after which the decision applies (before any later message). */
  seq: number;
  /** The input partition. */
  partition: string;
  /** true: the partition stops holding the watermark back; false: a post made it active again. */
  idle: boolean;
  /** The job watermark just before the decision. */
  wm: number;
}

/** The watermark part of a checkpoint. `idle` and `journal` are absent for a single input partition. */
export interface WatermarkState {
  wm: number;
  maxTs: Array<[string, number]>;
  /** Input partitions idle at the checkpoint's sequence. */
  idle?: string[];
  /** Idleness decisions at or after the checkpoint's sequence, not reflected in `idle` yet: a restore applies them at their positions. */
  journal?: IdleDecision[];
  /** The latest decisions already applied (newest last, bounded): what status and inspect show. */
  recent?: IdleDecision[];
}

/** The input partitions of a job with `n` of them: "0" … "n-1". */
export const partitionNames = (n: number): string[] => Array.from({ length: n }, (_, i) => String(i));

/** Tracks the watermark of one job across its input partitions. */
export class WatermarkTracker {
  private readonly maxTs = new Map<string, number>();
  private readonly idle = new Set<string>();
  private wm = -Infinity;

  constructor(
    private readonly maxOutOfOrderness: number,
    partitions: readonly string[] = ['0'],
  ) {
    for (const p of partitions) this.maxTs.set(p, -Infinity);
  }

  /** The watermark in force now. */
  get current(): number {
    return this.wm;
  }

  /** The input partitions, in order. */
  get names(): string[] {
    return [...this.maxTs.keys()];
  }

  /** True when `partition` is idle (does not hold the watermark back). */
  isIdle(partition: string): boolean {
    return this.idle.has(partition);
  }

  /** Records a post's event time (a post makes an idle partition active again); returns the (possibly advanced) watermark. */
  observe(ts: number, partition = '0'): number {
    const prev = this.maxTs.get(partition);
    if (prev === undefined || ts > prev) this.maxTs.set(partition, ts);
    this.idle.delete(partition);
    if (this.maxTs.size === 1) {
      // One partition (never idle now): W follows its max(ts) — what recompute finds, without the loop.
      const candidate = (prev === undefined || ts > prev ? ts : prev) - this.maxOutOfOrderness;
      if (candidate > this.wm) this.wm = candidate;
      return this.wm;
    }
    return this.recompute();
  }

  /** Marks a partition idle or active; returns the (possibly advanced) watermark. */
  setIdle(partition: string, idle: boolean): number {
    if (!this.maxTs.has(partition)) return this.wm;
    if (idle) this.idle.add(partition);
    else this.idle.delete(partition);
    return this.recompute();
  }

  /** A watermark set by hand (tests, punctuations): takes effect when it is later than the current one. */
  advanceTo(w: number): number {
    if (w > this.wm) this.wm = w;
    return this.wm;
  }

  /** End of input: the watermark becomes +∞. */
  end(): number {
    this.wm = Infinity;
    return this.wm;
  }

  /** Partition id → { watermark, idle } for status and explain. */
  partitions(): Array<{ partition: string; watermark: number; idle: boolean }> {
    return [...this.maxTs].map(([partition, ts]) => ({ partition, watermark: ts - this.maxOutOfOrderness, idle: this.idle.has(partition) }));
  }

  /** Serialisable state for checkpoints (one partition: exactly the format it always had). */
  toJSON(): WatermarkState {
    const s: WatermarkState = { wm: this.wm, maxTs: [...this.maxTs] };
    if (this.maxTs.size > 1) s.idle = [...this.idle];
    return s;
  }

  /** Restores state written by toJSON. */
  restore(state: WatermarkState): void {
    this.wm = state.wm;
    for (const [p, ts] of state.maxTs) this.maxTs.set(p, ts);
    this.idle.clear();
    for (const p of state.idle ?? []) if (this.maxTs.has(p)) this.idle.add(p);
  }

  private recompute(): number {
    let min = Infinity;
    for (const [p, ts] of this.maxTs) {
      if (this.idle.has(p)) continue;
      if (ts < min) min = ts;
    }
    // All partitions idle: hold the watermark where it is (Flink's behaviour).
    if (min !== Infinity) {
      const candidate = min - this.maxOutOfOrderness;
      if (candidate > this.wm) this.wm = candidate;
    }
    return this.wm;
  }
}
