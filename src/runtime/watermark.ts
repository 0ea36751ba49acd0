// Watermark generation (bounded out-of-orderness, per input partition, with idleness).
// W = max(ts) − maxOutOfOrderness, never decreasing; the minimum over partitions that are not idle.

/** Tracks the watermark of one job across its input partitions. */
export class WatermarkTracker {
  private readonly maxTs = new Map<string, number>();
  private readonly lastSeen = new Map<string, number>();
  private wm = -Infinity;

  constructor(
    private readonly maxOutOfOrderness: number,
    private readonly idleTimeout = 0,
    partitions: readonly string[] = ['0'],
    now = 0,
  ) {
    for (const p of partitions) {
      this.maxTs.set(p, -Infinity);
      this.lastSeen.set(p, now);
    }
  }

  /** The watermark in force now. */
  get current(): number {
    return this.wm;
  }

  /** Records a post's event time; returns the (possibly advanced) watermark. */
  observe(ts: number, partition = '0', now = 0): number {
    const prev = this.maxTs.get(partition);
    if (prev === undefined || ts > prev) this.maxTs.set(partition, ts);
    this.lastSeen.set(partition, now);
    if (this.maxTs.size === 1) {
      // One partition (never idle): W follows its max(ts) — what recompute finds, without the loop.
      const candidate = (prev === undefined || ts > prev ? ts : prev) - this.maxOutOfOrderness;
      if (candidate > this.wm) this.wm = candidate;
      return this.wm;
    }
    return this.recompute(now);
  }

  /** Re-evaluates idleness at wall-clock `now` (multi-partition inputs only). */
  tick(now: number): number {
    return this.recompute(now);
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
  partitions(now = 0): Array<{ partition: string; watermark: number; idle: boolean }> {
    return [...this.maxTs].map(([partition, ts]) => ({
      partition,
      watermark: ts - this.maxOutOfOrderness,
      idle: this.isIdle(partition, now),
    }));
  }

  /** Serialisable state for checkpoints. */
  toJSON(): { wm: number; maxTs: Array<[string, number]> } {
    return { wm: this.wm, maxTs: [...this.maxTs] };
  }

  /** Restores state written by toJSON. */
  restore(state: { wm: number; maxTs: Array<[string, number]> }, now = 0): void {
    this.wm = state.wm;
    for (const [p, ts] of state.maxTs) {
      this.maxTs.set(p, ts);
      this.lastSeen.set(p, now);
    }
  }

  private isIdle(partition: string, now: number): boolean {
    return this.idleTimeout > 0 && this.maxTs.size > 1 && now - (this.lastSeen.get(partition) ?? now) >= this.idleTimeout;
  }

  private recompute(now: number): number {
    let min = Infinity;
    for (const [p, ts] of this.maxTs) {
      if (this.isIdle(p, now)) continue;
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
