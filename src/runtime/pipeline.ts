// The whole job in one process with no NATS: the same ingest, routing and window operators
// the actors run. Used by tests (against the reference model) and by the benchmark baseline.

import { Ingestor, type JobSemantics } from './ingest.js';
import { WindowOperator } from './window-operator.js';
import type { DeadLetterRecord, LateRecord, ResultRecord } from './records.js';

export type { JobSemantics };

/** Runs a bounded input through the job; `drain` ends it with watermark +∞. */
export function runInMemory(
  payloads: readonly Uint8Array[],
  sem: JobSemantics,
  opts: { batchSize?: number; partitions?: number; drain?: boolean; subject?: string } = {},
): { results: ResultRecord[]; late: LateRecord[]; dead: DeadLetterRecord[] } {
  const batchSize = opts.batchSize ?? 1000;
  const partitions = opts.partitions ?? 1;
  const ingest = new Ingestor(sem, partitions);
  const ops = Array.from({ length: partitions }, () => new WindowOperator({ job: sem.job, window: sem.window, lateness: sem.lateness, mode: sem.emit }));
  const out = { results: [] as ResultRecord[], late: [] as LateRecord[], dead: [] as DeadLetterRecord[] };
  const deliver = (): void => {
    const batches = ingest.router.take();
    ops.forEach((op, p) => {
      op.apply(batches[p]!);
      const o = op.drainOutput();
      out.results.push(...o.results);
      out.late.push(...o.late);
    });
    out.dead.push(...ingest.takeDead());
  };
  payloads.forEach((payload, i) => {
    ingest.accept(payload, opts.subject ?? 'posts.in', i + 1);
    if ((i + 1) % batchSize === 0) deliver();
  });
  if (opts.drain ?? true) ingest.end();
  deliver();
  return out;
}
