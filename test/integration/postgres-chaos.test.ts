// Exactly-once into PostgreSQL: a seeded loop kills `tidemark run --drain` with SIGKILL at random
// moments and inside the sink's transaction (after a batch, just before and just after COMMIT),
// restarts it, and compares the tables with the reference model; then PostgreSQL itself is
// stopped mid-run and started again while the job waits and catches up.

import t, { type Test } from 'tap';
import { join } from 'node:path';
import { natsFixture, fillStream, spawnCli } from '../helpers/nats.js';
import { killLoop } from '../helpers/kill-loop.js';
import { genStream, Rng } from '../helpers/streams.js';
import { referenceRun, type RefConfig } from '../helpers/reference.js';
import { postgresFixture, readTables, lastRevisions, sortById } from '../helpers/postgres.js';

const { scratch, nats, nc } = await natsFixture(t, 'tidemark-pgchaos-');
const pgs = await postgresFixture(t);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

const cfgFor = (job: string): RefConfig => ({ job, window: { kind: 'tumbling', size: 60_000 }, maxOutOfOrderness: 5_000, lateness: 30_000, keys: { hashtags: true, all: true, keywords: [] }, emit: 'updates' });
const windowFlags = ['--window', 'tumbling:1m', '--max-out-of-orderness', '5s', '--allowed-lateness', '30s', '--keys', 'hashtags,all'];

function args(job: string, dir: string, extra: string[]): string[] {
  const url = pgs.url();
  return [
    'run', '--nats', nats.url, '--job', job, '--input-stream', `IN_${job.toUpperCase()}`, '--input-subjects', `${job}.>`, ...windowFlags,
    '--sink', url, '--late-sink', url, '--dlq-sink', url, '--state-dir', join(dir, 'state'), '--drain', '--log-level', 'debug', ...extra,
  ];
}

/** The tables of `job` equal a run without failure. */
async function checkTables(t: Test, job: string, payloads: string[]): Promise<void> {
  const expected = referenceRun(payloads, cfgFor(job));
  const got = await readTables(pgs, job);
  t.equal(new Set(got.revisions.map((r) => r.id)).size, got.revisions.length, 'no revision twice');
  // Row by row first, so a difference names the first rows that differ instead of diffing 24k rows.
  const exp = sortById(expected.results);
  const canon = (o: unknown): string => JSON.stringify(o, (_k, v: unknown) => (v && typeof v === 'object' && !Array.isArray(v) ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1))) : v));
  const want = new Map(exp.map((r) => [r.id, canon(r)]));
  const rows = got.revisions as Array<{ id: string }>;
  const have = new Set(rows.map((r) => r.id));
  t.same(exp.filter((r) => !have.has(r.id)).slice(0, 5).map((r) => r.id), [], 'no revision missing (the first five shown)');
  t.same(rows.filter((r) => !want.has(r.id)).slice(0, 5).map((r) => r.id), [], 'no revision that a run without failure does not emit');
  t.same(rows.filter((r) => want.has(r.id) && want.get(r.id) !== canon(r)).slice(0, 3).map((r) => ({ got: canon(r), want: want.get(r.id) })), [], 'every revision with the same contents');
  if (got.revisions.length === exp.length) t.same(got.revisions, exp, 'the revisions table equals a run without failure');
  t.same(got.windows, lastRevisions(expected.results), 'the current-value table holds the last revision of every window');
  t.same(got.late, sortById(expected.late), 'late records equal a run without failure');
  t.same(got.dead.map((d) => d.id), sortById(expected.dead).map((d) => d.id), 'dead letters equal a run without failure');
}

t.test('SIGKILL at random moments and inside the sink transaction: the tables equal the model', async (t) => {
  const job = 'pgchaos';
  const payloads = genStream(41, { n: 24_000, unit: 60_000, step: 2_000, maxOutOfOrderness: 5_000 });
  await fillStream(nc, `IN_${job.toUpperCase()}`, job, payloads);
  const dir = join(scratch.dir, job);
  const a = args(job, dir, ['--batch-size', '20', '--checkpoint-interval', '40ms']);
  const rng = new Rng(41);
  const faults = ['postgres-batch-written', 'postgres-before-commit', 'postgres-after-commit'];
  const { kills, faultKills: inTx, last } = await killLoop({
    args: a,
    maxRuns: 60,
    inputLength: payloads.length,
    plan: (kills) => {
      if (kills >= 12) return 'finish';
      if (kills % 2 === 0) return { fault: `${faults[(kills / 2) % 3]!}:${rng.int(1, 6)}` };
      return { afterCheckpoints: rng.int(0, 3), killAfterMs: rng.int(0, 60) };
    },
  });
  t.equal(last.code, 0, `the last run exits 0 (stderr: ${last.stderr.slice(-1200)})`);
  t.ok(kills >= 10, `killed ${kills} times while input was left`);
  t.ok(inTx >= 5, `${inTx} of them inside the sink's transaction`);
  await checkTables(t, job, payloads);
});

// Until 2026-12-06 this lost a few late records and dead letters in about half the runs: a connection
// dropped while idle inside an open epoch (between two batches) left the sink believing its transaction
// open, and the records sent in it were gone (test/integration/postgres.test.ts now has that case alone).
t.test('PostgreSQL stopped mid-run and started again: checkpoints wait, the job catches up, results exact', async (t) => {
  const job = 'pgoutage';
  const payloads = genStream(42, { n: 3_000, unit: 60_000, step: 2_000, maxOutOfOrderness: 5_000 });
  await fillStream(nc, `IN_${job.toUpperCase()}`, job, payloads);
  const dir = join(scratch.dir, job);
  const { done, waitFor } = spawnCli(args(job, dir, ['--batch-size', '10', '--checkpoint-interval', '50ms']));
  await waitFor((err) => (err.match(/checkpoint complete/g) ?? []).length >= 3);
  // A crash of the server (no clean shutdown): open transactions are lost.
  await pgs.stop('immediate');
  await waitFor(/PostgreSQL .* unavailable/, 20_000);
  await sleep(2_000);
  await pgs.resume();
  const r = await done;
  t.equal(r.code, 0, `the job finishes (stderr tail: ${r.stderr.slice(-800)})`);
  t.match(r.stderr, /unavailable \(.+\): checkpoints wait for it; retrying with backoff/, 'the outage is logged with its reason');
  t.match(r.stderr, /reachable again after \d+ s: writing the waiting checkpoints/, 'and the recovery');
  // While the database was down no checkpoint completed.
  const lines = r.stderr.split('\n');
  const down = lines.findIndex((l) => /unavailable/.test(l));
  const up = lines.findIndex((l) => /reachable again/.test(l));
  t.ok(down >= 0 && up > down, 'down, then up');
  const between = lines.slice(down, up).filter((l) => /checkpoint complete/.test(l)).length;
  // The job keeps at most two checkpoints in flight: both may have committed to PostgreSQL before it went
  // away and be finishing their (sliced) LevelDB write; none later completes until it is back.
  t.ok(between <= 2, `at most the two checkpoints in flight, already committed, complete during the outage (${between})`);
  await checkTables(t, job, payloads);
});
