// The keyed window operator of one partition: owns every key's windows (one xstate actor each)
// and their event-time timers, and applies an ordered stream of posts and watermark markers.

import { createActor, type Actor } from 'xstate';
import { lateRecord, mergeAggregates, emptyAggregate, addScore, type Aggregate, type LateRecord, type ResultRecord } from './records.js';
import { fixedWindows, type Window, type WindowSpec } from './windows.js';
import { lifecycleAt } from './lateness.js';
import { TimerHeap } from './timer-heap.js';
import { windowMachine, type EmitMode, type WindowContext, type WindowState } from './window-machine.js';

/** A scored post routed to this partition for one of its keys. */
export interface PostItem {
  /** key */
  k: string;
  /** post id */
  id: string;
  ts: number;
  /** sentiment score */
  s: number;
}

/** An operation: a post for a key, or (a number) the watermark advancing to that value. */
export type Op = PostItem | number;

export interface OperatorConfig {
  job: string;
  window: WindowSpec;
  lateness: number;
  mode: EmitMode;
}

/**
 * A window as it goes to and comes back from a checkpoint: its machine's state and the part of
 * its context that is not configuration (job, lateness and emit mode come from the job).
 */
export interface PersistedWindow {
  key: string;
  start: number;
  end: number;
  state: 'open' | 'pending';
  agg: Aggregate;
  revision: number;
  /** `windowId(key, start, end)` when the reader already has it (saves building it again) */
  id?: string;
}

/** The machine state of a window whose actor is not running (restored, not touched since). */
interface Dormant {
  state: 'open' | 'pending';
  agg: Aggregate;
  revision: number;
}

/** A window as `query` shows it. */
export interface WindowView {
  key: string;
  window: Window;
  state: WindowState;
  aggregate: Aggregate;
  nextRevision: number;
  firesAt: number;
  closesAt: number;
}

type WindowActor = Actor<typeof windowMachine>;

interface Entry {
  id: string;
  key: string;
  start: number;
  end: number;
  /**
   * The window's xstate actor, activated on the window's first lifecycle event (Orleans-style
   * virtual actors): until then `dormant` holds its machine state — `open` with the posts so far,
   * or, for a window restored from a checkpoint, whatever state was saved. An open window costs
   * no actor while it collects posts, and a restart does not start 100k actors before its first post.
   */
  actor: WindowActor | null;
  dormant: Dormant | null;
  /**
   * Posts the actor has not seen yet. They reach it in one ADD at its next lifecycle event,
   * checkpoint or query, so xstate is paid per window and checkpoint, not per post.
   */
  pending: Aggregate | null;
  state: WindowState | 'absorbed';
}

interface Timer {
  entry: Entry;
  kind: 'fire' | 'close';
}

/** Storage id of a window: key, start, end. */
export const windowId = (key: string, start: number, end: number): string => `${key}\u0000${start}\u0000${end}`;

/** Per-partition keyed window state and the rules of DESIGN.md §3 applied to it. */
export class WindowOperator {
  private wm = -Infinity;
  private readonly fixed = new Map<string, Map<number, Entry>>();
  private readonly sessions = new Map<string, Entry[]>();
  private readonly timers = new TimerHeap<Timer>();
  private dirty = new Set<Entry>();
  private removed = new Set<string>();
  private liveCount = 0;
  results: ResultRecord[] = [];
  late: LateRecord[] = [];

  constructor(private readonly cfg: OperatorConfig) {}

  /** The watermark this partition has seen. */
  get watermark(): number {
    return this.wm;
  }

  /** Number of live (open or pending) windows. */
  get size(): number {
    return this.liveCount;
  }

  /** Applies posts and watermark markers in order; outputs accumulate in `results` / `late`. */
  apply(ops: readonly Op[]): void {
    this.applySome(ops, 0);
  }

