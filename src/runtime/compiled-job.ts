// A job definition made ready for the engine: the order-free step every input message takes
// (decode, event time, keys, the record's own accumulator) with user failures turned into data.

import { TidemarkError } from '../errors.js';
import { parseEventTime } from './post.js';
import { RejectRecord, RESERVED_RESULT_FIELDS, unsafeForState, type AnyJobDefinition, type EventTime } from './job-definition.js';

/**
 * A message after the part of ingestion that needs no order: a record with its keys and its
 * one-record accumulator (`add(init(), record)`, what travels to the windows), a dead letter, or a
 * bug in the job's `add` (fatal: the job stops).
 */
export type Prepared =
  | { ok: true; id: string; ts: number; keys: string[]; unit: unknown }
  | { ok: false; reason: string; error?: string }
  | { ok: false; reason: 'fatal'; error: string; at: { fn: string; key: string; recordId: string; ts: number } };

/** Records prepared elsewhere (a member's answer, a partition's source): undefined when each is one, else why not. */
export function checkPreparedRecords(out: readonly unknown[]): string | undefined {
  for (let i = 0; i < out.length; i++) {
    const x = out[i] as Record<string, unknown> | null;
    if (typeof x !== 'object' || x === null || typeof x.ok !== 'boolean') return `record ${i} is malformed`;
    if (x.ok ? typeof x.id !== 'string' || typeof x.ts !== 'number' || !Array.isArray(x.keys) : typeof x.reason !== 'string') return `record ${i} is malformed`;
  }
  return undefined;
}

/** The engine's view of a job. */
export interface CompiledJob {
  readonly def: AnyJobDefinition;
  /** Field of late records that names the record: the sentiment job keeps `postId`. */
  readonly lateIdField: 'postId' | 'recordId';
  prepare(payload: Uint8Array, subject: string, seq: number): Prepared;
  init(): unknown;
  merge(a: unknown, b: unknown, where: WhereInfo): unknown;
  result(acc: unknown, where: WhereInfo): Record<string, unknown>;
}

/** Where a user function ran, for the one line a bug in it produces. */
export interface WhereInfo {
  key: string;
  start: number;
  end: number;
  recordId?: string;
}

const utf8 = new TextDecoder('utf-8', { fatal: true });
const MAX_DATE = 8.64e15;

/** Default decode: UTF-8 JSON. */
export function decodeJson(bytes: Uint8Array): unknown {
  return JSON.parse(utf8.decode(bytes));
}

const message = (e: unknown): string => (e instanceof Error ? e.message : String(e));

/** A user function threw: a bug in the job, which stops with this error. */
export function userCodeError(fn: string, e: unknown, where: Partial<WhereInfo>): TidemarkError {
  const at = [
    where.key !== undefined ? `key ${JSON.stringify(where.key)}` : '',
    where.start !== undefined ? `window [${where.start}, ${where.end})` : '',
    where.recordId !== undefined ? `record ${JSON.stringify(where.recordId)}` : '',
  ].filter(Boolean);
  return new TidemarkError('USER_CODE', `aggregate.${fn} threw ${at.length ? `(${at.join(', ')})` : ''}: ${message(e)}; fix the job module and run again: the last checkpoint is intact`);
}

/** Normalises what `eventTime` returned, or says why it is not an event time. */
export function eventTimeOf(v: EventTime | unknown): number | string {
  if (v instanceof Date) v = v.getTime();
  if (typeof v === 'number') return Number.isFinite(v) && Math.abs(v) <= MAX_DATE ? v : `eventTime returned ${v}, not a finite time in JavaScript's date range`;
  if (typeof v === 'string') return parseEventTime(v);
  return `eventTime returned ${v === null ? 'null' : typeof v}, not a number, ISO-8601 string or Date`;
}

