// `--input-partitions 4` on a real nats-server whose account mapping `posts.in.*` →
// `posts.in.{{partition(4,1)}}.{{wildcard(1)}}` partitions the input, real `tidemark run`
// processes and LevelDB: one partition goes quiet; without --idle-timeout the windows wait for it,
// with it the watermark moves on and windows fire; a kill -9 in the middle and a restart repeat
// the journaled idleness decisions, so the results are exactly those the reference model gives
// for the input and that journal (a run without failure making the same decisions).

import t from 'tap';
import { readFileSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { scratchDir, spawnCli, runCli, type CliResult } from '../helpers/nats.js';
import { EmbeddedNats } from '../../src/io/nats-server.js';
import { partitionMappings } from '../../src/io/subjects.js';
import { openJobStore } from '../../src/actors/job.js';
import { referencePartitionedRun, type RefConfig, type RefIdle, type RefMessage } from '../helpers/reference.js';

const P = 4;
const scratch = scratchDir('tidemark-parts-');
const nats = await EmbeddedNats.start(join(scratch.dir, 'nats'), { mappings: partitionMappings(['posts.>', 'more.>', 'probe.>'], P) });
const nc: NatsConnection = await connect({ servers: nats.url });
const children = new Set<ReturnType<typeof spawnCli>['child']>();
t.teardown(async () => {
  for (const c of children) c.kill('SIGKILL');
  await nc.close();
  await nats.stop();
  scratch.remove();
});

const enc = new TextEncoder();
const dec = new TextDecoder();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const T0 = 1_764_000_000_000;

/** A key token per input partition, learnt from the server's own mapping (the same hash for every `<base>.in.*`). */
async function keysByPartition(): Promise<string[][]> {
  const byPart: string[][] = Array.from({ length: P }, () => []);
  const sub = nc.subscribe('probe.in.*.*');
  const got = (async () => {
    for await (const m of sub) {
      const [, , p, key] = m.subject.split('.');
      byPart[Number(p)]!.push(key!);
      if (byPart.every((k) => k.length >= 2)) break;
    }
  })();
  for (let i = 0; i < 200; i++) nc.publish(`probe.in.u${i}`);
  await Promise.race([got, sleep(5000)]);
  sub.unsubscribe();
  return byPart;
}

const keys = await keysByPartition();
t.ok(keys.every((k) => k.length >= 2), 'the mapping spreads keys over the 4 partitions');

let n = 0;
/** Publishes a post through the mapping onto input partition `p`. */
function post(p: number, offsetMs: number, text = '#a'): void {
  n++;
  nc.publish(`posts.in.${keys[p]![n % keys[p]!.length]}`, enc.encode(JSON.stringify({ id: `p${n}`, ts: T0 + offsetMs, text })));
}

type Answer = Record<string, unknown>;
async function status(job: string): Promise<Answer | undefined> {
  try {
    const m = await nc.request(`tidemark.${job}.status`, enc.encode('{}'), { timeout: 3000 });
    return JSON.parse(dec.decode(m.data)) as Answer;
  } catch {
    return undefined;
  }
}
async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

const cfg = (job: string): RefConfig => ({ job, window: { kind: 'tumbling', size: 10_000 }, maxOutOfOrderness: 0, lateness: 0, keys: { hashtags: true, all: true, keywords: [] }, emit: 'updates' });
function runArgs(job: string, extra: string[]): string[] {
  const dir = join(scratch.dir, job);
  return [
    'run', '--nats', nats.url, '--job', job, '--input-partitions', String(P), '--window', 'tumbling:10s', '--max-out-of-orderness', '0s', '--keys', 'hashtags,all',
    '--sink', `jsonl:${dir}/results.jsonl`, '--late-sink', `jsonl:${dir}/late.jsonl`, '--dlq-sink', `jsonl:${dir}/dlq.jsonl`,
    '--state-dir', join(dir, 'state'), '--checkpoint-interval', '100ms', '--batch-size', '20', ...extra,
  ];
}
function start(job: string, extra: string[]): { done: Promise<CliResult>; child: ReturnType<typeof spawnCli>['child']; waitFor: ReturnType<typeof spawnCli>['waitFor'] } {
  const run = spawnCli(runArgs(job, extra));
  children.add(run.child);
  void run.done.then(() => children.delete(run.child));
  return run;
}
const readJsonl = (path: string): Array<Record<string, unknown>> => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>) : []);
/** Idleness decisions the job logged (each logged once its checkpoint is written, so durable). */
const decisionsIn = (stderr: string): RefIdle[] =>
  stderr
    .split('\n')
    .filter((l) => l.includes('is idle after input sequence'))
    .map((l) => JSON.parse(l) as { inputPartition: string; seq: number })
    .map((d) => ({ seq: d.seq, partition: Number(d.inputPartition) }));

