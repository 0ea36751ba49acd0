// Tidemark as an installed package: a project outside this one, with `node_modules/tidemark` linked
// to it, writes a job module that imports `tidemark`, type-checks against the published
// declarations, unit-tests it with `tidemark/testing` and runs it with `tidemark run --job-module`
// into the JSONL, JetStream and core NATS sinks.

import t from 'tap';
import { mkdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { natsFixture, ROOT } from '../helpers/nats.js';
import { fillStream, readJsonl, readStream, byId } from '../helpers/sinks.js';

const run = promisify(execFile);
const { scratch, nats, nc } = await natsFixture(t, 'tidemark-installed-');
const app = join(scratch.dir, 'app');
mkdirSync(join(app, 'node_modules'), { recursive: true });
symlinkSync(ROOT, join(app, 'node_modules', 'tidemark'), 'dir');
writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'clicks-app', private: true, type: 'module', dependencies: { tidemark: '*' } }));

const JOB = `import { defineJob, RejectRecord } from 'tidemark';
export default defineJob({
  name: 'clicks',
  window: 'tumbling:1m',
  maxOutOfOrderness: '2s',
  eventTime: (c) => c.at,
  keys: (c) => { if (typeof c.page !== 'string') throw new RejectRecord('no_page'); return ['page:' + c.page]; },
  aggregate: {
    init: () => ({ clicks: 0, users: [] }),
    add: (a, c) => ({ clicks: a.clicks + 1, users: a.users.includes(c.user) ? a.users : [...a.users, c.user].sort() }),
    merge: (a, b) => ({ clicks: a.clicks + b.clicks, users: [...new Set([...a.users, ...b.users])].sort() }),
    result: (a) => ({ clicks: a.clicks, distinctUsers: a.users.length }),
  },
});
`;
writeFileSync(join(app, 'job.mjs'), JOB);
const node = (args: string[]) => run(process.execPath, args, { cwd: app });
const tidemark = (args: string[]) => node([join(app, 'node_modules', 'tidemark', 'bin', 'tidemark.js'), ...args]);

const MIN = 60_000;
const T0 = 1_764_000_000_000;
const clicks: Array<{ id: string; at: number; page: string; user: string }> = [];
for (let i = 0; i < 400; i++) clicks.push({ id: `c${i}`, at: T0 + i * 700 + ((i * 37) % 1500), page: ['home', 'cart', 'help'][i % 3]!, user: `u${(i * 7) % 11}` });

