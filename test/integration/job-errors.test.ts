// Bad records and bad code in a --job-module (issue 15, item 4), and the refusals at start: records
// that a user function cannot take are dead letters (`user_error`) and nothing else is lost; a throw
// in add / merge / result stops the job with one line (exit 1) and the fixed module resumes from the
// last checkpoint; a module that cannot run is refused in one line (exit 2).

import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { natsFixture, runCli, spawnCli } from '../helpers/nats.js';
import { fillStream, readJsonl, byId } from '../helpers/sinks.js';

const { scratch, nats, nc, children } = await natsFixture(t, 'tidemark-job-errors-');
const MIN = 60_000;
const T0 = 1_764_000_000_000;
const enc = new TextEncoder();

/** Writes a job module (a plain definition object) and returns its path. */
function moduleFile(name: string, body: string): string {
  const file = join(scratch.dir, `${name}.mjs`);
  writeFileSync(file, body);
  return file;
}

/** A counting job; `hooks` is spliced into the aggregate's functions to make them fail. */
const countingJob = (hooks: { decode?: string; eventTime?: string; keys?: string; add?: string; merge?: string; result?: string } = {}): string => `
const text = new TextDecoder();
export default {
  name: 'counting', window: 'tumbling:1m',
  decode: (b) => { const r = JSON.parse(text.decode(b)); ${hooks.decode ?? ''} return r; },
  eventTime: (r) => { ${hooks.eventTime ?? ''} return r.ts; },
  keys: (r) => { ${hooks.keys ?? ''} return [r.k]; },
  aggregate: {
    init: () => ({ n: 0, sum: 0 }),
    add: (a, r) => { ${hooks.add ?? ''} return { n: a.n + 1, sum: a.sum + r.v }; },
    merge: (a, b) => { ${hooks.merge ?? ''} return { n: a.n + b.n, sum: a.sum + b.sum }; },
    result: (a) => { ${hooks.result ?? ''} return { n: a.n, sum: a.sum }; },
  },
};
`;

interface Rec { id: string; ts: number; k: string; v: number }
const rec = (i: number, v = 1): Rec => ({ id: `r${i}`, ts: T0 + i * 2_000, k: `k${i % 3}`, v });

/** What the counting job emits for records in time order (tumbling 1m, bound 5s, no lateness). */
function expectedResults(job: string, recs: readonly Rec[]): Array<Record<string, unknown> & { id: string }> {
  const wins = new Map<string, { key: string; start: number; n: number; sum: number; wm?: number }>();
  let max = -Infinity;
  for (const r of recs) {
    const start = Math.floor(r.ts / MIN) * MIN;
    const w = wins.get(`${r.k}/${start}`) ?? { key: r.k, start, n: 0, sum: 0 };
    wins.set(`${r.k}/${start}`, { ...w, n: w.n + 1, sum: w.sum + r.v });
    max = Math.max(max, r.ts);
    for (const x of wins.values()) if (x.wm === undefined && max - 5_000 >= x.start + MIN) x.wm = max - 5_000;
  }
  return [...wins.values()].map((w) => ({ id: `${job}/${w.key}/${w.start}/${w.start + MIN}/0`, job, key: w.key, window: { start: w.start, end: w.start + MIN }, n: w.n, sum: w.sum, revision: 0, final: true, watermark: w.wm ?? null }));
}

const sinkFlags = (dir: string): string[] => ['--sink', `jsonl:${dir}/results.jsonl`, '--late-sink', `jsonl:${dir}/late.jsonl`, '--dlq-sink', `jsonl:${dir}/dlq.jsonl`, '--state-dir', join(dir, 'state')];
/** stderr without the JSON log lines: what a person reads. */
const plainLines = (stderr: string): string[] => stderr.split('\n').filter((l) => l.trim() !== '' && !l.startsWith('{'));

