// The keyed window operator of one partition: owns every key's windows and their event-time
// timers, and applies an ordered stream of records, aggregate deltas and watermark markers.
// Each window holds its own machine state and is stepped by the window machine's transition.

import { lateRecord, type LateRecord, type ResultRecord } from './records.js';
import { fixedWindows, type Window, type WindowSpec } from './windows.js';
import { lifecycleAt } from './lateness.js';
import { TimerHeap } from './timer-heap.js';
import type { EmitMode, WindowEvent, WindowState } from './window-machine.js';
import { windowStepper, type StepEngine, type Stepper } from './window-step.js';
import type { CompiledJob } from './compiled-job.js';

/**
 * One record routed to this partition for one of its keys, judged on its own: a session record,
 * or a record that is late for (or fires) some of its fixed windows. For fixed windows it stands
 * for the record's windows that are not open under the watermark in force (open ones get deltas).
 */
export interface PostItem {
  /** key */
  k: string;
  /** record id */
  id: string;
  ts: number;
  /** the record's own accumulator, add(init(), record) */
  a: unknown;
}

/**
 * Records of one key that land in one fixed window still open under the watermark in force
 * before each of them, pre-aggregated by the source (Flink's two-phase aggregation).
 */
export interface DeltaItem {
  k: string;
  /** window start (the end follows from the window spec) */
  s: number;
  /** merged accumulator of the records */
  a: unknown;
  /** number of records */
  c: number;
}

/** An operation: a record, a delta, or (a number) the watermark advancing to that value. */
export type Op = PostItem | DeltaItem | number;

export interface OperatorConfig {
  job: string;
  window: WindowSpec;
  lateness: number;
  mode: EmitMode;
  compiled: CompiledJob;
  /** how windows are stepped (default: `TIDEMARK_WINDOW_STEP`, else the compiled table) */
  stepEngine?: StepEngine;
}

/** A window as it goes to and comes back from a checkpoint: its machine state and record count. */
export interface PersistedWindow {
  key: string;
  start: number;
  end: number;
  state: 'open' | 'pending';
  acc: unknown;
  revision: number;
  /** records in the window */
  n: number;
  /** `windowId(key, start, end)` when the reader already has it (saves building it again) */
  id?: string;
}

/** A window as `query` shows it. */
export interface WindowView {
  key: string;
  window: Window;
  state: WindowState;
  /** the job's result fields for the window as it stands */
  aggregate: Record<string, unknown>;
  /** records in the window */
  records: number;
  nextRevision: number;
  firesAt: number;
  closesAt: number;
  /** what the job's `inspect(acc)` adds (e.g. example posts) */
  extra?: Record<string, unknown>;
}

/**
 * A live window: the one representation of its state (its machine's state value and context
 * fields), one object per window. Its id (`windowId`) is built only when a checkpoint needs it.
 */
interface Entry {
  key: string;
  start: number;
  end: number;
  /** The window's machine state value (`absorbed`: merged into a larger session). */
  state: WindowState | 'absorbed';
  acc: unknown;
  revision: number;
  n: number;
  /** changed since the last checkpoint (listed in `dirty`) */
  dirty: boolean;
}

/** Storage id of a window: key, start, end. */
export const windowId = (key: string, start: number, end: number): string => `${key}\u0000${start}\u0000${end}`;

/**
 * Windows are kept in SHARDS maps by a hash of their key, so that no map holds more than a small
 * part of a large state: growing one never rehashes a million entries in one step.
 */
const SHARDS = 256;
const shardOf = (key: string): number => {
  let h = 0x811c9dc5;
  for (let i = 0; i < key.length; i++) h = Math.imul(h ^ key.charCodeAt(i), 0x01000193);
  return (h >>> 0) & (SHARDS - 1);
};

/** A key's fixed windows: the only one directly (the common case), or by start. */
type KeyWindows = Entry | Map<number, Entry>;

type FireEvent = Extract<WindowEvent, { type: 'FIRE' }>;
type CloseEvent = Extract<WindowEvent, { type: 'CLOSE' }>;

const isDelta = (op: PostItem | DeltaItem): op is DeltaItem => (op as DeltaItem).c !== undefined;

