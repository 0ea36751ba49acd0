import { isDeepStrictEqual } from 'node:util';
import { runInMemory } from '../../src/runtime/pipeline.js';
import { referenceRun } from '../helpers/reference.js';
import { genStream, KEYWORDS } from '../helpers/streams.js';
const SEEDS = Array.from({ length: 30 }, (_, i) => 1000 + i * 7919);
const WINDOWS: any[] = [
  { name: 'tumbling', window: { kind: 'tumbling', size: 1000 }, unit: 1000 },
  { name: 'sliding', window: { kind: 'sliding', size: 3000, slide: 1000 }, unit: 1000 },
  { name: 'session', window: { kind: 'session', gap: 700 }, unit: 700, step: 90, Ls: [0, 3000] },
];
const fixDates = process.env.FIXDATES === '1';
let fails = 0;
for (const w of WINDOWS) for (const seed of SEEDS) {
  const M = [0, 400, 1500][seed % 3]!;
  let payloads = genStream(seed, { n: 150, unit: w.unit, step: w.step ?? Math.round(w.unit / 4), maxOutOfOrderness: M });
  if (fixDates) payloads = payloads.map((p) => p.replace(/"ts":"(\d{4}-\d\d-\d\d)"/, (_, d) => `"ts":${Date.parse(d + 'T00:00:00Z')}`));
  const keys = { hashtags: true, all: seed % 2 === 0, keywords: seed % 5 === 0 ? [] : KEYWORDS };
  const drain = seed % 4 !== 1;
  for (const lateness of (w.Ls ?? [0, 1200])) for (const emit of ['updates', 'final']) {
    const cfg: any = { job: 'j', window: w.window, maxOutOfOrderness: M, lateness, keys, emit };
    const e = referenceRun(payloads, cfg, drain);
    for (const v of [{ batchSize: 1, partitions: 1 }, { batchSize: 7, partitions: 1 }, { batchSize: 1000, partitions: 1 }, { batchSize: 1, partitions: 3 }, { batchSize: 7, partitions: 3 }, { batchSize: 1000, partitions: 3 }]) {
      const a = runInMemory(payloads.map((p) => Buffer.from(p)), cfg, { ...v, drain });
      const msgs: string[] = [];
      for (const kind of ['results', 'late', 'dead'] as const) {
        const am = new Map((a as any)[kind].map((r: any) => [r.id, r]));
        const em = new Map((e as any)[kind].map((r: any) => [r.id, r]));
        if (am.size !== (a as any)[kind].length) msgs.push(`${kind}: impl duplicate ids`);
        if (em.size !== (e as any)[kind].length) msgs.push(`${kind}: model duplicate ids`);
        for (const [id, r] of em) if (!am.has(id)) msgs.push(`${kind} missing ${id} ${JSON.stringify(r)}`);
        for (const [id, r] of am) if (!em.has(id)) msgs.push(`${kind} extra ${id} ${JSON.stringify(r)}`);
        if (kind !== 'dead') for (const [id, r] of em) if (am.has(id) && !isDeepStrictEqual(am.get(id), r)) msgs.push(`${kind} differ ${id}\n   impl  ${JSON.stringify(am.get(id))}\n   model ${JSON.stringify(r)}`);
      }
      if (msgs.length) {
        fails++;
        console.log(`== ${w.name} seed=${seed} M=${M} L=${lateness} ${emit} drain=${drain} ${JSON.stringify(v)}: ${msgs.length} diffs`);
        for (const m of msgs.slice(0, 4)) console.log('  ' + m);
      }
    }
  }
}
console.log('fails', fails);
