// A state larger than one barrier message: 30,000 live windows leave each partition in slices
// (barrier parts), are written to LevelDB in slices, survive a kill -9 inside the checkpoint that
// follows and are restored in slices; the results equal the reference model's.

import t from 'tap';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { natsFixture, runCli, spawnCli } from '../helpers/nats.js';
import { referenceRun, type RefConfig } from '../helpers/reference.js';

const { scratch, nats, nc } = await natsFixture(t, 'tidemark-large-');
const enc = new TextEncoder();
const DAY = 86_400_000;
const BASE = Math.floor(1_764_000_000_000 / DAY) * DAY;
const TAGS = 1000;

// 30 posts with 1000 distinct hashtags each (30k windows in one day window), then posts that
// move the watermark past the day so every window fires and closes.
const payloads: string[] = [];
for (let p = 0; p < 30; p++) {
  const tags = Array.from({ length: TAGS }, (_, i) => `#t${p}x${i}`).join(' ');
  payloads.push(JSON.stringify({ id: `p${p}`, ts: BASE + 1000 + p, text: `${p % 2 ? 'good' : 'bad'} ${tags}` }));
}
for (let p = 0; p < 5; p++) payloads.push(JSON.stringify({ id: `late${p}`, ts: BASE + 2000 + p, text: `great #t${p}x1` }));
payloads.push(JSON.stringify({ id: 'next', ts: BASE + DAY + 10_000, text: 'fine #t0x0' }));

const cfg: RefConfig = { job: 'large', window: { kind: 'tumbling', size: DAY }, maxOutOfOrderness: 0, lateness: 0, keys: { hashtags: true, all: false, keywords: [] }, emit: 'updates' };
const readJsonl = (path: string): Array<{ id: string }> => (existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: string }) : []);
const byId = <T extends { id: string }>(xs: T[]): T[] => [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

t.test('30k windows: sliced barriers, a kill inside the next checkpoint, a sliced restore', async (t) => {
  await (await nc.jetstreamManager()).streams.add({ name: 'LARGE', subjects: ['large.>'] });
  const js = nc.jetstream();
  for (const p of payloads) await js.publish('large.in', enc.encode(p));
  const dir = join(scratch.dir, 'large');
  const args = [
    'run', '--nats', nats.url, '--job', 'large', '--input-stream', 'LARGE', '--input-subjects', 'large.>', '--window', 'tumbling:1d', '--max-out-of-orderness', '0s',
    '--sink', `jsonl:${dir}/results.jsonl`, '--late-sink', `jsonl:${dir}/late.jsonl`, '--dlq-sink', `jsonl:${dir}/dlq.jsonl`,
    '--state-dir', join(dir, 'state'), '--drain', '--batch-size', '4', '--checkpoint-interval', '50ms', '--partitions', '2', '--log-level', 'debug',
  ];
  // Once a checkpoint holding more windows than one slice is complete, the process is killed.
  const first = spawnCli(args);
  await first.waitFor(/"entries":\d{5,}/, 60_000);
  first.child.kill('SIGKILL');
  t.equal((await first.done).signal, 'SIGKILL', 'the first run is killed after a large checkpoint');
  const resumed = await runCli(args);
  t.equal(resumed.code, 0, `the restart finishes (${resumed.stderr.slice(-600)})`);
  const m = /recovered from checkpoint \d+ in \d+ ms \((\d+) windows/.exec(resumed.stderr);
  t.ok(m && Number(m[1]) > 10_000, `restored more windows than one slice holds (${m?.[1]})`);
  const expected = referenceRun(payloads, cfg);
  const got = readJsonl(`${dir}/results.jsonl`);
  t.equal(got.length, expected.results.length, `${expected.results.length} results`);
  t.same(byId(got), byId(expected.results as Array<{ id: string }>), 'results equal the reference model');
  t.same(byId(readJsonl(`${dir}/late.jsonl`)), byId(expected.late as Array<{ id: string }>), 'late records equal the reference model');
});
