// Result latency under a fixed load: an open-loop generator publishes posts on schedule with core
// NATS into the job's input stream; every window result is timed from the intended publish time of
// the post that moved the watermark past the window's end (coordinated omission corrected).

import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { build, encodeIntoCompressedBase64, type Histogram } from 'hdr-histogram-js';
import { syntheticPosts } from '../src/runtime/synthetic.js';
import { keyExtractor, parseKeySpec } from '../src/runtime/keys.js';
import { JobProcess, isStartLine } from './job-process.js';
import { epochNow, sleep, waitUntil } from './common.js';

export interface LatencyOptions {
  url: string;
  /** posts per second the generator keeps to */
  rate: number;
  durationMs: number;
  /** windows whose trigger falls in the first `warmupMs` are not sampled (JIT warm-up) */
  warmupMs: number;
  windowMs: number;
  maxOutOfOrdernessMs: number;
  hashtags: number;
  workDir: string;
  /** node flags of the job process (e.g. --cpu-prof) */
  nodeFlags?: string[];
  onProgress?: (fraction: number, label: string) => void;
}

export interface LatencyOutcome {
  p50Ms: number;
  p90Ms: number;
  p99Ms: number;
  p999Ms: number;
  maxMs: number;
  meanMs: number;
  atPostsPerSec: number;
  /** results timed (revision 0 of windows triggered after the warm-up) */
  samples: number;
  /** results the schedule says must arrive in the sampled range */
  expectedSamples: number;
  /** expected results that never arrived before the deadline */
  missingSamples: number;
  histogramTotalCount: number;
  /** the histogram (µs), HdrHistogram's compressed base64 encoding */
  histogram: string;
  durationMs: number;
  warmupMs: number;
  windowMs: number;
  maxOutOfOrdernessMs: number;
  generator: GeneratorOutcome;
  /**
   * The same from the first window on, the warm-up included (a job just started or restarted: its
   * code not yet compiled by the JIT, its heap still growing).
   */
  wholeRun: { p50Ms: number; p99Ms: number; maxMs: number; samples: number };
  /** per sampled window (in trigger order), when its last result arrived (ms after the trigger): where the p99 comes from */
  lastResultPerWindowMs: number[];
}

export interface GeneratorOutcome {
  keptUp: boolean;
  scheduled: number;
  sent: number;
  /** how late a post left compared with its schedule */
  sendLagP50Ms: number;
  sendLagP99Ms: number;
  sendLagMaxMs: number;
  /** achieved rate over the run */
  actualPostsPerSec: number;
}

/** The rate of the latency target (issue 10: result latency at 20k posts/s, ~1000 keys). */
export const ISSUE_LATENCY_RATE = 20_000;

/** The generator kept its schedule when it sent every post and 99% of them within this lag. */
export const KEPT_UP_P99_LAG_MS = 5;

const hist = (): Histogram => build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });

/** An open-loop schedule: `n` posts at a fixed rate from `tStart`, each one's payload built before the first send. */
export interface Schedule {
  n: number;
  rate: number;
  /** intended send time of post 0 (epoch ms) */
  tStart: number;
  /** intended send time of post i (epoch ms); its event time is the floor of it */
  intended: (i: number) => number;
  /** the payload of post i */
  payload: (i: number) => Uint8Array;
  /** the keys of post i */
  keys: (i: number) => string[];
}

/** The posts of an open-loop run (the job's own synthetic posts, `hashtags` distinct tags), starting shortly. */
export function buildSchedule(rate: number, durationMs: number, hashtags: number): Schedule {
  const n = Math.max(1, Math.round((rate * durationMs) / 1000));
  const interval = 1000 / rate;
  const gen = syntheticPosts({ keys: hashtags, lateFraction: 0, jitter: 0, lateBy: 0, seed: 7, startTs: 0, step: 1 });
  const keysOf = keyExtractor(parseKeySpec('hashtags,all'));
  const bodies: string[] = new Array(n);
  const keyLists: string[][] = new Array(n);
  for (let i = 0; i < n; i++) {
    const p = gen.next().value!;
    bodies[i] = `"text":${JSON.stringify(p.text)},"lang":"en","user":"${p.user}"}`;
    keyLists[i] = keysOf(p.text);
  }
  const tStart = Math.ceil(epochNow()) + 300;
  const intended = (i: number): number => tStart + i * interval;
  const enc = new TextEncoder();
  return {
    n,
    rate,
    tStart,
    intended,
    payload: (i) => enc.encode(`{"id":"l${i}","ts":${Math.floor(intended(i))},${bodies[i]}`),
    keys: (i) => keyLists[i]!,
  };
}

