// The merge of a partitioned input's sources (runtime/input-merge.ts), against what it must give: a
// stream of sequences 1..n, each on one partition or on none (a stray) or deleted, is split into the
// partitions' own lists; each partition delivers its list in chunks of any size, with completeness
// bounds (at least its last record, at most the sequence before its next record), interleaved with
// takes in any order. Whatever the chunking, bounds and interleaving, the records taken are exactly the
// partitioned ones in sequence order, each once, and the gaps are exactly the sequences no partition
// holds, as far as every partition is complete.

import t from 'tap';
import fc from 'fast-check';
import { InputMerge } from '../../src/runtime/input-merge.js';

/** What happens at each sequence of the stream: a record on partition p (≥ 0), or -1 (a stray or a deleted message). */
const streamArb = (partitions: number) => fc.array(fc.integer({ min: -1, max: partitions - 1 }), { maxLength: 120 });

t.test('records come out in sequence order, each once; the gaps are the sequences no partition holds', async () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 5 }).chain((p) => fc.tuple(fc.constant(p), streamArb(p), fc.array(fc.nat(), { minLength: 400, maxLength: 400 }))),
      fc.integer({ min: 0, max: 5 }),
      ([partitions, stream, choices], after) => {
        const n = stream.length;
        // Each partition's own records, in order (sequences start after `after`).
        const lanes: number[][] = Array.from({ length: partitions }, () => []);
        stream.forEach((p, i) => {
          if (p >= 0) lanes[p]!.push(after + 1 + i);
        });
        const end = after + n;
        const merge = new InputMerge<string>(partitions, after);
        const next = new Array<number>(partitions).fill(0);
        const complete = new Array<number>(partitions).fill(after);
        const taken: number[] = [];
        const gaps: number[] = [];
        let c = 0;
        let itemsMatch = true;
        const pick = (k: number): number => choices[c++ % choices.length]! % k;
        const take = (): void => {
          const run = merge.take();
          run.items.forEach((item, i) => (itemsMatch &&= item === `r${run.seqs[i]}`));
          taken.push(...run.seqs);
          for (const [from, to] of run.gaps) for (let s = from; s <= to; s++) gaps.push(s);
        };
        // A while at random; then every partition delivers the rest and is complete up to the end.
        for (let step = 0; complete.some((x) => x < end) && step < 300; step++) {
          const p = pick(partitions);
          const lane = lanes[p]!;
          if (pick(3) === 0) {
            take();
            continue;
          }
          // A chunk of 0 or more records, and a bound between its last record and the next one's sequence - 1.
          const k = pick(Math.min(lane.length - next[p]!, 4) + 1);
          const seqs = lane.slice(next[p]!, next[p]! + k);
          next[p]! += k;
          const low = Math.max(complete[p]!, seqs[seqs.length - 1] ?? complete[p]!);
          const high = next[p]! < lane.length ? lane[next[p]!]! - 1 : end;
          if (high < low) continue;
          const bound = low + pick(high - low + 1);
          merge.push(p, seqs, seqs.map((s) => `r${s}`), bound);
          complete[p] = bound;
        }
        for (let p = 0; p < partitions; p++) {
          const rest = lanes[p]!.slice(next[p]!);
          merge.push(p, rest, rest.map((s) => `r${s}`), end);
          if (pick(2)) take();
        }
        take();
        const expectedRecords = stream.flatMap((p, i) => (p >= 0 ? [after + 1 + i] : []));
        const expectedGaps = stream.flatMap((p, i) => (p < 0 ? [after + 1 + i] : []));
        return (
          itemsMatch &&
          JSON.stringify(taken) === JSON.stringify(expectedRecords) &&
          JSON.stringify(gaps) === JSON.stringify(expectedGaps) &&
          merge.position === end &&
          merge.buffered === 0
        );
      },
    ),
    { numRuns: 300 },
  );
});

t.test('nothing is handed out beyond the least complete partition, nor beyond a limit', async (t) => {
  const m = new InputMerge<string>(2, 0);
  m.push(0, [1, 3], ['a', 'c'], 5);
  t.same(m.take().seqs, [], 'partition 1 has said nothing yet');
  m.push(1, [2], ['b'], 2);
  const run = m.take();
  t.same([run.seqs, run.items, run.upTo], [[1, 2], ['a', 'b'], 2], 'up to partition 1 is complete');
  m.push(1, [], [], 10);
  const limited = m.take(4);
  t.same([limited.seqs, limited.gaps, limited.upTo], [[3], [[4, 4]], 4], 'a limit (the end of a drain) holds the merge there');
  t.same(m.take().gaps, [[5, 5]], 'then on to the frontier: partition 0 is complete up to 5');
  t.equal(m.frontier, 5);
});

t.test('a partition that sends records out of order, or below what it said was complete, is refused', async (t) => {
  const m = new InputMerge<string>(2, 0);
  m.push(0, [2, 4], ['b', 'd'], 4);
  t.throws(() => m.push(0, [3], ['c'], 5), /sequence 3 does not follow 4/, 'a record behind its partition');
  t.throws(() => m.push(0, [6], ['f'], 5), /complete up to 5, but it sent 6/, 'a bound below its own record');
  t.throws(() => m.push(1, [2, 2], ['x', 'y'], 2), /sequence 2 does not follow 2/, 'a sequence twice');
  t.throws(() => m.push(2, [], [], 1), /no input partition 2/, 'a partition the merge does not have');
  t.throws(() => new InputMerge(0, 0), /at least one partition/);
});
