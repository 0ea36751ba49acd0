// The PostgreSQL sink against a real PostgreSQL (Debian's package, one server for this file) and a
// real nats-server: drain runs of generated streams compared row by row with the reference model
// (tumbling, sliding, sessions; updates and final), ?prefix=, the password kept out of logs and
// `status`, bad connection strings and table shapes refused with one line and exit code 2, and
// result fields beyond the sentiment ones becoming columns of their own.

import t from 'tap';
import { join } from 'node:path';
import { natsFixture, fillStream, runCli, spawnCli } from '../helpers/nats.js';
import { genStream } from '../helpers/streams.js';
import { referenceRun, type RefConfig } from '../helpers/reference.js';
import { postgresFixture, readTables, lastRevisions, sortById } from '../helpers/postgres.js';
import { PostgresSink, columnName } from '../../src/io/postgres-sink.js';
import { parsePostgresSpec, redactPostgresUrl, formatPostgresSpec } from '../../src/io/postgres-url.js';
import { parseSinkSpec, formatSinkSpec } from '../../src/io/sink-spec.js';

const { scratch, nats, nc } = await natsFixture(t, 'tidemark-pg-');
const pgs = await postgresFixture(t);

interface Case {
  name: string;
  cfg: RefConfig;
  flags: string[];
}

const cases: Case[] = [
  {
    name: 'tumbling, updates, lateness > 0',
    cfg: { job: 'pgtum', window: { kind: 'tumbling', size: 60_000 }, maxOutOfOrderness: 5_000, lateness: 30_000, keys: { hashtags: true, all: true, keywords: ['good'] }, emit: 'updates' },
    flags: ['--window', 'tumbling:1m', '--max-out-of-orderness', '5s', '--allowed-lateness', '30s', '--keys', 'hashtags,all,keyword:good', '--emit', 'updates'],
  },
  {
    name: 'sliding, final mode',
    cfg: { job: 'pgsld', window: { kind: 'sliding', size: 120_000, slide: 60_000 }, maxOutOfOrderness: 10_000, lateness: 60_000, keys: { hashtags: true, all: false, keywords: [] }, emit: 'final' },
    flags: ['--window', 'sliding:2m,1m', '--max-out-of-orderness', '10s', '--allowed-lateness', '1m', '--keys', 'hashtags', '--emit', 'final', '--batch-size', '300'],
  },
  {
    name: 'session, updates, lateness > 0',
    cfg: { job: 'pgses', window: { kind: 'session', gap: 60_000 }, maxOutOfOrderness: 5_000, lateness: 30_000, keys: { hashtags: true, all: true, keywords: [] }, emit: 'updates' },
    flags: ['--window', 'session:1m', '--max-out-of-orderness', '5s', '--allowed-lateness', '30s', '--keys', 'hashtags,all', '--emit', 'updates'],
  },
];

for (const [i, c] of cases.entries()) {
  t.test(`drain into PostgreSQL: ${c.name}`, async (t) => {
    const payloads = genStream(300 + i, { n: 1500, unit: 60_000, step: 2_000, maxOutOfOrderness: c.cfg.maxOutOfOrderness });
    const stream = `IN_${c.cfg.job.toUpperCase()}`;
    await fillStream(nc, stream, c.cfg.job, payloads);
    const expected = referenceRun(payloads, c.cfg);
    t.ok(expected.results.length > 50 && expected.late.length > 0 && expected.dead.length > 0, `the model emits results (${expected.results.length}), late records and dead letters`);
    const dir = join(scratch.dir, c.cfg.job);
    const url = pgs.url();
    const r = await runCli([
      'run', '--nats', nats.url, '--job', c.cfg.job, '--input-stream', stream, '--input-subjects', `${c.cfg.job}.>`, ...c.flags,
      '--sink', url, '--sink', `jsonl:${dir}/results.jsonl`, '--late-sink', url, '--dlq-sink', url, '--state-dir', join(dir, 'state'), '--drain', '--checkpoint-interval', '100ms',
    ]);
    t.equal(r.code, 0, `exit code 0 (stderr: ${r.stderr.slice(-800)})`);
    t.notMatch(r.stderr + r.stdout, pgs.password, 'the password is in no log line');
    const got = await readTables(pgs, c.cfg.job);
    t.same(got.revisions, sortById(expected.results), `${c.cfg.job}_windows_revisions holds every revision of the model, once`);
    t.same(got.windows, lastRevisions(expected.results), 'tidemark_windows holds the last revision of every window');
    t.same(got.late, sortById(expected.late), 'tidemark_late holds the late records of the model');
    t.same(
      got.dead.map((d) => d.id),
      sortById(expected.dead).map((d) => d.id),
      'tidemark_dead_letters holds every dead letter',
    );
    t.ok(got.dead.every((d) => typeof d.reason === 'string' && typeof d.payload === 'string' && typeof d.seq === 'number'), 'dead letters carry reason, payload and seq columns');
    t.same(got.progress.map((p) => p.sink), ['dead', 'late', 'results'], 'one progress row per sink role');
    t.ok(got.progress.every((p) => Number(p.checkpoint_id) > 0), 'each names a committed checkpoint');
  });
}

