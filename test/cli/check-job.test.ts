// `tidemark check-job` as a child process: each broken law of a job module is found, with its
// smallest counter-example printed and exit 1; sound jobs (the examples, sentiment) pass, exit 0.

import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { runCli, scratchDir } from '../helpers/nats.js';

const scratch = scratchDir('tidemark-check-job-');
t.teardown(() => scratch.remove());

/** A job module (a plain definition object, no import) with the given aggregate source. */
function jobModule(name: string, aggregate: string, extra = 'export const arbitrary = (fc) => fc.record({ id: fc.string({ minLength: 1 }), ts: fc.nat(), region: fc.constantFrom("eu", "us"), v: fc.integer({ min: 0, max: 100 }) });'): string {
  const file = join(scratch.dir, `${name}.mjs`);
  writeFileSync(file, `export default { name: ${JSON.stringify(name)}, eventTime: (r) => r.ts, keys: (r) => [r.region], aggregate: ${aggregate} };\n${extra}\n`);
  return file;
}

const sound = `{ init: () => ({ n: 0, total: 0 }), add: (a, r) => ({ n: a.n + 1, total: a.total + r.v }), merge: (a, b) => ({ n: a.n + b.n, total: a.total + b.total }), result: (a) => ({ n: a.n, total: a.total }) }`;

/** The lines of one law's report, from its FAIL line to the next law. */
function failure(stdout: string, law: RegExp): string {
  const lines = stdout.split('\n');
  const i = lines.findIndex((l) => /^\s+FAIL/.test(l) && law.test(l));
  if (i < 0) return '';
  const j = lines.findIndex((l, k) => k > i && /^\s+(ok|FAIL)\s/.test(l));
  return lines.slice(i, j < 0 ? undefined : j).join('\n');
}

const check = (args: string[]) => runCli(['check-job', ...args, '--runs', '100', '--seed', '42']);

