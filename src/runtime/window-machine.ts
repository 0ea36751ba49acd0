// Every window is its own xstate v5 machine: open → pending → closed (DESIGN.md §3).
// The machine owns the lifecycle and the revisions; the arithmetic is the job's aggregate. Windows
// are not running actors: the operator steps each one with the machine's pure transition.

import { setup, assign, enqueueActions } from 'xstate';
import { resultRecord, type ResultRecord } from './records.js';
import type { CompiledJob } from './compiled-job.js';

export type EmitMode = 'updates' | 'final';

export interface WindowInput {
  job: string;
  key: string;
  start: number;
  end: number;
  lateness: number;
  mode: EmitMode;
  acc: unknown;
  revision?: number;
}

export interface WindowContext {
  job: string;
  key: string;
  start: number;
  end: number;
  lateness: number;
  mode: EmitMode;
  /** The job's accumulator of the window's records. */
  acc: unknown;
  /** Revision the next emitted record gets. */
  revision: number;
}

export type WindowEvent =
  | { type: 'ADD'; delta: unknown }
  | { type: 'LATE'; delta: unknown; watermark: number; recordId: string }
  | { type: 'FIRE'; watermark: number }
  | { type: 'CLOSE'; watermark: number };

export interface WindowEmitted {
  type: 'result';
  record: ResultRecord;
}

/** The window lifecycle machine of a job (its aggregate does the arithmetic). */
export function createWindowMachine(job: Pick<CompiledJob, 'merge' | 'result'>) {
  const record = (c: WindowContext, revision: number, final: boolean, watermark: number): WindowEmitted => ({
    type: 'result',
    record: resultRecord(c.job, c.key, { start: c.start, end: c.end }, job.result(c.acc, c), revision, final, watermark),
  });
  return setup({
  types: {
    context: {} as WindowContext,
    events: {} as WindowEvent,
    input: {} as WindowInput,
    emitted: {} as WindowEmitted,
  },
  guards: {
    // A window fired by a watermark at or past end + lateness closes in the same step.
    closesAtOnce: ({ context, event }) => event.type === 'FIRE' && event.watermark >= context.end + context.lateness,
  },
  actions: {
    accumulate: assign(({ context, event }) => (event.type === 'ADD' ? { acc: job.merge(context.acc, event.delta, context) } : {})),
    accumulateLate: assign(({ context, event }) => (event.type === 'LATE' ? { acc: job.merge(context.acc, event.delta, { ...context, recordId: event.recordId }) } : {})),
    // Firing emits revision 0 in updates mode; with no lateness it is also the final record.
    emitFiring: enqueueActions(({ context, event, enqueue }) => {
      if (context.mode !== 'updates' || event.type !== 'FIRE') return;
      enqueue.emit(record(context, context.revision, context.lateness === 0, event.watermark));
      enqueue.assign({ revision: context.revision + 1 });
    }),
    emitRevision: enqueueActions(({ context, event, enqueue }) => {
      if (context.mode !== 'updates' || event.type !== 'LATE') return;
      enqueue.emit(record(context, context.revision, false, event.watermark));
      enqueue.assign({ revision: context.revision + 1 });
    }),
    // Closing emits the last record: final:true in updates mode with lateness, the only one in final mode.
    // It follows CLOSE, or FIRE itself when that watermark is already past the allowed lateness.
    emitClosing: enqueueActions(({ context, event, enqueue }) => {
      if (event.type !== 'CLOSE' && event.type !== 'FIRE') return;
      if (context.mode === 'final') enqueue.emit(record(context, 0, true, event.watermark));
      else if (context.lateness > 0) enqueue.emit(record(context, context.revision, true, event.watermark));
    }),
  },
}).createMachine({
  id: 'window',
  initial: 'open',
  context: ({ input }) => ({
    job: input.job,
    key: input.key,
    start: input.start,
    end: input.end,
    lateness: input.lateness,
    mode: input.mode,
    acc: input.acc,
    revision: input.revision ?? 0,
  }),
  states: {
    open: {
      on: {
        ADD: { actions: 'accumulate' },
        // A watermark already at or past end + lateness fires and closes in one transition (no
        // pending step in between): revision 0 (updates mode), then the closing record.
        FIRE: [
          { guard: 'closesAtOnce', target: 'closed', actions: ['emitFiring', 'emitClosing'] },
          { target: 'pending', actions: 'emitFiring' },
        ],
      },
    },
    pending: {
      on: {
        LATE: { actions: ['accumulateLate', 'emitRevision'] },
        CLOSE: { target: 'closed', actions: 'emitClosing' },
      },
    },
    closed: { type: 'final' },
  },
});
}

export type WindowMachine = ReturnType<typeof createWindowMachine>;

export type WindowState = 'open' | 'pending' | 'closed';
