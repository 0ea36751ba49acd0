// One job on three `tidemark run --group` processes over one real nats-server: leases in JetStream KV,
// window actors on every instance, restore and checkpoints over NATS. The `jetstream:` results equal
// the reference model record by record — without faults, with the coordinator SIGKILLed mid-run (a
// member takes over from the checkpoint mirror in NATS) and with a member SIGKILLed mid-run.

import t, { type Test } from 'tap';
import { join } from 'node:path';
import { natsFixture, spawnCli, runCli, fillStream, storedResults, statusUntil, type CliProcess, type CliResult } from '../helpers/nats.js';
import { CheckpointStore } from '../../src/io/checkpoint-store.js';
import { checkpointDir } from '../../src/actors/job.js';
import { genStream } from '../helpers/streams.js';
import { referenceRun, type RefConfig } from '../helpers/reference.js';

const { scratch, nats, nc, children } = await natsFixture(t, 'tidemark-group-');
const sorted = <T extends { id: string }>(xs: T[]): T[] => [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

const cfg = (job: string): RefConfig => ({ job, window: { kind: 'tumbling', size: 60_000 }, maxOutOfOrderness: 5_000, lateness: 30_000, keys: { hashtags: true, all: true, keywords: [] }, emit: 'updates' });


type Instance = CliProcess;

function instance(job: string, n: number, extra: string[] = [], env: NodeJS.ProcessEnv = {}, drain = true): Instance {
  const dir = join(scratch.dir, job, `i${n}`);
  const args = [
    'run', '--group', '--nats', nats.url, '--job', job, '--input-stream', `IN_${job}`, '--input-subjects', `${job}.>`,
    '--window', 'tumbling:1m', '--max-out-of-orderness', '5s', '--allowed-lateness', '30s', '--keys', 'hashtags,all',
    '--sink', `jetstream:RES_${job}:res.${job}`, '--late-sink', `jetstream:LATE_${job}:late.${job}`, '--dlq-sink', `nats:dlq.${job}`,
    '--state-dir', dir, ...(drain ? ['--drain'] : []), '--batch-size', '20', '--checkpoint-interval', '100ms', '--lease-ttl', '3s', '--partitions', '2', '--log-level', 'debug',
    ...extra,
  ];
  const run = spawnCli(args, { env });
  children.add(run.child);
  return run;
}

/** Instances 1, 2 and 3 of `job`, each with the same flags, environment and drain. */
const three = (job: string, extra: string[] = [], env: NodeJS.ProcessEnv = {}, drain = true): Instance[] => [1, 2, 3].map((n) => instance(job, n, extra, env, drain));

const lastLines = (s: string): string => s.split('\n').filter((l) => !/checkpoint complete|"level":20/.test(l)).slice(-30).join('\n');

/** Until one instance logs a generation spanning all three (an instance that never does just leaves it to the others). */
const threeRunning = async (all: Instance[]): Promise<void> => {
  await Promise.race(all.map((i) => i.waitFor(/generation \d+: 3 instance\(s\)/, 60_000).catch(() => new Promise(() => undefined))));
};

/** Every process ended with exit 0 (quoting the last log lines of one that did not). */
const allExitZero = (t: Test, ends: CliResult[], who: string): void => ends.forEach((r, i) => t.equal(r.code, 0, `${who} ${i + 1} exits 0 (${r.code === 0 ? '' : lastLines(r.stderr)})`));

/** SIGKILLs `victim`, waits for the other instances to end and checks that each exited 0; their ends. */
async function survivorsOf(t: Test, all: Instance[], victim: Instance): Promise<CliResult[]> {
  victim.child.kill('SIGKILL');
  const ends = await Promise.all(all.filter((i) => i !== victim).map((i) => i.done));
  allExitZero(t, ends, 'survivor');
  return ends;
}

const posts = (n: number, seed: number): string[] => genStream(seed, { n, unit: 60_000, step: 1_000, maxOutOfOrderness: 5_000 });

/** The input stream holding `payloads`, and the streams of the results and late records. */
async function streams(job: string, payloads: readonly string[]): Promise<void> {
  await fillStream(nc, `IN_${job}`, job, payloads);
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: `RES_${job}`, subjects: [`res.${job}`] });
  await jsm.streams.add({ name: `LATE_${job}`, subjects: [`late.${job}`] });
}

