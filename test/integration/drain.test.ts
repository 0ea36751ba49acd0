// `tidemark run --drain` as a child process against a real nats-server: results read back from
// every sink kind (jsonl file, core NATS subject, JetStream stream) equal the reference model's.

import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { scratchDir, startNats, runCli } from '../helpers/nats.js';
import { genStream } from '../helpers/streams.js';
import { referenceRun, type RefConfig } from '../helpers/reference.js';

const scratch = scratchDir();
const nats = await startNats(scratch.dir);
const nc: NatsConnection = await connect({ servers: nats.url });
t.teardown(async () => {
  await nc.close();
  await nats.stop();
  scratch.remove();
});

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Publishes payloads into a fresh input stream, in order, with acks. */
async function fillStream(stream: string, subject: string, payloads: string[]): Promise<void> {
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: stream, subjects: [`${subject}.>`] });
  const js = nc.jetstream();
  for (let i = 0; i < payloads.length; i += 500) await Promise.all(payloads.slice(i, i + 500).map((p) => js.publish(`${subject}.in`, enc.encode(p))));
}

const readJsonl = (path: string): Array<{ id: string }> =>
  readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { id: string });

const byId = <T extends { id: string }>(xs: T[]): T[] => [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

/** Reads every message of a JetStream stream as JSON. */
async function readStream(stream: string): Promise<Array<{ id: string; msgId?: string }>> {
  const js = nc.jetstream();
  const c = await js.consumers.get(stream);
  const out: Array<{ id: string; msgId?: string }> = [];
  const info = await (await nc.jetstreamManager()).streams.info(stream);
  if (info.state.messages === 0) return out;
  const iter = await c.consume();
  for await (const m of iter) {
    out.push({ ...(JSON.parse(dec.decode(m.data)) as { id: string }), msgId: m.headers?.get('Nats-Msg-Id') });
    if (m.info.pending === 0) break;
  }
  await iter.close();
  return out;
}

interface Case {
  name: string;
  cfg: RefConfig;
  flags: string[];
}

const cases: Case[] = [
  {
    name: 'tumbling, updates, lateness > 0, hashtags + keyword + all',
    cfg: { job: 'tum', window: { kind: 'tumbling', size: 60_000 }, maxOutOfOrderness: 5_000, lateness: 30_000, keys: { hashtags: true, all: true, keywords: ['good'] }, emit: 'updates' },
    flags: ['--window', 'tumbling:1m', '--max-out-of-orderness', '5s', '--allowed-lateness', '30s', '--keys', 'hashtags,all,keyword:good', '--emit', 'updates'],
  },
  {
    name: 'sliding, final mode',
    cfg: { job: 'sld', window: { kind: 'sliding', size: 120_000, slide: 60_000 }, maxOutOfOrderness: 10_000, lateness: 60_000, keys: { hashtags: true, all: false, keywords: [] }, emit: 'final' },
    // Parsing and scoring on a worker thread must not change a thing.
    flags: ['--window', 'sliding:2m,1m', '--max-out-of-orderness', '10s', '--allowed-lateness', '1m', '--keys', 'hashtags', '--emit', 'final', '--scoring-threads', '1', '--batch-size', '300'],
  },
  {
    name: 'session, updates, no lateness',
    cfg: { job: 'ses', window: { kind: 'session', gap: 60_000 }, maxOutOfOrderness: 5_000, lateness: 0, keys: { hashtags: true, all: true, keywords: [] }, emit: 'updates' },
    flags: ['--window', 'session:1m', '--max-out-of-orderness', '5s', '--allowed-lateness', '0s', '--keys', 'hashtags,all', '--emit', 'updates'],
  },
];

for (const [i, c] of cases.entries()) {
  t.test(c.name, async (t) => {
    const payloads = genStream(100 + i, { n: 1500, unit: 60_000, step: 2_000, maxOutOfOrderness: c.cfg.maxOutOfOrderness });
    const stream = `IN_${c.cfg.job.toUpperCase()}`;
    const subject = `in${i}`;
    await fillStream(stream, subject, payloads);
    const expected = referenceRun(payloads, c.cfg);
    t.ok(expected.results.length > 50, `the model emits results (${expected.results.length})`);
    t.ok(expected.late.length > 0 && expected.dead.length > 0, 'the stream has late posts and malformed messages');

    // A core NATS subscriber, listening before the job starts.
    const natsSubject = `out.${c.cfg.job}`;
    const viaNats: Array<{ id: string }> = [];
    const sub = nc.subscribe(natsSubject, { callback: (_e, m) => viaNats.push(JSON.parse(dec.decode(m.data)) as { id: string }) });

    const out = join(scratch.dir, c.cfg.job);
    const r = await runCli([
      'run', '--nats', nats.url, '--job', c.cfg.job, '--input-stream', stream, '--input-subjects', `${subject}.>`, ...c.flags,
      '--sink', `jsonl:${out}/results.jsonl`, '--sink', `nats:${natsSubject}`, '--sink', `jetstream:RESULTS_${c.cfg.job.toUpperCase()}`,
      '--late-sink', `jsonl:${out}/late.jsonl`, '--dlq-sink', `jsonl:${out}/dlq.jsonl`, '--state-dir', join(out, 'state'), '--drain', '--log-level', 'warn',
    ]);
    t.equal(r.code, 0, `exit code 0 (stderr: ${r.stderr.slice(0, 500)})`);
    await nc.flush();
    sub.unsubscribe();

    t.same(byId(readJsonl(`${out}/results.jsonl`)), byId(expected.results), 'jsonl sink holds exactly the model results');
    t.same(byId(viaNats), byId(expected.results), 'core NATS subscriber got exactly the model results');
    const stored = await readStream(`RESULTS_${c.cfg.job.toUpperCase()}`);
    t.ok(stored.every((s) => s.msgId === s.id), 'JetStream Nats-Msg-Id is the result id');
    t.same(byId(stored.map(({ msgId: _m, ...rest }) => rest)), byId(expected.results), 'JetStream sink holds exactly the model results');
    t.same(byId(readJsonl(`${out}/late.jsonl`)), byId(expected.late), 'late records equal the model');
    const dead = readJsonl(`${out}/dlq.jsonl`) as Array<{ id: string; reason: string; seq: number; payload: string; subject: string }>;
    t.same(dead.map((d) => d.id).sort(), expected.dead.map((d) => d.id).sort(), 'every malformed message is dead-lettered, nothing else');
    t.ok(dead.every((d) => d.reason.length > 0 && d.subject === `${subject}.in` && typeof d.payload === 'string'), 'dead letters carry reason, subject, sequence and payload');
  });
}

t.test('bad flags: one line naming the flag, exit code 2', async (t) => {
  const bad = [
    [['run', '--window', 'hopping:1m'], /--window/],
    [['run', '--window', 'tumbling:1m', '--emit', 'sometimes'], /--emit: "sometimes" is not accepted; updates or final/],
    [['run', '--window', 'tumbling:1m', '--allowed-lateness', 'soon'], /--allowed-lateness/],
    [['run', '--window', 'tumbling:1m', '--keys', 'hashtags,mentions'], /--keys: "mentions"/],
    [['run', '--window', 'tumbling:1m', '--sink', 'kafka:x'], /--sink: "kafka:x" is not a sink/],
    [['run', '--windw', 'tumbling:1m'], /--windw: unknown option/],
    [['run'], /--window: required/],
  ] as const;
  for (const [args, re] of bad) {
    const r = await runCli([...args]);
    t.equal(r.code, 2, `${args.join(' ')} exits 2`);
    t.match(r.stderr, re);
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  }
});

t.test('a bad TIDEMARK_WINDOW_STEP: one line naming it and what is accepted, exit code 2, before anything starts', async (t) => {
  const r = await runCli(['run', '--window', 'tumbling:1m', '--state-dir', join(scratch.dir, 'bad-step')], { env: { ...process.env, TIDEMARK_WINDOW_STEP: 'fast' } });
  t.equal(r.code, 2);
  t.match(r.stderr, /TIDEMARK_WINDOW_STEP must be "compiled" or "xstate", not "fast"/);
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  t.notMatch(r.stdout, /nats-server listening/, 'no server was started');
});

t.test('--help describes every option', async (t) => {
  const r = await runCli(['run', '--help']);
  t.equal(r.code, 0);
  for (const flag of ['--nats', '--job', '--input-stream', '--input-subjects', '--window', '--max-out-of-orderness', '--allowed-lateness', '--idle-timeout', '--keys', '--emit', '--sink', '--late-sink', '--dlq-sink', '--state-dir', '--checkpoint-interval', '--drain', '--config']) {
    t.match(r.stdout, flag);
  }
});
