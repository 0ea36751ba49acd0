// The shape of a benchmark result file, the targets the project holds itself to, and the
// table printed at the end of a run. Targets are fixed here and never adjusted to pass.

import type { StateRow } from './state.js';
import type { OrdersOutcome } from './orders.js';
import type { BenchEnv } from './env.js';
import type { GeneratorOutcome, LatencyOutcome } from './latency.js';
import type { MemoryOutcome } from './memory.js';
import type { PostgresOutcome } from './postgres.js';
import type { ScalingOutcome } from './scaling.js';

export type Mode = 'full' | 'quick' | 'tiny';

export interface BenchResult {
  schema: 1;
  mode: Mode;
  startedAt: string;
  finishedAt: string;
  durationMs: number;
  /** wall time of each phase */
  phaseMs: Record<string, number>;
  env: BenchEnv;
  workload: {
    posts: number;
    avgPayloadBytes: number;
    distinctHashtags: number;
    /** hashtags plus `*` */
    distinctKeys: number;
    eventSpanMs: number;
    window: string;
    keys: string;
    maxOutOfOrdernessMs: number;
    lateFraction: number;
  };
  throughput: {
    /** the headline: wall clock, spawn → exit of `tidemark run --drain`, nothing subtracted */
    postsPerSec: number;
    method: string;
    /** start-up log line → finished log line (node boot, connect and restore excluded) */
    steadyPostsPerSec: number;
    checkpointInterval: string;
    runs: number;
    wallMs: number[];
    steadyMs: number[];
    resultsAtSink: number;
    resultsLogged: number;
    late: number;
  };
  baseline: {
    postsPerSec: number;
    method: string;
    passes: number;
    passMs: number[];
    results: number;
    late: number;
  };
  transport: {
    msgsPerSec: number;
    messages: number;
    received: number;
    payloadBytes: number;
  };
  ratio: {
    throughputToBaseline: number;
    steadyThroughputToBaseline: number;
    throughputToTransport: number;
  };
  /**
   * see LatencyOutcome; `method` says how it was measured; `rateBasis`: at the issue's 20,000 posts/s,
   * or at half the throughput when that is lower (a slow run)
   */
  latency: Omit<LatencyOutcome, 'generator'> & { method: string; rateBasis: 'issue' | 'half-throughput' };
  generator: GeneratorOutcome;
  /** the latency run at half the throughput (the load of earlier runs); the target run itself when that is its rate */
  latencyHalfLoad: { atPostsPerSec: number; sameRunAsLatency: boolean; p50Ms: number; p99Ms: number; p999Ms: number; maxMs: number; samples: number; expectedSamples: number; generatorKeptUp: boolean };
  /** the latency run again with 10 hashtags: the pipeline's own latency, few windows firing at once */
  latencyFewKeys: { hashtags: number; atPostsPerSec: number; p50Ms: number; p99Ms: number; maxMs: number; samples: number; generatorKeptUp: boolean };
  /** the latency's reference: a bare JetStream consumer of the same generator's posts, no job */
  latencyReference: { method: string; atPostsPerSec: number; p50Ms: number; p99Ms: number; p999Ms: number; maxMs: number; samples: number; expectedSamples: number; generatorKeptUp: boolean };
  checkpoint: {
    overheadRatio: number;
    onPostsPerSec: number;
    offPostsPerSec: number;
    steadyOverheadRatio: number;
    runsPerSetting: number;
  };
  recovery: {
    /** restart → first result; null when the job could not produce one (see `error`) */
    msFor100kWindows: number | null;
    method: string;
    windows: number;
    windowsRestored: number | null;
    msToRecoveredLog: number | null;
    loggedRecoveryMs: number | null;
    msToAllResults: number | null;
    checkpointBytes: number | null;
    checkpointMs: number | null;
    error?: string;
  };
  memory: MemoryOutcome;
  /** result rows/s into PostgreSQL beside the JSONL sink and a bare COPY (issue 12) */
  postgres: PostgresOutcome;
  /** checkpoint and restore cost against state size (issue 3) */
  state: { method: string; rows: StateRow[]; /** the largest row's worst event-loop delay */ maxEventLoopDelayMs: number; windowsAtMaxDelay: number };
  /** one job on 1, 2 and 3 processes of a group, with CPU shares (issue 11); absent at the tiny scale */
  scaling?: ScalingOutcome;
  /** the same with `--input-partitions 4`: two or more instances read the input partition by partition */
  scalingPartitioned?: ScalingOutcome;
  /** the orders example (a user job) beside the sentiment job's throughput */
  orders: OrdersOutcome & { toSentimentThroughput: number };
  targets: TargetRow[];
}

