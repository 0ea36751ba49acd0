// Answers "why has this window (not) fired?" — the silent stall users of Flink, Kafka Streams and
// RisingWave report most — from the watermark per input partition and a key's windows, in plain words.

import { lifecycleAt } from './lateness.js';
import { humanDuration } from './duration.js';
import type { Window } from './windows.js';
import type { WindowState } from './window-machine.js';

/** One input partition's watermark, as the watermark tracker reports it. */
export interface InputWatermark {
  partition: string;
  watermark: number;
  idle: boolean;
}

/** A live window of the key: its xstate lifecycle state and how many posts it holds. */
export interface LiveWindow {
  window: Window;
  state: WindowState;
  count: number;
}

/** The job settings the answer depends on. */
export interface ExplainSettings {
  maxOutOfOrderness: number;
  lateness: number;
  idleTimeout: number;
}

export interface InputExplanation extends InputWatermark {
  /** This partition's watermark is the one the job watermark waits for. */
  holdsBack: boolean;
}

export interface WindowExplanation {
  window: Window;
  /** `none`: no post of the key has fallen in this window (or its state is gone and it was never closed here). */
  state: WindowState | 'none';
  count: number;
  /** Watermark at which the window fires (its end). */
  firesAt: number;
  /** Watermark at which it closes (end + allowed lateness). */
  closesAt: number;
  /** Smallest event time of a post that moves the watermark to `firesAt`. */
  firingTs: number;
  reason: string;
}

export interface Explanation {
  key: string;
  watermark: number;
  /** Input partition the watermark waits for; null before the first post. */
  heldBackBy: string | null;
  inputs: InputExplanation[];
  windows: WindowExplanation[];
  reason: string;
}

/** An instant for people: ISO-8601, or ±∞. */
export const instant = (ms: number): string => (Number.isFinite(ms) ? new Date(ms).toISOString() : ms > 0 ? '+∞' : '−∞');

/** Marks the input partition that holds the watermark back: the lowest one that is not idle. */
export function explainInputs(inputs: readonly InputWatermark[]): { inputs: InputExplanation[]; heldBackBy: string | null } {
  let low: InputWatermark | undefined;
  for (const i of inputs) if (!i.idle && Number.isFinite(i.watermark) && (!low || i.watermark < low.watermark)) low = i;
  const heldBackBy = low?.partition ?? null;
  return { heldBackBy, inputs: inputs.map((i) => ({ ...i, holdsBack: i.partition === heldBackBy })) };
}

function watermarkStory(wm: number, end: number, inputs: readonly InputExplanation[], s: ExplainSettings): string {
  const needTs = `a post with ts ≥ ${instant(end + s.maxOutOfOrderness)} fires it`;
  if (wm === -Infinity) return `no post has been read yet, so the watermark is −∞; ${needTs}`;
  const short = `the watermark is ${instant(wm)}, ${humanDuration(end - wm)} short`;
  const multi = inputs.length > 1;
  if (multi && inputs.every((i) => i.idle)) {
    return `${short}, and every input partition is idle (no post for ${humanDuration(s.idleTimeout)}), so it stays there until posts arrive; ${needTs}`;
  }
  const holder = inputs.find((i) => i.holdsBack);
  const where = multi && holder ? ` on input partition "${holder.partition}", which holds it back,` : '';
  const idle = inputs.filter((i) => i.idle).map((i) => `"${i.partition}"`);
  const idleNote = idle.length ? `; idle input partition${idle.length > 1 ? 's' : ''} ${idle.join(', ')} ${idle.length > 1 ? 'are' : 'is'} ignored` : '';
  return `${short}: it is the largest event time read${where} minus the ${humanDuration(s.maxOutOfOrderness)} out-of-orderness bound, so ${needTs}${idleNote}`;
}

