// Exactly-once after kill -9: a seeded loop kills `tidemark run --drain` at random moments and
// inside checkpoint writes, restarts it on the same state directory, and compares every sink
// with the reference model (what a run without failure produces).

import t from 'tap';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { scratchDir, startNats, spawnCli, type CliResult } from '../helpers/nats.js';
import { genStream, Rng } from '../helpers/streams.js';
import { referenceRun, type RefConfig } from '../helpers/reference.js';

const scratch = scratchDir('tidemark-chaos-');
const nats = await startNats(scratch.dir);
const nc: NatsConnection = await connect({ servers: nats.url });
t.teardown(async () => {
  await nc.close();
  await nats.stop();
  scratch.remove();
});

const enc = new TextEncoder();
const dec = new TextDecoder();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function fillStream(stream: string, subject: string, payloads: string[]): Promise<void> {
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: stream, subjects: [`${subject}.>`] });
  const js = nc.jetstream();
  for (let i = 0; i < payloads.length; i += 500) await Promise.all(payloads.slice(i, i + 500).map((p) => js.publish(`${subject}.in`, enc.encode(p))));
}

const readJsonl = (path: string): Array<{ id: string }> =>
  existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: string }) : [];

async function readStream(stream: string): Promise<Array<{ id: string }>> {
  const info = await (await nc.jetstreamManager()).streams.info(stream);
  const out: Array<{ id: string }> = [];
  if (info.state.messages === 0) return out;
  const iter = await (await nc.jetstream().consumers.get(stream)).consume();
  for await (const m of iter) {
    out.push(JSON.parse(dec.decode(m.data)) as { id: string });
    if (m.info.pending === 0) break;
  }
  await iter.close();
  return out;
}

