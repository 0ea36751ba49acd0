// The whole job in one process with no NATS: the same ingest, routing and window operators
// the actors run. Used by tests (against the reference model) and by the benchmark baseline.

import { Ingestor, type JobSemantics } from './ingest.js';
import { WindowOperator, windowId, type PersistedWindow } from './window-operator.js';
import type { DeadLetterRecord, LateRecord, ResultRecord } from './records.js';

export type { JobSemantics };

/** Runs a bounded input through the job; `drain` ends it with watermark +∞. */
export function runInMemory(
  payloads: readonly Uint8Array[],
  sem: JobSemantics,
  opts: {
    batchSize?: number;
    partitions?: number;
    drain?: boolean;
    subject?: string;
    /**
     * After every this many batches, checkpoint the operators (a delta, every third one full) and
     * replace them with new operators restored from the accumulated checkpoint: what a restart does.
     */
    restartEvery?: number;
    /** Hand results on in slices of this many within a watermark step (as the partition actor does). */
    slice?: number;
    /** false: one delta per record and window instead of one per (key, window) and batch */
    preaggregate?: boolean;
    /** wall clock for `--max-future` (default: Date.now) */
    now?: () => number;
  } = {},
): { results: ResultRecord[]; late: LateRecord[]; dead: DeadLetterRecord[] } {
  const batchSize = opts.batchSize ?? 1000;
  const partitions = opts.partitions ?? 1;
  const ingest = new Ingestor(sem, partitions, 0, { preaggregate: opts.preaggregate ?? true });
  const now = opts.now ?? Date.now;
  ingest.tick(now());
  const make = (): WindowOperator => new WindowOperator({ job: sem.job, window: sem.window, lateness: sem.lateness, mode: sem.emit, compiled: sem.compiled });
  let ops = Array.from({ length: partitions }, make);
  // The stored state, as a checkpoint store would hold it after applying each delta.
  const stored = Array.from({ length: partitions }, () => new Map<string, PersistedWindow>());
  let delivered = 0;
  const restart = (): void => {
    ops = ops.map((op, p) => {
      const full = delivered % (3 * opts.restartEvery!) === 0;
      const snap = op.snapshot(full);
      const delta = { upserts: [...snap.upserts], deletes: snap.deletes };
      if (full) stored[p]!.clear();
      for (const id of delta.deletes) stored[p]!.delete(id);
      // The snapshot must not share objects with the live state (it goes through a codec in the job).
      for (const w of delta.upserts) stored[p]!.set(windowId(w.key, w.start, w.end), structuredClone(w));
      const fresh = make();
      fresh.restore([...stored[p]!.values()].map((w) => structuredClone(w)), op.watermark);
      return fresh;
    });
  };
  const out = { results: [] as ResultRecord[], late: [] as LateRecord[], dead: [] as DeadLetterRecord[] };
  const deliver = (): void => {
    const batches = ingest.router.take();
    ops.forEach((op, p) => {
      const take = (): void => {
        const o = op.drainOutput();
        out.results.push(...o.results);
        out.late.push(...o.late);
      };
      const batch = batches[p]!;
      for (let i = 0; (i = op.applySome(batch, i, opts.slice)) < batch.length; ) take();
      take();
    });
    out.dead.push(...ingest.takeDead());
    ingest.tick(now());
    delivered++;
    if (opts.restartEvery && delivered % opts.restartEvery === 0) restart();
  };
  payloads.forEach((payload, i) => {
    ingest.accept(payload, opts.subject ?? 'posts.in', i + 1);
    if ((i + 1) % batchSize === 0) deliver();
  });
  if (opts.drain ?? true) ingest.end();
  deliver();
  return out;
}
