// The reference for throughput: the job's per-post work (JSON decode and validation, AFINN
// sentiment, keys, tumbling-window aggregation, result and late records as JSON) as one tight loop.
//
// It calls the same per-post functions the job calls (parsePost, scoreText, keyExtractor) and
// does the window bookkeeping itself with plain Maps: no NATS, no actors, no xstate, no snapshots.

import { parsePost } from '../src/runtime/post.js';
import { scoreText } from '../src/runtime/sentiment.js';
import { keyExtractor, parseKeySpec } from '../src/runtime/keys.js';
import { median } from './common.js';

export interface BaselineConfig {
  job: string;
  windowMs: number;
  maxOutOfOrdernessMs: number;
  keys: string;
}

export interface BaselineOutcome {
  posts: number;
  results: number;
  late: number;
  dead: number;
  /** bytes of JSON the results and late records serialise to (keeps the work observable) */
  outputBytes: number;
  ms: number;
}

interface Agg {
  count: number;
  positive: number;
  negative: number;
  neutral: number;
  scoreSum: number;
}

/** One pass over the payloads: drain semantics (watermark +∞ at the end), allowed lateness 0. */
export function baselinePass(payloads: readonly Uint8Array[], cfg: BaselineConfig): BaselineOutcome {
  const t0 = performance.now();
  const keysOf = keyExtractor(parseKeySpec(cfg.keys));
  const size = cfg.windowMs;
  // Open windows by end, then by key; ends are few (one per window size of event time).
  const open = new Map<number, Map<string, Agg>>();
  let ends: number[] = [];
  let maxTs = -Infinity;
  let wm = -Infinity;
  let results = 0;
  let late = 0;
  let dead = 0;
  let outputBytes = 0;

  const fireUpTo = (w: number): void => {
    while (ends.length > 0 && ends[0]! <= w) {
      const end = ends.shift()!;
      const start = end - size;
      for (const [key, a] of open.get(end)!) {
        const rec = {
          id: `${cfg.job}/${key}/${start}/${end}/0`,
          job: cfg.job,
          key,
          window: { start, end },
          count: a.count,
          positive: a.positive,
          negative: a.negative,
          neutral: a.neutral,
          scoreSum: a.scoreSum,
          avgScore: a.scoreSum / a.count,
          revision: 0,
          final: true,
          watermark: Number.isFinite(w) ? w : null,
        };
        outputBytes += JSON.stringify(rec).length;
        results++;
      }
      open.delete(end);
    }
  };

  for (const payload of payloads) {
    const parsed = parsePost(payload);
    if (!parsed.ok) {
      dead++;
      continue;
    }
    const { id, ts, text, lang } = parsed.post;
    const keys = keysOf(text);
    if (keys.length > 0) {
      const s = scoreText(text, lang);
      const start = Math.floor(ts / size) * size;
      const end = start + size;
      if (end <= wm) {
        // Judged against the watermark in force before this post: too late for its window.
        for (const key of keys) {
          outputBytes += JSON.stringify({ id: `${cfg.job}/${key}/${start}/${end}/${id}`, postId: id, key, window: { start, end }, ts, watermark: wm }).length;
          late++;
        }
      } else {
        let byKey = open.get(end);
        if (!byKey) {
          open.set(end, (byKey = new Map()));
          ends.push(end);
          if (ends.length > 1 && ends[ends.length - 2]! > end) ends = ends.sort((a, b) => a - b);
        }
        for (const key of keys) {
          let a = byKey.get(key);
          if (!a) byKey.set(key, (a = { count: 0, positive: 0, negative: 0, neutral: 0, scoreSum: 0 }));
          a.count++;
          a.scoreSum += s;
          if (s > 0) a.positive++;
          else if (s < 0) a.negative++;
          else a.neutral++;
        }
      }
    }
    if (ts > maxTs) {
      maxTs = ts;
      const w = maxTs - cfg.maxOutOfOrdernessMs;
      if (w > wm) {
        wm = w;
        if (ends.length > 0 && ends[0]! <= wm) fireUpTo(wm);
      }
    }
  }
  fireUpTo(Infinity);
  return { posts: payloads.length, results, late, dead, outputBytes, ms: performance.now() - t0 };
}

/** Warm-up pass, then `reps` timed passes; the rate is the median pass's. */
export function runBaseline(payloads: readonly Uint8Array[], cfg: BaselineConfig, reps: number): { postsPerSec: number; passes: BaselineOutcome[] } {
  baselinePass(payloads.slice(0, Math.min(payloads.length, 20_000)), cfg);
  const passes: BaselineOutcome[] = [];
  for (let i = 0; i < Math.max(1, reps); i++) passes.push(baselinePass(payloads, cfg));
  return { postsPerSec: median(passes.map((p) => (p.posts / p.ms) * 1000)), passes };
}
