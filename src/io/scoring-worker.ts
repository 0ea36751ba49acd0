// Worker thread body of the scoring pool: prepares each payload of a batch (decode, event time,
// keys, the record's accumulator) with the same compiled job the source uses inline.

import { parentPort, workerData } from 'node:worker_threads';
import { loadCompiledJob, type JobSource } from './job-loader.js';
import type { Prepared } from '../runtime/compiled-job.js';

type Batch = { buf: Uint8Array; offsets: Uint32Array; subjects: string[]; seqs: number[] };

const ready = loadCompiledJob(workerData as JobSource);

parentPort?.on('message', (batch: Batch) => {
  void ready.then((job) => {
    const out: Prepared[] = [];
    const { buf, offsets, subjects, seqs } = batch;
    for (let i = 0; i + 1 < offsets.length; i++) out.push(job.prepare(buf.subarray(offsets[i]!, offsets[i + 1]!), subjects[i]!, seqs[i]!));
    parentPort!.postMessage(out);
  });
});
