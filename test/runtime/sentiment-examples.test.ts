// The sentiment job with --examples: each window keeps its most negative and most positive post;
// results are the same as without, `query` shows the examples, merging them is associative.

import t from 'tap';
import fc from 'fast-check';
import { runInMemory } from '../../src/runtime/pipeline.js';
import { Ingestor } from '../../src/runtime/ingest.js';
import { WindowOperator } from '../../src/runtime/window-operator.js';
import { compileJob } from '../../src/runtime/compiled-job.js';
import { sentimentJob } from '../../src/runtime/sentiment-job.js';
import { genStream } from '../helpers/streams.js';
import { score } from '../helpers/reference.js';

const keys = { hashtags: true, all: true, keywords: [] };
const semFor = (examples: boolean) => ({
  job: 'ex', window: { kind: 'tumbling' as const, size: 60_000 }, maxOutOfOrderness: 5_000, lateness: 30_000, emit: 'updates' as const,
  compiled: compileJob(sentimentJob({ keys, examples }), { stream: 'POSTS', lateIdField: 'postId' }),
});
const byId = <T extends { id: string }>(xs: T[]): T[] => [...xs].sort((a, b) => (a.id < b.id ? -1 : 1));

t.test('results and late records are the same with and without examples', async (t) => {
  const payloads = genStream(5, { n: 3000, unit: 60_000, step: 2_000, maxOutOfOrderness: 5_000 }).map((p) => Buffer.from(p));
  const a = runInMemory(payloads, semFor(false), { batchSize: 50, restartEvery: 3 });
  const b = runInMemory(payloads, semFor(true), { batchSize: 50, restartEvery: 3 });
  t.same(byId(b.results), byId(a.results), 'results');
  t.same(byId(b.late), byId(a.late), 'late records');
});

t.test('query shows the most negative and most positive post of a window', async (t) => {
  const sem = semFor(true);
  const ing = new Ingestor(sem, { keyGroups: 1, actors: 1 });
  const op = new WindowOperator({ job: 'ex', window: sem.window, lateness: sem.lateness, mode: 'updates', compiled: sem.compiled });
  const texts = ['#k this is great and wonderful', '#k terrible awful bad', '#k fine', '#k bad', '#k amazing excellent superb'];
  texts.forEach((text, i) => ing.accept(Buffer.from(JSON.stringify({ id: `p${i}`, ts: 1_764_000_000_000 + i, text })), 'posts.in', i + 1));
  op.apply(ing.router.take()[0]!);
  const [view] = op.query('#k');
  const scored = texts.map((text, i) => ({ id: `p${i}`, score: score(text, 'en'), text }));
  const lo = [...scored].sort((a, b) => a.score - b.score || (a.id < b.id ? -1 : 1))[0]!;
  const hi = [...scored].sort((a, b) => b.score - a.score || (a.id < b.id ? -1 : 1))[0]!;
  t.same(view!.extra, { examples: { negative: [lo], positive: [hi] } }, 'the extreme posts, with id, text and score');
  t.notOk('minText' in view!.aggregate, 'examples are not result fields');
});

t.test('merging examples is associative and agrees with adding one by one', async (t) => {
  const job = sentimentJob({ keys, examples: true });
  const agg = job.aggregate;
  const post = fc.record({ id: fc.constantFrom('a', 'b', 'c', 'd'), text: fc.constantFrom('good', 'bad', 'meh', 'awful', 'great great'), ts: fc.constant(0), lang: fc.constant<'en'>('en') });
  fc.assert(
    fc.property(fc.array(post, { maxLength: 12 }), fc.nat(), (posts, cut) => {
      const one = posts.reduce((acc, p) => agg.add(acc, p), agg.init());
      const k = posts.length ? cut % (posts.length + 1) : 0;
      const left = posts.slice(0, k).reduce((acc, p) => agg.add(acc, p), agg.init());
      const right = posts.slice(k).reduce((acc, p) => agg.merge(acc, agg.add(agg.init(), p)), agg.init());
      t.same(agg.merge(left, right), one);
      return true;
    }),
    { numRuns: 300 },
  );
});
