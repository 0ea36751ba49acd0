import { referenceRun, ruleCounts } from '../helpers/reference.js';
import { genStream, KEYWORDS } from '../helpers/streams.js';
const SEEDS = Array.from({ length: 30 }, (_, i) => 1000 + i * 7919);
const WINDOWS: any[] = [
  { name: 'tumbling', window: { kind: 'tumbling', size: 1000 }, unit: 1000 },
  { name: 'sliding', window: { kind: 'sliding', size: 3000, slide: 1000 }, unit: 1000 },
  { name: 'session', window: { kind: 'session', gap: 700 }, unit: 700, step: Number(process.env.STEP ?? 175) },
];
const Ls = (process.env.LS ?? '0,1200').split(',').map(Number);
for (const w of WINDOWS) {
  for (const k of Object.keys(ruleCounts)) delete ruleCounts[k];
  for (const seed of SEEDS) {
    const M = [0, 400, 1500][seed % 3]!;
    const payloads = genStream(seed, { n: 150, unit: w.unit, step: w.step ?? Math.round(w.unit / 4), maxOutOfOrderness: M });
    const keys = { hashtags: true, all: seed % 2 === 0, keywords: seed % 5 === 0 ? [] : KEYWORDS };
    for (const lateness of Ls) referenceRun(payloads, { job: 'j', window: w.window, maxOutOfOrderness: M, lateness, keys, emit: 'updates' }, true);
  }
  console.log(w.name, ruleCounts);
}
