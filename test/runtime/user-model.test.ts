// Generated user aggregates (random combinations of count, sum, min, max) against the independent
// model, in memory: every window kind, both emit modes, lateness 0 and > 0, with pre-aggregated
// deltas, per-record deltas, several partitions and restarts from checkpoints.

import t from 'tap';
import fc from 'fast-check';
import { isDeepStrictEqual } from 'node:util';
import { runInMemory } from '../../src/runtime/pipeline.js';
import { compileJob, validateDefinition } from '../../src/runtime/compiled-job.js';
import { referenceRecords, type RefConfig } from '../helpers/reference.js';
import { componentsArb, windowArb, recordsArb, moduleSource, summarize, asRecs } from '../helpers/generated-jobs.js';

const byId = <T extends { id: string }>(xs: readonly T[]): T[] => [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

/** Evaluates a generated module's source into its default export (as `import` would). */
async function definitionOf(source: string): Promise<unknown> {
  const mod = (await import(`data:text/javascript,${encodeURIComponent(source)}`)) as { default: unknown };
  return mod.default;
}

t.test('generated aggregates equal the model, pre-aggregated or not, across restarts', async (t) => {
  let checked = 0;
  await fc.assert(
    fc.asyncProperty(
      componentsArb,
      windowArb,
      fc.constantFrom(0, 3_000),
      fc.constantFrom(0, 15_000),
      fc.constantFrom<'updates' | 'final'>('updates', 'final'),
      recordsArb({ min: 1, max: 120 }),
      fc.record({ batchSize: fc.integer({ min: 1, max: 40 }), partitions: fc.integer({ min: 1, max: 3 }), restartEvery: fc.option(fc.integer({ min: 1, max: 4 }), { nil: undefined }), slice: fc.option(fc.integer({ min: 1, max: 5 }), { nil: undefined }), keyGroups: fc.integer({ min: 3, max: 16 }), rescale: fc.array(fc.integer({ min: 1, max: 3 }), { maxLength: 3 }) }),
      async (components, window, maxOutOfOrderness, lateness, emit, records, run) => {
        const def = validateDefinition(await definitionOf(moduleSource('gen', components)));
        const cfg: RefConfig = { job: 'gen', window, maxOutOfOrderness, lateness, keys: { hashtags: false, all: false, keywords: [] }, emit, summarize: summarize(components), lateIdField: 'recordId' };
        const expected = referenceRecords(asRecs(records), cfg);
        const sem = { job: 'gen', window, maxOutOfOrderness, lateness, emit, compiled: compileJob(def, { stream: 'IN' }) };
        const payloads = records.map((r) => Buffer.from(JSON.stringify(r)));
        for (const preaggregate of [true, false]) {
          const got = runInMemory(payloads, sem, { ...run, preaggregate });
          if (!isDeepStrictEqual(byId(got.results), byId(expected.results)) || !isDeepStrictEqual(byId(got.late), byId(expected.late))) {
            t.same(byId(got.results), byId(expected.results), `results (preaggregate ${preaggregate})`);
            t.same(byId(got.late), byId(expected.late), `late records (preaggregate ${preaggregate})`);
            return false;
          }
        }
        checked++;
        return true;
      },
    ),
    { numRuns: Number(process.env.TIDEMARK_MODEL_RUNS ?? 150), seed: 20261202 },
  );
  t.ok(checked > 0, `${checked} generated jobs and streams matched the model`);
});

t.test('pre-aggregation sends fewer ops than records without changing a result', async (t) => {
  const def = validateDefinition(await definitionOf(moduleSource('gen', [{ op: 'count' }, { op: 'sum', field: 'v' }])));
  const sem = { job: 'gen', window: { kind: 'tumbling' as const, size: 60_000 }, maxOutOfOrderness: 0, lateness: 0, emit: 'updates' as const, compiled: compileJob(def, { stream: 'IN' }) };
  const records = Array.from({ length: 500 }, (_, i) => ({ id: `r${i}`, ts: 1_764_000_000_000 + i * 10, keys: ['a', 'b'], v: i % 7, w: 0 }));
  const { Ingestor } = await import('../../src/runtime/ingest.js');
  const count = (preaggregate: boolean): number => {
    const ing = new Ingestor(sem, { keyGroups: 1, actors: 1 }, 0, { preaggregate });
    records.forEach((r, i) => ing.accept(Buffer.from(JSON.stringify(r)), 'in', i + 1));
    return ing.router.take()[0]!.filter((op) => typeof op !== 'number').length;
  };
  t.equal(count(false), 1000, 'per record: one delta per (record, key)');
  t.equal(count(true), 2, 'pre-aggregated: one delta per (key, window) in the batch');
});
