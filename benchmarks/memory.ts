// Heap cost of a live window: the job's own WindowOperator filled with N open windows in this
// process, heap measured after forced garbage collections. A window is one entry holding its
// machine state (state value, aggregate, revision, records), its key and bounds, in a map of its
// key's shard, with one event-time timer; a fired window waiting out the allowed lateness is
// measured too (`bytesPerPendingWindow`).

import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { WindowOperator, type DeltaItem } from '../src/runtime/window-operator.js';
import { compileJob } from '../src/runtime/compiled-job.js';
import { sentimentJob } from '../src/runtime/sentiment-job.js';

export interface MemoryOutcome {
  bytesPerOpenWindow: number;
  windows: number;
  heapGrowthBytes: number;
  /** the same windows after the watermark passed their end, within the allowed lateness (pending) */
  bytesPerPendingWindow: number;
}

let gcFn: (() => void) | undefined;
/** A handle on V8's gc(), enabled at run time when node was not started with --expose-gc. */
function forceGc(): void {
  if (!gcFn) {
    const g = (globalThis as { gc?: () => void }).gc;
    if (g) gcFn = g;
    else {
      setFlagsFromString('--expose-gc');
      gcFn = runInNewContext('gc') as () => void;
    }
  }
  gcFn();
  gcFn();
}

/** A sentiment accumulator of one post with this score. */
const unitAcc = (score: number) => ({ count: 1, positive: score > 0 ? 1 : 0, negative: score < 0 ? 1 : 0, neutral: score === 0 ? 1 : 0, scoreSum: score });

/** Opens `windows` windows (distinct keys, one tumbling day window) and measures heap growth. */
export function measureWindowMemory(windows: number): MemoryOutcome {
  const day = 86_400_000;
  const base = Math.floor(Date.UTC(2025, 0, 1) / day) * day;
  forceGc();
  const before = process.memoryUsage().heapUsed;
  const op = new WindowOperator({ job: 'sentiment', window: { kind: 'tumbling', size: day }, lateness: day, mode: 'updates', compiled: compileJob(sentimentJob({ keys: { hashtags: true, all: false, keywords: [] } }), { stream: 'POSTS', lateIdField: 'postId' }) });
  // Keys are built per window, as the job receives them: they are part of a window's cost.
  const chunk = 10_000;
  for (let i = 0; i < windows; i += chunk) {
    const ops: DeltaItem[] = [];
    for (let j = i; j < Math.min(windows, i + chunk); j++) ops.push({ k: `#w${j}`, s: base, a: unitAcc((j % 5) - 2), c: 1 });
    op.apply(ops);
  }
  forceGc();
  const after = process.memoryUsage().heapUsed;
  const live = op.size;
  if (live !== windows) throw new Error(`memory: expected ${windows} open windows, operator holds ${live}`);
  op.apply([base + day]);
  op.drainOutput();
  forceGc();
  const pending = process.memoryUsage().heapUsed;
  if (op.countsByState().pending !== windows) throw new Error(`memory: expected ${windows} pending windows`);
  return { bytesPerOpenWindow: (after - before) / live, windows: live, heapGrowthBytes: after - before, bytesPerPendingWindow: (pending - before) / live };
}
