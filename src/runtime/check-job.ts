// The laws a job's aggregate must keep for the engine to be exact (`tidemark check-job`): the
// engine merges partial aggregates in batch-dependent groupings, checkpoints them as msgpack and
// shares one record's accumulator between windows, so a law broken here is a result wrong there.

import fc from 'fast-check';
import { Packr } from 'msgpackr';
import { inspect, isDeepStrictEqual } from 'node:util';
import { encode as actorEncode, decode as actorDecode } from '../io/codec.js';
import { RESERVED_RESULT_FIELDS, unsafeForState, type AnyJobDefinition } from './job-definition.js';

/** The outcome of one law over generated record lists. */
export interface LawOutcome {
  law: LawName;
  /** what the law says, for the report */
  title: string;
  passed: boolean;
  /** record lists tried */
  runs: number;
  /** the smallest failing list of records fast-check found (shrunk) */
  counterexample?: unknown[];
  /** what went wrong on the counter-example */
  detail?: string;
  shrinks?: number;
  seed: number;
}

export type LawName = 'agrees-with-add' | 'associative' | 'round-trip' | 'result' | 'no-mutation';

export interface CheckOptions {
  /** record lists per law (default 200) */
  runs?: number;
  seed?: number;
  /** longest generated list of records (default 8) */
  maxRecords?: number;
  /** lists tried before any generated one (e.g. the user's samples in their order) */
  examples?: unknown[][];
}

/** The titles of the laws, in the order they are checked. */
export const LAWS: ReadonlyArray<{ law: LawName; title: string }> = [
  { law: 'agrees-with-add', title: 'merge of split halves = add one by one, in every split (accumulator and result)' },
  { law: 'associative', title: 'merge is associative: merge(merge(a, b), c) = merge(a, merge(b, c)), a, b, c non-empty' },
  { law: 'round-trip', title: 'the accumulator survives a msgpack round trip (checkpoints and actor messages)' },
  { law: 'result', title: 'result never throws and returns a JSON object without the engine\'s fields' },
  { law: 'no-mutation', title: 'add and merge do not mutate their arguments' },
];

/** The checkpoint store's codec (plain maps) and the actors' codec (record structures). */
const checkpointPackr = new Packr({ useRecords: false });

/** Shows a value as a user would write it (Maps, class instances and undefined stay visible). */
export const show = (v: unknown): string => inspect(v, { depth: 8, breakLength: Infinity, maxArrayLength: 50, maxStringLength: 200, compact: true });

const errText = (e: unknown): string => (e instanceof Error ? `${e.name === 'Error' ? '' : `${e.name}: `}${e.message}` : String(e));

/**
 * A deep copy that keeps plain objects' prototypes (fast-check's records have none), or undefined
 * when the value cannot be copied faithfully (then its mutation is not judged here).
 */
function copy(v: unknown): unknown {
  if (typeof v !== 'object' || v === null) return v;
  if (Array.isArray(v)) return v.map(copy);
  const proto = Object.getPrototypeOf(v) as unknown;
  if (proto === Object.prototype || proto === null) {
    const out = Object.create(proto as object | null) as Record<string, unknown>;
    for (const [k, x] of Object.entries(v)) out[k] = copy(x);
    return out;
  }
  if (v instanceof Map || v instanceof Set || v instanceof Date) return structuredClone(v);
  return undefined;
}

/** A law broken on the current records: carries the one-line description of how. */
class Broken extends Error {}

/** Calls a user function; a throw breaks the law with the function's name. */
function call<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof Broken) throw e;
    throw new Broken(`${what} threw: ${errText(e)}`);
  }
}

