// Worker threads for the order-free part of ingestion (decode, validation, keys, the record's
// accumulator: AFINN scoring for the sentiment job),
// so the source's second core is used; results come back in order and are accepted in order.

import { Worker } from 'node:worker_threads';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { CompiledJob, Prepared } from '../runtime/compiled-job.js';
import type { JobSource } from './job-loader.js';
import type { Preparer } from './remote-prepare.js';
import { packPayloads } from './payload-pack.js';

const WORKER = new URL('./scoring-worker.js', import.meta.url);

/** Below this many messages a batch is prepared inline: a thread hop would cost more than it saves. */
const MIN_BATCH_FOR_THREADS = 64;

/** What a worker thread is sent: a packed batch (see payload-pack.ts) with each payload's subject and sequence. */
export interface WorkerBatch {
  bytes: Uint8Array<ArrayBuffer>;
  ends: Uint32Array<ArrayBuffer>;
  subjects: readonly string[];
  seqs: readonly number[];
}

interface Job {
  resolve: (out: Prepared[]) => void;
  reject: (e: Error) => void;
}

/** Prepares batches of payloads on `threads` worker threads (inline when 0). */
export class ScoringPool implements Preparer {
  private readonly workers: Worker[] = [];
  private readonly queues: Job[][] = [];
  private next = 0;
  /**
   * `source` tells a thread how to build the same job (absent for a definition given as an object,
   * which cannot cross a thread boundary: then everything is prepared inline).
   */
  constructor(
    threads: number,
    private readonly job: CompiledJob,
    source?: JobSource,
  ) {
    // The worker is compiled JavaScript; where it is absent (sources run directly), prepare inline.
    const available = source !== undefined && existsSync(fileURLToPath(WORKER));
    for (let i = 0; available && i < threads; i++) {
      const w = new Worker(WORKER, { workerData: source });
      const queue: Job[] = [];
      w.on('message', (out: Prepared[]) => queue.shift()?.resolve(out));
      w.on('error', (e) => {
        for (const j of queue.splice(0)) j.reject(e);
      });
      w.unref();
      this.workers.push(w);
      this.queues.push(queue);
    }
  }

  /** Number of worker threads in use. */
  get threads(): number {
    return this.workers.length;
  }

  /** Prepares payloads, results in the same order. */
  prepare(payloads: readonly Uint8Array[], subjects: readonly string[], seqs: readonly number[]): Promise<Prepared[]> {
    if (this.workers.length === 0 || payloads.length < MIN_BATCH_FOR_THREADS) {
      try {
        return Promise.resolve(payloads.map((p, i) => this.job.prepare(p, subjects[i]!, seqs[i]!)));
      } catch (e) {
        return Promise.reject(e as Error);
      }
    }
    // One transferable buffer and its offsets: no per-message cloning on the way out.
    const { bytes, ends } = packPayloads(payloads);
    const batch: WorkerBatch = { bytes, ends, subjects, seqs };
    const i = this.next++ % this.workers.length;
    return new Promise((resolve, reject) => {
      this.queues[i]!.push({ resolve, reject });
      this.workers[i]!.postMessage(batch, [bytes.buffer, ends.buffer]);
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