t.test('one quiet partition: windows wait without --idle-timeout, fire with it; a kill -9 and a restart repeat the decisions', async (t) => {
  const waiting = start('waits', ['--idle-timeout', '0s']);
  let idler = start('idles', ['--idle-timeout', '1s']);
  await waitFor('both jobs to answer', async () => ((await status('waits')) && (await status('idles')) ? true : undefined));
  // Partition 3 posts once; partitions 0-2 go on for a while, 2 s of event time every 100 ms.
  post(3, 1000);
  let k = 0;
  const more = async (rounds: number): Promise<void> => {
    for (let r = 0; r < rounds; r++, k++) {
      for (let p = 0; p < 3; p++) post(p, 2000 * k + 100 * p, k % 3 ? '#a' : 'tick');
      await sleep(100);
    }
  };
  await more(20);
  const idleSt = await waitFor('partition 3 to be idle in job idles', async () => {
    const s = await status('idles');
    const inputs = (s?.inputs ?? []) as Array<{ partition: string; idle: boolean }>;
    return inputs.find((i) => i.partition === '3')?.idle ? s : undefined;
  });
  t.equal((idleSt.inputs as unknown[]).length, P, 'status lists the 4 input partitions');
  t.ok((idleSt.watermark as number) > T0 + 20_000, 'with --idle-timeout the watermark moved past the quiet partition');
  const w = (await status('waits'))!;
  t.equal(w.watermark, T0 + 1000, 'without it the watermark waits at the quiet partition');
  t.same((w.inputs as Array<{ idle: boolean }>).map((i) => i.idle), [false, false, false, false]);
  t.equal(w.resultsOut, 0, 'and no window fires');
  t.ok((idleSt.resultsOut as number) > 0, 'while windows fire in the job with --idle-timeout');
  const text = await runCli(['status', '--nats', nats.url, '--job', 'idles']);
  t.match(text.stdout, /input partition 3: .*idle/, 'tidemark status shows the idle partition');
  const why = JSON.parse(dec.decode((await nc.request('tidemark.waits.explain', enc.encode(JSON.stringify({ key: '*' })), { timeout: 5000 })).data)) as Answer;
  t.equal(why.heldBackBy, '3', 'explain names the quiet partition as what holds the watermark back');
  waiting.child.kill('SIGKILL');

  // kill -9 in the middle, more input (then partition 3 back, one post of it late), a restart with --drain.
  await more(5);
  idler.child.kill('SIGKILL');
  const first = await idler.done;
  t.equal(first.signal, 'SIGKILL');
  // While the job is down partitions 0-2 go on: after the restart only the restored decision lets them move the watermark.
  await more(10);
  post(3, 3000);
  post(3, 2000 * k);
  await more(5);
  await nc.flush();
  idler = start('idles', ['--idle-timeout', '1s', '--drain']);
  const second = await idler.done;
  t.equal(second.code, 0, `the restarted job drains and exits 0 ${second.stderr.slice(-400)}`);
  t.match(second.stderr, /recovered from checkpoint/, 'it restored a checkpoint');

  // The input as the stream holds it, and the decisions both runs journaled.
  const jsm = await nc.jetstreamManager();
  const msgs: RefMessage[] = [];
  const last = (await jsm.streams.info('POSTS')).state.last_seq;
  for (let seq = 1; seq <= last; seq++) {
    const m = await jsm.streams.getMessage('POSTS', { seq });
    const token = m.subject.split('.')[2]!;
    msgs.push({ payload: dec.decode(m.data), partition: /^\d+$/.test(token) && m.subject.split('.').length === 4 ? Number(token) : -1, subject: m.subject });
  }
  t.ok(msgs.every((m) => m.partition >= 0), 'every stored subject carries its partition (the server mapping)');
  const journal = [...decisionsIn(first.stderr), ...decisionsIn(second.stderr)];
  t.ok(journal.some((d) => d.partition === 3), `partition 3 was declared idle (${JSON.stringify(journal)})`);
  const expected = referencePartitionedRun(msgs, cfg('idles'), P, journal);
  const dir = join(scratch.dir, 'idles');
  const norm = <T>(xs: T[]): T[] => (JSON.parse(JSON.stringify(xs)) as Array<T & { id: string }>).sort((a, b) => (a.id < b.id ? -1 : 1));
  t.same(norm(readJsonl(`${dir}/results.jsonl`)), norm(expected.results), 'results: exactly the model given the input and the journal');
  t.same(norm(readJsonl(`${dir}/late.jsonl`)), norm(expected.late), 'late records likewise');
  t.ok(expected.late.length > 0, 'the quiet partition\'s post behind the watermark is late');
  t.ok(expected.results.some((r) => r.watermark !== null && r.window.end <= T0 + 20_000), 'windows fired on the watermark the idleness let through');
});

