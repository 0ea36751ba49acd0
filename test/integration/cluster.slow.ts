// NATS cluster faults on a real 3-node loopback cluster (routes, JetStream, R3 streams): the job is
// given all three URLs, the node it is connected to is killed with -9 mid-run, and the job rides the
// failover (requests that time out are retried, or it restarts from its checkpoint) and ends with
// exactly the reference model's results in a JetStream sink and a file. A stream look-up that fails
// because the cluster has no quorum is not taken for a missing stream.

import t from 'tap';
import { readFileSync, existsSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { scratchDir, spawnCli } from '../helpers/nats.js';
import { NatsCluster } from '../helpers/cluster.js';
import { genStream } from '../helpers/streams.js';
import { referenceRun, referencePartitionedRun, type RefConfig, type RefMessage } from '../helpers/reference.js';
import { JetStreamSink } from '../../src/io/sinks.js';
import { TidemarkError } from '../../src/errors.js';
import { isTransientNatsError } from '../../src/io/nats-errors.js';

const scratch = scratchDir('tidemark-cluster-');
const cluster = await NatsCluster.start(scratch.dir);
t.teardown(async () => {
  await cluster.stop();
  if (process.env.KEEP_CLUSTER_SCRATCH) (await import('node:child_process')).execSync(`rm -rf ${process.env.KEEP_CLUSTER_SCRATCH} && cp -r ${scratch.dir} ${process.env.KEEP_CLUSTER_SCRATCH}`);
  scratch.remove();
});

const enc = new TextEncoder();
const dec = new TextDecoder();
const readJsonl = (path: string): Array<{ id: string }> =>
  existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: string }) : [];
const sorted = <T extends { id: string }>(xs: T[]): T[] => [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

t.test('kill -9 of the node the job is connected to: the job carries on and the results are exact', async (t) => {
  const job = 'clu';
  const cfg: RefConfig = { job, window: { kind: 'tumbling', size: 60_000 }, maxOutOfOrderness: 5_000, lateness: 30_000, keys: { hashtags: true, all: true, keywords: [] }, emit: 'updates' };
  const payloads = genStream(41, { n: 5000, unit: 60_000, step: 2_000, maxOutOfOrderness: 5_000 });
  const nc = await cluster.connect();
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: 'IN_CLU', subjects: ['clu.>'], num_replicas: 3 });
  await jsm.streams.add({ name: 'RES_CLU', subjects: ['results.>'], num_replicas: 3 });
  const js = nc.jetstream();
  for (let i = 0; i < payloads.length; i += 500) await Promise.all(payloads.slice(i, i + 500).map((p) => js.publish('clu.in', enc.encode(p))));
  const expected = referenceRun(payloads, cfg);
  const dir = join(scratch.dir, job);
  const args = [
    'run', '--nats', cluster.urls, '--job', job, '--input-stream', 'IN_CLU', '--input-subjects', 'clu.>',
    '--window', 'tumbling:1m', '--max-out-of-orderness', '5s', '--allowed-lateness', '30s', '--keys', 'hashtags,all',
    // A stream on results.> takes results.clu (NATS wildcard rules).
    '--sink', 'jetstream:RES_CLU:results.clu', '--sink', `jsonl:${dir}/results.jsonl`,
    '--late-sink', `jsonl:${dir}/late.jsonl`, '--dlq-sink', `jsonl:${dir}/dlq.jsonl`,
    '--state-dir', join(dir, 'state'), '--drain', '--batch-size', '10', '--checkpoint-interval', '50ms', '--log-level', 'debug',
  ];
  const { child, done, waitFor } = spawnCli(args);
  t.teardown(() => void child.kill('SIGKILL'));
  await waitFor((err) => (err.match(/checkpoint complete/g) ?? []).length >= 3, 60_000);
  // The single-instance lock is replicated like the input: losing a node loses no claim.
  t.equal((await jsm.streams.info('KV_tidemark_locks')).config.num_replicas, 3, 'the job lock bucket has the input stream\'s 3 replicas');
  const victim = await cluster.nodeOf(`tidemark-${job}`);
  t.ok(victim, 'the job is connected to one of the nodes');
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  await cluster.kill(victim!);
  // A job that never ends after the kill fails the test with what it last said, instead of hanging it.
  let timer: ReturnType<typeof setTimeout> | undefined;
  const r = await Promise.race([done, new Promise<undefined>((res) => (timer = setTimeout(res, 180_000) as unknown as ReturnType<typeof setTimeout>))]);
  clearTimeout(timer);
  if (!r) {
    child.kill('SIGKILL');
    t.fail(`the job did not end within 180 s of the node's kill; its last log lines:\n${stderr.split('\n').filter((l) => !/checkpoint complete/.test(l)).slice(-40).join('\n')}`);
    await cluster.startNode(victim!);
    await nc.close();
    return;
  }
  t.equal(r.code, 0, `the job ends with exit 0 (stderr: ${r.stderr.split('\n').filter((l) => !/checkpoint complete/.test(l)).join('\n').slice(-3000)})`);
  t.notMatch(r.stderr, /NatsError: TIMEOUT\n/, 'no raw TIMEOUT ended it');
  t.match(r.stderr, /NATS connection lost|restarting the job|trying again/, 'it noticed the failover');

  t.same(sorted(readJsonl(`${dir}/results.jsonl`)), sorted(expected.results), 'jsonl results equal the model');
  t.same(sorted(readJsonl(`${dir}/late.jsonl`)), sorted(expected.late), 'late records equal the model');
  // Message by message with direct requests: an ordered consumer on a cluster after a node's kill
  // keeps a retry timer of the client alive, and the test never ends.
  const stored: Array<{ id: string }> = [];
  const info = await jsm.streams.info('RES_CLU');
  for (let seq = info.state.first_seq; seq <= info.state.last_seq; seq++) {
    const m = await jsm.streams.getMessage('RES_CLU', { seq });
    stored.push(JSON.parse(dec.decode(m.data)) as { id: string });
  }
  t.equal(stored.length, info.state.messages, 'read every stored result');
  t.equal(new Set(stored.map((s) => s.id)).size, stored.length, 'JetStream results: no record twice');
  t.same(sorted(stored), sorted(expected.results), 'JetStream results equal the model');
  await cluster.startNode(victim!);
  await nc.close();
});

