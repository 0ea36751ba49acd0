// The benchmark machinery at a tiny scale (seconds) against a real nats-server: the result file
// is complete and self-consistent. No figure's speed is asserted, only its shape and arithmetic.

import t from 'tap';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { decodeFromCompressedBase64 } from 'hdr-histogram-js';
import { runBenchmarks, writeResults, SCALES } from '../../benchmarks/bench.js';
import { TARGETS, formatTable, pick, type BenchResult } from '../../benchmarks/report.js';

const dir = mkdtempSync(join(tmpdir(), 'tidemark-bench-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

const outDir = join(dir, 'results');
const result = await runBenchmarks({ mode: 'tiny', workDir: join(dir, 'work'), progress: false });
const files = writeResults(result, outDir);
const json = JSON.parse(readFileSync(files.latest, 'utf8')) as BenchResult;
const tiny = SCALES.tiny;

const NUMERIC = [
  'durationMs',
  'throughput.postsPerSec',
  'throughput.steadyPostsPerSec',
  'throughput.resultsAtSink',
  'throughput.resultsLogged',
  'baseline.postsPerSec',
  'baseline.results',
  'transport.msgsPerSec',
  'transport.payloadBytes',
  'ratio.throughputToBaseline',
  'ratio.steadyThroughputToBaseline',
  'latency.p50Ms',
  'latency.p90Ms',
  'latency.p99Ms',
  'latency.p999Ms',
  'latency.maxMs',
  'latency.atPostsPerSec',
  'latency.samples',
  'latency.expectedSamples',
  'latency.missingSamples',
  'latency.histogramTotalCount',
  'latency.wholeRun.p50Ms',
  'latency.wholeRun.p99Ms',
  'latency.wholeRun.maxMs',
  'latency.wholeRun.samples',
  'latencyHalfLoad.atPostsPerSec',
  'latencyHalfLoad.p50Ms',
  'latencyHalfLoad.p99Ms',
  'latencyHalfLoad.p999Ms',
  'latencyHalfLoad.maxMs',
  'latencyHalfLoad.samples',
  'latencyHalfLoad.expectedSamples',
  'latencyFewKeys.atPostsPerSec',
  'latencyFewKeys.p50Ms',
  'latencyFewKeys.p99Ms',
  'latencyFewKeys.maxMs',
  'latencyFewKeys.samples',
  'latencyReference.atPostsPerSec',
  'latencyReference.p50Ms',
  'latencyReference.p99Ms',
  'latencyReference.p999Ms',
  'latencyReference.maxMs',
  'latencyReference.samples',
  'latencyReference.expectedSamples',
  'generator.scheduled',
  'generator.sent',
  'generator.sendLagP99Ms',
  'generator.sendLagMaxMs',
  'checkpoint.overheadRatio',
  'checkpoint.onPostsPerSec',
  'checkpoint.offPostsPerSec',
  'recovery.msFor100kWindows',
  'recovery.msToRecoveredLog',
  'recovery.loggedRecoveryMs',
  'recovery.windows',
  'recovery.windowsRestored',
  'memory.bytesPerOpenWindow',
  'postgres.sinkRowsPerSec',
  'postgres.jsonlRowsPerSec',
  'postgres.bareCopyRowsPerSec',
  'postgres.bareCopyKeyedRowsPerSec',
  'postgres.ratioToBareCopy',
  'postgres.ratioToBareCopyKeyed',
  'postgres.ratioToJsonl',
  'postgres.replayRowsPerSec',
  'postgres.checkpoints',
  'memory.windows',
  'env.cores',
  'env.totalMemBytes',
  'env.loadAvg1mBefore',
];

t.test('every figure is a finite number', async (t) => {
  for (const path of NUMERIC) {
    const v = pick(json, path);
    t.ok(typeof v === 'number' && Number.isFinite(v), `${path} is a finite number (got ${JSON.stringify(v)})`);
  }
  t.ok(json.throughput.postsPerSec > 0 && json.baseline.postsPerSec > 0 && json.transport.msgsPerSec > 0, 'rates are positive');
  t.equal(json.recovery.error, undefined, 'recovery ran without error');
  t.equal(typeof json.generator.keptUp, 'boolean', 'generator.keptUp is a boolean');
});

t.test('environment is recorded', async (t) => {
  for (const k of ['node', 'natsServer', 'natsJs', 'cpuModel', 'gitCommit'] as const) t.ok(typeof json.env[k] === 'string' && json.env[k].length > 0, `env.${k}`);
  t.match(json.env.node, /^v\d+\./);
  t.match(json.env.natsServer, /^\d+\.\d+/);
});

t.test('ratios are the quotients of the stored figures', async (t) => {
  t.equal(json.ratio.throughputToBaseline, json.throughput.postsPerSec / json.baseline.postsPerSec);
  t.equal(json.ratio.steadyThroughputToBaseline, json.throughput.steadyPostsPerSec / json.baseline.postsPerSec);
  t.equal(json.checkpoint.onPostsPerSec, json.throughput.postsPerSec, 'checkpoint.onPostsPerSec is the headline throughput');
  t.equal(json.checkpoint.overheadRatio, json.checkpoint.onPostsPerSec / json.checkpoint.offPostsPerSec);
  t.equal(json.throughput.runs, tiny.reps);
  t.equal(json.throughput.wallMs.length, tiny.reps);
  const wall = json.throughput.wallMs[0]!;
  const wallRate = (tiny.posts / wall) * 1000;
  // The stored wall time is rounded to the ms: at this scale (a few hundred ms) that moves the rate by more than 1.
  const slack = 1 + (tiny.posts * 1000 * 0.5) / (wall - 0.5) ** 2;
  t.ok(Math.abs(wallRate - json.throughput.postsPerSec) <= slack, `throughput is posts / wall time (${wallRate.toFixed(1)} against ${json.throughput.postsPerSec}, rounding allows ${slack.toFixed(1)})`);
});

t.test('the histogram counts every latency sample', async (t) => {
  t.ok(json.latency.samples > 0, 'latency samples were taken');
  t.equal(json.latency.histogramTotalCount, json.latency.samples);
  const h = decodeFromCompressedBase64(json.latency.histogram);
  t.equal(h.totalCount, json.latency.samples, 'the stored histogram decodes to the same count');
  t.equal(json.latency.missingSamples, json.latency.expectedSamples - json.latency.samples);
  t.ok(json.latency.wholeRun.samples >= json.latency.samples, 'the whole run (warm-up included) holds at least the sampled results');
  t.ok(json.latency.wholeRun.maxMs >= json.latency.maxMs, 'and its max is at least the max after the warm-up');
  t.equal(json.latency.lastResultPerWindowMs.length > 0, json.latency.samples > 0, 'the last result of every sampled window is listed');
  t.ok(json.latency.lastResultPerWindowMs.every((ms: number) => ms <= json.latency.maxMs + 0.1), 'none after the max');
  const l = json.latency;
  t.ok(l.p50Ms <= l.p90Ms && l.p90Ms <= l.p99Ms && l.p99Ms <= l.p999Ms && l.p999Ms <= l.maxMs, 'percentiles are ordered and bounded by the max');
  t.equal(json.generator.sent, json.generator.scheduled, 'the open-loop generator sent its whole schedule');
  const half = Math.max(1, Math.round(json.throughput.postsPerSec * 0.5));
  t.equal(json.latency.atPostsPerSec, Math.min(20_000, half), "the load is the issue's 20,000 posts/s, or half the measured throughput when that is lower");
  t.equal(json.latency.rateBasis, half < 20_000 ? 'half-throughput' : 'issue', 'the table says which rate it is');
  t.equal(json.latencyHalfLoad.atPostsPerSec, half, 'the extra run is at half the measured throughput');
  t.equal(json.latencyHalfLoad.sameRunAsLatency, half <= 20_000, 'the extra run is the target run when their rates agree');
  if (json.latencyHalfLoad.sameRunAsLatency) t.equal(json.latencyHalfLoad.p99Ms, json.latency.p99Ms, 'and then its figures are the same');
  t.equal(json.latencyFewKeys.atPostsPerSec, json.latency.atPostsPerSec, 'the 10-key run is at the target rate');
  for (const l of [json.latencyHalfLoad, json.latencyReference]) {
    t.ok(l.p50Ms <= l.p99Ms && l.p99Ms <= l.p999Ms && l.p999Ms <= l.maxMs, 'percentiles are ordered and bounded by the max');
    t.ok(l.samples > 0 && l.samples <= l.expectedSamples, 'samples were taken, no more than expected');
  }
  t.equal(json.latencyReference.atPostsPerSec, json.latency.atPostsPerSec, 'the bare consumer reference is at the same rate');
  t.match(json.latencyReference.method, /bare JetStream consumer/);
});

t.test('the job and the baseline did the same work', async (t) => {
  t.equal(json.throughput.resultsAtSink, json.baseline.results, 'results at the sink = results of the baseline loop');
  t.equal(json.throughput.resultsLogged, json.baseline.results);
  t.equal(json.throughput.late, json.baseline.late, 'late records agree');
  t.equal(json.workload.posts, tiny.posts);
});

t.test('the orders example is measured beside the sentiment job', async (t) => {
  t.equal(json.orders.orders, tiny.posts, 'as many orders as sentiment posts');
  t.equal(json.orders.wallMs.length, json.orders.runs, 'one time per run');
  t.ok(json.orders.results > 0, 'the orders job wrote results');
  t.equal(json.orders.toSentimentThroughput, Math.round((json.orders.ordersPerSec / json.throughput.postsPerSec) * 1000) / 1000, 'the ratio is the quotient of the stored figures');
});

t.test('recovery and memory cover the state they claim', async (t) => {
  t.equal(json.recovery.windows, tiny.recoveryWindows);
  t.equal(json.recovery.windowsRestored, tiny.recoveryWindows, 'the restart restored every window');
  t.ok(json.recovery.msFor100kWindows! >= json.recovery.msToRecoveredLog!, 'the first result comes after the recovery line');
  t.equal(json.memory.windows, tiny.memoryWindows);
  t.equal(json.memory.bytesPerOpenWindow, Math.round(json.memory.heapGrowthBytes / json.memory.windows));
  t.same(json.state.rows.map((r) => r.windows), tiny.stateSizes, 'one state-size row per size');
  for (const r of json.state.rows) {
    t.equal(r.results, r.windows, `${r.windows} windows: every restored window fired once`);
    t.equal(r.changedWindows, Math.max(1, Math.round(r.windows / 100)), `${r.windows} windows: 1% changed`);
    t.ok(r.deltaCheckpointBytes < r.fullCheckpointBytes / 10, `${r.windows} windows: the delta is a fraction of the full checkpoint`);
    t.equal(r.deltaToFullBytes, Math.round((r.deltaCheckpointBytes / r.fullCheckpointBytes) * 1e4) / 1e4, 'the byte ratio is the quotient');
    t.ok(r.firstResultsMs <= r.allResultsMs, 'first results before all');
    t.ok(Number.isFinite(r.maxEventLoopDelayMs) && r.maxEventLoopDelayMs >= 0, `${r.windows} windows: the worst event-loop delay is recorded`);
    const phases = Object.values(r.delayByPhaseMs);
    t.equal(phases.length, 4, `${r.windows} windows: a worst delay for each phase`);
    // (Each phase has its own monitor, whose timer sees a stall a few ms differently from the whole run's.)
    t.ok(phases.every((d) => Number.isFinite(d) && d >= 0), `${r.windows} windows: each phase's worst delay is a duration`);
    const stalls = Object.values(r.stallsByPhase);
    t.equal(stalls.length, 4, `${r.windows} windows: a stall split for each phase`);
    t.ok(stalls.every((s) => [s.worstMs, s.onCpuInWorstMs, s.waitingInWorstMs, s.worstOnCpuMs, s.worstOnCpuAtMs].every((x) => Number.isFinite(x) && x >= 0)), `${r.windows} windows: every stall figure is a duration`);
    t.equal(r.worstStallOnCpuMs, Math.max(...Object.values(r.stallOnCpuByPhaseMs)), `${r.windows} windows: the worst main-thread stall is the worst of the phases'`);
    t.ok(r.flowingPosts > 0, `${r.windows} windows: posts kept flowing meanwhile`);
  }
});

t.test('the PostgreSQL phase wrote every row once, and its ratios are the quotients', async (t) => {
  const p = json.postgres;
  t.equal(p.rows, tiny.postgresRows);
  t.equal(p.revisionsRows, p.rows, 'the revisions table holds every result once');
  t.equal(p.windowsRows, p.rows, 'one current row per window');
  t.equal(p.replayChangedRows, 0, 'writing the same results again changed no row');
  t.ok(p.checkpoints >= 1, 'checkpoints were committed');
  t.equal(p.ratioToBareCopy, p.sinkRowsPerSec / p.bareCopyRowsPerSec);
  t.equal(p.ratioToBareCopyKeyed, p.sinkRowsPerSec / p.bareCopyKeyedRowsPerSec);
  t.equal(p.ratioToJsonl, p.sinkRowsPerSec / p.jsonlRowsPerSec);
  t.match(p.postgresVersion, /^\d+/);
});

t.test('targets are evaluated as stated, never adjusted', async (t) => {
  t.same(
    json.targets.map((r) => ({ metric: r.metric, op: r.op, target: r.target })),
    TARGETS.map((r) => ({ metric: r.metric, op: r.op, target: r.target })),
  );
  for (const row of json.targets) {
    t.equal(row.value, pick(json, row.metric) ?? null, `${row.metric} value is the stored figure (null where the scale does not measure it)`);
    const pass = row.value !== null && (row.op === '>=' ? row.value >= row.target : row.value <= row.target);
    t.equal(row.pass, pass, `${row.metric} pass/miss follows from value and target`);
  }
});

t.test('result files: latest, dated copy and a self-contained chart', async (t) => {
  t.ok(existsSync(files.latest) && existsSync(files.dated) && existsSync(files.svg));
  const names = readdirSync(outDir);
  t.equal(names.length, 3, 'three files');
  t.ok(names.includes('latest.json') && names.includes('latest.svg'));
  t.ok(names.some((n) => /^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}Z\.json$/.test(n)), 'a copy named by its ISO 8601 start time');
  t.same(JSON.parse(readFileSync(files.dated, 'utf8')), json, 'the dated copy equals latest.json');
  const svg = readFileSync(files.svg, 'utf8');
  t.match(svg, /^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
  t.notMatch(svg, /<script|href=|@import|url\(/, 'no scripts or external references');
  const table = formatTable(json);
  for (const label of ['throughput', 'baseline', 'transport', 'latency p99', 'at half the throughput', 'bare JetStream consumer', 'checkpoint overhead', 'recovery', 'memory', 'live windows', 'PostgreSQL sink', 'bare COPY']) t.match(table, label);
});
