// Seeded generators of post streams (raw message bodies) for the property tests.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** mulberry32: a tiny, well-known 32-bit seeded PRNG. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export class Rng {
  readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  /** integer in [lo, hi] */
  int(lo: number, hi: number): number {
    return lo + Math.floor(this.next() * (hi - lo + 1));
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.next() * xs.length)]!;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** Real English review sentences shipped with `sentiment`. */
export const ENGLISH: readonly string[] = (require('sentiment/test/fixtures/amazon.json') as { text: string }[]).map((r) => r.text);

/** Spanish sentences (lang: "es"), scored with the AFINN-es lexicon. */
export const SPANISH: readonly string[] = [
  'El servicio fue muy bueno y la comida excelente.',
  'Un producto malo, llegó roto y tarde.',
  'Estoy feliz con la compra, todo bueno.',
  'Qué día tan triste, el concierto fue terrible.',
  'La película es excelente, me hizo feliz.',
  'Atención terrible y un precio malo.',
  'Ni bueno ni malo, simplemente normal.',
  'El hotel es genial pero el desayuno es horrible.',
  'Me siento triste y aburrido hoy.',
  'El mejor café de la ciudad, excelente ambiente.',
  'La peor experiencia, todo fatal.',
  'Contento con el envío, el libro es bueno.',
  'Hoy llueve en Madrid.',
];

const HASHTAGS = ['#a', '#b', '#c', '#A', '#Nats', '#NATS', '#nats', '#día_1', '#Ñandú', '#x2'];
const KEYWORD_FORMS = ['good', 'GOOD', 'Good!', '(bad)', 'bad.', 'nats', 'NATS,', '#good', 'goodness', 'bad_idea', 'badly', 'xnats'];

export const KEYWORDS = ['good', 'bad', 'nats'];

function decorate(rng: Rng, text: string): string {
  const words: string[] = [text];
  const nTags = rng.pick([0, 0, 1, 1, 2, 3]);
  for (let i = 0; i < nTags; i++) words.push(rng.pick(HASHTAGS));
  if (rng.chance(0.2) && nTags > 0) words.push(words[words.length - 1]!); // repeated hashtag
  if (rng.chance(0.3)) words.push(rng.pick(KEYWORD_FORMS));
  if (rng.chance(0.1)) words.push('#a#b'); // two hashtags glued together
  // shuffle everything but keep it a sentence
  for (let i = words.length - 1; i > 0; i--) {
    const j = rng.int(0, i);
    [words[i], words[j]] = [words[j]!, words[i]!];
  }
  return words.join(' ');
}

/** Posts whose fields are all valid but exercise the edges of the validation rules. */
function edgyValidPost(rng: Rng, id: string, ts: number): Record<string, unknown> {
  switch (rng.int(0, 6)) {
    case 0: return { id: (id + '-'.repeat(256)).slice(0, 256), ts, text: 'max length id #edge' }; // 256 chars
    case 1: return { id: id + '😀'.repeat(128 - Math.ceil(id.length / 2)), ts, text: 'astral id #edge' }; // <= 256 UTF-16 units
    case 2: return { id, ts, text: 'é'.repeat(32765) + ' #bigx' }; // exactly 65536 UTF-8 bytes
    case 3: return { id, ts, text: '', user: 'someone' };
    case 4: return { id, ts, text: 'extra fields are ignored #extra', extra: [1, 2], nested: { a: 1 } };
    case 5: return { id, ts, text: 'lang given explicitly, good', lang: 'en' };
    default: return { id, ts: new Date(ts).toISOString().slice(0, 10), text: '#edge date only: midnight UTC, very late' };
  }
}

