// Large state in slices, checked for exactness: a barrier's windows and removed ids leave the
// partition in bounded slices (sendSnapshot) and reach LevelDB by key group through the sink's
// grouping as each slice arrives (CheckpointAssembly, straight into the store's batch); a chain restored with pauses (mergeChain) holds exactly the
// windows of its full checkpoint and deltas applied in order; a watermark step that emits nothing
// (final mode) still stops after its budget of windows.

import t from 'tap';
import fc from 'fast-check';
import { join } from 'node:path';
import { scratchDir } from '../helpers/nats.js';
import { CheckpointStore, fnvUtf8, type CheckpointMeta, type EntryChunk } from '../../src/io/checkpoint-store.js';
import { WindowCodec } from '../../src/io/window-codec.js';
import { WindowOperator, windowId, type DeltaItem, type Op, type PersistedWindow } from '../../src/runtime/window-operator.js';
import { compileJob } from '../../src/runtime/compiled-job.js';
import { sentimentJob } from '../../src/runtime/sentiment-job.js';
import { keyGroupOf } from '../../src/runtime/key-groups.js';
import { OUTPUT_SLICE, SNAPSHOT_SLICE, applyBatch, sendSnapshot } from '../../src/actors/partition-actor.js';
import { CheckpointAssembly } from '../../src/actors/sink-actor.js';
import { mirrorObjectParts, readMirrorObject } from '../../src/io/group-store.js';
import { encode } from '../../src/io/codec.js';

/** A written checkpoint as a group's mirror copies it (read back from LevelDB into one object) and reads it back. */
const throughMirror = async (store: CheckpointStore, written: CheckpointMeta): Promise<{ meta: unknown; chunks: EntryChunk[] }> => {
  const parts: Uint8Array[] = [];
  for await (const p of mirrorObjectParts(written, store.chunksOf(written))) parts.push(p);
  const bytes = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
  let at = 0;
  for (const p of parts) {
    bytes.set(p, at);
    at += p.length;
  }
  const back = readMirrorObject(bytes, 'test');
  return { meta: back.meta, chunks: [...back.chunks] };
};
import { yieldToLoop } from '../../src/actors/slices.js';
import type { OutMsg } from '../../src/actors/messages.js';

const scratch = scratchDir('tidemark-slices-');
t.teardown(() => scratch.remove());
let dirs = 0;

const KEY_GROUPS = 16;
const MIN = 60_000;
const COMPILED = compileJob(sentimentJob({ keys: { hashtags: true, all: false, keywords: [] } }), { stream: 'POSTS', lateIdField: 'postId' });
const acc = (count: number) => ({ count, positive: count, negative: 0, neutral: 0, scoreSum: count });
type Barrier = Extract<OutMsg, { t: 'barrier' | 'barrier-part' }>;
const meta = (id: number, parent: number, depth: number) => ({ id, time: 0, seq: id, watermark: { wm: 0, maxTs: [] }, sinks: {}, parent, full: parent === 0, depth, windows: 0, counters: {}, fingerprint: {} });

/** A window of the pool: key k, minute m. */
const win = (k: number, m: number, count: number, pending: boolean): PersistedWindow => ({ key: `#k${k}`, start: m * MIN, end: (m + 1) * MIN, state: pending ? 'pending' : 'open', acc: acc(count), revision: pending ? 1 : 0, n: count });
const idOf = (w: PersistedWindow): string => windowId(w.key, w.start, w.end);
const arbWindow = fc.record({ k: fc.integer({ min: 0, max: 40 }), m: fc.integer({ min: 0, max: 3 }), count: fc.integer({ min: 1, max: 9 }), pending: fc.boolean() }).map((w) => win(w.k, w.m, w.count, w.pending));
/** One checkpoint's content: windows written and (ids of) windows removed, never both for one id. */
const arbCheckpoint = fc.record({ upserts: fc.uniqueArray(arbWindow, { selector: idOf, maxLength: 60 }), deletes: fc.uniqueArray(arbWindow.map(idOf), { maxLength: 30 }) }).map((c) => ({ upserts: c.upserts, deletes: c.deletes.filter((d) => !c.upserts.some((w) => idOf(w) === d)) }));

