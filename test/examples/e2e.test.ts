// The examples end to end: `tidemark run --job-module examples/…/job.mjs --drain` as a child
// process against a real nats-server, its sinks compared with expectations computed here, from the
// input alone, by a direct model of DESIGN.md §3 in `final` mode (one record per window at close).

import t, { type Test } from 'tap';
import { join } from 'node:path';
import { natsFixture, runCli } from '../helpers/nats.js';
import { fillStream, readJsonl, byId } from '../helpers/sinks.js';
import { Rng } from '../helpers/streams.js';

const { scratch, nats, nc } = await natsFixture(t, 'tidemark-examples-');
const MIN = 60_000;
const T0 = 1_764_000_000_000;

interface Span { start: number; end: number }
interface Expected {
  results: Array<Record<string, unknown> & { id: string }>;
  late: Array<Record<string, unknown> & { id: string }>;
  dead: Array<{ id: string; reason: string }>;
}

/** Runs an example with `--drain` and reads its three JSONL sinks. */
async function runExample(t: Test, name: string, stream: string, subject: string, flags: string[]): Promise<Expected> {
  const out = join(scratch.dir, name);
  const r = await runCli([
    'run', '--nats', nats.url, '--job-module', `examples/${name}/job.mjs`, '--input-stream', stream, '--input-subjects', `${subject}.>`, ...flags,
    '--sink', `jsonl:${out}/results.jsonl`, '--late-sink', `jsonl:${out}/late.jsonl`, '--dlq-sink', `jsonl:${out}/dlq.jsonl`, '--state-dir', join(out, 'state'), '--drain', '--log-level', 'warn',
  ]);
  t.equal(r.code, 0, `exit 0${r.code === 0 ? '' : `: ${r.stderr}`}`);
  return { results: readJsonl(`${out}/results.jsonl`), late: readJsonl(`${out}/late.jsonl`), dead: readJsonl(`${out}/dlq.jsonl`) };
}

t.test('orders: revenue per region in sliding windows, flags overriding the module\'s defaults', async (t) => {
  const rng = new Rng(7);
  const regions = ['eu', 'us', 'apac'];
  const payloads: string[] = [];
  let clock = T0;
  for (let i = 0; i < 900; i++) {
    clock += rng.int(500, 3_000);
    const late = i % 97 === 50; // far behind the watermark: too late for some windows
    const ts = late ? clock - rng.int(11, 14) * MIN : clock - rng.int(0, 20_000); // disorder within the 30s bound
    if (i % 131 === 7) payloads.push(i % 2 ? 'not json' : JSON.stringify({ id: `o${i}`, ts, region: 'eu', cents: 12.5 }));
    else payloads.push(JSON.stringify({ id: `o${i}`, ts, region: rng.pick(regions), cents: rng.int(1, 50_000) }));
  }
  await fillStream(nc, 'ORDERS', 'orders', payloads);

  // The model: sliding:10m,1m, bound 30s, lateness 2m (the flag, over the module's 1m), emit final.
  const [size, slide, bound, lateness] = [10 * MIN, MIN, 30_000, 2 * MIN];
  const windows = new Map<string, { key: string; w: Span; orders: number; cents: number; largest: number; closedAt?: number | null }>();
  const exp: Expected = { results: [], late: [], dead: [] };
  let maxTs = -Infinity;
  payloads.forEach((p, i) => {
    const seq = i + 1;
    let o: { id: string; ts: number; region: string; cents: number };
    try {
      o = JSON.parse(p) as typeof o;
    } catch {
      exp.dead.push({ id: `orders/dlq/${seq}`, reason: 'user_error' });
      return;
    }
    if (!Number.isSafeInteger(o.cents)) {
      exp.dead.push({ id: `orders/dlq/${seq}`, reason: 'bad_order' });
      return;
    }
    const wm = maxTs - bound;
    for (const key of [`region:${o.region}`, '*']) {
      for (let start = Math.floor(o.ts / slide) * slide; start > o.ts - size; start -= slide) {
        const w = { start, end: start + size };
        if (wm >= w.end + lateness) {
          exp.late.push({ id: `orders/${key}/${w.start}/${w.end}/${o.id}`, recordId: o.id, key, window: w, ts: o.ts, watermark: wm });
          continue;
        }
        const k = `${key}/${start}`;
        const e = windows.get(k) ?? { key, w, orders: 0, cents: 0, largest: 0 };
        windows.set(k, { ...e, orders: e.orders + 1, cents: e.cents + o.cents, largest: Math.max(e.largest, o.cents) });
      }
    }
    maxTs = Math.max(maxTs, o.ts);
    for (const e of windows.values()) if (e.closedAt === undefined && maxTs - bound >= e.w.end + lateness) e.closedAt = maxTs - bound;
  });
  for (const e of windows.values()) {
    exp.results.push({ id: `orders/${e.key}/${e.w.start}/${e.w.end}/0`, job: 'orders', key: e.key, window: e.w, orders: e.orders, revenue: e.cents / 100, largestOrder: e.largest / 100, revision: 0, final: true, watermark: e.closedAt ?? null });
  }
  t.ok(exp.late.length > 20 && exp.dead.length >= 4 && exp.results.length > 100, `the input has late orders (${exp.late.length}), bad ones (${exp.dead.length}) and many windows (${exp.results.length})`);

  const got = await runExample(t, 'orders', 'ORDERS', 'orders', ['--emit', 'final', '--allowed-lateness', '2m']);
  t.same(byId(got.results), byId(exp.results), 'results: exactly the model\'s, record by record');
  t.same(byId(got.late), byId(exp.late), 'late records: exactly the model\'s');
  t.same(byId(got.dead).map((d) => [d.id, d.reason]), byId(exp.dead).map((d) => [d.id, d.reason]), 'dead letters: the malformed orders, with the job\'s reason or user_error');
});

