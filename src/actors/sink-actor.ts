// The sink actor: writes results, late records and dead letters to their sinks, and completes
// aligned checkpoints: once every input channel has delivered barrier n it flushes the sinks
// and writes window deltas, watermark, input sequence and sink progress in one LevelDB batch.

import { keyGroupOf, keyOfWindowId } from '../runtime/key-groups.js';
import type { NatsConnection, Subscription } from 'nats';
import { Opener, Sealer, SENDER, receive, type ChannelContext } from '../io/channel.js';
import { checkOutMsg } from './message-checks.js';
import { Reassembler } from '../io/framing.js';
import { subjectsFor } from '../io/subjects.js';
import type { Sink, SinkProgress } from '../io/sinks.js';
import type { CheckpointStore, CheckpointMeta, CheckpointWrite, CheckpointWriter, EntryChunk, GroupStamp } from '../io/checkpoint-store.js';
import type { Logger } from '../log.js';
import type { CreditMsg, OutMsg } from './messages.js';
import type { PersistedWindow } from '../runtime/window-operator.js';
import { faultPoint } from '../io/fault.js';
import { isTransientNatsError } from '../io/nats-errors.js';
import { SupersededError } from '../io/group-store.js';

export interface SinkSet {
  results: Sink[];
  late: Sink;
  dead: Sink;
}

interface Alignment {
  cp: number;
  arrived: Map<number, Extract<OutMsg, { t: 'barrier' | 'source-barrier' }>>;
}

/**
 * A checkpoint's window entries, taken as the partitions' barrier slices arrive: each slice's
 * windows go into the store's pending batch at once, under their key group (entries are stored by
 * key group, so that a key group's slice moves as a unit whichever actor owns it in the next run).
 * A full checkpoint of 1M windows is never held decoded until its last barrier: each slice is
 * garbage once it is in the batch (a group's mirror reads the written checkpoint back from LevelDB).
 */
export class CheckpointAssembly {
  private failure?: { error: unknown };

  constructor(
    readonly writer: CheckpointWriter,
    private readonly keyGroups: number,
  ) {}

  /** One barrier slice's windows and removals (a window's key is hashed to its key group here). */
  add(slice: { upserts: readonly PersistedWindow[]; deletes: readonly string[] }): void {
    if (this.failure) return;
    try {
      for (const w of slice.upserts) this.writer.upsert(keyGroupOf(w.key, this.keyGroups), w);
      for (const d of slice.deletes) this.writer.remove(keyGroupOf(keyOfWindowId(d), this.keyGroups), d);
    } catch (e) {
      // Reported when the checkpoint is written (as a failed checkpoint), not in the middle of the channel.
      this.failure = { error: e };
    }
  }

  /** Writes the checkpoint with `meta` (or throws what a slice failed with; nothing is written then). */
  async finish(meta: CheckpointWrite['meta']): Promise<CheckpointMeta> {
    if (this.failure) {
      await this.writer.discard();
      throw this.failure.error;
    }
    return this.writer.finish(meta);
  }

  /** The checkpoint will not be written. */
  discard(): Promise<void> {
    return this.writer.discard();
  }
}

export interface CheckpointEvent {
  meta: CheckpointMeta;
  ms: number;
}

export class SinkActor {
  private sub?: Subscription;
  private done?: Promise<void>;
  private readonly lastN: number[];
  private credit = 0;
  private aligning?: Alignment;
  private held: OutMsg[] = [];
  /** Checkpoints whose barrier slices are arriving (their entries go into the store's batch as they come). */
  private readonly assemblies = new Map<number, CheckpointAssembly>();
  private ended = new Set<number>();
  private lastCheckpoint: number;
  private aborted = false;
  /** Checkpoint writes in progress, chained in checkpoint order. */
  private writing: Promise<void> = Promise.resolve();
  private readonly sealer: Sealer;
  counts = { results: 0, late: 0, dead: 0 };
  onCheckpoint?: (e: CheckpointEvent) => void;
  /** A group's copy of each complete checkpoint in NATS: written after LevelDB, before the checkpoint counts as taken. */
  mirror?: (meta: CheckpointMeta, chunks: AsyncIterable<EntryChunk>) => Promise<void>;
  /** A group's generation, stamped on its checkpoints. */
  stamp?: GroupStamp;
  onResults?: (n: number) => void;
  /** Every data message the sink writes (metrics: counts and source-to-sink latency). */
  onOut?: (m: Extract<OutMsg, { t: 'out' }>) => void;

