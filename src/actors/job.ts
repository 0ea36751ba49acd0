// Wires one job: restores the newest checkpoint, opens sinks at their checkpointed progress,
// starts the partition actors, the sink actor and the source actor, all talking over NATS.

import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { NatsConnection, JetStreamManager } from 'nats';
import { TidemarkError } from '../errors.js';
import { FINGERPRINT_DEFAULTS, stateFingerprint, type JobConfig } from '../runtime/job-config.js';
import { CheckpointStore, type CheckpointMeta, type EntryChunk, type GroupStamp } from '../io/checkpoint-store.js';
import { ensureStream, JetStreamSource } from '../io/jetstream-source.js';
import { createSink } from '../io/sinks.js';
import { groupProblems, waysOut } from '../io/state-damage.js';
import { ScoringPool } from '../io/scoring-pool.js';
import { RemotePreparer, type Preparer } from '../io/remote-prepare.js';
import type { JobSource } from '../io/job-loader.js';
import { formatWindowSpec } from '../runtime/windows.js';
import { formatDuration } from '../runtime/duration.js';
import type { Logger } from '../log.js';
import { groupsOf } from '../runtime/key-groups.js';
import type { PersistedWindow } from '../runtime/window-operator.js';
import { yieldToLoop } from './slices.js';
import { tuneHeapForWindows } from './heap.js';
import { PartitionActor, windowsOfGroups } from './partition-actor.js';
import { SinkActor, type SinkSet } from './sink-actor.js';
import { SourceActor, type SavepointTaken } from './source-actor.js';
import { INPUT_SILENCE_MS } from './input-reader.js';
import { MergedInput } from './merged-input.js';
import { RunKey, Rejections, SENDER, type ChannelContext } from '../io/channel.js';

/**
 * Batches the source may send beyond the sink's credit. Window actors on other processes answer a
 * round trip later; more batches in flight keep the pipeline full (measured with benchmarks/scaling.ts:
 * 2 instances went from 0.62 to 0.85 of one instance's rate with 16 instead of 4).
 */
const LOCAL_INFLIGHT = 4;
const REMOTE_INFLIGHT = 16;
/** How long a member may take to prepare a batch before the coordinator prepares it itself. */
const REMOTE_PREPARE_TIMEOUT_MS = 5_000;

/** Where a job keeps its LevelDB state. */
export const checkpointDir = (stateDir: string, job: string): string => join(stateDir, job, 'checkpoints');

/** Compares saved state's fingerprint with this run's; names every difference. */
export function incompatibility(saved: Record<string, string>, now: Record<string, string>): string | undefined {
  const diffs = Object.keys({ ...saved, ...now })
    .filter((k) => saved[k] !== now[k])
    .map((k) => `--${k} was ${saved[k] ?? FINGERPRINT_DEFAULTS[k] ?? '(unset)'}, now ${now[k] ?? FINGERPRINT_DEFAULTS[k] ?? '(unset)'}`);
  return diffs.length ? diffs.join('; ') : undefined;
}

/** `--from-checkpoint`: a checkpoint id or a savepoint name. */
export async function resolveCheckpointId(store: CheckpointStore, ref: string | undefined, flag = '--from-checkpoint'): Promise<number | undefined> {
  if (ref === undefined) return undefined;
  if (/^\d+$/.test(ref)) {
    if (!store.has(Number(ref))) throw new TidemarkError('CHECKPOINT_NOT_FOUND', `${flag}: no checkpoint ${ref} (tidemark inspect lists them)`);
    return Number(ref);
  }
  // Names may repeat in state written before names were refused; the newest of that name wins.
  const named = store.savepointNamed(ref);
  if (named === undefined) throw new TidemarkError('CHECKPOINT_NOT_FOUND', `${flag}: no savepoint named "${ref}" (tidemark inspect lists them)`);
  return named;
}