/** FNV-1a over bytes, as the store hashed keys before it hashed their UTF-8 without building it. */
const fnvBytes = (h: number, bytes: Uint8Array): number => {
  for (const b of bytes) h = Math.imul(h ^ b, 0x01000193);
  return h >>> 0;
};

t.test('a key hashes as its UTF-8 bytes did (any string, lone surrogates too), so stored checkpoints still verify', async (t) => {
  const anyUnits = fc.array(fc.oneof(fc.integer({ min: 0, max: 0x7f }), fc.integer({ min: 0x80, max: 0x7ff }), fc.integer({ min: 0x800, max: 0xffff }), fc.integer({ min: 0xd800, max: 0xdfff })), { maxLength: 40 }).map((u) => String.fromCharCode(...u));
  fc.assert(
    fc.property(fc.oneof(fc.string({ unit: 'grapheme' }), fc.string({ unit: 'binary' }), anyUnits), fc.integer({ min: 0, max: 0xffffffff }), (s, seed) => fnvUtf8(seed, s) === fnvBytes(seed, Buffer.from(s, 'utf8'))),
    { numRuns: 2000 },
  );
  t.pass('fnvUtf8 = FNV-1a of Buffer.from(s, "utf8")');
});

t.test('a window entry encodes to the same bytes whichever shapes came before it', async (t) => {
  fc.assert(
    fc.property(fc.array(fc.oneof(arbWindow, arbWindow.map((w) => ({ ...w, acc: { b: w.n, a: 'x' } })), arbWindow.map((w) => ({ ...w, acc: [w.n] }))), { minLength: 1, maxLength: 20 }), (ws) => {
      const warm = new WindowCodec();
      for (const w of ws) warm.encode(w);
      const last = ws[ws.length - 1]!;
      const fresh = new WindowCodec();
      fresh.load(warm.shapeEntries());
      const a = warm.encode(last);
      const b = fresh.encode(last);
      return Buffer.from(a).equals(Buffer.from(b)) && JSON.stringify(fresh.decode(idOf(last), a)) === JSON.stringify({ ...last, id: idOf(last) });
    }),
    { numRuns: 300 },
  );
  t.pass('encode is independent of the codec\'s history and decodes back');
});

