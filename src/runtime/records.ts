// The records Tidemark emits (DESIGN.md §2): window results, late records, dead letters.
// Ids are stable so every sink can deduplicate on them.

import type { Window } from './windows.js';

export interface Aggregate {
  count: number;
  positive: number;
  negative: number;
  neutral: number;
  scoreSum: number;
}

export interface ResultRecord extends Aggregate {
  id: string;
  job: string;
  key: string;
  window: Window;
  avgScore: number;
  revision: number;
  final: boolean;
  /** Watermark that produced the record; null means +∞ (end of input). */
  watermark: number | null;
}

export interface LateRecord {
  id: string;
  postId: string;
  key: string;
  window: Window;
  ts: number;
  watermark: number | null;
}

export interface DeadLetterRecord {
  id: string;
  reason: string;
  subject: string;
  seq: number;
  payload: string;
}

export const MAX_DEAD_PAYLOAD = 1024;

/** An empty aggregate. */
export const emptyAggregate = (): Aggregate => ({ count: 0, positive: 0, negative: 0, neutral: 0, scoreSum: 0 });

/** Adds one scored post to an aggregate (mutates and returns it). */
export function addScore(agg: Aggregate, score: number): Aggregate {
  agg.count += 1;
  agg.scoreSum += score;
  if (score > 0) agg.positive += 1;
  else if (score < 0) agg.negative += 1;
  else agg.neutral += 1;
  return agg;
}

/** Sum of two aggregates (session merges). */
export function mergeAggregates(a: Aggregate, b: Aggregate): Aggregate {
  return {
    count: a.count + b.count,
    positive: a.positive + b.positive,
    negative: a.negative + b.negative,
    neutral: a.neutral + b.neutral,
    scoreSum: a.scoreSum + b.scoreSum,
  };
}

const wmField = (wm: number): number | null => (Number.isFinite(wm) ? wm : null);

/** Builds a window result; the id is `job/key/start/end/revision`. */
export function resultRecord(job: string, key: string, window: Window, agg: Aggregate, revision: number, final: boolean, watermark: number): ResultRecord {
  return {
    id: `${job}/${key}/${window.start}/${window.end}/${revision}`,
    job,
    key,
    window: { start: window.start, end: window.end },
    count: agg.count,
    positive: agg.positive,
    negative: agg.negative,
    neutral: agg.neutral,
    scoreSum: agg.scoreSum,
    avgScore: agg.count === 0 ? 0 : agg.scoreSum / agg.count,
    revision,
    final,
    watermark: wmField(watermark),
  };
}

/** Builds a late record for a (post, key, window) the post missed. */
export function lateRecord(job: string, postId: string, key: string, window: Window, ts: number, watermark: number): LateRecord {
  return {
    id: `${job}/${key}/${window.start}/${window.end}/${postId}`,
    postId,
    key,
    window: { start: window.start, end: window.end },
    ts,
    watermark: wmField(watermark),
  };
}

/** Builds a dead-letter record; the payload is kept as text, truncated. */
export function deadLetterRecord(job: string, reason: string, subject: string, seq: number, payload: Uint8Array): DeadLetterRecord {
  const text = Buffer.from(payload.subarray(0, MAX_DEAD_PAYLOAD)).toString('utf8');
  return { id: `${job}/dlq/${seq}`, reason, subject, seq, payload: payload.length > MAX_DEAD_PAYLOAD ? `${text}…` : text };
}
