// `/metrics` of a live `tidemark run --metrics-port`, scraped over HTTP while it works: the counters
// equal what was published (accepted, late, dead-lettered), gauges and histograms hold plausible values.

import t from 'tap';
import { join } from 'node:path';
import { connect, type NatsConnection } from 'nats';
import { scratchDir, startNats, spawnCli } from '../helpers/nats.js';
import { BASE_TS } from '../helpers/streams.js';
import { freePort } from '../../src/io/nats-server.js';

const scratch = scratchDir();
const nats = await startNats(scratch.dir);
const nc: NatsConnection = await connect({ servers: nats.url });
const port = await freePort();
const run = spawnCli([
  'run', '--nats', nats.url, '--job', 'met', '--input-stream', 'IN_MET', '--input-subjects', 'met.>', '--window', 'tumbling:1m',
  '--max-out-of-orderness', '5s', '--state-dir', join(scratch.dir, 'state'), '--checkpoint-interval', '100ms', '--metrics-port', String(port), '--log-level', 'info',
]);
t.teardown(async () => {
  run.child.kill('SIGKILL');
  await nc.close();
  await nats.stop();
  scratch.remove();
});

const MIN = 60_000;
const post = (id: string, offset: number, text: string): string => JSON.stringify({ id, ts: BASE_TS + offset, text });

/** Samples of a Prometheus text exposition: `name{labels}` → value. */
async function scrape(path = '/metrics'): Promise<{ status: number; text: string; value(name: string, labels?: string): number | undefined }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  const text = await res.text();
  const samples = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^([a-z_]+)(\{[^}]*\})? (\S+)$/.exec(line);
    if (m) samples.set(`${m[1]}${m[2] ?? ''}`, Number(m[3]));
  }
  return {
    status: res.status,
    text,
    value: (name, labels) => {
      for (const [k, v] of samples) if (k.startsWith(name) && (k === name || k[name.length] === '{') && (!labels || k.includes(labels))) return v;
      return undefined;
    },
  };
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

t.test('/metrics has the job metrics with plausible values while the job runs', async (t) => {
  await waitFor('the metrics endpoint', async () => ((await scrape()).status === 200 ? true : undefined));
  const jsm = await nc.jetstreamManager();
  await jsm.streams.info('IN_MET').catch(() => jsm.streams.add({ name: 'IN_MET', subjects: ['met.>'] }));
  const js = nc.jetstream();
  const payloads = [
    ...Array.from({ length: 20 }, (_, i) => post(`a${i}`, 1000 + i * 100, `good #metrics ${i}`)),
    post('fire', MIN + 10_000, 'moves the watermark #metrics'), // W = end + 5s: the first window fires and closes
    post('late', 30_000, 'too late #metrics'), // for the closed window: one late record
    '{"id": "broken", no json', // one dead letter
    post('open', MIN + 20_000, 'still open #metrics'),
  ];
  for (const p of payloads) await js.publish('met.in', new TextEncoder().encode(p));

  const m = await waitFor('every post and a checkpoint to be reflected', async () => {
    const s = await scrape();
    return s.value('tidemark_input_sequence') === payloads.length && (s.value('tidemark_num_completed_checkpoints_total') ?? 0) >= 1 && s.value('tidemark_num_late_records_dropped_total') === 1
      ? s
      : undefined;
  });
  t.equal(m.value('tidemark_num_records_in_total', 'job_name="met"'), 23, 'numRecordsIn counts the accepted posts, labelled with the job');
  t.equal(m.value('tidemark_num_dead_letter_records_total'), 1, 'one dead letter');
  t.equal(m.value('tidemark_num_late_records_dropped_total'), 1, 'Flink-style late counter');
  t.equal(m.value('tidemark_num_records_out_total'), 1, 'one fired window result');
  t.equal(m.value('tidemark_current_input_watermark_ms'), BASE_TS + MIN + 20_000 - 5_000, 'watermark = max ts - bound');
  t.ok(m.value('tidemark_watermark_lag_seconds')! > 0, 'event time trails wall-clock time');
  t.equal(m.value('tidemark_input_pending_records'), 0, 'no consumer lag once everything is read');
  t.equal(m.value('tidemark_windows', 'state="open"'), 1, 'one open window');
  t.equal(m.value('tidemark_windows', 'state="pending"'), 0);
  t.ok(m.value('tidemark_processing_latency_seconds_count')! > 0, 'latency histogram has observations');
  t.ok(m.value('tidemark_processing_latency_seconds_sum')! >= 0);
  t.ok(m.value('tidemark_processing_latency_seconds_bucket', 'le="+Inf"')! === m.value('tidemark_processing_latency_seconds_count'), 'buckets add up');
  t.ok(m.value('tidemark_checkpoint_duration_seconds_count')! >= 1, 'checkpoint durations observed');
  t.ok(m.value('tidemark_last_checkpoint_duration_seconds')! > 0);
  t.ok(m.value('tidemark_last_checkpoint_size_bytes')! > 0, 'checkpoint size in bytes');
  t.ok(m.value('tidemark_num_records_in_per_second')! >= 0, 'rates are exposed');
  t.ok(m.value('process_cpu_user_seconds_total')! > 0, 'process metrics too');
  t.match(m.text, /# HELP tidemark_num_late_records_dropped_total .*numLateRecordsDropped/);
  t.match(m.text, /# TYPE tidemark_processing_latency_seconds histogram/);
  t.equal((await scrape('/other')).status, 404, 'only /metrics is served');
});

t.test('SIGTERM closes the metrics port and exits 0', async (t) => {
  run.child.kill('SIGTERM');
  const r = await run.done;
  t.equal(r.code, 0, r.stderr.slice(-400));
  t.match(r.stderr, /Prometheus metrics on http:\/\/0\.0\.0\.0:\d+\/metrics/);
  await t.rejects(fetch(`http://127.0.0.1:${port}/metrics`), 'nothing listens any more');
});
