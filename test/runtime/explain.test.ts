// `explain` answers why a window has or has not fired: these cases read like the questions users ask
// (nothing read yet, a lagging or idle input, a fired window taking late posts, a window long closed).

import t from 'tap';
import { explainKey, explainInputs, type InputWatermark, type LiveWindow, type ExplainSettings } from '../../src/runtime/explain.js';

const MIN = 60_000;
const settings: ExplainSettings = { maxOutOfOrderness: 5_000, lateness: 30_000, idleTimeout: 10_000 };
const input = (partition: string, watermark: number, idle = false): InputWatermark => ({ partition, watermark, idle });
const win = (startMin: number, state: LiveWindow['state'] = 'open', count = 3): LiveWindow => ({ window: { start: startMin * MIN, end: (startMin + 1) * MIN }, state, count });
const iso = (ms: number): string => new Date(ms).toISOString();

t.test('before the first post the watermark is −∞ and nothing holds it back', async (t) => {
  const e = explainKey('#nats', -Infinity, [input('0', -Infinity)], [], settings);
  t.equal(e.heldBackBy, null);
  t.same(e.windows, []);
  t.match(e.reason, /no live window for key "#nats"/);
  t.match(e.reason, /no post has been read yet/);
});

t.test('an open window waits for a post late enough to move the watermark past its end', async (t) => {
  const wm = 10 * MIN + 20_000;
  const e = explainKey('#nats', wm, [input('0', wm)], [win(10, 'open', 7)], settings);
  t.equal(e.heldBackBy, '0');
  const [w] = e.windows;
  t.equal(w!.state, 'open');
  t.equal(w!.count, 7);
  t.equal(w!.firesAt, 11 * MIN, 'fires when the watermark reaches the end');
  t.equal(w!.closesAt, 11 * MIN + 30_000, 'closes at end + allowed lateness');
  t.equal(w!.firingTs, 11 * MIN + 5_000, 'needs a post with ts = end + out-of-orderness bound');
  t.match(w!.reason, /open with 7 posts/);
  t.match(w!.reason, new RegExp(`ts ≥ ${iso(11 * MIN + 5_000)}`));
  t.match(w!.reason, /40s short/);
  t.match(e.reason, /1 open, 0 pending/);
});

t.test('with several inputs, the lowest one that is not idle holds the watermark back', async (t) => {
  const inputs = [input('a', 12 * MIN), input('b', 9 * MIN), input('c', 5 * MIN, true)];
  const { heldBackBy, inputs: marked } = explainInputs(inputs);
  t.equal(heldBackBy, 'b', 'the idle partition c is lower but ignored');
  t.same(marked.map((i) => i.holdsBack), [false, true, false]);
  const e = explainKey('#x', 9 * MIN, inputs, [win(10)], settings);
  t.match(e.windows[0]!.reason, /input partition "b", which holds it back/);
  t.match(e.windows[0]!.reason, /idle input partition "c" is ignored/);
});

t.test('when every input is idle the watermark stays put until posts arrive', async (t) => {
  const e = explainKey('#x', 9 * MIN, [input('a', 9 * MIN, true), input('b', 9 * MIN, true)], [win(10)], settings);
  t.equal(e.heldBackBy, null);
  t.match(e.windows[0]!.reason, /every input partition is idle \(no post for 10s\)/);
});

t.test('a fired window is pending: it takes late posts until end + allowed lateness', async (t) => {
  const wm = 11 * MIN + 10_000;
  const e = explainKey('#x', wm, [input('0', wm)], [win(10, 'pending', 4)], settings);
  t.equal(e.windows[0]!.state, 'pending');
  t.match(e.windows[0]!.reason, /^pending: it fired/);
  t.match(e.windows[0]!.reason, new RegExp(`until the watermark reaches ${iso(11 * MIN + 30_000)}`));
  t.match(e.windows[0]!.reason, /20s to go/);
});

t.test('an open window the watermark has already passed is firing (the marker is on its way)', async (t) => {
  const e = explainKey('#x', 11 * MIN, [input('0', 11 * MIN)], [win(10)], settings);
  t.match(e.windows[0]!.reason, /firing now/);
});

t.test('a named window that is gone: closed when past end + lateness, empty otherwise', async (t) => {
  const wm = 20 * MIN;
  const asked = [{ start: 10 * MIN, end: 11 * MIN }, { start: 19 * MIN + 50_000, end: 20 * MIN - 5_000 }, { start: 21 * MIN, end: 22 * MIN }];
  const e = explainKey('#x', wm, [input('0', wm)], [win(20)], settings, asked);
  t.same(e.windows.map((w) => w.state), ['closed', 'none', 'none'], 'only the named windows, in time order; the live one not named is left out');
  t.match(e.windows[0]!.reason, /^closed: .* dropped as late/);
  t.match(e.windows[1]!.reason, /late but accepted/, 'a window past its end but within lateness would open and fire at once');
  t.match(e.windows[2]!.reason, /^empty: no post of this key has fallen in it yet/);
});

t.test('the summary speaks of the earliest open window first', async (t) => {
  const wm = 11 * MIN + 1_000;
  const e = explainKey('#x', wm, [input('0', wm)], [win(12), win(10, 'pending'), win(11)], settings);
  t.same(e.windows.map((w) => w.window.start), [10 * MIN, 11 * MIN, 12 * MIN]);
  t.match(e.reason, new RegExp(`\\(2 open, 1 pending\\): window \\[${iso(11 * MIN)}`));
});
