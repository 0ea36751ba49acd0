// The benchmark run as a library: every phase against one real nats-server on 127.0.0.1, in an
// order where each figure's reference is measured in the same run, and the result files written.

import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { connect } from 'nats';
import { EmbeddedNats } from '../src/io/nats-server.js';
import { repoRoot, fillStream, deleteStream, round } from './common.js';
import { readEnv } from './env.js';
import { buildWorkload, THROUGHPUT_JOB } from './workload.js';
import { runBaseline } from './baseline.js';
import { runTransport } from './transport.js';
import { runThroughput } from './throughput.js';
import { ISSUE_LATENCY_RATE, type BareConsumerOutcome, type LatencyOutcome } from './latency.js';
import { runRecovery } from './recovery.js';
import { measureWindowMemory } from './memory.js';
import type { StateRow } from './state.js';
import { runPostgres } from './postgres.js';
import { measureScaling, type ScalingOutcome } from './scaling.js';
import { runOrders } from './orders.js';
import { Progress, type PhaseSpec } from './progress.js';
import { evaluateTargets, type BenchResult, type Mode } from './report.js';
import { renderSvg } from './svg.js';

/** How big each phase is. */
export interface Scale {
  posts: number;
  /** drain runs per checkpoint setting */
  reps: number;
  baselineReps: number;
  transportMessages: number;
  latencySeconds: number;
  latencyWarmupSeconds: number;
  recoveryWindows: number;
  recoveryTagsPerPost: number;
  memoryWindows: number;
  /** live-window counts of the in-process checkpoint/restore scaling run */
  stateSizes: number[];
  /** window results written into PostgreSQL (and the JSONL sink, and a bare COPY) */
  postgresRows: number;
  /** posts per run of the group scaling phase (0: skipped) */
  scalingPosts: number;
}

export const SCALES: Record<Mode, Scale> = {
  full: { posts: 200_000, reps: 3, baselineReps: 3, transportMessages: 500_000, latencySeconds: 40, latencyWarmupSeconds: 10, recoveryWindows: 100_000, recoveryTagsPerPost: 1000, memoryWindows: 100_000, stateSizes: [10_000, 100_000, 1_000_000], postgresRows: 100_000, scalingPosts: 100_000 },
  quick: { posts: 30_000, reps: 1, baselineReps: 2, transportMessages: 100_000, latencySeconds: 7, latencyWarmupSeconds: 2, recoveryWindows: 100_000, recoveryTagsPerPost: 1000, memoryWindows: 100_000, stateSizes: [10_000, 100_000], postgresRows: 100_000, scalingPosts: 30_000 },
  tiny: { posts: 3_000, reps: 1, baselineReps: 1, transportMessages: 10_000, latencySeconds: 3, latencyWarmupSeconds: 1, recoveryWindows: 2_000, recoveryTagsPerPost: 500, memoryWindows: 5_000, stateSizes: [1_000, 5_000], postgresRows: 5_000, scalingPosts: 0 },
};

export interface BenchOptions {
  mode: Mode;
  scale?: Partial<Scale>;
  /** scratch space (nats store, state directories); removed afterwards */
  workDir: string;
  /**
   * Where `node --cpu-prof` writes the profiles of an extra, unmeasured throughput run
   * (`throughput/`) and of an extra, unmeasured restart with the recovery state (`recovery/`).
   */
  profileDir?: string;
  /** draw a progress bar on stderr */
  progress?: boolean;
}

const PHASES = (s: Scale): PhaseSpec[] => [
  { name: 'setup', weight: 1 + s.posts / 100_000 },
  { name: 'baseline', weight: ((s.baselineReps + 1) * s.posts) / 80_000 },
  { name: 'transport', weight: 0.5 + s.transportMessages / 200_000 },
  { name: 'fill stream', weight: s.posts / 40_000 },
  { name: 'throughput', weight: 2 * s.reps * (1.5 + s.posts / 10_000) },
  { name: 'orders job', weight: s.reps * (1.5 + s.posts / 10_000) },
  { name: 'latency', weight: s.latencySeconds + 3 },
  { name: 'latency, 10 keys', weight: Math.max(3, s.latencySeconds / 2) + 3 },
  { name: 'latency, half throughput', weight: Math.max(3, s.latencySeconds / 2) + 3 },
  { name: 'latency reference', weight: Math.max(3, s.latencySeconds / 2) + 1 },
  { name: 'recovery', weight: 3 + s.recoveryWindows / 10_000 },
  { name: 'memory', weight: 0.5 + s.memoryWindows / 50_000 },
  { name: 'state size', weight: s.stateSizes.reduce((a, b) => a + b, 0) / 25_000 },
  { name: 'postgres', weight: 2 + s.postgresRows / 8_000 },
  { name: 'scaling', weight: s.scalingPosts ? 6 * (8 + s.scalingPosts / 20_000) : 0.01 },
];