t.test('a chain written through the sink grouping and restored with pauses holds exactly the windows of its checkpoints applied in order', async (t) => {
  await fc.assert(
    fc.asyncProperty(arbCheckpoint, fc.array(arbCheckpoint, { maxLength: 4 }), async (full, deltas) => {
      const store = await CheckpointStore.open(join(scratch.dir, `c${++dirs}`));
      try {
        const model = new Map<string, PersistedWindow>();
        const chain = [{ upserts: full.upserts, deletes: [] as string[] }, ...deltas];
        for (const [i, c] of chain.entries()) {
          if (i === 0) model.clear();
          for (const w of c.upserts) model.set(idOf(w), w);
          for (const d of c.deletes) model.delete(d);
          // As the sink receives them: some parts, then the barrier.
          const half = Math.floor(c.upserts.length / 2);
          const slices: Barrier[] = [
            { t: 'barrier-part', from: 0, cp: i + 1, upserts: c.upserts.slice(0, half), deletes: c.deletes.slice(0, 3) },
            { t: 'barrier', from: 0, cp: i + 1, upserts: c.upserts.slice(half), deletes: c.deletes.slice(3), windows: model.size },
          ];
          // Each slice goes into the checkpoint's batch as it arrives; odd checkpoints also go through a mirror object.
          const keep = i % 2 === 1;
          const entries = new CheckpointAssembly(store.begin(i + 1), KEY_GROUPS);
          for (const s of slices) entries.add(s);
          const written = await entries.finish(meta(i + 1, i, i + 1));
          t.equal(written.entries, c.upserts.length + c.deletes.length);
          if (keep) {
            const back = await throughMirror(store, written);
            t.same(back.meta, written, 'the mirror object keeps the meta');
            t.same(back.chunks.flatMap((ch) => ch.u.flatMap(([kg, ws]) => ws.map((w) => [kg, idOf(w), w.acc, w.state, w.revision, w.n]))).sort(), c.upserts.map((w) => [keyGroupOf(w.key, KEY_GROUPS), idOf(w), w.acc, w.state, w.revision, w.n]).sort(), 'and every window under its key group');
            t.same(back.chunks.flatMap((ch) => ch.d.map(([, d]) => d)).sort(), [...c.deletes].sort(), 'and every removal');
          }
        }
        const r = await store.restore(undefined, yieldToLoop);
        if (!r) throw new Error('nothing restored');
        const got = new Map<string, PersistedWindow>();
        for (const [kg, ws] of r.windows) {
          for (const w of ws) {
            if (keyGroupOf(w.key, KEY_GROUPS) !== kg) throw new Error(`${w.key} restored under key group ${kg}`);
            if (got.has(idOf(w))) throw new Error(`${idOf(w)} restored twice`);
            const { id: _id, ...plain } = w;
            got.set(idOf(w), plain);
          }
        }
        t.same([...got].sort(), [...model].sort(), `full + ${deltas.length} deltas`);
      } finally {
        await store.close();
      }
    }),
    { numRuns: 25 },
  );
});

t.test('a barrier leaves in slices of at most SNAPSHOT_SLICE windows and ids, and they add up to the snapshot', async (t) => {
  const n = 2 * SNAPSHOT_SLICE + 345;
  const op = new WindowOperator({ job: 'j', window: { kind: 'tumbling', size: MIN }, lateness: 0, mode: 'updates', compiled: COMPILED });
  const ops: DeltaItem[] = [];
  for (let i = 0; i < n; i++) ops.push({ k: `#w${i}`, s: (i % 2) * MIN, a: acc(1), c: 1 });
  op.apply(ops);
  const collect = async (full: boolean, cp: number): Promise<Barrier[]> => {
    const msgs: Barrier[] = [];
    await sendSnapshot(op, 0, { t: 'barrier', cp, full }, (m) => void msgs.push(m as Barrier));
    return msgs;
  };
  const check = (msgs: Barrier[], label: string): void => {
    t.ok(
      msgs.every((m) => m.upserts.length + m.deletes.length <= SNAPSHOT_SLICE),
      `${label}: no slice holds more than ${SNAPSHOT_SLICE}`,
    );
    t.same(
      msgs.map((m) => m.t),
      [...msgs.slice(1).map(() => 'barrier-part'), 'barrier'],
      `${label}: parts, then the barrier`,
    );
    const last = msgs[msgs.length - 1]!;
    t.equal(last.t === 'barrier' ? last.windows : -1, op.size, `${label}: the barrier counts the live windows`);
  };
  const full = await collect(true, 1);
  check(full, 'full');
  t.equal(full.reduce((a, m) => a + m.upserts.length, 0), n, 'every window once');
  t.equal(new Set(full.flatMap((m) => m.upserts.map(idOf))).size, n, 'no window twice');
  // The sink's grouping, kept as a group's mirror gets it (the batch itself is dropped).
  const store = await CheckpointStore.open(join(scratch.dir, `c${++dirs}`));
  t.teardown(() => store.close());
  const entriesOf = async (msgs: Barrier[], cp: number): Promise<EntryChunk[]> => {
    const a = new CheckpointAssembly(store.begin(cp), KEY_GROUPS);
    for (const m of msgs) a.add(m);
    return (await throughMirror(store, await a.finish(meta(cp, cp - 1, cp)))).chunks;
  };
  let grouped = 0;
  for (const ch of await entriesOf(full, 1)) for (const [kg, ws] of ch.u) for (const w of ws) grouped += keyGroupOf(w.key, KEY_GROUPS) === kg ? 1 : 0;
  t.equal(grouped, n, 'the sink puts every window under its key group');

  // The watermark passes the first minute: its windows close (lateness 0) and the delta removes them.
  op.apply([MIN]);
  op.drainOutput();
  const delta = await collect(false, 2);
  check(delta, 'delta');
  const removed = delta.flatMap((m) => m.deletes);
  t.equal(removed.length, Math.ceil(n / 2), 'every closed window removed once');
  t.same((await entriesOf(delta, 2)).flatMap((ch) => ch.d).map(([kg, id]) => kg === keyGroupOf(id.slice(0, id.indexOf('\u0000')), KEY_GROUPS)).filter((x) => !x), [], 'each removal under its key group');
  t.equal(delta.reduce((a, m) => a + m.upserts.length, 0), 0, 'and nothing else changed');
});

