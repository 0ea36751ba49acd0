// Savepoints end to end against a real nats-server: a long-running `tidemark run` processes batch A,
// `tidemark checkpoint --name` takes a savepoint, `tidemark inspect` lists it, the job goes on with
// batch A2 and is stopped with SIGTERM; batch B is published; `tidemark run --drain --from-checkpoint`
// (by name, then by numeric id) rolls back to the savepoint and the sinks hold exactly what the
// reference model predicts for A + A2 + B: nothing missing, nothing twice. An unknown savepoint name or
// checkpoint id is refused with one line and a nonzero exit, touching neither output nor state.

import t from 'tap';
import { readFileSync, existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import type { ChildProcess } from 'node:child_process';
import { natsFixture, spawnCli, runCli, type CliResult } from '../helpers/nats.js';
import { genStream } from '../helpers/streams.js';
import { referenceRun, type RefConfig } from '../helpers/reference.js';

const { scratch, nats, nc, children } = await natsFixture(t, 'tidemark-savepoint-');

const enc = new TextEncoder();
const dec = new TextDecoder();

const JOB = 'sp';
const STREAM = 'IN_SP';
const SUBJECT = 'sp.in';
const SAVEPOINT = 'before-b';
const cfg: RefConfig = { job: JOB, window: { kind: 'tumbling', size: 60_000 }, maxOutOfOrderness: 5_000, lateness: 30_000, keys: { hashtags: true, all: true, keywords: [] }, emit: 'updates' };
const jobFlags = ['--window', 'tumbling:1m', '--max-out-of-orderness', '5s', '--allowed-lateness', '30s', '--keys', 'hashtags,all', '--emit', 'updates'];

// One seeded stream cut in three: A before the savepoint, A2 after it (processed by the live job and
// rolled back by the restore), B published only after the live job has stopped.
const payloads = genStream(77, { n: 1800, unit: 60_000, step: 2_000, maxOutOfOrderness: 5_000 });
const A = payloads.slice(0, 900);
const A2 = payloads.slice(900, 1200);
const B = payloads.slice(1200);

// Expectations, all from the independent reference model.
const liveA = referenceRun(A, cfg, false); // what the live job has emitted when the savepoint is taken
const liveA2 = referenceRun([...A, ...A2], cfg, false); // what it has emitted when it is stopped
const full = referenceRun(payloads, cfg, true); // a single --drain over everything

interface Rec {
  id: string;
  [k: string]: unknown;
}
const readJsonl = (path: string): Rec[] =>
  existsSync(path)
    ? readFileSync(path, 'utf8')
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Rec)
    : [];