const natsJsVersion = (): string => {
  try {
    return (JSON.parse(readFileSync(join(repoRoot(), 'node_modules', 'nats', 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
};

/** Runs `dist/benchmarks/<script>` (a latency run by default) with `args` in a process of its own; its one JSON line, without the load average. */
function isolated<T>(args: readonly string[], script = 'latency-only.js'): Promise<T> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, [join(repoRoot(), 'dist', 'benchmarks', script), ...args], { maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`${script} ${args.join(' ')} failed: ${err.message}\n${stderr.slice(-2000)}`));
      const line = stdout.trim().split('\n').pop() ?? '';
      try {
        const { load1: _load, ...outcome } = JSON.parse(line) as Record<string, unknown>;
        resolve(outcome as T);
      } catch {
        reject(new Error(`${script} ${args.join(' ')} printed no outcome: ${stdout.slice(-500)} ${stderr.slice(-1000)}`));
      }
    });
  });
}

/** Runs every phase and returns the result (nothing written). */
export async function runBenchmarks(o: BenchOptions): Promise<BenchResult> {
  const s: Scale = { ...SCALES[o.mode], ...o.scale };
  const progress = new Progress(PHASES(s), o.progress === false ? undefined : process.stderr);
  const started = new Date();
  const load0 = loadavg()[0] ?? 0;
  rmSync(o.workDir, { recursive: true, force: true });
  mkdirSync(o.workDir, { recursive: true });
  if (o.profileDir) rmSync(o.profileDir, { recursive: true, force: true });
  progress.phase('setup');
  const server = await EmbeddedNats.start(join(o.workDir, 'nats'));
  const nc = await connect({ servers: server.url, name: 'tidemark-bench' });
  try {
    const env = readEnv(nc.info?.version ?? 'unknown', natsJsVersion());
    env.loadAvg1mBefore = load0;
    const workload = buildWorkload(s.posts);

    progress.phase('baseline');
    progress.update(0.1, 'tight loop over the same payloads');
    const cfg = { job: 'thr', windowMs: THROUGHPUT_JOB.windowMs, maxOutOfOrdernessMs: THROUGHPUT_JOB.maxOutOfOrdernessMs, keys: THROUGHPUT_JOB.keys };
    const baseline = runBaseline(workload.payloads, cfg, s.baselineReps);

    progress.phase('transport');
    const transport = await runTransport(server.url, workload.payloads, s.transportMessages, (f) => progress.update(f));

    progress.phase('fill stream');
    await fillStream(nc, 'BENCH_THR', 'benchthr.in', workload.payloads, (f) => progress.update(f, `${s.posts} posts`));

    progress.phase('throughput');
    const thr = await runThroughput(nc, {
      url: server.url,
      stream: 'BENCH_THR',
      subjects: 'benchthr.>',
      posts: s.posts,
      reps: s.reps,
      workDir: o.workDir,
      ...(o.profileDir ? { profileDir: join(o.profileDir, 'throughput') } : {}),
      onProgress: (f, label) => progress.update(f, label),
    });
    await deleteStream(nc, 'BENCH_THR');

    progress.phase('orders job');
    const orders = await runOrders(nc, { url: server.url, orders: s.posts, reps: s.reps, workDir: o.workDir, onProgress: (f, label) => progress.update(f, label) });

    progress.phase('latency');
    // The issue's rate (20,000 posts/s), or half the headline throughput (as stored) when that is lower.
    const halfRate = Math.max(1, Math.round(round(thr.onPostsPerSec) * 0.5));
    const rate = Math.min(ISSUE_LATENCY_RATE, halfRate);
    const shortSeconds = Math.max(3, Math.round(s.latencySeconds / 2));
    const warmupMs = (seconds: number): number => (seconds > s.latencyWarmupSeconds ? s.latencyWarmupSeconds * 1000 : 0);
    // Each latency run in a process of its own (latency-only.js, with its own nats-server): the
    // generator keeps its schedule only when nothing else shares its event loop and heap.
    const latencyRun = (seconds: number, hashtags: number, atRate = rate, bare = false) =>
      isolated<LatencyOutcome>([
        '--rate', String(atRate), '--seconds', String(seconds), '--keys', String(hashtags), '--warmup-ms', String(warmupMs(seconds)), '--histogram', ...(bare ? ['--bare'] : []),
      ]);
    progress.update(0.1, `${rate} posts/s, ~1000 keys, ${s.latencySeconds} s`);
    const lat = await latencyRun(s.latencySeconds, THROUGHPUT_JOB.hashtags);

    // The same pipeline with 10 hashtags: what a post's trip costs when few windows fire at once.
    progress.phase('latency, 10 keys');
    const few = await latencyRun(shortSeconds, 10);

    // The earlier load, half the throughput, kept beside the target figure (the same run when that is the rate).
    progress.phase('latency, half throughput');
    const half = halfRate > rate ? await latencyRun(shortSeconds, THROUGHPUT_JOB.hashtags, halfRate) : lat;

    // The reference: the same generator and stream read by a bare JetStream consumer, no job.
    progress.phase('latency reference');
    const bare = (await latencyRun(shortSeconds, THROUGHPUT_JOB.hashtags, rate, true)) as unknown as BareConsumerOutcome;

    progress.phase('recovery');
    const rec = await runRecovery(nc, {
      url: server.url,
      windows: s.recoveryWindows,
      tagsPerPost: s.recoveryTagsPerPost,
      workDir: o.workDir,
      timeoutMs: 120_000,
      ...(o.profileDir ? { profileDir: join(o.profileDir, 'recovery') } : {}),
      onProgress: (f, label) => progress.update(f, label),
    });

    progress.phase('memory');
    progress.update(0.1, `${s.memoryWindows} windows in one WindowOperator`);
    const memory = measureWindowMemory(s.memoryWindows);

    progress.phase('state size');
    // Each size in a process of its own (state-only.js), as a job holding that state is: the stall
    // figures are of a heap holding the windows, not the benchmark's own leftovers besides them.
    const stateRows: StateRow[] = [];
    const stateTotal = s.stateSizes.reduce((a, b) => a + b, 0);
    for (const n of s.stateSizes) {
      progress.update(stateRows.reduce((a, r) => a + r.windows, 0) / stateTotal, `${n.toLocaleString('en-US')} windows (own process)`);
      stateRows.push(await isolated<StateRow>([String(n)], 'state-only.js'));
    }

    progress.phase('postgres');
    const postgres = await runPostgres({ rows: s.postgresRows, workDir: o.workDir, onProgress: (f, label) => progress.update(f, label) });
    progress.phase('scaling');
    let scaling: ScalingOutcome | undefined;
    let scalingPartitioned: ScalingOutcome | undefined;
    if (s.scalingPosts > 0) {
      scaling = await measureScaling({ url: server.url, serverPid: server.pid ?? 0, posts: s.scalingPosts, reps: 1, workDir: join(o.workDir, 'scaling'), onProgress: (f, label) => progress.update(f / 2, label) });
      // The same with a partitioned input, which two or more instances read partition by partition.
      scalingPartitioned = await measureScaling({ url: server.url, serverPid: server.pid ?? 0, posts: s.scalingPosts, reps: 1, inputPartitions: 4, workDir: join(o.workDir, 'scaling-p'), onProgress: (f, label) => progress.update(0.5 + f / 2, `--input-partitions 4, ${label}`) });
    }
    progress.done();

    env.loadAvg1mAfter = loadavg()[0] ?? 0;
    const on = thr.on;
    const throughputPostsPerSec = round(thr.onPostsPerSec);
    const baselinePostsPerSec = round(baseline.postsPerSec);
    const offPostsPerSec = round(thr.offPostsPerSec);
    const steadyOn = round(thr.onSteadyPostsPerSec);
    const { generator, ...latency } = lat;
    const partial: Omit<BenchResult, 'targets'> = {
      schema: 1,
      mode: o.mode,
      startedAt: started.toISOString(),
      finishedAt: new Date().toISOString(),
      durationMs: Date.now() - started.getTime(),
      phaseMs: { ...progress.phaseMs },
      env,
      workload: {
        posts: s.posts,
        avgPayloadBytes: round(workload.avgPayloadBytes, 1),
        distinctHashtags: workload.distinctHashtags,
        distinctKeys: workload.distinctHashtags + 1,
        eventSpanMs: workload.eventSpanMs,
        window: THROUGHPUT_JOB.window,
        keys: THROUGHPUT_JOB.keys,
        maxOutOfOrdernessMs: THROUGHPUT_JOB.maxOutOfOrdernessMs,
        lateFraction: THROUGHPUT_JOB.lateFraction,
      },
      throughput: {
        postsPerSec: throughputPostsPerSec,
        method: 'wall clock: spawn of `tidemark run --drain` to its exit on a pre-filled stream, nothing subtracted; median of the runs',
        steadyPostsPerSec: steadyOn,
        checkpointInterval: '1s',
        runs: on.length,
        wallMs: on.map((r) => round(r.wallMs)),
        steadyMs: on.map((r) => round(r.steadyMs)),
        resultsAtSink: on[0]?.resultsAtSink ?? 0,
        resultsLogged: on[0]?.resultsLogged ?? 0,
        late: on[0]?.late ?? 0,
      },
      baseline: {
        postsPerSec: baselinePostsPerSec,
        method: 'one warm tight loop in the benchmark process: parsePost, keys, scoreText, Map-based tumbling windows, JSON records; median pass',
        passes: baseline.passes.length,
        passMs: baseline.passes.map((p) => round(p.ms, 1)),
        results: baseline.passes[0]?.results ?? 0,
        late: baseline.passes[0]?.late ?? 0,
      },
      transport: {
        msgsPerSec: round(transport.msgsPerSec),
        messages: transport.messages,
        received: transport.received,
        payloadBytes: round(transport.payloadBytes, 1),
      },
      ratio: {
        throughputToBaseline: throughputPostsPerSec / baselinePostsPerSec,
        steadyThroughputToBaseline: steadyOn / baselinePostsPerSec,
        throughputToTransport: throughputPostsPerSec / round(transport.msgsPerSec),
      },
      latency: {
        ...latency,
        rateBasis: rate === ISSUE_LATENCY_RATE ? 'issue' : 'half-throughput',
        method: `open loop at ${ISSUE_LATENCY_RATE} posts/s (the issue's rate; half the throughput when that is lower), core NATS publish into the stream; from the intended send time of the post that moves the watermark past a window end to that window result at a NATS subscriber; µs HdrHistogram`,
      },
      generator,
      latencyHalfLoad: {
        atPostsPerSec: half.atPostsPerSec,
        sameRunAsLatency: half === lat,
        p50Ms: half.p50Ms,
        p99Ms: half.p99Ms,
        p999Ms: half.p999Ms,
        maxMs: half.maxMs,
        samples: half.samples,
        expectedSamples: half.expectedSamples,
        generatorKeptUp: half.generator.keptUp,
      },
      latencyFewKeys: {
        hashtags: 10,
        atPostsPerSec: few.atPostsPerSec,
        p50Ms: few.p50Ms,
        p99Ms: few.p99Ms,
        maxMs: few.maxMs,
        samples: few.samples,
        generatorKeptUp: few.generator.keptUp,
      },
      latencyReference: {
        method: 'the same open-loop generator into a JetStream stream, read by a bare JetStream consumer (nats.js ordered consumer, no acks) in a process of its own with the generator: no job, no actors; each post from its intended send time to its arrival',
        atPostsPerSec: bare.atPostsPerSec,
        p50Ms: bare.p50Ms,
        p99Ms: bare.p99Ms,
        p999Ms: bare.p999Ms,
        maxMs: bare.maxMs,
        samples: bare.samples,
        expectedSamples: bare.expectedSamples,
        generatorKeptUp: bare.generator.keptUp,
      },
      checkpoint: {
        overheadRatio: throughputPostsPerSec / offPostsPerSec,
        onPostsPerSec: throughputPostsPerSec,
        offPostsPerSec,
        steadyOverheadRatio: steadyOn / round(thr.offSteadyPostsPerSec),
        runsPerSetting: s.reps,
      },
      recovery: {
        msFor100kWindows: rec.msToFirstResult === null ? null : round(rec.msToFirstResult),
        method: 'spawn of the restarted job (after kill -9) to its first result at a NATS subscriber; the post that fires the restored windows is in the stream before the restart',
        windows: rec.windows,
        windowsRestored: rec.windowsRestored,
        msToRecoveredLog: rec.msToRecoveredLog === null ? null : round(rec.msToRecoveredLog),
        loggedRecoveryMs: rec.loggedRecoveryMs,
        msToAllResults: rec.msToAllResults === null ? null : round(rec.msToAllResults),
        checkpointBytes: rec.checkpointBytes,
        checkpointMs: rec.checkpointMs,
        ...(rec.error ? { error: rec.error } : {}),
      },
      postgres,
      ...(scaling ? { scaling } : {}),
      ...(scalingPartitioned ? { scalingPartitioned } : {}),
      orders: { ...orders, ordersPerSec: round(orders.ordersPerSec), wallMs: orders.wallMs.map((x) => round(x)), toSentimentThroughput: round(round(orders.ordersPerSec) / round(thr.onPostsPerSec), 3) },
      memory: { ...memory, bytesPerOpenWindow: round(memory.bytesPerOpenWindow), bytesPerPendingWindow: round(memory.bytesPerPendingWindow) },
      state: {
        method: 'each size in a process of its own (dist/benchmarks/state-only.js), real LevelDB, the actors\' own steps (barrier slices sealed and opened on the msgpack channel, the sink\'s checkpoint entries, the store\'s write and restore, restoreGroups, applyBatch): N live windows (one tumbling minute, one key each); full checkpoint; posts to 1% of the windows and an incremental checkpoint; restore of the chain and of the operator; then the watermark passes every window (results handed on in slices); meanwhile a batch of 100 deltas flows through the channel into another operator every 2 ms; the worst event-loop delay (monitorEventLoopDelay, 5 ms resolution) over all of it, and per phase (delayByPhaseMs)',
        maxEventLoopDelayMs: round(stateRows[stateRows.length - 1]?.maxEventLoopDelayMs ?? NaN, 1),
        windowsAtMaxDelay: stateRows[stateRows.length - 1]?.windows ?? 0,
        rows: stateRows.map((r) => ({
          ...r,
          fullCheckpointMs: round(r.fullCheckpointMs, 1),
          deltaCheckpointMs: round(r.deltaCheckpointMs, 1),
          deltaToFullBytes: round(r.deltaToFullBytes, 4),
          storeRestoreMs: round(r.storeRestoreMs, 1),
          operatorRestoreMs: round(r.operatorRestoreMs, 1),
          restoreMs: round(r.restoreMs, 1),
          firstResultsMs: round(r.firstResultsMs, 1),
          allResultsMs: round(r.allResultsMs, 1),
          maxEventLoopDelayMs: round(r.maxEventLoopDelayMs, 1),
        })),
      },
    };
    return { ...partial, targets: evaluateTargets(partial) };
  } finally {
    progress.done();
    await nc.close().catch(() => undefined);
    await server.stop();
    rmSync(o.workDir, { recursive: true, force: true });
  }
}

/** File-name stamp of a result: ISO 8601 with `-` for `:` (portable file names). */
export const stampOf = (iso: string): string => iso.replace(/\.\d+Z$/, 'Z').replace(/:/g, '-');

/** Writes latest.json, <ISO date>.json and latest.svg into `outDir`; returns their paths. */
export function writeResults(r: BenchResult, outDir: string): { latest: string; dated: string; svg: string } {
  mkdirSync(outDir, { recursive: true });
  const json = JSON.stringify(r, null, 2) + '\n';
  const latest = join(outDir, 'latest.json');
  const dated = join(outDir, `${stampOf(r.startedAt)}.json`);
  const svg = join(outDir, 'latest.svg');
  writeFileSync(latest, json);
  writeFileSync(dated, json);
  writeFileSync(svg, renderSvg(r));
  return { latest, dated, svg };
}