/** Open loop: publishes every post that is due with core NATS, never waiting for the system under test. */
export async function openLoop(nc: NatsConnection, subject: string, s: Schedule, onProgress?: (fraction: number, label: string) => void): Promise<GeneratorOutcome> {
  const lag = hist();
  const durationS = Math.round((s.n / s.rate));
  let i = 0;
  let lastReport = 0;
  while (i < s.n) {
    const now = epochNow();
    while (i < s.n && s.intended(i) <= now) {
      nc.publish(subject, s.payload(i));
      lag.recordValue(Math.max(1, Math.round((now - s.intended(i)) * 1000)));
      i++;
    }
    if (now - lastReport > 250) {
      lastReport = now;
      onProgress?.(i / s.n, `open-loop generator at ${Math.round(s.rate)} posts/s: ${Math.round((now - s.tStart) / 1000)}/${durationS} s`);
    }
    if (i < s.n) await sleep(Math.max(0, s.intended(i) - epochNow()));
  }
  const sentAt = epochNow();
  await nc.flush();
  return {
    keptUp: i === s.n && lag.getValueAtPercentile(99) / 1000 <= KEPT_UP_P99_LAG_MS,
    scheduled: s.n,
    sent: i,
    sendLagP50Ms: lag.getValueAtPercentile(50) / 1000,
    sendLagP99Ms: lag.getValueAtPercentile(99) / 1000,
    sendLagMaxMs: lag.maxValue / 1000,
    actualPostsPerSec: (i / (sentAt - s.tStart)) * 1000,
  };
}

/** Percentiles of a latency histogram (µs) in ms; a percentile is never reported above the true max. */
function percentiles(h: Histogram): Pick<LatencyOutcome, 'p50Ms' | 'p90Ms' | 'p99Ms' | 'p999Ms' | 'maxMs' | 'meanMs'> {
  const p = (q: number): number => Math.min(h.getValueAtPercentile(q), h.maxValue) / 1000;
  return { p50Ms: p(50), p90Ms: p(90), p99Ms: p(99), p999Ms: p(99.9), maxMs: h.maxValue / 1000, meanMs: h.mean / 1000 };
}

/** Records one latency sample (ms) in a µs histogram. */
const record = (h: Histogram, ms: number): void => h.recordValue(Math.max(1, Math.round(ms * 1000)));

/**
 * Window end and revision of a result, read from its id (`job/key/start/end/revision`, the key may
 * hold `/`) without parsing the whole record: the subscriber's own work per result stays small, so
 * a thousand results arriving together are not timed later than they arrived.
 */
const idHead = new TextDecoder();
export function endAndRevision(data: Uint8Array): { end: number; revision: number } | undefined {
  // `{"id":"…"` comes first: the sinks serialise the record as built.
  const head = idHead.decode(data.subarray(0, Math.min(data.length, 600)));
  const m = /^\{"id":"(?:[^"\\]|\\.)*?\/(-?\d+)\/(\d+)"/.exec(head);
  return m ? { end: Number(m[1]), revision: Number(m[2]) } : undefined;
}