/** Per-partition keyed window state and the rules of DESIGN.md §3 applied to it. */
export class WindowOperator {
  private wm = -Infinity;
  private readonly fixed = Array.from({ length: SHARDS }, () => new Map<string, KeyWindows>());
  private readonly sessions = Array.from({ length: SHARDS }, () => new Map<string, Entry[]>());
  /**
   * One event-time timer per live window: its end while open (it fires), its end + lateness while
   * pending (it closes); the window's state says which.
   */
  private readonly timers = new TimerHeap<Entry>();
  /** Windows changed since the last checkpoint (those whose `dirty` flag is still set). */
  private dirty: Entry[] = [];
  /**
   * Windows closed or absorbed since the last checkpoint. Their ids are built when the checkpoint
   * takes them: a watermark step that closes 1M windows allocates nothing per window for this list.
   */
  private removed: Entry[] = [];
  private liveCount = 0;
  private pendingCount = 0;
  /** Windows the watermark has fired or closed so far (the budget of `applySome` counts them). */
  private stepped = 0;
  private readonly stepper: Stepper;
  private readonly job: CompiledJob;
  private readonly windowSize: number;
  results: ResultRecord[] = [];
  late: LateRecord[] = [];

  constructor(private readonly cfg: OperatorConfig) {
    this.job = cfg.compiled;
    this.stepper = windowStepper(cfg.compiled, { job: cfg.job, lateness: cfg.lateness, mode: cfg.mode }, (r) => this.results.push(r), cfg.stepEngine);
    this.windowSize = cfg.window.kind === 'session' ? 0 : cfg.window.size;
  }

  /** The watermark this partition has seen. */
  get watermark(): number {
    return this.wm;
  }

  /** Number of live (open or pending) windows. */
  get size(): number {
    return this.liveCount;
  }

  /** Applies ops in order; outputs accumulate in `results` / `late`. */
  apply(ops: readonly Op[]): void {
    this.applySome(ops, 0);
  }

  /**
   * Applies `ops` from index `from`, stopping inside a watermark step once it has taken `budget`
   * timers (windows fired or closed, at most two results each). Returns where to resume
   * (`ops.length` when all is applied), so that a step that fires or closes 100k windows works in
   * slices and hands its results on as it goes, also when the windows emit nothing (final mode,
   * a closing step without results).
   */
  applySome(ops: readonly Op[], from: number, budget = Infinity): number {
    const limit = this.stepped + Math.max(1, budget);
    for (let i = from; i < ops.length; i++) {
      const op = ops[i]!;
      if (typeof op === 'number') {
        // Resuming at i applies the marker again: a no-op, then the timers still due go on firing.
        if (!this.advance(op, limit)) return i;
      } else if (isDelta(op)) this.delta(op);
      else if (this.cfg.window.kind === 'session') this.sessionPost(op, this.cfg.window.gap);
      else this.fixedPost(op, this.cfg.window);
    }
    return ops.length;
  }

  /** Takes the records produced since the last call. */
  drainOutput(): { results: ResultRecord[]; late: LateRecord[] } {
    const out = { results: this.results, late: this.late };
    this.results = [];
    this.late = [];
    return out;
  }

  /**
   * A checkpoint's windows, produced lazily so a caller can hand them on in slices: every live
   * window (full) or the changed ones since the last checkpoint, and the removed ids. The state
   * must not change until the windows are consumed (the partition actor applies nothing meanwhile).
   */
  snapshot(full: boolean): { upserts: Iterable<PersistedWindow>; deletes: Iterable<string> } {
    const dirty = this.dirty;
    const removed = full ? [] : this.removed;
    this.dirty = [];
    this.removed = [];
    for (const e of dirty) e.dirty = false;
    const persist = (e: Entry): PersistedWindow => this.persist(e);
    const live = (e: Entry): boolean => e.state === 'open' || e.state === 'pending';
    const source = full ? () => this.entries() : () => dirty.values();
    return {
      deletes: {
        *[Symbol.iterator]() {
          for (const e of removed) yield windowId(e.key, e.start, e.end);
        },
      },
      upserts: {
        *[Symbol.iterator]() {
          for (const e of source()) if (live(e)) yield persist(e);
        },
      },
    };
  }

  /** Rebuilds windows in their saved machine state, with their timers. */
  restore(windows: readonly PersistedWindow[], watermark: number): void {
    this.wm = watermark;
    for (const w of windows) {
      const entry = this.spawn(w.key, w.start, w.end, w.acc, w.n, false);
      entry.revision = w.revision;
      if (w.state === 'open') this.timers.push(entry.end, entry);
      else {
        this.setState(entry, w.state);
        this.timers.push(entry.end + this.cfg.lateness, entry);
      }
    }
  }

  /** Current windows of a key (all keys when `key` is undefined), optionally within [from, to). */
  query(key?: string, from = -Infinity, to = Infinity): WindowView[] {
    const out: WindowView[] = [];
    const inspect = this.job.def.inspect;
    for (const e of this.entries(key)) {
      if (e.end <= from || e.start >= to) continue;
      const view: WindowView = {
        key: e.key,
        window: { start: e.start, end: e.end },
        state: e.state as WindowState,
        aggregate: this.job.result(e.acc, e),
        records: e.n,
        nextRevision: e.revision,
        firesAt: e.end,
        closesAt: e.end + this.cfg.lateness,
      };
      if (inspect) view.extra = inspect(e.acc);
      out.push(view);
    }
    return out.sort((a, b) => a.window.start - b.window.start || a.key.localeCompare(b.key));
  }

