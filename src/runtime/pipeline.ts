// The whole job in one process with no NATS: the same ingest, routing and window operators
// the actors run. Used by tests (against the reference model) and by the benchmark baseline.

import { Ingestor, type InputPartitioning, type JobSemantics } from './ingest.js';
import type { IdleDecision } from './watermark.js';
import { WindowOperator, windowId, type PersistedWindow } from './window-operator.js';
import type { DeadLetterRecord, LateRecord, ResultRecord } from './records.js';
import { DEFAULT_KEY_GROUPS, actorOfGroup, keyGroupOf, keyOfWindowId, type Routing } from './key-groups.js';

export type { JobSemantics };

/** Runs a bounded input through the job; `drain` ends it with watermark +∞. */
export function runInMemory(
  payloads: readonly Uint8Array[],
  sem: JobSemantics,
  opts: {
    batchSize?: number;
    partitions?: number;
    /** key groups of the state (default DEFAULT_KEY_GROUPS) */
    keyGroups?: number;
    /** window actors after the 1st, 2nd, … restart (cycling): rescaling, as a group of instances does */
    rescale?: readonly number[];
    drain?: boolean;
    subject?: string;
    /**
     * After every this many batches, checkpoint the operators (a delta, every third one full) and
     * replace them with new operators restored from the accumulated checkpoint: what a restart does.
     */
    restartEvery?: number;
    /** Hand results on in slices of this many within a watermark step (as the partition actor does). */
    slice?: number;
    /** false: one delta per record and window instead of one per (key, window) and batch */
    preaggregate?: boolean;
    /** wall clock for `--max-future` and idleness (default: Date.now); called once per batch */
    now?: () => number;
    /** subject of each message (default: `subject` for all) */
    subjects?: readonly string[];
    /** `--idle-timeout`: with several input partitions, decisions are made from `now` at batch boundaries once `journal` is used up */
    idleTimeout?: number;
    /** journaled idleness decisions to replay at their positions */
    journal?: readonly IdleDecision[];
    /** called with the watermark after each message (decisions at its position come after) */
    onWatermark?: (seq: number, wm: number) => void;
  } & InputPartitioning = {},
): { results: ResultRecord[]; late: LateRecord[]; dead: DeadLetterRecord[]; journal: IdleDecision[] } {
  const batchSize = opts.batchSize ?? 1000;
  const keyGroups = opts.keyGroups ?? DEFAULT_KEY_GROUPS;
  let routing: Routing = { keyGroups, actors: opts.partitions ?? 1 };
  const now = opts.now ?? Date.now;
  const ingestOpts = {
    preaggregate: opts.preaggregate ?? true,
    now: now(),
    ...(opts.inputPartitions !== undefined ? { inputPartitions: opts.inputPartitions } : {}),
    ...(opts.partitionOf ? { partitionOf: opts.partitionOf } : {}),
  };
  let ingest = new Ingestor(sem, routing, opts.idleTimeout ?? 0, ingestOpts);
  const journal: IdleDecision[] = [...(opts.journal ?? [])];
  if (opts.journal) ingest.idleness.replay(opts.journal);
  ingest.tick(ingestOpts.now);
  const make = (): WindowOperator => new WindowOperator({ job: sem.job, window: sem.window, lateness: sem.lateness, mode: sem.emit, compiled: sem.compiled });
  let ops = Array.from({ length: routing.actors }, make);
  // The stored state, as a checkpoint store holds it after applying each delta: by key group.
  const stored = Array.from({ length: keyGroups }, () => new Map<string, PersistedWindow>());
  let delivered = 0;
  let restarts = 0;
  const restart = (): void => {
    const full = delivered % (3 * opts.restartEvery!) === 0;
    if (full) for (const g of stored) g.clear();
    for (const op of ops) {
      const snap = op.snapshot(full);
      for (const id of snap.deletes) stored[keyGroupOf(keyOfWindowId(id), keyGroups)]!.delete(id);
      // The snapshot must not share objects with the live state (it goes through a codec in the job).
      for (const w of snap.upserts) stored[keyGroupOf(w.key, keyGroups)]!.set(windowId(w.key, w.start, w.end), structuredClone(w));
    }
    const watermark = ingest.watermark;
    const actors = opts.rescale?.length ? opts.rescale[restarts % opts.rescale.length]! : routing.actors;
    restarts++;
    routing = { keyGroups, actors };
    // A new source restored from the checkpoint's watermark state (journal included), as a restart does.
    const state = structuredClone(ingest.watermarkState());
    const { position, futureBound } = ingest;
    ingest = new Ingestor(sem, routing, opts.idleTimeout ?? 0, { ...ingestOpts, now: now() });
    ingest.futureBound = futureBound;
    ingest.restoreWatermark(state, position);
    ops = Array.from({ length: actors }, make);
    // Each actor restores the key groups it owns now.
    const mine: PersistedWindow[][] = Array.from({ length: actors }, () => []);
    stored.forEach((g, kg) => mine[actorOfGroup(kg, routing)]!.push(...[...g.values()].map((w) => structuredClone(w))));
    ops.forEach((op, a) => op.restore(mine[a]!, watermark));
  };
  const out = { results: [] as ResultRecord[], late: [] as LateRecord[], dead: [] as DeadLetterRecord[] };
  const deliver = (): void => {
    const batches = ingest.router.take();
    ops.forEach((op, p) => {
      const take = (): void => {
        const o = op.drainOutput();
        out.results.push(...o.results);
        out.late.push(...o.late);
      };
      const batch = batches[p]!;
      for (let i = 0; (i = op.applySome(batch, i, opts.slice)) < batch.length; ) take();
      take();
    });
    out.dead.push(...ingest.takeDead());
    ingest.tick(now());
    delivered++;
    if (opts.restartEvery && delivered % opts.restartEvery === 0) restart();
  };
  /** Between batches: live idleness decisions (journaled, then applied at once: memory is durable enough here). */
  const decide = (): void => {
    const ds = ingest.decideIdle(now());
    if (!ds.length) return;
    journal.push(...ds);
    ingest.applyJournal();
  };
  payloads.forEach((payload, i) => {
    ingest.accept(payload, opts.subjects?.[i] ?? opts.subject ?? 'posts.in', i + 1);
    opts.onWatermark?.(i + 1, ingest.watermark);
    if ((i + 1) % batchSize === 0) {
      decide();
      deliver();
    }
  });
  decide();
  // Journaled decisions at the last position still apply before the end of input.
  ingest.applyJournal();
  if (opts.drain ?? true) ingest.end();
  deliver();
  return { ...out, journal };
}
