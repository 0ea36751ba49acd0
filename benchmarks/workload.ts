// The benchmark workload: synthetic posts from the `sentiment` package's real review sentences,
// encoded once as the exact bytes that go into JetStream, so every phase works on the same input.

import { syntheticPosts } from '../src/runtime/synthetic.js';

/** What the throughput, baseline and transport phases share. */
export interface Workload {
  payloads: Uint8Array[];
  avgPayloadBytes: number;
  /** Distinct hashtags that occur in the posts (the `*` key comes on top). */
  distinctHashtags: number;
  /** Event-time span of the posts in ms. */
  eventSpanMs: number;
}

/** The job flags the throughput phase and the baseline agree on. */
export const THROUGHPUT_JOB = {
  window: 'tumbling:1m',
  windowMs: 60_000,
  keys: 'hashtags,all',
  maxOutOfOrdernessMs: 5_000,
  /** ~1000 distinct hashtags, as the issue asks. */
  hashtags: 1000,
  lateFraction: 0.01,
  /** Event time advances 2 ms per post: 100k posts span 200 s, a few 1-minute windows. */
  stepMs: 2,
} as const;

/** Fixed, minute-aligned event-time origin: runs are reproducible byte for byte. */
export const WORKLOAD_EPOCH = Date.UTC(2025, 0, 1);

/** Builds `n` posts (seeded) as JSON bytes. */
export function buildWorkload(n: number, seed = 1): Workload {
  const gen = syntheticPosts({
    keys: THROUGHPUT_JOB.hashtags,
    lateFraction: THROUGHPUT_JOB.lateFraction,
    jitter: 2000,
    lateBy: 60_000,
    seed,
    startTs: WORKLOAD_EPOCH,
    step: THROUGHPUT_JOB.stepMs,
  });
  const enc = new TextEncoder();
  const payloads: Uint8Array[] = new Array(n);
  const tags = new Set<string>();
  let bytes = 0;
  let minTs = Infinity;
  let maxTs = -Infinity;
  for (let i = 0; i < n; i++) {
    const p = gen.next().value!;
    for (const m of p.text.matchAll(/#topic\d+/g)) tags.add(m[0]);
    if (p.ts < minTs) minTs = p.ts;
    if (p.ts > maxTs) maxTs = p.ts;
    const b = enc.encode(JSON.stringify(p));
    bytes += b.length;
    payloads[i] = b;
  }
  return { payloads, avgPayloadBytes: n ? bytes / n : 0, distinctHashtags: tags.size, eventSpanMs: n ? maxTs - minTs : 0 };
}
