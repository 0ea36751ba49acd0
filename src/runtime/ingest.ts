// The source side of the job, without I/O: validate, timestamp, score and key each message,
// track the watermark, and route the results as per-partition batches.

import { WatermarkTracker, partitionNames, type IdleDecision, type WatermarkState } from './watermark.js';
import { IdleJournal } from './idleness.js';
import { BatchRouter } from './partitioner.js';
import type { Routing } from './key-groups.js';
import { deadLetterRecord, type DeadLetterRecord } from './records.js';
import { TidemarkError } from '../errors.js';
import { fixedWindows, type WindowSpec } from './windows.js';
import type { EmitMode } from './window-machine.js';
import { userCodeError, type CompiledJob, type Prepared } from './compiled-job.js';

export type { Prepared };

/** How the input is partitioned (`--input-partitions`). */
export interface InputPartitioning {
  /** input partitions (default 1: the whole stream is one partition) */
  inputPartitions?: number;
  /** the input partition a message's subject names (required with more than one), undefined when it names none */
  partitionOf?: (subject: string) => number | undefined;
}

/** What the event-time rules of a job depend on. */
export interface JobSemantics {
  job: string;
  window: WindowSpec;
  maxOutOfOrderness: number;
  lateness: number;
  emit: EmitMode;
  /** the job's definition, compiled */
  compiled: CompiledJob;
  /** a record whose event time is further ahead of the wall clock than this is dead-lettered (`future_ts`) */
  maxFuture?: number;
}

/** Turns raw input messages into routed ops, dead letters and watermark progress. */
export class Ingestor {
  readonly tracker: WatermarkTracker;
  readonly router: BatchRouter;
  dead: DeadLetterRecord[] = [];
  postsIn = 0;
  deadCount = 0;
  /**
   * Wall-clock bound for event times (`--max-future`): never decreasing, taken once per batch and
   * saved in checkpoints, so a restore judges the records after it against at least the same bound.
   */
  futureBound = -Infinity;
  /** Idleness decisions of the input partitions: journaled, replayed at their positions. */
  readonly idleness: IdleJournal;
  /** Input sequence of the last message accepted (or restored to). */
  position = 0;
  /** More than one input partition. */
  private readonly multi: boolean;
  private readonly partitionOf: (subject: string) => number | undefined;
  private readonly inputPartitions: number;
  /** Wall clock of the batch being accepted (set by tick). */
  private now: number;

  constructor(
    private readonly sem: JobSemantics,
    routing: Routing,
    idleTimeout = 0,
    opts: { preaggregate?: boolean; now?: number } & InputPartitioning = {},
  ) {
    this.inputPartitions = opts.inputPartitions ?? 1;
    this.multi = this.inputPartitions > 1;
    if (this.multi && !opts.partitionOf) throw new TidemarkError('BAD_CONFIG', 'several input partitions need a way to read the partition from a subject');
    this.partitionOf = opts.partitionOf ?? (() => 0);
    const names = partitionNames(this.inputPartitions);
    this.now = opts.now ?? Date.now();
    this.tracker = new WatermarkTracker(sem.maxOutOfOrderness, names);
    this.idleness = new IdleJournal(idleTimeout, names, this.now);
    this.router = new BatchRouter(routing, sem.window, sem.lateness, sem.compiled.merge, opts.preaggregate ?? true);
  }

  /** Moves the wall-clock bound for event times to `now + maxFuture` (if that is later). */
  tick(now: number): void {
    this.now = now;
    if (this.sem.maxFuture !== undefined) this.futureBound = Math.max(this.futureBound, now + this.sem.maxFuture);
  }

  /** Current watermark. */
  get watermark(): number {
    return this.tracker.current;
  }

  /** Accepts one message from the input stream. */
  accept(payload: Uint8Array, subject: string, seq: number): void {
    this.acceptPrepared(this.sem.compiled.prepare(payload, subject, seq), payload, subject, seq);
  }

