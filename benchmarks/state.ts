// Checkpoint and restore cost against state size, in process: the job's own WindowOperator and
// CheckpointStore on a real LevelDB directory, no NATS. For each size N:
//   - a full checkpoint of N live windows (time of the LevelDB batch, bytes);
//   - 1% of the windows receive posts, then an incremental checkpoint (time, bytes);
//   - restore: reading the chain back from LevelDB, and rebuilding the operator (dormant windows);
//   - the watermark passes every window: time to the first slice of results and to the last.
// The N windows are built the way a restarted job holds them (restored, dormant until touched),
// so 1M windows fit in the heap; `memory.ts` measures windows with running actors.

import { mkdirSync, rmSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { join } from 'node:path';
import { CheckpointStore, type CheckpointMeta } from '../src/io/checkpoint-store.js';
import { WindowOperator, type Op, type PersistedWindow } from '../src/runtime/window-operator.js';
import { compileJob } from '../src/runtime/compiled-job.js';
import { sentimentJob } from '../src/runtime/sentiment-job.js';
import { forEachSlice, yieldToLoop } from '../src/actors/slices.js';
import { SNAPSHOT_SLICE } from '../src/actors/partition-actor.js';

export interface StateRow {
  windows: number;
  fullCheckpointMs: number;
  fullCheckpointBytes: number;
  /** windows changed before the incremental checkpoint (1%) */
  changedWindows: number;
  deltaCheckpointMs: number;
  deltaCheckpointBytes: number;
  /** delta bytes / full bytes */
  deltaToFullBytes: number;
  /** LevelDB chain read (full + delta) → windows per partition */
  storeRestoreMs: number;
  /** operator rebuilt from them (windows dormant, timers set) */
  operatorRestoreMs: number;
  restoreMs: number;
  /** after restore: the watermark passes every window; time to the first 500 results */
  firstResultsMs: number;
  /** … and to all N results (measured up to FIRE_ALL_UP_TO windows; null above) */
  allResultsMs: number | null;
  /** results produced (equals windows when every window was fired) */
  results: number;
  /**
   * Worst event-loop delay (ms, `monitorEventLoopDelay`) while the full checkpoint, the restore and
   * the watermark step ran the way the actors run them (slices with yields between them).
   */
  maxEventLoopDelayMs: number;
}

const JOB = 'state';
const SIZE = 60_000;
const BASE = 1_764_000_000_000;
const now = (): number => performance.now();
/** Firing steps each window's machine (a few µs each); beyond this size only the first slice is timed. */
export const FIRE_ALL_UP_TO = 1_000_000;

function meta(id: number, parent: number, full: boolean, depth: number, windows: number): Omit<CheckpointMeta, 'entries' | 'hash' | 'bytes'> {
  return {
    id,
    time: Date.now(),
    seq: id * 1000,
    watermark: { wm: BASE, maxTs: [] },
    sinks: {},
    parent,
    full,
    depth,
    windows,
    counters: {},
    fingerprint: { job: JOB },
  };
}

const COMPILED = compileJob(sentimentJob({ keys: { hashtags: true, all: false, keywords: [] } }), { stream: 'POSTS', lateIdField: 'postId' });
const op = (): WindowOperator => new WindowOperator({ job: JOB, window: { kind: 'tumbling', size: SIZE }, lateness: 0, mode: 'updates', compiled: COMPILED });
const unitAcc = (score: number) => ({ count: 1, positive: score > 0 ? 1 : 0, negative: score < 0 ? 1 : 0, neutral: score === 0 ? 1 : 0, scoreSum: score });

/** Measures one state size in `dir` (created and removed). */
export async function measureState(windows: number, dir: string): Promise<StateRow> {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const store = await CheckpointStore.open(join(dir, 'cp'));
  try {
    // N open windows of one tumbling minute, one key each, as a restored operator holds them.
    const persisted: PersistedWindow[] = [];
    for (let i = 0; i < windows; i++) {
      const score = (i % 7) - 3;
      persisted.push({
        key: `#tag${i}`,
        start: BASE,
        end: BASE + SIZE,
        state: 'open',
        acc: unitAcc(score),
        revision: 0,
        n: 1,
      });
    }
    let live: WindowOperator | undefined = op();
    live.restore(persisted, BASE - 1);
    // Only one copy of the state is alive at a time, as in a job (the loop delay includes GC pauses).
    persisted.length = 0;

    // The loop's delay is watched through the phases the actors slice: the partition's snapshot in
    // barrier parts, the store's sliced batch, the sliced restore, the watermark step's result slices.
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    let t = now();
    const snapshot: PersistedWindow[] = [];
    await forEachSlice(live.snapshot(true).upserts, SNAPSHOT_SLICE, (slice) => void snapshot.push(...slice));
    const full = await store.write({ meta: meta(1, 0, true, 1, windows), upserts: [[0, snapshot]], deletes: [] }, yieldToLoop);
    const fullCheckpointMs = now() - t;
    snapshot.length = 0;

    // 1% of the windows get a post (spread over the key space), then an incremental checkpoint.
    const changed = Math.max(1, Math.round(windows / 100));
    const stride = Math.floor(windows / changed);
    const posts: Op[] = [];
    for (let j = 0; j < changed; j++) posts.push({ k: `#tag${j * stride}`, s: BASE, a: unitAcc(2), c: 1 });
    live.apply(posts);
    t = now();
    const snap = live.snapshot(false);
    const d = { upserts: [...snap.upserts], deletes: snap.deletes };
    const delta = await store.write({ meta: meta(2, 1, false, 2, windows), upserts: [[0, d.upserts]], deletes: d.deletes.map((id) => [0, id]) }, yieldToLoop);
    const deltaCheckpointMs = now() - t;
    if (d.upserts.length !== changed) throw new Error(`the delta holds ${d.upserts.length} windows, ${changed} changed`);

    // Restore: what a restarted job does before reading input.
    t = now();
    live = undefined;
    const restored = await store.restore();
    const storeRestoreMs = now() - t;
    if (!restored || restored.meta.id !== 2) throw new Error('the incremental checkpoint was not restored');
    t = now();
    const back = op();
    await forEachSlice(restored.windows.get(0) ?? [], SNAPSHOT_SLICE, (slice) => back.restore(slice, restored.meta.watermark.wm));
    restored.windows.clear();
    const operatorRestoreMs = now() - t;
    if (back.size !== windows) throw new Error(`restored ${back.size} windows of ${windows}`);

    // The watermark passes the minute: results come out in slices of 500, as the partition actor hands them on.
    const ops: Op[] = [BASE + SIZE];
    t = now();
    let firstResultsMs = -1;
    let results = 0;
    let all = true;
    let i = 0;
    do {
      i = back.applySome(ops, i, 500);
      results += back.drainOutput().results.length;
      if (firstResultsMs < 0) firstResultsMs = now() - t;
      await yieldToLoop();
      if (i < ops.length && windows > FIRE_ALL_UP_TO) all = false;
    } while (all && i < ops.length);
    const allResultsMs = all ? now() - t : null;
    delay.disable();
    return {
      windows,
      fullCheckpointMs,
      fullCheckpointBytes: full.bytes,
      changedWindows: changed,
      deltaCheckpointMs,
      deltaCheckpointBytes: delta.bytes,
      deltaToFullBytes: delta.bytes / full.bytes,
      storeRestoreMs,
      operatorRestoreMs,
      restoreMs: storeRestoreMs + operatorRestoreMs,
      firstResultsMs,
      allResultsMs,
      results,
      maxEventLoopDelayMs: delay.max / 1e6,
    };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Every size in turn (smallest first). */
export async function measureStateScaling(sizes: readonly number[], dir: string, onProgress?: (f: number, label: string) => void): Promise<StateRow[]> {
  const rows: StateRow[] = [];
  const total = sizes.reduce((a, b) => a + b, 0);
  let done = 0;
  for (const n of sizes) {
    onProgress?.(done / total, `${n.toLocaleString('en-US')} windows`);
    rows.push(await measureState(n, join(dir, `state-${n}`)));
    done += n;
  }
  onProgress?.(1, 'done');
  return rows;
}