/** Malformed messages: each must become a dead letter. */
export function malformed(rng: Rng, id: string, ts: number): string {
  switch (rng.int(0, 17)) {
    case 0: return '{not json';
    case 1: return '';
    case 2: return JSON.stringify([{ id, ts, text: 'an array' }]);
    case 3: return JSON.stringify({ ts, text: 'missing id' });
    case 4: return JSON.stringify({ id: '', ts, text: 'empty id' });
    case 5: return JSON.stringify({ id: 'x'.repeat(257), ts, text: 'id too long' });
    case 6: return JSON.stringify({ id, ts: 'yesterday', text: 'bad ts' });
    case 7: return JSON.stringify({ id, ts: ts + 0.5, text: 'fractional ts' });
    case 8: return JSON.stringify({ id, text: 'missing ts' });
    case 9: return JSON.stringify({ id, ts, text: 'a'.repeat(65537) });
    case 10: return JSON.stringify({ id, ts, text: 'é'.repeat(32769) }); // 65538 bytes, 32769 chars
    case 11: return JSON.stringify({ id, ts, text: 'bad lang', lang: 'fr' });
    case 12: return JSON.stringify({ id, ts, text: 'null lang', lang: null });
    case 13: return JSON.stringify({ id, ts, text: 42 });
    case 14: return JSON.stringify({ id: 7, ts, text: 'numeric id' });
    case 15: return JSON.stringify({ id, ts, text: 'user not a string', user: 12 });
    case 16: return JSON.stringify({ id, ts: '2025-13-01T00:00:00Z', text: 'month 13' });
    default: return rng.pick(['null', '42', '"a string"', 'true']);
  }
}

function isoOf(rng: Rng, ts: number): string {
  const iso = new Date(ts).toISOString(); // 2025-11-24T16:00:00.123Z
  switch (rng.int(0, 3)) {
    case 0: return iso;
    case 1: return iso.slice(0, -1); // no offset: UTC
    case 2: {
      // same instant with a +02:00 offset
      const shifted = new Date(ts + 2 * 3600_000).toISOString().slice(0, -1);
      return `${shifted}+02:00`;
    }
    default: {
      const shifted = new Date(ts - 5 * 3600_000 - 30 * 60_000).toISOString().slice(0, -1);
      return `${shifted}-05:30`;
    }
  }
}

export interface StreamOptions {
  /** number of messages */
  n: number;
  /** the window grid: boundary posts snap to multiples of it (window size, slide or session gap) */
  unit: number;
  /** typical clock advance per post, ms */
  step: number;
  maxOutOfOrderness: number;
  /** probability of a malformed message */
  pMalformed?: number;
}

export const BASE_TS = 1_764_000_000_000; // a multiple of 600000

/**
 * A stream of posts with random disorder, late and very late posts, big clock jumps, posts on
 * the first and last millisecond of grid cells, several keys per post, ISO and numeric ts, and
 * some malformed messages.
 */
export function genStream(seed: number, o: StreamOptions): string[] {
  const rng = new Rng(seed);
  const out: string[] = [];
  let clock = BASE_TS + rng.int(0, o.unit);
  for (let i = 0; i < o.n; i++) {
    const id = `p${seed}-${i}`;
    clock += rng.int(0, 2 * o.step);
    if (rng.chance(0.03)) clock += rng.int(o.unit, 6 * o.unit); // big jump: fire and close at once
    let ts: number;
    const r = rng.next();
    if (r < 0.6) ts = clock - rng.int(0, o.maxOutOfOrderness + o.step); // ordinary disorder
    else if (r < 0.72) ts = clock - o.maxOutOfOrderness - rng.int(0, 2 * o.unit); // late
    else if (r < 0.77) ts = clock - rng.int(3 * o.unit, 12 * o.unit); // very late
    else if (r < 0.95) {
      // first or last ms of a grid cell near the clock
      const cell = Math.floor((clock - rng.int(0, 2 * o.unit)) / o.unit) * o.unit;
      ts = rng.chance(0.5) ? cell : cell + o.unit - 1;
    } else ts = clock + rng.int(0, o.step); // slightly ahead
    if (rng.chance(o.pMalformed ?? 0.05)) {
      out.push(malformed(rng, id, ts));
      continue;
    }
    let post: Record<string, unknown>;
    if (rng.chance(0.03)) {
      post = edgyValidPost(rng, id, ts);
    } else {
      const es = rng.chance(0.2);
      const text = decorate(rng, es ? rng.pick(SPANISH) : rng.pick(ENGLISH));
      post = { id, ts, text };
      if (es) post.lang = 'es';
      else if (rng.chance(0.1)) post.lang = 'en';
      if (rng.chance(0.2)) post.user = `user${rng.int(1, 9)}`;
    }
    if (typeof post.ts === 'number' && rng.chance(0.2)) post.ts = isoOf(rng, ts);
    out.push(JSON.stringify(post));
  }
  return out;
}
