// A watermark per input partition with journaled idleness (DESIGN.md §3): the tracker, the journal,
// and the whole runtime (runInMemory) against the reference model's independent partitioned
// watermark — live decisions from a simulated wall clock, then replays of the recorded journal
// split at checkpoints, which must give the same watermarks and the same results.

import t from 'tap';
import fc from 'fast-check';
import { isDeepStrictEqual } from 'node:util';
import { WatermarkTracker, type IdleDecision } from '../../src/runtime/watermark.js';
import { IdleJournal } from '../../src/runtime/idleness.js';
import { runInMemory } from '../../src/runtime/pipeline.js';
import { compileJob } from '../../src/runtime/compiled-job.js';
import { sentimentJob } from '../../src/runtime/sentiment-job.js';
import { inputPartitionOf } from '../../src/io/subjects.js';
import { partitionedWatermarks, referencePartitionedRun, type RefConfig, type RefMessage, type Result, type Late } from '../helpers/reference.js';

const JOB = 'j';
const P = 4;

t.test('tracker: the minimum over partitions that are not idle; all idle holds; a post makes its partition active', async (t) => {
  const w = new WatermarkTracker(10, ['0', '1', '2']);
  t.equal(w.observe(100, '0'), -Infinity, 'partitions without a post hold the watermark at −∞');
  w.observe(200, '1');
  t.equal(w.observe(150, '2'), 90, 'min(100, 200, 150) − 10');
  t.equal(w.setIdle('0', true), 140, 'partition 0 idle: min(200, 150) − 10');
  t.equal(w.setIdle('2', true), 190);
  t.equal(w.setIdle('1', true), 190, 'every partition idle: held');
  t.equal(w.observe(50, '0'), 190, 'partition 0 active again behind the watermark: it never decreases');
  t.equal(w.isIdle('0'), false);
  t.same(w.partitions(), [
    { partition: '0', watermark: 90, idle: false },
    { partition: '1', watermark: 190, idle: true },
    { partition: '2', watermark: 140, idle: true },
  ]);
  const copy = new WatermarkTracker(10, ['0', '1', '2']);
  copy.restore(JSON.parse(JSON.stringify(w.toJSON())) as ReturnType<WatermarkTracker['toJSON']>);
  t.same(copy.partitions(), w.partitions(), 'idle partitions survive a checkpoint');
  t.same(new WatermarkTracker(5).toJSON(), { wm: -Infinity, maxTs: [['0', -Infinity]] }, 'one partition: the state format is unchanged');
});

t.test('journal: decisions apply at their positions; none is made while some lie ahead', async (t) => {
  const j = new IdleJournal(1000, ['0', '1'], 0);
  t.same(j.due(999, () => false), [], 'not quiet long enough');
  t.same(j.due(1000, () => false), ['0', '1']);
  j.seen('1', 7, 900);
  t.same(j.due(1000, () => false), ['0']);
  j.replay([{ seq: 9, partition: '0', idle: true, wm: 5 }, { seq: 4, partition: '1', idle: true, wm: 3 }]);
  t.equal(j.replaying, true);
  t.same(j.due(5000, () => false), [], 'no wall-clock decision while journaled ones lie ahead');
  t.same(j.dueBefore(4), []);
  t.same(j.dueBefore(5).map((d) => d.seq), [4], 'a decision at 4 applies before message 5');
  t.same(j.toState().journal, [{ seq: 9, partition: '0', idle: true, wm: 5 }], 'a checkpoint carries what is still ahead');
  t.same(j.dueBefore(100).map((d) => d.seq), [9]);
  t.equal(j.replaying, false);
  t.same(new IdleJournal(0, ['0', '1'], 0).due(1e9, () => false), [], 'no idle timeout: never idle');
  t.same(new IdleJournal(10, ['0'], 0).due(1e9, () => false), [], 'one partition: never idle');
});

// ---------------------------------------------------------------------------------------------
// The runtime against the model