const ids = (xs: Array<{ id: string }>): string[] => xs.map((x) => x.id).sort();
const sorted = <T extends { id: string }>(xs: T[]): T[] => [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

interface Scenario {
  name: string;
  seed: number;
  posts: number;
  cfg: RefConfig;
  flags: string[];
  /** how the next attempt dies, given the kills so far: a delay before SIGKILL, a fault point inside a checkpoint write, or not at all */
  plan: (rng: Rng, kills: number) => { afterCheckpoints: number; killAfterMs: number } | { fault: string } | 'finish';
}

const scenarios: Scenario[] = [
  {
    name: 'tumbling windows, updates with lateness: SIGKILL at random moments',
    seed: 11,
    posts: 24_000,
    cfg: { job: 'chaos1', window: { kind: 'tumbling', size: 60_000 }, maxOutOfOrderness: 5_000, lateness: 30_000, keys: { hashtags: true, all: true, keywords: [] }, emit: 'updates' },
    flags: ['--window', 'tumbling:1m', '--max-out-of-orderness', '5s', '--allowed-lateness', '30s', '--keys', 'hashtags,all'],
    plan: (rng, kills) => (kills < 14 ? { afterCheckpoints: rng.int(0, 3), killAfterMs: rng.int(0, 60) } : 'finish'),
  },
  {
    name: 'session windows, final mode: SIGKILL inside checkpoint writes and at random moments',
    seed: 12,
    posts: 12_000,
    cfg: { job: 'chaos2', window: { kind: 'session', gap: 90_000 }, maxOutOfOrderness: 5_000, lateness: 60_000, keys: { hashtags: true, all: true, keywords: [] }, emit: 'final' },
    flags: ['--window', 'session:90s', '--max-out-of-orderness', '5s', '--allowed-lateness', '1m', '--keys', 'hashtags,all', '--emit', 'final'],
    plan: (rng, kills) => {
      if (kills >= 9) return 'finish';
      if (kills % 3 === 2) return { afterCheckpoints: rng.int(0, 3), killAfterMs: rng.int(0, 60) };
      return { fault: `${kills % 3 === 0 ? 'checkpoint-before-write' : 'checkpoint-after-write'}:${rng.int(1, 4)}` };
    },
  },
];

let totalKills = 0;
for (const sc of scenarios) {
  t.test(sc.name, async (t) => {
    const payloads = genStream(sc.seed, { n: sc.posts, unit: 60_000, step: 2_000, maxOutOfOrderness: sc.cfg.maxOutOfOrderness });
    const input = `IN_${sc.cfg.job.toUpperCase()}`;
    await fillStream(input, sc.cfg.job, payloads);
    // A tiny duplicate window: JetStream's own deduplication must not be what keeps the sink exact.
    const results = `RES_${sc.cfg.job.toUpperCase()}`;
    await (await nc.jetstreamManager()).streams.add({ name: results, subjects: [`res.${sc.cfg.job}`], duplicate_window: 100_000_000 });
    const expected = referenceRun(payloads, sc.cfg);
    const dir = join(scratch.dir, sc.cfg.job);
    const args = [
      'run', '--nats', nats.url, '--job', sc.cfg.job, '--input-stream', input, '--input-subjects', `${sc.cfg.job}.>`, ...sc.flags,
      '--sink', `jsonl:${dir}/results.jsonl`, '--sink', `jetstream:${results}:res.${sc.cfg.job}`,
      '--late-sink', `jsonl:${dir}/late.jsonl`, '--dlq-sink', `jsonl:${dir}/dlq.jsonl`,
      '--state-dir', join(dir, 'state'), '--drain', '--batch-size', '20', '--checkpoint-interval', '40ms', '--log-level', 'debug',
    ];
    const rng = new Rng(sc.seed);
    let kills = 0;
    let recoveries = 0;
    let last: CliResult | undefined;
    for (let attempt = 0; attempt < 80; attempt++) {
      const plan = sc.plan(rng, kills);
      const env = typeof plan === 'object' && 'fault' in plan ? { TIDEMARK_FAULT: plan.fault } : {};
      const { child, done, waitFor } = spawnCli(args, { env });
      if (typeof plan === 'object' && 'killAfterMs' in plan) {
        // Count from the job's k-th checkpoint of this run (start-up and checkpoint times vary with load).
        const k = plan.afterCheckpoints;
        await waitFor((err) => (err.match(/checkpoint complete/g) ?? []).length >= k && /watermark = max\(ts\)/.test(err)).catch(() => undefined);
        const early = await Promise.race([done, sleep(plan.killAfterMs).then(() => undefined)]);
        if (!early) child.kill('SIGKILL');
      }
      last = await done;
      const resumedAt = /resuming after input sequence (\d+)/.exec(last.stderr);
      if (resumedAt) recoveries++;
      // Only a kill while input was left counts: a run restored at the end of input has nothing to lose.
      if (last.signal === 'SIGKILL') {
        if (!resumedAt || Number(resumedAt[1]) < payloads.length) kills++;
        continue;
      }
      if (plan === 'finish' || last.code !== 0) break;
      t.fail(`the job finished before kill ${kills + 1}: the input is too small for this plan`);
      break;
    }
    totalKills += kills;
    t.equal(last!.code, 0, `the last run exits 0 (stderr: ${last!.stderr.slice(0, 1500)})`);
    t.ok(kills >= 9, `the job was killed ${kills} times while input was left`);
    t.ok(recoveries >= 3, `${recoveries} restarts recovered from a checkpoint`);

    const got = readJsonl(`${dir}/results.jsonl`);
    t.equal(new Set(ids(got)).size, got.length, 'jsonl results: no record twice');
    t.same(sorted(got), sorted(expected.results), 'jsonl results equal a run without failure');
    const stored = await readStream(results);
    t.equal(new Set(ids(stored)).size, stored.length, 'JetStream results: no record twice');
    t.same(sorted(stored), sorted(expected.results), 'JetStream results equal a run without failure');
    t.same(sorted(readJsonl(`${dir}/late.jsonl`)), sorted(expected.late), 'late records equal a run without failure');
    t.same(ids(readJsonl(`${dir}/dlq.jsonl`)), ids(expected.dead), 'dead letters equal a run without failure');
  });
}

t.test('at least 20 kills across the suite', async (t) => {
  t.ok(totalKills >= 20, `${totalKills} kills`);
});
