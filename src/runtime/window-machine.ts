// Every window is its own xstate v5 machine: open → pending → closed (DESIGN.md §3).
// The machine owns the lifecycle and the revisions; the arithmetic is the job's aggregate. Windows
// are not running actors: the operator steps each one with the machine's pure transition.

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
type Emits = 'emitFiring' | 'emitRevision' | 'emitClosing' | 'nextRevision';

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
export function createWindowMachine(job: Pick<CompiledJob, 'merge' | 'result'>, s: WindowSettings) {
  const updates = s.mode === 'updates';
  const result = (c: WindowContext, revision: number, final: boolean, watermark: number): WindowEmitted => ({
    type: 'result',
    record: resultRecord(s.job, c.key, { start: c.start, end: c.end }, job.result(c.acc, c), revision, final, watermark),
  });
  // Firing emits revision 0 in updates mode; with no lateness it is also the final record.
  const firing: Emits[] = updates ? ['emitFiring', 'nextRevision'] : [];
  // Closing emits the last record: final:true in updates mode with lateness, the only one in final mode.
  const closing: Emits[] = !updates || s.lateness > 0 ? ['emitClosing'] : [];
  const revising: Emits[] = updates ? ['emitRevision', 'nextRevision'] : [];
  // Firing and closing in one step: no revision is counted after the last record (a closed window
  // emits nothing more), which spares the step a context update.
  const firesAndCloses: Emits[] = closing.length ? [...firing, ...closing] : firing.filter((a) => a !== 'nextRevision');
  return setup({
    types: {
      context: {} as WindowContext,
      events: {} as WindowEvent,
      input: {} as WindowContext,
      emitted: {} as WindowEmitted,
    },
    guards: {
      // A window fired by a watermark at or past end + lateness closes in the same step.
      closesAtOnce: ({ context, event }) => event.type === 'FIRE' && event.watermark >= context.end + s.lateness,
    },
    actions: {
      accumulate: assign(({ context, event }) => (event.type === 'ADD' ? { acc: job.merge(context.acc, event.delta, context) } : {})),
      accumulateLate: assign(({ context, event }) => (event.type === 'LATE' ? { acc: job.merge(context.acc, event.delta, { key: context.key, start: context.start, end: context.end, recordId: event.recordId }) } : {})),
      emitFiring: emit(({ context, event }) => result(context, context.revision, s.lateness === 0, (event as { watermark: number }).watermark)),
      emitRevision: emit(({ context, event }) => result(context, context.revision, false, (event as { watermark: number }).watermark)),
      emitClosing: emit(({ context, event }) => result(context, updates ? context.revision : 0, true, (event as { watermark: number }).watermark)),
      nextRevision: assign({ revision: ({ context }) => context.revision + 1 }),
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