export interface TargetRow {
  metric: string;
  op: '>=' | '<=';
  target: number;
  value: number | null;
  pass: boolean;
  note?: string;
}

/** The project's targets on its 2-core machine (issue 5). */
export const TARGETS: ReadonlyArray<{ metric: string; op: '>=' | '<='; target: number }> = [
  { metric: 'ratio.throughputToBaseline', op: '>=', target: 0.5 },
  { metric: 'latency.p99Ms', op: '<=', target: 20 },
  { metric: 'checkpoint.overheadRatio', op: '>=', target: 0.85 },
  { metric: 'recovery.msFor100kWindows', op: '<=', target: 2000 },
  { metric: 'state.maxEventLoopDelayMs', op: '<=', target: 50 },
  { metric: 'postgres.ratioToBareCopyKeyed', op: '>=', target: 0.5 },
  { metric: 'scaling.twoToOne', op: '>=', target: 1.4 },
];

/** Reads a dotted path of a result. */
export function pick(r: BenchResult, path: string): unknown {
  let v: unknown = r;
  for (const part of path.split('.')) v = v !== null && typeof v === 'object' ? (v as Record<string, unknown>)[part] : undefined;
  return v;
}

/** Evaluates every target against a result. */
export function evaluateTargets(r: Omit<BenchResult, 'targets'> & { targets?: TargetRow[] }): TargetRow[] {
  return TARGETS.map((t) => {
    const v = pick(r as BenchResult, t.metric);
    const value = typeof v === 'number' && Number.isFinite(v) ? v : null;
    const pass = value !== null && (t.op === '>=' ? value >= t.target : value <= t.target);
    const row: TargetRow = { ...t, value, pass };
    if (t.metric === 'latency.p99Ms' && r.latency.rateBasis === 'half-throughput') row.note = `at half the throughput, below the issue's rate`;
    if (t.metric === 'latency.p99Ms' && !r.generator.keptUp) row.note = 'generator fell behind its schedule';
    if (t.metric === 'latency.p99Ms' && r.latency.missingSamples > 0) row.note = `${r.latency.missingSamples} results never arrived`;
    if (t.metric === 'state.maxEventLoopDelayMs' && r.state.windowsAtMaxDelay !== 1_000_000) row.note = `measured at ${r.state.windowsAtMaxDelay} windows`;
    if (t.metric === 'scaling.twoToOne' && !r.scaling) row.note = 'not measured at this scale';
    if (t.metric === 'recovery.msFor100kWindows') {
      if (value === null) row.note = 'no result, see recovery.error';
      else if (r.recovery.windows !== 100_000) row.note = `measured at ${r.recovery.windows} windows`;
    }
    return row;
  });
}

const num = (x: number | null | undefined, digits = 0): string =>
  x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

type LatencyLine = { p50Ms: number; p99Ms: number; maxMs: number; generatorKeptUp: boolean };

/** p50 / p99 / max of a latency run. */
const spread = (l: Pick<LatencyLine, 'p50Ms' | 'p99Ms' | 'maxMs'>): string => `${num(l.p50Ms, 1)} / ${num(l.p99Ms, 1)} / ${num(l.maxMs, 1)}`;

/** The label of a latency run's line, saying so when its generator fell behind its schedule. */
const behind = (l: LatencyLine): string => (l.generatorKeptUp ? '' : ', generator BEHIND');

