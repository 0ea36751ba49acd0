// The built-in sentiment job (DESIGN.md §2), written with the same API as any user's job:
// posts are validated, keyed by hashtag / keyword / `*`, scored with AFINN and counted.

import { defineJob, RejectRecord, type JobDefinition } from './job-definition.js';
import { parsePost, type Post } from './post.js';
import { keyExtractor, type KeySpec } from './keys.js';
import { scoreText } from './sentiment.js';

/** Counts of a window's posts by polarity, and their score sum. */
export interface SentimentAcc {
  count: number;
  positive: number;
  negative: number;
  neutral: number;
  scoreSum: number;
}

/** The result fields of a sentiment window. */
export interface SentimentResult extends SentimentAcc {
  avgScore: number;
}

/**
 * With `examples`, a window also keeps its most negative and most positive post (id, score, text cut
 * to EXAMPLE_TEXT characters; ties go to the smaller id, so merging stays associative) as flat fields:
 * shown by `query` and the dashboard, checkpointed with the window, never part of a result.
 */
export interface SentimentExamples {
  minScore: number | null;
  minId: string | null;
  minText: string | null;
  maxScore: number | null;
  maxId: string | null;
  maxText: string | null;
}

export const EXAMPLE_TEXT = 200;

const empty = (): SentimentAcc => ({ count: 0, positive: 0, negative: 0, neutral: 0, scoreSum: 0 });
const noExamples = (): SentimentExamples => ({ minScore: null, minId: null, minText: null, maxScore: null, maxId: null, maxText: null });

/** The extreme of two examples: lower (or higher) score, then the smaller id. */
function pick(aScore: number | null, aId: string | null, bScore: number | null, bId: string | null, lower: boolean): 'a' | 'b' {
  if (bScore === null || bId === null) return 'a';
  if (aScore === null || aId === null) return 'b';
  if (aScore !== bScore) return (lower ? aScore < bScore : aScore > bScore) ? 'a' : 'b';
  return aId <= bId ? 'a' : 'b';
}

function mergeExamples(a: SentimentExamples, b: SentimentExamples): SentimentExamples {
  const lo = pick(a.minScore, a.minId, b.minScore, b.minId, true) === 'a' ? a : b;
  const hi = pick(a.maxScore, a.maxId, b.maxScore, b.maxId, false) === 'a' ? a : b;
  return { minScore: lo.minScore, minId: lo.minId, minText: lo.minText, maxScore: hi.maxScore, maxId: hi.maxId, maxText: hi.maxText };
}

const examplesOf = (acc: SentimentAcc & Partial<SentimentExamples>): Record<string, unknown> => {
  const one = (id: string | null | undefined, text: string | null | undefined, score: number | null | undefined, keep: (s: number) => boolean) =>
    id != null && score != null && keep(score) ? [{ id, text: text ?? '', score }] : [];
  return { examples: { negative: one(acc.minId, acc.minText, acc.minScore, (x) => x < 0), positive: one(acc.maxId, acc.maxText, acc.maxScore, (x) => x > 0) } };
};

/** The sentiment job for a key spec. */
export function sentimentJob(opts: { keys: KeySpec; examples?: boolean }): JobDefinition<Post, SentimentAcc, SentimentResult> {
  const keysOf = keyExtractor(opts.keys);
  const counts = defineJob({
    name: 'sentiment',
    decode: (bytes: Uint8Array): Post => {
      const parsed = parsePost(bytes);
      if (!parsed.ok) throw new RejectRecord(parsed.reason);
      return parsed.post;
    },
    eventTime: (p) => p.ts,
    id: (p) => p.id,
    keys: (p) => keysOf(p.text),
    aggregate: {
      init: empty,
      add: (acc, p) => {
        const score = scoreText(p.text, p.lang);
        return {
          count: acc.count + 1,
          positive: acc.positive + (score > 0 ? 1 : 0),
          negative: acc.negative + (score < 0 ? 1 : 0),
          neutral: acc.neutral + (score === 0 ? 1 : 0),
          scoreSum: acc.scoreSum + score,
        };
      },
      merge: (a, b) => ({
        count: a.count + b.count,
        positive: a.positive + b.positive,
        negative: a.negative + b.negative,
        neutral: a.neutral + b.neutral,
        scoreSum: a.scoreSum + b.scoreSum,
      }),
      result: (acc) => ({ count: acc.count, positive: acc.positive, negative: acc.negative, neutral: acc.neutral, scoreSum: acc.scoreSum, avgScore: acc.count === 0 ? 0 : acc.scoreSum / acc.count }),
    },
  });
  if (!opts.examples) return counts;
  // The same counts, with the window's extreme posts beside them.
  type WithExamples = SentimentAcc & SentimentExamples;
  const base = counts.aggregate;
  return defineJob<Post, WithExamples, SentimentResult>({
    ...counts,
    aggregate: {
      init: () => ({ ...base.init(), ...noExamples() }),
      add: (acc, p) => {
        const one = base.add(empty(), p);
        const score = one.scoreSum;
        const text = p.text.slice(0, EXAMPLE_TEXT);
        const ex: SentimentExamples = { minScore: score, minId: p.id, minText: text, maxScore: score, maxId: p.id, maxText: text };
        return { ...base.merge(acc, one), ...mergeExamples(acc, ex) };
      },
      merge: (a, b) => ({ ...base.merge(a, b), ...mergeExamples(a, b) }),
      result: (acc) => base.result(acc),
    },
    inspect: examplesOf,
  });
}
