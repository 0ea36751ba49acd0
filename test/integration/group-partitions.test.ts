// A group reading a partitioned input partition by partition: `--input-partitions 4` on three
// `tidemark run --group` processes over a real nats-server. Each input partition is read, decoded and
// scored by the instance the generation's plan names (a filtered consumer), and the coordinator merges
// the prepared records back into the input's order. The `jetstream:` results, late records and dead
// letters (messages on no partition's subject among them, which no partition's source reads) equal the
// reference model of the partitioned input record by record — without faults, and with an instance
// that reads partitions SIGKILLed mid-run.

import t, { type Test } from 'tap';
import { join } from 'node:path';
import { natsFixture, spawnCli, runCli, storedResults, statusUntil, type CliProcess, type CliResult } from '../helpers/nats.js';
import type { StatusAnswer } from '../../src/io/service-request.js';
import { genStream } from '../helpers/streams.js';
import { referencePartitionedRun, type RefConfig, type RefIdle, type RefMessage } from '../helpers/reference.js';

const { scratch, nats, nc, children } = await natsFixture(t, 'tidemark-gparts-');
const enc = new TextEncoder();
const P = 4;
const sorted = <T extends { id: string }>(xs: T[]): T[] => [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

const cfg = (job: string): RefConfig => ({ job, window: { kind: 'tumbling', size: 60_000 }, maxOutOfOrderness: 5_000, lateness: 30_000, keys: { hashtags: true, all: true, keywords: [] }, emit: 'updates' });

/** Deterministic pseudo-random numbers in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s * 1_103_515_245 + 12_345) >>> 0;
    return s / 2 ** 32;
  };
}

/**
 * `n` posts on the 4 input partitions (subjects as the server's mapping stores them,
 * `<job>.in.<p>.<key>`; partition 3 gets few), and now and then a message on a subject that names no
 * partition (`<job>.stray`).
 */
function input(job: string, n: number, seed: number): RefMessage[] {
  const random = rng(seed);
  return genStream(seed, { n, unit: 60_000, step: 1_000, maxOutOfOrderness: 5_000 }).map((payload, i) => {
    if (i % 997 === 500) return { payload, partition: -1, subject: `${job}.stray` };
    const r = random();
    const partition = r < 0.05 ? 3 : Math.floor(r * 3);
    return { payload, partition, subject: `${job}.in.${partition}.u${i % 50}` };
  });
}

/** The job's input, result, late and dead-letter streams, empty. */
async function streams(job: string): Promise<void> {
  const jsm = await nc.jetstreamManager();
  for (const [name, subject] of [[`IN_${job}`, `${job}.>`], [`RES_${job}`, `res.${job}`], [`LATE_${job}`, `late.${job}`], [`DLQ_${job}`, `dlq.${job}`]] as const) await jsm.streams.add({ name, subjects: [subject] });
}

/** Publishes `msgs` to the input stream, in order. */
async function publish(msgs: readonly RefMessage[]): Promise<void> {
  const js = nc.jetstream();
  for (let i = 0; i < msgs.length; i += 500) await Promise.all(msgs.slice(i, i + 500).map((m) => js.publish(m.subject, enc.encode(m.payload))));
}


type Instance = CliProcess;

function instance(job: string, n: number, drain = false, extra: string[] = [], env: NodeJS.ProcessEnv = {}): Instance {
  const dir = join(scratch.dir, job, `i${n}`);
  const args = [
    'run', '--group', '--nats', nats.url, '--job', job, '--input-stream', `IN_${job}`, '--input-subjects', `${job}.>`, '--input-partitions', String(P),
    '--window', 'tumbling:1m', '--max-out-of-orderness', '5s', '--allowed-lateness', '30s', '--keys', 'hashtags,all',
    '--sink', `jetstream:RES_${job}:res.${job}`, '--late-sink', `jetstream:LATE_${job}:late.${job}`, '--dlq-sink', `jetstream:DLQ_${job}:dlq.${job}`,
    '--state-dir', dir, ...(drain ? ['--drain'] : []), '--batch-size', '20', '--checkpoint-interval', '100ms', '--lease-ttl', '3s', '--partitions', '2', '--log-level', 'debug',
    ...extra,
  ];
  const run = spawnCli(args, { env });
  children.add(run.child);
  return run;
}


/** Until the sinks hold as many records as `expected` (up to 2 minutes). */
async function untilStored(job: string, expected: ReturnType<typeof referencePartitionedRun>): Promise<void> {
  const jsm = await nc.jetstreamManager();
  const count = async (stream: string): Promise<number> => (await jsm.streams.info(stream)).state.messages;
  for (let i = 0; i < 1200; i++) {
    if ((await count(`RES_${job}`)) >= expected.results.length && (await count(`LATE_${job}`)) >= expected.late.length && (await count(`DLQ_${job}`)) >= expected.dead.length) return;
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function checkExact(t: Test, job: string, expected: ReturnType<typeof referencePartitionedRun>): Promise<void> {
  const results = await storedResults(nc, `RES_${job}`);
  t.equal(new Set(results.map((r) => r.id)).size, results.length, 'no result twice in the JetStream sink');
  t.same(sorted(results), sorted(expected.results), `results equal the reference model (${expected.results.length})`);
  t.same(sorted(await storedResults(nc, `LATE_${job}`)), sorted(expected.late), `late records equal the model (${expected.late.length})`);
  // (the model names a reason by its code, a record says it in words: the message itself is compared)
  const dead = (await storedResults(nc, `DLQ_${job}`)) as unknown as Array<{ id: string; subject: string; seq: number }>;
  t.same(
    sorted(dead).map((d) => [d.id, d.subject, d.seq]),
    sorted(expected.dead).map((d) => [d.id, d.subject, d.seq]),
    `dead letters equal the model (${expected.dead.length}, ${expected.dead.filter((d) => d.reason === 'no_input_partition').length} on no partition's subject)`,
  );
}

const lastLines = (s: string): string => s.split('\n').filter((l) => !/checkpoint complete|"level":20/.test(l)).slice(-30).join('\n');
const allExitZero = (t: Test, ends: CliResult[], who: string): void => ends.forEach((r, i) => t.equal(r.code, 0, `${who} ${i + 1} exits 0 (${r.code === 0 ? '' : lastLines(r.stderr)})`));

/** The instance that is not the coordinator and reads input partitions in the generation `status` shows. */
function readerIn(all: Instance[], status: StatusAnswer | undefined): Instance | undefined {
  const coordinator = status?.group?.instances.find((i) => i.roles.includes('coordinator'));
  const reader = status?.group?.instances.find((i) => i !== coordinator && (i.inputs ?? []).length > 0);
  return all.find((i) => i.child.pid === reader?.pid);
}

const threeFormed = (job: string): Promise<StatusAnswer | undefined> => statusUntil(nc, job, (s) => s.group?.instances.length === 3, 60_000);

/**
 * Two instances with `env`: the first alone (its generation reads the stream itself), then the
 * second — so the first generation that reads partition by partition is the one of both, and a fault
 * injected into it is not lost in a generation rebalanced away before it shows.
 */
async function pairWith(t: Test, job: string, extra: string[], env: NodeJS.ProcessEnv): Promise<Instance[]> {
  const first = instance(job, 1, false, extra, env);
  await statusUntil(nc, job, (s) => s.group?.instances.length === 1, 60_000);
  const second = instance(job, 2, false, extra, env);
  const formed = await statusUntil(nc, job, (s) => s.group?.instances.length === 2, 60_000);
  t.same(formed?.group?.instances.flatMap((i) => i.inputs ?? []).sort(), [0, 1, 2, 3], 'two instances in one generation, the member reading every partition');
  return [first, second];
}

t.test('three instances each read input partitions; the merge keeps input order; results equal the model', async (t) => {
  const job = 'gp1';
  // Live, the group formed on an empty stream first, so every post goes through the partitions' sources and the merge.
  // The members prepare on a worker thread each (--scoring-threads 1), batches in flight while the next is read.
  await streams(job);
  const all = [1, 2, 3].map((n) => instance(job, n, false, ['--scoring-threads', '1']));
  const formed = await threeFormed(job);
  t.equal(formed?.group?.instances.length, 3, 'status shows three instances in one generation before any input is published');
  const readers = formed?.group?.instances.filter((i) => (i.inputs ?? []).length > 0) ?? [];
  t.same(readers.flatMap((i) => i.inputs ?? []).sort(), [0, 1, 2, 3], `every input partition has one source (${readers.map((i) => `${i.roles.join('+')}: ${(i.inputs ?? []).join(',')}`).join(' | ')})`);
  t.ok(readers.length >= 2, 'on more than one instance');
  const msgs = input(job, 6000, 21);
  await publish(msgs);
  const expected = referencePartitionedRun(msgs, cfg(job), P, [], false);
  await untilStored(job, expected);
  const status = await statusUntil(nc, job, (s) => s.input.seq >= msgs.length, 30_000);
  const strays = msgs.filter((m) => m.partition < 0).length;
  t.equal(status?.group?.inputMerge?.strays.found, strays, `the merge looked up the ${strays} messages on no partition's subject (no source reads them)`);
  t.equal(status?.group?.inputMerge?.position, msgs.length, `the merge has passed the whole input (${JSON.stringify(status?.group?.inputMerge)})`);
  const text = await runCli(['status', '--nats', nats.url, '--job', job]);
  t.match(text.stdout, /input partitions\n(.*\n)*.*input partitions.*\s(0,2|1,3)\s*\n/, 'tidemark status shows which instance reads which input partitions');
  t.match(text.stdout, new RegExp(`merge {6}input read partition by partition, merged up to sequence ${msgs.length} \\(partitions complete up to ${msgs.length}, ${msgs.length}, ${msgs.length}, ${msgs.length}; 0 records waiting for the slowest; ${strays} on no partition's subject, 0 deleted\\)`), 'and the merge\'s progress');
  for (const i of all) i.child.kill('SIGTERM');
  const ends = await Promise.all(all.map((i) => i.done));
  allExitZero(t, ends, 'instance');
  await checkExact(t, job, expected);
});

t.test('an instance reading input partitions is SIGKILLed mid-run: its partitions move; results exact', async (t) => {
  const job = 'gp2';
  await streams(job);
  const all = [1, 2, 3].map((n) => instance(job, n));
  const victim = readerIn(all, await threeFormed(job));
  t.ok(victim, 'a member reads input partitions');
  const msgs = input(job, 8000, 23);
  const expected = referencePartitionedRun(msgs, cfg(job), P, [], false);
  await publish(msgs.slice(0, 4000));
  await statusUntil(nc, job, (s) => s.input.seq >= 2000, 30_000);
  victim!.child.kill('SIGKILL');
  await publish(msgs.slice(4000));
  await untilStored(job, expected);
  const survivors = all.filter((i) => i !== victim);
  const status = await statusUntil(nc, job, (s) => s.input.seq >= msgs.length && s.group?.instances.length === 2, 60_000);
  t.same(status?.group?.instances.flatMap((i) => i.inputs ?? []).sort(), [0, 1, 2, 3], 'the two survivors read every input partition');
  for (const i of survivors) i.child.kill('SIGTERM');
  const ends = await Promise.all(survivors.map((i) => i.done));
  allExitZero(t, ends, 'survivor');
  t.match(ends.map((r) => r.stderr).join('\n'), /gone \(lease expired or process dead\)/, 'the coordinator noticed the instance gone');
  await checkExact(t, job, expected);
});

t.test('--drain on a group reading partition by partition: every instance exits 0 once the input present at start is in the sinks', async (t) => {
  const job = 'gp3';
  await streams(job);
  const msgs = input(job, 12_000, 29);
  await publish(msgs);
  const expected = referencePartitionedRun(msgs, cfg(job), P, []);
  const all = [1, 2, 3].map((n) => instance(job, n, true));
  const ends = await Promise.all(all.map((i) => i.done));
  allExitZero(t, ends, 'instance');
  const logs = ends.map((r) => r.stderr).join('\n');
  t.match(logs, /"inputPartitions":\[[0-9,]+\]/, 'a generation of two or more read the input partition by partition (each source stops at the drain\'s end)');
  await checkExact(t, job, expected);
});

t.test('--idle-timeout in a group: the quiet partition goes idle at the merge, windows fire, exactly as the model given the journal', async (t) => {
  const job = 'gp4';
  await streams(job);
  const all = [1, 2, 3].map((n) => instance(job, n, false, ['--idle-timeout', '1s']));
  t.equal((await threeFormed(job))?.group?.instances.length, 3, 'three instances in one generation');
  const T0 = 1_764_000_000_000;
  const msgs: RefMessage[] = [];
  const js = nc.jetstream();
  const post = async (p: number, offsetMs: number, text: string): Promise<void> => {
    const m = { payload: JSON.stringify({ id: `i${msgs.length}`, ts: T0 + offsetMs, text }), partition: p, subject: `${job}.in.${p}.u${msgs.length % 7}` };
    msgs.push(m);
    await js.publish(m.subject, enc.encode(m.payload));
  };
  // Partition 3 posts once; partitions 0-2 go on, 20 s of event time every 100 ms (window: 1 minute).
  await post(3, 1000, '#quiet');
  for (let k = 0; k < 40; k++) {
    for (let p = 0; p < 3; p++) await post(p, 20_000 * k + 100 * p, k % 3 ? '#busy good' : 'bad day');
    await new Promise((r) => setTimeout(r, 100));
  }
  const idle = await statusUntil(nc, job, (s) => s.input.seq >= msgs.length && !!s.inputs.find((i) => i.partition === '3')?.idle && s.resultsOut > 0, 60_000);
  t.ok(idle?.inputs.find((i) => i.partition === '3')?.idle, 'status shows input partition 3 idle');
  t.ok((idle?.resultsOut ?? 0) > 0, 'windows fired past the quiet partition');
  for (const i of all) i.child.kill('SIGTERM');
  const ends = await Promise.all(all.map((i) => i.done));
  allExitZero(t, ends, 'instance');
  // The decisions every coordinator logged (each once it was durable), once each.
  const journal: RefIdle[] = [];
  for (const line of ends.map((r) => r.stderr).join('\n').split('\n')) {
    if (!line.includes('is idle after input sequence')) continue;
    const d = JSON.parse(line) as { inputPartition: string; seq: number };
    if (!journal.some((j) => j.seq === d.seq && j.partition === Number(d.inputPartition))) journal.push({ seq: d.seq, partition: Number(d.inputPartition) });
  }
  t.ok(journal.some((d) => d.partition === 3 && d.seq > 0), `partition 3 was declared idle after its post (${JSON.stringify(journal)})`);
  journal.sort((a, b) => a.seq - b.seq);
  await checkExact(t, job, referencePartitionedRun(msgs, cfg(job), P, journal, false));
});

/**
 * A pair of instances with a fault injected (`env`), `n` posts published live, every result stored,
 * then SIGTERM: both exit 0, the log says `noticed` and that the job went back to its checkpoint
 * (`restarted`), and every record is exact.
 */
async function withFault(t: Test, job: string, o: { extra: string[]; env: NodeJS.ProcessEnv; n: number; seed: number; noticed: RegExp; restarted: RegExp }): Promise<void> {
  await streams(job);
  const all = await pairWith(t, job, o.extra, o.env);
  const msgs = input(job, o.n, o.seed);
  await publish(msgs);
  const expected = referencePartitionedRun(msgs, cfg(job), P, [], false);
  await untilStored(job, expected);
  await statusUntil(nc, job, (s) => s.input.seq >= msgs.length, 30_000);
  for (const i of all) i.child.kill('SIGTERM');
  const ends = await Promise.all(all.map((i) => i.done));
  allExitZero(t, ends, 'instance');
  const logs = ends.map((r) => r.stderr).join('\n');
  t.match(logs, o.noticed, 'the loss was noticed');
  t.match(logs, o.restarted, 'the job went back to its checkpoint');
  await checkExact(t, job, expected);
}

t.test('a message of a partition\'s source lost on the way: noticed (a gap, or its silence), the job goes back to its checkpoint; results exact', async (t) => {
  // The member drops the 5th message its sources send (sealed, numbered, never sent): the next one shows the gap;
  // had it been the last, the source's keepalive would, or its silence past --checkpoint-timeout.
  await withFault(t, 'gp5', {
    extra: ['--checkpoint-timeout', '5s'],
    env: { TIDEMARK_FAULT: 'drop-input:5' },
    n: 6000,
    seed: 31,
    noticed: /input\.\d+: sequence \d+ after \d+: 1 message\(s\) lost|sent nothing for 5000 ms/,
    restarted: /new generation from the last checkpoint/,
  });
});

t.test('the coordinator\'s "open" to a partition\'s source lost: the source never starts, its silence is noticed; results exact', async (t) => {
  // The first control message the coordinator's merge sends (an open) is sealed and never sent: the
  // source it was for waits, sends nothing, and the merge waits for it — until --checkpoint-timeout.
  await withFault(t, 'gp6', {
    extra: ['--checkpoint-timeout', '3s'],
    env: { TIDEMARK_FAULT: 'drop-input-control:1' },
    n: 3000,
    seed: 37,
    noticed: /the source of input partition \d sent nothing for 3000 ms while the merge waited for it/,
    restarted: /new generation from the last checkpoint: the source of input partition/,
  });
});

t.test('a stale member reading partitions (SIGSTOP past its lease, then SIGCONT): its partitions move, it rejoins; results exact', async (t) => {
  const job = 'gp7';
  await streams(job);
  const all = [1, 2, 3].map((n) => instance(job, n));
  const stale = readerIn(all, await threeFormed(job));
  t.ok(stale, 'a member reads input partitions');
  const msgs = input(job, 8000, 41);
  const expected = referencePartitionedRun(msgs, cfg(job), P, [], false);
  await publish(msgs.slice(0, 3000));
  await statusUntil(nc, job, (s) => s.input.seq >= 1500, 30_000);
  stale!.child.kill('SIGSTOP');
  // Its lease runs out (3 s): a generation of the two others reads every partition; the rest of the input comes meanwhile.
  const moved = await statusUntil(nc, job, (s) => s.group?.instances.length === 2 && s.group.instances.flatMap((i) => i.inputs ?? []).length === P, 60_000);
  t.same(moved?.group?.instances.flatMap((i) => i.inputs ?? []).sort(), [0, 1, 2, 3], 'the two others read every input partition');
  await publish(msgs.slice(3000, 6000));
  stale!.child.kill('SIGCONT');
  await publish(msgs.slice(6000));
  await untilStored(job, expected);
  const back = await statusUntil(nc, job, (s) => s.input.seq >= msgs.length && s.group?.instances.length === 3, 60_000);
  t.equal(back?.group?.instances.length, 3, 'the stale member rejoined: a generation of three again');
  for (const i of all) i.child.kill('SIGTERM');
  const ends = await Promise.all(all.map((i) => i.done));
  allExitZero(t, ends, 'instance');
  t.match(ends.map((r) => r.stderr).join('\n'), /gone \(lease expired or process dead\)/, 'the coordinator noticed the stopped member gone');
  await checkExact(t, job, expected);
});