t.test('killed after a decision is journaled, before it is applied: the restore applies it at its position', async (t) => {
  const job = 'journaled';
  const postOn = (p: number, offsetMs: number, text = '#b'): void => {
    n++;
    nc.publish(`more.in.${keys[p]![n % keys[p]!.length]}`, enc.encode(JSON.stringify({ id: `q${n}`, ts: T0 + offsetMs, text })));
  };
  // Partition 3 posts once, then partitions 0-2 every 50 ms, from before the job starts until it dies.
  await (await nc.jetstreamManager()).streams.add({ name: 'POSTS2', subjects: ['more.>'] });
  postOn(3, 1000);
  let k = 0;
  for (; k < 3; k++) for (let p = 0; p < 3; p++) postOn(p, 2000 * k + 100 * p);
  await nc.flush();
  const live = spawnCli(runArgs(job, ['--idle-timeout', '1s', '--input-stream', 'POSTS2', '--input-subjects', 'more.>']), { env: { TIDEMARK_FAULT: 'idle-journaled:1' } });
  children.add(live.child);
  let exited = false;
  void live.done.then(() => (exited = true));
  for (; k < 400 && !exited; k++) {
    for (let p = 0; p < 3; p++) postOn(p, 2000 * k + 100 * p, k % 2 ? '#b' : 'tick');
    await sleep(50);
  }
  const first = await live.done;
  t.equal(first.signal, 'SIGKILL', 'the job died right after writing the checkpoint that journals its first decision');
  const store = await openJobStore(join(scratch.dir, job, 'state'), job);
  const crashed = (await store.restore())!.meta;
  await store.close();
  const pending = crashed.watermark.journal ?? [];
  t.equal(pending.length >= 1, true, `the newest checkpoint journals the decision, not applied yet (${JSON.stringify(pending)})`);
  t.ok(pending.every((d) => d.seq === crashed.seq), 'at the checkpoint\'s own sequence');
  t.notOk(crashed.watermark.idle?.length, 'and no partition is idle in its state yet');
  const inspected = await runCli(['inspect', '--state-dir', join(scratch.dir, job, 'state'), '--job', job]);
  t.match(inspected.stdout, /journaled: \d idle after \d+/, 'tidemark inspect shows the journaled decision');
  for (let r = 0; r < 10; r++, k++) for (let p = 0; p < 3; p++) postOn(p, 2000 * k + 100 * p);
  postOn(3, 2000);
  postOn(3, 2000 * k);
  await nc.flush();
  const second = await runCli(runArgs(job, ['--idle-timeout', '1s', '--input-stream', 'POSTS2', '--input-subjects', 'more.>', '--drain']));
  t.equal(second.code, 0, second.stderr.slice(-400));
  const jsm = await nc.jetstreamManager();
  const msgs: RefMessage[] = [];
  const last = (await jsm.streams.info('POSTS2')).state.last_seq;
  for (let seq = 1; seq <= last; seq++) {
    const m = await jsm.streams.getMessage('POSTS2', { seq });
    msgs.push({ payload: dec.decode(m.data), partition: Number(m.subject.split('.')[2]), subject: m.subject });
  }
  t.ok(msgs.every((m) => m.partition >= 0 && m.partition < P), 'every stored subject carries its partition');
  const journal: RefIdle[] = [...pending.map((d) => ({ seq: d.seq, partition: Number(d.partition) })), ...decisionsIn(second.stderr)];
  const expected = referencePartitionedRun(msgs, cfg(job), P, journal);
  const dir = join(scratch.dir, job);
  const norm = <T>(xs: T[]): T[] => (JSON.parse(JSON.stringify(xs)) as Array<T & { id: string }>).sort((a, b) => (a.id < b.id ? -1 : 1));
  t.same(norm(readJsonl(`${dir}/results.jsonl`)), norm(expected.results), 'results: the model given the journal, the restored decision included');
  t.same(norm(readJsonl(`${dir}/late.jsonl`)), norm(expected.late), 'late records likewise');
  t.ok(expected.results.some((r) => r.watermark !== null), 'windows fired on the decision before the end of input');
});