  /**
   * Applies `ops` from index `from`, stopping inside a watermark step once it has produced
   * `budget` results. Returns where to resume (`ops.length` when all is applied), so that a step
   * that fires 100k windows can hand its results on in slices rather than all at the end.
   */
  applySome(ops: readonly Op[], from: number, budget = Infinity): number {
    const limit = this.results.length + Math.max(1, budget);
    for (let i = from; i < ops.length; i++) {
      const op = ops[i]!;
      if (typeof op === 'number') {
        // Resuming at i applies the marker again: a no-op, then the timers still due go on firing.
        if (!this.advance(op, limit)) return i;
      } else if (this.cfg.window.kind === 'session') this.sessionPost(op, this.cfg.window.gap);
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

  /** Changed and removed windows since the last call (an incremental checkpoint). */
  takeDelta(): { upserts: PersistedWindow[]; deletes: string[] } {
    const upserts: PersistedWindow[] = [];
    for (const e of this.dirty) {
      if (e.state === 'open' || e.state === 'pending') upserts.push(this.persist(e));
    }
    const deletes = [...this.removed];
    this.dirty = new Set();
    this.removed = new Set();
    return { upserts, deletes };
  }

  /** Every live window, persisted (a full checkpoint). */
  fullSnapshot(): PersistedWindow[] {
    const out: PersistedWindow[] = [];
    for (const e of this.entries()) out.push(this.persist(e));
    return out;
  }

  /** Rebuilds windows in their saved lifecycle state, with their timers; actors start on first use. */
  restore(windows: readonly PersistedWindow[], watermark: number): void {
    this.wm = watermark;
    for (const w of windows) {
      // The persisted window serves as the dormant state as it is (it is not shared).
      const entry = this.spawn(w.key, w.start, w.end, undefined, w, false);
      if (entry.state === 'open') this.timers.push(entry.end, { entry, kind: 'fire' });
      else this.timers.push(entry.end + this.cfg.lateness, { entry, kind: 'close' });
    }
  }

  /** Current windows of a key (all keys when `key` is undefined), optionally within [from, to). */
  query(key?: string, from = -Infinity, to = Infinity): WindowView[] {
    const out: WindowView[] = [];
    for (const e of this.entries(key)) {
      if (e.end <= from || e.start >= to) continue;
      const ctx = this.contextOf(e);
      out.push({
        key: e.key,
        window: { start: e.start, end: e.end },
        state: e.state as WindowState,
        aggregate: { ...ctx.agg },
        nextRevision: ctx.revision,
        firesAt: e.end,
        closesAt: e.end + this.cfg.lateness,
      });
    }
    return out.sort((a, b) => a.window.start - b.window.start || a.key.localeCompare(b.key));
  }

  /** Live windows by lifecycle state. */
  countsByState(): { open: number; pending: number } {
    let open = 0;
    let pending = 0;
    for (const e of this.entries()) {
      if (e.state === 'open') open++;
      else pending++;
    }
    return { open, pending };
  }

  /** Closed windows whose removal the next checkpoint will record. */
  get closedAwaitingCheckpoint(): number {
    return this.removed.size;
  }

  private *entries(key?: string): Generator<Entry> {
    const fixed = key === undefined ? this.fixed.values() : [this.fixed.get(key) ?? new Map<number, Entry>()];
    for (const m of fixed) yield* m.values();
    const sess = key === undefined ? this.sessions.values() : [this.sessions.get(key) ?? []];
    for (const list of sess) yield* list;
  }

  private persist(e: Entry): PersistedWindow {
    const ctx = this.contextOf(e);
    return { key: e.key, start: e.start, end: e.end, state: e.state as 'open' | 'pending', agg: { ...ctx.agg }, revision: ctx.revision };
  }

  /** The window's machine context, with every buffered post applied. */
  private contextOf(e: Entry): Pick<WindowContext, 'agg' | 'revision'> {
    this.flush(e);
    return e.actor ? (e.actor.getSnapshot().context as WindowContext) : e.dormant!;
  }

  /** The window's running actor, started from its dormant state when it has none yet. */
  private actorOf(e: Entry): WindowActor {
    if (e.actor) return e.actor;
    const d = e.dormant!;
    const input = { job: this.cfg.job, key: e.key, start: e.start, end: e.end, lateness: this.cfg.lateness, mode: this.cfg.mode, agg: d.agg };
    // An open window has emitted nothing (revision 0): the machine's own initial state with the
    // posts so far as input. A pending one is resolved from its saved state.
    e.actor =
      d.state === 'open' && d.revision === 0
        ? this.startActor(createActor(windowMachine, { input }))
        : this.startActor(createActor(windowMachine, { input, snapshot: windowMachine.resolveState({ value: d.state, context: { ...input, revision: d.revision } }) }));
    e.dormant = null;
    return e.actor;
  }

  private startActor(actor: WindowActor): WindowActor {
    actor.on('result', (ev) => this.results.push(ev.record));
    actor.start();
    return actor;
  }

  private spawn(key: string, start: number, end: number, agg?: Aggregate, dormant?: Dormant & { id?: string }, dirty = true): Entry {
    const d: Dormant = dormant ?? { state: 'open', agg: agg ?? emptyAggregate(), revision: 0 };
    const entry: Entry = { id: dormant?.id ?? windowId(key, start, end), key, start, end, actor: null, dormant: d, pending: null, state: d.state };
    this.liveCount++;
    if (dirty) this.dirty.add(entry);
    if (this.cfg.window.kind === 'session') {
      let list = this.sessions.get(key);
      if (!list) this.sessions.set(key, (list = []));
      list.push(entry);
    } else {
      let m = this.fixed.get(key);
      if (!m) this.fixed.set(key, (m = new Map()));
      m.set(start, entry);
    }
    return entry;
  }

  private drop(e: Entry, state: 'closed' | 'absorbed'): void {
    e.state = state;
    e.actor?.stop();
    this.liveCount--;
    this.dirty.delete(e);
    this.removed.add(e.id);
    if (this.cfg.window.kind === 'session') {
      const list = this.sessions.get(e.key)!;
      list.splice(list.indexOf(e), 1);
      if (list.length === 0) this.sessions.delete(e.key);
    } else {
      const m = this.fixed.get(e.key)!;
      m.delete(e.start);
      if (m.size === 0) this.fixed.delete(e.key);
    }
  }

  private flush(e: Entry): void {
    if (e.pending === null) return;
    // A running actor takes the posts as an ADD; a dormant open window keeps them as the context
    // its machine will start with.
    if (e.actor) e.actor.send({ type: 'ADD', delta: e.pending });
    else e.dormant!.agg = mergeAggregates(e.dormant!.agg, e.pending);
    e.pending = null;
  }

  private buffer(e: Entry, score: number): void {
    if (e.pending === null) {
      e.pending = emptyAggregate();
      this.dirty.add(e);
    }
    addScore(e.pending, score);
  }

  /**
   * Watermark reaches `w`: fire and close every window whose time has come. Returns false when
   * it stopped early because `results` reached `limit` (timers due remain).
   */
  private advance(w: number, limit: number): boolean {
    if (w > this.wm) this.wm = w;
    w = this.wm;
    while (this.timers.size > 0 && this.timers.peekTime() <= w) {
      const { entry, kind } = this.timers.pop()!;
      if (entry.state === 'absorbed' || entry.state === 'closed') continue;
      if (kind === 'fire') this.fire(entry, w);
      else this.close(entry, w);
      if (this.results.length >= limit) return false;
    }
    return true;
  }

  private fire(e: Entry, w: number): void {
    this.flush(e);
    const actor = this.actorOf(e);
    actor.send({ type: 'FIRE', watermark: w });
    // A watermark already past end + lateness closes the window in the same machine step.
    if (actor.getSnapshot().value === 'closed') {
      this.drop(e, 'closed');
      return;
    }
    e.state = 'pending';
    this.dirty.add(e);
    this.timers.push(e.end + this.cfg.lateness, { entry: e, kind: 'close' });
  }

  private close(e: Entry, w: number): void {
    this.actorOf(e).send({ type: 'CLOSE', watermark: w });
    this.drop(e, 'closed');
  }

  /** A new window holding one post; fires at once when the watermark is already past its end. */
  private open(key: string, win: Window, score: number, agg?: Aggregate): void {
    const e = this.spawn(key, win.start, win.end, agg);
    this.buffer(e, score);
    if (win.end <= this.wm) this.fire(e, this.wm);
    else this.timers.push(win.end, { entry: e, kind: 'fire' });
  }

  private accept(e: Entry, score: number): void {
    if (e.state === 'open') this.buffer(e, score);
    else {
      this.flush(e);
      this.actorOf(e).send({ type: 'LATE', score, watermark: this.wm });
      this.dirty.add(e);
    }
  }

  private fixedPost(p: PostItem, spec: WindowSpec): void {
    for (const win of fixedWindows(spec, p.ts)) {
      if (lifecycleAt(win, this.wm, this.cfg.lateness) === 'closed') {
        this.late.push(lateRecord(this.cfg.job, p.id, p.k, win, p.ts, this.wm));
        continue;
      }
      const e = this.fixed.get(p.k)?.get(win.start);
      if (e) this.accept(e, p.s);
      else this.open(p.k, win, p.s);
    }
  }

  private sessionPost(p: PostItem, gap: number): void {
    const proto: Window = { start: p.ts, end: p.ts + gap };
    const live = this.sessions.get(p.k) ?? [];
    const touching = live.filter((s) => s.start <= proto.end && proto.start <= s.end);
    if (touching.length === 0) {
      if (proto.end + this.cfg.lateness <= this.wm) this.late.push(lateRecord(this.cfg.job, p.id, p.k, proto, p.ts, this.wm));
      else this.open(p.k, proto, p.s);
      return;
    }
    const only = touching[0]!;
    if (touching.length === 1 && only.start <= proto.start && proto.end <= only.end) {
      this.accept(only, p.s);
      return;
    }
    // Any other merge is a new window; the absorbed sessions emit nothing more.
    let agg = emptyAggregate();
    let start = proto.start;
    let end = proto.end;
    for (const s of touching) {
      agg = mergeAggregates(agg, this.contextOf(s).agg);
      start = Math.min(start, s.start);
      end = Math.max(end, s.end);
      this.drop(s, 'absorbed');
    }
    this.open(p.k, { start, end }, p.s, agg);
  }
}

