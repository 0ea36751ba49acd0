// Every window is its own xstate v5 machine: open → pending → closed (DESIGN.md §3).
// The machine owns the lifecycle and the revisions; the arithmetic is the job's aggregate. Windows
// are not running actors: the operator steps each one by the machine's transitions (window-step.ts).

import { setup, assign, emit } from 'xstate';
import { resultRecord, type ResultRecord } from './records.js';
import type { CompiledJob } from './compiled-job.js';

export type EmitMode = 'updates' | 'final';

/** What is fixed for every window of an operator: the job's name, its allowed lateness and emit mode. */
export interface WindowSettings {
  job: string;
  lateness: number;
  mode: EmitMode;
}

export interface WindowContext {
  key: string;
  start: number;
  end: number;
  /** The job's accumulator of the window's records. */
  acc: unknown;
  /** Revision the next emitted record gets. */
  revision: number;
}

/** The actions that emit records or count revisions (the transitions a job's settings give them). */
type Emits = WindowEmit | 'nextRevision';

export type WindowEvent =
  | { type: 'ADD'; delta: unknown }
  | { type: 'LATE'; delta: unknown; watermark: number; recordId: string }
  | { type: 'FIRE'; watermark: number }
  | { type: 'CLOSE'; watermark: number };

export interface WindowEmitted {
  type: 'result';
  record: ResultRecord;
}

/**
 * The window lifecycle machine of a job (its aggregate does the arithmetic). The emit mode and the
 * lateness are the same for every window of a job, so they shape the machine's transitions rather
 * than being tested on every step:
 *
 * - updates mode: FIRE emits revision 0 (final when there is no lateness), each LATE the next
 *   revision, CLOSE a last record with `final: true` (when there is lateness);
 * - final mode: nothing before CLOSE, which emits the one record (revision 0, final).
 *
 * A FIRE whose watermark is already at or past end + lateness closes the window in the same step.
 */
export type WindowGuard = 'closesAtOnce';
export type WindowAssign = 'accumulate' | 'accumulateLate' | 'nextRevision';
export type WindowEmit = 'emitFiring' | 'emitRevision' | 'emitClosing';

/**
 * The machine's guards and actions as plain functions of (context, event): the xstate machine is
 * built from them (`assign` takes an assigner's partial context, `emit` an emitter's event), and
 * the compiled stepper (window-step.ts) runs the same functions along the machine's own transitions.
 */
export interface WindowLogic {
  guards: Record<WindowGuard, (c: WindowContext, e: WindowEvent) => boolean>;
  assigns: Record<WindowAssign, (c: WindowContext, e: WindowEvent) => Partial<WindowContext>>;
  emits: Record<WindowEmit, (c: WindowContext, e: WindowEvent) => WindowEmitted>;
}

export function windowLogic(job: Pick<CompiledJob, 'merge' | 'result'>, s: WindowSettings): WindowLogic {
  const updates = s.mode === 'updates';
  const result = (c: WindowContext, revision: number, final: boolean, watermark: number): WindowEmitted => ({
    type: 'result',
    record: resultRecord(s.job, c.key, { start: c.start, end: c.end }, job.result(c.acc, c), revision, final, watermark),
  });
  const watermarkOf = (e: WindowEvent): number => (e as { watermark: number }).watermark;
  return {
    guards: {
      // A window fired by a watermark at or past end + lateness closes in the same step.
      closesAtOnce: (c, e) => e.type === 'FIRE' && e.watermark >= c.end + s.lateness,
    },
    assigns: {
      accumulate: (c, e) => (e.type === 'ADD' ? { acc: job.merge(c.acc, e.delta, c) } : {}),
      accumulateLate: (c, e) => (e.type === 'LATE' ? { acc: job.merge(c.acc, e.delta, { key: c.key, start: c.start, end: c.end, recordId: e.recordId }) } : {}),
      nextRevision: (c) => ({ revision: c.revision + 1 }),
    },
    emits: {
      emitFiring: (c, e) => result(c, c.revision, s.lateness === 0, watermarkOf(e)),
      emitRevision: (c, e) => result(c, c.revision, false, watermarkOf(e)),
      emitClosing: (c, e) => result(c, updates ? c.revision : 0, true, watermarkOf(e)),
    },
  };
}

/**
 * The window lifecycle machine of a job (its aggregate does the arithmetic). The emit mode and the
 * lateness are the same for every window of a job, so they shape the machine's transitions rather
 * than being tested on every step:
 *
 * - updates mode: FIRE emits revision 0 (final when there is no lateness), each LATE the next
 *   revision, CLOSE a last record with `final: true` (when there is lateness);
 * - final mode: nothing before CLOSE, which emits the one record (revision 0, final).
 *
 * A FIRE whose watermark is already at or past end + lateness closes the window in the same step.
 */
export function createWindowMachine(job: Pick<CompiledJob, 'merge' | 'result'>, s: WindowSettings, logic: WindowLogic = windowLogic(job, s)) {
  const updates = s.mode === 'updates';
  // Firing emits revision 0 in updates mode; with no lateness it is also the final record.
  const firing: Emits[] = updates ? ['emitFiring', 'nextRevision'] : [];
  // Closing emits the last record: final:true in updates mode with lateness, the only one in final mode.
  const closing: Emits[] = !updates || s.lateness > 0 ? ['emitClosing'] : [];
  const revising: Emits[] = updates ? ['emitRevision', 'nextRevision'] : [];
  // Firing and closing in one step: no revision is counted after the last record (a closed window
  // emits nothing more), which spares the step a context update.
  const firesAndCloses: Emits[] = closing.length ? [...firing, ...closing] : firing.filter((a) => a !== 'nextRevision');
  const { guards: g, assigns: a, emits: e } = logic;
  return setup({
    types: {
      context: {} as WindowContext,
      events: {} as WindowEvent,
      input: {} as WindowContext,
      emitted: {} as WindowEmitted,
    },
    guards: {
      closesAtOnce: ({ context, event }) => g.closesAtOnce(context, event),
    },
    actions: {
      accumulate: assign(({ context, event }) => a.accumulate(context, event)),
      accumulateLate: assign(({ context, event }) => a.accumulateLate(context, event)),
      nextRevision: assign(({ context, event }) => a.nextRevision(context, event)),
      emitFiring: emit(({ context, event }) => e.emitFiring(context, event)),
      emitRevision: emit(({ context, event }) => e.emitRevision(context, event)),
      emitClosing: emit(({ context, event }) => e.emitClosing(context, event)),
    },
  }).createMachine({
    id: 'window',
    initial: 'open',
    context: ({ input }) => input,
    states: {
      open: {
        on: {
          ADD: { actions: 'accumulate' },
          // A watermark already at or past end + lateness fires and closes in one transition (no
          // pending step in between): revision 0 (updates mode), then the closing record.
          FIRE: [
            { guard: 'closesAtOnce', target: 'closed', actions: firesAndCloses },
            { target: 'pending', actions: firing },
          ],
        },
      },
      pending: {
        on: {
          // One revision per accepted late record (updates mode); final mode only accumulates.
          LATE: { actions: ['accumulateLate', ...revising] },
          CLOSE: { target: 'closed', actions: closing },
        },
      },
      closed: { type: 'final' },
    },
  });
}

export type WindowMachine = ReturnType<typeof createWindowMachine>;

export type WindowState = 'open' | 'pending' | 'closed';