t.test('column types are the documented contract', async (t) => {
  const c = await pgs.client();
  try {
    const { rows } = await c.query<{ table_name: string; column_name: string; data_type: string }>(
      "SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_name IN ('tidemark_windows', 'tidemark_late', 'tidemark_dead_letters', 'tidemark_progress') ORDER BY table_name, ordinal_position",
    );
    const of = (table: string): Record<string, string> => Object.fromEntries(rows.filter((r) => r.table_name === table).map((r) => [r.column_name, r.data_type]));
    t.same(of('tidemark_windows'), {
      id: 'text', job: 'text', key: 'text', window_start: 'timestamp with time zone', window_end: 'timestamp with time zone', revision: 'integer', final: 'boolean', watermark: 'timestamp with time zone',
      updated_at: 'timestamp with time zone', count: 'integer', positive: 'integer', negative: 'integer', neutral: 'integer', score_sum: 'double precision', avg_score: 'double precision',
    });
    t.same(of('tidemark_late'), { id: 'text', job: 'text', key: 'text', window_start: 'timestamp with time zone', window_end: 'timestamp with time zone', ts: 'timestamp with time zone', watermark: 'timestamp with time zone', updated_at: 'timestamp with time zone', post_id: 'text' });
    t.same(of('tidemark_dead_letters'), { id: 'text', job: 'text', updated_at: 'timestamp with time zone', reason: 'text', subject: 'text', seq: 'bigint', payload: 'text' });
    t.same(of('tidemark_progress'), { job: 'text', sink: 'text', checkpoint_id: 'bigint', updated_at: 'timestamp with time zone' });
    const pk = await c.query<{ cols: string }>(
      "SELECT string_agg(a.attname, ',' ORDER BY array_position(i.indkey, a.attnum)) AS cols FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) WHERE i.indrelid = 'tidemark_windows'::regclass AND i.indisprimary GROUP BY i.indexrelid",
    );
    t.equal(pk.rows[0]?.cols, 'job,key,window_start,window_end', 'tidemark_windows: primary key (job, key, window_start, window_end)');
  } finally {
    await c.end();
  }
});

