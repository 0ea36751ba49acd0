// Every window is its own xstate v5 machine: open → pending → closed (DESIGN.md §3).
// The machine owns the lifecycle and the revisions; the arithmetic lives in records.ts.

import { setup, assign, enqueueActions } from 'xstate';
import { addScore, emptyAggregate, mergeAggregates, resultRecord, type Aggregate, type ResultRecord } from './records.js';

export type EmitMode = 'updates' | 'final';

export interface WindowInput {
  job: string;
  key: string;
  start: number;
  end: number;
  lateness: number;
  mode: EmitMode;
  agg?: Aggregate;
}

export interface WindowContext {
  job: string;
  key: string;
  start: number;
  end: number;
  lateness: number;
  mode: EmitMode;
  agg: Aggregate;
  /** Revision the next emitted record gets. */
  revision: number;
}

export type WindowEvent =
  | { type: 'ADD'; delta: Aggregate }
  | { type: 'LATE'; score: number; watermark: number }
  | { type: 'FIRE'; watermark: number }
  | { type: 'CLOSE'; watermark: number };

export interface WindowEmitted {
  type: 'result';
  record: ResultRecord;
}

const record = (c: WindowContext, revision: number, final: boolean, watermark: number): WindowEmitted => ({
  type: 'result',
  record: resultRecord(c.job, c.key, { start: c.start, end: c.end }, c.agg, revision, final, watermark),
});

/** The window lifecycle machine. */
export const windowMachine = setup({
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
    accumulate: assign(({ context, event }) => (event.type === 'ADD' ? { agg: mergeAggregates(context.agg, event.delta) } : {})),
    accumulateLate: assign(({ context, event }) => (event.type === 'LATE' ? { agg: addScore({ ...context.agg }, event.score) } : {})),
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
    agg: input.agg ?? emptyAggregate(),
    revision: 0,
  }),
  states: {
    open: {
      on: {
        ADD: { actions: 'accumulate' },
        FIRE: { target: 'pending', actions: 'emitFiring' },
      },
    },
    pending: {
      always: { guard: 'closesAtOnce', target: 'closed', actions: 'emitClosing' },
      on: {
        LATE: { actions: ['accumulateLate', 'emitRevision'] },
        CLOSE: { target: 'closed', actions: 'emitClosing' },
      },
    },
    closed: { type: 'final' },
  },
});

export type WindowState = 'open' | 'pending' | 'closed';
