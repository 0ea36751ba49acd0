// A job as users write it (the public API of `tidemark`): event time, keys and an aggregate with
// merge, and the engine brings windows, watermarks, lateness, state and exactly-once.

/**
 * The aggregate of a window (Flink's AggregateFunction). `merge` must be associative and agree
 * with `add` (`merge(a, add(init(), r))` equals `add(a, r)`): the engine pre-aggregates posts of
 * open windows at the source, merges sessions and moves state with it. `tidemark check-job` tests both.
 */
export interface AggregateFunctions<In, Acc, Out extends object> {
  /** An empty accumulator. */
  init(): Acc;
  /** The accumulator with one more record. Should not mutate `acc` (it may be shared). */
  add(acc: Acc, record: In): Acc;
  /** The accumulator of both inputs' records. Should not mutate its arguments. */
  merge(a: Acc, b: Acc): Acc;
  /** The fields of a window result (top level of the record beside id, key, window, revision…). */
  result(acc: Acc): Out;
}

/** Event time: ms since the epoch, an ISO-8601 string or a Date. */
export type EventTime = number | string | Date;

/** A Tidemark job. */
export interface JobDefinition<In = unknown, Acc = unknown, Out extends object = Record<string, unknown>> {
  /** Default job name (`--job` overrides it). */
  name: string;
  eventTime(record: In): EventTime;
  /** Keys the record counts under (once per distinct key; [] = counted nowhere). */
  keys(record: In): readonly string[];
  aggregate: AggregateFunctions<In, Acc, Out>;
  /** The record's id (late records name it). Default: its `id` field when a string, else `stream/seq`. */
  id?(record: In): string;
  /** Bytes → record. Default: UTF-8 JSON. Throw `RejectRecord` to dead-letter with your own reason. */
  decode?(bytes: Uint8Array): In;
  /** Defaults in the flags' own syntax (flags win). */
  window?: string;
  maxOutOfOrderness?: string;
  allowedLateness?: string;
  emit?: 'updates' | 'final';
  /** Extra fields shown by `query` for a window (e.g. examples); never part of results. */
  inspect?(acc: Acc): Record<string, unknown>;
}

/** Identity function that carries the types of a job definition. */
export function defineJob<In, Acc, Out extends object>(def: JobDefinition<In, Acc, Out>): JobDefinition<In, Acc, Out> {
  return def;
}

/** Thrown by `decode` (or `eventTime`/`keys`) to dead-letter a record with this reason. */
export class RejectRecord extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'RejectRecord';
  }
}

/** Fields of a result record that the engine owns: a `result()` field may not take one. */
export const RESERVED_RESULT_FIELDS = ['id', 'job', 'key', 'window', 'revision', 'final', 'watermark'] as const;

/** Type-erased definition, as the engine holds it. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnyJobDefinition = JobDefinition<any, any, any>;

/**
 * Where a value cannot make a msgpack round trip unchanged (a Map, a class instance, a function,
 * a bigint, undefined, a non-finite number…): the path to the first such field, or undefined.
 */
export function unsafeForState(value: unknown, path = 'acc'): string | undefined {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return undefined;
  if (typeof value === 'number') return Number.isFinite(value) ? undefined : `${path} is ${value} (not a finite number)`;
  if (typeof value === 'bigint') return `${path} is a bigint`;
  if (typeof value === 'function') return `${path} is a function`;
  if (value === undefined) return `${path} is undefined`;
  if (typeof value !== 'object') return `${path} is a ${typeof value}`;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const p = unsafeForState(value[i], `${path}[${i}]`);
      if (p) return p;
    }
    return undefined;
  }
  const proto = Object.getPrototypeOf(value) as unknown;
  if (proto !== Object.prototype && proto !== null) {
    const name = (value as { constructor?: { name?: string } }).constructor?.name ?? 'object';
    return `${path} is a ${name} (only plain objects, arrays, strings, finite numbers, booleans and null are checkpointed)`;
  }
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const p = unsafeForState(v, `${path}.${k}`);
    if (p) return p;
  }
  return undefined;
}
