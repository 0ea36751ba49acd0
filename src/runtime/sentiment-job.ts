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

const empty = (): SentimentAcc => ({ count: 0, positive: 0, negative: 0, neutral: 0, scoreSum: 0 });

/** The sentiment job for a key spec. */
export function sentimentJob(opts: { keys: KeySpec }): JobDefinition<Post, SentimentAcc, SentimentResult> {
  const keysOf = keyExtractor(opts.keys);
  return defineJob({
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
      result: (acc) => ({ ...acc, avgScore: acc.count === 0 ? 0 : acc.scoreSum / acc.count }),
    },
  });
}