t.test('tidemark produce --key-token user publishes on <subject>.<user>, which the mapping partitions', async (t) => {
  const file = join(scratch.dir, 'posts.jsonl');
  const lines = Array.from({ length: 40 }, (_, i) => JSON.stringify({ id: `f${i}`, ts: T0 + i, text: 'ok', user: `user ${i % 9}` }));
  writeFileSync(file, [...lines, 'not json'].join('\n'));
  const r = await runCli(['produce', '--nats', nats.url, '--file', file, '--input-stream', 'PROBE', '--input-subjects', 'probe.>', '--subject', 'probe.in', '--key-token', 'user']);
  t.equal(r.code, 0, r.stderr);
  t.match(r.stdout, /published 41 posts to probe\.in\.<user>/);
  const jsm = await nc.jetstreamManager();
  const subjects: string[] = [];
  for (let seq = 1; seq <= 41; seq++) subjects.push((await jsm.streams.getMessage('PROBE', { seq })).subject);
  t.ok(subjects.slice(0, 40).every((s) => /^probe\.in\.[0-3]\.user_\d$/.test(s)), 'the user (a space made _) is the key token, the partition before it');
  t.match(subjects[40], /^probe\.in\.[0-3]\._$/, 'a line that is not JSON goes out with the key token _');
  t.ok(new Set(subjects.map((s) => s.split('.')[2])).size > 1, 'spread over partitions');
});

t.test('--input-partitions: a bad value and a change against saved state are refused', async (t) => {
  const bad = await runCli(['run', '--input-partitions', '0', '--window', 'tumbling:1m']);
  t.equal(bad.code, 2);
  t.match(bad.stderr.trim(), /^.*--input-partitions: "0" is not accepted; an integer from 1 to 1024$/);
  const changed = await runCli(runArgs('idles', ['--drain']).map((a) => (a === String(P) ? '2' : a)));
  t.equal(changed.code, 1, 'refused');
  t.match(changed.stderr, /--input-partitions was 4, now 2/);
});