/** The table printed after a run (plain text, fixed width). */
export function formatTable(r: BenchResult): string {
  const target = (metric: string): [string, string] => {
    const t = r.targets.find((x) => x.metric === metric);
    if (!t) return ['', ''];
    const note = t.note && t.note.length > 70 ? `${t.note.slice(0, 69)}…` : t.note;
    return [`${t.op === '>=' ? '≥' : '≤'} ${t.target}`, t.pass ? 'pass' : `MISS${note ? ` (${note})` : ''}`];
  };
  const rows: string[][] = [
    ['throughput (posts/s, wall: spawn→exit, ckpt 1s)', num(r.throughput.postsPerSec), '', ''],
    ['  steady state (start-up line→finished line)', num(r.throughput.steadyPostsPerSec), '', ''],
    ['  checkpoints off (posts/s, wall)', num(r.checkpoint.offPostsPerSec), '', ''],
    ['baseline (posts/s, one tight loop)', num(r.baseline.postsPerSec), '', ''],
    ['transport (msgs/s, nats.js pub+sub)', num(r.transport.msgsPerSec), '', ''],
    ['orders example (user job, orders/s, wall)', num(r.orders.ordersPerSec), '', ''],
    ['ratio throughput / baseline', num(r.ratio.throughputToBaseline, 3), ...target('ratio.throughputToBaseline')],
    [`latency p50 (ms) at ${num(r.latency.atPostsPerSec)} posts/s (${r.latency.rateBasis === 'issue' ? "the issue's rate" : 'half the throughput'})`, num(r.latency.p50Ms, 2), '', ''],
    ['latency p99 (ms)', num(r.latency.p99Ms, 2), ...target('latency.p99Ms')],
    ['latency p99.9 (ms)', num(r.latency.p999Ms, 2), '', ''],
    ['latency max (ms)', num(r.latency.maxMs, 2), '', ''],
    ['  samples / expected', `${num(r.latency.samples)} / ${num(r.latency.expectedSamples)}`, '', ''],
    [`  warm-up included (from the first window, the first ${num(r.latency.warmupMs / 1000)} s too): p50 / p99 / max (ms)`, r.latency.wholeRun ? spread(r.latency.wholeRun) : 'n/a', '', ''],
    [`  at half the throughput, ${num(r.latencyHalfLoad.atPostsPerSec)} posts/s${r.latencyHalfLoad.sameRunAsLatency ? ' (the run above)' : ''}: p50 / p99 / max (ms)${behind(r.latencyHalfLoad)}`, spread(r.latencyHalfLoad), '', ''],
    [`  with ${r.latencyFewKeys.hashtags} keys: p50 / p99 / max (ms)${behind(r.latencyFewKeys)}`, spread(r.latencyFewKeys), '', ''],
    [`  reference, bare JetStream consumer, no job: p50 / p99 / max (ms)${behind(r.latencyReference)}`, spread(r.latencyReference), '', ''],
    ['  generator kept up (p99 send lag ms)', `${r.generator.keptUp ? 'yes' : 'NO'} (${num(r.generator.sendLagP99Ms, 2)})`, '', ''],
    ['checkpoint overhead (on / off)', num(r.checkpoint.overheadRatio, 3), ...target('checkpoint.overheadRatio')],
    [`recovery (ms, restart→first result, ${num(r.recovery.windows)} windows)`, num(r.recovery.msFor100kWindows), ...target('recovery.msFor100kWindows')],
    [`worst event-loop delay (ms, ${num(r.state.windowsAtMaxDelay)} windows: checkpoint, restore, firing)`, num(r.state.maxEventLoopDelayMs, 1), ...target('state.maxEventLoopDelayMs')],
    ['  of it the main thread ran, at most, in one stall (ms)', num(r.state.rows[r.state.rows.length - 1]?.worstStallOnCpuMs ?? NaN, 1), '', ''],
    ['  restart→recovered log line (ms)', num(r.recovery.msToRecoveredLog), '', ''],
    ['memory per open window (bytes of heap)', num(r.memory.bytesPerOpenWindow), '', ''],
    ['  per fired window in its lateness (pending)', num(r.memory.bytesPerPendingWindow), '', ''],
    [`PostgreSQL sink (result rows/s, exactly once, ${num(r.postgres.rows)} windows)`, num(r.postgres.sinkRowsPerSec), '', ''],
    ['  JSONL sink, same records (rows/s)', num(r.postgres.jsonlRowsPerSec), '', ''],
    ['  bare COPY, same rows, same client, no keys (rows/s)', num(r.postgres.bareCopyRowsPerSec), '', ''],
    ["  bare COPY into the sink's two keyed tables, per checkpoint (rows/s)", num(r.postgres.bareCopyKeyedRowsPerSec), '', ''],
    ['  replay of the same records (rows/s, nothing changed)', num(r.postgres.replayRowsPerSec), '', ''],
    ["ratio PostgreSQL sink / bare COPY of the same rows into the sink's tables", num(r.postgres.ratioToBareCopyKeyed, 3), ...target('postgres.ratioToBareCopyKeyed')],
    ['  ratio PostgreSQL sink / bare COPY into one table without keys', num(r.postgres.ratioToBareCopy, 3), '', ''],
    ...(r.scaling
      ? [
          ...r.scaling.rows.map((row): [string, string, string, string] => [
            `group of ${row.instances} process(es) (posts/s; CPU in cores: ${row.cpu.instances.map((c) => c.cores.toFixed(2)).join(' + ')} instances, ${row.cpu.natsServer.toFixed(2)} nats-server)`,
            num(row.postsPerSec),
            '',
            '',
          ]),
          ['ratio 2 processes / 1 process, same run', num(r.scaling.twoToOne, 3), ...target('scaling.twoToOne')] as [string, string, string, string],
        ]
      : []),
    ...(r.scalingPartitioned
      ? [
          ...r.scalingPartitioned.rows.map((row): [string, string, string, string] => [
            `  --input-partitions ${r.scalingPartitioned!.inputPartitions}, group of ${row.instances} (posts/s; CPU: ${row.cpu.instances.map((c) => c.cores.toFixed(2)).join(' + ')} instances, ${row.cpu.natsServer.toFixed(2)} nats-server)`,
            num(row.postsPerSec),
            '',
            '',
          ]),
          [`  --input-partitions ${r.scalingPartitioned.inputPartitions}: ratio 2 processes / 1 process, same run`, num(r.scalingPartitioned.twoToOne, 3), '', ''] as [string, string, string, string],
        ]
      : []),
  ];
  const head = ['metric', 'value', 'target', 'status'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 1 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  const env = r.env;
  return [
    `Tidemark benchmarks (${r.mode}) — ${r.startedAt}`,
    `node ${env.node}, nats-server ${env.natsServer}, ${env.cpuModel} × ${env.cores}, commit ${env.gitCommit.slice(0, 12)}${env.gitDirty ? ' (dirty)' : ''}, load ${env.loadAvg1mBefore.toFixed(2)}→${env.loadAvg1mAfter.toFixed(2)}`,
    `workload: ${num(r.workload.posts)} posts, ${num(r.workload.avgPayloadBytes)} B each, ${num(r.workload.distinctKeys)} keys, ${r.workload.window}`,
    '',
    line(head),
    line(widths.map((w) => '─'.repeat(w))),
    ...rows.map(line),
    ...(r.recovery.error ? ['', `recovery.error: ${r.recovery.error.split('\n')[0]!.slice(0, 400)}`] : []),
    '',
    formatStateTable(r.state.rows),
  ].join('\n');
}

/** Checkpoint and restore against state size: one row per size. */
export function formatStateTable(rows: readonly StateRow[]): string {
  const head = ['live windows', 'full ckpt ms', 'full MB', '1% delta ms', 'delta KB', 'restore ms', 'first results ms', 'all fired ms', 'worst loop delay ms', 'by phase (ckpt/store/operator/fire)', 'main thread ran in a stall ms'];
  const body = rows.map((r) => [
    num(r.windows),
    num(r.fullCheckpointMs),
    num(r.fullCheckpointBytes / 1e6, 1),
    num(r.deltaCheckpointMs, 1),
    num(r.deltaCheckpointBytes / 1e3, 0),
    num(r.restoreMs),
    num(r.firstResultsMs),
    num(r.allResultsMs),
    num(r.maxEventLoopDelayMs, 1),
    [r.delayByPhaseMs.checkpoint, r.delayByPhaseMs.storeRestore, r.delayByPhaseMs.operatorRestore, r.delayByPhaseMs.firing].map((d) => num(d, 0)).join('/'),
    num(r.worstStallOnCpuMs, 1),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => c.padStart(widths[i]!)).join('  ');
  return ['checkpoint and restore against state size (each size in a process of its own, LevelDB on disk)', line(head), line(widths.map((w) => '─'.repeat(w))), ...body.map(line)].join('\n');
}
