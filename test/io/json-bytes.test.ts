// jsonBytes: each record's JSON as UTF-8, as views of shared buffers, byte for byte what
// JSON.stringify + TextEncoder give, for any mix of sizes and characters.

import t from 'tap';
import { jsonBytes } from '../../src/io/sinks.js';

const enc = new TextEncoder();
const same = (records: Array<{ id: string } & Record<string, unknown>>): boolean => {
  const got = jsonBytes(records);
  return got.length === records.length && records.every((r, i) => Buffer.compare(got[i]!, enc.encode(JSON.stringify(r))) === 0);
};

t.test('ASCII, accents, CJK, emoji and lone surrogates, one record or many', async (t) => {
  const texts = ['#nats', '#café', '#東京', '#🚀', 'a\ud800b', '"quoted"\n'];
  t.ok(same([]), 'no records');
  t.ok(same([{ id: 'one', key: '#🚀' }]), 'one record');
  t.ok(same(Array.from({ length: 1000 }, (_, i) => ({ id: `r${i}`, key: texts[i % texts.length]!, n: i, x: i / 7 }))), 'a thousand records');
});

t.test('records larger than a buffer, and buffers filled to the edge', async (t) => {
  const big = (n: number, ch: string) => ({ id: `b${n}`, text: ch.repeat(n) });
  t.ok(same([big(70_000, 'a'), big(10, 'é'), big(30_000, '東'), big(22_000, 'a')]), 'mixed sizes across 64 KiB buffers');
  t.ok(same(Array.from({ length: 300 }, (_, i) => big(200 + (i % 17), i % 3 ? 'a' : '🚀'))), 'many mid-sized records');
});

t.test('views of one write never overlap', async (t) => {
  const out = jsonBytes(Array.from({ length: 200 }, (_, i) => ({ id: `v${i}`, k: 'x'.repeat(i) })));
  const spans = out.map((b) => [b.byteOffset, b.byteOffset + b.length, b.buffer] as const);
  let overlap = false;
  for (let i = 0; i < spans.length; i++) for (let j = i + 1; j < spans.length; j++) if (spans[i]![2] === spans[j]![2] && spans[i]![0] < spans[j]![1] && spans[j]![0] < spans[i]![1]) overlap = true;
  t.notOk(overlap);
});