t.test('a watermark step that emits nothing still works in slices of its budget, with the same outcome', async (t) => {
  const make = () => new WindowOperator({ job: 'j', window: { kind: 'tumbling', size: MIN }, lateness: MIN, mode: 'final', compiled: COMPILED });
  const ops: DeltaItem[] = Array.from({ length: 1000 }, (_, i) => ({ k: `#f${i}`, s: 0, a: acc(1), c: 1 }));
  const sliced = make();
  const whole = make();
  sliced.apply(ops);
  whole.apply(ops);
  // Fires every window: in final mode firing emits nothing.
  const step = [MIN];
  let steps = 0;
  for (let i = 0; (i = sliced.applySome(step, i, 100)) < step.length; ) steps++;
  whole.apply(step);
  t.equal(steps, 9, 'ten slices of 100 windows');
  t.same(sliced.countsByState(), { open: 0, pending: 1000 }, 'every window fired');
  t.same(sliced.drainOutput(), whole.drainOutput(), 'nothing emitted either way');
  const close = [2 * MIN];
  for (let i = 0; (i = sliced.applySome(close, i, 100)) < close.length; );
  whole.apply(close);
  const a = sliced.drainOutput();
  t.equal(a.results.length, 1000, 'closing emits one final record per window');
  t.same(a, whole.drainOutput(), 'the same records as one step');
});

t.test('a batch applied in slices (applyBatch) emits what it emits unsliced, in order, and its closed windows leave the next checkpoint by id', async (t) => {
  const make = () => new WindowOperator({ job: 'j', window: { kind: 'tumbling', size: MIN }, lateness: MIN, mode: 'updates', compiled: COMPILED });
  const n = 3 * OUTPUT_SLICE + 77;
  const open: DeltaItem[] = Array.from({ length: n }, (_, i) => ({ k: `#s${i}`, s: (i % 3) * MIN, a: acc(1 + (i % 4)), c: 1 + (i % 4) }));
  // Deltas, a watermark that fires the first two minutes' windows (the first closes at once, past its
  // lateness), a delta for the third minute, then a watermark that closes the second minute's windows
  // and fires the third's.
  const batch: Op[] = [...open, 2 * MIN, { k: '#late', s: 2 * MIN, a: acc(1), c: 1 }, 3 * MIN, { k: '#next', s: 3 * MIN, a: acc(2), c: 2 }];
  const sliced = make();
  const whole = make();
  for (const op of [sliced, whole]) op.snapshot(true);
  const msgs: Array<Extract<OutMsg, { t: 'out' }>> = [];
  await applyBatch(sliced, 0, { t: 'batch', n: 7, ops: batch }, (m) => void msgs.push(m as Extract<OutMsg, { t: 'out' }>));
  whole.apply(batch);
  const expected = whole.drainOutput().results;
  t.ok(msgs.length > 3, `several slices (${msgs.length})`);
  t.ok(msgs.every((m) => m.results.length <= 2 * OUTPUT_SLICE), 'none holds more than its budget of windows (two records each at most)');
  t.same(
    msgs.map((m) => m.partial === true),
    [...msgs.slice(1).map(() => true), false],
    'partial slices, then the batch itself',
  );
  t.ok(msgs.every((m) => m.n === 7 && m.from === 0), 'every slice names the batch');
  t.same(
    msgs.flatMap((m) => m.results),
    expected,
    'the same records in the same order',
  );
  t.same(sliced.countsByState(), whole.countsByState(), 'the same windows live');
  const removed = (op: WindowOperator): string[] => [...op.snapshot(false).deletes].sort();
  const ids = removed(sliced);
  const closed = open.filter((d) => d.s < 2 * MIN);
  t.equal(ids.length, closed.length, 'the first two minutes closed');
  t.same(ids, removed(whole), 'the same ids removed');
  t.same(ids, closed.map((d) => windowId(d.k, d.s, d.s + MIN)).sort(), 'each closed window by its id');
  t.same(removed(sliced), [], 'once');
});