t.test('a non-associative merge: both merge laws fail with a shrunk counter-example', async (t) => {
  const file = jobModule('minus', `{ init: () => ({ total: 0 }), add: (a, r) => ({ total: a.total + r.v }), merge: (a, b) => ({ total: a.total - b.total }), result: (a) => ({ total: a.total }) }`);
  const r = await check([file]);
  t.equal(r.code, 1, r.code === 1 ? 'exit 1' : r.stdout + r.stderr);
  const assoc = failure(r.stdout, /associative/);
  t.match(assoc, /merge\(merge\(a, b\), c\) = \{ total: -?\d+ \}, merge\(a, merge\(b, c\)\) = \{ total: -?\d+ \}/);
  t.match(assoc, /smallest counter-example \(\d+ records?, after \d+ shrinks\):\n\s+records\[0\] = \{ id: /);
  t.match(failure(r.stdout, /split halves/), /split at \d+ of \d+: merge\(fold\(records\[0\.\.\d+\)\), fold\(records\[\d+\.\.\d+\)\)\) = \{ total: -?\d+ \}, but add one by one gives/);
  t.match(r.stdout, /^  ok    the accumulator survives/m, 'the laws it keeps pass');
  t.match(r.stdout, /2 of 5 laws failed \(replay with --seed 42\)/);
});

t.test('an accumulator holding a Map: the round trip fails with the path to the Map', async (t) => {
  const file = jobModule(
    'regions',
    `{ init: () => ({ n: 0, regions: null }),
       add: (a, r) => ({ n: a.n + 1, regions: new Map([...(a.regions ?? []), [r.region, ((a.regions && a.regions.get(r.region)) ?? 0) + 1]]) }),
       merge: (a, b) => { const m = new Map(a.regions ?? []); for (const [k, v] of b.regions ?? []) m.set(k, (m.get(k) ?? 0) + v); return { n: a.n + b.n, regions: a.regions || b.regions ? m : null }; },
       result: (a) => ({ n: a.n }) }`,
  );
  const r = await check([file]);
  t.equal(r.code, 1, r.code === 1 ? 'exit 1' : r.stdout + r.stderr);
  const f = failure(r.stdout, /msgpack round trip/);
  t.match(f, /fold\(records\[0\.\.1\)\): acc\.regions is a Map \(only plain objects, arrays, strings, finite numbers, booleans and null are checkpointed\); accumulator = \{ n: 1, regions: Map\(1\) \{ '(eu|us)' => 1 \} \}/);
  t.match(f, /smallest counter-example \(1 record,/, 'shrunk to a single record');
});

t.test('a Map in init() is refused before any law runs: one line with the path, exit 2', async (t) => {
  const file = jobModule('initmap', `{ init: () => ({ regions: new Map() }), add: (a) => a, merge: (a) => a, result: () => ({}) }`);
  const r = await check([file]);
  t.equal(r.code, 2);
  t.match(r.stderr, /the accumulator cannot be checkpointed: init\(\)\.regions is a Map/);
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
});

t.test('a result that throws: the throw, where, and the smallest record that causes it', async (t) => {
  const file = jobModule('hot', `{ init: () => ({ max: 0 }), add: (a, r) => ({ max: Math.max(a.max, r.v) }), merge: (a, b) => ({ max: Math.max(a.max, b.max) }), result: (a) => { if (a.max > 90) throw new Error('too hot: ' + a.max); return { max: a.max }; } }`);
  const r = await check([file]);
  t.equal(r.code, 1, r.code === 1 ? 'exit 1' : r.stdout + r.stderr);
  const f = failure(r.stdout, /result never throws/);
  t.match(f, /result\(fold\(records\[0\.\.1\)\)\) threw: too hot: 91/, 'shrunk to the smallest value that throws');
  t.match(f, /records\[0\] = \{ id: '.+', ts: 0, region: 'eu', v: 91 \}/);
});

t.test('a merge that mutates its first argument', async (t) => {
  const file = jobModule('inplace', `{ init: () => ({ n: 0 }), add: (a, r) => ({ n: a.n + 1 }), merge: (a, b) => { a.n += b.n; return a; }, result: (a) => ({ n: a.n }) }`);
  const r = await check([file]);
  t.equal(r.code, 1, r.code === 1 ? 'exit 1' : r.stdout + r.stderr);
  t.match(r.stdout, /1 of 5 laws failed/, 'only the mutation law: the values it computes are right');
  t.match(failure(r.stdout, /do not mutate/), /merge\(fold\(records\[0\.\.0\)\), fold\(records\[0\.\.1\)\)\) changed its first argument: before \{ n: 0 \}, after \{ n: 1 \}/);
});

t.test('an add that mutates the record it is given', async (t) => {
  const file = jobModule('stamp', `{ init: () => ({ n: 0 }), add: (a, r) => { r.seen = true; return { n: a.n + 1 }; }, merge: (a, b) => ({ n: a.n + b.n }), result: (a) => ({ n: a.n }) }`);
  const r = await check([file]);
  t.equal(r.code, 1, r.code === 1 ? 'exit 1' : r.stdout + r.stderr);
  t.match(failure(r.stdout, /do not mutate/), /add\(acc, records\[0\]\) changed the record/);
});

t.test('records: from "samples", from --samples FILE.jsonl, or a one-line refusal', async (t) => {
  const withSamples = jobModule('sampled', sound, 'export const samples = [{ id: "a", ts: 1, region: "eu", v: 3 }, { id: "b", ts: 2, region: "us", v: 4 }];');
  let r = await check([withSamples]);
  t.equal(r.code, 0, r.code === 0 ? 'exit 0' : r.stdout + r.stderr);
  t.match(r.stdout, /records from its "samples" export \(2 records\)/);

  const bare = jobModule('bare', sound, '');
  r = await check([bare]);
  t.equal(r.code, 2);
  t.match(r.stderr, /--samples: required: .*bare\.mjs exports neither "arbitrary" .* nor "samples" .*; export one, or give --samples FILE\.jsonl/);
  t.equal(r.stderr.trim().split('\n').length, 1, 'one line');

  const jsonl = join(scratch.dir, 'records.jsonl');
  writeFileSync(jsonl, ['{"id":"a","ts":1,"region":"eu","v":3}', 'not json', '{"id":"b","ts":2,"region":"us","v":5}', ''].join('\n'));
  r = await check([bare, '--samples', jsonl]);
  t.equal(r.code, 0, r.code === 0 ? 'exit 0' : r.stdout + r.stderr);
  t.match(r.stdout, /bare\.mjs exports neither .* using the records of --samples/, 'says where the records come from');
  t.match(r.stdout, /1 lines of .*records\.jsonl were rejected by the job's decode/);
  t.match(r.stdout, /5 laws passed/);

  r = await check([bare, '--samples', join(scratch.dir, 'missing.jsonl')]);
  t.equal(r.code, 2);
  t.match(r.stderr, /--samples: cannot read/);

  const badArb = jobModule('badarb', sound, 'export const arbitrary = [1, 2];');
  r = await check([badArb]);
  t.equal(r.code, 2);
  t.match(r.stderr, /the "arbitrary" export must be a fast-check Arbitrary/);
});

t.test('the examples and the sentiment job keep every law', async (t) => {
  for (const args of [['examples/orders/job.mjs'], ['examples/sensors/job.mjs'], ['--builtin', 'sentiment'], ['--builtin', 'sentiment', '--keys', 'keyword:nats,all']]) {
    const r = await check(args);
    t.equal(r.code, 0, `${args.join(' ')} exits 0${r.code === 0 ? '' : `: ${r.stdout}${r.stderr}`}`);
    t.match(r.stdout, /^5 laws passed$/m);
    t.equal((r.stdout.match(/^ {2}ok {4}/gm) ?? []).length, 5, 'five laws, each ok');
  }
});

t.test('usage errors: one line, exit 2', async (t) => {
  const cases: Array<[string[], RegExp]> = [
    [[], /FILE: required; a job module/],
    [[join(scratch.dir, 'nope.mjs')], /job module: no file/],
    [['--builtin', 'orders'], /--builtin: "orders" is not accepted; sentiment/],
    [['examples/orders/job.mjs', '--keys', 'all'], /--keys: is an option of the built-in sentiment job/],
    [['examples/orders/job.mjs', '--runs', 'many'], /--runs: "many" is not accepted/],
  ];
  for (const [args, re] of cases) {
    const r = await runCli(['check-job', ...args]);
    t.equal(r.code, 2, args.join(' '));
    t.match(r.stderr, re);
    t.equal(r.stderr.trim().split('\n').length, 1, 'one line');
  }
  const h = await runCli(['check-job', '--help']);
  t.equal(h.code, 0);
  t.match(h.stdout, /--samples FILE/);
});
