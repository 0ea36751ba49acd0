// When a checkpoint is full and when it is a delta: full once the deltas since the last full one
// add up to its size, never two fulls in flight, failures change nothing, chains capped in length.

import t from 'tap';
import { FullCheckpointPolicy } from '../../src/runtime/checkpoint-policy.js';

/** Runs checkpoints one at a time: a full one writes `fullBytes`, a delta `deltaBytes`; returns the kinds. */
function sequence(p: FullCheckpointPolicy, n: number, fullBytes: number, deltaBytes: number, firstCp = 1): string {
  let out = '';
  for (let cp = firstCp; cp < firstCp + n; cp++) {
    const full = p.next(cp);
    out += full ? 'F' : 'd';
    p.written(cp, full ? fullBytes : deltaBytes);
  }
  return out;
}

t.test('a fresh job starts with a full checkpoint; deltas follow until they add up to its size', async (t) => {
  t.equal(sequence(new FullCheckpointPolicy(), 12, 1000, 100), 'FddddddddddF', '10 deltas of 100 bytes = the 1000-byte full one');
  t.equal(sequence(new FullCheckpointPolicy(), 6, 1000, 400), 'FdddFd', '3 deltas reach 1200 ≥ 1000');
  t.equal(sequence(new FullCheckpointPolicy(), 5, 1000, 1000), 'FdFdF', 'when everything changes, every other one is full');
});

t.test('small changes to a big state: fulls are rare, so their cost follows the rate of change', async (t) => {
  const p = new FullCheckpointPolicy(undefined, 1000);
  const kinds = sequence(p, 500, 66_000_000, 660_000);
  t.equal(kinds.split('').filter((k) => k === 'F').length, 5, 'one full per 100 deltas of 1%');
  t.equal(kinds.slice(0, 102), 'F' + 'd'.repeat(100) + 'F');
});

t.test('the chain length is capped', async (t) => {
  t.equal(sequence(new FullCheckpointPolicy(undefined, 4), 9, 1000, 1), 'FdddFdddF');
});

t.test('a restored chain is continued, not restarted', async (t) => {
  const p = new FullCheckpointPolicy({ fullBytes: 1000, deltaBytes: 850, depth: 6 });
  t.equal(p.lastDepth, 6, 'the restored checkpoint is 6th in its chain');
  t.equal(sequence(p, 2, 1000, 100, 50), 'dd', '850 + 100 < 1000, then 950 < 1000');
  t.equal(p.lastDepth, 8, 'the deltas continue its positions');
  t.equal(sequence(p, 1, 1000, 100, 52), 'F', '850 + 100 + 100 ≥ 1000');
  t.equal(p.lastDepth, 1, 'a full checkpoint starts a chain');
  t.same(p.state, { fullBytes: 1000, deltaBytes: 0, depth: 1 });
});

t.test('no second full checkpoint while one is being written; a failed write changes nothing', async (t) => {
  const p = new FullCheckpointPolicy();
  t.equal(p.next(1), true, 'first: full');
  t.equal(p.next(2), false, 'the next one, while the full one is in flight: a delta');
  p.written(1, 5000);
  p.written(2, 100);
  t.same(p.state, { fullBytes: 5000, deltaBytes: 100, depth: 2 });
  t.equal(p.next(3), false);
  p.written(3, undefined);
  t.same(p.state, { fullBytes: 5000, deltaBytes: 100, depth: 2 }, 'a failed checkpoint is not part of the chain');
  p.written(99, 100);
  t.same(p.state, { fullBytes: 5000, deltaBytes: 100, depth: 2 }, 'an unknown id is ignored');
});