const byId = <T extends { id: string }>(xs: readonly T[]): T[] => [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
/** Ids that occur more than once. */
const dupes = (xs: readonly { id: string }[]): string[] => {
  const n = new Map<string, number>();
  for (const x of xs) n.set(x.id, (n.get(x.id) ?? 0) + 1);
  return [...n].filter(([, c]) => c > 1).map(([id]) => id);
};
/** Dead letters reduced to id and sequence (the job shortens long payloads, the model does not). */
const deadView = (xs: ReadonlyArray<{ id: string; seq?: unknown }>): Array<{ id: string; seq: unknown }> => byId(xs.map((d) => ({ id: d.id, seq: d.seq })));

async function publish(batch: readonly string[]): Promise<void> {
  const js = nc.jetstream();
  for (let i = 0; i < batch.length; i += 300) await Promise.all(batch.slice(i, i + 300).map((p) => js.publish(SUBJECT, enc.encode(p))));
}

async function status(): Promise<{ inputSeq: number } | undefined> {
  try {
    const m = await nc.request(`tidemark.${JOB}.status`, enc.encode('{}'), { timeout: 2_000 });
    if (m.headers?.get('Nats-Service-Error')) return undefined;
    return JSON.parse(dec.decode(m.data)) as { inputSeq: number };
  } catch {
    return undefined;
  }
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, exited: () => CliResult | undefined, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const e = exited();
    if (e) throw new Error(`the job exited (${e.code}) while waiting for ${what}: ${e.stderr.slice(-800)}`);
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

const live = join(scratch.dir, 'live');
const stateDir = join(scratch.dir, 'state');
const sinkFlags = (dir: string): string[] => ['--sink', `jsonl:${dir}/results.jsonl`, '--late-sink', `jsonl:${dir}/late.jsonl`, '--dlq-sink', `jsonl:${dir}/dlq.jsonl`];
const runArgs = (dir: string, extra: string[]): string[] => [
  'run', '--nats', nats.url, '--job', JOB, '--input-stream', STREAM, '--input-subjects', 'sp.>', ...jobFlags, ...sinkFlags(dir),
  '--state-dir', stateDir, '--batch-size', '100', ...extra,
];
const inspectJson = async (): Promise<Array<{ id: number; seq: number; savepoint: string; problem: string; kind: string }>> => {
  const r = await runCli(['inspect', '--state-dir', stateDir, '--job', JOB, '--json']);
  if (r.code !== 0) throw new Error(`inspect --json failed (${r.code}): ${r.stderr}`);
  return JSON.parse(r.stdout) as Array<{ id: number; seq: number; savepoint: string; problem: string; kind: string }>;
};

let savepointId = -1;

t.test('the generated stream exercises what a savepoint must carry', async (t) => {
  t.ok(liveA.results.length > 20, `batch A fires windows before the savepoint (${liveA.results.length} results)`);
  t.ok(liveA2.results.length > liveA.results.length, `batch A2 emits results after the savepoint (${liveA2.results.length - liveA.results.length}), so the restore has output to roll back`);
  t.ok(full.results.length > liveA2.results.length, 'batch B and the end of input emit more');
  t.ok(liveA.late.length > 0 && full.late.length > liveA2.late.length, 'late records on both sides of the savepoint');
  t.ok(liveA.dead.length > 0 && full.dead.some((d) => d.seq > A.length + A2.length), 'dead letters on both sides of the savepoint');
  // A window that fired before the savepoint and emits again after the restore: its aggregate and
  // revision counter must cross the savepoint.
  const win = (r: { key: string; window: { start: number; end: number } }): string => `${r.key}/${r.window.start}/${r.window.end}`;
  const firedBefore = new Set(liveA.results.map(win));
  const crossing = full.results.filter((r) => firedBefore.has(win(r)) && !liveA.results.some((x) => x.id === r.id));
  t.ok(crossing.length > 0, `windows fired before the savepoint emit revisions after it (${crossing.length})`);
});

t.test('a live job takes a named savepoint, inspect lists it, SIGTERM stops it', async (t) => {
  await (await nc.jetstreamManager()).streams.add({ name: STREAM, subjects: ['sp.>'] });
  await publish(A);
  const run = spawnCli(runArgs(live, ['--checkpoint-interval', '200ms', '--log-level', 'warn']));
  children.add(run.child);
  let exited: CliResult | undefined;
  void run.done.then((r) => {
    exited = r;
    children.delete(run.child);
  });

  await until(`the job to read batch A (${A.length} messages)`, async () => ((await status())?.inputSeq === A.length ? true : undefined), () => exited);
  const st = await runCli(['status', '--nats', nats.url, '--job', JOB, '--json']);
  t.equal(st.code, 0, `status --json answers (${st.stderr})`);
  t.equal((JSON.parse(st.stdout) as { inputSeq: number }).inputSeq, A.length, 'status --json: input read up to the end of batch A');

  const cp = await runCli(['checkpoint', '--nats', nats.url, '--job', JOB, '--name', SAVEPOINT]);
  t.equal(cp.code, 0, `tidemark checkpoint exits 0 (${cp.stderr})`);
  const m = /^savepoint (\d+) "([^"]+)" written/.exec(cp.stdout);
  t.ok(m, `the answer names the savepoint's id and name: ${cp.stdout.trim()}`);
  savepointId = Number(m?.[1]);
  t.equal(m?.[2], SAVEPOINT, 'under the name asked for');
  t.ok(savepointId >= 1, 'the id is a checkpoint number');

  // The savepoint captured the sink at A's end: the results file then holds exactly the live model for A.
  t.same(byId(readJsonl(`${live}/results.jsonl`)), byId(liveA.results), 'results after batch A equal the model (no end of input)');

  // The job goes on after the savepoint.
  await publish(A2);
  await until('the job to read batch A2', async () => ((await status())?.inputSeq === A.length + A2.length ? true : undefined), () => exited);
  run.child.kill('SIGTERM');
  const r = await run.done;
  t.equal(r.code, 0, `SIGTERM: exit 0 (stderr: ${r.stderr.slice(-500)})`);
  t.same(byId(readJsonl(`${live}/results.jsonl`)), byId(liveA2.results), 'at stop the results equal the model for A + A2 (no end of input)');
  t.same(byId(readJsonl(`${live}/late.jsonl`)), byId(liveA2.late), 'and the late records too');

  const rows = await inspectJson();
  const sp = rows.find((row) => row.savepoint === SAVEPOINT);
  t.ok(sp, 'inspect --json lists the savepoint by name');
  t.equal(sp?.id, savepointId, 'with the id the checkpoint command answered');
  t.equal(sp?.seq, A.length, 'at the input sequence where batch A ends');
  t.equal(sp?.problem, '', 'and no problem');
  t.ok(Math.max(...rows.map((row) => row.id)) > savepointId, 'newer checkpoints exist (periodic and final): restoring the savepoint is not restoring the newest');
  t.ok(rows.some((row) => row.seq === A.length + A2.length), 'the final checkpoint covers A2');

  const table = await runCli(['inspect', '--state-dir', stateDir, '--job', JOB]);
  t.equal(table.code, 0, 'inspect exits 0');
  t.match(table.stdout, /^id\s+time\s+input seq\s+watermark\s+windows\s+bytes\s+kind\s+savepoint\s+problem$/m, 'inspect prints a table with a savepoint column');
  t.match(table.stdout, new RegExp(`^${savepointId}\\s+\\S+\\s+${A.length}\\s+.*\\s${SAVEPOINT}$`, 'm'), 'its row shows the savepoint id, input sequence and name');
});