/** For a drained run: the input (n posts) in place before the instances start; what the model says of it. */
async function setUp(job: string, n: number, seed: number): Promise<ReturnType<typeof referenceRun>> {
  const payloads = posts(n, seed);
  await streams(job, payloads);
  return referenceRun(payloads, cfg(job));
}

/** Until the sinks hold as many results and late records as `expected` (a live run: up to 2 minutes). */
async function untilStored(job: string, expected: ReturnType<typeof referenceRun>): Promise<void> {
  const jsm = await nc.jetstreamManager();
  const count = async (stream: string): Promise<number> => (await jsm.streams.info(stream)).state.messages;
  for (let i = 0; i < 1200 && ((await count(`RES_${job}`)) < expected.results.length || (await count(`LATE_${job}`)) < expected.late.length); i++) await new Promise((r) => setTimeout(r, 100));
}


async function checkExact(t: Test, job: string, expected: ReturnType<typeof referenceRun>): Promise<void> {
  const results = await storedResults(nc, `RES_${job}`);
  t.equal(new Set(results.map((r) => r.id)).size, results.length, 'no result twice in the JetStream sink');
  t.same(sorted(results), sorted(expected.results), `results equal the reference model (${expected.results.length})`);
  const late = await storedResults(nc, `LATE_${job}`);
  t.same(sorted(late), sorted(expected.late), `late records equal the model (${expected.late.length})`);
}

t.test('three instances form one job; results equal the model', async (t) => {
  const job = 'g1';
  // Members also prepare (decode, key, score) the coordinator's input batches. Live (no --drain), the
  // group formed on an empty stream first: a drain ends where the input stood when the first
  // coordinator started, so with the input in place one instance could drain most or all of it before
  // the others joined, and the last generation (the one that reports) could have no batch left for them.
  await streams(job, []);
  const all = three(job, ['--prepare-on-members'], {}, false);
  const formed = await statusUntil(nc, job, (s) => s.group?.instances.length === 3, 60_000);
  t.equal(formed?.group?.instances.length, 3, 'status shows the three instances in one generation before any input is published');
  const payloads = posts(6000, 7);
  await fillStream(nc, `IN_${job}`, job, payloads);
  const expected = referenceRun(payloads, cfg(job), false);
  await untilStored(job, expected);
  const status = await statusUntil(nc, job, (s) => s.input.seq >= payloads.length, 30_000);
  const prepared = status?.group?.preparedBatches;
  t.ok(status?.group?.instances.length === 3 && (prepared?.remote ?? 0) >= 1, `members prepared (decoded, keyed, scored) batches of the input (generation of ${status?.group?.instances.length} instances: ${JSON.stringify(prepared)})`);
  for (const i of all) i.child.kill('SIGTERM');
  const ends = await Promise.all(all.map((i) => i.done));
  allExitZero(t, ends, 'instance');
  const logs = ends.map((r) => r.stderr).join('\n');
  t.match(logs, /generation \d+: 3 instance\(s\)/, 'a generation spanned all three instances');
  const mirror = await runCli(['inspect', '--nats', nats.url, '--job', job]);
  t.equal(mirror.code, 0, `inspect --nats reads the mirror (${mirror.stderr})`);
  t.match(mirror.stdout, /NATS mirror at checkpoint \d+ \(coordinator epoch \d+\)/, 'it names the newest checkpoint and its epoch');
  t.match(mirror.stdout, /epoch \d+ gen \d+: /, 'with the key-group owners of each checkpoint');
  const none = await runCli(['inspect', '--nats', nats.url, '--job', 'nosuchgroup']);
  t.equal(none.code, 1, 'a job that never ran as a group: exit 1');
  t.match(none.stderr, /has no group state in this NATS/, 'with one line saying so');
  t.ok(ends.filter((r) => /member of job g1/.test(r.stderr)).length >= 2, 'two instances hosted window actors as members');
  await checkExact(t, job, expected);
});