t.test('a stream look-up that fails for want of a quorum is not "missing": no stream is created', async (t) => {
  await cluster.waitForJetStream();
  const nc = await cluster.connect();
  const live = cluster.nodes.filter((n) => n.server);
  // Two of three nodes down: the survivor cannot answer for JetStream. It must not be the meta leader:
  // a leader that lost its followers goes on acting as one until it notices (up to ~10 s on 2.9),
  // answers "not found" and takes a create that commits once the others return (nothing existed then,
  // so nothing is doubled; the case under test is the look-up that fails for want of a quorum).
  const metaLeader = async (): Promise<string | undefined> => {
    for (const n of live) {
      const jsz = (await fetch(`http://127.0.0.1:${n.monitor}/jsz`).then((r) => r.json(), () => ({}))) as { meta_cluster?: { leader?: string } };
      if (jsz.meta_cluster?.leader) return jsz.meta_cluster.leader;
    }
    return undefined;
  };
  let leader: string | undefined;
  for (let i = 0; i < 40 && !(leader = await metaLeader()); i++) await new Promise((r) => setTimeout(r, 250));
  t.ok(leader, `the meta leader is known (${leader})`);
  const survivor = live.find((n) => n.name !== leader)!;
  const jsm0 = await nc.jetstreamManager({ timeout: 2000 });
  const sink = new JetStreamSink(nc.jetstream({ timeout: 2000 }), jsm0, 'NEVER_MADE', 'never.made');
  for (const n of live.filter((x) => x !== survivor)) await cluster.kill(n);
  const err = await sink.open(undefined).then(() => undefined, (e: unknown) => e);
  t.ok(err instanceof TidemarkError && err.code === 'NATS_UNAVAILABLE', `open fails as NATS being unavailable (${(err as Error | undefined)?.message})`);
  t.ok(isTransientNatsError(err), 'a failure that a retry can cure');
  for (const n of cluster.nodes.filter((x) => x !== survivor)) await cluster.startNode(n);
  await cluster.waitForJetStream();
  const jsm = await nc.jetstreamManager();
  const names: string[] = [];
  for await (const s of jsm.streams.list()) names.push(s.config.name);
  t.notOk(names.includes('NEVER_MADE'), 'no stream was created while the look-up failed');
  await nc.close();
});

