// Recovery edge cases: a corrupted and a truncated checkpoint (fall back to the previous one),
// incompatible configuration refused, --reset-state, inspect, and the NATS server killed mid-run.

import t from 'tap';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { scratchDir, startNats, runCli, spawnCli } from '../helpers/nats.js';
import { genStream } from '../helpers/streams.js';
import { referenceRun, type RefConfig } from '../helpers/reference.js';
import { CheckpointStore, deltaPrefix } from '../../src/io/checkpoint-store.js';
import { EmbeddedNats } from '../../src/io/nats-server.js';
import { checkpointDir } from '../../src/actors/job.js';

const scratch = scratchDir('tidemark-recovery-');
const nats = await startNats(scratch.dir);
const nc: NatsConnection = await connect({ servers: nats.url });
t.teardown(async () => {
  await nc.close();
  await nats.stop();
  scratch.remove();
});

const enc = new TextEncoder();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const cfg: RefConfig = { job: 'any', window: { kind: 'tumbling', size: 60_000 }, maxOutOfOrderness: 5_000, lateness: 30_000, keys: { hashtags: true, all: true, keywords: [] }, emit: 'updates' };
const windowFlags = ['--window', 'tumbling:1m', '--max-out-of-orderness', '5s', '--allowed-lateness', '30s', '--keys', 'hashtags,all'];
const payloads = genStream(21, { n: 2500, unit: 60_000, step: 2_000, maxOutOfOrderness: 5_000 });
/** What a run without failure of job `job` produces. */
const expectedFor = (job: string) => {
  const e = referenceRun(payloads, { ...cfg, job });
  return { results: e.results.map((r) => r.id).sort(), late: e.late.map((l) => l.id).sort(), dead: e.dead.map((d) => d.id).sort() };
};

async function fillStream(conn: NatsConnection, stream: string, subject: string): Promise<void> {
  await (await conn.jetstreamManager()).streams.add({ name: stream, subjects: [`${subject}.>`] });
  const js = conn.jetstream();
  for (let i = 0; i < payloads.length; i += 500) await Promise.all(payloads.slice(i, i + 500).map((p) => js.publish(`${subject}.in`, enc.encode(p))));
}

const readIds = (path: string): string[] =>
  existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { id: string }).id).sort() : [];

/** Arguments of a run of job `job` on input `stream`, writing under `dir`. */
function args(url: string, job: string, stream: string, dir: string, extra: string[] = []): string[] {
  return [
    'run', '--nats', url, '--job', job, '--input-stream', stream, '--input-subjects', `${job}.>`, ...windowFlags,
    '--sink', `jsonl:${dir}/results.jsonl`, '--late-sink', `jsonl:${dir}/late.jsonl`, '--dlq-sink', `jsonl:${dir}/dlq.jsonl`,
    '--state-dir', join(dir, 'state'), '--drain', '--batch-size', '40', '--checkpoint-interval', '30ms', ...extra,
  ];
}

/** Runs until the process dies right after writing checkpoint number `n` of this run. */
async function crashAfterCheckpoints(a: string[], n: number): Promise<void> {
  const r = await runCli(a, { env: { TIDEMARK_FAULT: `checkpoint-after-write:${n}` } });
  if (r.signal !== 'SIGKILL') throw new Error(`expected the fault to kill the job, got ${r.code}: ${r.stderr}`);
}

/** Damages the newest checkpoint that has entries; returns its id. */
async function damageNewest(stateDir: string, job: string, how: 'corrupt' | 'truncate'): Promise<number> {
  const store = await CheckpointStore.open(checkpointDir(stateDir, job));
  try {
    const { metas } = await store.list();
    // The newest checkpoint with an entry to damage: any entry to truncate, a window (not a deletion
    // marker, which has no byte to flip) to corrupt. A checkpoint of deletions only is passed over.
    for (const victim of metas.filter((m) => m.entries > 1)) {
      const prefix = deltaPrefix(victim.id);
      for await (const [key, value] of store.level.iterator({ gte: prefix, lt: prefix + '\uffff' })) {
        if (how === 'truncate') await store.level.del(key);
        else {
          if (value.length === 0) continue;
          const bad = Uint8Array.from(value);
          bad[bad.length - 1] ^= 0xff;
          await store.level.put(key, bad);
        }
        return victim.id;
      }
    }
    throw new Error('no checkpoint holds an entry to damage');
  } finally {
    await store.close();
  }
}