t.test('the coordinator is SIGKILLed mid-run: a member takes over from the mirror; results exact', async (t) => {
  const job = 'g2';
  const expected = await setUp(job, 8000, 11);
  const all = three(job);
  await threeRunning(all);
  const coordinator = all.find((i) => /coordinator of job g2/.test(i.stderr()))!;
  t.ok(coordinator, 'one instance is the coordinator');
  await coordinator.waitFor((s) => (s.match(/checkpoint complete/g) ?? []).length >= 5, 60_000);
  const ends = await survivorsOf(t, all, coordinator);
  const logs = ends.map((r) => r.stderr).join('\n');
  t.match(logs, /coordinator of job g2/, 'a survivor took the coordinator role');
  t.match(logs, /restored checkpoint \d+ from the group's mirror/, 'it restored from the mirror in NATS');
  await checkExact(t, job, expected);
});

t.test('a member is SIGKILLed mid-run: its key groups move; results exact', async (t) => {
  const job = 'g3';
  const expected = await setUp(job, 8000, 13);
  // The member killed may hold input batches it was preparing: the coordinator prepares them itself.
  const all = three(job, ['--prepare-on-members']);
  await threeRunning(all);
  await Promise.race(all.map((i) => i.waitFor((s) => /member of job g3/.test(s) && !/coordinator of job g3/.test(s), 60_000).catch(() => new Promise(() => undefined))));
  const member = all.find((i) => /member of job g3/.test(i.stderr()) && !/coordinator of job g3/.test(i.stderr()));
  t.ok(member, 'one instance is a member');
  await new Promise((r) => setTimeout(r, 300));
  const ends = await survivorsOf(t, all, member!);
  t.match(ends.map((r) => r.stderr).join('\n'), /gone \(lease expired or process dead\)/, 'the coordinator noticed the member gone');
  await checkExact(t, job, expected);
});


t.test('a stale coordinator (SIGSTOP past its lease, then SIGCONT) is refused; results exact', async (t) => {
  const job = 'g4';
  const expected = await setUp(job, 9000, 17);
  const all = three(job);
  await threeRunning(all);
  const stale = all.find((i) => /coordinator of job g4/.test(i.stderr()))!;
  await stale.waitFor((s) => (s.match(/checkpoint complete/g) ?? []).length >= 3, 60_000);
  stale.child.kill('SIGSTOP');
  const others = all.filter((i) => i !== stale);
  await Promise.race(others.map((i) => i.waitFor(/coordinator of job g4/, 60_000).catch(() => new Promise(() => undefined))));
  await new Promise((r) => setTimeout(r, 500));
  stale.child.kill('SIGCONT');
  const ends = await Promise.all(all.map((i) => i.done));
  allExitZero(t, ends, 'instance');
  const staleLog = ends[all.indexOf(stale)]!.stderr;
  t.match(staleLog, /lease coordinator \(epoch \d+\) expired and was lost|checkpoint refused: superseded|superseded: another instance coordinates/, 'the stale coordinator found itself superseded');
  await checkExact(t, job, expected);
});

t.test('a dropped batch on an actor channel is noticed and recovered from the checkpoint; results exact', async (t) => {
  const job = 'g5';
  // Live (no --drain): the group forms on an empty stream first, so the dropped batch belongs to the
  // three-instance generation (a generation ending before the gap shows would hide it).
  const payloads = posts(6000, 19);
  await streams(job, []);
  const env = { TIDEMARK_FAULT: 'drop-batch:20' };
  // A lost batch the source waits for (one that fires windows is credited before the next) shows no
  // gap until the checkpoint timeout; either way the job goes back to its checkpoint.
  const extra = ['--checkpoint-timeout', '5s'];
  const all = three(job, extra, env, false);
  await threeRunning(all);
  await fillStream(nc, `IN_${job}`, job, payloads);
  const expected = referenceRun(payloads, cfg(job), false);
  await untilStored(job, expected);
  for (const i of all) i.child.kill('SIGTERM');
  const ends = await Promise.all(all.map((i) => i.done));
  allExitZero(t, ends, 'instance');
  const logs = ends.map((r) => r.stderr).join('\n');
  t.match(logs, /message\(s\) lost|was not acknowledged within 5000 ms/, 'the loss was noticed (a gap, or no acknowledgement in time)');
  t.match(logs, /new generation from the last checkpoint/, 'the job went back to its checkpoint');
  await checkExact(t, job, expected);
});

t.test('rebalancing: a fourth instance joins, one leaves with SIGTERM; one owner per key group in every checkpoint; results exact', async (t) => {
  const job = 'g6';
  const expected = await setUp(job, 12000, 23);
  const all = three(job);
  await threeRunning(all);
  const fourth = instance(job, 4);
  all.push(fourth);
  await Promise.race(all.map((i) => i.waitFor(/generation \d+: 4 instance\(s\)/, 60_000).catch(() => new Promise(() => undefined))));
  // Any client asks the job's status endpoint: the coordinator answers for the whole group.
  const status = await statusUntil(nc, job, (s) => !!s.group, 30_000);
  if (!status) throw new Error('no status answer');
  const instances = status.group?.instances ?? [];
  t.ok(instances.length >= 3, `status lists the group's instances (${instances.length}, generation ${status.group?.gen})`);
  t.equal(instances.filter((i) => i.roles.includes('coordinator')).length, 1, 'one coordinator');
  t.same(instances.flatMap((i) => i.keyGroups).sort((a, b) => a[0] - b[0]).reduce((at, [from, to]) => (from === at ? to : -1), 0), 128, 'their key groups cover 0..127 once');
  t.equal(status.config.partitions, instances.reduce((n, i) => n + i.actors.length, 0), 'window actors in all');
  const leaver = all.find((i) => /member of job g6/.test(i.stderr()) && !/coordinator of job g6/.test(i.stderr()) && !/leaving/.test(i.stderr()))!;
  leaver.child.kill('SIGTERM');
  const ends = await Promise.all(all.map((i) => i.done));
  allExitZero(t, ends, 'instance');
  t.match(ends[all.indexOf(leaver)]!.stderr, /leaving the group/, 'the SIGTERMed member left');
  await checkExact(t, job, expected);
  // Every checkpoint any instance holds names owners that cover the key groups once each.
  let checked = 0;
  for (let n = 1; n <= 4; n++) {
    const store = await CheckpointStore.open(checkpointDir(join(scratch.dir, job, `i${n}`), job)).catch(() => undefined);
    if (!store) continue;
    const { metas } = await store.list();
    for (const m of metas) {
      t.ok(m.group, `checkpoint ${m.id} of instance ${n} is stamped with its generation`);
      const owners = [...(m.group?.owners ?? [])].sort((a, b) => a[1] - b[1]);
      let at = 0;
      for (const [, from, to] of owners) {
        if (from !== at) break;
        at = to;
      }
      t.equal(at, 128, `checkpoint ${m.id} (generation ${m.group?.gen}): key groups 0..127 owned once each, in ${owners.length} range(s)`);
      checked++;
    }
    await store.close();
  }
  t.ok(checked > 0, `${checked} checkpoints checked`);
});

t.test('a barrier lost with nothing after it on its channel: the checkpoint times out and the job restarts from the last one; results exact', async (t) => {
  const job = 'g7';
  const expected = await setUp(job, 3000, 29);
  const env = { TIDEMARK_FAULT: 'drop-final-barrier:1' };
  // One instance: a member joining would start a new generation of its own and could beat the timeout.
  const all = [instance(job, 1, ['--checkpoint-timeout', '2s'], env)];
  const ends = await Promise.all(all.map((i) => i.done));
  allExitZero(t, ends, 'instance');
  t.match(ends.map((r) => r.stderr).join('\n'), /did not complete within 2000 ms/, 'the checkpoint timed out');
  await checkExact(t, job, expected);
});
