// Checkpoint and restore cost against state size, in process: the job's own WindowOperator,
// partition and sink actor steps (the same functions the actors run: sendSnapshot, the sealed
// msgpack channel, CheckpointAssembly, the mirror's read-back, CheckpointStore.restore, restoreGroups, applyBatch) on
// a real LevelDB directory, without NATS in between. For each size N:
//   - a full checkpoint of N live windows (time of the LevelDB batch, bytes);
//   - 1% of the windows receive posts, then an incremental checkpoint (time, bytes);
//   - restore: reading the chain back from LevelDB, and rebuilding the operator;
//   - the watermark passes every window: time to the first slice of results and to the last.
// Meanwhile posts keep flowing: every 2 ms a batch of deltas goes through the channel into a
// second operator (another partition's work), so the young generation fills as in a running job.
// The worst event-loop delay is watched over all of it, and per phase.

import { mkdirSync, rmSync } from 'node:fs';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { join } from 'node:path';
import { CheckpointStore, type CheckpointMeta } from '../src/io/checkpoint-store.js';
import { WindowOperator, type DeltaItem, type Op } from '../src/runtime/window-operator.js';
import { compileJob } from '../src/runtime/compiled-job.js';
import { sentimentJob } from '../src/runtime/sentiment-job.js';
import { DEFAULT_KEY_GROUPS } from '../src/runtime/key-groups.js';
import { yieldToLoop } from '../src/actors/slices.js';
import { applyBatch, restoreGroups, sendSnapshot } from '../src/actors/partition-actor.js';
import { CheckpointAssembly } from '../src/actors/sink-actor.js';
import { mirrorObjectParts } from '../src/io/group-store.js';
import { tuneHeapForWindows } from '../src/actors/heap.js';
import { checkOutMsg, checkPartitionMsg } from '../src/actors/message-checks.js';
import type { OutMsg } from '../src/actors/messages.js';
import { Opener, Rejections, RunKey, Sealer, SENDER, receive, type ChannelContext } from '../src/io/channel.js';
import { subjectsFor } from '../src/io/subjects.js';
import { watchStalls, type StallFigures } from './stalls.js';
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
  /** … and to all N results, received by the sink */
  allResultsMs: number;
  /** results produced (equals windows when every window was fired) */
  results: number;
  /**
   * Worst event-loop delay (ms, `monitorEventLoopDelay`) while the full checkpoint, the restore and
   * the watermark step ran the way the actors run them, posts flowing meanwhile.
   */
  maxEventLoopDelayMs: number;
  /** the same, per phase: full checkpoint, store restore, operator restore, firing every window */
  delayByPhaseMs: { checkpoint: number; storeRestore: number; operatorRestore: number; firing: number };
  /**
   * The longest the main thread itself ran within one stall (see stalls.ts): on a shared machine a
   * stall can be other processes holding the cores; this is the part the process accounts for.
   */
  worstStallOnCpuMs: number;
  stallOnCpuByPhaseMs: { checkpoint: number; storeRestore: number; operatorRestore: number; firing: number };
  /** per phase: the worst stall and how its time split (main thread on a core, waiting for one) */
  stallsByPhase: Record<'checkpoint' | 'storeRestore' | 'operatorRestore' | 'firing', StallFigures>;
  /** posts (deltas) that flowed into another operator through the channel meanwhile */
  flowingPosts: number;
}

const JOB = 'state';
const SIZE = 60_000;
const BASE = 1_764_000_000_000;
const now = (): number => performance.now();
/** Deltas per batch of the posts that keep flowing, one batch every FLOW_EVERY_MS. */
const FLOW_BATCH = 100;
const FLOW_EVERY_MS = 2;

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

/**
 * The internal channels as the actors use them: every message sealed (msgpack + HMAC) by its
 * sender and opened, checked and decoded by its receiver in a later turn of the event loop.
 */
