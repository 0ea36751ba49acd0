// Damaged state directories, as a disk, a careless operator or a crash leaves them: the state of a
// real job (three runs against a real nats-server, each SIGKILLed right after a checkpoint, so
// LevelDB holds table files, a MANIFEST and a write-ahead log with the newest checkpoints) is copied
// once per case and damaged in one way. Each restarted `tidemark run --drain` must either
//   (a) fall back to the newest checkpoint that verifies, naming the newer ones and what is wrong
//       with them (or restore the newest when the damage hit nothing it needs), and then produce
//       exactly the records of the reference model; or
//   (b) refuse with one line that says what is damaged and the ways out, leaving the sinks as they
//       were; `tidemark inspect` then reports the damage too, `tidemark inspect --repair` repairs
//       the files with LevelDB's repair and the next run falls back as in (a).
// Never a raw LevelDB error, never the newest checkpoint lost without a word, never a wrong record.

import t, { type Test } from 'tap';
import { cpSync, rmSync, readFileSync, readdirSync, statSync, truncateSync, unlinkSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { natsFixture, spawnCli, type CliResult } from '../helpers/nats.js';
import { subjectsFor } from '../../src/io/subjects.js';
import { genStream } from '../helpers/streams.js';
import { referenceRun, type RefConfig } from '../helpers/reference.js';
import { checkpointDir } from '../../src/actors/job.js';

const { scratch, nats, nc, children } = await natsFixture(t, 'tidemark-damaged-');

/** Runs the CLI; a run that has not ended after `ms` is killed and fails its case (a hang is a defect too). */
async function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv } = {}, ms = 90_000): Promise<CliResult & { hung?: boolean }> {
  const run = spawnCli(args, opts);
  children.add(run.child);
  let hung = false;
  const timer = setTimeout(() => {
    hung = true;
    run.child.kill('SIGKILL');
  }, ms);
  const r = await run.done;
  clearTimeout(timer);
  children.delete(run.child);
  if (hung) throw new Error(`tidemark ${args[0]} did not end within ${ms} ms (stderr tail: ${r.stderr.slice(-800)})`);
  return r;
}

const JOB = 'dmg';
const STREAM = 'IN_DMG';
const cfg: RefConfig = { job: JOB, window: { kind: 'tumbling', size: 60_000 }, maxOutOfOrderness: 5_000, lateness: 30_000, keys: { hashtags: true, all: true, keywords: [] }, emit: 'updates' };
const payloads = genStream(31, { n: 4000, unit: 60_000, step: 2_000, maxOutOfOrderness: 5_000 });
const expected = referenceRun(payloads, cfg);

const enc = new TextEncoder();
await (await nc.jetstreamManager()).streams.add({ name: STREAM, subjects: [`${JOB}.>`] });
const js = nc.jetstream();
for (let i = 0; i < payloads.length; i += 500) await Promise.all(payloads.slice(i, i + 500).map((p) => js.publish(`${JOB}.in`, enc.encode(p))));

const args = (dir: string): string[] => [
  'run', '--nats', nats.url, '--job', JOB, '--input-stream', STREAM, '--input-subjects', `${JOB}.>`,
  '--window', 'tumbling:1m', '--max-out-of-orderness', '5s', '--allowed-lateness', '30s', '--keys', 'hashtags,all',
  '--sink', `jsonl:${dir}/results.jsonl`, '--late-sink', `jsonl:${dir}/late.jsonl`, '--dlq-sink', `jsonl:${dir}/dlq.jsonl`,
  '--state-dir', join(dir, 'state'), '--drain', '--batch-size', '20', '--checkpoint-interval', '20ms', '--retain', '4',
];
const inspect = (dir: string, extra: string[] = []): ReturnType<typeof runCli> => runCli(['inspect', '--state-dir', join(dir, 'state'), '--job', JOB, ...extra]);