t.test('?prefix= names the tables; PGPASSWORD supplies the password; status shows no password', async (t) => {
  const job = 'pgpfx';
  const cfg: RefConfig = { job, window: { kind: 'tumbling', size: 60_000 }, maxOutOfOrderness: 5_000, lateness: 0, keys: { hashtags: true, all: false, keywords: [] }, emit: 'updates' };
  const payloads = genStream(320, { n: 600, unit: 60_000, step: 2_000, maxOutOfOrderness: 5_000 });
  await fillStream(nc, 'IN_PGPFX', job, payloads);
  const url = pgs.url('tidemark', { password: false, prefix: 'acme_' });
  const dir = join(scratch.dir, job);
  // Not --drain: the job keeps running so that `status` can be asked.
  const run = spawnCli(
    ['run', '--nats', nats.url, '--job', job, '--input-stream', 'IN_PGPFX', '--input-subjects', `${job}.>`, '--window', 'tumbling:1m', '--keys', 'hashtags', '--sink', url, '--state-dir', join(dir, 'state'), '--log-level', 'debug'],
    { env: { PGPASSWORD: pgs.password } },
  );
  t.teardown(() => void run.child.kill('SIGKILL'));
  await run.waitFor(/checkpoint complete/);
  const status = await runCli(['status', '--nats', nats.url, '--job', job, '--json']);
  t.equal(status.code, 0);
  const st = JSON.parse(status.stdout) as { config: { sinks: string[] } };
  t.same(st.config.sinks, [`postgres://${pgs.user}@${pgs.host}:${pgs.port}/tidemark?prefix=acme_`], 'status names the sink without a password');
  run.child.kill('SIGTERM');
  const r = await run.done;
  t.equal(r.code, 0, `stops cleanly (stderr: ${r.stderr.slice(-500)})`);
  t.notMatch(r.stderr + r.stdout + status.stdout, pgs.password, 'the password is in no log line and not in status');
  const expected = referenceRun(payloads, cfg, false);
  const got = await readTables(pgs, job, 'acme_');
  t.same(got.revisions, sortById(expected.results), 'acme_windows_revisions holds the results');
  t.same(got.windows, lastRevisions(expected.results), 'acme_windows the last revisions');
  t.same((await readTables(pgs, job)).revisions, [], 'nothing went to the tidemark_ tables');
});

t.test('refused at start with one line and exit code 2: wrong password, missing database, tables of another shape', async (t) => {
  const base = ['run', '--nats', nats.url, '--job', 'pgbad', '--window', 'tumbling:1m', '--state-dir', join(scratch.dir, 'pgbad'), '--drain'];
  const c = await pgs.client();
  await c.query('CREATE TABLE shape1_windows (job text, key text, window_start text, window_end text, revision integer, id text, final boolean, watermark timestamptz)');
  await c.query('CREATE TABLE shape2_windows (job text, key text, window_start timestamptz, window_end timestamptz, revision integer, id text, final boolean, watermark timestamptz)');
  await c.query('CREATE TABLE shape3_late (id text PRIMARY KEY, job text, payload integer)');
  await c.end();
  const bad: Array<[string[], RegExp, NodeJS.ProcessEnv?]> = [
    [['--sink', pgs.url('tidemark', { password: 'wrong-secret' })], /--sink postgres:\/\/tidemark@127\.0\.0\.1:\d+\/tidemark: password authentication failed for user "tidemark"/],
    [['--sink', pgs.url('tidemark', { password: false })], /--sink .*(password authentication failed|asks for a password)/, { PGPASSWORD: '' }],
    [['--sink', pgs.url('nosuchdb')], /--sink postgres:\/\/tidemark@127\.0\.0\.1:\d+\/nosuchdb: database "nosuchdb" does not exist/],
    [['--sink', pgs.url('tidemark', { prefix: 'shape1_' })], /table shape1_windows exists with an incompatible shape \(column window_start is text, not timestamptz\)/],
    [['--sink', pgs.url('tidemark', { prefix: 'shape2_' })], /table shape2_windows exists with an incompatible shape \(it has no primary key or unique index on \(job, key, window_start, window_end\)\)/],
    [['--late-sink', pgs.url('tidemark', { prefix: 'shape3_' })], /--late-sink .*table shape3_late exists with an incompatible shape \(column payload is integer, not text\)/],
    [['--dlq-sink', pgs.url('tidemark', { prefix: 'Bad-Prefix' })], /--dlq-sink: prefix "Bad-Prefix" is not accepted/],
    [['--sink', 'postgres://tidemark:secret@[bad'], /--sink: "postgres:\/\/tidemark@\[bad" is not a PostgreSQL connection string/],
    [['--sink', 'postgres://tidemark:secret@127.0.0.1:5432'], /--sink: .* names no database/],
  ];
  for (const [flags, re, env] of bad) {
    const r = await runCli([...base, ...flags], env ? { env } : {});
    t.equal(r.code, 2, `${flags.join(' ')}: exit code 2`);
    t.match(r.stderr, re, 'says what is wrong');
    t.equal(r.stderr.trim().split('\n').length, 1, `one line (got: ${r.stderr.trim()})`);
    t.notMatch(r.stderr, /wrong-secret|secret@|tidemark-test-secret/, 'and shows no password');
  }
});

