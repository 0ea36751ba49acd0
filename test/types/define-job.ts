// Type test, checked by `npm run typecheck` (never run): defineJob<In, Acc, Out> infers its types
// from the definition, they reach testJob's results, and a mistyped aggregate does not compile
// (every `@ts-expect-error` below must meet an error, or the type check fails).

import { defineJob, type JobDefinition } from '../../src/index.js';
import { testJob } from '../../src/testing.js';
import orders from '../../examples/orders/job.mjs';
import sensors from '../../examples/sensors/job.mjs';

/** Compiles only when A and B are the same type. */
type Equal<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const assert = <T extends true>(): T => true as T;

interface Order { id: string; ts: number; region: string; cents: number }
const eventTime = (o: Order): number => o.ts;

// Inferred: In from eventTime's parameter, Acc from init, Out from result.
const revenue = defineJob({
  name: 'revenue',
  eventTime,
  keys: (o) => [o.region],
  aggregate: {
    init: () => ({ orders: 0, cents: 0 }),
    add: (acc, o) => ({ orders: acc.orders + 1, cents: acc.cents + o.cents }),
    merge: (a, b) => ({ orders: a.orders + b.orders, cents: a.cents + b.cents }),
    result: (acc) => ({ orders: acc.orders, revenue: acc.cents / 100 }),
  },
});
assert<Equal<typeof revenue, JobDefinition<Order, { orders: number; cents: number }, { orders: number; revenue: number }>>>();

// The result fields reach testJob's records, beside the engine's own.
const out = testJob(revenue, [{ id: 'o1', ts: 0, region: 'eu', cents: 100 }], { window: 'tumbling:1m' });
const first = out.results[0]!;
assert<Equal<typeof first.revenue, number>>();
assert<Equal<typeof first.window, { start: number; end: number }>>();
// @ts-expect-error a record of another shape is not an input of this job
testJob(revenue, [{ id: 'o1', ts: 0 }]);

// The examples, plain .mjs with JSDoc, infer the same way.
assert<Equal<ReturnType<typeof orders.aggregate.result>, { orders: number; revenue: number; largestOrder: number }>>();
assert<Equal<Parameters<typeof sensors.keys>[0], { device: string; ts: number | string; temp: number }>>();

// Explicit type arguments: the definition is checked against them.
defineJob<Order, { n: number }, { n: number }>({
  name: 'explicit',
  eventTime,
  keys: () => ['*'],
  aggregate: {
    init: () => ({ n: 0 }),
    // @ts-expect-error add returns the wrong shape (a number, not the accumulator)
    add: (acc) => acc.n + 1,
    merge: (a, b) => ({ n: a.n + b.n }),
    result: (acc) => acc,
  },
});

defineJob({
  name: 'missing-field',
  eventTime,
  keys: () => ['*'],
  aggregate: {
    init: () => ({ n: 0 }),
    add: (acc) => ({ n: acc.n + 1 }),
    merge: (a, b) => ({ n: a.n + b.n }),
    // @ts-expect-error result reads a field the accumulator does not have
    result: (acc) => ({ total: acc.total }),
  },
});

defineJob<Order, { n: number }, { n: number }>({
  name: 'wrong-merge',
  eventTime,
  keys: () => ['*'],
  aggregate: {
    init: () => ({ n: 0 }),
    add: (acc) => ({ n: acc.n + 1 }),
    // @ts-expect-error merge takes accumulators, not records
    merge: (a: Order, b: Order) => ({ n: a.cents + b.cents }),
    result: (acc) => acc,
  },
});

defineJob({
  name: 'add-field',
  eventTime,
  keys: () => ['*'],
  aggregate: {
    init: () => ({ n: 0 }),
    // @ts-expect-error add reads a field the record does not have
    add: (acc, o) => ({ n: acc.n + o.quantity }),
    merge: (a, b) => ({ n: a.n + b.n }),
    result: (acc) => acc,
  },
});

defineJob({
  name: 'keys',
  eventTime,
  // @ts-expect-error keys must be strings
  keys: (o) => [o.cents],
  aggregate: { init: () => ({}), add: (a) => a, merge: (a) => a, result: (a) => a },
});

defineJob({
  name: 'result-not-object',
  eventTime,
  keys: () => ['*'],
  // @ts-expect-error result must return an object (its fields go at the top level of each result)
  aggregate: { init: () => 0, add: (a: number) => a + 1, merge: (a: number, b: number) => a + b, result: (a: number) => a },
});