interface Rec {
  id: string;
}
const readJsonl = (path: string): Rec[] => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Rec) : []);
const byId = <T extends Rec>(xs: readonly T[]): T[] => [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
const deadView = (xs: ReadonlyArray<Rec & { seq?: unknown }>): Array<{ id: string; seq: unknown }> => byId(xs.map((d) => ({ id: d.id, seq: d.seq })));

// ---- the base state: three runs, each killed right after its 3rd checkpoint. The sinks' progress
// in a checkpoint is keyed by the sink (its file's path), so every case runs at the same path `work`
// on a fresh copy of the base state.
const work = join(scratch.dir, 'work');
const saved = join(scratch.dir, 'base');
for (let run = 0; run < 3; run++) {
  const r = await runCli(args(work), { env: { TIDEMARK_FAULT: 'checkpoint-after-write:3' } });
  if (r.signal !== 'SIGKILL') throw new Error(`base run ${run}: expected the fault to kill the job, got ${r.code}: ${r.stderr.slice(-800)}`);
}
// The killed runs leave their job lock behind; its holder is provably dead only on its own state
// directory, so the copies below would wait out the lock's expiry: an operator's purge instead.
await (await nc.jetstream().views.kv(subjectsFor(JOB).lockBucket)).purge(JOB);
const levelDir = (dir: string): string => checkpointDir(join(dir, 'state'), JOB);
cpSync(work, saved, { recursive: true });
const baseFiles = readdirSync(levelDir(saved));
/** A fresh copy of the base state at `work`. */
const freshWork = (): string => {
  rmSync(work, { recursive: true, force: true });
  cpSync(saved, work, { recursive: true });
  return work;
};
/** The newest checkpoint of the base state, read on a throwaway copy (opening LevelDB rewrites its files). */
const newest = await (async () => {
  const probe = freshWork();
  const r = await inspect(probe, ['--json']);
  const rows = JSON.parse(r.stdout) as Array<{ id: number; problem: string }>;
  return { id: rows[0]!.id, rows };
})();

// ---- ways to damage a LevelDB directory
const files = (re: RegExp): string[] => baseFiles.filter((f) => re.test(f)).sort();
const newestOf = (re: RegExp): string => files(re).at(-1)!;
const oldestOf = (re: RegExp): string => files(re)[0]!;
const flip = (path: string): void => {
  const b = readFileSync(path);
  for (const at of [0.3, 0.5, 0.7]) b[Math.floor(b.length * at)] ^= 0x5a;
  writeFileSync(path, b);
};
const truncate = (path: string): void => truncateSync(path, Math.floor(statSync(path).size / 2));
const zero = (path: string): void => writeFileSync(path, Buffer.alloc(statSync(path).size));

type Outcome = 'fallback' | 'refuse' | 'any';
const cases: Array<{ name: string; file: () => string; damage: (path: string) => void; expect: Outcome }> = [
  { name: 'write-ahead log truncated', file: () => newestOf(/\.log$/), damage: truncate, expect: 'fallback' },
  { name: 'write-ahead log bit-flipped', file: () => newestOf(/\.log$/), damage: flip, expect: 'fallback' },
  { name: 'write-ahead log zeroed', file: () => newestOf(/\.log$/), damage: zero, expect: 'fallback' },
  { name: 'newest table file truncated', file: () => newestOf(/\.ldb$/), damage: truncate, expect: 'refuse' },
  { name: 'newest table file bit-flipped', file: () => newestOf(/\.ldb$/), damage: flip, expect: 'any' },
  { name: 'oldest table file bit-flipped', file: () => oldestOf(/\.ldb$/), damage: flip, expect: 'any' },
  { name: 'newest table file zeroed', file: () => newestOf(/\.ldb$/), damage: zero, expect: 'refuse' },
  { name: 'newest table file deleted', file: () => newestOf(/\.ldb$/), damage: unlinkSync, expect: 'refuse' },
  { name: 'MANIFEST truncated', file: () => newestOf(/^MANIFEST-/), damage: truncate, expect: 'refuse' },
  { name: 'MANIFEST bit-flipped', file: () => newestOf(/^MANIFEST-/), damage: flip, expect: 'refuse' },
  { name: 'MANIFEST zeroed', file: () => newestOf(/^MANIFEST-/), damage: zero, expect: 'refuse' },
  { name: 'CURRENT truncated', file: () => 'CURRENT', damage: (p) => truncateSync(p, 0), expect: 'refuse' },
  { name: 'CURRENT bit-flipped', file: () => 'CURRENT', damage: flip, expect: 'refuse' },
  { name: 'CURRENT deleted', file: () => 'CURRENT', damage: unlinkSync, expect: 'refuse' },
];

t.test('the base state is what the cases need', async (t) => {
  t.ok(files(/\.ldb$/).length >= 2, `LevelDB holds table files (${baseFiles.join(' ')})`);
  t.ok(files(/\.log$/).length >= 1 && statSync(join(levelDir(saved), newestOf(/\.log$/))).size > 0, 'and a write-ahead log with the newest checkpoints');
  t.ok(newest.rows.length >= 4 && newest.rows.every((r) => r.problem === ''), `undamaged, every checkpoint verifies (${newest.rows.map((r) => r.id).join(', ')})`);
  t.ok(readJsonl(join(saved, 'results.jsonl')).length < expected.results.length, 'the killed runs have not produced everything yet');
});

/** Record-by-record equality, reported as the records missing and the records wrong or extra (a full diff of thousands is slow). */
function sameRecords(t: Test, actual: readonly object[], expected: readonly object[], label: string): void {
  const a = new Set(actual.map((r) => JSON.stringify(r)));
  const e = new Set(expected.map((r) => JSON.stringify(r)));
  const missing = [...e].filter((x) => !a.has(x));
  const extra = [...a].filter((x) => !e.has(x));
  t.ok(actual.length === expected.length && missing.length === 0 && extra.length === 0, `${label} (${actual.length} of ${expected.length}; missing ${missing.length}: ${missing.slice(0, 2).join(' ')}; wrong or extra ${extra.length}: ${extra.slice(0, 2).join(' ')})`);
}

/** A line that is a raw library error rather than Tidemark's own words. */
const raw = /^\s+at |^(Error|ModuleError|LevelError)\b|^tidemark run: (Corruption|IO error|Invalid argument|Database failed)/m;

/** (a): the run finished and, if it did not restore the newest checkpoint, named it and what is wrong with it. */
function assertFallback(t: Test, r: CliResult, dir: string): void {
  t.equal(r.code, 0, `the run finishes (stderr tail: ${r.stderr.slice(-600)})`);
  t.notMatch(r.stderr, raw, 'no raw library error');
  const restored = /recovered from checkpoint (\d+)/.exec(r.stderr);
  t.ok(restored, 'a checkpoint is restored');
  if (Number(restored?.[1]) !== newest.id) {
    t.match(r.stderr, new RegExp(`checkpoint ${newest.id} is unusable \\([^)]+`), `the newest checkpoint ${newest.id} is named with what is wrong with it`);
    t.match(r.stderr, new RegExp(`falling back to checkpoint ${restored?.[1]}`), 'and the fallback is named');
  }
  sameRecords(t, byId(readJsonl(join(dir, 'results.jsonl'))), byId(expected.results), 'results: exactly the model');
  sameRecords(t, byId(readJsonl(join(dir, 'late.jsonl'))), byId(expected.late), 'late records: exactly the model');
  sameRecords(t, deadView(readJsonl(join(dir, 'dlq.jsonl'))), deadView(expected.dead), 'dead letters: exactly the model');
}

// DAMAGE_ONLY=<case name with dashes> runs the cases whose name contains it (while working on one).
for (const c of cases.filter((x) => !process.env.DAMAGE_ONLY || x.name.replace(/\W+/g, '-').includes(process.env.DAMAGE_ONLY))) {
  t.test(`${c.name}: ${c.expect === 'any' ? 'fallback or a clear refusal' : c.expect === 'fallback' ? 'falls back, results exact' : 'a clear refusal, then --repair and a fallback'}`, async (t) => {
    const dir = freshWork();
    c.damage(join(levelDir(dir), c.file()));
    const before = readFileSync(join(dir, 'results.jsonl'));
    const r = await runCli(args(dir));
    const outcome = r.code === 0 ? 'fallback' : 'refuse';
    if (c.expect !== 'any') t.equal(outcome, c.expect, `${c.expect === 'fallback' ? 'falls back' : 'refuses'} (exit ${r.code}; stderr tail: ${r.stderr.slice(-400)})`);
    if (outcome === 'fallback') {
      assertFallback(t, r, dir);
      return;
    }
    t.equal(r.code, 1, 'refused: exit 1');
    t.notMatch(r.stderr, raw, `no raw library error (${r.stderr.slice(0, 300)})`);
    // Log lines (pino JSON, e.g. taking over the lock of the killed run) may come first; the refusal is one line.
    const lines = r.stderr.split('\n').filter((l) => l !== '' && !l.startsWith('{'));
    t.equal(lines.length, 1, 'one line');
    t.match(lines[0], /damaged/, 'says the state is damaged');
    t.match(lines[0], /inspect --repair --state-dir \S+ --job dmg/, 'offers the repair, as a command to run');
    t.match(lines[0], /--reset-state/, 'offers --reset-state');
    t.match(lines[0], /No copy of the checkpoints is kept in NATS/, 'says plainly whether a copy exists elsewhere');
    t.ok(readFileSync(join(dir, 'results.jsonl')).equals(before), 'the sinks are left as they were');

    const seen = await inspect(dir);
    t.notMatch(seen.stderr + seen.stdout, raw, 'inspect: no raw library error');
    t.match(seen.stderr + seen.stdout, /damaged|unusable|cannot read/, `inspect reports the damage (${(seen.stderr + seen.stdout).slice(0, 300)})`);
    t.notOk(seen.code === 0 && !/unusable|cannot read|damaged/.test(seen.stdout), 'inspect lists no damaged checkpoint as fine');

    const repaired = await inspect(dir, ['--repair']);
    t.equal(repaired.code, 0, `inspect --repair exits 0 (${repaired.stderr.slice(-400)})`);
    t.match(repaired.stderr, /repaired .* with LevelDB's repair; the files as they were are kept in \S+damaged-/, 'says what it did and where the copy is');
    t.match(repaired.stdout, /^id\s+time\s+input seq/m, 'and lists the checkpoints');
    assertFallback(t, await runCli(args(dir)), dir);
  });
}

t.test('--reset-state gets past state too damaged to open', async (t) => {
  const dir = freshWork();
  zero(join(levelDir(dir), newestOf(/^MANIFEST-/)));
  const r = await runCli([...args(dir), '--reset-state']);
  t.equal(r.code, 0, `exit 0 (${r.stderr.slice(-400)})`);
  t.match(r.stderr, /state reset/);
  sameRecords(t, byId(readJsonl(join(dir, 'results.jsonl'))), byId(expected.results), 'results: exactly the model, from the beginning of the input');
});