/** Opens a job's checkpoint store; `reset` discards what it holds first, damaged or not. */
export async function openJobStore(stateDir: string, job: string, reset = false): Promise<CheckpointStore> {
  const dir = checkpointDir(stateDir, job);
  const ref = { stateDir, job };
  if (!reset) return CheckpointStore.open(dir, ref);
  try {
    const store = await CheckpointStore.open(dir, ref);
    await store.reset();
    return store;
  } catch (e) {
    // Damaged beyond opening: nobody holds it (LevelDB locks before it reads), so it can go.
    if (!(e instanceof TidemarkError) || e.code !== 'STATE_CORRUPT') throw e;
    CheckpointStore.destroy(dir);
    return CheckpointStore.open(dir, ref);
  }
}

/**
 * Where a job's window actors run when it is one generation of a group (host/group.ts): how many
 * there are in all, which this process hosts, the generation's shared channel key, and how the
 * others get their windows. Without it every actor runs here under a key of this run alone.
 */
export interface Placement {
  total: number;
  local: readonly number[];
  key: RunKey;
  /** Hands every actor hosted elsewhere its windows; resolves once each is listening for batches. */
  remote: (windowsOf: (actor: number) => Iterable<PersistedWindow>, watermark: number) => Promise<void>;
  /** Stores each complete checkpoint in NATS too (after LevelDB, before it counts as taken). */
  mirror?: (meta: CheckpointMeta, chunks: AsyncIterable<EntryChunk>) => Promise<void>;
  /** The checkpoint the mirror's chain ends at (0: none): a delta may only continue that one. */
  mirrorHead?: number;
  /** Stamped on every checkpoint of this generation. */
  stamp?: GroupStamp;
  /** Members that prepare the source's batches (decode, keys, score): their request subjects and who may answer. */
  prepare?: { subjects: readonly string[]; from: (sender: number) => boolean };
  /** The input sequence a group's --drain ends at (fixed by its first coordinator). */
  drainSeq?: number;
  /**
   * A group's partitioned input: every input partition has a source of its own on a member
   * (input-reader.ts), and the source actor here reads the merge of their prepared records.
   */
  mergedInput?: boolean;
}

/** The worker threads (`--scoring-threads`) that prepare a job's input: they build the same job from its module (or key spec); a definition object stays inline. */
export function scoringPoolFor(cfg: JobConfig): ScoringPool {
  const jobSource: JobSource | undefined = cfg.jobModule
    ? { module: pathToFileURL(resolve(cfg.jobModule)).href, stream: cfg.inputStream }
    : cfg.keys
      ? { keys: cfg.keys, examples: cfg.examples === true, stream: cfg.inputStream }
      : undefined;
  return new ScoringPool(cfg.scoringThreads, cfg.compiled, jobSource);
}

/** A group's generation as status shows it. */
export interface GroupView {
  epoch: number;
  gen: number;
  instances: Array<{ id: string; host: string; pid: number; roles: string[]; actors: number[]; keyGroups: Array<[number, number]>; /** input partitions it reads */ inputs?: number[] }>;
}

export interface JobStatus {
  seq: number;
  watermark: number;
}

/** A running job. */
export class Job {
  readonly partitions: PartitionActor[];
  readonly sink: SinkActor;
  readonly source: SourceActor;
  readonly restoredFrom?: CheckpointMeta;
  /** Window actors in all (this process's and, in a group, the other instances'). */
  actors: number;
  /** In a group: the generation, its instances and their roles (for status). */
  group?: GroupView;
  /** In a group with a partitioned input: the merge of the partitions' sources (coordinator). */
  merged?: MergedInput;
  private runPromise?: Promise<number>;
  /** Resolves (with the reason) when the job must restart from its last checkpoint. */
  readonly faulted: Promise<string>;

