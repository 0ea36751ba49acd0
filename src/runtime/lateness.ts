// The lateness rule of DESIGN.md §3: where a window stands for a given watermark.
// One function, so the operator, the query endpoint and `explain` never disagree.

import type { Window } from './windows.js';

export type Lifecycle = 'open' | 'pending' | 'closed';

/** Lifecycle of window `w` under watermark `wm` with allowed lateness `lateness`. */
export function lifecycleAt(w: Window, wm: number, lateness: number): Lifecycle {
  if (wm < w.end) return 'open';
  if (wm < w.end + lateness) return 'pending';
  return 'closed';
}
