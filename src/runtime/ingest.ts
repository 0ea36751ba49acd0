// The source side of the job, without I/O: validate, timestamp, score and key each message,
// track the watermark, and route the results as per-partition batches.

import { parsePost } from './post.js';
import { scoreText } from './sentiment.js';
import { keyExtractor, type KeySpec } from './keys.js';
import { WatermarkTracker } from './watermark.js';
import { BatchRouter } from './partitioner.js';
import { deadLetterRecord, type DeadLetterRecord } from './records.js';
import type { WindowSpec } from './windows.js';
import type { EmitMode } from './window-machine.js';

/** What the event-time rules of a job depend on. */
export interface JobSemantics {
  job: string;
  window: WindowSpec;
  maxOutOfOrderness: number;
  lateness: number;
  keys: KeySpec;
  emit: EmitMode;
}

/** A message after the part of ingestion that needs no order (and can run on another thread). */
export type Prepared = { ok: false; reason: string } | { ok: true; id: string; ts: number; keys: string[]; score: number };

/** Builds the order-free step: validate, extract keys, score (only posts that have keys). */
export function preparer(spec: KeySpec): (payload: Uint8Array) => Prepared {
  const keysOf = keyExtractor(spec);
  return (payload) => {
    const parsed = parsePost(payload);
    if (!parsed.ok) return parsed;
    const { id, ts, text, lang } = parsed.post;
    const keys = keysOf(text);
    return { ok: true, id, ts, keys, score: keys.length > 0 ? scoreText(text, lang) : 0 };
  };
}

/** Turns raw input messages into routed ops, dead letters and watermark progress. */
export class Ingestor {
  readonly tracker: WatermarkTracker;
  readonly router: BatchRouter;
  readonly prepare: (payload: Uint8Array) => Prepared;
  dead: DeadLetterRecord[] = [];
  postsIn = 0;
  deadCount = 0;

  constructor(
    private readonly sem: JobSemantics,
    partitions: number,
    idleTimeout = 0,
  ) {
    this.tracker = new WatermarkTracker(sem.maxOutOfOrderness, idleTimeout);
    this.router = new BatchRouter(partitions, sem.window, sem.lateness);
    this.prepare = preparer(sem.keys);
  }

  /** Current watermark. */
  get watermark(): number {
    return this.tracker.current;
  }

  /** Accepts one message from the input stream. */
  accept(payload: Uint8Array, subject: string, seq: number): void {
    this.acceptPrepared(this.prepare(payload), payload, subject, seq);
  }

  /** Accepts a prepared message, in input order: the watermark and routing need the order. */
  acceptPrepared(p: Prepared, payload: Uint8Array, subject: string, seq: number): void {
    if (!p.ok) {
      this.deadCount++;
      this.dead.push(deadLetterRecord(this.sem.job, p.reason, subject, seq, payload));
      return;
    }
    this.postsIn++;
    const before = this.tracker.current;
    for (const k of p.keys) this.router.post({ k, id: p.id, ts: p.ts, s: p.score }, before);
    const after = this.tracker.observe(p.ts);
    this.router.advance(before, after);
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