/** Checks a definition's shape and what can be checked without records; throws BAD_JOB. */
export function validateDefinition(def: unknown, source = 'the job'): AnyJobDefinition {
  const bad = (why: string): never => {
    throw new TidemarkError('BAD_JOB', `${source}: ${why}`);
  };
  if (typeof def !== 'object' || def === null) return bad('the default export must be a job definition (use defineJob from "tidemark")');
  const d = def as Record<string, unknown>;
  if (typeof d.name !== 'string' || d.name === '') bad('"name" must be a non-empty string');
  for (const f of ['eventTime', 'keys'] as const) if (typeof d[f] !== 'function') bad(`"${f}" must be a function`);
  for (const f of ['id', 'decode', 'inspect'] as const) if (d[f] !== undefined && typeof d[f] !== 'function') bad(`"${f}" must be a function when given`);
  const agg = d.aggregate as Record<string, unknown> | undefined;
  if (typeof agg !== 'object' || agg === null) return bad('"aggregate" must be an object with init, add, merge and result');
  for (const f of ['init', 'add', 'merge', 'result'] as const) if (typeof agg[f] !== 'function') bad(`"aggregate.${f}" must be a function`);
  for (const f of ['window', 'maxOutOfOrderness', 'allowedLateness'] as const) if (d[f] !== undefined && typeof d[f] !== 'string') bad(`"${f}" must be a string in the flag's syntax`);
  if (d.emit !== undefined && d.emit !== 'updates' && d.emit !== 'final') bad('"emit" must be "updates" or "final"');
  const typed = def as AnyJobDefinition;
  let init: unknown;
  try {
    init = typed.aggregate.init();
  } catch (e) {
    bad(`aggregate.init threw: ${message(e)}`);
  }
  const unsafe = unsafeForState(init, 'init()');
  if (unsafe) bad(`the accumulator cannot be checkpointed: ${unsafe}`);
  let fields: unknown;
  try {
    fields = typed.aggregate.result(init);
  } catch (e) {
    bad(`aggregate.result threw on init(): ${message(e)}`);
  }
  if (typeof fields !== 'object' || fields === null || Array.isArray(fields)) bad('aggregate.result must return an object (its fields go at the top level of each result)');
  const clash = Object.keys(fields as object).filter((k) => (RESERVED_RESULT_FIELDS as readonly string[]).includes(k));
  if (clash.length) bad(`aggregate.result returns ${clash.map((c) => `"${c}"`).join(', ')}, which the engine sets on every result (${RESERVED_RESULT_FIELDS.join(', ')}); rename it`);
  return typed;
}

/** Compiles a definition for the engine; `stream` names records without an id of their own. */
export function compileJob(def: AnyJobDefinition, opts: { stream: string; lateIdField?: 'postId' | 'recordId' }): CompiledJob {
  const { aggregate } = def;
  const decode = def.decode ?? decodeJson;
  const reject = (stage: string, e: unknown): Prepared =>
    e instanceof RejectRecord ? { ok: false, reason: e.reason } : { ok: false, reason: 'user_error', error: `${stage}: ${message(e)}` };
  const idOf = (rec: unknown, seq: number): string => {
    if (def.id) return def.id(rec);
    const own = (rec as { id?: unknown } | null)?.id;
    return typeof own === 'string' && own.length > 0 ? own : `${opts.stream}/${seq}`;
  };
  return {
    def,
    lateIdField: opts.lateIdField ?? 'recordId',
    init: () => aggregate.init(),
    merge: (a, b, where) => {
      try {
        return aggregate.merge(a, b);
      } catch (e) {
        throw userCodeError('merge', e, where);
      }
    },
    result: (acc, where) => {
      try {
        return aggregate.result(acc) as Record<string, unknown>;
      } catch (e) {
        throw userCodeError('result', e, where);
      }
    },
    prepare(payload, _subject, seq) {
      let rec: unknown;
      try {
        rec = decode(payload);
      } catch (e) {
        return reject('decode', e);
      }
      let ts: number | string;
      let keys: string[];
      let id: string;
      try {
        ts = eventTimeOf(def.eventTime(rec));
        if (typeof ts === 'string') return { ok: false, reason: 'user_error', error: ts };
        const raw = def.keys(rec);
        if (!Array.isArray(raw)) return { ok: false, reason: 'user_error', error: 'keys must return an array of strings' };
        keys = [];
        for (const k of raw as unknown[]) {
          if (typeof k !== 'string' || k === '') return { ok: false, reason: 'user_error', error: `keys returned ${JSON.stringify(k) ?? String(k)}, not a non-empty string` };
          if (!keys.includes(k)) keys.push(k);
        }
        id = idOf(rec, seq);
        if (typeof id !== 'string' || id === '') return { ok: false, reason: 'user_error', error: 'id must return a non-empty string' };
      } catch (e) {
        return reject(e instanceof RejectRecord ? 'decode' : 'eventTime/keys/id', e);
      }
      if (keys.length === 0) return { ok: true, id, ts, keys, unit: undefined };
      try {
        return { ok: true, id, ts, keys, unit: aggregate.add(aggregate.init(), rec) };
      } catch (e) {
        // The window is named where the window spec is known (Ingestor).
        return { ok: false, reason: 'fatal', error: message(e), at: { fn: 'add', key: keys[0]!, recordId: id, ts } };
      }
    },
  };
}