t.test('a group of three instances on the cluster: coordinator SIGKILLed, a key-group owner SIGKILLed, the lease bucket leader node killed and restarted; results exact', async (t) => {
  const job = 'cgrp';
  const cfg: RefConfig = { job, window: { kind: 'tumbling', size: 60_000 }, maxOutOfOrderness: 5_000, lateness: 30_000, keys: { hashtags: true, all: true, keywords: [] }, emit: 'updates' };
  const payloads = genStream(43, { n: 30_000, unit: 60_000, step: 1_000, maxOutOfOrderness: 5_000 });
  await cluster.waitForJetStream();
  const nc = await cluster.connect();
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: 'IN_CGRP', subjects: ['cgrp.>'], num_replicas: 3 });
  for (const s of ['RES1_CGRP', 'LATE1_CGRP', 'RES_CGRP', 'LATE_CGRP']) await jsm.streams.add({ name: s, subjects: [`${s.toLowerCase()}.>`], num_replicas: 3 });
  const js = nc.jetstream();
  for (let i = 0; i < payloads.length; i += 500) await Promise.all(payloads.slice(i, i + 500).map((p) => js.publish('cgrp.in', enc.encode(p))));
  const expected = referenceRun(payloads, cfg);
  const jobArgs = (res: string, late: string, dir: string): string[] => [
    'run', '--nats', cluster.urls, '--job', job, '--input-stream', 'IN_CGRP', '--input-subjects', 'cgrp.>',
    '--window', 'tumbling:1m', '--max-out-of-orderness', '5s', '--allowed-lateness', '30s', '--keys', 'hashtags,all',
    '--sink', `jetstream:${res}:${res.toLowerCase()}.out`, '--late-sink', `jetstream:${late}:${late.toLowerCase()}.out`, '--dlq-sink', 'nats:cgdlq',
    '--state-dir', dir, '--drain', '--batch-size', '20', '--checkpoint-interval', '100ms', '--log-level', 'debug', '--prepare-on-members',
  ];
  const read = async (stream: string): Promise<Array<{ id: string }>> => {
    const out: Array<{ id: string }> = [];
    const info = await jsm.streams.info(stream);
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) out.push(JSON.parse(dec.decode((await jsm.streams.getMessage(stream, { seq })).data)) as { id: string });
    return out;
  };
  const quiet = (err: string, n: number): string => err.split('\n').filter((l) => !/"level":20/.test(l)).slice(-n).join('\n');

  // The same job in one process first (no fault; its jsonl: sink makes it a single instance, not a
  // group, and it leaves no group state behind): the group's results must be these, record by record.
  const singleDir = join(scratch.dir, job, 'single');
  const single = spawnCli([...jobArgs('RES1_CGRP', 'LATE1_CGRP', singleDir), '--sink', `jsonl:${singleDir}/results.jsonl`]);
  t.teardown(() => void single.child.kill('SIGKILL'));
  const one = await single.done;
  t.equal(one.code, 0, `the single-process run exits 0 (${quiet(one.stderr, 10)})`);
  const singleResults = await read('RES1_CGRP');
  t.same(sorted(singleResults), sorted(expected.results), `single process: results equal the model (${expected.results.length})`);
  t.same(sorted(readJsonl(`${singleDir}/results.jsonl`)), sorted(expected.results), 'single process: its jsonl results too');

  let spawned = 0;
  const spawnOne = (): ReturnType<typeof spawnCli> & { err: () => string } => {
    const n = ++spawned;
    const s = spawnCli([...jobArgs('RES_CGRP', 'LATE_CGRP', join(scratch.dir, job, `i${n}`)), '--lease-ttl', '3s']);
    if (process.env.KEEP_CLUSTER_SCRATCH) s.child.stderr!.on('data', (d: Buffer) => appendFileSync(join(scratch.dir, `i${n}.log`), d));
    t.teardown(() => void s.child.kill('SIGKILL'));
    return { ...s, err: s.stderr };
  };
  type Inst = ReturnType<typeof spawnOne>;
  const all: Inst[] = [spawnOne(), spawnOne(), spawnOne()];
  const running = (): Inst[] => all.filter((i) => i.child.exitCode === null && i.child.signalCode === null);
  const lastLines = (): string => all.map((i, k) => `i${k + 1}:\n${quiet(i.err(), 15)}`).join('\n---\n');
  // Resolves true once `pred` holds for one running instance's log; false when one ends first or the time is up.
  const seen = async (pred: (err: string) => boolean, ms: number): Promise<boolean> => {
    const deadline = Date.now() + ms;
    for (;;) {
      if (running().some((i) => pred(i.err()))) return true;
      if (all.some((i) => i.child.exitCode !== null) || Date.now() > deadline) return false;
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const finished = (): boolean => all.some((i) => /"msg":"job finished"/.test(i.err()));
  const fault = async (what: string, pred: (err: string) => boolean, ms = 120_000): Promise<boolean> => {
    if (await seen(pred, ms)) {
      t.notOk(finished(), `${what}: the job is still running (the fault comes mid-run)`);
      return true;
    }
    t.fail(`${what} did not happen within ${ms / 1000}s, or an instance ended first; last lines:\n${lastLines()}`);
    return false;
  };
  const gens = (err: string, n: number): number => (err.match(new RegExp(`generation \\d+: ${n} instance\\(s\\)`, 'g')) ?? []).length;
  const end = async (): Promise<void> => {
    await nc.close();
  };

  // 1. The coordinator, once the group of three has checkpointed.
  if (!(await fault('a generation of three instances', (e) => gens(e, 3) > 0 && (e.match(/checkpoint complete/g) ?? []).length >= 5, 120_000))) return end();
  const first = running().find((i) => /coordinator of job cgrp/.test(i.err()))!;
  first.child.kill('SIGKILL');
  const survivors = all.filter((i) => i !== first);
  if (!(await fault('a survivor taking the coordinator role', () => survivors.some((i) => /coordinator of job cgrp/.test(i.err())), 120_000))) return end();

  // 2. A key-group owner: a member (not the coordinator) of a generation of three again (an instance
  //    started in place of the killed one, as a supervisor would).
  const third = spawnOne();
  all.push(third);
  const coord2 = survivors.find((i) => /coordinator of job cgrp/.test(i.err()))!;
  const base3 = gens(coord2.err(), 3);
  if (!(await fault('a new generation of three instances', () => gens(coord2.err(), 3) > base3 && (coord2.err().split(/generation \d+: 3 instance/).pop()!.match(/checkpoint complete/g) ?? []).length >= 3, 120_000))) return end();
  const owner = running().find((i) => i !== coord2 && /member of job cgrp, generation/.test(i.err()))!;
  t.ok(owner, 'a member owns key groups');
  owner.child.kill('SIGKILL');
  const base2 = gens(coord2.err(), 2);
  if (!(await fault('a generation without the killed member', () => running().some((i) => gens(i.err(), 2) > (i === coord2 ? base2 : 0)), 120_000))) return end();

  // 3. The node leading the group's lease bucket: killed, and restarted on its store 3 s later.
  const leader = (await jsm.streams.info('KV_tidemark_group_cgrp')).cluster?.leader;
  const victim = cluster.nodes.find((n) => n.name === leader) ?? cluster.nodes.find((n) => n.server)!;
  t.notOk(finished(), 'the job is still running when the NATS node is killed');
  await cluster.kill(victim);
  await new Promise((r) => setTimeout(r, 3000));
  await cluster.startNode(victim);

  const rest = running();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const ends = await Promise.race([Promise.all(rest.map((i) => i.done)), new Promise<undefined>((res) => (timer = setTimeout(res, 240_000) as unknown as ReturnType<typeof setTimeout>))]);
  clearTimeout(timer);
  if (!ends) {
    t.fail(`the group did not end within 240 s of the node's restart; last lines:\n${lastLines()}`);
    return end();
  }
  ends.forEach((r, i) => t.equal(r.code, 0, `instance ${i + 1} of ${rest.length} still running exits 0 (${quiet(r.stderr, 10)})`));
  // A few renewals fail while the node is down and its buckets elect leaders; not one after another for the rest of the run.
  for (const i of rest) t.ok((i.err().match(/renewal failed; retrying/g) ?? []).length <= 20, `lease renewals do not keep failing (${(i.err().match(/renewal failed; retrying/g) ?? []).length})`);
  await cluster.waitForJetStream();
  const results = await read('RES_CGRP');
  t.equal(new Set(results.map((r) => r.id)).size, results.length, 'JetStream results: no record twice');
  t.same(sorted(results), sorted(expected.results), `results equal the model (${expected.results.length})`);
  t.same(sorted(results), sorted(singleResults), 'results equal the single-process run, record by record');
  const late = await read('LATE_CGRP');
  t.same(sorted(late), sorted(expected.late), 'late records equal the model');
  t.same(sorted(late), sorted(await read('LATE1_CGRP')), 'late records equal the single-process run');
  await end();
});