/** Why one window stands where it does under watermark `wm`. */
export function explainWindow(
  w: Window,
  live: LiveWindow | undefined,
  wm: number,
  inputs: readonly InputExplanation[],
  s: ExplainSettings,
): WindowExplanation {
  const closesAt = w.end + s.lateness;
  const base = { window: { start: w.start, end: w.end }, count: live?.count ?? 0, firesAt: w.end, closesAt, firingTs: w.end + s.maxOutOfOrderness };
  const until = `until the watermark reaches ${instant(closesAt)} (end + ${humanDuration(s.lateness)} allowed lateness)`;
  if (live?.state === 'open') {
    const posts = `${live.count} post${live.count === 1 ? '' : 's'}`;
    const reason =
      wm < w.end
        ? `open with ${posts}: it fires when the watermark reaches its end, ${instant(w.end)}; ${watermarkStory(wm, w.end, inputs, s)}`
        : `open with ${posts}, firing now: the watermark ${instant(wm)} has reached its end ${instant(w.end)} and is on its way to the window actor`;
    return { ...base, state: 'open', reason };
  }
  if (live) {
    const reason =
      wm < closesAt
        ? `pending: it fired when the watermark passed its end ${instant(w.end)} (the watermark is ${instant(wm)}); ${until} each late post updates it and emits a new revision (${humanDuration(closesAt - wm)} to go), then it closes`
        : `pending and closing now: the watermark ${instant(wm)} has reached ${instant(closesAt)} (end + allowed lateness)`;
    return { ...base, state: live.state, reason };
  }
  const stage = lifecycleAt(w, wm, s.lateness);
  if (stage === 'closed') {
    return {
      ...base,
      state: 'closed',
      reason: `closed: the watermark ${instant(wm)} is past ${instant(closesAt)} (end + allowed lateness); any result was emitted and the state dropped, and a post for it now is dropped as late`,
    };
  }
  if (stage === 'pending') {
    return { ...base, state: 'none', reason: `empty: no post of this key has fallen in it; the watermark ${instant(wm)} has passed its end, so a post for it ${until} opens it and fires at once (late but accepted)` };
  }
  return { ...base, state: 'none', reason: `empty: no post of this key has fallen in it yet; the first one opens it, and it fires when the watermark reaches ${instant(w.end)} (${watermarkStory(wm, w.end, inputs, s)})` };
}

const sameWindow = (a: Window, b: Window): boolean => a.start === b.start && a.end === b.end;

/**
 * Explains a key: every live window, or only `asked` (the windows the caller named) when given,
 * plus one summary sentence about the window the user is most likely waiting for.
 */
export function explainKey(
  key: string,
  wm: number,
  inputWatermarks: readonly InputWatermark[],
  live: readonly LiveWindow[],
  s: ExplainSettings,
  asked?: readonly Window[],
): Explanation {
  const { inputs, heldBackBy } = explainInputs(inputWatermarks);
  const targets = asked ?? live.map((l) => l.window);
  const windows = [...targets]
    .sort((a, b) => a.start - b.start || a.end - b.end)
    .map((w) => explainWindow(w, live.find((l) => sameWindow(l.window, w)), wm, inputs, s));
  const open = windows.filter((w) => w.state === 'open').length;
  const pending = windows.filter((w) => w.state === 'pending').length;
  let reason: string;
  if (windows.length === 0) {
    const wmText = wm === -Infinity ? 'no post has been read yet' : `the watermark is ${instant(wm)}`;
    reason = `no live window for key "${key}": no post with this key has been read, or all its windows have closed; ${wmText}`;
  } else {
    const focus = windows.find((w) => w.state === 'open') ?? windows.find((w) => w.state === 'pending') ?? windows[0]!;
    const span = `[${instant(focus.window.start)}, ${instant(focus.window.end)})`;
    reason = `key "${key}" (${open} open, ${pending} pending): window ${span} is ${focus.reason}`;
  }
  return { key, watermark: wm, heldBackBy, inputs, windows, reason };
}