type Run = { results: Result[]; late: Late[]; dead: { id: string }[] };
const byId = <T extends { id: string }>(xs: readonly T[]): T[] => [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

function config(window: RefConfig['window'], o: Partial<RefConfig> = {}): RefConfig {
  return { job: JOB, window, maxOutOfOrderness: 5, lateness: 0, keys: { hashtags: true, all: true, keywords: [] }, emit: 'updates', ...o };
}

interface Msg { partition: number; ts: number; tag: string; bad?: boolean; at: number }

const subjectOf = (m: Msg, i: number): string => (m.partition < 0 ? `posts.in.u${i}` : `posts.in.${m.partition}.u${i}`);
const payloadOf = (m: Msg, i: number): string => (m.bad ? '{"id":' : JSON.stringify({ id: `p${i}`, ts: m.ts, text: `${m.tag} fine` }));

function implRun(
  msgs: readonly Msg[],
  cfg: RefConfig,
  o: { batchSize?: number; partitions?: number; restartEvery?: number; idleTimeout?: number; journal?: readonly IdleDecision[]; trace?: Array<[number, number]> },
): Run & { journal: IdleDecision[] } {
  const sem = { ...cfg, compiled: compileJob(sentimentJob({ keys: cfg.keys }), { stream: 'POSTS', lateIdField: 'postId' }) };
  let last = 0;
  const out = runInMemory(
    msgs.map((m, i) => Buffer.from(payloadOf(m, i))),
    sem,
    {
      inputPartitions: P,
      partitionOf: inputPartitionOf,
      subjects: msgs.map(subjectOf),
      batchSize: o.batchSize ?? 1,
      partitions: o.partitions ?? 1,
      keyGroups: 8,
      ...(o.restartEvery ? { restartEvery: o.restartEvery } : {}),
      idleTimeout: o.idleTimeout ?? 0,
      ...(o.journal ? { journal: o.journal } : {}),
      // The simulated wall clock: the arrival time of the last message read.
      now: () => msgs[last]?.at ?? 0,
      onWatermark: (seq, wm) => {
        last = seq - 1;
        o.trace?.push([seq, wm]);
      },
    },
  );
  return out as unknown as Run & { journal: IdleDecision[] };
}

function refRun(msgs: readonly Msg[], cfg: RefConfig, journal: readonly IdleDecision[]): Run {
  const ref: RefMessage[] = msgs.map((m, i) => ({ payload: payloadOf(m, i), partition: m.partition, subject: subjectOf(m, i) }));
  return referencePartitionedRun(ref, cfg, P, journal.filter((d) => d.idle).map((d) => ({ seq: d.seq, partition: Number(d.partition) })));
}

function diff(a: Run, e: Run): string {
  const out: string[] = [];
  for (const k of ['results', 'late'] as const) {
    const x = byId(a[k] as Array<{ id: string }>);
    const y = byId(e[k] as Array<{ id: string }>);
    if (!isDeepStrictEqual(x, y)) {
      const i = x.findIndex((r, n) => !isDeepStrictEqual(r, y[n]));
      out.push(`${k}: ${x.length} vs ${y.length}; first difference\n  actual   ${JSON.stringify(x[i])}\n  expected ${JSON.stringify(y[i])}`);
    }
  }
  const da = a.dead.map((d) => d.id).sort().join();
  const de = e.dead.map((d) => d.id).sort().join();
  if (da !== de) out.push(`dead letters: ${da} vs ${de}`);
  return out.join('\n');
}

t.test('one quiet partition: the windows wait for it, unless it is declared idle', async (t) => {
  const cfg = config({ kind: 'tumbling', size: 100 });
  // Partition 3 posts once at ts 10, then nothing; partitions 0-2 move on to ts 500.
  const msgs: Msg[] = [{ partition: 3, ts: 10, tag: '#a', at: 0 }];
  for (let i = 1; i <= 30; i++) msgs.push({ partition: i % 3, ts: 10 + i * 17, tag: '#a', at: i * 100 });
  const waiting = implRun(msgs, config({ kind: 'tumbling', size: 100 }), {});
  t.equal(diff(waiting, refRun(msgs, cfg, [])), '');
  t.ok(waiting.results.every((r) => r.watermark === null), 'without idleness every window fires only at the end of input (+∞)');
  const live = implRun(msgs, cfg, { idleTimeout: 1000 });
  t.ok(live.journal.length >= 1, 'partition 3 was declared idle');
  t.same(live.journal[0], { seq: 11, partition: '3', idle: true, wm: 5 }, 'at the first batch boundary 1 s after its only post (the watermark then: ts 10 − 5)');
  t.ok(live.results.some((r) => r.watermark !== null && r.window.end <= 300), 'windows fired before the end of input');
  t.equal(diff(live, refRun(msgs, cfg, live.journal)), '', 'the model agrees, given the journal');
  // A post of the idle partition makes it active again; one far behind is late.
  const back = [...msgs, { partition: 3, ts: 20, tag: '#a', at: 3200 }, { partition: 1, ts: 600, tag: '#a', at: 3300 }];
  const again = implRun(back, cfg, { idleTimeout: 1000 });
  t.equal(again.late.length > 0, true, 'a post of the idle partition behind the watermark is late');
  t.equal(diff(again, refRun(back, cfg, again.journal)), '');
});

/** A partitioned stream: per message a partition (−1: a subject without one), an event time, a key, an arrival time. */
const streamArb = fc
  .array(
    fc.record({
      partition: fc.oneof({ weight: 20, arbitrary: fc.integer({ min: 0, max: P - 1 }) }, { weight: 1, arbitrary: fc.constant(-1) }),
      dt: fc.integer({ min: -40, max: 30 }),
      tag: fc.constantFrom('#a', '#b', 'tick'),
      bad: fc.integer({ min: 0, max: 19 }).map((n) => n === 0),
      gap: fc.integer({ min: 0, max: 300 }),
      quiet: fc.integer({ min: 0, max: P }),
    }),
    { minLength: 1, maxLength: 120 },
  )
  .map((xs) => {
    // Event time drifts forwards per partition with disorder; one partition at a time goes quiet for a stretch.
    const ts = [0, 0, 0, 0];
    let at = 0;
    let quiet = -1;
    const out: Msg[] = [];
    xs.forEach((x, i) => {
      if (i % 25 === 0) quiet = x.quiet < P ? x.quiet : -1;
      const p = x.partition === quiet ? (x.partition + 1) % P : x.partition;
      at += x.gap;
      const base = p < 0 ? 0 : ts[p]!;
      const t = Math.max(0, base + x.dt);
      if (p >= 0) ts[p] = Math.max(base, t);
      out.push({ partition: p, ts: t, tag: x.tag, at, ...(x.bad ? { bad: true } : {}) });
    });
    return out;
  });

const windowArb = fc.constantFrom<RefConfig['window']>({ kind: 'tumbling', size: 50 }, { kind: 'sliding', size: 60, slide: 20 }, { kind: 'session', gap: 25 });

t.test('live decisions, then replays of their journal split at checkpoints: the same watermarks and results, as the model says', async (t) => {
  let decided = 0;
  let firedEarly = 0;
  fc.assert(
    fc.property(
      streamArb,
      windowArb,
      fc.constantFrom(0, 10),
      fc.integer({ min: 1, max: 9 }),
      fc.integer({ min: 1, max: 5 }),
      fc.constantFrom(200, 500, 1000),
      (msgs, window, lateness, batchSize, restartEvery, idleTimeout) => {
        const cfg = config(window, { lateness });
        const liveTrace: Array<[number, number]> = [];
        const live = implRun(msgs, cfg, { batchSize, idleTimeout, trace: liveTrace });
        const expected = refRun(msgs, cfg, live.journal);
        if (live.journal.length) decided++;
        if (live.journal.length && live.results.some((r) => r.watermark !== null) && !implRun(msgs, cfg, { batchSize }).results.some((r) => r.watermark !== null)) firedEarly++;
        const d1 = diff(live, expected);
        if (d1) throw new Error(`live run against the model:\n${d1}`);
        // The model's watermark after each message (before the decisions at its position).
        const wm = partitionedWatermarks(
          msgs.map((m) => ({ partition: m.partition, ...(m.bad || m.partition < 0 ? {} : { ts: m.ts }) })),
          P,
          live.journal.map((d) => ({ seq: d.seq, partition: Number(d.partition) })),
          cfg.maxOutOfOrderness,
        );
        const modelAfter = wm.after.map((steps, k) => (msgs[k]!.bad || msgs[k]!.partition < 0 ? wm.before[k]! : steps[0]!));
        if (!isDeepStrictEqual(liveTrace.map(([, w]) => w), modelAfter)) throw new Error(`watermarks ${JSON.stringify(liveTrace)} vs model ${JSON.stringify(modelAfter)}`);
        // Replays: other batches, restarts that restore the watermark state (journal included) from a checkpoint.
        const replayTrace: Array<[number, number]> = [];
        const replay = implRun(msgs, cfg, { batchSize: batchSize + 2, restartEvery, partitions: 2, journal: live.journal, trace: replayTrace });
        const d2 = diff(replay, expected);
        if (d2) throw new Error(`replay with restarts every ${restartEvery} batches:\n${d2}`);
        if (!isDeepStrictEqual(replayTrace, liveTrace)) throw new Error('replay: another watermark sequence');
        if (!isDeepStrictEqual(replay.journal, live.journal)) throw new Error('replay: the journal changed');
        // A live run with restarts makes its own decisions (the wall clock restarts): the model agrees given its journal.
        const restarted = implRun(msgs, cfg, { batchSize, idleTimeout, restartEvery });
        const d3 = diff(restarted, refRun(msgs, cfg, restarted.journal));
        if (d3) throw new Error(`live run with restarts:\n${d3}`);
      },
    ),
    { numRuns: 150, seed: 11 },
  );
  t.ok(decided > 50, `streams with idleness decisions: ${decided} of 150`);
  t.ok(firedEarly > 10, `streams where only idleness let windows fire before the end: ${firedEarly}`);
});

t.test('any journal, replayed: the runtime equals the model', async (t) => {
  const journalArb = (n: number): fc.Arbitrary<IdleDecision[]> =>
    fc
      .array(fc.record({ seq: fc.integer({ min: 0, max: n }), partition: fc.integer({ min: 0, max: P - 1 }) }), { maxLength: 8 })
      .map((ds) => ds.sort((a, b) => a.seq - b.seq).map((d) => ({ seq: d.seq, partition: String(d.partition), idle: true, wm: 0 })));
  fc.assert(
    fc.property(
      streamArb.chain((msgs) => fc.tuple(fc.constant(msgs), journalArb(msgs.length))),
      windowArb,
      fc.integer({ min: 1, max: 12 }),
      fc.integer({ min: 0, max: 4 }),
      ([msgs, journal], window, batchSize, restartEvery) => {
        const cfg = config(window, { lateness: 10, emit: batchSize % 2 ? 'updates' : 'final' });
        const run = implRun(msgs, cfg, { batchSize, journal, partitions: 3, ...(restartEvery ? { restartEvery } : {}) });
        const d = diff(run, refRun(msgs, cfg, journal));
        if (d) throw new Error(d);
      },
    ),
    { numRuns: 150, seed: 5 },
  );
  t.pass('150 journals');
});
