// The dashboard's in-memory parts without NATS: the result store (latest revision per window, bounded
// history, replay ring, deduplication) and the alert rules.

import t from 'tap';
import { ResultStore } from '../../src/host/dashboard-feed.js';
import { AlertBook, describeRule, parseRule, type SentimentRecord } from '../../src/host/alerts.js';

const rec = (key: string, start: number, revision = 0, count = 10, avgScore = 1, final = false): SentimentRecord => ({
  id: `j/${key}/${start}/${start + 1000}/${revision}`, job: 'j', key, window: { start, end: start + 1000 },
  count, positive: count, negative: 0, neutral: 0, scoreSum: avgScore * count, avgScore, revision, final, watermark: start + 1000,
});

t.test('result store: latest revision per window, bounded per key, replays dropped', (t) => {
  const evicted: string[] = [];
  const store = new ResultStore(3, 10, (r) => evicted.push(r.id));
  let seq = 0;
  for (let w = 0; w < 5; w++) t.ok(store.add({ seq: ++seq, record: rec('#a', w * 1000) }));
  t.ok(store.add({ seq: ++seq, record: rec('#a', 4000, 1, 11) }), 'a revision');
  t.notOk(store.add({ seq: ++seq, record: rec('#a', 4000, 1, 11) }), 'the same id again (a replay) is dropped');
  t.notOk(store.add({ seq: ++seq, record: rec('#a', 0) }), 'a replay of an evicted window too');
  t.same(evicted, ['j/#a/0/1000/0', 'j/#a/1000/2000/0'], 'the oldest windows go beyond the history');
  t.same(store.snapshot().map((r) => [r.window.start, r.revision]), [[2000, 0], [3000, 0], [4000, 1]], 'snapshot: latest revision of each window held');
  t.same(store.newestPerKey().map((r) => r.id), ['j/#a/4000/5000/1']);
  t.same(store.after(4)?.map((n) => n.seq), [5, 6], 'what a page missed after seq 4');
  t.same(store.after(6), [], 'nothing after the newest');
  for (let i = 0; i < 20; i++) store.add({ seq: ++seq, record: rec('#b', 10_000 + i * 1000) });
  t.equal(store.after(1), undefined, 'the ring no longer reaches back: a snapshot is due');
  t.ok(store.ring.length <= 13, 'the ring is bounded');
  t.same(new ResultStore(3, 10).after(0), [], 'an empty store has nothing to replay');
  t.end();
});

t.test('alert rules: validated, fire once per rule and window', (t) => {
  t.throws(() => parseRule([], 'r'), /JSON object/);
  t.throws(() => parseRule({ op: 'below', threshold: 1, key: 5 }, 'r'), /"key" must be a string/);
  t.same(parseRule({ op: 'below', threshold: -1, key: '' }, 'r1'), { id: 'r1', op: 'below', threshold: -1, minCount: 1 }, 'an empty key means every key');
  const book = new AlertBook('j');
  const below = book.add({ op: 'below', threshold: -1, minCount: 50, key: '#a' });
  const above = book.add({ op: 'above', threshold: 2, minCount: 1 });
  t.equal(describeRule(below), 'average below -1 with at least 50 posts, key #a');
  t.equal(describeRule(parseRule({ op: 'above', threshold: 2 }, 'x')), 'average above 2 with at least 1 post, any key');
  t.same(book.evaluate(rec('#a', 0, 0, 49, -3)), [], 'too few posts');
  t.same(book.evaluate(rec('#b', 0, 0, 60, -3)), [], 'another key');
  const fired = book.evaluate(rec('#a', 0, 1, 60, -3), undefined, 0);
  t.match(fired, [{ id: 'j/alert/r1/#a/0/1000', rule: below, key: '#a', count: 60, avgScore: -3, revision: 1, resultId: 'j/#a/0/1000/1', firedAt: '1970-01-01T00:00:00.000Z' }]);
  t.same(book.evaluate(rec('#a', 0, 2, 61, -3)), [], 'once per window');
  t.equal(book.evaluate(rec('#c', 0, 0, 1, 3)).length, 1, 'the any-key rule');
  t.same(book.evaluate({ id: 'u/#x/0/1/0', job: 'u', key: '#x', window: { start: 0, end: 1 }, revision: 0, final: false, watermark: 1, total: 3 }), [], "a user job's result without the sentiment fields never fires");
  book.forgetWindow('#a', 0, 1000);
  t.equal(book.evaluate(rec('#a', 0, 3, 61, -3)).length, 1, 'a forgotten window may fire again');
  t.ok(book.remove(above.id));
  t.notOk(book.remove(above.id));
  t.same(book.list().map((r) => r.id), [below.id]);
  t.end();
});
