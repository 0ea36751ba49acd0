// `tidemark run` as a NATS micro service, against a real nats-server: discovery ($SRV.PING/INFO/STATS),
// every endpoint while posts flow, malformed requests, the client subcommands, job locks, isolation, SIGTERM.

import t from 'tap';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection, type ServiceStats } from 'nats';
import { natsFixture, spawnCli, runCli, ROOT, type CliResult } from '../helpers/nats.js';
import { BASE_TS, genStream } from '../helpers/streams.js';
import { referenceRun } from '../helpers/reference.js';
import type { ChildProcess } from 'node:child_process';
import type { WindowAnswer } from '../../src/io/service-request.js';

const { scratch, nats, nc, children } = await natsFixture(t);

const VERSION = (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version;
const enc = new TextEncoder();
const dec = new TextDecoder();
const MIN = 60_000;
const T0 = BASE_TS;

const post = (id: string, offset: number, text: string): string => JSON.stringify({ id, ts: T0 + offset, text });

/** Creates an input stream on `<subject>.>` and publishes payloads into it, acked, in order. */
async function publish(stream: string, subject: string, payloads: string[]): Promise<void> {
  const jsm = await nc.jetstreamManager();
  await jsm.streams.info(stream).catch(() => jsm.streams.add({ name: stream, subjects: [`${subject}.>`] }));
  const js = nc.jetstream();
  for (const p of payloads) await js.publish(`${subject}.in`, enc.encode(p));
}

/** Polls `probe` until it returns a value; fails the wait with `what` after a generous deadline. */
async function waitFor<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

type Answer = { ok: true; body: Record<string, unknown> } | { ok: false; code: string; message: string };

/** One request to a job's endpoint; `body` is sent as is when it is a string. */
async function call(job: string, endpoint: string, body: unknown = {}): Promise<Answer> {
  const data = typeof body === 'string' ? enc.encode(body) : enc.encode(JSON.stringify(body));
  const m = await nc.request(`tidemark.${job}.${endpoint}`, data, { timeout: 10_000 });
  const err = m.headers?.get('Nats-Service-Error');
  if (err) return { ok: false, code: m.headers!.get('Nats-Service-Error-Code'), message: err };
  return { ok: true, body: JSON.parse(dec.decode(m.data)) as Record<string, unknown> };
}

async function answer(job: string, endpoint: string, body: unknown = {}): Promise<Record<string, unknown>> {
  const a = await call(job, endpoint, body);
  if (!a.ok) throw new Error(`${endpoint} failed: ${a.message}`);
  return a.body;
}

/** Jobs of the Tidemark instances answering $SRV.PING (none: no responders). */
async function pingJobs(): Promise<string[]> {
  const jobs: string[] = [];
  try {
    for await (const p of await nc.services.client().ping('tidemark')) jobs.push(p.metadata?.job ?? '');
  } catch (e) {
    if (!/503/.test((e as Error).message)) throw e;
  }
  return jobs;
}

interface RunningJob {
  child: ChildProcess;
  done: Promise<CliResult>;
  out: string;
}

/** Starts `tidemark run` (no --drain) for `job` and waits until its service answers. */
async function startJob(job: string, stream: string, subject: string, flags: string[], stateDir = join(scratch.dir, job, 'state')): Promise<RunningJob> {
  const out = join(scratch.dir, job);
  const run = spawnCli([
    'run', '--nats', nats.url, '--job', job, '--input-stream', stream, '--input-subjects', `${subject}.>`,
    '--sink', `jsonl:${out}/results.jsonl`, '--state-dir', stateDir, '--checkpoint-interval', '200ms', ...flags,
  ]);
  children.add(run.child);
  void run.done.then(() => children.delete(run.child));
  let exited: CliResult | undefined;
  void run.done.then((r) => (exited = r));
  await waitFor(`job ${job} to answer`, async () => {
    if (exited) throw new Error(`job ${job} exited with ${exited.code}: ${exited.stderr}`);
    return (await call(job, 'status').catch(() => undefined))?.ok ? true : undefined;
  });
  return { ...run, out };
}

interface Row {
  id: string;
  job: string;
  key: string;
  count: number;
  revision: number;
  final: boolean;
}

const readJsonl = (path: string): Row[] =>
  existsSync(path)
    ? readFileSync(path, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Row)
    : [];


const windowsOf = async (job: string, key: string): Promise<WindowAnswer[]> => (await answer(job, 'query', { key })).windows as WindowAnswer[];

const svcFlags = ['--window', 'tumbling:1m', '--max-out-of-orderness', '5s', '--allowed-lateness', '30s', '--log-level', 'warn'];
let svc: RunningJob;

t.test('the service is found by $SRV.PING and $SRV.INFO with its endpoints', async (t) => {
  svc = await startJob('svc', 'IN_SVC', 'svc', svcFlags);
  const client = nc.services.client();
  const pings = [];
  for await (const p of await client.ping('tidemark')) pings.push(p);
  const mine = pings.filter((p) => p.metadata?.job === 'svc');
  t.equal(mine.length, 1, 'one instance of job svc answers $SRV.PING');
  t.equal(mine[0]!.name, 'tidemark');
  t.equal(mine[0]!.version, VERSION, 'with the package version');
  const infos = [];
  for await (const i of await client.info('tidemark')) infos.push(i);
  const info = infos.find((i) => i.id === mine[0]!.id)!;
  t.match(info.description, /svc/);
  t.same(
    info.endpoints.map((e) => [e.name, e.subject]).sort(),
    ['checkpoint', 'explain', 'keys', 'query', 'status'].map((n) => [n, `tidemark.svc.${n}`]),
    'endpoints in the group tidemark.<job>',
  );
});

t.test('each endpoint answers while posts flow: open window, fired, late revision, closed', async (t) => {
  await publish('IN_SVC', 'svc', [post('p1', 1000, 'good #nats'), post('p2', 2000, 'bad #nats'), post('p3', 3000, 'the #nats meetup')]);
  const [open] = await waitFor('3 posts in the #nats window', async () => {
    const w = await windowsOf('svc', '#nats');
    return w[0]?.count === 3 ? w : undefined;
  });
  t.match(open, { state: 'open', count: 3, positive: 1, negative: 1, neutral: 1, nextRevision: 0, window: { start: T0, end: T0 + MIN }, firesAt: T0 + MIN, closesAt: T0 + MIN + 30_000 }, 'query shows the open window, its running counts and xstate state');

  const keys = await answer('svc', 'keys', { top: 5 });
  t.match(keys.keys, [{ key: '#nats', count: 3, windows: 1 }], 'keys ranks #nats by its open-window count');

  const ex = await answer('svc', 'explain', { key: '#nats' });
  t.equal(ex.heldBackBy, '0', 'the single input partition holds the watermark');
  t.match(ex.windows, [{ state: 'open', firesAt: T0 + MIN, closesAt: T0 + MIN + 30_000, firingTs: T0 + MIN + 5000 }]);
  t.match(ex.reason, /open with 3 posts/);
  t.equal(ex.watermark, T0 + 3000 - 5000);

  const st = await answer('svc', 'status');
  t.match(st, { job: 'svc', postsIn: 3, inputSeq: 3, watermark: T0 - 2000, windows: { open: 1, pending: 0 }, input: { stream: 'IN_SVC', lastSeq: 3, pending: 0 }, config: { window: 'tumbling:1m', allowedLateness: '30s', maxOutOfOrderness: '5s', emit: 'updates' } });
  t.ok((st.uptimeMs as number) >= 0 && typeof st.watermarkLagMs === 'number', 'uptime and watermark lag');

  // A post past end + bound moves the watermark to the window's end: it fires.
  await publish('IN_SVC', 'svc', [post('p4', MIN + 5000, 'hello #other')]);
  const [fired] = await waitFor('the #nats window to fire', async () => {
    const w = await windowsOf('svc', '#nats');
    return w[0]?.state === 'pending' ? w : undefined;
  });
  t.match(fired, { state: 'pending', count: 3, nextRevision: 1 }, 'after the watermark passes its end the window is pending');
  const results = join(svc.out, 'results.jsonl');
  const rev0 = await waitFor('revision 0 in the sink', () => readJsonl(results).find((r) => r.id === `svc/#nats/${T0}/${T0 + MIN}/0`));
  t.match(rev0, { count: 3, final: false }, 'its fired result is in the sink');

  // Late but within the allowed lateness: a new revision.
  await publish('IN_SVC', 'svc', [post('p5', 10_000, 'good #nats again')]);
  const [late] = await waitFor('the late post to count', async () => {
    const w = await windowsOf('svc', '#nats');
    return w[0]?.count === 4 ? w : undefined;
  });
  t.match(late, { state: 'pending', nextRevision: 2 });

  // Past end + lateness: the window closes and is gone; a post for it is dropped as late.
  await publish('IN_SVC', 'svc', [post('p6', MIN + 35_000, 'bye #other'), post('p7', 20_000, 'too late #nats')]);
  await waitFor('the window to close', async () => ((await windowsOf('svc', '#nats')).length === 0 ? true : undefined));
  await waitFor('the late record to be counted', async () => ((await answer('svc', 'status')).late === 1 ? true : undefined));
  const closed = await answer('svc', 'explain', { key: '#nats', at: T0 + 10_000 });
  t.match(closed.windows, [{ state: 'closed', window: { start: T0, end: T0 + MIN } }], 'explain at a time names the closed window');
  t.match(closed.reason, /closed/);
  const final = await waitFor('the final record', () => readJsonl(results).find((r) => r.id === `svc/#nats/${T0}/${T0 + MIN}/2`));
  t.match(final, { count: 4, final: true });

  const cp = await answer('svc', 'checkpoint', { name: 'before-upgrade' });
  t.type(cp.id, 'number');
  t.equal(cp.name, 'before-upgrade');
  const after = await answer('svc', 'status');
  t.ok((after.lastCheckpoint as { id: number }).id >= (cp.id as number), 'status shows the savepoint as the last checkpoint (or a newer one)');
});

t.test('malformed requests get micro error responses, $SRV.STATS counts them, the job goes on', async (t) => {
  const bad: Array<[string, unknown, RegExp]> = [
    ['query', 'not json', /not JSON/],
    ['query', {}, /"key" is required/],
    ['query', { key: 5 }, /"key" must be a non-empty string/],
    ['query', { key: '#nats', from: 'yesterday' }, /"from" must be ms since the epoch or an ISO-8601 time/],
    ['keys', { top: 0 }, /"top" must be an integer from 1 to 1000/],
    ['explain', { kye: '#nats' }, /unknown field "kye"; accepted: key, at/],
    ['checkpoint', { name: 'a b' }, /"name"/],
    ['checkpoint', { name: '20240101' }, /must not be all digits/],
    ['status', '[1,2]', /must be a JSON object/],
  ];
  const client = nc.services.client();
  const statsOf = async (): Promise<ServiceStats> => {
    for await (const s of await client.stats('tidemark')) if (s.metadata?.job === 'svc') return s;
    throw new Error('no stats from job svc');
  };
  const before = await statsOf();
  for (const [endpoint, body, re] of bad) {
    const a = await call('svc', endpoint, body);
    t.notOk(a.ok, `${endpoint} ${JSON.stringify(body)} is refused`);
    if (!a.ok) {
      t.equal(a.code, '400', 'with code 400');
      t.match(a.message, re);
    }
  }
  const afterStats = await statsOf();
  const count = (s: ServiceStats, name: string, f: 'num_errors' | 'num_requests'): number => s.endpoints!.find((e) => e.name === name)![f];
  const expected: Record<string, number> = { query: 4, keys: 1, explain: 1, checkpoint: 2, status: 1 };
  for (const [name, n] of Object.entries(expected)) {
    t.equal(count(afterStats, name, 'num_errors') - count(before, name, 'num_errors'), n, `${name}: ${n} errors counted`);
    t.ok(count(afterStats, name, 'num_requests') - count(before, name, 'num_requests') >= n, `${name}: requests counted`);
  }
  t.ok((await call('svc', 'status')).ok, 'the job still answers');
});

t.test('client subcommands: tables for people, --json for scripts', async (t) => {
  const common = ['--nats', nats.url, '--job', 'svc'];
  const status = await runCli(['status', ...common]);
  t.equal(status.code, 0, status.stderr);
  t.match(status.stdout, /job svc: pid \d+/);
  t.match(status.stdout, /window tumbling:1m, watermark = max\(ts\) - 5s, allowed lateness 30s/);
  t.match(status.stdout, /posts in 7, results out \d+, late 1, dead letters 0/);

  const keys = await runCli(['keys', ...common, '--json']);
  t.equal(keys.code, 0, keys.stderr);
  t.match(JSON.parse(keys.stdout), { top: 10, keys: [{ key: '#other' }] });

  const query = await runCli(['query', '#other', ...common]);
  t.equal(query.code, 0, query.stderr);
  t.match(query.stdout, /start\s+end\s+state\s+count/);
  t.match(query.stdout, /open\s+2\s/);

  const explain = await runCli(['explain', '#other', ...common]);
  t.equal(explain.code, 0, explain.stderr);
  t.match(explain.stdout, /^key "#other" \(1 open, 0 pending\)/);
  t.match(explain.stdout, /held back by input partition "0"/);

  const cp = await runCli(['checkpoint', ...common, '--name', 'cli-savepoint']);
  t.equal(cp.code, 0, cp.stderr);
  t.match(cp.stdout, /^savepoint \d+ "cli-savepoint" written/);

  const services = await runCli(['services', '--nats', nats.url]);
  t.equal(services.code, 0, services.stderr);
  t.match(services.stdout, /^job\s+id\s+version/);
  t.match(services.stdout, new RegExp(`\\nsvc\\s+\\w+\\s+${VERSION.replace(/\./g, '\\.')}`));
  const listed = JSON.parse((await runCli(['services', '--nats', nats.url, '--json'])).stdout) as Array<{ job: string; endpoints: unknown[] }>;
  t.match(listed.find((r) => r.job === 'svc'), { endpoints: [{}, {}, {}, {}, {}] });

  const missing = await runCli(['status', '--nats', nats.url, '--job', 'nope']);
  t.equal(missing.code, 1);
  t.match(missing.stderr, /no running job "nope" answers on tidemark\.nope\.status/);
  const badArg = await runCli(['query', ...common, '--from', 'whenever', '#nats']);
  t.equal(badArg.code, 2, 'a request the job rejects is a usage error');
  t.match(badArg.stderr, /"from" must be/);
  t.equal((await runCli(['query', ...common])).code, 2, 'query without KEY');
});

t.test('a second instance of a running job is refused with one line naming the holder', async (t) => {
  for (const dir of [join(scratch.dir, 'svc-second'), join(scratch.dir, 'svc', 'state')]) {
    const r = await runCli(['run', '--nats', nats.url, '--job', 'svc', '--input-stream', 'IN_SVC', '--input-subjects', 'svc.>', ...svcFlags, '--state-dir', dir]);
    t.equal(r.code, 1, `refused (state dir ${dir})`);
    t.match(r.stderr, /^tidemark run: job "svc" is already running \(pid \d+ on host .+, state dir .+\); stop it first/);
    t.equal(r.stderr.trim().split('\n').length, 1, 'in one line');
  }
  t.ok((await call('svc', 'status')).ok, 'the running instance is untouched');
  const st = await answer('svc', 'status');
  t.equal(st.postsIn, 7, 'and nothing was counted twice');
});

t.test('SIGTERM: exit 0, deregistered, and a restart emits the rest exactly (nothing lost)', async (t) => {
  svc.child.kill('SIGTERM');
  const r = await svc.done;
  t.equal(r.code, 0, `exit code 0 (stderr: ${r.stderr.slice(-400)})`);
  t.notOk((await pingJobs()).includes('svc'), 'no longer answers $SRV.PING');

  const cfg = { job: 'term', window: { kind: 'tumbling' as const, size: MIN }, maxOutOfOrderness: 5_000, lateness: 30_000, keys: { hashtags: true, all: true, keywords: [] }, emit: 'updates' as const };
  const payloads = genStream(7, { n: 1200, unit: MIN, step: 2_000, maxOutOfOrderness: 5_000 });
  await publish('IN_TERM', 'term', payloads);
  const flags = ['--window', 'tumbling:1m', '--max-out-of-orderness', '5s', '--allowed-lateness', '30s', '--keys', 'hashtags,all', '--log-level', 'info'];
  const term = await startJob('term', 'IN_TERM', 'term', flags);
  await waitFor('the job to read the whole input', async () => ((await answer('term', 'status')).inputSeq === payloads.length ? true : undefined));
  term.child.kill('SIGTERM');
  const stopped = await term.done;
  t.equal(stopped.code, 0, `exit 0 (stderr: ${stopped.stderr.slice(-400)})`);
  t.match(stopped.stderr, /stopping: no more intake, flushing, final checkpoint/);
  const midway = readJsonl(join(term.out, 'results.jsonl')).length;
  t.ok(midway > 0, `results emitted before the stop (${midway})`);

  // Restart on the same state with --drain: the rest of the windows fire; together exactly the model's.
  const drained = await runCli([
    'run', '--nats', nats.url, '--job', 'term', '--input-stream', 'IN_TERM', '--input-subjects', 'term.>', ...flags,
    '--sink', `jsonl:${term.out}/results.jsonl`, '--state-dir', join(term.out, 'state'), '--drain',
  ]);
  t.equal(drained.code, 0, drained.stderr.slice(-400));
  const expected = referenceRun(payloads, cfg).results.map((x) => x.id).sort();
  const got = readJsonl(join(term.out, 'results.jsonl')).map((x) => x.id);
  t.equal(new Set(got).size, got.length, 'no record twice');
  t.same(got.sort(), expected, 'exactly the records of an uninterrupted run');
});

t.test('two jobs on one server, reading the same input, stay isolated', async (t) => {
  const a = await startJob('iso_a', 'IN_ISO', 'iso', ['--window', 'tumbling:1m', '--max-out-of-orderness', '0s', '--log-level', 'warn']);
  const b = await startJob('iso_b', 'IN_ISO', 'iso', ['--window', 'tumbling:2m', '--max-out-of-orderness', '0s', '--log-level', 'warn']);
  const posts = [1, 2, 3, 4, 5].map((i) => post(`iso${i}`, i * 1000, `nice #iso ${i}`));
  await publish('IN_ISO', 'iso', [...posts, post('iso-fire', 5 * MIN, 'later #tick')]);
  for (const [job, size] of [['iso_a', MIN], ['iso_b', 2 * MIN]] as const) {
    const st = await waitFor(`${job} to read 6 posts`, async () => {
      const s = await answer(job, 'status');
      return s.inputSeq === 6 ? s : undefined;
    });
    t.equal(st.postsIn, 6, `${job} counted each post once`);
    const out = join(scratch.dir, job, 'results.jsonl');
    const rows = await waitFor(`${job} results`, () => {
      const r = readJsonl(out).filter((x) => x.key === '#iso');
      return r.length ? r : undefined;
    });
    t.same(
      rows.map((r) => [r.id, r.count]),
      [[`${job}/#iso/${T0}/${T0 + size}/0`, 5]],
      `${job} emitted its own window size, from its own state`,
    );
    t.ok(readJsonl(out).every((r) => r.job === job), `${job}'s sink holds only its own records`);
  }
  for (const j of [a, b]) {
    j.child.kill('SIGTERM');
    t.equal((await j.done).code, 0);
  }
});

t.test('a restart right after kill -9 with the same state dir takes the dead holder\'s lock over', async (t) => {
  const flags = ['--window', 'tumbling:1m', '--log-level', 'info'];
  const first = await startJob('crash', 'IN_CRASH', 'crash', flags);
  first.child.kill('SIGKILL');
  await first.done;
  const second = await startJob('crash', 'IN_CRASH', 'crash', flags);
  second.child.kill('SIGTERM');
  const r = await second.done;
  t.equal(r.code, 0);
  t.match(r.stderr, /took over the lock of job crash from a dead instance/);
});