t.test('type-checks against the package declarations (tidemark and tidemark/testing)', async (t) => {
  writeFileSync(
    join(app, 'check.ts'),
    `import { defineJob, type JobDefinition, type ResultRecord } from 'tidemark';
import { testJob } from 'tidemark/testing';
import job from './job.mjs';
const typed: JobDefinition<{ n: number; ts: number }, { sum: number }, { sum: number }> = defineJob({
  name: 't', eventTime: (r) => r.ts, keys: () => ['*'],
  aggregate: { init: () => ({ sum: 0 }), add: (a, r) => ({ sum: a.sum + r.n }), merge: (a, b) => ({ sum: a.sum + b.sum }), result: (a) => a },
});
const out = testJob(typed, [{ n: 1, ts: 0 }], { window: 'tumbling:1m' });
const sum: number = out.results[0]!.sum;
const rec: ResultRecord = out.results[0]!;
// @ts-expect-error the declarations are live: a result field has its type, not any
const wrong: string = out.results[0]!.sum;
export { sum, rec, job, wrong };
`,
  );
  writeFileSync(join(app, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', target: 'ES2022', strict: true, noEmit: true, allowJs: true, skipLibCheck: true, types: [] }, files: ['check.ts'] }));
  const r = await node([join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', 'tsconfig.json']).catch((e: { stdout: string; code: number }) => e);
  t.equal('code' in r ? r.code : 0, 0, `tsc finds the declarations${'stdout' in r && r.stdout ? `: ${r.stdout}` : ''}`);
});

t.test('a unit test of the module with tidemark/testing', async (t) => {
  writeFileSync(join(app, 'unit.mjs'), `import { testJob } from 'tidemark/testing';\nimport job from './job.mjs';\nconst recs = JSON.parse(process.argv[2]);\nprocess.stdout.write(JSON.stringify(testJob(job, recs)));\n`);
  const { stdout } = await node(['unit.mjs', JSON.stringify([{ at: T0, page: 'home', user: 'a' }, { at: T0 + 1000, page: 'home', user: 'a' }, { at: T0 + 2000, page: 'home', user: 'b' }, { at: T0, user: 'x' }])]);
  const out = JSON.parse(stdout) as { results: Array<Record<string, unknown>>; deadLetters: Array<{ reason: string }> };
  t.match(out.results, [{ key: 'page:home', clicks: 3, distinctUsers: 2, final: true }]);
  t.same(out.deadLetters.map((d) => d.reason), ['no_page'], 'its RejectRecord is the package\'s own class');
});

t.test('tidemark run --job-module into the JSONL, JetStream and NATS sinks', async (t) => {
  const payloads = [...clicks.map((c) => JSON.stringify(c)), JSON.stringify({ id: 'bad', at: T0, user: 'u1' })];
  await fillStream(nc, 'CLICKS', 'clicks', payloads);
  // Expected: per page and minute the clicks and distinct users; tumbling, no lateness: the firing
  // record is final, stamped with the first watermark (max time − 2 s) reaching the window's end.
  const windows = new Map<string, { key: string; start: number; clicks: number; users: Set<string>; wm?: number }>();
  let maxAt = -Infinity;
  for (const c of clicks) {
    const start = Math.floor(c.at / MIN) * MIN;
    const k = `page:${c.page}/${start}`;
    const e = windows.get(k) ?? { key: `page:${c.page}`, start, clicks: 0, users: new Set<string>() };
    e.clicks++;
    e.users.add(c.user);
    windows.set(k, e);
    maxAt = Math.max(maxAt, c.at);
    for (const w of windows.values()) if (w.wm === undefined && maxAt - 2000 >= w.start + MIN) w.wm = maxAt - 2000;
  }
  const expected = [...windows.values()].map((w) => ({
    id: `clicks/${w.key}/${w.start}/${w.start + MIN}/0`, job: 'clicks', key: w.key, window: { start: w.start, end: w.start + MIN },
    clicks: w.clicks, distinctUsers: w.users.size, revision: 0, final: true, watermark: w.wm ?? null,
  }));
  const viaNats: Array<{ id: string }> = [];
  const sub = nc.subscribe('clicks.results', { callback: (_e, m) => viaNats.push(m.json<{ id: string }>()) });
  await tidemark([
    'run', '--nats', nats.url, '--job-module', 'job.mjs', '--input-stream', 'CLICKS', '--input-subjects', 'clicks.>',
    '--sink', 'jsonl:out/results.jsonl', '--sink', 'jetstream:CLICK_RESULTS', '--sink', 'nats:clicks.results',
    '--dlq-sink', 'jsonl:out/dlq.jsonl', '--late-sink', 'jsonl:out/late.jsonl', '--state-dir', 'state', '--drain', '--log-level', 'warn',
  ]);
  await nc.flush();
  sub.unsubscribe();
  t.ok(expected.length > 10, `${expected.length} windows expected`);
  t.same(byId(readJsonl(join(app, 'out', 'results.jsonl')) as Array<{ id: string }>), byId(expected), 'jsonl: exactly the expected records');
  const stored = await readStream<{ id: string }>(nc, 'CLICK_RESULTS');
  t.ok(stored.every((s) => s.msgId === s.id), 'JetStream: Nats-Msg-Id is the record id');
  t.same(byId(stored.map(({ msgId: _m, ...r }) => r)), byId(expected), 'jetstream: exactly the expected records');
  t.same(byId(viaNats), byId(expected), 'nats: exactly the expected records');
  t.match(readJsonl(join(app, 'out', 'dlq.jsonl')), [{ reason: 'no_page', seq: payloads.length }], 'the click without a page is a dead letter with the module\'s reason');
  t.same(readJsonl(join(app, 'out', 'late.jsonl')), []);
});
