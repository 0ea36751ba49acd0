// Result latency under a fixed load: an open-loop generator publishes posts on schedule with core
// NATS into the job's input stream; every window result is timed from the intended publish time of
// the post that moved the watermark past the window's end (coordinated omission corrected).

import { join } from 'node:path';
import type { NatsConnection } from 'nats';
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

/** The generator kept its schedule when it sent every post and 99% of them within this lag. */
export const KEPT_UP_P99_LAG_MS = 5;

const hist = (): Histogram => build({ lowestDiscernibleValue: 1, highestTrackableValue: 3_600_000_000, numberOfSignificantValueDigits: 3 });

export async function runLatency(nc: NatsConnection, o: LatencyOptions): Promise<LatencyOutcome> {
  const stream = 'BENCH_LAT';
  const subject = 'benchlat.in';
  const sinkSubject = 'bench.lat.results';
  const jsm = await nc.jetstreamManager();
  await jsm.streams.delete(stream).catch(() => undefined);
  await jsm.streams.add({ name: stream, subjects: ['benchlat.>'] });

  const job = new JobProcess([
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
  ]);
  try {
    await job.waitFor(isStartLine, 30_000, 'its start-up line');

    // The schedule, computed before the first send: intended times, payloads, triggers, expectations.
    const n = Math.max(1, Math.round((o.rate * o.durationMs) / 1000));
    const interval = 1000 / o.rate;
    const gen = syntheticPosts({ keys: o.hashtags, lateFraction: 0, jitter: 0, lateBy: 0, seed: 7, startTs: 0, step: 1 });
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
    const measureFrom = tStart + o.warmupMs;
    const size = o.windowMs;
    // Window end → intended send time of the first post whose event time moves the watermark to ≥ end.
    const trigger = new Map<number, number>();
    // Window end → distinct keys with posts in that window (each one result, revision 0).
    const keysPerEnd = new Map<number, Set<string>>();
    let nextEnd = Math.floor(Math.floor(intended(0)) / size) * size + size;
    for (let i = 0; i < n; i++) {
      const ts = Math.floor(intended(i));
      const end = Math.floor(ts / size) * size + size;
      let set = keysPerEnd.get(end);
      if (!set) keysPerEnd.set(end, (set = new Set()));
      for (const k of keyLists[i]!) set.add(k);
      const wm = ts - o.maxOutOfOrdernessMs;
      while (nextEnd <= wm) {
        trigger.set(nextEnd, intended(i));
        nextEnd += size;
      }
    }
    let expectedSamples = 0;
    for (const [end, t] of trigger) if (t >= measureFrom) expectedSamples += keysPerEnd.get(end)?.size ?? 0;

    const latency = hist();
    let samples = 0;
    const sub = nc.subscribe(sinkSubject, {
      callback: (_err, m) => {
        const at = epochNow();
        const rec = JSON.parse(new TextDecoder().decode(m.data)) as { revision: number; window: { end: number } };
        if (rec.revision !== 0) return;
        const t = trigger.get(rec.window.end);
        if (t === undefined || t < measureFrom) return;
        latency.recordValue(Math.max(1, Math.round((at - t) * 1000)));
        samples++;
      },
    });
    await nc.flush();

    // Open loop: send everything that is due, never wait for the system under test.
    const lag = hist();
    const enc = new TextEncoder();
    let i = 0;
    let lastReport = 0;
    while (i < n) {
      const now = epochNow();
      while (i < n && intended(i) <= now) {
        const ts = Math.floor(intended(i));
        nc.publish(subject, enc.encode(`{"id":"l${i}","ts":${ts},${bodies[i]}`));
        lag.recordValue(Math.max(1, Math.round((now - intended(i)) * 1000)));
        i++;
      }
      if (now - lastReport > 250) {
        lastReport = now;
        o.onProgress?.(i / n, `open-loop generator at ${Math.round(o.rate)} posts/s: ${Math.round((now - tStart) / 1000)}/${Math.round(o.durationMs / 1000)} s`);
      }
      if (i < n) await sleep(Math.max(0, intended(i) - epochNow()));
    }
    const sentAt = epochNow();
    await nc.flush();
    // Every triggered window's results should arrive shortly; give them a generous deadline.
    await waitUntil(() => samples >= expectedSamples, 10_000, 'latency results').catch(() => undefined);
    sub.unsubscribe();

    // A percentile is its bucket's highest equivalent value: never report it above the true max.
    const p = (q: number): number => Math.min(latency.getValueAtPercentile(q), latency.maxValue) / 1000;
    const generator: GeneratorOutcome = {
      keptUp: i === n && lag.getValueAtPercentile(99) / 1000 <= KEPT_UP_P99_LAG_MS,
      scheduled: n,
      sent: i,
      sendLagP50Ms: lag.getValueAtPercentile(50) / 1000,
      sendLagP99Ms: lag.getValueAtPercentile(99) / 1000,
      sendLagMaxMs: lag.maxValue / 1000,
      actualPostsPerSec: (i / (sentAt - tStart)) * 1000,
    };
    return {
      p50Ms: p(50),
      p90Ms: p(90),
      p99Ms: p(99),
      p999Ms: p(99.9),
      maxMs: latency.maxValue / 1000,
      meanMs: latency.mean / 1000,
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
    };
  } finally {
    await job.stop();
    await jsm.streams.delete(stream).catch(() => undefined);
  }
}