t.test('a checkpoint begun and discarded leaves nothing; one begun later still writes', async (t) => {
  const store = await CheckpointStore.open(join(scratch.dir, `c${++dirs}`));
  t.teardown(() => store.close());
  await store.write({ meta: meta(1, 0, 1), chunks: [{ u: [[3, [win(1, 0, 2, false)]]], d: [] }] });
  // Checkpoint 2's slices arrive, then the job stops before its last barrier.
  const abandoned = new CheckpointAssembly(store.begin(2), KEY_GROUPS);
  abandoned.add({ upserts: [win(2, 0, 5, false)], deletes: [idOf(win(1, 0, 2, false))] });
  // Meanwhile checkpoint 3 (the next run's) is written in full.
  const next = new CheckpointAssembly(store.begin(3), KEY_GROUPS);
  next.add({ upserts: [win(4, 1, 1, true)], deletes: [] });
  await abandoned.discard();
  const m3 = await next.finish(meta(3, 0, 1));
  t.equal(m3.entries, 1);
  const r = await store.restore(undefined, yieldToLoop);
  t.equal(r?.meta.id, 3);
  t.same([...r!.windows.values()].flat().map(idOf), [idOf(win(4, 1, 1, true))], 'only checkpoint 3: nothing of the discarded one');
  t.same((await store.list()).metas.map((m) => m.id).sort(), [1, 3], 'checkpoint 2 was never recorded');
  await t.rejects(next.finish(meta(3, 0, 1)), /already finished/, 'a checkpoint is written once');
  t.throws(() => next.writer.upsert(0, win(5, 0, 1, false)), /already finished/, 'and takes nothing after');
});

t.test('a mirror object of the format before chunks still reads; a damaged one is refused with its name', async (t) => {
  const m = meta(7, 0, 1);
  const legacy = encode({ meta: m, upserts: [[2, [win(1, 0, 3, false)]]], deletes: [[5, 'x']] });
  const back = readMirrorObject(legacy, 'cp-7-e1');
  t.same(back.meta, m);
  t.same([...back.chunks], [{ u: [[2, [win(1, 0, 3, false)]]], d: [[5, 'x']] }]);
  const parts: Uint8Array[] = [];
  for await (const p of mirrorObjectParts(m, [{ u: [], d: [] }])) parts.push(p);
  const cut = new Uint8Array(parts[0]!.length + parts[1]!.length - 1);
  cut.set(parts[0]!);
  cut.set(parts[1]!.subarray(0, parts[1]!.length - 1), parts[0]!.length);
  t.throws(() => readMirrorObject(cut, 'cp-7-e1'), /the checkpoint mirror's object cp-7-e1 is damaged \(a record runs past its end\)/);
});