export async function runLatency(nc: NatsConnection, o: LatencyOptions): Promise<LatencyOutcome> {
  const stream = 'BENCH_LAT';
  const subject = 'benchlat.in';
  const sinkSubject = 'bench.lat.results';
  const jsm = await nc.jetstreamManager();
  await jsm.streams.delete(stream).catch(() => undefined);
  await jsm.streams.add({ name: stream, subjects: ['benchlat.>'] });

  const job = new JobProcess(
    [
      '--nats', o.url,
      '--job', 'lat',
      '--input-stream', stream,
      '--input-subjects', 'benchlat.>',
      '--window', `tumbling:${o.windowMs}ms`,
      '--max-out-of-orderness', `${o.maxOutOfOrdernessMs}ms`,
      '--keys', 'hashtags,all',
      '--sink', `nats:${sinkSubject}`,
      '--state-dir', join(o.workDir, 'lat'),
      '--reset-state',
      '--checkpoint-interval', '1s',
    ],
    { nodeFlags: o.nodeFlags ?? [] },
  );
  try {
    await job.waitFor(isStartLine, 30_000, 'its start-up line');

    // The schedule, computed before the first send: intended times, payloads, triggers, expectations.
    const s = buildSchedule(o.rate, o.durationMs, o.hashtags);
    const measureFrom = s.tStart + o.warmupMs;
    const size = o.windowMs;
    // Window end → intended send time of the first post whose event time moves the watermark to ≥ end.
    const trigger = new Map<number, number>();
    // Window end → distinct keys with posts in that window (each one result, revision 0).
    const keysPerEnd = new Map<number, Set<string>>();
    let nextEnd = Math.floor(Math.floor(s.intended(0)) / size) * size + size;
    for (let i = 0; i < s.n; i++) {
      const ts = Math.floor(s.intended(i));
      const end = Math.floor(ts / size) * size + size;
      let set = keysPerEnd.get(end);
      if (!set) keysPerEnd.set(end, (set = new Set()));
      for (const k of s.keys(i)) set.add(k);
      const wm = ts - o.maxOutOfOrdernessMs;
      while (nextEnd <= wm) {
        trigger.set(nextEnd, s.intended(i));
        nextEnd += size;
      }
    }
    let expectedSamples = 0;
    for (const [end, t] of trigger) if (t >= measureFrom) expectedSamples += keysPerEnd.get(end)?.size ?? 0;

    const latency = hist();
    const whole = hist();
    let samples = 0;
    const lastOf = new Map<number, number>();
    const sub = nc.subscribe(sinkSubject, {
      callback: (_err, m) => {
        const at = epochNow();
        const rec = endAndRevision(m.data);
        if (!rec || rec.revision !== 0) return;
        const t = trigger.get(rec.end);
        if (t === undefined) return;
        record(whole, at - t);
        if (t < measureFrom) return;
        record(latency, at - t);
        lastOf.set(rec.end, at - t);
        samples++;
      },
    });
    await nc.flush();

    const generator = await openLoop(nc, subject, s, o.onProgress);
    // Every triggered window's results should arrive shortly; give them a generous deadline.
    await waitUntil(() => samples >= expectedSamples, 10_000, 'latency results').catch(() => undefined);
    sub.unsubscribe();

    return {
      ...percentiles(latency),
      atPostsPerSec: o.rate,
      samples,
      expectedSamples,
      missingSamples: Math.max(0, expectedSamples - samples),
      histogramTotalCount: latency.totalCount,
      histogram: encodeIntoCompressedBase64(latency),
      durationMs: o.durationMs,
      warmupMs: o.warmupMs,
      windowMs: o.windowMs,
      maxOutOfOrdernessMs: o.maxOutOfOrdernessMs,
      generator,
      wholeRun: (({ p50Ms, p99Ms, maxMs }) => ({ p50Ms, p99Ms, maxMs, samples: whole.totalCount }))(percentiles(whole)),
      lastResultPerWindowMs: [...lastOf].sort(([a], [b]) => a - b).map(([, ms]) => Math.round(ms * 10) / 10),
    };
  } finally {
    await job.stop();
    await jsm.streams.delete(stream).catch(() => undefined);
  }
}

export interface BareConsumerOutcome extends Pick<LatencyOutcome, 'p50Ms' | 'p90Ms' | 'p99Ms' | 'p999Ms' | 'maxMs' | 'meanMs'> {
  atPostsPerSec: number;
  /** posts timed (those scheduled after the warm-up) */
  samples: number;
  expectedSamples: number;
  generator: GeneratorOutcome;
}

/**
 * The reference of the latency figure: the same open-loop generator into a JetStream stream, read
 * by a bare JetStream consumer (nats.js ordered consumer, no acks) in this process on its own
 * connection — no job, no actors. Each post is timed from its intended send time to its arrival.
 */
export async function runBareConsumer(nc: NatsConnection, o: Pick<LatencyOptions, 'url' | 'rate' | 'durationMs' | 'warmupMs' | 'hashtags' | 'onProgress'>): Promise<BareConsumerOutcome> {
  const stream = 'BENCH_BARE';
  const subject = 'benchbare.in';
  const jsm = await nc.jetstreamManager();
  await jsm.streams.delete(stream).catch(() => undefined);
  await jsm.streams.add({ name: stream, subjects: ['benchbare.>'] });
  const reader = await connect({ servers: o.url, name: 'tidemark-bench-bare-consumer' });
  try {
    const s = buildSchedule(o.rate, o.durationMs, o.hashtags);
    const measureFrom = s.tStart + o.warmupMs;
    let expectedSamples = 0;
    for (let i = 0; i < s.n; i++) if (s.intended(i) >= measureFrom) expectedSamples++;
    const latency = hist();
    let samples = 0;
    let received = 0;
    const consumer = await reader.jetstream().consumers.get(stream);
    // The stream is new: post i is stream sequence i + 1.
    const messages = await consumer.consume({
      callback: (m) => {
        const at = epochNow();
        received++;
        const t = s.intended(m.seq - 1);
        if (t < measureFrom) return;
        record(latency, at - t);
        samples++;
      },
    });
    const generator = await openLoop(nc, subject, s, o.onProgress);
    await waitUntil(() => received >= s.n, 10_000, 'the bare consumer to read every post').catch(() => undefined);
    await messages.close();
    return { atPostsPerSec: o.rate, ...percentiles(latency), samples, expectedSamples, generator };
  } finally {
    await reader.close().catch(() => undefined);
    await jsm.streams.delete(stream).catch(() => undefined);
  }
}