for (const how of ['corrupt', 'truncate'] as const) {
  t.test(`a ${how === 'corrupt' ? 'corrupted' : 'truncated'} checkpoint is reported and the job falls back to the previous one`, async (t) => {
    const job = `dmg${how}`;
    const stream = `IN_${job.toUpperCase()}`;
    await fillStream(nc, stream, job);
    const dir = join(scratch.dir, job);
    await crashAfterCheckpoints(args(nats.url, job, stream, dir), 6);
    const victim = await damageNewest(join(dir, 'state'), job, how);
    const r = await runCli(args(nats.url, job, stream, dir));
    t.equal(r.code, 0, 'the restarted job finishes');
    // The victim is the newest checkpoint with an entry to damage; a newer delta on top of it (one
    // with no entry to damage) is reported as depending on it.
    const found = how === 'corrupt' ? 'corrupted' : 'truncated';
    t.match(r.stderr, new RegExp(`checkpoint ${victim} is unusable \\(${found}|is unusable \\(depends on checkpoint ${victim}, which is ${found}`), 'the damage is reported with what was found');
    t.match(r.stderr, /falling back to checkpoint \d+/);
    t.same(readIds(`${dir}/results.jsonl`), expectedFor(job).results, 'results are still exact');
    t.same(readIds(`${dir}/late.jsonl`), expectedFor(job).late, 'late records are still exact');

    const listing = await runCli(['inspect', '--state-dir', join(dir, 'state'), '--job', job]);
    t.equal(listing.code, 0);
    t.match(listing.stdout, /id\s+time\s+input seq\s+watermark\s+windows\s+bytes/, 'inspect lists checkpoints as a table');
  });
}

t.test('incompatible configuration is refused, --reset-state discards the state', async (t) => {
  const job = 'compat';
  const stream = 'IN_COMPAT';
  await fillStream(nc, stream, job);
  const dir = join(scratch.dir, job);
  t.equal((await runCli(args(nats.url, job, stream, dir))).code, 0);
  const other = args(nats.url, job, stream, dir).map((a) => (a === 'tumbling:1m' ? 'tumbling:2m' : a));
  const refused = await runCli(other);
  t.equal(refused.code, 1, 'refused');
  t.match(refused.stderr, /--window was tumbling:1m, now tumbling:2m/, 'names the difference');
  t.match(refused.stderr, /--reset-state/, 'names the flag that discards the state');
  const dump = await runCli(['inspect', '--state-dir', join(dir, 'state'), '--job', job, '--key', '#nats', '--json']);
  t.equal(dump.code, 0, 'inspect --key works on the kept state');
  const reset = await runCli([...args(nats.url, job, stream, dir), '--reset-state']);
  t.equal(reset.code, 0, 'runs again from the start with --reset-state');
  t.same(readIds(`${dir}/results.jsonl`), expectedFor(job).results, 'and the results are exact, not doubled');
});

t.test('the NATS server killed and restarted during a run: the job reconnects, results stay exact', async (t) => {
  const own = await EmbeddedNats.start(join(scratch.dir, 'own-nats'));
  const conn = await connect({ servers: own.url });
  await fillStream(conn, 'IN_FLAKY', 'flaky');
  await conn.close();
  const dir = join(scratch.dir, 'flaky');
  const { done, waitFor } = spawnCli(args(own.url, 'flaky', 'IN_FLAKY', dir, ['--batch-size', '10', '--log-level', 'debug']));
  await waitFor(/checkpoint complete/);
  await own.stop('SIGKILL');
  await sleep(800);
  const again = await EmbeddedNats.start(own.storeDir, { port: own.port });
  t.teardown(() => again.stop());
  const r = await done;
  t.equal(r.code, 0, `the job finishes (stderr tail: ${r.stderr.slice(-600)})`);
  t.match(r.stderr, /NATS connection lost/, 'the loss is logged');
  t.match(r.stderr, /restarting the job from its last checkpoint/, 'and the job restarts from its checkpoint');
  t.same(readIds(`${dir}/results.jsonl`), expectedFor('flaky').results, 'results are exact');
  t.same(readIds(`${dir}/dlq.jsonl`), expectedFor('flaky').dead, 'dead letters are exact');
});
