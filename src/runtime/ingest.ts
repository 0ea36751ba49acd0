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

/** Turns raw input messages into routed ops, dead letters and watermark progress. */
export class Ingestor {
  readonly tracker: WatermarkTracker;
  readonly router: BatchRouter;
  private readonly keysOf: (text: string) => string[];
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
    this.keysOf = keyExtractor(sem.keys);
  }

  /** Current watermark. */
  get watermark(): number {
    return this.tracker.current;
  }

  /** Accepts one message from the input stream. */
  accept(payload: Uint8Array, subject: string, seq: number): void {
    const parsed = parsePost(payload);
    if (!parsed.ok) {
      this.deadCount++;
      this.dead.push(deadLetterRecord(this.sem.job, parsed.reason, subject, seq, payload));
      return;
    }
    const { id, ts, text, lang } = parsed.post;
    this.postsIn++;
    const before = this.tracker.current;
    const keys = this.keysOf(text);
    if (keys.length > 0) {
      const s = scoreText(text, lang);
      for (const k of keys) this.router.post({ k, id, ts, s }, before);
    }
    const after = this.tracker.observe(ts);
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
