// Messages larger than max_payload travel in chunks over a real nats-server and come back whole,
// also when two publishers interleave their chunks on one subject; broken runs are reported.

import t from 'tap';
import { connect, headers, type NatsConnection } from 'nats';
import { randomBytes } from 'node:crypto';
import { scratchDir, startNats } from '../helpers/nats.js';
import { CHUNK_HEADER, ChunkingPublisher, Reassembler } from '../../src/io/framing.js';

const scratch = scratchDir();
const nats = await startNats(scratch.dir);
const a: NatsConnection = await connect({ servers: nats.url });
const b: NatsConnection = await connect({ servers: nats.url });
t.teardown(async () => {
  await a.close();
  await b.close();
  await nats.stop();
  scratch.remove();
});

const equal = (x: Uint8Array, y: Uint8Array): boolean => Buffer.from(x).equals(Buffer.from(y));

t.test('the default limit follows the server max_payload', async (t) => {
  const pub = new ChunkingPublisher(a);
  t.ok(pub.limit < (a.info?.max_payload ?? 0), 'below max_payload');
  t.ok(pub.limit > 512 * 1024, 'close to it');
  // Without chunking the client refuses such a message outright.
  t.throws(() => a.publish('x', new Uint8Array((a.info?.max_payload ?? 0) + 1)), /MAX_PAYLOAD_EXCEEDED/);
});

t.test('large and small messages from two publishers on one subject arrive whole and in order', async (t) => {
  // Two connections publish at once, so their chunks interleave on the subject.
  const c = await connect({ servers: nats.url });
  t.teardown(() => c.close());
  const sizes = [3500, 10, 2_500_000, 1000, 1001, 2, 1_200_000];
  const make = (sender: number): Uint8Array[] =>
    sizes.map((n, i) => {
      const bytes = randomBytes(n);
      bytes[0] = sender;
      bytes[1] = i;
      return bytes;
    });
  const sent = [make(1), make(2)];
  const received = new Map<number, Uint8Array[]>([[1, []], [2, []]]);
  const sub = b.subscribe('big');
  await b.flush();
  const parts = new Reassembler();
  const reading = (async () => {
    let n = 0;
    for await (const m of sub) {
      const data = parts.push(m);
      if (!data) continue;
      received.get(data[0]!)!.push(data);
      if (++n === 2 * sizes.length) break;
    }
  })();
  const pubs = [new ChunkingPublisher(a, 1000), new ChunkingPublisher(c, 777)];
  t.ok(pubs[0]!.limit === 1000 && pubs[1]!.limit === 777);
  for (let i = 0; i < sizes.length; i++) {
    t.equal(pubs[0]!.publish('big', sent[0]![i]!), Math.max(1, Math.ceil(sizes[i]! / 1000)), `message ${i} in ${Math.ceil(sizes[i]! / 1000)} parts`);
    pubs[1]!.publish('big', sent[1]![i]!);
  }
  await Promise.all([a.flush(), c.flush()]);
  await reading;
  for (const s of [1, 2]) {
    const got = received.get(s)!;
    t.equal(got.length, sizes.length, `sender ${s}: every message`);
    t.ok(got.every((g, i) => equal(g, sent[s - 1]![i]!)), `sender ${s}: byte for byte, in order`);
  }
  t.equal(parts.pending, 0, 'nothing left half-built');
});

t.test('chunks of two messages interleaved from different senders are rebuilt separately', async (t) => {
  const parts = new Reassembler();
  const chunk = (id: string, i: number, n: number, data: string) => {
    const h = headers();
    h.set(CHUNK_HEADER, `${id} ${i} ${n}`);
    return { data: Buffer.from(data), headers: h };
  };
  t.equal(parts.push(chunk('x-1', 0, 2, 'ab')), undefined);
  t.equal(parts.push(chunk('y-1', 0, 2, 'AB')), undefined);
  t.equal(Buffer.from(parts.push(chunk('y-1', 1, 2, 'C'))!).toString(), 'ABC');
  t.equal(Buffer.from(parts.push(chunk('x-1', 1, 2, 'c'))!).toString(), 'abc');
  t.throws(() => parts.push(chunk('z-1', 1, 2, 'c')), /part 1\/2 arrived out of order \(expected 0\)/, 'a missing first part');
  t.equal(parts.push(chunk('w-1', 0, 3, 'a')), undefined);
  t.throws(() => parts.push(chunk('w-1', 2, 3, 'c')), /part 2\/3 arrived out of order \(expected 1\)/, 'a missing middle part');
  t.throws(() => parts.push(chunk('v', 3, 2, 'c')), /malformed Tidemark-Chunk header/);
  t.throws(() => parts.push(chunk('v', 0, 0, 'c')), /malformed/);
  t.equal(parts.push(chunk('u', 0, 2, 'a')), undefined);
  t.throws(() => parts.push(chunk('u', 0, 2, 'a')), /started twice/);
  t.equal(Buffer.from(parts.push({ data: Buffer.from('plain'), headers: undefined })!).toString(), 'plain', 'no header: passed through');
});
