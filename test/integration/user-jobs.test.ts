// Generated user jobs on the real actor path: a real nats-server, the msgpack channel between the
// actors, the LevelDB window codec and the sinks, against the independent model — embedded with
// startJob, and as `tidemark run --job-module` killed with SIGKILL at random moments.

import t from 'tap';
import fc from 'fast-check';
import { readFileSync, existsSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { natsFixture } from '../helpers/nats.js';
import { killLoop } from '../helpers/kill-loop.js';
import { referenceRecords, type RefConfig } from '../helpers/reference.js';
import { componentsArb, windowArb, recordsArb, moduleSource, summarize, asRecs, windowFlag, type Component, type GenRecord, type GenWindow } from '../helpers/generated-jobs.js';
import { Rng } from '../helpers/streams.js';
import { startJob, type JobDefinition } from '../../src/index.js';

const { scratch, nats, nc } = await natsFixture(t, 'tidemark-userjobs-');
const enc = new TextEncoder();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const byId = <T extends { id: string }>(xs: readonly T[]): T[] => [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
const readJsonl = (path: string): Array<{ id: string }> =>
  existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: string }) : [];

async function fill(stream: string, records: readonly unknown[]): Promise<void> {
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: stream, subjects: [`${stream.toLowerCase()}.>`] });
  const js = nc.jetstream();
  for (let i = 0; i < records.length; i += 500) await Promise.all(records.slice(i, i + 500).map((r) => js.publish(`${stream.toLowerCase()}.in`, enc.encode(JSON.stringify(r)))));
}

let n = 0;
/** Writes the generated job as a module file, as a user would, and returns its path. */
function writeModule(components: readonly Component[]): string {
  const dir = join(scratch.dir, 'modules');
  mkdirSync(dir, { recursive: true });
  const path = join(dir, `job${++n}.mjs`);
  writeFileSync(path, moduleSource('gen', components));
  return path;
}

const refConfig = (components: readonly Component[], window: GenWindow, maxOutOfOrderness: number, lateness: number, emit: 'updates' | 'final', job: string): RefConfig => ({
  job, window, maxOutOfOrderness, lateness, emit, keys: { hashtags: false, all: false, keywords: [] }, summarize: summarize(components), lateIdField: 'recordId',
});

t.test('embedded (startJob): generated aggregates equal the model over real NATS and LevelDB', async (t) => {
  let runs = 0;
  await fc.assert(
    fc.asyncProperty(
      componentsArb, windowArb, fc.constantFrom(0, 3_000), fc.constantFrom(0, 15_000), fc.constantFrom<'updates' | 'final'>('updates', 'final'),
      recordsArb({ min: 20, max: 150 }), fc.integer({ min: 1, max: 30 }), fc.integer({ min: 1, max: 3 }),
      async (components, window, maxOutOfOrderness, lateness, emit, records, batchSize, partitions) => {
        const run = ++runs;
        const job = `gen${run}`;
        const stream = `UJ${run}`;
        await fill(stream, records);
        const file = writeModule(components);
        const def = (await import(pathToFileURL(file).href) as { default: JobDefinition<GenRecord, unknown, Record<string, unknown>> }).default;
        const dir = join(scratch.dir, job);
        const handle = await startJob(def, {
          nats: nats.url, job, window: windowFlag(window), maxOutOfOrderness: `${maxOutOfOrderness}ms`, allowedLateness: `${lateness}ms`, emit,
          inputStream: stream, inputSubjects: [`${stream.toLowerCase()}.>`], stateDir: join(dir, 'state'), drain: true, batchSize, partitions,
          checkpointInterval: '30ms', sinks: [`jsonl:${dir}/results.jsonl`], lateSink: `jsonl:${dir}/late.jsonl`, dlqSink: `jsonl:${dir}/dlq.jsonl`, logLevel: 'silent',
        });
        const streamed: Array<{ id: string }> = [];
        const reading = (async () => {
          for await (const r of handle.results) streamed.push(r);
        })();
        await handle.finished();
        await reading;
        const expected = referenceRecords(asRecs(records), refConfig(components, window, maxOutOfOrderness, lateness, emit, job));
        const got = readJsonl(`${dir}/results.jsonl`);
        t.same(byId(got), byId(expected.results), `run ${run}: results (${components.map((c) => c.op).join(',')}, ${windowFlag(window)}, ${emit}, L=${lateness})`);
        t.same(byId(streamed), byId(got), `run ${run}: handle.results yields what the sink wrote`);
        t.same(byId(readJsonl(`${dir}/late.jsonl`)), byId(expected.late), `run ${run}: late records`);
        return true;
      },
    ),
    { numRuns: Number(process.env.TIDEMARK_ACTOR_RUNS ?? 8), seed: 1202 },
  );
});