t.test('connection strings: parsing and the password-free form', async (t) => {
  const s = parsePostgresSpec('postgresql://u:p%40ss@db.example:6543/acme?sslmode=disable&prefix=brand_', '--sink');
  t.equal(s.prefix, 'brand_');
  t.equal(s.url, 'postgresql://u:p%40ss@db.example:6543/acme?sslmode=disable', 'prefix is taken out of the URL the client gets');
  t.equal(formatPostgresSpec(s), 'postgresql://u@db.example:6543/acme?sslmode=disable&prefix=brand_');
  t.equal(formatSinkSpec(parseSinkSpec('postgres://u:p@h/db', '--sink')), 'postgres://u@h/db');
  t.equal(redactPostgresUrl('postgres://u:se cret@h:5432/db'), 'postgres://u@h:5432/db', 'even what is not a URL loses its password');
  t.throws(() => parseSinkSpec('postgress://u:secret@h/db', '--sink'), /"postgress:\/\/u@h\/db" is not a sink/);
  t.equal(columnName('scoreSum'), 'score_sum');
  t.equal(columnName('p99LatencyMs'), 'p99_latency_ms');
  t.equal(columnName('9lives'), '_9lives');
});

t.test('result fields of any job become columns; an incompatible existing column is refused', async (t) => {
  const spec = parsePostgresSpec(pgs.url('tidemark', { prefix: 'custom_' }), '--sink');
  const sink = new PostgresSink(spec, 'results', 'custom');
  await sink.open(undefined);
  const rec = (rev: number, extra: Record<string, unknown>) => ({ id: `custom/k/0/60000/${rev}`, job: 'custom', key: 'k', window: { start: 0, end: 60_000 }, revision: rev, final: false, watermark: 60_000 + rev, ...extra });
  sink.write([rec(0, { maxScore: 4.5, topUser: 'ann', flagged: true, users: { ann: 2 }, note: null })]);
  sink.write([rec(1, { maxScore: 7, topUser: 'bob', flagged: false, users: { ann: 2, bob: 1 }, note: 'late post' })]);
  t.same(await sink.snapshot(1), { checkpoint: 1 });
  await sink.close();
  const c = await pgs.client();
  try {
    const cols = await c.query<{ column_name: string; data_type: string }>("SELECT column_name, data_type FROM information_schema.columns WHERE table_name = 'custom_windows' ORDER BY ordinal_position");
    const types = Object.fromEntries(cols.rows.map((r) => [r.column_name, r.data_type]));
    t.match(types, { max_score: 'double precision', top_user: 'text', flagged: 'boolean', users: 'jsonb', note: 'text' }, 'a column per field, typed by its value');
    const { rows } = await c.query('SELECT revision, max_score, top_user, flagged, users, note FROM custom_windows');
    t.same(rows, [{ revision: 1, max_score: 7, top_user: 'bob', flagged: false, users: { ann: 2, bob: 1 }, note: 'late post' }], 'the current row is the higher revision');
    t.equal((await c.query('SELECT 1 FROM custom_windows_revisions')).rowCount, 2, 'both revisions kept');
    await c.query('ALTER TABLE custom_windows ADD COLUMN mood integer');
  } finally {
    await c.end();
  }
  // A field whose values do not fit the column that exists: refused, and the checkpoint is not taken.
  const again = new PostgresSink(spec, 'results', 'custom');
  await again.open({ checkpoint: 1 });
  again.write([rec(2, { mood: 'sunny' })]);
  await t.rejects(again.snapshot(2), /column custom_windows\.mood is integer, but field "mood" needs text/);
  await again.close();
  // Progress behind what the state says: the tables were changed outside Tidemark.
  const behind = new PostgresSink(spec, 'results', 'custom');
  await t.rejects(behind.open({ checkpoint: 5 }), /the state says checkpoint 5 was committed .* PostgreSQL holds checkpoint 1 of job custom/);
  await behind.close();
});

