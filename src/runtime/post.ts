// Input validation (DESIGN.md §2): a raw message becomes a post, or a dead-letter reason.
// Nothing here throws on bad input: bad input is data, not an error of the process.

import type { Lang } from './sentiment.js';

export interface Post {
  id: string;
  ts: number;
  text: string;
  lang: Lang;
  user?: string;
}

export type Parsed = { ok: true; post: Post } | { ok: false; reason: string };

export const MAX_TEXT_BYTES = 64 * 1024;
const ISO_8601 = /^\d{4}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,9})?)?(?:Z|[+-]\d{2}(?::?\d{2})?)?)?$/i;
const decoder = new TextDecoder('utf-8', { fatal: true });
const MAX_DATE_MS = 8.64e15;

const daysInMonth = (y: number, m: number): number => (m === 2 ? ((y % 4 === 0 && y % 100 !== 0) || y % 400 === 0 ? 29 : 28) : [4, 6, 9, 11].includes(m) ? 30 : 31);

/** Parses an event time: integer ms since the epoch or an ISO-8601 string (no offset = UTC). */
export function parseEventTime(ts: unknown): number | string {
  if (typeof ts === 'number') {
    if (!Number.isSafeInteger(ts)) return 'ts must be an integer number of ms since the epoch';
    return Math.abs(ts) <= MAX_DATE_MS ? ts : `ts ${ts} is outside JavaScript's date range (±8.64e15 ms)`;
  }
  if (typeof ts === 'string') {
    const t = ts.trim();
    if (!ISO_8601.test(t)) return `ts "${ts.slice(0, 64)}" is not ISO-8601`;
    let norm = t.replace(' ', 'T').replace(',', '.');
    // Only a date-time has an offset; a date alone is midnight UTC (as Date.parse reads it).
    if (norm.includes('T')) {
      if (!/(?:Z|[+-]\d{2}(?::?\d{2})?)$/i.test(norm)) norm += 'Z';
      norm = norm.replace(/([+-]\d{2})(\d{2})$/, '$1:$2').replace(/([+-]\d{2})$/, '$1:00');
    }
    const ms = Date.parse(norm);
    // Date.parse rolls impossible dates over (2026-09-31 becomes 1 October): check the calendar.
    const [y, mo, d] = norm.slice(0, 10).split('-').map(Number) as [number, number, number];
    if (!Number.isFinite(ms) || mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo)) return `ts "${ts.slice(0, 64)}" is not a valid date`;
    return ms;
  }
  return ts === undefined ? 'missing field "ts"' : 'ts must be a number (ms) or an ISO-8601 string';
}

/** Validates one raw message payload. */
export function parsePost(payload: Uint8Array): Parsed {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(payload));
  } catch {
    return { ok: false, reason: 'not JSON (or not UTF-8)' };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return { ok: false, reason: 'not a JSON object' };
  const o = value as Record<string, unknown>;
  if (o.id === undefined) return { ok: false, reason: 'missing field "id"' };
  if (typeof o.id !== 'string' || o.id.length < 1 || o.id.length > 256) return { ok: false, reason: 'id must be a string of 1 to 256 characters' };
  const ts = parseEventTime(o.ts);
  if (typeof ts === 'string') return { ok: false, reason: ts };
  if (o.text === undefined) return { ok: false, reason: 'missing field "text"' };
  if (typeof o.text !== 'string') return { ok: false, reason: 'text must be a string' };
  if (Buffer.byteLength(o.text, 'utf8') > MAX_TEXT_BYTES) return { ok: false, reason: `text is longer than ${MAX_TEXT_BYTES} bytes` };
  if (o.lang !== undefined && o.lang !== 'en' && o.lang !== 'es') return { ok: false, reason: 'lang must be "en" or "es"' };
  if (o.user !== undefined && typeof o.user !== 'string') return { ok: false, reason: 'user must be a string' };
  const post: Post = { id: o.id, ts, text: o.text, lang: (o.lang as Lang | undefined) ?? 'en' };
  if (typeof o.user === 'string') post.user = o.user;
  return { ok: true, post };
}
