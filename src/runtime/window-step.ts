// Steps a window by its machine's definition instead of a running actor: windows are virtual actors
// multiplexed on one scheduler. Two engines give the same steps: a table compiled once from the
// machine's own transitions (the default), and xstate v5's pure transition(snapshot, event, scope).

import { createActor } from 'xstate';
import type { ResultRecord } from './records.js';
import { TidemarkError } from '../errors.js';
import type { CompiledJob } from './compiled-job.js';
import {
  createWindowMachine,
  windowLogic,
  type WindowAssign,
  type WindowContext,
  type WindowEmit,
  type WindowEvent,
  type WindowGuard,
  type WindowLogic,
  type WindowMachine,
  type WindowSettings,
  type WindowState,
} from './window-machine.js';

/** A window's machine state: its state value and the context the machine keeps. */
export interface MachineState {
  value: WindowState;
  context: WindowContext;
}

type Snapshot = ReturnType<WindowMachine['resolveState']>;

/** Steps a window's machine state with an event; what the machine emits goes to the stepper's sink. */
export interface Stepper {
  step(value: WindowState, context: WindowContext, event: WindowEvent): MachineState;
}

/**
 * How windows are stepped. `compiled` (the default): the machine's transitions, read once from its
 * state nodes, run as a table over the machine's own guard and action functions. `xstate`: xstate's
 * `machine.transition` on each window's snapshot. Both give the same states, contexts and records
 * (test/runtime/window-step.test.ts checks it on random windows and events); `xstate` costs ~6 µs
 * and ~16 KB of garbage a step, the compiled table well under 1 µs and one context object.
 */
export type StepEngine = 'compiled' | 'xstate';

/** The engine `TIDEMARK_WINDOW_STEP` names (`xstate` or `compiled`, the default). */
export function stepEngineFromEnv(env: NodeJS.ProcessEnv = process.env): StepEngine {
  const v = env.TIDEMARK_WINDOW_STEP;
  if (v === undefined || v === '' || v === 'compiled') return 'compiled';
  if (v === 'xstate') return 'xstate';
  throw new TidemarkError('BAD_CONFIG', `TIDEMARK_WINDOW_STEP must be "compiled" or "xstate", not "${v}" (unset it for the default, compiled)`);
}

/** The stepper of a job's window machine. */
export function windowStepper(job: Pick<CompiledJob, 'merge' | 'result'>, settings: WindowSettings, emit: (r: ResultRecord) => void, engine: StepEngine = stepEngineFromEnv()): Stepper {
  const logic = windowLogic(job, settings);
  const machine = createWindowMachine(job, settings, logic);
  return engine === 'xstate' ? new WindowStepper(machine, emit) : new CompiledStepper(machine, logic, emit);
}

type Action = { assign: (c: WindowContext, e: WindowEvent) => Partial<WindowContext> } | { emit: (c: WindowContext, e: WindowEvent) => { record: ResultRecord } };

interface CompiledTransition {
  guard: ((c: WindowContext, e: WindowEvent) => boolean) | undefined;
  /** the target state value (undefined: a targetless transition, the state stays) */
  target: WindowState | undefined;
  actions: Action[];
}

/** The name of a guard or action as the machine's config refers to it (a string or `{ type }`). */
function refName(ref: unknown, what: string): string {
  if (typeof ref === 'string') return ref;
  if (ref && typeof ref === 'object' && typeof (ref as { type?: unknown }).type === 'string' && (ref as { params?: unknown }).params === undefined) return (ref as { type: string }).type;
  throw new Error(`window machine: the compiled stepper takes ${what}s named without parameters, not ${String(ref)}`);
}

/**
 * The window machine's transitions as a table, read from its state nodes (source, event type,
 * guard, target, actions in order), run over the functions the machine's guards and actions are
 * made of. It follows xstate v5's semantics for the machine's shape: the first transition whose
 * guard holds (on the context before the step) is taken; its actions run in order, each `assign`
 * making a new context from the one before (`Object.assign({}, context, partial)`) and each `emit`
 * seeing the context as it stands; no transition: the state and context stay. A machine with
 * anything else (entry or exit actions, eventless or delayed transitions, nested states,
 * parameterised references) is refused here rather than stepped differently.
 */
export class CompiledStepper implements Stepper {
  private readonly table = new Map<WindowState, Map<string, CompiledTransition[]>>();