  private constructor(
    readonly cfg: JobConfig,
    readonly nc: NatsConnection,
    readonly store: CheckpointStore,
    parts: PartitionActor[],
    sink: SinkActor,
    source: SourceActor,
    restored: CheckpointMeta | undefined,
    readonly endSeq: number | undefined,
    private readonly pool: Preparer,
    readonly channel: ChannelContext,
    faulted: Promise<string>,
  ) {
    this.faulted = faulted;
    this.partitions = parts;
    this.actors = parts.length;
    this.sink = sink;
    this.source = source;
    if (restored) this.restoredFrom = restored;
  }

  /** Restores state and starts every actor; the source begins reading. */
  static async start(cfg: JobConfig, nc: NatsConnection, log: Logger, placement?: Placement): Promise<Job> {
    const t0 = performance.now();
    tuneHeapForWindows();
    const store = await openJobStore(cfg.stateDir, cfg.job, cfg.resetState);
    let opened: SinkActor | undefined;
    let fault: (why: string) => void = () => undefined;
    const faulted = new Promise<string>((r) => (fault = r));
    // A new secret every run: messages of an earlier run, garbage and forgeries are all refused.
    const channel: ChannelContext = { key: placement?.key ?? RunKey.create(), rejects: new Rejections((f, m) => log.warn(f, m)), fault: (why) => fault(why) };
    try {
      if (cfg.resetState) log.warn({ stateDir: cfg.stateDir }, 'state reset: starting from the beginning of the input');
      for (const note of store.notes) log.warn({ stateDir: cfg.stateDir }, note);
      const fingerprint = stateFingerprint(cfg);
      const restored = await store.restore(await resolveCheckpointId(store, cfg.fromCheckpoint), yieldToLoop);
      if (store.levelDamage !== undefined) {
        // LevelDB failed reading its own files: a compaction would hit the damage again and stop every
        // later checkpoint, so the state is repaired first rather than run on.
        const why = groupProblems(restored?.skipped ?? []);
        throw new TidemarkError(
          'STATE_CORRUPT',
          `LevelDB's files in ${checkpointDir(cfg.stateDir, cfg.job)} are damaged (LevelDB: ${store.levelDamage})${why ? `: ${why}` : ''}${restored ? `; the newest checkpoint that verifies is ${restored.meta.id}` : ''}; ${waysOut({ stateDir: cfg.stateDir, job: cfg.job }, { repair: true })}`,
        );
      }
      if (restored) {
        for (const s of restored.skipped) log.error({ checkpoint: s.id, problem: s.problem }, `checkpoint ${s.id} is unusable (${s.problem}); falling back to checkpoint ${restored.meta.id}`);
        const diff = incompatibility(restored.meta.fingerprint, fingerprint);
        if (diff) {
          throw new TidemarkError('STATE_INCOMPATIBLE', `state in ${cfg.stateDir} was written by an incompatible configuration (${diff}); use the old settings, another --state-dir, or --reset-state to discard it`);
        }
        if (restored.skipped.length) await store.prune(cfg.retain, restored.skipped.map((s) => s.id));
      }
      const meta = restored?.meta;
      const jsm: JetStreamManager = await nc.jetstreamManager();
      const js = nc.jetstream();
      const input = await ensureStream(jsm, cfg.inputStream, cfg.inputSubjects);
      const sinkSet: SinkSet = {
        results: cfg.sinks.map((s) => createSink(s, nc, js, jsm, cfg.job, 'results', log)),
        late: createSink(cfg.lateSink, nc, js, jsm, cfg.job, 'late', log),
        dead: createSink(cfg.dlqSink, nc, js, jsm, cfg.job, 'dead', log),
      };
      const total = placement?.total ?? cfg.partitions;
      const local = placement?.local ?? Array.from({ length: cfg.partitions }, (_, p) => p);
      const sink = new SinkActor(nc, cfg.job, total, cfg.keyGroups, sinkSet, store, fingerprint, cfg.retain, log, meta?.id ?? 0, channel);
      opened = sink;
      await sink.openSinks(meta?.sinks);
      if (meta) {
        sink.counts.results = meta.counters.results ?? 0;
        sink.counts.late = meta.counters.late ?? 0;
        sink.counts.dead = meta.counters.dead ?? 0;
      }
      if (placement?.mirror) sink.mirror = placement.mirror;
      if (placement?.stamp) sink.stamp = placement.stamp;
      const parts = local.map((p) => new PartitionActor(nc, p, { job: cfg.job, window: cfg.window, lateness: cfg.lateness, mode: cfg.emit, compiled: cfg.compiled }, channel));
      // Each actor restores the key groups it owns in this run, whichever actor wrote them.
      const routing = { keyGroups: cfg.keyGroups, actors: total };
      // The restored windows are let go once every actor has its own: a closure made in this scope
      // (the callbacks below live as long as the job) keeps every variable the scope's closures
      // capture, and 1M restored windows are hundreds of MB.
      let restoredWindows = restored?.windows;
      const restoredCount = restoredWindows ? [...restoredWindows.values()].reduce((a, w) => a + w.length, 0) : 0;
      const windowsOf = (actor: number): Iterable<PersistedWindow> => windowsOfGroups(restoredWindows ?? new Map(), groupsOf(actor, routing));
      if (restored) for (const pa of parts) await pa.restore(windowsOf(pa.partition), restored.meta.watermark.wm);
      for (const pa of parts) pa.start(cfg.job);
      sink.start();
      // Actors on other instances get theirs over NATS (host/coordinator.ts).
      if (placement) await placement.remote(windowsOf, restored?.meta.watermark.wm ?? -Infinity);
      restoredWindows = undefined;
      const endSeq = placement?.drainSeq ?? (cfg.drain ? input.lastSeq : undefined);
      const threads = scoringPoolFor(cfg);
      const spread = placement?.prepare;
      const pool: Preparer = spread?.subjects.length
        ? new RemotePreparer(nc, channel, spread.subjects, spread.from, SENDER.source, threads, REMOTE_PREPARE_TIMEOUT_MS, (why) => log.warn({ why }, `a member did not prepare a batch (${why})`), cfg.batchSize)
        : threads;
      const intake = placement?.mergedInput
        ? new MergedInput(nc, jsm, cfg.inputStream, cfg.inputPartitions, channel, cfg.job, cfg.compiled, cfg.checkpointTimeout > 0 ? Math.min(cfg.checkpointTimeout, INPUT_SILENCE_MS) : 0)
        : new JetStreamSource(nc, jsm, cfg.inputStream);
      const source = new SourceActor(
        nc,
        intake,
        pool,
        cfg,
        { partitions: total, keyGroups: cfg.keyGroups, batchSize: cfg.batchSize, maxInflight: total > local.length ? REMOTE_INFLIGHT : LOCAL_INFLIGHT, checkpointInterval: cfg.checkpointInterval, idleTimeout: cfg.idleTimeout, checkpointTimeout: cfg.checkpointTimeout, inputPartitions: cfg.inputPartitions, ...(endSeq !== undefined ? { endSeq } : {}) },
        channel,
        // New checkpoint ids continue after the newest stored one (also when restoring an older one).
        // A group's mirror must hold every delta's base: when it does not end at the checkpoint restored
        // here (killed between the local write and the mirror's, or a savepoint), the first checkpoint is full.
        { seq: meta?.seq ?? 0, cp: store.maxId, ...(restored ? { watermark: restored.meta.watermark, ...(placement?.mirror && placement.mirrorHead !== restored.meta.id ? {} : { chain: restored.chain }) } : {}) },
      );
      if (meta) {
        source.ingest.postsIn = meta.counters.postsIn ?? 0;
        source.ingest.deadCount = meta.counters.dead ?? 0;
        source.ingest.futureBound = meta.counters.futureBound ?? -Infinity;
      }
      source.onIdleDecision = (d) =>
        log.info({ inputPartition: d.partition, seq: d.seq, watermark: d.wm }, `input partition ${d.partition} is idle after input sequence ${d.seq} (no post for ${formatDuration(cfg.idleTimeout)}): it no longer holds the watermark back`);
      // A bug in the job's merge or result stops the job; its last checkpoint stays intact.
      for (const pa of parts) pa.onFail = (e) => source.fail(e);
      source.listen();
      await nc.flush();
      const ms = Math.round(performance.now() - t0);
      if (meta) {
        log.info({ checkpoint: meta.id, seq: meta.seq, windows: restoredCount, recoveryMs: ms }, `recovered from checkpoint ${meta.id} in ${ms} ms (${restoredCount} windows, resuming after input sequence ${meta.seq})`);
      }
      log.info(
        {
          job: cfg.job,
          window: formatWindowSpec(cfg.window),
          maxOutOfOrderness: formatDuration(cfg.maxOutOfOrderness),
          allowedLateness: formatDuration(cfg.lateness),
          emit: cfg.emit,
          idleTimeout: formatDuration(cfg.idleTimeout),
          inputPartitions: cfg.inputPartitions,
          partitions: cfg.partitions,
          keyGroups: cfg.keyGroups,
          input: `${cfg.inputStream} (${cfg.inputSubjects.join(',')})`,
          drain: cfg.drain,
        },
        `job ${cfg.job}: window ${formatWindowSpec(cfg.window)}, watermark = max(ts) - ${formatDuration(cfg.maxOutOfOrderness)}, allowed lateness ${formatDuration(cfg.lateness)}, emit ${cfg.emit}`,
      );
      const job = new Job(cfg, nc, store, parts, sink, source, meta, endSeq, pool, channel, faulted);
      job.actors = total;
      if (intake instanceof MergedInput) job.merged = intake;
      return job;
    } catch (e) {
      // A sink that refused to open must not keep the process alive with the others' connections.
      await opened?.closeSinks().catch(() => undefined);
      await store.close().catch(() => undefined);
      throw e;
    }
  }