class Channels {
  private readonly ctx: ChannelContext = { key: RunKey.create(), rejects: new Rejections(() => undefined), fault: (why) => void (this.failure ??= why) };
  private readonly subj = subjectsFor(JOB);
  private readonly toSink = new Sealer(this.ctx.key, 0);
  private readonly sinkInbox = new Opener(this.ctx.key, this.subj.out, (from) => from === 0);
  private readonly toFlow = new Sealer(this.ctx.key, SENDER.source);
  private readonly flowInbox = new Opener(this.ctx.key, this.subj.partition(1), (from) => from === SENDER.source);
  private pending = 0;
  failure?: string;

  /** partition 0 → sink: `onMsg` gets the message once the sink has opened it */
  out(m: OutMsg, onMsg: (m: OutMsg) => void): void {
    const bytes = this.toSink.seal(this.subj.out, m);
    this.pending++;
    setImmediate(() => {
      this.pending--;
      const r = receive(this.ctx, this.sinkInbox, bytes, checkOutMsg);
      if (r) onMsg(r.msg);
      else this.failure ??= 'a message to the sink was refused';
    });
  }

  /** source → partition 1: a batch of deltas, applied by `into` once opened */
  flow(ops: Op[], n: number, into: WindowOperator): void {
    const bytes = this.toFlow.seal(this.subj.partition(1), { t: 'batch', n, ops });
    setImmediate(() => {
      const r = receive(this.ctx, this.flowInbox, bytes, checkPartitionMsg);
      if (r?.msg.t !== 'batch') return void (this.failure ??= 'a batch was refused');
      into.apply(r.msg.ops);
      into.drainOutput();
    });
  }

  /** Resolves once every message sent to the sink has been received. */
  async delivered(): Promise<void> {
    while (this.pending > 0) await yieldToLoop();
    if (this.failure) throw new Error(`state benchmark: ${this.failure}`);
  }
}

/** Posts that keep flowing into another partition's operator, one batch every FLOW_EVERY_MS. */
function startFlow(ch: Channels): { stop: () => number } {
  const side = op();
  let n = 0;
  let posts = 0;
  const timer = setInterval(() => {
    const ops: DeltaItem[] = [];
    for (let j = 0; j < FLOW_BATCH; j++, posts++) ops.push({ k: `#flow${posts % 1000}`, s: BASE + SIZE * (1 + Math.floor(posts / 100_000)), a: unitAcc((posts % 5) - 2), c: 1 });
    ch.flow(ops, ++n, side);
  }, FLOW_EVERY_MS);
  return {
    stop: () => {
      clearInterval(timer);
      return posts;
    },
  };
}

/** A checkpoint as the actors take it: the partition's barrier slices through the channel, the sink's entries, one LevelDB batch. */
async function checkpoint(live: WindowOperator, ch: Channels, store: CheckpointStore, m: ReturnType<typeof meta>): Promise<CheckpointMeta> {
  // As the sink actor: each slice goes into the store's batch as it arrives.
  const entries = new CheckpointAssembly(store.begin(m.id), DEFAULT_KEY_GROUPS);
  await sendSnapshot(live, 0, { t: 'barrier', cp: m.id, full: m.full }, (msg) =>
    ch.out(msg, (got) => {
      if (got.t === 'barrier' || got.t === 'barrier-part') entries.add(got);
    }),
  );
  await ch.delivered();
  const written = await entries.finish(m);
  // As a group's sink (the default with --nats) then mirrors it: the checkpoint read back from
  // LevelDB chunk by chunk and encoded as the mirror object's records, a turn of the loop between
  // records, as the object store takes them (the upload to NATS itself is not part of this).
  for await (const part of mirrorObjectParts(written, store.chunksOf(written))) {
    if (part.length === 0) throw new Error('an empty mirror record');
    await yieldToLoop();
  }
  return written;
}