  /** Live windows by lifecycle state. */
  countsByState(): { open: number; pending: number } {
    return { open: this.liveCount - this.pendingCount, pending: this.pendingCount };
  }

  /** Closed windows whose removal the next checkpoint will record. */
  get closedAwaitingCheckpoint(): number {
    return this.removed.length;
  }

  private *entries(key?: string): Generator<Entry> {
    if (key !== undefined) {
      const kw = this.fixed[shardOf(key)]!.get(key);
      if (kw instanceof Map) yield* kw.values();
      else if (kw) yield kw;
      yield* this.sessions[shardOf(key)]!.get(key) ?? [];
      return;
    }
    for (const shard of this.fixed) {
      for (const kw of shard.values()) {
        if (kw instanceof Map) yield* kw.values();
        else yield kw;
      }
    }
    for (const shard of this.sessions) for (const list of shard.values()) yield* list;
  }

  /** The live fixed window of `key` that starts at `start`, if any. */
  private fixedEntry(key: string, start: number): Entry | undefined {
    const kw = this.fixed[shardOf(key)]!.get(key);
    if (kw instanceof Map) return kw.get(start);
    return kw?.start === start ? kw : undefined;
  }

  /** Enters a new machine state, keeping the count of pending windows. */
  private setState(e: Entry, state: Entry['state']): void {
    if (e.state === 'pending') this.pendingCount--;
    if (state === 'pending') this.pendingCount++;
    e.state = state;
  }

  private markDirty(e: Entry): void {
    if (e.dirty) return;
    e.dirty = true;
    this.dirty.push(e);
  }

  private persist(e: Entry): PersistedWindow {
    return { key: e.key, start: e.start, end: e.end, state: e.state as 'open' | 'pending', acc: e.acc, revision: e.revision, n: e.n };
  }

  /**
   * Steps the window's machine with a lifecycle event; its new state and context become the entry's.
   * The entry holds the machine's context fields (key, start, end, acc, revision) and is read as the
   * context as it stands; the machine makes a new context when it changes one.
   */
  private step(e: Entry, event: WindowEvent): void {
    const next = this.stepper.step(e.state as WindowState, e, event);
    this.setState(e, next.value);
    e.acc = next.context.acc;
    e.revision = next.context.revision;
  }

  private spawn(key: string, start: number, end: number, acc: unknown, n: number, dirty = true): Entry {
    const entry: Entry = { key, start, end, state: 'open', acc, revision: 0, n, dirty: false };
    this.liveCount++;
    if (dirty) this.markDirty(entry);
    if (this.cfg.window.kind === 'session') {
      const shard = this.sessions[shardOf(key)]!;
      let list = shard.get(key);
      if (!list) shard.set(key, (list = []));
      list.push(entry);
    } else {
      const shard = this.fixed[shardOf(key)]!;
      const kw = shard.get(key);
      if (kw === undefined) shard.set(key, entry);
      else if (kw instanceof Map) kw.set(start, entry);
      else
        shard.set(
          key,
          new Map([
            [kw.start, kw],
            [start, entry],
          ]),
        );
    }
    return entry;
  }

  private drop(e: Entry, state: 'closed' | 'absorbed'): void {
    this.setState(e, state);
    this.liveCount--;
    e.dirty = false;
    this.removed.push(e);
    // Nothing reads a dropped window's aggregate again: only its id is kept (for the checkpoint).
    e.acc = undefined;
    if (this.cfg.window.kind === 'session') {
      const shard = this.sessions[shardOf(e.key)]!;
      const list = shard.get(e.key)!;
      list.splice(list.indexOf(e), 1);
      if (list.length === 0) shard.delete(e.key);
    } else {
      const shard = this.fixed[shardOf(e.key)]!;
      const kw = shard.get(e.key)!;
      if (!(kw instanceof Map)) shard.delete(e.key);
      else {
        kw.delete(e.start);
        // Back to the compact form when one window is left.
        if (kw.size === 1) shard.set(e.key, kw.values().next().value!);
      }
    }
  }