t.test('decode / eventTime / keys failures are dead letters with user_error and the message; nothing else is lost', async (t) => {
  const file = moduleFile('dead', countingJob({
    decode: "if (r.boom) throw new Error('cannot decode ' + r.id);",
    eventTime: "if (r.nan) return NaN;",
    keys: "if (r.badkey) return [42]; if (r.throwkey) throw new TypeError('no key for ' + r.id);",
  }));
  const good = Array.from({ length: 90 }, (_, i) => rec(i));
  const payloads: string[] = [];
  const bad: Array<{ seq: number; error: RegExp }> = [];
  good.forEach((r, i) => {
    payloads.push(JSON.stringify(r));
    if (i % 20 === 10) {
      const kind = (i / 10 - 1) / 2;
      const x = { ...r, id: `bad${i}` };
      const [extra, error] = ([
        [{ boom: true }, new RegExp(`^decode: cannot decode bad${i}$`)],
        [{ nan: true }, /^eventTime returned NaN, not a finite time/],
        [{ badkey: true }, /^keys returned 42, not a non-empty string$/],
        [{ throwkey: true }, new RegExp(`^eventTime/keys/id: no key for bad${i}$`)],
      ] as const)[kind % 4]!;
      payloads.push(JSON.stringify({ ...x, ...extra }));
      bad.push({ seq: payloads.length, error });
    }
  });
  payloads.push('{"not": "closed"');
  bad.push({ seq: payloads.length, error: /^decode: .*JSON/ });
  await fillStream(nc, 'DEAD_IN', 'deadin', payloads);
  const out = join(scratch.dir, 'dead');
  const r = await runCli(['run', '--nats', nats.url, '--job-module', file, '--job', 'dead', '--input-stream', 'DEAD_IN', '--input-subjects', 'deadin.>', ...sinkFlags(out), '--drain', '--log-level', 'warn']);
  t.equal(r.code, 0, `exit 0${r.code === 0 ? '' : `: ${r.stderr}`}`);
  const dead = readJsonl<{ id: string; reason: string; seq: number; error: string; payload: string }>(`${out}/dlq.jsonl`);
  t.same(dead.map((d) => d.seq), bad.map((b) => b.seq), 'every bad record, and only those, is a dead letter');
  for (const [i, d] of dead.entries()) {
    t.equal(d.reason, 'user_error');
    t.match(d.error, bad[i]!.error, `seq ${d.seq}: the function's message`);
    t.equal(d.payload, payloads[d.seq - 1], 'with the payload as published');
  }
  t.same(byId(readJsonl<{ id: string }>(`${out}/results.jsonl`)), byId(expectedResults('dead', good)), 'the good records: exactly their results');
});

const BATCH_A = Array.from({ length: 50 }, (_, i) => rec(i));
const POISON = rec(50, 13);
const BATCH_B = Array.from({ length: 60 }, (_, i) => rec(51 + i));

const failing: Array<{ fn: 'add' | 'merge' | 'result'; hooks: Parameters<typeof countingJob>[0]; line: RegExp }> = [
  { fn: 'add', hooks: { add: "if (r.v === 13) throw new Error('unlucky 13');" }, line: /^tidemark run: aggregate\.add threw \(key "k2", window \[1764000060000, 1764000120000\), record "r50"\): unlucky 13; fix the job module and run again: the last checkpoint is intact$/ },
  // Every record but the poison adds 1: an accumulator holding the 13 has sum − n = 12.
  { fn: 'merge', hooks: { merge: "if (a.sum - a.n === 12 || b.sum - b.n === 12) throw new Error('merging a 13');" }, line: /^tidemark run: aggregate\.merge threw \(key "k2", window \[1764000060000, 1764000120000\)(, record "r\d+")?\): merging a 13; fix the job module and run again: the last checkpoint is intact$/ },
  { fn: 'result', hooks: { result: "if (a.sum > a.n) throw new Error('cannot report a 13');" }, line: /^tidemark run: aggregate\.result threw \(key "k2", window \[1764000060000, 1764000120000\)\): cannot report a 13; fix the job module and run again: the last checkpoint is intact$/ },
];

