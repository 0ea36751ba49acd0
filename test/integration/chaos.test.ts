// Exactly-once after kill -9: a seeded loop kills `tidemark run --drain` at random moments and
// inside checkpoint writes, restarts it on the same state directory, and compares every sink
// with the reference model (what a run without failure produces).

import t from 'tap';
import { join } from 'node:path';
import { natsFixture } from '../helpers/nats.js';
import { fillStream, readJsonl, readStream, byId } from '../helpers/sinks.js';
import { killLoop, type KillPlan } from '../helpers/kill-loop.js';
import { genStream, Rng } from '../helpers/streams.js';
import { referenceRun, type RefConfig } from '../helpers/reference.js';

const { scratch, nats, nc } = await natsFixture(t, 'tidemark-chaos-');

const sorted = <T extends { id: string }>(xs: T[]): T[] => byId(xs.map(({ msgId: _, ...r }: T & { msgId?: string }) => r as T));
const ids = (xs: Array<{ id: string }>): string[] => xs.map((x) => x.id).sort();

interface Scenario {
  name: string;
  seed: number;
  posts: number;
  cfg: RefConfig;
  flags: string[];
  /** how the next attempt dies, given the kills so far: a delay before SIGKILL, a fault point inside a checkpoint write, or not at all */
  plan: (rng: Rng, kills: number) => KillPlan;
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
    await fillStream(nc, input, sc.cfg.job, payloads);
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
    // Rescaling across restarts: each run spreads the key groups over 1, 2 or 3 window actors.
    const loop = await killLoop({ args: (run) => [...args, '--partitions', String(1 + (run % 3))], plan: (kills) => sc.plan(rng, kills), maxRuns: 80, inputLength: payloads.length });
    const { kills, recoveries, last } = loop;
    t.notOk(loop.finishedEarly, `the job did not finish before kill ${kills + 1} (else the input is too small for this plan)`);
    totalKills += kills;
    t.equal(last.code, 0, `the last run exits 0 (stderr: ${last.stderr.slice(0, 1500)})`);
    t.ok(kills >= 9, `the job was killed ${kills} times while input was left`);
    t.ok(recoveries >= 3, `${recoveries} restarts recovered from a checkpoint`);

    const got = readJsonl<{ id: string }>(`${dir}/results.jsonl`);
    t.equal(new Set(ids(got)).size, got.length, 'jsonl results: no record twice');
    t.same(sorted(got), sorted(expected.results), 'jsonl results equal a run without failure');
    const stored = await readStream<{ id: string }>(nc, results);
    t.equal(new Set(ids(stored)).size, stored.length, 'JetStream results: no record twice');
    t.same(sorted(stored), sorted(expected.results), 'JetStream results equal a run without failure');
    t.same(sorted(readJsonl<{ id: string }>(`${dir}/late.jsonl`)), sorted(expected.late), 'late records equal a run without failure');
    t.same(ids(readJsonl<{ id: string }>(`${dir}/dlq.jsonl`)), ids(expected.dead), 'dead letters equal a run without failure');
  });
}

t.test('at least 20 kills across the suite', async (t) => {
  t.ok(totalKills >= 20, `${totalKills} kills`);
});
