// The compiled window stepper against xstate's own transition of the same machine: on random
// windows (every emit mode, lateness 0 and > 0) and random event sequences, including events a
// state has no transition for, both give the same state values, contexts and emitted records.

import t from 'tap';
import fc from 'fast-check';
import { windowStepper, stepEngineFromEnv, CompiledStepper } from '../../src/runtime/window-step.js';
import { createWindowMachine, windowLogic, type WindowContext, type WindowEvent, type WindowState, type WindowSettings } from '../../src/runtime/window-machine.js';
import type { ResultRecord } from '../../src/runtime/records.js';
import type { WhereInfo } from '../../src/runtime/compiled-job.js';

/** A job whose accumulator records every merge and where the engine said it happened. */
const job = {
  merge: (a: unknown, b: unknown, where: WhereInfo): unknown => [...(a as string[]), `${String(b)}@${where.key}/${where.start}/${where.end}/${where.recordId ?? '-'}`],
  result: (acc: unknown, where: WhereInfo): Record<string, unknown> => ({ merges: (acc as string[]).join(';'), at: `${where.key}/${where.start}/${where.end}` }),
};

const event = (end: number): fc.Arbitrary<WindowEvent> =>
  fc.oneof(
    fc.record({ type: fc.constant('ADD' as const), delta: fc.nat(99) }),
    fc.record({ type: fc.constant('LATE' as const), delta: fc.nat(99), watermark: fc.integer({ min: end - 5, max: end + 20 }), recordId: fc.string({ maxLength: 4 }) }),
    fc.record({ type: fc.constant('FIRE' as const), watermark: fc.integer({ min: end - 5, max: end + 20 }) }),
    fc.record({ type: fc.constant('CLOSE' as const), watermark: fc.integer({ min: end - 5, max: end + 20 }) }),
  );

const scenario = fc
  .record({ mode: fc.constantFrom('updates' as const, 'final' as const), lateness: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 15 })), start: fc.integer({ min: 0, max: 100 }), size: fc.integer({ min: 1, max: 50 }) })
  .chain((s) => fc.record({ s: fc.constant(s), events: fc.array(event(s.start + s.size), { maxLength: 12 }), revision: fc.nat(3) }));

/** Steps a window through `events` with one engine: the states, contexts and records on the way. */
function run(engine: 'compiled' | 'xstate', settings: WindowSettings, start: WindowContext, events: WindowEvent[]) {
  const records: ResultRecord[] = [];
  const stepper = windowStepper(job, settings, (r) => records.push(r), engine);
  let value: WindowState = 'open';
  let context = start;
  const trace: { value: WindowState; acc: unknown; revision: number; key: string; start: number; end: number; records: number }[] = [];
  for (const e of events) {
    const next = stepper.step(value, context, e);
    value = next.value;
    context = next.context;
    trace.push({ value, acc: context.acc, revision: context.revision, key: context.key, start: context.start, end: context.end, records: records.length });
  }
  return { trace, records };
}

t.test('the compiled stepper steps every window as xstate does', (t) => {
  let stepsTaken = 0;
  let emitted = 0;
  const valuesSeen = new Set<string>();
  fc.assert(
    fc.property(scenario, ({ s, events, revision }) => {
      const settings: WindowSettings = { job: 'j', lateness: s.lateness, mode: s.mode };
      const start: WindowContext = { key: '#k', start: s.start, end: s.start + s.size, acc: ['init'], revision };
      const a = run('compiled', settings, start, events);
      const b = run('xstate', settings, start, events);
      stepsTaken += events.length;
      emitted += b.records.length;
      for (const x of b.trace) valuesSeen.add(x.value);
      t.same(a, b);
      return true;
    }),
    { numRuns: 400 },
  );
  t.ok(stepsTaken > 1000 && emitted > 100, `${stepsTaken} steps, ${emitted} records compared`);
  t.same([...valuesSeen].sort(), ['closed', 'open', 'pending'], 'every state value was reached');
  t.end();
});

t.test('a step that changes nothing keeps the very context object (as xstate does)', (t) => {
  const settings: WindowSettings = { job: 'j', lateness: 5, mode: 'updates' };
  const stepper = windowStepper(job, settings, () => undefined, 'compiled');
  const ctx: WindowContext = { key: 'k', start: 0, end: 10, acc: [], revision: 0 };
  const same = stepper.step('open', ctx, { type: 'CLOSE', watermark: 99 });
  t.equal(same.context, ctx);
  t.equal(same.value, 'open');
  t.equal(stepper.step('closed', ctx, { type: 'FIRE', watermark: 99 }).value, 'closed');
  t.end();
});

t.test('a machine shape the compiled stepper does not follow is refused, not stepped differently', (t) => {
  const settings: WindowSettings = { job: 'j', lateness: 0, mode: 'updates' };
  const logic = windowLogic(job, settings);
  const machine = createWindowMachine(job, settings, logic);
  // The same machine with an entry action on `pending`.
  const withEntry = machine.provide({});
  (withEntry.root.states.pending as { entry: unknown[] }).entry = ['emitFiring'];
  t.throws(() => new CompiledStepper(withEntry, logic, () => undefined), /cannot take entry\/exit actions/);
  // An action the logic does not have.
  const noAction = { ...logic, emits: { ...logic.emits } } as Partial<typeof logic> as typeof logic;
  delete (noAction.emits as Partial<typeof logic.emits>).emitFiring;
  t.throws(() => new CompiledStepper(createWindowMachine(job, settings, logic), noAction, () => undefined), /the action emitFiring/);
  t.end();
});

t.test('TIDEMARK_WINDOW_STEP picks the engine, and a bad value is named', (t) => {
  t.equal(stepEngineFromEnv({}), 'compiled');
  t.equal(stepEngineFromEnv({ TIDEMARK_WINDOW_STEP: 'xstate' }), 'xstate');
  t.equal(stepEngineFromEnv({ TIDEMARK_WINDOW_STEP: 'compiled' }), 'compiled');
  t.throws(() => stepEngineFromEnv({ TIDEMARK_WINDOW_STEP: 'fast' }), /TIDEMARK_WINDOW_STEP must be "compiled" or "xstate", not "fast" \(unset it for the default, compiled\)/);
  t.end();
});
