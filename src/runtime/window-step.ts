// Steps a window with its machine's pure transition (xstate v5 logic: transition(snapshot, event,
// scope)) instead of a running actor: windows are virtual actors multiplexed on one scheduler.

import { createActor } from 'xstate';
import type { ResultRecord } from './records.js';
import type { WindowContext, WindowEvent, WindowMachine, WindowState } from './window-machine.js';

/** A window's machine state: its state value and the context the machine keeps. */
export interface MachineState {
  value: WindowState;
  context: WindowContext;
}

/** Steps windows of one machine; emitted results go to `emit`. */
export class WindowStepper {
  private readonly scope: Parameters<WindowMachine['transition']>[2];

  constructor(
    private readonly machine: WindowMachine,
    emit: (r: ResultRecord) => void,
  ) {
    // One inert actor scope for every step: `xstate.transition` would build an actor (and a
    // system) per call, ~30 µs; the machine's own transition with a reused scope costs ~6 µs.
    const self = createActor(machine, { input: { job: '', key: '', start: 0, end: 0, lateness: 0, mode: 'updates', acc: null } });
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

  /**
   * The machine's resolved snapshot of each state value, without context. A snapshot depends on
   * the value alone (its state nodes, tags, status) apart from the context, and xstate never
   * mutates one (every transition builds new snapshots): a step reuses it with the window's context
   * instead of resolving the state again (which costs about a sixth of a step and its garbage).
   */
  private readonly resolved = new Map<WindowState, ReturnType<WindowMachine['resolveState']>>();

  /** The machine state after `event`. */
  step(state: MachineState, event: WindowEvent): MachineState {
    let base = this.resolved.get(state.value);
    if (!base) {
      base = this.machine.resolveState({ value: state.value, context: state.context });
      Object.freeze(base.children);
      Object.freeze(base.historyValue);
      this.resolved.set(state.value, base);
    }
    const snapshot = { ...base, context: state.context };
    const next = this.machine.transition(snapshot, event, this.scope);
    return { value: next.value as WindowState, context: next.context };
  }
}
