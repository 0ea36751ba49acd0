// @ts-check
// Revenue per region in sliding windows: orders `{ id, ts, region, cents }` on a JetStream stream,
// every 10-minute window sliding by 1 minute, per region and in total (`*`).

import { defineJob, RejectRecord } from 'tidemark';

/** @typedef {{ id: string, ts: number, region: string, cents: number }} Order */
/** @typedef {{ orders: number, cents: number, largest: number }} Acc */

const text = new TextDecoder();

export default defineJob({
  name: 'orders',
  window: 'sliding:10m,1m',
  maxOutOfOrderness: '30s',
  allowedLateness: '1m',
  /** @returns {Order} */
  decode: (bytes) => {
    const o = JSON.parse(text.decode(bytes));
    // Money is whole cents: sums of integers are exact in any grouping, so merge stays associative.
    if (typeof o?.id !== 'string' || typeof o.region !== 'string' || o.region === '' || !Number.isSafeInteger(o.cents) || o.cents < 0) {
      throw new RejectRecord('bad_order');
    }
    return o;
  },
  eventTime: (o) => o.ts,
  keys: (o) => [`region:${o.region}`, '*'],
  aggregate: {
    /** @returns {Acc} */
    init: () => ({ orders: 0, cents: 0, largest: 0 }),
    add: (acc, o) => ({ orders: acc.orders + 1, cents: acc.cents + o.cents, largest: Math.max(acc.largest, o.cents) }),
    merge: (a, b) => ({ orders: a.orders + b.orders, cents: a.cents + b.cents, largest: Math.max(a.largest, b.largest) }),
    result: (acc) => ({ orders: acc.orders, revenue: acc.cents / 100, largestOrder: acc.largest / 100 }),
  },
});

/** Orders for `tidemark check-job`: fast-check is handed in, so this module needs no import of it. */
export const arbitrary = (/** @type {typeof import('fast-check').default} */ fc) =>
  fc.record({
    id: fc.uuid(),
    ts: fc.integer({ min: 1_764_000_000_000, max: 1_764_086_400_000 }),
    region: fc.constantFrom('eu', 'us', 'apac'),
    cents: fc.integer({ min: 0, max: 1_000_000 }),
  });