/** Measures one state size in `dir` (created and removed). */
export async function measureState(windows: number, dir: string): Promise<StateRow> {
  // As every job does at start.
  tuneHeapForWindows();
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const store = await CheckpointStore.open(join(dir, 'cp'));
  const ch = new Channels();
  try {
    // N open windows of one tumbling minute, one key each.
    let live: WindowOperator | undefined = op();
    for (let i = 0; i < windows; i += 10_000) {
      const ops: DeltaItem[] = [];
      for (let j = i; j < Math.min(windows, i + 10_000); j++) ops.push({ k: `#tag${j}`, s: BASE, a: unitAcc((j % 7) - 3), c: 1 });
      live.apply(ops);
    }
    live.snapshot(true);

    // The loop's delay is watched through every phase, overall and per phase.
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    const phases = { checkpoint: 0, storeRestore: 0, operatorRestore: 0, firing: 0 };
    const cpu = { checkpoint: 0, storeRestore: 0, operatorRestore: 0, firing: 0 };
    const worst = { checkpoint: {} as StallFigures, storeRestore: {} as StallFigures, operatorRestore: {} as StallFigures, firing: {} as StallFigures };
    let phase = monitorEventLoopDelay({ resolution: 5 });
    phase.enable();
    let stalls = watchStalls();
    // The monitor records a stall when its next timer runs late: let it run before reading it.
    const endPhase = async (name: keyof typeof phases): Promise<void> => {
      await new Promise((r) => setTimeout(r, 10));
      phase.disable();
      phases[name] = Math.round((phase.max / 1e6) * 10) / 10;
      worst[name] = stalls.stop();
      cpu[name] = worst[name].worstOnCpuMs;
      phase = monitorEventLoopDelay({ resolution: 5 });
      phase.enable();
      stalls = watchStalls();
    };
    const flow = startFlow(ch);
    let t = now();
    const full = await checkpoint(live, ch, store, meta(1, 0, true, 1, windows));
    const fullCheckpointMs = now() - t;
    if (full.entries !== windows) throw new Error(`the full checkpoint holds ${full.entries} entries, ${windows} windows are live`);
    await endPhase('checkpoint');

    // 1% of the windows get a post (spread over the key space), then an incremental checkpoint.
    const changed = Math.max(1, Math.round(windows / 100));
    const stride = Math.floor(windows / changed);
    const posts: Op[] = [];
    for (let j = 0; j < changed; j++) posts.push({ k: `#tag${j * stride}`, s: BASE, a: unitAcc(2), c: 1 });
    live.apply(posts);
    t = now();
    const delta = await checkpoint(live, ch, store, meta(2, 1, false, 2, windows));
    const deltaCheckpointMs = now() - t;
    if (delta.entries !== changed) throw new Error(`the delta holds ${delta.entries} windows, ${changed} changed`);

    // Restore: what a restarted job does before reading input.
    t = now();
    live = undefined;
    let restored = await store.restore(undefined, yieldToLoop);
    const storeRestoreMs = now() - t;
    if (!restored || restored.meta.id !== 2) throw new Error('the incremental checkpoint was not restored');
    await endPhase('storeRestore');
    t = now();
    const back = op();
    await restoreGroups(back, restored.windows, { from: 0, to: DEFAULT_KEY_GROUPS }, restored.meta.watermark.wm);
    restored = undefined;
    const operatorRestoreMs = now() - t;
    if (back.size !== windows) throw new Error(`restored ${back.size} windows of ${windows}`);
    await endPhase('operatorRestore');

    // The watermark passes the minute: the partition actor hands the results on in slices.
    t = now();
    let firstResultsMs = -1;
    let results = 0;
    await applyBatch(back, 0, { t: 'batch', n: 1, ops: [BASE + SIZE] }, (m) => {
      if (firstResultsMs < 0) firstResultsMs = now() - t;
      ch.out(m, (got) => {
        if (got.t === 'out') results += got.results.length;
      });
    });
    await ch.delivered();
    const allResultsMs = now() - t;
    if (results !== windows) throw new Error(`fired ${results} results of ${windows} windows`);
    await endPhase('firing');
    const flowingPosts = flow.stop();
    stalls.stop();
    phase.disable();
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
      delayByPhaseMs: phases,
      worstStallOnCpuMs: Math.max(...Object.values(cpu)),
      stallOnCpuByPhaseMs: cpu,
      stallsByPhase: worst,
      flowingPosts,
    };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}
