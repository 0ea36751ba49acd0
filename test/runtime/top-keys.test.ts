// The `keys` ranking: busiest keys by posts in their open windows; pending windows do not count,
// ties go by key, and per-partition lists merge into the global top N.

import t from 'tap';
import { topKeys, mergeTopKeys } from '../../src/runtime/top-keys.js';
import type { WindowView } from '../../src/runtime/window-operator.js';

const view = (key: string, start: number, count: number, state: WindowView['state'] = 'open'): WindowView => ({
  key,
  window: { start, end: start + 1000 },
  state,
  aggregate: { count, positive: count, negative: 0, neutral: 0, scoreSum: count },
  records: count,
  nextRevision: 0,
  firesAt: start + 1000,
  closesAt: start + 1000,
});

t.test('ranks keys by posts in open windows, summed over their windows', async (t) => {
  const views = [view('#a', 0, 5), view('#a', 1000, 4), view('#b', 0, 8), view('#c', 0, 50, 'pending'), view('#d', 0, 1)];
  const top = topKeys(views, 10);
  t.same(top.map((k) => [k.key, k.count, k.windows]), [['#a', 9, 2], ['#b', 8, 1], ['#d', 1, 1]], 'the pending window of #c does not count');
  t.equal(top[0]!.positive, 9);
});

t.test('keeps the top N, ties by key', async (t) => {
  const views = [view('#z', 0, 3), view('#y', 0, 3), view('#x', 0, 1)];
  t.same(topKeys(views, 2).map((k) => k.key), ['#y', '#z']);
});

t.test('merging partition lists gives the global top N', async (t) => {
  const p0 = topKeys([view('#a', 0, 10), view('#b', 0, 2)], 2);
  const p1 = topKeys([view('#c', 0, 7), view('#d', 0, 3)], 2);
  t.same(mergeTopKeys([p0, p1], 3).map((k) => k.key), ['#a', '#c', '#d']);
});
