// Keys of a post (DESIGN.md §2): hashtags, tracked keywords as whole words, and `*`.
// Parsed once from `--keys`, then applied to every post's text.

import { TidemarkError } from '../errors.js';

export interface KeySpec {
  hashtags: boolean;
  all: boolean;
  keywords: string[];
}

const HASHTAG = /#[\p{L}\p{Nd}_]+/gu;
const WORD_CHAR = '[\\p{L}\\p{Nd}_]';

/** Parses `hashtags,all,keyword:WORD,...`. */
export function parseKeySpec(text: string, flag = '--keys'): KeySpec {
  const spec: KeySpec = { hashtags: false, all: false, keywords: [] };
  for (const raw of String(text).split(',')) {
    const item = raw.trim();
    if (item === 'hashtags') spec.hashtags = true;
    else if (item === 'all') spec.all = true;
    else if (item.startsWith('keyword:') && item.length > 'keyword:'.length && !/\s/.test(item.slice(8))) {
      const word = item.slice('keyword:'.length).toLowerCase();
      if (!spec.keywords.includes(word)) spec.keywords.push(word);
    } else {
      throw new TidemarkError('BAD_FLAG', `${flag}: "${item}" is not a key kind; accepted: hashtags, all, keyword:WORD (comma-separated)`);
    }
  }
  return spec;
}

const escapeRe = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** Builds the key extractor for a spec: text → distinct keys, in a stable order. */
export function keyExtractor(spec: KeySpec): (text: string) => string[] {
  const keywordRes = spec.keywords.map((w) => ({
    key: w,
    re: new RegExp(`(?<!${WORD_CHAR})${escapeRe(w)}(?!${WORD_CHAR})`, 'iu'),
  }));
  return (text: string): string[] => {
    const keys: string[] = [];
    if (spec.hashtags && text.includes('#')) {
      for (const m of text.matchAll(HASHTAG)) {
        const tag = m[0].toLowerCase();
        if (!keys.includes(tag)) keys.push(tag);
      }
    }
    for (const { key, re } of keywordRes) if (!keys.includes(key) && re.test(text)) keys.push(key);
    if (spec.all) keys.push('*');
    return keys;
  };
}