for (const { fn, hooks, line } of failing) {
  t.test(`${fn} throws: one line naming it, the key, the window (and record), exit 1; the fixed module resumes from the last checkpoint`, async (t) => {
    const job = `fail-${fn}`;
    const stream = `FAIL_${fn.toUpperCase()}`;
    const subject = `fail${fn}`;
    const out = join(scratch.dir, job);
    await fillStream(nc, stream, subject, BATCH_A.map((r) => JSON.stringify(r)));
    const args = (file: string): string[] => ['run', '--nats', nats.url, '--job-module', file, '--job', job, '--input-stream', stream, '--input-subjects', `${subject}.>`, ...sinkFlags(out), '--checkpoint-interval', '0'];
    const broken = spawnCli([...args(moduleFile(`${job}-broken`, countingJob(hooks))), '--log-level', 'error']);
    children.add(broken.child);
    // Once batch A is in, a savepoint is the last checkpoint before the poison record.
    for (let seen = 0; seen < BATCH_A.length; ) {
      const s = await runCli(['status', '--nats', nats.url, '--job', job, '--json']);
      seen = s.code === 0 ? (JSON.parse(s.stdout) as { inputSeq: number }).inputSeq : 0;
      if (seen < BATCH_A.length) await new Promise((r) => setTimeout(r, 100));
    }
    const cp = await runCli(['checkpoint', '--nats', nats.url, '--job', job]);
    t.equal(cp.code, 0, `savepoint taken${cp.code === 0 ? '' : `: ${cp.stderr}`}`);
    const js = nc.jetstream();
    for (const r of [POISON, ...BATCH_B]) await js.publish(`${subject}.in`, enc.encode(JSON.stringify(r)));
    const r = await broken.done;
    t.equal(r.code, 1, 'exit 1');
    t.same(plainLines(r.stderr).length, 1, 'one line');
    t.match(plainLines(r.stderr)[0], line);

    const fixed = await runCli([...args(moduleFile(`${job}-fixed`, countingJob())), '--drain', '--log-level', 'info']);
    t.equal(fixed.code, 0, `the fixed module runs${fixed.code === 0 ? '' : `: ${fixed.stderr}`}`);
    t.match(fixed.stderr, new RegExp(`recovered from checkpoint \\d+ in \\d+ ms \\(\\d+ windows, resuming after input sequence ${BATCH_A.length}\\)`), 'from the checkpoint before the poison record');
    t.same(byId(readJsonl<{ id: string }>(`${out}/results.jsonl`)), byId(expectedResults(job, [...BATCH_A, POISON, ...BATCH_B])), 'the sink holds exactly the results of a run without the bug');
  });
}

t.test('refused at start: one line, exit 2', async (t) => {
  const def = (aggregate: string, extra = ''): string => `export default { name: 'r', window: 'tumbling:1m', eventTime: (r) => r.ts, keys: () => ['*'], aggregate: ${aggregate} ${extra} };`;
  const plain = `{ init: () => ({ n: 0 }), add: (a) => ({ n: a.n + 1 }), merge: (a, b) => ({ n: a.n + b.n }), result: (a) => ({ n: a.n }) }`;
  const cases: Array<[string, string[], RegExp]> = [
    ['--keys with a module', [moduleFile('ok', def(plain)), '--keys', 'hashtags'], /^tidemark run: --keys: is an option of the built-in sentiment job; a --job-module computes its own keys$/],
    ['a result field named window', [moduleFile('window', def(`{ init: () => ({ n: 0 }), add: (a) => a, merge: (a) => a, result: (a) => ({ n: a.n, window: 'x' }) }`))], /aggregate\.result returns "window", which the engine sets on every result .*; rename it$/],
    ['an accumulator with a Map', [moduleFile('map', def(`{ init: () => ({ n: 0, seen: { ids: new Map() } }), add: (a) => a, merge: (a) => a, result: (a) => ({ n: a.n }) }`))], /the accumulator cannot be checkpointed: init\(\)\.seen\.ids is a Map/],
    ['a missing file', [join(scratch.dir, 'nope.mjs')], /^tidemark run: --job-module: no file .*nope\.mjs$/],
    ['no default export', [moduleFile('nodefault', 'export const job = {};')], /has no default export; export default defineJob\(\{ … \}\)$/],
    ['a TypeScript file', [join(scratch.dir, 'job.ts')], /--job-module: ".*job\.ts" is not accepted; an ES module file ending in \.js or \.mjs \(compile TypeScript first\)$/],
    ['a module that throws on import', [moduleFile('throws', "throw new Error('config missing');")], /could not be loaded: config missing$/],
    ['a definition without aggregate.merge', [moduleFile('nomerge', def(`{ init: () => ({}), add: (a) => a, result: () => ({}) }`))], /"aggregate\.merge" must be a function$/],
  ];
  for (const [what, flags, re] of cases) {
    const [file, ...rest] = flags;
    const r = await runCli(['run', '--nats', nats.url, '--job-module', file!, ...rest, '--state-dir', join(scratch.dir, 'refused')]);
    t.equal(r.code, 2, `${what}: exit 2`);
    t.equal(r.stderr.trim().split('\n').length, 1, `${what}: one line`);
    t.match(r.stderr.trim(), re, what);
  }
});
