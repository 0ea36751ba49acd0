// Soak test of recovery after kill -9: `tidemark run --drain` (the built CLI) on a real
// nats-server, with a LevelDB state directory and a `jetstream:` result sink, is SIGKILLed after a
// random delay again and again and restarted on the same state each time, for --kills N kills. The
// input is a series of generated streams (rounds; a new one when a round's job has drained its
// input); every round's results are checked record by record against the independent reference
// model of test/helpers/reference.ts. Exit 0 only when every record is exact and none is twice.
//
//   npm run soak -- --kills 1000

import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { connect } from 'nats';
import { scratchDir, startNats } from '../test/helpers/nats.js';
import { fillStream, readJsonl, readStream } from '../test/helpers/sinks.js';
import { killLoop } from '../test/helpers/kill-loop.js';
import { genStream, Rng } from '../test/helpers/streams.js';
import { Worker } from 'node:worker_threads';
import type { RefConfig, Result, Late, Dead } from '../test/helpers/reference.js';

interface Options { kills: number; posts: number; minDelayMs: number; maxDelayMs: number; seed: number }

const USAGE = `Usage: npm run soak -- --kills N [--posts N] [--min-delay MS] [--max-delay MS] [--seed N]

  --kills N       SIGKILLs to deliver (default 1000)
  --posts N       posts per generated input (round) (default 4000)
  --min-delay MS  shortest time from a run's start-up line to its kill (default 300; one kill
                  in five is instead 50-900 ms after the spawn, during start-up and recovery)
  --max-delay MS  longest (default 1000)
  --seed N        seed of the inputs and the delays (default 1)`;

function parseArgs(argv: string[]): Options {
  const o: Options = { kills: 1000, posts: 4000, minDelayMs: 300, maxDelayMs: 1000, seed: 1 };
  const flags: Record<string, keyof Options> = { '--kills': 'kills', '--posts': 'posts', '--min-delay': 'minDelayMs', '--max-delay': 'maxDelayMs', '--seed': 'seed' };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help') {
      console.log(USAGE);
      process.exit(0);
    }
    const key = flags[a];
    if (!key) fail(`soak: unknown option ${a}; accepted: ${Object.keys(flags).join(', ')}, --help`);
    const v = argv[++i];
    if (v === undefined || !/^\d+$/.test(v) || (key !== 'seed' && Number(v) < 1)) fail(`soak: ${a} takes a whole number${key === 'seed' ? '' : ' ≥ 1'} (got ${v ?? 'nothing'})`);
    o[key] = Number(v);
  }
  if (o.minDelayMs > o.maxDelayMs) fail(`soak: --min-delay (${o.minDelayMs}) must not exceed --max-delay (${o.maxDelayMs})`);
  return o;
}

function fail(msg: string): never {
  console.error(msg);
  process.exit(2);
}

/** Two configurations, alternating by round: tumbling windows with updates, sessions in final mode. */
const CONFIGS: Array<{ cfg: Omit<RefConfig, 'job'>; flags: string[] }> = [
  {
    cfg: { window: { kind: 'tumbling', size: 60_000 }, maxOutOfOrderness: 5_000, lateness: 30_000, keys: { hashtags: true, all: true, keywords: [] }, emit: 'updates' },
    flags: ['--window', 'tumbling:1m', '--max-out-of-orderness', '5s', '--allowed-lateness', '30s', '--keys', 'hashtags,all'],
  },
  {
    cfg: { window: { kind: 'session', gap: 90_000 }, maxOutOfOrderness: 5_000, lateness: 60_000, keys: { hashtags: true, all: true, keywords: [] }, emit: 'final' },
    flags: ['--window', 'session:90s', '--max-out-of-orderness', '5s', '--allowed-lateness', '1m', '--keys', 'hashtags,all', '--emit', 'final'],
  },
];

const fmt = (ms: number): string => {
  const s = Math.round(ms / 1000);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
};

/** Compares records by id: how many differ from the model (missing, extra or, unless `idsOnly`, changed) and how many are there twice. */
function compare<T extends { id: string }>(got: readonly T[], expected: readonly T[], idsOnly = false): { mismatches: number; duplicates: number; firstMismatch?: string } {
  const want = new Map(expected.map((r) => [r.id, r]));
  const seen = new Set<string>();
  let mismatches = 0;
  let duplicates = 0;
  let firstMismatch: string | undefined;
  const note = (what: string): void => {
    mismatches++;
    firstMismatch ??= what;
  };
  for (const r of got) {
    if (seen.has(r.id)) {
      duplicates++;
      continue;
    }
    seen.add(r.id);
    const w = want.get(r.id);
    if (!w) note(`unexpected record ${JSON.stringify(r)}`);
    else if (!idsOnly && !isDeepStrictEqual(r, w)) note(`record ${r.id}: got ${JSON.stringify(r)}, the model has ${JSON.stringify(w)}`);
  }
  for (const id of want.keys()) if (!seen.has(id)) note(`missing record ${JSON.stringify(want.get(id))}`);
  return { mismatches, duplicates, firstMismatch };
}

/** The model's output for a round, computed in a worker thread. */
function reference(payloads: string[], cfg: RefConfig): Promise<{ results: Result[]; late: Late[]; dead: Dead[] }> {
  return new Promise((resolve, reject) => {
    const w = new Worker(new URL('./soak-reference.js', import.meta.url), { workerData: { payloads, cfg } });
    w.once('message', resolve);
    w.once('error', reject);
  });
}