t.test('epochs of many COPY batches: revisions of one window within and across batches, a column that appears after batches were made, a replay', async (t) => {
  const spec = parsePostgresSpec(pgs.url('tidemark', { prefix: 'big_' }), '--sink');
  const windows = 15_000;
  const rec = (w: number, rev: number, extra: Record<string, unknown> = {}) => {
    const start = Date.UTC(2026, 0, 1) + (w % 50) * 60_000;
    const key = `#k${Math.floor(w / 50)}`;
    return { id: `big/${key}/${start}/${start + 60_000}/${rev}`, job: 'big', key, window: { start, end: start + 60_000 }, count: w * 3 - 7, scoreSum: -w / 8, revision: rev, final: rev === 2, watermark: start + 60_000 + rev, ...extra };
  };
  // 15k revisions 0, then 15k revisions 1 (from window 7000 on with a text field of its own), then
  // 1000 revisions 2 right behind their revisions 1: more than one batch per epoch (20k rows).
  const first = Array.from({ length: windows }, (_v, w) => rec(w, 0));
  const second = Array.from({ length: 10_000 }, (_v, w) => rec(w, 1));
  const third: Array<ReturnType<typeof rec>> = [];
  for (let w = 10_000; w < windows; w++) third.push(rec(w, 1, w >= 7000 ? { note: w % 2 ? 'ünïcødé ✓ and a text longer than sixty-four characters, to take the other path' : `n${w}` } : {}));
  for (let w = 0; w < 1000; w++) third.push(rec(w, 2));
  const all = [...first, ...second, ...third];
  const write = async (sink: PostgresSink): Promise<void> => {
    for (const part of [first, second]) for (let i = 0; i < part.length; i += 500) sink.write(part.slice(i, i + 500));
    // Let the sink cut and encode batches before the new column appears.
    await new Promise((r) => setTimeout(r, 50));
    for (let i = 0; i < third.length; i += 500) sink.write(third.slice(i, i + 500));
  };
  const sink = new PostgresSink(spec, 'results', 'big');
  await sink.open(undefined);
  await write(sink);
  t.same(await sink.snapshot(1), { checkpoint: 1 });
  await sink.close();
  const got = await readTables(pgs, 'big', 'big_');
  t.equal(got.revisions.length, all.length, 'every revision once');
  t.same(got.revisions, sortById(all), 'the revisions table holds every record as written');
  t.same(got.windows, lastRevisions(all), 'the current-value table the last revision of every window');

  // The same records again (a restart whose checkpoint did not record the commit): nothing changes.
  const c = await pgs.client();
  const before = String((await c.query('SELECT max(updated_at)::text AS t FROM big_windows')).rows[0].t);
  const again = new PostgresSink(spec, 'results', 'big');
  await again.open({ checkpoint: 1 });
  await write(again);
  t.same(await again.snapshot(2), { checkpoint: 2 });
  await again.close();
  t.equal(Number((await c.query('SELECT count(*) AS n FROM big_windows WHERE updated_at > $1::timestamptz', [before])).rows[0].n), 0, 'no current row rewritten');
  await c.end();
  const after = await readTables(pgs, 'big', 'big_');
  t.same(after.revisions, got.revisions, 'the revisions unchanged');
  t.same(after.windows, got.windows, 'the current values unchanged');
  t.same(after.progress, [{ sink: 'results', checkpoint_id: '2' }], 'the progress row names the second commit');
});