  /** Accepts a prepared message, in input order: the watermark and routing need the order. */
  acceptPrepared(p: Prepared, payload: Uint8Array, subject: string, seq: number): void {
    // Journaled decisions take effect between messages, at the position they were made at.
    if (this.multi) this.applyJournal(seq - 1);
    this.position = seq;
    if (!p.ok) {
      // A bug in the job's add: stop (the last checkpoint stays intact).
      if (p.reason === 'fatal') {
        const at = 'at' in p ? p.at : undefined;
        if (!at) throw new TidemarkError('USER_CODE', p.error!);
        const w = this.sem.window.kind === 'session' ? { start: at.ts, end: at.ts + this.sem.window.gap } : fixedWindows(this.sem.window, at.ts)[0]!;
        throw userCodeError(at.fn, p.error, { key: at.key, recordId: at.recordId, start: w.start, end: w.end });
      }
      this.deadLetter(p.reason, payload, subject, seq, p.error);
      return;
    }
    let partition = '0';
    if (this.multi) {
      const n = this.partitionOf(subject);
      if (n === undefined || !(n >= 0 && n < this.inputPartitions)) {
        this.deadLetter('no_input_partition', payload, subject, seq, `the subject names no input partition from 0 to ${this.inputPartitions - 1} (the token before the last, set by the server's {{partition(${this.inputPartitions},…)}} mapping)`);
        return;
      }
      partition = String(n);
    }
    if (this.sem.maxFuture !== undefined && p.ts > this.futureBound) {
      this.deadLetter('future_ts', payload, subject, seq, `event time ${p.ts} is more than --max-future ahead of the wall clock (bound ${this.futureBound})`);
      return;
    }
    this.postsIn++;
    const before = this.tracker.current;
    for (const k of p.keys) this.router.post(k, p.id, p.ts, p.unit, before);
    if (!this.multi) {
      this.router.advance(before, this.tracker.observe(p.ts));
      return;
    }
    // A post makes its partition active again (a consequence of the input: no journal needed).
    const wasIdle = this.tracker.isIdle(partition);
    this.router.advance(before, this.tracker.observe(p.ts, partition));
    this.idleness.seen(partition, seq, this.now);
    if (wasIdle) this.idleness.applied({ seq, partition, idle: false, wm: before });
  }

  /** Applies the journaled decisions whose position is `upTo` or earlier. */
  applyJournal(upTo = this.position): IdleDecision[] {
    const done: IdleDecision[] = [];
    for (const d of this.idleness.dueBefore(upTo + 1)) {
      const before = this.tracker.current;
      this.router.advance(before, this.tracker.setIdle(d.partition, d.idle));
      const applied = { ...d, wm: before };
      this.idleness.applied(applied);
      done.push(applied);
    }
    return done;
  }

  /** Input partitions due to go idle at wall-clock `now` (none while journaled decisions lie ahead). */
  idleDue(now: number): string[] {
    return this.multi ? this.idleness.due(now, (p) => this.tracker.isIdle(p)) : [];
  }

  /**
   * Decides, from wall-clock `now`, which partitions go idle at the current position and journals
   * it; the decisions take effect with applyJournal() (once they are durable).
   */
  decideIdle(now: number): IdleDecision[] {
    const due = this.idleDue(now);
    return due.length ? this.idleness.decide(due, this.position, this.tracker.current) : [];
  }

  /** Each input partition: its watermark, whether it is idle, its last post's sequence and how long it has been quiet (wall clock). */
  inputs(now: number): Array<{ partition: string; watermark: number; idle: boolean; lastSeq?: number | null; quietMs?: number }> {
    if (!this.multi) return this.tracker.partitions();
    return this.tracker.partitions().map((p) => ({ ...p, lastSeq: this.idleness.lastSeq.get(p.partition) ?? null, quietMs: this.idleness.quietFor(p.partition, now) }));
  }

  /** The watermark state a checkpoint carries: the tracker's, and with several input partitions the journal. */
  watermarkState(): WatermarkState {
    const s = this.tracker.toJSON();
    return this.multi ? { ...s, ...this.idleness.toState() } : s;
  }

  /** Restores a checkpoint's watermark state at input sequence `seq`; journaled decisions due there apply at once. */
  restoreWatermark(state: WatermarkState, seq: number): void {
    this.tracker.restore(state);
    this.router.reset(state.wm);
    this.position = seq;
    if (!this.multi) return;
    this.idleness.restore(state);
    this.applyJournal(seq);
  }

  private deadLetter(reason: string, payload: Uint8Array, subject: string, seq: number, error?: string): void {
    this.deadCount++;
    this.dead.push(deadLetterRecord(this.sem.job, reason, subject, seq, payload, error));
  }

  /** Moves the watermark to `w` by hand (when later than the current one). */
  advanceWatermark(w: number): void {
    const before = this.tracker.current;
    this.router.advance(before, this.tracker.advanceTo(w));
  }

  /** End of input: the watermark becomes +∞ in every partition. */
  end(): void {
    const before = this.tracker.current;
    this.router.advance(before, this.tracker.end());
  }

  /** Takes dead letters gathered since the last call. */
  takeDead(): DeadLetterRecord[] {
    const d = this.dead;
    this.dead = [];
    return d;
  }
}