  constructor(
    private readonly nc: NatsConnection,
    private readonly job: string,
    private readonly partitions: number,
    /** the job's key groups: checkpoint entries are stored by key group, whichever actor sent them */
    private readonly keyGroups: number,
    readonly sinks: SinkSet,
    private readonly store: CheckpointStore,
    private readonly fingerprint: Record<string, string>,
    private readonly retain: number,
    private readonly log: Logger,
    lastCheckpoint: number,
    private readonly ctx: ChannelContext,
  ) {
    this.sealer = new Sealer(ctx.key, SENDER.sink);
    this.lastN = Array.from({ length: partitions }, () => 0);
    this.lastCheckpoint = lastCheckpoint;
  }

  /** Stable names of every sink, used as keys of their progress in checkpoints. */
  static progressKeys(s: SinkSet): Array<[string, Sink]> {
    return [...s.results.map((k) => [`result:${k.name}`, k] as [string, Sink]), [`late:${s.late.name}`, s.late], [`dlq:${s.dead.name}`, s.dead]];
  }

  /** Recovers every sink to the checkpointed progress. */
  async openSinks(progress: Record<string, SinkProgress> | undefined): Promise<void> {
    for (const [key, sink] of SinkActor.progressKeys(this.sinks)) await sink.open(progress?.[key]);
  }

  start(): void {
    const subj = subjectsFor(this.job);
    this.sub = this.nc.subscribe(subj.out);
    const sub = this.sub;
    const inbox = new Opener(this.ctx.key, subj.out, (from) => from === SENDER.source || (from >= 0 && from < this.partitions));
    this.done = (async () => {
      const parts = new Reassembler();
      for await (const m of sub) {
        if (this.aborted) break;
        let data: Uint8Array | undefined;
        try {
          data = parts.push(m);
        } catch (e) {
          this.ctx.rejects.note(subj.out, (e as Error).message);
        }
        if (!data) continue;
        const msg = receive(this.ctx, inbox, data, checkOutMsg)?.msg;
        try {
          if (msg) await this.handle(msg);
        } catch (e) {
          // A sink that failed (a publish timed out in a failover): results since the checkpoint are
          // produced again after a restart from it, so nothing is lost or counted twice.
          this.log.error({ err: (e as Error).message }, 'writing to a sink failed');
          this.ctx.fault(`writing to a sink failed: ${(e as Error).message}`);
          this.abort();
          break;
        }
        if (this.ended.size === this.partitions) break;
      }
      await this.writing;
      // Checkpoints whose barriers did not all arrive are never written.
      for (const a of this.assemblies.values()) await a.discard();
      this.assemblies.clear();
      if (!this.aborted) for (const [, s] of SinkActor.progressKeys(this.sinks)) await s.flush();
    })();
  }

  /** Resolves when every partition has ended and the sinks are flushed. */
  async finished(): Promise<void> {
    await this.done;
  }

  stop(): void {
    this.sub?.unsubscribe();
  }

  /** Failure: stop at once, write nothing more (recovery restarts from the last checkpoint). */
  abort(): void {
    this.aborted = true;
    this.sub?.unsubscribe();
  }

  /** Closes every sink. */
  async closeSinks(): Promise<void> {
    for (const [, s] of SinkActor.progressKeys(this.sinks)) await s.close();
  }

  private async handle(msg: OutMsg): Promise<void> {
    if (this.aligning && this.aligning.arrived.has(msg.from)) {
      // This channel is past the barrier: hold its messages until the checkpoint completes.
      this.held.push(msg);
      return;
    }
    if (msg.t === 'out') {
      await this.write(msg);
    } else if (msg.t === 'barrier-part') {
      // A partition's parts come before its barrier (one channel, in order), each into its checkpoint's batch.
      this.assembly(msg.cp).add(msg);
    } else if (msg.t === 'barrier' || msg.t === 'source-barrier') {
      this.aligning ??= { cp: msg.cp, arrived: new Map() };
      if (msg.t === 'barrier') this.assembly(msg.cp).add(msg);
      this.aligning.arrived.set(msg.from, msg);
      if (this.aligning.arrived.size === this.partitions + 1) {
        const a = this.aligning;
        this.complete(a);
        this.aligning = undefined;
        const held = this.held;
        this.held = [];
        for (const h of held) await this.handle(h);
      }
    } else {
      this.ended.add(msg.from);
    }
  }

  /** The entries of checkpoint `cp` taken so far (started with its first slice). */
  private assembly(cp: number): CheckpointAssembly {
    let a = this.assemblies.get(cp);
    if (!a) this.assemblies.set(cp, (a = new CheckpointAssembly(this.store.begin(cp), this.keyGroups)));
    return a;
  }

