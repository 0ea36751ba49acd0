// End-to-end throughput of the sentiment job: `tidemark run --drain` on a pre-filled JetStream
// stream, timed from spawn to exit, with checkpoints every 1 s and off, interleaved in one run.

import { join } from 'node:path';
import type { NatsConnection } from 'nats';
import { JobProcess, isFinishedLine, isStartLine } from './job-process.js';
import { median } from './common.js';
import { THROUGHPUT_JOB } from './workload.js';

export interface DrainRun {
  checkpoints: 'on' | 'off';
  posts: number;
  /** spawn → exit (whole process: node start, connect, restore, read, process, final checkpoint) */
  wallMs: number;
  /** the job's start-up log line → its "finished" line (pino timestamps): processing only */
  steadyMs: number;
  /** results received by a NATS subscriber of the job's sink subject */
  resultsAtSink: number;
  /** results the job says it wrote */
  resultsLogged: number;
  late: number;
}

export interface ThroughputOutcome {
  on: DrainRun[];
  off: DrainRun[];
  onPostsPerSec: number;
  offPostsPerSec: number;
  onSteadyPostsPerSec: number;
  offSteadyPostsPerSec: number;
}

export interface ThroughputOptions {
  url: string;
  stream: string;
  subjects: string;
  posts: number;
  /** runs per setting; the order is on, off, off, on, on, off, … so drift cancels */
  reps: number;
  workDir: string;
  /** run one more (unmeasured) checkpoints-on job under `node --cpu-prof`, profiles into this directory */
  profileDir?: string;
  onProgress?: (fraction: number, label: string) => void;
}

const pattern = (reps: number): Array<'on' | 'off'> => {
  const out: Array<'on' | 'off'> = [];
  for (let i = 0; i < reps; i++) out.push(...(i % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const)));
  return out;
};

/** Arguments of the throughput job (the configuration). */
export function throughputArgs(o: { url: string; stream: string; subjects: string; stateDir: string; sinkSubject: string; checkpoints: 'on' | 'off' }): string[] {
  return [
    '--nats', o.url,
    '--job', 'thr',
    '--input-stream', o.stream,
    '--input-subjects', o.subjects,
    '--window', THROUGHPUT_JOB.window,
    '--max-out-of-orderness', `${THROUGHPUT_JOB.maxOutOfOrdernessMs}ms`,
    '--keys', THROUGHPUT_JOB.keys,
    '--sink', `nats:${o.sinkSubject}`,
    '--state-dir', o.stateDir,
    '--checkpoint-interval', o.checkpoints === 'on' ? '1s' : '0',
    '--drain',
    // Every run starts from the beginning: a job's checkpoints also live in NATS (the group's mirror),
    // so a fresh --state-dir alone would restore the previous run's final checkpoint.
    '--reset-state',
  ];
}

async function drainOnce(nc: NatsConnection, o: ThroughputOptions, checkpoints: 'on' | 'off', idx: number, nodeFlags: string[] = []): Promise<DrainRun> {
  const sinkSubject = `bench.thr.results.${idx}`;
  let resultsAtSink = 0;
  const sub = nc.subscribe(sinkSubject, { callback: () => void resultsAtSink++ });
  await nc.flush();
  const job = new JobProcess(throughputArgs({ ...o, stateDir: join(o.workDir, `thr-${idx}-${checkpoints}`), sinkSubject, checkpoints }), { nodeFlags });
  const exit = await job.exited;
  if (exit.code !== 0) throw new Error(`throughput job (checkpoints ${checkpoints}) exited with code ${exit.code} signal ${exit.signal}: ${job.stderrTail.slice(-1500)}`);
  // Results published just before exit are still in flight to our subscriber.
  await nc.flush();
  sub.unsubscribe();
  const start = job.lines.find(isStartLine);
  const fin = job.lines.find(isFinishedLine);
  if (!start || !fin) throw new Error(`throughput job did not log its start-up and finished lines; stderr: ${job.stderrTail.slice(-1500)}`);
  const seq = Number(fin.json.seq);
  if (seq !== o.posts) throw new Error(`throughput job read ${seq} posts, the stream holds ${o.posts}`);
  return {
    checkpoints,
    posts: o.posts,
    wallMs: exit.at - job.spawnedAt,
    steadyMs: Number(fin.json.time) - Number(start.json.time),
    resultsAtSink,
    resultsLogged: Number(fin.json.results),
    late: Number(fin.json.late),
  };
}

/** Runs the interleaved drain jobs; rates are medians per setting. */
export async function runThroughput(nc: NatsConnection, o: ThroughputOptions): Promise<ThroughputOutcome> {
  const order = pattern(o.reps);
  const runs: DrainRun[] = [];
  for (const [i, cp] of order.entries()) {
    o.onProgress?.(i / order.length, `drain run ${i + 1}/${order.length} (checkpoints ${cp})`);
    runs.push(await drainOnce(nc, o, cp, i));
  }
  const rate = (r: DrainRun, ms: number): number => (r.posts / ms) * 1000;
  const on = runs.filter((r) => r.checkpoints === 'on');
  const off = runs.filter((r) => r.checkpoints === 'off');
  const out: ThroughputOutcome = {
    on,
    off,
    onPostsPerSec: median(on.map((r) => rate(r, r.wallMs))),
    offPostsPerSec: median(off.map((r) => rate(r, r.wallMs))),
    onSteadyPostsPerSec: median(on.map((r) => rate(r, r.steadyMs))),
    offSteadyPostsPerSec: median(off.map((r) => rate(r, r.steadyMs))),
  };
  if (o.profileDir) {
    o.onProgress?.(1, 'profiling run (node --cpu-prof, not measured)');
    await drainOnce(nc, o, 'on', order.length, ['--cpu-prof', '--cpu-prof-dir', o.profileDir]);
  }
  o.onProgress?.(1, 'drain runs done');
  return out;
}
