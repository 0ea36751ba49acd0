// Worker thread body of the scoring pool: prepares each payload of a batch (decode, event time,
// keys, the record's accumulator) with the same compiled job the source uses inline.

import { parentPort, workerData } from 'node:worker_threads';
import { loadCompiledJob, type JobSource } from './job-loader.js';
import { payloadAt } from './payload-pack.js';
import type { WorkerBatch } from './scoring-pool.js';
import type { Prepared } from '../runtime/compiled-job.js';

const ready = loadCompiledJob(workerData as JobSource);

parentPort?.on('message', (batch: WorkerBatch) => {
  void ready.then((job) => {
    const out: Prepared[] = [];
    const { bytes, ends, subjects, seqs } = batch;
    for (let i = 0; i < ends.length; i++) out.push(job.prepare(payloadAt(bytes, ends, i), subjects[i]!, seqs[i]!));
    parentPort!.postMessage(out);
  });
});
