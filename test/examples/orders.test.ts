// The orders example under `testJob` (as its users would test it, through `tidemark/testing`):
// revenue per region in 10-minute windows sliding by 1 minute, late and malformed orders.

import t from 'tap';
import { testJob, TestDriver } from 'tidemark/testing';
import orders from '../../examples/orders/job.mjs';

const MIN = 60_000;
const T0 = 1_764_000_000_000; // a multiple of 10 minutes
type Order = { id: string; ts: number; region: string; cents: number };
const order = (n: number, region: string, atMin: number, cents: number): Order => ({ id: `o${n}`, ts: T0 + atMin * MIN, region, cents });

const stream: Order[] = [order(1, 'eu', 0.5, 1250), order(2, 'us', 1.2, 999), order(3, 'eu', 3, 5000), order(4, 'eu', 9.9, 1), order(5, 'us', 12, 20_000), order(6, 'eu', 11, 300)];

/** The windows of a sliding:10m,1m assigner that contain ts. */
const windowsOf = (ts: number): Array<{ start: number; end: number }> => {
  const last = Math.floor(ts / MIN) * MIN;
  return Array.from({ length: 10 }, (_, i) => ({ start: last - i * MIN, end: last - i * MIN + 10 * MIN }));
};

t.test('every window of every key: the last revision is the sum of its orders', async (t) => {
  const out = testJob(orders, stream);
  t.same(out.deadLetters, []);
  t.same(out.late, []);
  const last = new Map<string, (typeof out.results)[number]>();
  for (const r of out.results) last.set(`${r.key}/${r.window.start}`, r);
  // Independent expectation: each order counted in its 10 windows, under its region and '*'.
  const expected = new Map<string, { orders: number; cents: number; largest: number }>();
  for (const o of stream) {
    for (const key of [`region:${o.region}`, '*']) {
      for (const w of windowsOf(o.ts)) {
        const e = expected.get(`${key}/${w.start}`) ?? { orders: 0, cents: 0, largest: 0 };
        expected.set(`${key}/${w.start}`, { orders: e.orders + 1, cents: e.cents + o.cents, largest: Math.max(e.largest, o.cents) });
      }
    }
  }
  t.equal(last.size, expected.size, 'one window per (key, slide) that holds an order');
  for (const [k, e] of expected) {
    const r = last.get(k)!;
    t.same({ orders: r.orders, revenue: r.revenue, largestOrder: r.largestOrder, final: r.final }, { orders: e.orders, revenue: e.cents / 100, largestOrder: e.largest / 100, final: true }, k);
  }
  const eu = last.get(`region:eu/${T0}`)!;
  // updates mode with 1m of lateness: revision 0 when the window fires, a final record when it closes.
  t.match(eu, { id: `orders/region:eu/${T0}/${T0 + 10 * MIN}/1`, job: 'orders', key: 'region:eu', window: { start: T0, end: T0 + 10 * MIN }, orders: 3, revenue: 62.51, largestOrder: 50, revision: 1, final: true });
  const fired = out.results.find((r) => r.id === `orders/region:eu/${T0}/${T0 + 10 * MIN}/0`);
  t.match(fired, { orders: 3, revenue: 62.51, final: false });
});

t.test('a late order: accepted within the allowed lateness, a late record after it', async (t) => {
  const d = new TestDriver(orders, { emit: 'final' });
  d.send(order(1, 'eu', 5, 100));
  d.advanceWatermark(T0 + 10 * MIN + 30_000); // past the end of [T0, T0+10m), within its 1m lateness
  // W = T0+10m30s: o2's windows ending by T0+9m30s are closed (end + 1m ≤ W), the three after are not.
  d.send(order(2, 'eu', 2, 200));
  d.advanceWatermark(T0 + 11 * MIN);
  // W = T0+11m: [T0, T0+10m) has closed too.
  d.send(order(3, 'eu', 2.5, 400));
  d.end();
  const out = d.output();
  const first = out.results.find((r) => r.key === 'region:eu' && r.window.start === T0)!;
  t.match(first, { orders: 2, revenue: 3, final: true, revision: 0, watermark: T0 + 11 * MIN });
  const starts = (from: number, to: number): number[] => Array.from({ length: to - from + 1 }, (_, i) => T0 + (from + i) * MIN);
  const lateOf = (id: string): number[] => out.late.filter((l) => l.key === 'region:eu' && l.recordId === id).map((l) => l.window.start).sort((a, b) => a - b);
  t.same(lateOf('o2'), starts(-7, -1), 'o2: late for the seven windows that had closed');
  t.same(lateOf('o3'), starts(-7, 0), 'o3: and for [T0, T0+10m) as well');
  t.match(out.results.find((r) => r.key === 'region:eu' && r.window.start === T0 + 2 * MIN), { orders: 3, revenue: 7 }, 'both late orders counted where they were in time');
  t.equal(out.late[0]!.postId, undefined, 'user jobs name the record recordId');
});

t.test('decode: malformed orders are rejected with the job\'s own reason (testJob takes records already decoded)', async (t) => {
  const decode = orders.decode!;
  const bytes = (v: unknown): Uint8Array => new TextEncoder().encode(typeof v === 'string' ? v : JSON.stringify(v));
  t.same(decode(bytes(order(1, 'eu', 1, 100))), order(1, 'eu', 1, 100));
  for (const bad of [{ id: 'x', ts: T0, region: 'eu', cents: 1.5 }, { id: 'y', ts: T0, region: '', cents: 1 }, { ts: T0, region: 'eu', cents: 1 }, 'null']) {
    t.throws(() => decode(bytes(bad)), { name: 'RejectRecord', reason: 'bad_order' }, JSON.stringify(bad));
  }
  t.throws(() => decode(bytes('{')), SyntaxError, 'not JSON: a user_error dead letter in the engine');
});
