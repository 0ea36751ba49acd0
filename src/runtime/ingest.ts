// The source side of the job, without I/O: validate, timestamp, score and key each message,
// track the watermark, and route the results as per-partition batches.

import { WatermarkTracker } from './watermark.js';
import { BatchRouter } from './partitioner.js';
import type { Routing } from './key-groups.js';
import { deadLetterRecord, type DeadLetterRecord } from './records.js';
import { TidemarkError } from '../errors.js';
import { fixedWindows, type WindowSpec } from './windows.js';
import type { EmitMode } from './window-machine.js';
import { userCodeError, type CompiledJob, type Prepared } from './compiled-job.js';

export type { Prepared };

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

  constructor(
    private readonly sem: JobSemantics,
    routing: Routing,
    idleTimeout = 0,
    opts: { preaggregate?: boolean } = {},
  ) {
    this.tracker = new WatermarkTracker(sem.maxOutOfOrderness, idleTimeout);
    this.router = new BatchRouter(routing, sem.window, sem.lateness, sem.compiled.merge, opts.preaggregate ?? true);
  }

  /** Moves the wall-clock bound for event times to `now + maxFuture` (if that is later). */
  tick(now: number): void {
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
    if (this.sem.maxFuture !== undefined && p.ts > this.futureBound) {
      this.deadLetter('future_ts', payload, subject, seq, `event time ${p.ts} is more than --max-future ahead of the wall clock (bound ${this.futureBound})`);
      return;
    }
    this.postsIn++;
    const before = this.tracker.current;
    for (const k of p.keys) this.router.post(k, p.id, p.ts, p.unit, before);
    const after = this.tracker.observe(p.ts);
    this.router.advance(before, after);
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