  /**
   * Watermark reaches `w`: fire and close every window whose time has come. Returns false when
   * it stopped early because the windows stepped reached `limit` (timers due remain).
   */
  private advance(w: number, limit: number): boolean {
    if (w > this.wm) this.wm = w;
    w = this.wm;
    // One event of each kind for every window this step takes (the machine only reads them).
    let fire: FireEvent | undefined;
    let close: CloseEvent | undefined;
    while (this.timers.size > 0 && this.timers.peekTime() <= w) {
      const entry = this.timers.pop()!;
      if (entry.state === 'open') this.fire(entry, (fire ??= { type: 'FIRE', watermark: w }));
      else if (entry.state === 'pending') this.close(entry, (close ??= { type: 'CLOSE', watermark: w }));
      // absorbed or closed: nothing left to do
      if (++this.stepped >= limit && this.timers.peekTime() <= w) return false;
    }
    return true;
  }

  private fire(e: Entry, event: FireEvent): void {
    this.step(e, event);
    // A watermark already past end + lateness closes the window in the same machine step.
    if (e.state === 'closed') {
      this.drop(e, 'closed');
      return;
    }
    this.markDirty(e);
    this.timers.push(e.end + this.cfg.lateness, e);
  }

  private close(e: Entry, event: CloseEvent): void {
    this.step(e, event);
    this.drop(e, 'closed');
  }

  /** A new window holding `acc`; fires at once when the watermark is already past its end. */
  private open(key: string, win: Window, acc: unknown, n: number): Entry {
    const e = this.spawn(key, win.start, win.end, acc, n);
    if (win.end <= this.wm) this.fire(e, { type: 'FIRE', watermark: this.wm });
    else this.timers.push(win.end, e);
    return e;
  }

  /** Records of an open window: the machine's `accumulate` (ADD in `open`) applied directly. */
  private addOpen(e: Entry, delta: unknown, n: number): void {
    e.acc = this.job.merge(e.acc, delta, e);
    e.n += n;
    this.markDirty(e);
  }

  /** One record for a live window: accumulated while open, a revision when pending. */
  private accept(e: Entry, p: PostItem): void {
    if (e.state === 'open') this.addOpen(e, p.a, 1);
    else {
      e.n += 1;
      this.step(e, { type: 'LATE', delta: p.a, watermark: this.wm, recordId: p.id });
      this.markDirty(e);
    }
  }

  private delta(d: DeltaItem): void {
    const e = this.fixedEntry(d.k, d.s);
    if (e) {
      // The source sends deltas only for windows open under the watermark in force: anything else
      // means the channel delivered ops out of order, and a result would be wrong.
      if (e.state !== 'open') throw new Error(`delta for ${d.k} [${d.s}) arrived while the window is ${e.state}`);
      this.addOpen(e, d.a, d.c);
    } else this.open(d.k, { start: d.s, end: d.s + this.windowSize }, d.a, d.c);
  }

  private fixedPost(p: PostItem, spec: WindowSpec): void {
    for (const win of fixedWindows(spec, p.ts)) {
      const life = lifecycleAt(win, this.wm, this.cfg.lateness);
      // Open windows got this record in a delta.
      if (life === 'open') continue;
      if (life === 'closed') {
        this.late.push(lateRecord(this.cfg.job, this.job.lateIdField, p.id, p.k, win, p.ts, this.wm));
        continue;
      }
      const e = this.fixedEntry(p.k, win.start);
      if (e) this.accept(e, p);
      else this.open(p.k, win, p.a, 1);
    }
  }

  private sessionPost(p: PostItem, gap: number): void {
    const proto: Window = { start: p.ts, end: p.ts + gap };
    const live = this.sessions[shardOf(p.k)]!.get(p.k) ?? [];
    const touching = live.filter((s) => s.start <= proto.end && proto.start <= s.end);
    if (touching.length === 0) {
      if (proto.end + this.cfg.lateness <= this.wm) this.late.push(lateRecord(this.cfg.job, this.job.lateIdField, p.id, p.k, proto, p.ts, this.wm));
      else this.open(p.k, proto, p.a, 1);
      return;
    }
    const only = touching[0]!;
    if (touching.length === 1 && only.start <= proto.start && proto.end <= only.end) {
      this.accept(only, p);
      return;
    }
    // Any other merge is a new window; the absorbed sessions emit nothing more.
    let acc: unknown = undefined;
    let n = 1;
    let start = proto.start;
    let end = proto.end;
    for (const s of touching) {
      acc = acc === undefined ? s.acc : this.job.merge(acc, s.acc, { key: p.k, start: s.start, end: s.end, recordId: p.id });
      n += s.n;
      start = Math.min(start, s.start);
      end = Math.max(end, s.end);
      this.drop(s, 'absorbed');
    }
    acc = this.job.merge(acc, p.a, { key: p.k, start, end, recordId: p.id });
    this.open(p.k, { start, end }, acc, n);
  }
}
