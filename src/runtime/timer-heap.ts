// Event-time timers (Flink's timer service): a binary min-heap of (time, payload).
// The operator asks it which windows the watermark has reached, instead of scanning every window.

/** A min-heap ordered by `time`. */
export class TimerHeap<T> {
  private readonly times: number[] = [];
  private readonly items: T[] = [];

  get size(): number {
    return this.times.length;
  }

  /** Earliest timer time, or +∞ when empty. */
  peekTime(): number {
    return this.times.length ? this.times[0]! : Infinity;
  }

  push(time: number, item: T): void {
    this.times.push(time);
    this.items.push(item);
    let i = this.times.length - 1;
    while (i > 0) {
      const p = (i - 1) >> 1;
      if (this.times[p]! <= time) break;
      this.swap(i, p);
      i = p;
    }
  }

  /** Removes and returns the earliest timer. */
  pop(): T | undefined {
    const n = this.times.length;
    if (n === 0) return undefined;
    const top = this.items[0]!;
    this.swap(0, n - 1);
    this.times.pop();
    this.items.pop();
    let i = 0;
    const m = n - 1;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let s = i;
      if (l < m && this.times[l]! < this.times[s]!) s = l;
      if (r < m && this.times[r]! < this.times[s]!) s = r;
      if (s === i) break;
      this.swap(i, s);
      i = s;
    }
    return top;
  }

  private swap(a: number, b: number): void {
    const t = this.times[a]!;
    this.times[a] = this.times[b]!;
    this.times[b] = t;
    const x = this.items[a]!;
    this.items[a] = this.items[b]!;
    this.items[b] = x;
  }
}
