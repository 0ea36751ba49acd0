// `node dist/benchmarks/fire-cost.js [WINDOWS] [REPS]`: the CPU cost of a watermark step that fires
// WINDOWS windows (default 1000), per fired window, stage by stage, in process: the operator's step
// (each window's machine transition and its result record), the partition actor's output messages
// sealed on the channel (msgpack + HMAC), opened and checked by the sink actor, and written by the
// `nats:` sink (JSON, core publish, nobody subscribed) on a real connection to a nats-server of its own. CPU time of
// the process (process.cpuUsage: a busy machine's preemption does not count, its GC threads do),
// median of REPS steps (default 40) after a warm-up. One JSON line with the load average before and after.

import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { connect } from 'nats';
import { EmbeddedNats } from '../src/io/nats-server.js';
import { WindowOperator, type DeltaItem } from '../src/runtime/window-operator.js';
import { compileJob } from '../src/runtime/compiled-job.js';
import { sentimentJob } from '../src/runtime/sentiment-job.js';
import { applyBatch } from '../src/actors/partition-actor.js';
import { tuneHeapForWindows } from '../src/actors/heap.js';
import { checkOutMsg } from '../src/actors/message-checks.js';
import type { OutMsg } from '../src/actors/messages.js';
import { Opener, Rejections, RunKey, Sealer, receive, type ChannelContext } from '../src/io/channel.js';
import { subjectsFor } from '../src/io/subjects.js';
import { NatsSubjectSink } from '../src/io/sinks.js';
import { median } from './common.js';

const windows = Number(process.argv[2] ?? 1000);
const reps = Number(process.argv[3] ?? 40);
const JOB = 'fire';
const SIZE = 1000;
const BASE = 1_764_000_000_000;
const COMPILED = compileJob(sentimentJob({ keys: { hashtags: true, all: true, keywords: [] } }), { stream: 'POSTS', lateIdField: 'postId' });
/** CPU time of the process in ms (user + system). */
const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};
// As every job does at start.
tuneHeapForWindows();
const load = (): number => Math.round(loadavg()[0]! * 100) / 100;
const before = load();
const dir = join(tmpdir(), `tidemark-fire-${process.pid}`);
const server = await EmbeddedNats.start(join(dir, 'nats'));
const nc = await connect({ servers: server.url });
const sink = new NatsSubjectSink(nc, 'fire.results');
const ctx: ChannelContext = { key: RunKey.create(), rejects: new Rejections(() => undefined), fault: (why) => { throw new Error(why); } };
const subj = subjectsFor(JOB);
const sealer = new Sealer(ctx.key, 0);
const inbox = new Opener(ctx.key, subj.out, (from) => from === 0);

const stages = { step: [] as number[], seal: [] as number[], open: [] as number[], sink: [] as number[], total: [] as number[] };
try {
  for (let r = -5; r < reps; r++) {
    const op = new WindowOperator({ job: JOB, window: { kind: 'tumbling', size: SIZE }, lateness: 0, mode: 'updates', compiled: COMPILED });
    const start = BASE + r * SIZE * 10;
    const ops: DeltaItem[] = [];
    for (let k = 0; k < windows; k++) ops.push({ k: `#tag${k}`, s: start, a: { count: 3, positive: 1, negative: 1, neutral: 1, scoreSum: k % 5 }, c: 3 });
    op.apply(ops);
    // The step as the partition actor takes it: slices, each output message sealed as it leaves.
    const sealed: Uint8Array[] = [];
    let stepMs = 0;
    let sealMs = 0;
    let t = cpuMs();
    await applyBatch(op, 0, { t: 'batch', n: r + 10, ops: [start + SIZE] }, (m: OutMsg) => {
      const t1 = cpuMs();
      stepMs += t1 - t;
      sealed.push(sealer.seal(subj.out, m));
      t = cpuMs();
      sealMs += t - t1;
    });
    // (the yields between slices are not counted: t restarts after each message)
    let openMs = 0;
    let sinkMs = 0;
    let results = 0;
    for (const bytes of sealed) {
      const t0 = cpuMs();
      const msg = receive(ctx, inbox, bytes, checkOutMsg)?.msg;
      const t1 = cpuMs();
      if (msg?.t !== 'out') throw new Error('fire-cost: a message was refused');
      sink.write(msg.results);
      results += msg.results.length;
      sinkMs += cpuMs() - t1;
      openMs += t1 - t0;
    }
    const t2 = cpuMs();
    await nc.flush();
    sinkMs += cpuMs() - t2;
    if (results !== windows) throw new Error(`fire-cost: ${results} results of ${windows} windows`);
    if (r < 0) continue;
    const us = (ms: number): number => (ms * 1000) / windows;
    stages.step.push(us(stepMs));
    stages.seal.push(us(sealMs));
    stages.open.push(us(openMs));
    stages.sink.push(us(sinkMs));
    stages.total.push(us(stepMs + sealMs + openMs + sinkMs));
  }
  const med = Object.fromEntries(Object.entries(stages).map(([k, v]) => [k, Math.round(median(v) * 100) / 100]));
  process.stdout.write(JSON.stringify({ windows, reps, usPerFiredWindow: med, load1: [before, load()] }) + '\n');
} finally {
  await nc.close();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
