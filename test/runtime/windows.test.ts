import t from 'tap';
import { parseWindowSpec, tumblingWindow, slidingWindows, formatWindowSpec } from '../../src/runtime/windows.js';
import { parseDuration } from '../../src/runtime/duration.js';
import { lifecycleAt } from '../../src/runtime/lateness.js';

const MIN = 60_000;

t.test('tumbling windows start at multiples of SIZE since the epoch, half-open', async (t) => {
  t.same(tumblingWindow(0, MIN), { start: 0, end: MIN });
  t.same(tumblingWindow(MIN - 1, MIN), { start: 0, end: MIN }, 'last millisecond belongs to the window');
  t.same(tumblingWindow(MIN, MIN), { start: MIN, end: 2 * MIN }, 'end is exclusive');
  t.same(tumblingWindow(-1, MIN), { start: -MIN, end: 0 }, 'before the epoch floors downwards');
});

t.test('sliding windows: SIZE/SLIDE windows whose start is a multiple of SLIDE and contain ts', async (t) => {
  const ws = slidingWindows(25, 30, 10);
  t.same(ws, [{ start: 20, end: 50 }, { start: 10, end: 40 }, { start: 0, end: 30 }]);
  for (const w of slidingWindows(29, 30, 10)) t.ok(w.start <= 29 && 29 < w.end);
  t.equal(slidingWindows(30, 30, 10).length, 3);
  t.notOk(slidingWindows(30, 30, 10).some((w) => w.start === 0), 'a window does not contain its end');
});

t.test('window specs parse and reject with the flag named', async (t) => {
  t.same(parseWindowSpec('tumbling:1m'), { kind: 'tumbling', size: MIN });
  t.same(parseWindowSpec('sliding:10m,1m'), { kind: 'sliding', size: 10 * MIN, slide: MIN });
  t.same(parseWindowSpec('session:30s'), { kind: 'session', gap: 30_000 });
  t.equal(formatWindowSpec(parseWindowSpec('sliding:10m,1m')), 'sliding:10m,1m');
  t.throws(() => parseWindowSpec('sliding:10m,3m'), /--window: .*multiple of SLIDE/);
  t.throws(() => parseWindowSpec('hopping:1m'), /--window: .*accepted: tumbling/);
  t.throws(() => parseWindowSpec('tumbling:0s'), /greater than 0/);
  t.throws(() => parseWindowSpec('tumbling:1m,2m'), /not a window/);
});

t.test('durations', async (t) => {
  t.equal(parseDuration('250ms'), 250);
  t.equal(parseDuration('30s'), 30_000);
  t.equal(parseDuration('10m'), 600_000);
  t.equal(parseDuration('1h'), 3_600_000);
  t.equal(parseDuration('0'), 0);
  t.throws(() => parseDuration('10', '--allowed-lateness'), /--allowed-lateness: "10" is not a duration/);
  t.throws(() => parseDuration('abc'), /not a duration/);
});

t.test('lifecycle of a window under a watermark (end 100, lateness 10)', async (t) => {
  const w = { start: 0, end: 100 };
  t.equal(lifecycleAt(w, 99, 10), 'open', 'W = end − 1');
  t.equal(lifecycleAt(w, 100, 10), 'pending', 'W = end');
  t.equal(lifecycleAt(w, 109, 10), 'pending', 'W = end + L − 1');
  t.equal(lifecycleAt(w, 110, 10), 'closed', 'W = end + L');
  t.equal(lifecycleAt(w, 100, 0), 'closed', 'no lateness: closed at end');
  t.equal(lifecycleAt(w, -Infinity, 0), 'open');
});