t.test('a field that appears while the sink is adding an earlier one: each column is added before a COPY names it', async (t) => {
  // The first records' fields make the sink ALTER its tables; records with a field of their own
  // arrive at a spread of moments after, some of them while that ALTER is on its way.
  const rec = (w: number, extra: Record<string, unknown> = {}) => {
    const start = Date.UTC(2026, 0, 1) + w * 60_000;
    return { id: `race/#k/${start}/${start + 60_000}/0`, job: 'race', key: '#k', window: { start, end: start + 60_000 }, count: w, revision: 0, final: true, watermark: start + 60_000, ...extra };
  };
  for (const delay of [0, 1, 2, 3, 5, 8, 13, 21]) {
    const spec = parsePostgresSpec(pgs.url('tidemark', { prefix: `race${delay}_` }), '--sink');
    const sink = new PostgresSink(spec, 'results', 'race');
    await sink.open(undefined);
    const first = Array.from({ length: 200 }, (_v, w) => rec(w));
    const second = Array.from({ length: 200 }, (_v, w) => rec(200 + w, { note: `n${w}` }));
    sink.write(first);
    await new Promise((r) => setTimeout(r, delay));
    sink.write(second);
    t.same(await sink.snapshot(1), { checkpoint: 1 }, `new field ${delay} ms after the first records: committed`);
    await sink.close();
    const got = await readTables(pgs, 'race', `race${delay}_`);
    t.equal(got.revisions.length, 400, 'every record once');
    t.same(
      got.revisions
        .map((r) => (r as { note?: unknown }).note)
        .filter((n) => n !== null && n !== undefined)
        .sort(),
      second.map((r) => (r as { note?: unknown }).note).sort(),
      'the new field in its column',
    );
  }
});

for (const more of [true, false]) {
  t.test(`a connection dropped while idle inside an epoch, then ${more ? 'more records and' : 'only'} the barrier: the epoch is written again from its first record on a new connection`, async (t) => {
    // The late and dead-letter sinks get records now and then: between two barriers their transaction
    // is open and idle, and a server crash or a terminated backend drops it without any query failing.
    const spec = parsePostgresSpec(pgs.url('tidemark', { prefix: 'idle_' }), '--dlq-sink');
    const job = `idledrop${more ? 'more' : 'barrier'}`;
    const dead = (i: number) => ({ id: `${job}/dlq/${i}`, reason: 'bad json', subject: `${job}.x`, seq: i, payload: `{${i}` });
    const sink = new PostgresSink(spec, 'dead', job);
    await sink.open(undefined);
    const admin = await pgs.client();
    const backend = async (state: string): Promise<number | undefined> => {
      const { rows } = await admin.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state = $2', [`tidemark-${job}`, state]);
      return rows[0]?.pid;
    };
    const until = async <T>(f: () => Promise<T | undefined>): Promise<T> => {
      for (let i = 0; i < 500; i++) {
        const v = await f();
        if (v !== undefined) return v;
        await new Promise((r) => setTimeout(r, 10));
      }
      throw new Error('timed out');
    };
    sink.write([dead(1), dead(2), dead(3)]);
    // Sent, and the transaction waits for more records or the barrier.
    const pid = await until(() => backend('idle in transaction'));
    await admin.query('SELECT pg_terminate_backend($1)', [pid]);
    await until(async () => ((await backend('idle in transaction')) === undefined ? true : undefined));
    // Let the client see the connection go.
    await new Promise((r) => setTimeout(r, 100));
    if (more) sink.write([dead(4), dead(5)]);
    t.same(await sink.snapshot(1), { checkpoint: 1 });
    await sink.close();
    await admin.end();
    const got = await readTables(pgs, job, 'idle_');
    t.same(got.dead.map((d) => d.id), (more ? [1, 2, 3, 4, 5] : [1, 2, 3]).map((i) => `${job}/dlq/${i}`), 'the records of the lost transaction are there too');
    t.same(got.progress, [{ sink: 'dead', checkpoint_id: '1' }], 'with the progress row of their checkpoint');
  });
}

t.test('tidemark demo --sink postgres://… writes the demo windows into PostgreSQL', async (t) => {
  const r = await runCli(['demo', '--duration', '8s', '--rate', '300', '--sink', pgs.url('tidemark', { prefix: 'demo_' })]);
  t.equal(r.code, 0, `exit 0 (stderr: ${r.stderr.slice(-300)})`);
  const got = await readTables(pgs, 'demo', 'demo_');
  t.ok(got.revisions.length > 0, `the demo's results are in demo_windows_revisions (${got.revisions.length})`);
  t.ok(got.windows.length > 0 && got.windows.length <= got.revisions.length, 'and their current values in demo_windows');
  t.notMatch(r.stdout + r.stderr, pgs.password, 'no password on screen');
});
