// Generated user jobs for model tests: a random associative combination of count, sum, min and
// max over record fields, as the source of a job module, and its independent model (the same
// fields computed directly from a window's list of records, with no add or merge).

import fc from 'fast-check';
import type { Rec, RefConfig } from './reference.js';

export type Component = { op: 'count' } | { op: 'sum' | 'min' | 'max'; field: 'v' | 'w' };

export interface GenRecord {
  id: string;
  ts: number;
  keys: string[];
  v: number;
  w: number;
}

const name = (c: Component): string => (c.op === 'count' ? 'n' : `${c.op}_${c.field}`);

/** A job module's source for these components (plain JavaScript, as a user would write it). */
export function moduleSource(jobName: string, components: readonly Component[]): string {
  const init = components.map((c) => `${name(c)}: ${c.op === 'count' || c.op === 'sum' ? '0' : 'null'}`).join(', ');
  const add = components
    .map((c) => {
      const k = name(c);
      if (c.op === 'count') return `${k}: a.${k} + 1`;
      if (c.op === 'sum') return `${k}: a.${k} + r.${c.field}`;
      return `${k}: a.${k} === null ? r.${c.field} : Math.${c.op}(a.${k}, r.${c.field})`;
    })
    .join(', ');
  const merge = components
    .map((c) => {
      const k = name(c);
      if (c.op === 'count' || c.op === 'sum') return `${k}: a.${k} + b.${k}`;
      return `${k}: a.${k} === null ? b.${k} : b.${k} === null ? a.${k} : Math.${c.op}(a.${k}, b.${k})`;
    })
    .join(', ');
  return `export default {
  name: ${JSON.stringify(jobName)},
  eventTime: (r) => r.ts,
  keys: (r) => r.keys,
  aggregate: {
    init: () => ({ ${init} }),
    add: (a, r) => ({ ${add} }),
    merge: (a, b) => ({ ${merge} }),
    result: (a) => ({ ...a }),
  },
};
`;
}

/** The model: each component computed from the records themselves. */
export function summarize(components: readonly Component[]): (records: unknown[]) => Record<string, unknown> {
  return (records) => {
    const rs = records as GenRecord[];
    const out: Record<string, unknown> = {};
    for (const c of components) {
      if (c.op === 'count') out[name(c)] = rs.length;
      else {
        const xs = rs.map((r) => r[c.field]);
        out[name(c)] = c.op === 'sum' ? xs.reduce((a, b) => a + b, 0) : xs.length === 0 ? null : c.op === 'min' ? Math.min(...xs) : Math.max(...xs);
      }
    }
    return out;
  };
}

export const componentsArb: fc.Arbitrary<Component[]> = fc.uniqueArray(
  fc.oneof(fc.constant<Component>({ op: 'count' }), fc.record({ op: fc.constantFrom<'sum' | 'min' | 'max'>('sum', 'min', 'max'), field: fc.constantFrom<'v' | 'w'>('v', 'w') })),
  { minLength: 1, maxLength: 4, selector: (c) => name(c) },
);

export type GenWindow = RefConfig['window'];

export const windowArb: fc.Arbitrary<GenWindow> = fc.oneof(
  fc.constantFrom(10_000, 30_000).map((size): GenWindow => ({ kind: 'tumbling', size })),
  fc.constantFrom<[number, number]>([20_000, 10_000], [30_000, 10_000]).map(([size, slide]): GenWindow => ({ kind: 'sliding', size, slide })),
  fc.constantFrom(5_000, 15_000).map((gap): GenWindow => ({ kind: 'session', gap })),
);

/** Records in mostly increasing event time with out-of-order, late and very late ones. */
export const recordsArb = (n: { min: number; max: number }): fc.Arbitrary<GenRecord[]> =>
  fc
    .array(
      fc.record({
        step: fc.integer({ min: 0, max: 2_000 }),
        back: fc.oneof({ weight: 8, arbitrary: fc.constant(0) }, { weight: 2, arbitrary: fc.integer({ min: 0, max: 20_000 }) }, { weight: 1, arbitrary: fc.integer({ min: 20_000, max: 120_000 }) }),
        keys: fc.subarray(['a', 'b', 'c', '*'], { minLength: 0, maxLength: 3 }),
        v: fc.integer({ min: -50, max: 50 }),
        w: fc.integer({ min: 0, max: 1000 }),
      }),
      { minLength: n.min, maxLength: n.max },
    )
    .map((steps) => {
      let t = 1_764_000_000_000;
      return steps.map((s, i) => {
        t += s.step;
        return { id: `r${i}`, ts: t - s.back, keys: s.keys, v: s.v, w: s.w };
      });
    });

/** The records as the model sees them. */
export const asRecs = (records: readonly GenRecord[]): Rec[] => records.map((r) => ({ id: r.id, ts: r.ts, keys: [...new Set(r.keys)], rec: r }));

/** The flag syntax of a window. */
export function windowFlag(w: GenWindow): string {
  if (w.kind === 'tumbling') return `tumbling:${w.size}ms`;
  if (w.kind === 'sliding') return `sliding:${w.size}ms,${w.slide}ms`;
  return `session:${w.gap}ms`;
}
