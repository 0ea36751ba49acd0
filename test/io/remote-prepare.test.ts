// A group's intake spread over its members, against a real nats-server: a batch a member prepares
// is the batch the coordinator would have prepared itself (dead letters included); a member that is
// absent, answers late, or whose answer does not verify costs a local prepare, never a record.

import t from 'tap';
import { natsFixture } from '../helpers/nats.js';
import { RemotePreparer, servePrepare, type Preparer } from '../../src/io/remote-prepare.js';
import { RunKey, Rejections, SENDER, memberSender, Sealer, type ChannelContext } from '../../src/io/channel.js';
import { compileJob, type CompiledJob, type Prepared } from '../../src/runtime/compiled-job.js';
import { sentimentJob } from '../../src/runtime/sentiment-job.js';
import { parseKeySpec } from '../../src/runtime/keys.js';
import { syntheticPosts } from '../../src/runtime/synthetic.js';

const { nc } = await natsFixture(t);
const job = compileJob(sentimentJob({ keys: parseKeySpec('hashtags,all') }), { stream: 'POSTS', lateIdField: 'postId' });
const enc = new TextEncoder();

/** A batch: synthetic posts, with garbage, a post without text and one far in the future mixed in. */
function batch(n: number, seed: number): { payloads: Uint8Array[]; subjects: string[]; seqs: number[] } {
  const gen = syntheticPosts({ keys: 50, lateFraction: 0.1, jitter: 1000, lateBy: 60_000, seed, startTs: Date.UTC(2025, 0, 1), step: 10 });
  const payloads: Uint8Array[] = [];
  const subjects: string[] = [];
  const seqs: number[] = [];
  for (let i = 0; i < n; i++) {
    const kind = i % 97;
    const body = kind === 13 ? '{not json' : kind === 29 ? JSON.stringify({ id: `x${i}`, ts: 1 }) : JSON.stringify(gen.next().value);
    payloads.push(enc.encode(body));
    subjects.push(i % 3 === 0 ? 'posts.es' : 'posts.en');
    seqs.push(1000 + i);
  }
  return { payloads, subjects, seqs };
}

const localOnly: Preparer = {
  threads: 0,
  prepare: (p, s, q) => Promise.resolve(p.map((x, i) => job.prepare(x, s[i]!, q[i]!))),
  close: () => Promise.resolve(),
};

function context(key: RunKey, faults: string[] = []): ChannelContext {
  return { key, rejects: new Rejections(() => undefined), fault: (why) => faults.push(why) };
}

const preparer = (key: RunKey, subjects: string[], timeoutMs = 2_000, warnings: string[] = []): RemotePreparer =>
  new RemotePreparer(nc, context(key), subjects, (s) => s >= memberSender(1) && s < memberSender(1 + subjects.length), SENDER.source, localOnly, timeoutMs, (w) => warnings.push(w));

t.test('a member prepares exactly what the coordinator would, dead letters included', async (t) => {
  const key = RunKey.create();
  const subs = [servePrepare(nc, context(key), 'tm.t1.prepare.1', SENDER.source, memberSender(1), job), servePrepare(nc, context(key), 'tm.t1.prepare.2', SENDER.source, memberSender(2), job)];
  t.teardown(() => subs.forEach((s) => s.unsubscribe()));
  await nc.flush();
  const p = preparer(key, ['tm.t1.prepare.1', 'tm.t1.prepare.2']);
  const batches = Array.from({ length: 6 }, (_, i) => batch(500, 7 + i));
  const got = await Promise.all(batches.map((b) => p.prepare(b.payloads, b.subjects, b.seqs)));
  for (let i = 0; i < batches.length; i++) {
    const b = batches[i]!;
    t.strictSame(got[i], b.payloads.map((x, k) => job.prepare(x, b.subjects[k]!, b.seqs[k]!)), `batch ${i} equals a local prepare`);
  }
  const dead = got.flat().filter((x: Prepared) => !x.ok).length;
  t.ok(dead > 0, 'the batches held records that become dead letters');
  t.equal(p.counts.remote, 6, 'every batch went to a member');
  t.equal(p.counts.failed, 0);
});

t.test('small batches and a busy group are prepared locally', async (t) => {
  const key = RunKey.create();
  const sub = servePrepare(nc, context(key), 'tm.t2.prepare.1', SENDER.source, memberSender(1), job);
  t.teardown(() => sub.unsubscribe());
  await nc.flush();
  const p = preparer(key, ['tm.t2.prepare.1']);
  const small = batch(10, 3);
  t.strictSame(await p.prepare(small.payloads, small.subjects, small.seqs), small.payloads.map((x, k) => job.prepare(x, small.subjects[k]!, small.seqs[k]!)));
  t.equal(p.counts.local, 1, 'a batch of 10 is not worth a round trip');
  // More batches at once than a member may hold: the rest are prepared here, all in order.
  const many = Array.from({ length: 7 }, (_, i) => batch(100, 20 + i));
  const got = await Promise.all(many.map((b) => p.prepare(b.payloads, b.subjects, b.seqs)));
  many.forEach((b, i) => t.strictSame(got[i], b.payloads.map((x, k) => job.prepare(x, b.subjects[k]!, b.seqs[k]!))));
  t.equal(p.counts.remote, 4, 'a member holds at most 4 batches');
  t.equal(p.counts.local, 4);
});