const o = parseArgs(process.argv.slice(2));
const t0 = Date.now();
const scratch = scratchDir('tidemark-soak-');
const nats = await startNats(scratch.dir);
const nc = await connect({ servers: nats.url });
const rng = new Rng(o.seed);
const totals = { kills: 0, runs: 0, restarts: 0, recovered: 0, rounds: 0, posts: 0, results: 0, late: 0, dead: 0, mismatches: 0, duplicates: 0 };
const problems: string[] = [];
let nextReport = 10;
let checking: Promise<void> = Promise.resolve();

try {
  while (totals.kills < o.kills) {
    const round = ++totals.rounds;
    const job = `soak${round}`;
    const { cfg: base, flags } = CONFIGS[(round - 1) % CONFIGS.length]!;
    const cfg: RefConfig = { ...base, job };
    const payloads = genStream(o.seed * 10_000 + round, { n: o.posts, unit: 60_000, step: 2_000, maxOutOfOrderness: cfg.maxOutOfOrderness });
    const input = `IN_${job.toUpperCase()}`;
    await fillStream(nc, input, job, payloads);
    // A tiny duplicate window: JetStream's own deduplication must not be what keeps the sink exact.
    const results = `RES_${job.toUpperCase()}`;
    await (await nc.jetstreamManager()).streams.add({ name: results, subjects: [`res.${job}`], duplicate_window: 100_000_000 });
    const dir = join(scratch.dir, job);
    const args = [
      'run', '--nats', nats.url, '--job', job, '--input-stream', input, '--input-subjects', `${job}.>`, ...flags,
      '--sink', `jetstream:${results}:res.${job}`, '--late-sink', `jsonl:${dir}/late.jsonl`, '--dlq-sink', `jsonl:${dir}/dlq.jsonl`,
      '--state-dir', join(dir, 'state'), '--drain', '--batch-size', '50', '--checkpoint-interval', '100ms', '--log-level', 'info',
    ];
    const killsBefore = totals.kills;
    const loop = await killLoop({
      args,
      maxRuns: 100_000,
      inputLength: payloads.length,
      runTimeoutMs: 120_000,
      plan: (kills) => {
        if (killsBefore + kills >= o.kills) return 'finish';
        // Mostly 0.3–1 s after the job is up and reading; one kill in five during start-up and recovery.
        if (rng.chance(0.2)) return { killAfterMs: rng.int(50, 900) };
        return { afterCheckpoints: 0, killAfterMs: rng.int(o.minDelayMs, o.maxDelayMs) };
      },
      onRun: (run, n) => {
        totals.runs++;
        if (n.runs > 1) totals.restarts++;
        if (run.resumedAfter !== undefined) totals.recovered++;
        const done = killsBefore + n.kills;
        if (done >= nextReport) {
          nextReport += 10;
          const elapsed = Date.now() - t0;
          console.error(`soak: ${done}/${o.kills} kills, ${totals.restarts} restarts, round ${round}, elapsed ${fmt(elapsed)}, ETA ${fmt((elapsed / done) * (o.kills - done))}`);
        }
      },
    });
    totals.kills += loop.kills;
    if (loop.last.code !== 0 || loop.timedOut) {
      problems.push(`round ${round}: the last run ${loop.timedOut ? 'did not finish within 120 s' : `exited with ${loop.last.code ?? loop.last.signal}`}: ${loop.last.stderr.slice(-1500)}`);
      break;
    }
    const stored = (await readStream<{ id: string }>(nc, results)).map(({ msgId: _, ...r }) => r as { id: string });
    const late = readJsonl<{ id: string }>(`${dir}/late.jsonl`);
    const dead = readJsonl<{ id: string }>(`${dir}/dlq.jsonl`);
    totals.posts += payloads.length;
    totals.results += stored.length;
    totals.late += late.length;
    totals.dead += dead.length;
    // One round's check at a time runs beside the next round's kills.
    await checking;
    const kills = loop.kills;
    checking = reference(payloads, cfg).then((expected) => {
      for (const [what, got, want] of [['results', stored, expected.results], ['late records', late, expected.late], ['dead letters', dead, expected.dead]] as const) {
        // Dead letters by id, as chaos.test.ts does: the sink adds fields (the error's text) the model does not predict.
        const c = compare<{ id: string }>(got, want, what === 'dead letters');
        totals.mismatches += c.mismatches;
        totals.duplicates += c.duplicates;
        if (c.firstMismatch) problems.push(`round ${round}, ${what}: ${c.mismatches} mismatches, first: ${c.firstMismatch.slice(0, 600)}`);
        if (c.duplicates) problems.push(`round ${round}, ${what}: ${c.duplicates} records twice`);
      }
      console.error(`soak: round ${round} (${cfg.window.kind}, ${payloads.length} posts) checked: ${kills} kills, ${stored.length} results, ${late.length} late, ${dead.length} dead letters; mismatches so far ${totals.mismatches}, duplicates ${totals.duplicates}`);
    });
  }
  await checking;
} finally {
  await nc.close();
  await nats.stop();
  scratch.remove();
}

const exact = problems.length === 0 && totals.kills >= o.kills && totals.mismatches === 0 && totals.duplicates === 0;
for (const p of problems) console.error(`soak: ${p}`);
console.log(
  [
    `kills done   ${totals.kills} (asked ${o.kills})`,
    `restarts     ${totals.restarts} (${totals.recovered} resumed from a checkpoint; ${totals.runs} runs)`,
    `rounds       ${totals.rounds} generated inputs of ${o.posts} posts`,
    `posts        ${totals.posts}`,
    `results      ${totals.results} (late ${totals.late}, dead letters ${totals.dead})`,
    `mismatches   ${totals.mismatches}`,
    `duplicates   ${totals.duplicates}`,
    `total time   ${fmt(Date.now() - t0)}`,
    exact ? 'soak: exact' : 'soak: NOT exact',
  ].join('\n'),
);
process.exit(exact ? 0 : 1);