t.test('embedded: status, query with the machine state, a savepoint', async (t) => {
  const components: Component[] = [{ op: 'count' }, { op: 'max', field: 'v' }];
  const stream = 'UJQ';
  await fill(stream, [{ id: 'x1', ts: 1_764_000_001_000, keys: ['k'], v: 3, w: 0 }, { id: 'x2', ts: 1_764_000_002_000, keys: ['k'], v: 9, w: 0 }]);
  const def = (await import(pathToFileURL(writeModule(components)).href) as { default: JobDefinition<GenRecord, unknown, Record<string, unknown>> }).default;
  const handle = await startJob(def, { nats: nats.url, job: 'genq', window: 'tumbling:1h', inputStream: stream, inputSubjects: ['ujq.>'], stateDir: join(scratch.dir, 'genq'), sinks: [`jsonl:${scratch.dir}/genq.jsonl`], logLevel: 'silent' });
  try {
    let views = await handle.query('k');
    for (let i = 0; i < 100 && (views[0]?.records ?? 0) < 2; i++) {
      await sleep(50);
      views = await handle.query('k');
    }
    t.equal(views.length, 1, 'one window');
    t.equal(views[0]!.state, 'open', 'its machine state');
    t.same(views[0]!.aggregate, { n: 2, max_v: 9 }, 'its result fields so far');
    t.equal((handle.status() as { postsIn: number }).postsIn, 2, 'status counts the records');
    t.ok((await handle.checkpoint('sp1')) > 0, 'a savepoint is taken');
  } finally {
    await handle.stop();
  }
});

t.test('tidemark run --job-module under SIGKILL at random moments: exactly the model', async (t) => {
  const components: Component[] = [{ op: 'count' }, { op: 'sum', field: 'v' }, { op: 'min', field: 'w' }];
  const scenarios = [
    { job: 'killgen1', window: { kind: 'sliding', size: 30_000, slide: 10_000 } as GenWindow, emit: 'updates' as const, lateness: 15_000 },
    { job: 'killgen2', window: { kind: 'session', gap: 5_000 } as GenWindow, emit: 'final' as const, lateness: 10_000 },
  ];
  const file = writeModule(components);
  for (const sc of scenarios) {
    const records = fc.sample(recordsArb({ min: 6000, max: 6000 }), { numRuns: 1, seed: sc.job.length })[0]!;
    const stream = sc.job.toUpperCase();
    await fill(stream, records);
    const dir = join(scratch.dir, sc.job);
    const args = [
      'run', '--nats', nats.url, '--job', sc.job, '--job-module', file, '--window', windowFlag(sc.window), '--max-out-of-orderness', '3s',
      '--allowed-lateness', `${sc.lateness}ms`, '--emit', sc.emit, '--input-stream', stream, '--input-subjects', `${stream.toLowerCase()}.>`,
      '--sink', `jsonl:${dir}/results.jsonl`, '--late-sink', `jsonl:${dir}/late.jsonl`, '--dlq-sink', `jsonl:${dir}/dlq.jsonl`,
      '--state-dir', join(dir, 'state'), '--drain', '--batch-size', '20', '--checkpoint-interval', '40ms', '--log-level', 'debug',
    ];
    const rng = new Rng(sc.job.length);
    const { kills, last } = await killLoop({ args, maxRuns: 40, plan: (kills) => (kills < 6 ? { afterCheckpoints: rng.int(0, 3), killAfterMs: rng.int(0, 60) } : 'finish') });
    t.equal(last.code, 0, `${sc.job}: the last run exits 0 (${last.stderr.slice(-800)})`);
    t.ok(kills >= 4, `${sc.job}: killed ${kills} times`);
    const expected = referenceRecords(asRecs(records), refConfig(components, sc.window, 3_000, sc.lateness, sc.emit, sc.job));
    const got = readJsonl(`${dir}/results.jsonl`);
    t.equal(new Set(got.map((r) => r.id)).size, got.length, `${sc.job}: no record twice`);
    t.same(byId(got), byId(expected.results), `${sc.job}: results equal a run without failure`);
    t.same(byId(readJsonl(`${dir}/late.jsonl`)), byId(expected.late), `${sc.job}: late records equal a run without failure`);
  }
});
