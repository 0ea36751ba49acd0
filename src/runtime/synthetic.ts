// Synthetic posts from the real review sentences shipped inside the `sentiment` package
// (amazon, imdb, yelp fixtures), with hashtags, disorder and a controllable share of late posts.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

let sentences: string[] | undefined;
/** The review sentences of the `sentiment` package's test fixtures. */
export function reviewSentences(): string[] {
  if (!sentences) {
    sentences = [];
    for (const f of ['amazon', 'imdb', 'yelp']) {
      const rows = require(`sentiment/test/fixtures/${f}.json`) as Array<{ text: string }>;
      for (const r of rows) if (typeof r.text === 'string' && r.text.trim()) sentences.push(r.text.trim());
    }
  }
  return sentences;
}

/** mulberry32: a small seeded PRNG. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface GenOptions {
  keys: number;
  lateFraction: number;
  /** typical disorder in ms */
  jitter: number;
  /** how late a late post is, in ms */
  lateBy: number;
  seed: number;
  startTs: number;
  /** event-time ms between consecutive posts */
  step: number;
}

export interface SyntheticPost {
  id: string;
  ts: number;
  text: string;
  lang: 'en';
  user: string;
}

/** An endless generator of posts whose event time advances `step` ms per post. */
export function* syntheticPosts(o: GenOptions): Generator<SyntheticPost> {
  const rnd = prng(o.seed);
  const s = reviewSentences();
  const tag = (): string => `#topic${Math.floor(Math.pow(rnd(), 2) * o.keys)}`;
  for (let i = 0; ; i++) {
    const now = o.startTs + i * o.step;
    let ts = now - Math.floor(rnd() * o.jitter);
    if (rnd() < o.lateFraction) ts -= o.lateBy;
    const n = rnd() < 0.3 ? 2 : 1;
    const tags = Array.from({ length: n }, tag).join(' ');
    yield { id: `p${o.seed}-${i}`, ts, text: `${s[Math.floor(rnd() * s.length)]} ${tags}`, lang: 'en', user: `u${Math.floor(rnd() * 5000)}` };
  }
}