/** The law checks over one list of records; each throws `Broken` with what it saw. */
function lawsFor(def: AnyJobDefinition): Record<LawName, (rs: unknown[]) => void> {
  const agg = def.aggregate;
  const init = (): unknown => call('init()', () => agg.init());
  const add = (acc: unknown, r: unknown, i: number): unknown => call(`add(acc, records[${i}])`, () => agg.add(acc, r));
  const merge = (a: unknown, b: unknown, what: string): unknown => call(what, () => agg.merge(a, b));
  const result = (acc: unknown, what: string): unknown => call(`result(${what})`, () => agg.result(acc));
  /** add one by one over records[from, to) */
  const fold = (rs: unknown[], from = 0, to = rs.length): unknown => {
    let acc = init();
    for (let i = from; i < to; i++) acc = add(acc, rs[i], i);
    return acc;
  };
  const range = (from: number, to: number): string => `fold(records[${from}..${to}))`;

  return {
    'agrees-with-add': (rs) => {
      const n = rs.length;
      const whole = fold(rs);
      const wholeResult = result(whole, range(0, n));
      for (let i = 0; i <= n; i++) {
        const m = merge(fold(rs, 0, i), fold(rs, i, n), `merge(${range(0, i)}, ${range(i, n)})`);
        if (!isDeepStrictEqual(m, whole)) throw new Broken(`split at ${i} of ${n}: merge(${range(0, i)}, ${range(i, n)}) = ${show(m)}, but add one by one gives ${show(whole)}`);
        const r = result(m, `merge at split ${i}`);
        if (!isDeepStrictEqual(r, wholeResult)) throw new Broken(`split at ${i} of ${n}: result of the merge = ${show(r)}, but result of add one by one = ${show(wholeResult)}`);
      }
    },
    associative: (rs) => {
      const n = rs.length;
      // Non-empty parts: merging with an empty accumulator is the first law's split at 0 or n.
      for (let i = 1; i < n; i++) {
        for (let j = i + 1; j < n; j++) {
          const left = merge(merge(fold(rs, 0, i), fold(rs, i, j), 'merge(a, b)'), fold(rs, j, n), 'merge(merge(a, b), c)');
          const right = merge(fold(rs, 0, i), merge(fold(rs, i, j), fold(rs, j, n), 'merge(b, c)'), 'merge(a, merge(b, c))');
          if (!isDeepStrictEqual(left, right)) {
            throw new Broken(`with a = ${range(0, i)}, b = ${range(i, j)}, c = ${range(j, n)}: merge(merge(a, b), c) = ${show(left)}, merge(a, merge(b, c)) = ${show(right)}`);
          }
        }
      }
    },
    'round-trip': (rs) => {
      const n = rs.length;
      const accs: Array<[string, unknown]> = [];
      for (let i = 1; i <= n; i++) accs.push([range(0, i), fold(rs, 0, i)]);
      for (let i = 1; i < n; i++) accs.push([`merge(${range(0, i)}, ${range(i, n)})`, merge(fold(rs, 0, i), fold(rs, i, n), 'merge')]);
      for (const [what, acc] of accs) {
        const unsafe = unsafeForState(acc, 'acc');
        if (unsafe) throw new Broken(`${what}: ${unsafe}; accumulator = ${show(acc)}`);
        for (const [codec, back] of [
          ['checkpoint', () => checkpointPackr.unpack(checkpointPackr.pack(acc)) as unknown],
          ['actor message', () => actorDecode<unknown>(actorEncode(acc))],
        ] as const) {
          let got: unknown;
          try {
            got = back();
          } catch (e) {
            throw new Broken(`${what}: the ${codec} codec cannot encode ${show(acc)}: ${errText(e)}`);
          }
          if (!isDeepStrictEqual(got, acc)) throw new Broken(`${what}: ${show(acc)} comes back from a msgpack round trip (${codec}) as ${show(got)}`);
        }
      }
    },
    result: (rs) => {
      const n = rs.length;
      const accs: Array<[string, unknown]> = [];
      for (let i = 1; i <= n; i++) accs.push([range(0, i), fold(rs, 0, i)]);
      for (let i = 1; i < n; i++) accs.push([`merge at split ${i}`, merge(fold(rs, 0, i), fold(rs, i, n), 'merge')]);
      for (const [what, acc] of accs) {
        const out = result(acc, what);
        if (typeof out !== 'object' || out === null || Array.isArray(out)) throw new Broken(`result(${what}) returned ${show(out)}, not an object`);
        const clash = Object.keys(out).filter((k) => (RESERVED_RESULT_FIELDS as readonly string[]).includes(k));
        if (clash.length) throw new Broken(`result(${what}) returns ${clash.map((c) => `"${c}"`).join(', ')}, which the engine sets on every result; rename it`);
        let json: unknown;
        try {
          json = JSON.parse(JSON.stringify(out)) as unknown;
        } catch (e) {
          throw new Broken(`result(${what}) = ${show(out)} cannot be written as JSON: ${errText(e)}`);
        }
        if (!isDeepStrictEqual(json, out)) throw new Broken(`result(${what}) = ${show(out)} is written by the sinks as JSON ${JSON.stringify(out)}`);
      }
    },
    'no-mutation': (rs) => {
      const n = rs.length;
      const unchanged = (before: unknown, after: unknown, what: string): void => {
        if (before !== undefined && !isDeepStrictEqual(before, after)) throw new Broken(`${what}: before ${show(before)}, after ${show(after)}`);
      };
      for (let i = 0; i < n; i++) {
        const acc = fold(rs, 0, i);
        const [accBefore, recBefore] = [copy(acc), copy(rs[i])];
        add(acc, rs[i], i);
        unchanged(accBefore, acc, `add(${range(0, i)}, records[${i}]) changed its accumulator`);
        unchanged(recBefore, rs[i], `add(acc, records[${i}]) changed the record`);
      }
      for (let i = 0; i <= n; i++) {
        const [a, b] = [fold(rs, 0, i), fold(rs, i, n)];
        const [aBefore, bBefore] = [copy(a), copy(b)];
        merge(a, b, 'merge');
        unchanged(aBefore, a, `merge(${range(0, i)}, ${range(i, n)}) changed its first argument`);
        unchanged(bBefore, b, `merge(${range(0, i)}, ${range(i, n)}) changed its second argument`);
      }
    },
  };
}

/** Lists of records drawn from a record arbitrary, or from example records (shrinking to fewer). */
export function recordLists(source: { arbitrary: fc.Arbitrary<unknown> } | { samples: readonly unknown[] }, maxRecords = 8): fc.Arbitrary<unknown[]> {
  const one = 'arbitrary' in source ? source.arbitrary : fc.constantFrom(...source.samples);
  return fc.array(one, { minLength: 1, maxLength: maxRecords });
}

/** Checks every law on `def` over generated lists of records; never throws for a user's bug. */
export function checkLaws(def: AnyJobDefinition, lists: fc.Arbitrary<unknown[]>, opts: CheckOptions = {}): LawOutcome[] {
  const laws = lawsFor(def);
  const seed = opts.seed ?? Date.now() % 2 ** 31;
  const runs = opts.runs ?? 200;
  return LAWS.map(({ law, title }) => {
    const details = fc.check(
      fc.property(lists, (rs) => {
        laws[law](rs);
      }),
      { numRuns: runs, seed, examples: (opts.examples ?? []).map((e) => [e] as [unknown[]]) },
    );
    if (!details.failed) return { law, title, passed: true, runs: details.numRuns, seed };
    const e = details.errorInstance;
    return {
      law,
      title,
      passed: false,
      runs: details.numRuns,
      seed,
      shrinks: details.numShrinks,
      ...(details.counterexample ? { counterexample: details.counterexample[0] } : {}),
      detail: e instanceof Broken ? e.message : `the check itself failed: ${errText(e)}`,
    };
  });
}