  constructor(machine: WindowMachine, logic: WindowLogic, private readonly emit: (r: ResultRecord) => void) {
    const refuse = (why: string): never => {
      throw new Error(`window machine: the compiled stepper cannot take ${why}`);
    };
    const root = machine.root;
    if (root.entry.length || root.exit.length || root.transitions.size || root.always || root.after.length) refuse('anything on the root node');
    for (const [value, node] of Object.entries(root.states)) {
      if (node.entry.length || node.exit.length || node.always || node.after.length || node.invoke.length) refuse(`entry/exit actions, eventless, delayed or invoked parts (state ${value})`);
      if (node.type !== 'atomic' && node.type !== 'final') refuse(`a ${node.type} state (${value})`);
      const byEvent = new Map<string, CompiledTransition[]>();
      for (const [eventType, defs] of node.transitions) {
        byEvent.set(
          eventType,
          defs.map((t) => {
            if (t.reenter) refuse(`a reentering transition (${value} on ${eventType})`);
            if (t.target && t.target.length !== 1) refuse(`a transition to ${t.target.length} states (${value} on ${eventType})`);
            const guardName = t.guard === undefined ? undefined : refName(t.guard, 'guard');
            if (guardName !== undefined && !Object.hasOwn(logic.guards, guardName)) refuse(`the guard ${guardName}`);
            const guard = guardName === undefined ? undefined : logic.guards[guardName as WindowGuard];
            const actions = t.actions.map((ref): Action => {
              const name = refName(ref, 'action');
              if (Object.hasOwn(logic.assigns, name)) return { assign: logic.assigns[name as WindowAssign] };
              if (Object.hasOwn(logic.emits, name)) return { emit: logic.emits[name as WindowEmit] };
              return refuse(`the action ${name}`);
            });
            return { guard, target: t.target?.[0]?.key as WindowState | undefined, actions };
          }),
        );
      }
      this.table.set(value as WindowState, byEvent);
    }
  }

  step(value: WindowState, context: WindowContext, event: WindowEvent): MachineState {
    const candidates = this.table.get(value)?.get(event.type);
    if (candidates) {
      for (const t of candidates) {
        if (t.guard && !t.guard(context, event)) continue;
        let c = context;
        for (const a of t.actions) {
          if ('assign' in a) c = Object.assign({}, c, a.assign(c, event));
          else this.emit(a.emit(c, event).record);
        }
        return { value: t.target ?? value, context: c };
      }
    }
    return { value, context };
  }
}

/** Steps windows of one machine with xstate's own transition; emitted results go to `emit`. */
export class WindowStepper implements Stepper {
  private readonly scope: Parameters<WindowMachine['transition']>[2];
  /**
   * The machine's resolved snapshot of each state value (its state nodes, status, tags), made once:
   * a window's snapshot is that one with the window's context. `resolveState` would find the
   * state nodes again for every step (~1.5 µs of a ~5 µs step); what it returns for a state value
   * does not depend on the context.
   */
  private readonly resolved = new Map<WindowState, Snapshot>();

  constructor(
    private readonly machine: WindowMachine,
    emit: (r: ResultRecord) => void,
  ) {
    // One inert actor scope for every step: `xstate.transition` would build an actor (and a
    // system) per call, ~30 µs; the machine's own transition with a reused scope costs ~6 µs.
    const self = createActor(machine, { input: { key: '', start: 0, end: 0, acc: null, revision: 0 } });
    this.scope = {
      self,
      defer: () => undefined,
      id: '',
      logger: () => undefined,
      sessionId: '',
      stopChild: () => undefined,
      system: self.system,
      emit: () => undefined,
      actionExecutor: (action: { type: string; params?: unknown }) => {
        if (action.type === 'xstate.emit') emit((action.params as { event: { record: ResultRecord } }).event.record);
      },
    } as unknown as Parameters<WindowMachine['transition']>[2];
  }

  /** The machine's snapshot of a window in state `value` with `context`. */
  snapshot(value: WindowState, context: WindowContext): Snapshot {
    let resolved = this.resolved.get(value);
    if (!resolved) {
      resolved = this.machine.resolveState({ value, context });
      // Shared by every window's snapshot of this state value: nothing may change them.
      Object.freeze(resolved.children);
      Object.freeze(resolved.historyValue);
      this.resolved.set(value, resolved);
    }
    // xstate never changes a snapshot: it makes new ones, so the resolved one's parts can be shared.
    return { ...resolved, context };
  }

  /**
   * The machine state after `event` (the machine's own snapshot: read its `value` and `context`).
   * `context` is only read: a transition that changes it makes a new one.
   */
  step(value: WindowState, context: WindowContext, event: WindowEvent): MachineState {
    return this.machine.transition(this.snapshot(value, context), event, this.scope) as MachineState;
  }
}