t.test('sensors: per-device sessions with count, min, max and average temperature', async (t) => {
  const rng = new Rng(11);
  const gap = 5 * MIN;
  const devices = ['greenhouse-1', 'greenhouse-2', 'freezer-7', 'attic'];
  // Bursts of readings per device (10–90 s apart), bursts ≥ 10 minutes apart.
  const readings: Array<{ device: string; ts: number; temp: number }> = [];
  for (const device of devices) {
    let ts = T0 + rng.int(0, 60_000);
    for (let burst = 0; burst < 6; burst++) {
      const n = rng.int(1, 25);
      for (let k = 0; k < n; k++) {
        readings.push({ device, ts, temp: rng.int(-200, 400) / 10 });
        ts += rng.int(10_000, 90_000);
      }
      ts += rng.int(10 * MIN, 40 * MIN);
    }
  }
  // Arrival order: by time, each reading up to 4 s behind (inside the 10 s bound); ISO times for some.
  const arrivals = readings.map((r) => ({ r, at: r.ts + rng.int(0, 4_000) })).sort((a, b) => a.at - b.at).map((a) => a.r);
  const payloads: string[] = [];
  const lateOnes: Array<{ seq: number; device: string; ts: number }> = [];
  arrivals.forEach((r, i) => {
    payloads.push(JSON.stringify(i % 5 === 0 ? { ...r, ts: new Date(r.ts).toISOString() } : r));
    if (i % 60 === 59) {
      const ts = r.ts - 3 * 60 * MIN; // hours behind: no live session there
      payloads.push(JSON.stringify({ device: r.device, ts, temp: 20 }));
      lateOnes.push({ seq: payloads.length, device: r.device, ts });
    }
    if (i === 40) payloads.push(JSON.stringify({ device: 'attic', ts: r.ts, temp: 'hot' }));
  });
  await fillStream(nc, 'READINGS', 'readings', payloads);

  // The model: the sessions of each device are its bursts (readings ≤ gap apart); each closes at
  // the first watermark (max ts − 10 s) ≥ its end, or at the end of input (watermark null).
  const exp: Expected = { results: [], late: [], dead: [{ id: 'sensors/dlq/42', reason: 'bad_reading' }] };
  const sessions: Array<{ device: string; start: number; end: number; temps: number[] }> = [];
  for (const device of devices) {
    const mine = readings.filter((r) => r.device === device).sort((a, b) => a.ts - b.ts);
    for (const r of mine) {
      const cur = sessions[sessions.length - 1];
      if (cur && cur.device === device && r.ts <= cur.end) {
        cur.end = r.ts + gap;
        cur.temps.push(r.temp);
      } else sessions.push({ device, start: r.ts, end: r.ts + gap, temps: [r.temp] });
    }
  }
  const watermarks: number[] = [];
  let maxTs = -Infinity;
  for (const r of arrivals) watermarks.push((maxTs = Math.max(maxTs, r.ts)) - 10_000);
  for (const s of sessions) {
    const tenths = s.temps.reduce((a, x) => a + Math.round(x * 10), 0);
    exp.results.push({
      id: `sensors/${s.device}/${s.start}/${s.end}/0`, job: 'sensors', key: s.device, window: { start: s.start, end: s.end },
      readings: s.temps.length, minTemp: Math.min(...s.temps), maxTemp: Math.max(...s.temps), avgTemp: Math.round((tenths * 10) / s.temps.length) / 100,
      revision: 0, final: true, watermark: watermarks.find((w) => w >= s.end) ?? null,
    });
  }
  for (const l of lateOnes) {
    // The watermark before the late reading: that of every proper reading published before it.
    const before = payloads.slice(0, l.seq - 1).filter((p) => !p.includes('"hot"')).map((p) => JSON.parse(p) as { ts: number | string }).map((p) => (typeof p.ts === 'string' ? Date.parse(p.ts) : p.ts));
    const wm = Math.max(...before) - 10_000;
    exp.late.push({ id: `sensors/${l.device}/${l.ts}/${l.ts + gap}/READINGS/${l.seq}`, recordId: `READINGS/${l.seq}`, key: l.device, window: { start: l.ts, end: l.ts + gap }, ts: l.ts, watermark: wm });
  }
  t.ok(exp.results.length >= 20 && exp.late.length >= 2, `sessions (${exp.results.length}) and late readings (${exp.late.length})`);

  const got = await runExample(t, 'sensors', 'READINGS', 'readings', []);
  t.same(byId(got.results), byId(exp.results), 'one final record per session, exactly the model\'s');
  t.same(byId(got.late), byId(exp.late), 'late readings name their proto-session and the stream/seq id');
  t.same(got.dead.map((d) => [d.id, d.reason]), exp.dead.map((d) => [d.id, d.reason]), 'the bad reading is a dead letter with the job\'s reason');
});
