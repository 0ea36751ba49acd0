// The input adapter against a real nats-server: every message once, in stream order, with its own
// sequence — also across deleted messages (sequences read from every reply subject then), a start
// in the middle, small pull windows, and the end of a drain found where the old per-message check
// found it.

import t from 'tap';
import { natsFixture } from '../helpers/nats.js';
import { JetStreamSource, parseAckReply, type InputBatch } from '../../src/io/jetstream-source.js';

const { nc } = await natsFixture(t);
const jsm = await nc.jetstreamManager();

const enc = new TextEncoder();
const dec = new TextDecoder();

t.test('reply subjects: both forms, and what is not one', async (t) => {
  t.same(parseAckReply('$JS.ACK.IN.c1.1.42.7.1700000000000000000.3'), { streamSeq: 42, consumerSeq: 7, pending: 3 });
  t.same(parseAckReply('$JS.ACK.dom.ACCHASH.IN.c1.1.42.7.1700000000000000000.0.abc'), { streamSeq: 42, consumerSeq: 7, pending: 0 });
  t.equal(parseAckReply('_INBOX.abc'), undefined);
  t.equal(parseAckReply('$JS.ACK.IN.c1.1.x.7.1.3'), undefined);
});

/** Reads everything after `after` up to (and including) the end of a drain at `endSeq`. */
async function readAll(stream: string, after: number, endSeq: number, window: number): Promise<Array<{ seq: number; subject: string; body: string }>> {
  const src = new JetStreamSource(nc, jsm, stream, { heartbeatMs: 300 });
  const out: Array<{ seq: number; subject: string; body: string }> = [];
  const batches: AsyncIterable<InputBatch> = await src.open(after, window);
  for await (const b of batches) {
    const end = b.endAt(endSeq);
    const n = end >= 0 ? end + 1 : b.data.length;
    for (let i = 0; i < n; i++) out.push({ seq: b.seqs[i]!, subject: b.subjects[i]!, body: dec.decode(b.data[i]!) });
    if (end >= 0) break;
  }
  await src.close();
  return out;
}

t.test('in order, each with its sequence, across deleted messages', async (t) => {
  await jsm.streams.add({ name: 'SRC1', subjects: ['src1.>'] });
  const js = nc.jetstream();
  const N = 2500;
  for (let i = 1; i <= N; i++) await js.publish(`src1.${i % 3}`, enc.encode(`m${i}`));
  // Holes: single messages and a run, so that some batches are not contiguous.
  const deleted = new Set([5, 6, 7, 300, 1001, 1002, 2400]);
  for (const s of deleted) await jsm.streams.deleteMessage('SRC1', s, false);
  const expected = (after: number) =>
    Array.from({ length: N }, (_, k) => k + 1)
      .filter((s) => s > after && !deleted.has(s))
      .map((s) => ({ seq: s, subject: `src1.${s % 3}`, body: `m${s}` }));
  for (const window of [1, 7, 256, 1000]) {
    t.same(await readAll('SRC1', 0, N, window), expected(0), `from the start, pull window ${window}`);
  }
  t.same(await readAll('SRC1', 1000, N, 100), expected(1000), 'from the middle (a deleted message next)');
  t.same(await readAll('SRC1', 1500, N, 100), expected(1500), 'from the middle');
  // A drain whose end was deleted: the last message there is, found by nothing pending after it.
  await jsm.streams.deleteMessage('SRC1', N, false);
  deleted.add(N);
  t.same(await readAll('SRC1', 2000, N, 64), expected(2000), 'the stream tail deleted');
});

t.test('the end of a drain: the message at the sequence the stream held, none after', async (t) => {
  await jsm.streams.add({ name: 'SRC2', subjects: ['src2.>'] });
  const js = nc.jetstream();
  for (let i = 1; i <= 300; i++) await js.publish('src2.a', enc.encode(`m${i}`));
  const got = await readAll('SRC2', 0, 120, 1000);
  t.same(got.map((m) => m.seq), Array.from({ length: 120 }, (_, k) => k + 1));
});

// A pull request to a deleted consumer gets no answer: the missed heartbeats tell (a waiting one gets 409).
t.test('a consumer deleted under the reader: it reads on from the last message handed out, none twice', async (t) => {
  await jsm.streams.add({ name: 'SRC3', subjects: ['src3.>'] });
  const js = nc.jetstream();
  const N = 600;
  for (let i = 1; i <= N; i++) await js.publish('src3.a', enc.encode(`m${i}`));
  const src = new JetStreamSource(nc, jsm, 'SRC3', { heartbeatMs: 300 });
  const seqs: number[] = [];
  let deletions = 0;
  for await (const b of await src.open(0, 50)) {
    const end = b.endAt(N);
    const n = end >= 0 ? end + 1 : b.data.length;
    for (let i = 0; i < n; i++) {
      seqs.push(b.seqs[i]!);
      t.equal(dec.decode(b.data[i]!), `m${b.seqs[i]}`);
    }
    if (end >= 0) break;
    if (deletions < 3 && seqs.length >= 100 * (deletions + 1)) {
      deletions++;
      for await (const c of await jsm.consumers.list('SRC3')) await jsm.consumers.delete('SRC3', c.name);
    }
  }
  await src.close();
  t.equal(deletions, 3);
  t.same(seqs, Array.from({ length: N }, (_, k) => k + 1));
});

t.test('a filtered source (one input partition): only its messages, and how far its partition is complete', async (t) => {
  await jsm.streams.add({ name: 'PART1', subjects: ['part1.>'] });
  const js = nc.jetstream();
  for (let i = 1; i <= 40; i++) await js.publish(`part1.in.${i % 4}.u`, enc.encode(`m${i}`));
  const src = new JetStreamSource(nc, jsm, 'PART1', { filter: 'part1.in.1.*' });
  const it = (await src.open(0, 100))[Symbol.asyncIterator]();
  const seqs: number[] = [];
  while (seqs.length < 10) seqs.push(...(await it.next()).value!.seqs);
  t.same(seqs, [1, 5, 9, 13, 17, 21, 25, 29, 33, 37], 'the partition\'s messages, with their stream sequences');
  t.equal(src.handedOut, 37);
  // Its last message is 37, the stream's 40: the consumer's stream position ran ahead over 38-40, which are not its.
  t.equal(await src.caughtUp(), 40, 'complete up to the stream\'s last sequence, past messages of other partitions');
  await js.publish('part1.in.1.u', enc.encode('m41'));
  await js.publish('part1.in.2.u', enc.encode('m42'));
  // 41 is its own and not handed out yet: not complete beyond 40 until it is.
  let upTo: number | undefined;
  for (let i = 0; i < 50 && upTo === undefined; i++) {
    upTo = await src.caughtUp();
    if (upTo === undefined) {
      t.same((await it.next()).value!.seqs, [41], 'its next message');
      upTo = await src.caughtUp();
    }
  }
  t.equal(upTo, 42, 'then complete up to 42');
  await src.close();
});
