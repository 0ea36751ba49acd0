// The records Tidemark emits (DESIGN.md §2): window results, late records, dead letters.
// Ids are stable so every sink can deduplicate on them.

import type { Window } from './windows.js';

/** A window result: the engine's fields around the job's `result(acc)` fields. */
export interface ResultRecord {
  id: string;
  job: string;
  key: string;
  window: Window;
  revision: number;
  final: boolean;
  /** Watermark that produced the record; null means +∞ (end of input). */
  watermark: number | null;
  [field: string]: unknown;
}

export interface LateRecord {
  id: string;
  /** `postId` for the sentiment job, `recordId` for user jobs */
  postId?: string;
  recordId?: string;
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
  /** what a user function said (reason `user_error`) */
  error?: string;
}

export const MAX_DEAD_PAYLOAD = 1024;

const wmField = (wm: number): number | null => (Number.isFinite(wm) ? wm : null);

/** Builds a window result; the id is `job/key/start/end/revision`. */
export function resultRecord(job: string, key: string, window: Window, fields: Record<string, unknown>, revision: number, final: boolean, watermark: number): ResultRecord {
  return {
    id: `${job}/${key}/${window.start}/${window.end}/${revision}`,
    job,
    key,
    window: { start: window.start, end: window.end },
    ...fields,
    revision,
    final,
    watermark: wmField(watermark),
  };
}

/** Builds a late record for a (post, key, window) the post missed. */
export function lateRecord(job: string, idField: 'postId' | 'recordId', recordId: string, key: string, window: Window, ts: number, watermark: number): LateRecord {
  return {
    id: `${job}/${key}/${window.start}/${window.end}/${recordId}`,
    [idField]: recordId,
    key,
    window: { start: window.start, end: window.end },
    ts,
    watermark: wmField(watermark),
  };
}

/** Builds a dead-letter record; the payload is kept as text, truncated. */
export function deadLetterRecord(job: string, reason: string, subject: string, seq: number, payload: Uint8Array, error?: string): DeadLetterRecord {
  const text = Buffer.from(payload.subarray(0, MAX_DEAD_PAYLOAD)).toString('utf8');
  const rec: DeadLetterRecord = { id: `${job}/dlq/${seq}`, reason, subject, seq, payload: payload.length > MAX_DEAD_PAYLOAD ? `${text}…` : text };
  if (error !== undefined) rec.error = error;
  return rec;
}
