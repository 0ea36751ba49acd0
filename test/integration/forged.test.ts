// Garbage, forged and replayed messages on a job's internal subjects (tidemark.<job>.part.N, .out,
// .credit, .part.N.query) against a real nats-server: each is refused, counted and logged once per
// sender and subject; the job neither crashes nor wedges, its results stay exactly the model's, and
// SIGTERM ends it — also when NATS itself is frozen and the final checkpoint can never complete.

import t from 'tap';
import { readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { headers, type MsgHdrs } from 'nats';
import { natsFixture, spawnCli, runCli } from '../helpers/nats.js';
import { genStream } from '../helpers/streams.js';
import { referenceRun, type RefConfig } from '../helpers/reference.js';
import { encode } from '../../src/io/codec.js';
import { RunKey, Sealer, SENDER } from '../../src/io/channel.js';

const { scratch, nats, nc, children } = await natsFixture(t, 'tidemark-forged-');
const enc = new TextEncoder();

const cfgOf = (job: string): RefConfig => ({ job, window: { kind: 'tumbling', size: 60_000 }, maxOutOfOrderness: 5_000, lateness: 30_000, keys: { hashtags: true, all: true, keywords: [] }, emit: 'updates' });
const FLAGS = ['--window', 'tumbling:1m', '--max-out-of-orderness', '5s', '--allowed-lateness', '30s', '--keys', 'hashtags,all'];

async function fillStream(stream: string, subject: string, payloads: string[]): Promise<void> {
  await (await nc.jetstreamManager()).streams.add({ name: stream, subjects: [`${subject}.>`] });
  const js = nc.jetstream();
  for (let i = 0; i < payloads.length; i += 500) await Promise.all(payloads.slice(i, i + 500).map((p) => js.publish(`${subject}.in`, enc.encode(p))));
}

const readJsonl = (path: string): Array<{ id: string }> =>
  existsSync(path) ? readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: string }) : [];
const sorted = <T extends { id: string }>(xs: T[]): T[] => [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));

const chunkHeader = (v: string): MsgHdrs => {
  const h = headers();
  h.set('Tidemark-Chunk', v);
  return h;
};

/** The hostile messages, by what they are; each is sent on every internal subject. */
const HOSTILE: Array<{ what: string; data: Uint8Array; headers?: MsgHdrs; held?: true }> = [
  { what: '5 garbage bytes', data: new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0x01]) },
  { what: 'an empty message', data: new Uint8Array(0) },
  { what: 'JSON {"t":"end"}', data: enc.encode('{"t":"end"}') },
  { what: 'JSON credit', data: enc.encode('{"t":"credit","n":1000000}') },
  { what: 'msgpack {t:"end"}', data: encode({ t: 'end', from: 0 }) },
  { what: 'msgpack batch', data: encode({ t: 'batch', n: 1, ops: [{ k: '#x', id: 'forged', ts: 1, s: 5 }, 1e15] }) },
  { what: 'msgpack checkpointed', data: encode({ t: 'checkpointed', cp: 1, ms: 0, bytes: 0, entries: 0, error: 'forged' }) },
  // A well-formed envelope sealed with a key that is not the job's (as a forger without the secret would).
  { what: 'an envelope sealed by another run', data: new Sealer(RunKey.create(), SENDER.source).seal('x', { t: 'end' }) },
  { what: 'a chunk that never finishes', data: enc.encode('part'), headers: chunkHeader('forged-1 0 3'), held: true },
  { what: 'a chunk out of order', data: enc.encode('part'), headers: chunkHeader('forged-2 2 3') },
  { what: 'a malformed chunk header', data: enc.encode('part'), headers: chunkHeader('nonsense') },
];

function hostileSubjects(job: string): string[] {
  return [`tidemark.${job}.part.0`, `tidemark.${job}.part.1`, `tidemark.${job}.out`, `tidemark.${job}.credit`, `tidemark.${job}.part.0.query`];
}

function sendHostile(job: string): number {
  let n = 0;
  for (const subject of hostileSubjects(job)) {
    for (const h of HOSTILE) {
      nc.publish(subject, h.data, h.headers ? { headers: h.headers } : undefined);
      n++;
    }
  }
  return n;
}