t.test('no member listening, a forged answer, a member too slow: prepared here, same records', async (t) => {
  const key = RunKey.create();
  const b = batch(300, 11);
  const expected = b.payloads.map((x, k) => job.prepare(x, b.subjects[k]!, b.seqs[k]!));

  const warnings: string[] = [];
  const absent = preparer(key, ['tm.t3.nobody'], 2_000, warnings);
  t.strictSame(await absent.prepare(b.payloads, b.subjects, b.seqs), expected, 'no responders: prepared here');
  t.equal(absent.counts.failed, 1);
  t.match(warnings[0], /tm\.t3\.nobody/, 'the failure is reported with the subject');

  // An impostor without the generation's key answers with records of its own.
  const impostor = nc.subscribe('tm.t3.forged', {
    callback: (_e, m) => m.respond(new Sealer(RunKey.create(), memberSender(1)).seal('tm.t3.forged.reply', { ok: true, out: expected.map(() => ({ ok: true, id: 'forged', ts: 0, keys: ['*'], unit: null })) })),
  });
  t.teardown(() => impostor.unsubscribe());
  await nc.flush();
  const forged = preparer(key, ['tm.t3.forged']);
  t.strictSame(await forged.prepare(b.payloads, b.subjects, b.seqs), expected, 'a forged answer is refused');
  t.equal(forged.counts.failed, 1);

  // A member of this generation whose answer has the wrong number of records.
  const short = nc.subscribe('tm.t3.short', {
    callback: (_e, m) => m.respond(new Sealer(key, memberSender(1)).seal('tm.t3.short.reply', { ok: true, out: expected.slice(1) })),
  });
  t.teardown(() => short.unsubscribe());
  await nc.flush();
  const wrong = preparer(key, ['tm.t3.short']);
  t.strictSame(await wrong.prepare(b.payloads, b.subjects, b.seqs), expected, 'an answer of the wrong length is refused');

  const slow = nc.subscribe('tm.t3.slow', { callback: () => undefined });
  t.teardown(() => slow.unsubscribe());
  await nc.flush();
  const late = preparer(key, ['tm.t3.slow'], 300);
  t.strictSame(await late.prepare(b.payloads, b.subjects, b.seqs), expected, 'no answer in time: prepared here');
  t.equal(late.counts.failed, 1);
  // The member rests for a while: the next batch does not wait for it again.
  await late.prepare(b.payloads, b.subjects, b.seqs);
  t.equal(late.counts.local, 1, 'the next batch is prepared here, not sent to the silent member');
  t.equal(late.counts.remote, 1);
});

t.test('a member whose answer cannot be sent answers with the failure at once: prepared here, no wait for the timeout', async (t) => {
  const key = RunKey.create();
  // Records the codec cannot encode (an integer beyond 64 bits): sealing the answer throws inside the member's subscription.
  const unsendable = { prepare: (_p: Uint8Array, _s: string, seq: number) => ({ ok: true, id: `p${seq}`, ts: 0, keys: ['*'], unit: 2n ** 70n }) } as unknown as CompiledJob;
  const sub = servePrepare(nc, context(key), 'tm.t4.prepare.1', SENDER.source, memberSender(1), unsendable);
  t.teardown(() => sub.unsubscribe());
  await nc.flush();
  const b = batch(200, 5);
  const reasons: string[] = [];
  const ctx: ChannelContext = { key, rejects: new Rejections((fields) => reasons.push(String(fields.reason))), fault: () => undefined };
  const p = new RemotePreparer(nc, ctx, ['tm.t4.prepare.1'], (s) => s === memberSender(1), SENDER.source, localOnly, 20_000, () => undefined);
  const started = Date.now();
  t.strictSame(await p.prepare(b.payloads, b.subjects, b.seqs), b.payloads.map((x, k) => job.prepare(x, b.subjects[k]!, b.seqs[k]!)), 'prepared here, same records');
  t.ok(Date.now() - started < 10_000, `answered long before the 20 s timeout (${Date.now() - started} ms)`);
  t.equal(p.counts.failed, 1);
  t.match(reasons[0], /the member could not prepare the batch: .*too large/, 'the member said why');
  // The subscription survived: the member still answers (and fails the same way).
  await p.prepare(b.payloads, b.subjects, b.seqs).catch(() => undefined);
  t.equal(p.counts.remote + p.counts.local, 2);
});
