// Routes scored posts to key partitions and decides which watermark markers each partition needs.
// Markers are what make firing deterministic: a window fires on the first watermark value ≥ its end.

import type { DeltaItem, Op } from './window-operator.js';
import { boundaryStep, fixedWindows, type WindowSpec } from './windows.js';
import { lifecycleAt } from './lateness.js';
import { actorOfKey, type Routing } from './key-groups.js';

/** FNV-1a hash of a key: stable across processes and machines. */
export function hashKey(key: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) {
    h ^= key.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** Builds one batch of ops per window actor (each owns a range of key groups). */
export class BatchRouter {
  private ops: Op[][];
  private lastSent: number[];
  private readonly step: number | undefined;
  /** Whether this batch moves the watermark past a fixed-window boundary (windows may fire or close). */
  stepped = false;
  /** This batch's delta per window start and key, of open fixed windows. */
  private deltas = new Map<number, Map<string, DeltaItem>>();
  private readonly where: { key: string; start: number; end: number; recordId?: string } = { key: '', start: 0, end: 0 };

  constructor(
    private routing: Routing,
    private readonly spec: WindowSpec,
    private readonly lateness: number,
    /** combines two accumulators (the job's merge) */
    private readonly merge: (a: unknown, b: unknown, where: { key: string; start: number; end: number; recordId?: string }) => unknown,
    /** false: one delta per record and window (the per-record reference the tests compare with) */
    private readonly preaggregate = true,
  ) {
    this.ops = Array.from({ length: routing.actors }, () => []);
    this.lastSent = Array.from({ length: routing.actors }, () => -Infinity);
    this.step = boundaryStep(spec);
  }

  /** Spreads the key groups over another number of actors (between batches: nothing may be pending). */
  rescale(routing: Routing, watermark: number): void {
    this.routing = routing;
    this.ops = Array.from({ length: routing.actors }, () => []);
    this.lastSent = Array.from({ length: routing.actors }, () => watermark);
    this.deltas = new Map();
  }

  /**
   * Adds a record for one key; `wmBefore` is the watermark in force before the record. Its share
   * of fixed windows still open under that watermark joins the batch's delta for the window; the
   * rest (late, firing or closing windows, and every session record) travels as the record itself.
   */
  post(key: string, id: string, ts: number, unit: unknown, wmBefore: number): void {
    const p = actorOfKey(key, this.routing);
    let individual = this.spec.kind === 'session';
    if (this.spec.kind === 'tumbling') {
      // One window: no array of windows, no window object.
      const size = this.spec.size;
      const start = Math.floor(ts / size) * size;
      if (wmBefore < start + size) this.addDelta(p, key, id, start, start + size, unit);
      else individual = true;
    } else if (!individual) {
      for (const win of fixedWindows(this.spec, ts)) {
        if (lifecycleAt(win, wmBefore, this.lateness) !== 'open') individual = true;
        else this.addDelta(p, key, id, win.start, win.end, unit);
      }
    }
    if (individual) {
      this.marker(p, wmBefore);
      this.ops[p]!.push({ k: key, id, ts, a: unit });
    }
  }

  /** A record's share of an open window: merged into the batch's delta for (key, window). */
  private addDelta(p: number, key: string, id: string, start: number, end: number, unit: unknown): void {
    let byKey = this.preaggregate ? this.deltas.get(start) : undefined;
    const d = byKey?.get(key);
    if (d) {
      // Read only when merge throws (to name where): one object for every call.
      const where = this.where;
      where.key = key;
      where.start = start;
      where.end = end;
      where.recordId = id;
      d.a = this.merge(d.a, unit, where);
      d.c++;
      return;
    }
    // No watermark marker: a delta's window is open under the watermark in force and stays open
    // under any lower one the actor has seen, so the delta applies the same either way. Markers go
    // before records judged on their own, and every boundary the watermark crosses reaches every
    // actor (advance), so windows fire and close at the same values as with a marker per record.
    const item: DeltaItem = { k: key, s: start, a: unit, c: 1 };
    this.ops[p]!.push(item);
    if (this.preaggregate) {
      if (!byKey) this.deltas.set(start, (byKey = new Map()));
      byKey.set(key, item);
    }
  }

  private marker(p: number, wm: number): void {
    if (this.lastSent[p] !== wm) {
      this.ops[p]!.push(wm);
      this.lastSent[p] = wm;
    }
  }

  /** The watermark moved from `from` to `to`: tell every partition if some window may fire or close. */
  advance(from: number, to: number): void {
    if (!(to > from) || !this.crossesBoundary(from, to)) return;
    // Session ends are arbitrary (any advance may fire one): only fixed windows' steps are told apart.
    if (this.step !== undefined) this.stepped = true;
    for (let p = 0; p < this.routing.actors; p++) {
      this.ops[p]!.push(to);
      this.lastSent[p] = to;
    }
  }

  /** Takes the ops gathered since the last call, one array per partition. */
  take(): Op[][] {
    const out = this.ops;
    this.ops = Array.from({ length: this.routing.actors }, () => []);
    this.deltas = new Map();
    this.stepped = false;
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