t.test('a group of three reading --input-partitions 4 partition by partition on the cluster: the input stream\'s leader node killed and restarted mid-run; results exact', async (t) => {
  const job = 'cpart';
  const P = 4;
  const cfg: RefConfig = { job, window: { kind: 'tumbling', size: 60_000 }, maxOutOfOrderness: 5_000, lateness: 30_000, keys: { hashtags: true, all: true, keywords: [] }, emit: 'updates' };
  // Subjects as the server's {{partition(4,1)}} mapping stores them; post i on partition i mod 4 but
  // partition 3 (a few), which the others wait for at the merge.
  const msgs: RefMessage[] = genStream(47, { n: 20_000, unit: 60_000, step: 1_000, maxOutOfOrderness: 5_000 }).map((payload, i) => {
    const partition = i % 50 === 0 ? 3 : i % 3;
    return { payload, partition, subject: `cpart.in.${partition}.u${i % 11}` };
  });
  await cluster.waitForJetStream();
  const nc = await cluster.connect();
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: 'IN_CPART', subjects: ['cpart.>'], num_replicas: 3 });
  for (const s of ['RES_CPART', 'LATE_CPART']) await jsm.streams.add({ name: s, subjects: [`${s.toLowerCase()}.>`], num_replicas: 3 });
  const js = nc.jetstream();
  for (let i = 0; i < msgs.length; i += 500) await Promise.all(msgs.slice(i, i + 500).map((m) => js.publish(m.subject, enc.encode(m.payload))));
  const expected = referencePartitionedRun(msgs, cfg, P, []);
  const all = [1, 2, 3].map((n) => {
    const s = spawnCli([
      'run', '--nats', cluster.urls, '--job', job, '--input-stream', 'IN_CPART', '--input-subjects', 'cpart.>', '--input-partitions', String(P),
      '--window', 'tumbling:1m', '--max-out-of-orderness', '5s', '--allowed-lateness', '30s', '--keys', 'hashtags,all',
      '--sink', 'jetstream:RES_CPART:res_cpart.out', '--late-sink', 'jetstream:LATE_CPART:late_cpart.out', '--dlq-sink', 'nats:cpdlq',
      '--state-dir', join(scratch.dir, job, `i${n}`), '--drain', '--batch-size', '20', '--checkpoint-interval', '100ms', '--lease-ttl', '3s', '--log-level', 'debug',
    ]);
    if (process.env.KEEP_CLUSTER_SCRATCH) s.child.stderr!.on('data', (d: Buffer) => appendFileSync(join(scratch.dir, `${job}-i${n}.log`), d));
    t.teardown(() => void s.child.kill('SIGKILL'));
    return s;
  });
  const errs = (): string[] => all.map((i) => i.stderr());
  const quiet = (err: string, n: number): string => err.split('\n').filter((l) => !/"level":20/.test(l)).slice(-n).join('\n');
  // A generation reading partition by partition (a member logs its input partitions), a few checkpoints into it.
  const deadline = Date.now() + 120_000;
  const reading = (): boolean => errs().some((e) => /"inputPartitions":\[[0-9,]+\].*member of job cpart/.test(e)) && errs().some((e) => (e.split(/generation \d+: [23] instance/).slice(1).join('').match(/checkpoint complete/g) ?? []).length >= 5);
  while (!reading() && Date.now() < deadline && all.every((i) => i.child.exitCode === null)) await new Promise((r) => setTimeout(r, 50));
  t.ok(reading(), 'a generation of two or more read the input partition by partition and checkpointed');
  t.notOk(errs().some((e) => /"msg":"job finished"/.test(e)), 'the job is still running when the node is killed');
  const leader = (await jsm.streams.info('IN_CPART')).cluster?.leader;
  const victim = cluster.nodes.find((n) => n.name === leader) ?? cluster.nodes.find((n) => n.server)!;
  await cluster.kill(victim);
  await new Promise((r) => setTimeout(r, 3000));
  await cluster.startNode(victim);
  let timer: ReturnType<typeof setTimeout> | undefined;
  const ends = await Promise.race([Promise.all(all.map((i) => i.done)), new Promise<undefined>((res) => (timer = setTimeout(res, 240_000) as unknown as ReturnType<typeof setTimeout>))]);
  clearTimeout(timer);
  if (!ends) {
    t.fail(`the group did not end within 240 s of the node's restart; last lines:\n${errs().map((e) => quiet(e, 15)).join('\n---\n')}`);
    await nc.close();
    return;
  }
  ends.forEach((r, i) => t.equal(r.code, 0, `instance ${i + 1} exits 0 (${quiet(r.stderr, 10)})`));
  await cluster.waitForJetStream();
  const read = async (stream: string): Promise<Array<{ id: string }>> => {
    const out: Array<{ id: string }> = [];
    const info = await jsm.streams.info(stream);
    for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) out.push(JSON.parse(dec.decode((await jsm.streams.getMessage(stream, { seq })).data)) as { id: string });
    return out;
  };
  const results = await read('RES_CPART');
  t.equal(new Set(results.map((r) => r.id)).size, results.length, 'JetStream results: no record twice');
  t.same(sorted(results), sorted(expected.results), `results equal the model of the partitioned input (${expected.results.length})`);
  t.same(sorted(await read('LATE_CPART')), sorted(expected.late), `late records equal the model (${expected.late.length})`);
  await nc.close();
});