t.test('a draining job under a stream of hostile messages on every internal subject: exact results, exit 0', async (t) => {
  const job = 'forged1';
  const payloads = genStream(31, { n: 4000, unit: 60_000, step: 2_000, maxOutOfOrderness: 5_000 });
  await fillStream('IN_FORGED1', job, payloads);
  const expected = referenceRun(payloads, cfgOf(job));
  const dir = join(scratch.dir, job);
  // Genuine messages seen on the wire, replayed later (same bytes, same seal: refused as replays).
  const captured: Array<{ subject: string; data: Uint8Array }> = [];
  const tap = nc.subscribe(`tidemark.${job}.>`, {
    callback: (_e, m) => {
      if (captured.length < 200 && !m.headers) captured.push({ subject: m.subject, data: m.data.slice() });
    },
  });
  const { child, done, waitFor } = spawnCli([
    'run', '--nats', nats.url, '--job', job, '--input-stream', 'IN_FORGED1', '--input-subjects', `${job}.>`, ...FLAGS,
    '--sink', `jsonl:${dir}/results.jsonl`, '--late-sink', `jsonl:${dir}/late.jsonl`, '--dlq-sink', `jsonl:${dir}/dlq.jsonl`,
    '--state-dir', join(dir, 'state'), '--drain', '--batch-size', '20', '--checkpoint-interval', '50ms', '--partitions', '2',
  ]);
  children.add(child);
  await waitFor(/watermark = max\(ts\)/);
  let sent = 0;
  let replayed = 0;
  while (child.exitCode === null && sent < 20_000) {
    sent += sendHostile(job);
    for (const c of captured.splice(0, 20)) {
      nc.publish(c.subject, c.data);
      replayed++;
    }
    await nc.flush();
    await new Promise((r) => setTimeout(r, 5));
  }
  const r = await done;
  tap.unsubscribe();
  t.equal(r.code, 0, `exit code 0 (stderr: ${r.stderr.slice(-1500)})`);
  t.ok(sent >= HOSTILE.length * 5, `${sent} hostile messages were sent while the job ran`);
  t.ok(replayed > 0, `${replayed} genuine messages were replayed`);
  t.same(sorted(readJsonl(`${dir}/results.jsonl`)), sorted(expected.results), 'results equal the model');
  t.same(sorted(readJsonl(`${dir}/late.jsonl`)), sorted(expected.late), 'late records equal the model');
  t.same(readJsonl(`${dir}/dlq.jsonl`).map((d) => d.id).sort(), expected.dead.map((d) => d.id).sort(), 'dead letters equal the model');
  const drops = r.stderr.split('\n').filter((l) => l.includes('dropped a message on'));
  for (const subject of hostileSubjects(job)) t.ok(drops.some((l) => l.includes(`"subject":"${subject}"`)), `drops on ${subject} are logged`);
  const perSender = drops.map((l) => JSON.parse(l) as { subject: string; sender: number | null }).map((d) => `${d.subject} ${d.sender}`);
  t.equal(new Set(perSender).size, perSender.length, `each (subject, sender) is logged once (${perSender.length} lines for ${sent + replayed} drops)`);
  t.notMatch(r.stderr, /end of buffer|Unexpected|TypeError/, 'no decoder error escaped');
});

t.test('an idle job counts what it refused in status, and SIGTERM stops it cleanly', async (t) => {
  const job = 'forged2';
  const payloads = genStream(32, { n: 500, unit: 60_000, step: 2_000, maxOutOfOrderness: 5_000 });
  await fillStream('IN_FORGED2', job, payloads);
  const dir = join(scratch.dir, job);
  const { child, done, waitFor } = spawnCli([
    'run', '--nats', nats.url, '--job', job, '--input-stream', 'IN_FORGED2', '--input-subjects', `${job}.>`, ...FLAGS,
    '--sink', `jsonl:${dir}/results.jsonl`, '--state-dir', join(dir, 'state'), '--checkpoint-interval', '100ms',
  ]);
  children.add(child);
  await waitFor(/watermark = max\(ts\)/);
  const sent = sendHostile(job);
  // A first chunk is held (in a bounded set) until its run goes wrong, on the three subjects that reassemble chunks.
  const refused = sent - 3 * HOSTILE.filter((h) => h.held).length;
  // Requests get no answer (they are dropped), so publish them rather than wait on a reply.
  await nc.flush();
  let status: { rejectedMessages: number; inputSeq: number } | undefined;
  for (let i = 0; i < 100; i++) {
    const s = await runCli(['status', '--nats', nats.url, '--job', job, '--json']);
    t.equal(s.code, 0, 'status answers');
    status = JSON.parse(s.stdout) as { rejectedMessages: number; inputSeq: number };
    if (status.rejectedMessages >= refused && status.inputSeq === payloads.length) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  t.equal(status!.rejectedMessages, refused, `status counts the ${refused} refused messages`);
  t.equal(status!.inputSeq, payloads.length, 'the job read its whole input');
  child.kill('SIGTERM');
  const r = await done;
  t.equal(r.code, 0, `SIGTERM: exit 0 (stderr: ${r.stderr.slice(-800)})`);
  t.match(r.stderr, /job finished/);
  // The state it left is sound: a drain on it produces exactly the model's results.
  const d = await runCli([
    'run', '--nats', nats.url, '--job', job, '--input-stream', 'IN_FORGED2', '--input-subjects', `${job}.>`, ...FLAGS,
    '--sink', `jsonl:${dir}/results.jsonl`, '--state-dir', join(dir, 'state'), '--drain', '--log-level', 'warn',
  ]);
  t.equal(d.code, 0, `the drain exits 0 (stderr: ${d.stderr.slice(-800)})`);
  t.same(sorted(readJsonl(`${dir}/results.jsonl`)), sorted(referenceRun(payloads, cfgOf(job)).results), 'results equal the model');
});

t.test('SIGTERM ends the job even when its final checkpoint can never complete (NATS frozen)', async (t) => {
  const job = 'forged3';
  await fillStream('IN_FORGED3', job, genStream(33, { n: 200, unit: 60_000, step: 2_000, maxOutOfOrderness: 5_000 }));
  const dir = join(scratch.dir, job);
  const { child, done, waitFor } = spawnCli([
    'run', '--nats', nats.url, '--job', job, '--input-stream', 'IN_FORGED3', '--input-subjects', `${job}.>`, ...FLAGS,
    '--sink', `jsonl:${dir}/results.jsonl`, '--state-dir', join(dir, 'state'), '--checkpoint-interval', '100ms',
  ]);
  children.add(child);
  await waitFor(/checkpoint complete|watermark = max\(ts\)/);
  process.kill(nats.pid!, 'SIGSTOP');
  try {
    child.kill('SIGTERM');
    const r = await done;
    t.equal(r.code, 1, 'exit code 1: stopped without a final checkpoint');
    t.match(r.stderr, /graceful stop did not finish within \d+s; stopping without a final checkpoint/);
  } finally {
    process.kill(nats.pid!, 'SIGCONT');
  }
});