t.test('--from-checkpoint with an unknown name or id: one line, exit 1, output and state untouched', async (t) => {
  const before = { results: readFileSync(`${live}/results.jsonl`), rows: await inspectJson() };
  const cases: Array<[string, RegExp]> = [
    ['no-such-savepoint', /^tidemark run: --from-checkpoint: no savepoint named "no-such-savepoint" \(tidemark inspect lists them\)$/],
    ['999999', /^tidemark run: --from-checkpoint: no checkpoint 999999 \(tidemark inspect lists them\)$/],
  ];
  for (const [ref, line] of cases) {
    const r = await runCli(runArgs(live, ['--drain', '--from-checkpoint', ref, '--log-level', 'warn']));
    t.equal(r.code, 1, `${ref}: exit 1`);
    const lines = r.stderr.split('\n').filter(Boolean);
    t.equal(lines.length, 1, `${ref}: exactly one line on stderr (${JSON.stringify(r.stderr)})`);
    t.match(lines[0] ?? '', line, `${ref}: the line says what was not found`);
    t.equal(r.stdout, '', `${ref}: nothing on stdout`);
  }
  t.ok(readFileSync(`${live}/results.jsonl`).equals(before.results), 'the results file is not truncated or written');
  t.same(await inspectJson(), before.rows, 'no checkpoint is written or pruned');
});

t.test('--drain --from-checkpoint NAME, same sinks: exactly the model for A + A2 + B', async (t) => {
  await publish(B);
  const r = await runCli(runArgs(live, ['--drain', '--from-checkpoint', SAVEPOINT, '--log-level', 'info']));
  t.equal(r.code, 0, `exit 0 (stderr tail: ${r.stderr.slice(-500)})`);
  t.match(r.stderr, new RegExp(`recovered from checkpoint ${savepointId} in \\d+ ms \\(\\d+ windows, resuming after input sequence ${A.length}\\)`), 'restored from the savepoint, not from the newest checkpoint');
  const results = readJsonl(`${live}/results.jsonl`);
  t.same(dupes(results), [], 'no result id twice (A2 output written before the stop was truncated away)');
  t.same(byId(results), byId(full.results), 'results equal the model for a single drain over A + A2 + B');
  const lateRecs = readJsonl(`${live}/late.jsonl`);
  t.same(dupes(lateRecs), [], 'no late id twice');
  t.same(byId(lateRecs), byId(full.late), 'late records equal the model');
  t.same(deadView(readJsonl(`${live}/dlq.jsonl`)), deadView(full.dead), 'dead letters equal the model');

  const rows = await inspectJson();
  t.equal(rows.find((row) => row.savepoint === SAVEPOINT)?.id, savepointId, 'the savepoint survives the pruning of a later run');
});

t.test('--drain --from-checkpoint ID, fresh sinks: exactly what the model emits after the savepoint', async (t) => {
  const fresh = join(scratch.dir, 'fresh');
  const drainedSize = statSync(`${live}/results.jsonl`).size;
  const r = await runCli(runArgs(fresh, ['--drain', '--from-checkpoint', String(savepointId), '--log-level', 'info']));
  t.equal(r.code, 0, `exit 0 (stderr tail: ${r.stderr.slice(-500)})`);
  t.match(r.stderr, new RegExp(`recovered from checkpoint ${savepointId} in \\d+ ms \\(\\d+ windows, resuming after input sequence ${A.length}\\)`), 'restored from the savepoint by its id, though a drained checkpoint is newer');
  const emittedBefore = new Set(liveA.results.map((x) => x.id));
  const lateBefore = new Set(liveA.late.map((x) => x.id));
  const results = readJsonl(`${fresh}/results.jsonl`);
  t.same(dupes(results), [], 'no result id twice');
  t.same(byId(results), byId(full.results.filter((x) => !emittedBefore.has(x.id))), 'results: the model for A + A2 + B minus what was emitted before the savepoint');
  t.same(byId(readJsonl(`${fresh}/late.jsonl`)), byId(full.late.filter((x) => !lateBefore.has(x.id))), 'late records: likewise');
  t.same(deadView(readJsonl(`${fresh}/dlq.jsonl`)), deadView(full.dead.filter((d) => d.seq > A.length)), 'dead letters: those after the savepoint');
  t.equal(statSync(`${live}/results.jsonl`).size, drainedSize, 'the sinks of the other run are not touched');
});