  private async write(msg: Extract<OutMsg, { t: 'out' }>): Promise<void> {
    if (msg.results.length) {
      for (const s of this.sinks.results) await s.write(msg.results);
      this.counts.results += msg.results.length;
      this.onResults?.(msg.results.length);
    }
    if (msg.late.length) {
      await this.sinks.late.write(msg.late);
      this.counts.late += msg.late.length;
    }
    if (msg.dead.length) {
      await this.sinks.dead.write(msg.dead);
      this.counts.dead += msg.dead.length;
    }
    this.onOut?.(msg);
    if (msg.from >= 0 && !msg.partial && msg.n > this.lastN[msg.from]!) {
      this.lastN[msg.from] = msg.n;
      const credit = Math.min(...this.lastN);
      if (credit > this.credit) {
        this.credit = credit;
        this.reply({ t: 'credit', n: credit });
      }
    }
  }

  /**
   * Completes checkpoint `a.cp`. The synchronous part captures every sink's progress at the barrier;
   * making it durable and writing LevelDB happen in the background, in checkpoint order, while
   * records after the barrier keep flowing (Flink's asynchronous snapshot phase).
   */
  private complete(a: Alignment): void {
    const t0 = performance.now();
    const src = a.arrived.get(-1) as Extract<OutMsg, { t: 'source-barrier' }>;
    const progress = SinkActor.progressKeys(this.sinks).map(([key, s]) => {
      const p = s.snapshot(a.cp);
      // Awaited below, in checkpoint order, or never (after an abort): a failure (an ack timing out in
      // a failover) while earlier checkpoints are still being written must not end the process as an
      // unhandled rejection; the write below sees it.
      p.catch(() => undefined);
      return [key, p] as const;
    });
    let windows = 0;
    for (const [, m] of a.arrived) if (m.t === 'barrier') windows += m.windows;
    const entries = this.assembly(a.cp);
    this.assemblies.delete(a.cp);
    const counters = { ...src.counters, results: this.counts.results, late: this.counts.late, dead: this.counts.dead };
    const parent = src.full ? 0 : this.lastCheckpoint;
    this.lastCheckpoint = a.cp;
    this.writing = this.writing.then(async () => {
      if (this.aborted) return void (await entries.discard());
      try {
        const sinks: Record<string, SinkProgress> = {};
        for (const [key, p] of progress) sinks[key] = await p;
        faultPoint('checkpoint-before-write');
        const meta = await entries.finish({
          id: a.cp,
          time: Date.now(),
          seq: src.seq,
          watermark: src.watermark,
          sinks,
          parent,
          full: src.full,
          depth: src.depth,
          windows,
          counters,
          fingerprint: this.fingerprint,
          ...(src.savepoint ? { savepoint: src.savepoint } : {}),
          ...(this.stamp ? { group: this.stamp } : {}),
        });
        faultPoint('checkpoint-after-write');
        // A group's mirror copies the checkpoint as LevelDB now holds it, a few thousand entries at a time.
        if (this.mirror) await this.mirror(meta, this.store.chunksOf(meta));
        await this.store.prune(this.retain);
        const ms = performance.now() - t0;
        this.log.debug({ checkpoint: a.cp, seq: src.seq, entries: meta.entries, bytes: meta.bytes, ms: Math.round(ms) }, 'checkpoint complete');
        this.onCheckpoint?.({ meta, ms });
        this.reply({ t: 'checkpointed', cp: a.cp, ms, bytes: meta.bytes, entries: meta.entries });
      } catch (e) {
        await entries.discard();
        if (e instanceof SupersededError) {
          // A newer coordinator owns the job's checkpoints: this one's writes stop here.
          this.log.warn({ err: e.message, checkpoint: a.cp }, 'checkpoint refused: superseded');
          this.ctx.fault(e.message);
          return;
        }
        if (isTransientNatsError(e)) {
          // The sinks' progress could not be made durable (acks timed out in a failover): restart from the last checkpoint.
          this.log.warn({ err: (e as Error).message, checkpoint: a.cp }, 'checkpoint abandoned: a sink did not confirm its writes');
          this.ctx.fault(`checkpoint ${a.cp}: a sink did not confirm its writes (${(e as Error).message})`);
          return;
        }
        this.log.error({ err: e, checkpoint: a.cp }, 'checkpoint failed');
        this.reply({ t: 'checkpointed', cp: a.cp, ms: 0, bytes: 0, entries: 0, error: (e as Error).message });
      }
    });
  }

  private reply(m: CreditMsg): void {
    const subject = subjectsFor(this.job).credit;
    this.nc.publish(subject, this.sealer.seal(subject, m));
  }
}
