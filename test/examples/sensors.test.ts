// The sensors example under `testJob`: per-device session windows (gap 5 min) with the count and
// the min / max / average temperature, sessions that merge, one final record per session.

import t from 'tap';
import { testJob } from 'tidemark/testing';
import sensors from '../../examples/sensors/job.mjs';

const MIN = 60_000;
const T0 = 1_764_000_000_000;
const reading = (device: string, atMin: number, temp: number): { device: string; ts: number; temp: number } => ({ device, ts: T0 + atMin * MIN, temp });

t.test('a session per burst of readings, with count, min, max and average', async (t) => {
  const out = testJob(sensors, [reading('a', 0, 20.5), reading('b', 0.5, -18), reading('a', 1, 21.5), reading('a', 3, 19.9), reading('a', 30, 25), reading('a', 34, 26)]);
  const rows = out.results.map((r) => [r.key, (r.window.start - T0) / MIN, (r.window.end - T0) / MIN, r.readings, r.minTemp, r.maxTemp, r.avgTemp, r.revision, r.final]);
  t.same(
    rows.sort((x, y) => String(x[0]).localeCompare(String(y[0])) || Number(x[1]) - Number(y[1])),
    [
      ['a', 0, 8, 3, 19.9, 21.5, 20.63, 0, true],
      ['a', 30, 39, 2, 25, 26, 25.5, 0, true],
      ['b', 0.5, 5.5, 1, -18, -18, -18, 0, true],
    ],
  );
});

t.test('a reading that bridges two sessions merges them into one new window', async (t) => {
  // With disorder allowed (10m) both sessions are still live when the bridging reading arrives.
  const out = testJob(sensors, [reading('a', 0, 10), reading('a', 8, 30), reading('a', 4, 20)], { maxOutOfOrderness: '10m' });
  t.same(out.results.map((r) => [(r.window.start - T0) / MIN, (r.window.end - T0) / MIN, r.readings, r.minTemp, r.maxTemp, r.avgTemp]), [[0, 13, 3, 10, 30, 20]]);
});

t.test('decode rejects bad readings; an ISO-8601 time is accepted', async (t) => {
  const bytes = (v: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(v));
  for (const bad of [{ device: '', ts: T0, temp: 1 }, { device: 'a', ts: T0, temp: 'warm' }, { device: 'a', ts: T0 }]) {
    t.throws(() => sensors.decode!(bytes(bad)), { name: 'RejectRecord', reason: 'bad_reading' }, JSON.stringify(bad));
  }
  const out = testJob(sensors, [{ device: 'a', ts: '2025-11-24T16:00:00Z', temp: 1 }]);
  t.equal(out.results.length, 1);
  t.equal(out.results[0]!.window.start, Date.parse('2025-11-24T16:00:00Z'));
});