  /** In a group: batches of input prepared by members, here, and sent to a member in vain. */
  get prepared(): { remote: number; local: number; failed: number } | undefined {
    return this.pool instanceof RemotePreparer ? { ...this.pool.counts } : undefined;
  }

  /** Runs until end of input (drain) or stop(); resolves when everything is flushed and checkpointed. */
  run(): Promise<number> {
    this.runPromise ??= (async () => {
      const seq = await this.source.run();
      await Promise.all(this.partitions.map((p) => p.finished()));
      await this.sink.finished();
      return seq;
    })();
    return this.runPromise;
  }

  /**
   * Takes a savepoint named `name`. A name names one savepoint: asked for again while it is waiting
   * or being taken, the request joins it; asked for after it is written, it is refused
   * (SAVEPOINT_EXISTS), so that `--from-checkpoint NAME` means one thing.
   */
  savepoint(name: string): Promise<SavepointTaken> {
    const prior = this.source.savepointPending(name) ? undefined : this.store.savepointNamed(name);
    if (prior !== undefined) return Promise.reject(new TidemarkError('SAVEPOINT_EXISTS', `a savepoint named "${name}" already exists (checkpoint ${prior}); names are unique, choose another`));
    return this.source.savepoint(name);
  }

  /** Graceful stop: stop intake, flush, final checkpoint. */
  async stop(): Promise<void> {
    this.source.stop();
    await this.run();
  }

  /** Failure (e.g. NATS connection lost): stop every actor at once, keep the last checkpoint. */
  async abort(): Promise<void> {
    this.source.abort();
    this.sink.abort();
    for (const p of this.partitions) p.stop();
    await this.sink.finished().catch(() => undefined);
    // Writes a sink could not confirm (NATS gone) are redone from the checkpoint: no reason to fail here.
    await this.close().catch(() => undefined);
  }

  /** Releases the state store and subscriptions. */
  async close(): Promise<void> {
    for (const p of this.partitions) p.stop();
    this.sink.stop();
    // The state store is released whatever the sinks do, so a restart in this process can open it.
    try {
      await this.sink.closeSinks();
    } finally {
      await this.pool.close();
      await this.store.close();
    }
  }
}
