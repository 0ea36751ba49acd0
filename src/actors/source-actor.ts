// The source actor: reads the input stream in order, validates, scores and keys each post
// (runtime/ingest), and publishes one batch per partition per tick; it paces itself by the
// sink's credits and injects checkpoint barriers between batches.

import type { NatsConnection, Subscription } from 'nats';
import { Opener, Sealer, SENDER, receive, type ChannelContext } from '../io/channel.js';
import { checkCreditMsg } from './message-checks.js';
import { inputPartitionOf, subjectsFor } from '../io/subjects.js';
import { ChunkingPublisher } from '../io/framing.js';
import type { InputSource } from './merged-input.js';
import type { Preparer } from '../io/remote-prepare.js';
import { Ingestor, type JobSemantics, type Prepared } from '../runtime/ingest.js';
import type { CreditMsg, OutMsg, PartitionMsg } from './messages.js';
import { TidemarkError } from '../errors.js';
import { faultDrop, faultPoint } from '../io/fault.js';
import { FullCheckpointPolicy, type ChainState } from '../runtime/checkpoint-policy.js';
import type { IdleDecision, WatermarkState } from '../runtime/watermark.js';

export interface SourceOptions {
  /** window actors the batches go to */
  partitions: number;
  /** the job's key groups, spread over the window actors in contiguous ranges */
  keyGroups: number;
  batchSize: number;
  /** Batches allowed in flight beyond the sink's credit: bounds how far a barrier trails. */
  maxInflight: number;
  checkpointInterval: number;
  /** Stop at this sequence (drain mode); undefined: run until stopped. */
  endSeq?: number;
  idleTimeout: number;
  /** A checkpoint not complete this long after its barrier (ms) restarts the job from the last one; 0 = never. */
  checkpointTimeout?: number;
  /** input partitions (`--input-partitions`, default 1) */
  inputPartitions?: number;
}

/** Messages read and not yet accepted; `prepared` when they came prepared (a group's partitioned input). */
interface RawBatch {
  data: Uint8Array[];
  subjects: string[];
  seqs: number[];
  prepared?: Prepared[];
}

/** Distinct savepoint names that may wait for their turn; beyond, a request is refused at once. */
export const MAX_QUEUED_SAVEPOINTS = 1000;

/** A savepoint's answer: its checkpoint id, and whether an earlier request of the same name took it. */
export interface SavepointTaken {
  id: number;
  joined: boolean;
}

interface SavepointWaiter {
  resolve: (r: SavepointTaken) => void;
  reject: (e: Error) => void;
  joined: boolean;
}

export class SourceActor {
  readonly ingest: Ingestor;
  private readonly subj: ReturnType<typeof subjectsFor>;
  private readonly pub: ChunkingPublisher;
  private readonly sealer: Sealer;
  private n = 0;
  private credit = 0;
  private creditWaiters: Array<() => void> = [];
  private cpWaiters = new Map<number, (m: Extract<CreditMsg, { t: 'checkpointed' }>) => void>();
  private creditSub?: Subscription;
  private nextCp: number;
  private cpDue = false;
  /** Full or delta: a full checkpoint once the deltas since the last one add up to its size. */
  private readonly policy: FullCheckpointPolicy;
  private lastCpSeq: number;
  private flushing: Promise<void> = Promise.resolve();
  private immediate?: NodeJS.Immediate;
  private stopping = false;
  /** Messages read but not yet handed to preparation. */
  private raw: RawBatch = { data: [], subjects: [], seqs: [] };
  /** Batches scheduled and not yet published. */
  private readonly outstanding: Promise<void>[] = [];
  private aborted = false;
  private failure?: TidemarkError;
  private timer?: NodeJS.Timeout;
  /** Savepoints asked for and not yet taken, by name (in order): each request of a name waits on the same one. */
  private readonly queuedSavepoints = new Map<string, SavepointWaiter[]>();
  /** Savepoints whose barrier is on its way, by name: a request of that name joins it. */
  private readonly takingSavepoints = new Map<string, SavepointWaiter[]>();
  seq: number;
  /** Told of each idleness decision once it is durable and applied (for the log). */
  onIdleDecision?: (d: IdleDecision) => void;
  private idleTimer?: NodeJS.Timeout;
  lastCheckpoint?: { cp: number; at: number; ms: number; bytes: number };
  startedAt = Date.now();

  constructor(
    private readonly nc: NatsConnection,
    private readonly source: InputSource,
    private readonly pool: Preparer,
    private readonly sem: JobSemantics,
    private readonly opts: SourceOptions,
    private readonly ctx: ChannelContext,
    restored: { seq: number; cp: number; chain?: ChainState; watermark?: WatermarkState } = { seq: 0, cp: 0 },
  ) {
    this.sealer = new Sealer(ctx.key, SENDER.source);
    this.subj = subjectsFor(sem.job);
    this.pub = new ChunkingPublisher(nc);
    const inputPartitions = opts.inputPartitions ?? 1;
    this.ingest = new Ingestor(sem, { keyGroups: opts.keyGroups, actors: opts.partitions }, opts.idleTimeout, inputPartitions > 1 ? { inputPartitions, partitionOf: inputPartitionOf } : {});
    // Idleness decisions the checkpoint journaled at its sequence apply here (DESIGN.md §3).
    if (restored.watermark) this.ingest.restoreWatermark(restored.watermark, restored.seq);
    this.seq = restored.seq;
    this.lastCpSeq = restored.seq;
    this.nextCp = restored.cp + 1;
    // Deltas continue the restored checkpoint's chain; a fresh start begins with a full checkpoint.
    this.policy = new FullCheckpointPolicy(restored.chain);
  }

  /** Listens for credits and checkpoint completions. */
  listen(): void {
    const inbox = new Opener(this.ctx.key, this.subj.credit, (from) => from === SENDER.sink);
    this.creditSub = this.nc.subscribe(this.subj.credit, {
      callback: (err, m) => {
        if (err) return;
        const msg = receive(this.ctx, inbox, m.data, checkCreditMsg)?.msg;
        if (!msg) return;
        if (msg.t === 'credit') {
          this.credit = Math.max(this.credit, msg.n);
          const w = this.creditWaiters;
          this.creditWaiters = [];
          for (const f of w) f();
        } else {
          this.policy.written(msg.cp, msg.error ? undefined : msg.bytes);
          if (!msg.error) this.lastCheckpoint = { cp: msg.cp, at: Date.now(), ms: msg.ms, bytes: msg.bytes };
          // A checkpoint that cannot be written stops the job; the last complete one stays intact.
          else if (!this.failure) {
            this.failure = new TidemarkError('STATE_WRITE_FAILED', `checkpoint ${msg.cp} failed: ${msg.error}; the job stops, the last complete checkpoint is intact`);
            this.abort();
          }
          this.cpWaiters.get(msg.cp)?.(msg);
          this.cpWaiters.delete(msg.cp);
          // A slot for a checkpoint is free again: the next queued savepoint goes now, not with the next post.
          if (this.queuedSavepoints.size && !this.stopping) {
            this.cpDue = true;
            this.schedule(false);
          }
        }
      },
    });
    if (this.opts.checkpointInterval > 0) {
      this.timer = setInterval(() => {
        this.cpDue = true;
        // Idle input: take the checkpoint without waiting for the next post.
        if (this.seq !== this.lastCpSeq) this.schedule(true);
      }, this.opts.checkpointInterval);
      this.timer.unref();
    }
    // A quiet input still lets partitions go idle: look every quarter of the idle timeout.
    if ((this.opts.inputPartitions ?? 1) > 1 && this.opts.idleTimeout > 0) {
      this.idleTimer = setInterval(() => {
        if (!this.stopping && this.outstanding.length === 0 && this.ingest.idleDue(Date.now()).length) this.schedule(false);
      }, Math.max(20, Math.min(1000, this.opts.idleTimeout / 4)));
      this.idleTimer.unref();
    }
  }

  /** Consumes the input until end of input (drain) or stop(). Returns the last sequence read. */
  async run(): Promise<number> {
    if (this.opts.endSeq !== undefined && this.seq >= this.opts.endSeq) {
      await this.finish();
      return this.seq;
    }
    // Journaled decisions applied at restore may have moved the watermark: tell the window actors now.
    if ((this.opts.inputPartitions ?? 1) > 1) this.schedule(false);
    const batches = await this.source.open(this.seq, Math.max(this.opts.batchSize, 256), this.opts.endSeq);
    read: for await (const b of batches) {
      // Drain: stop at the sequence the stream held at start (or earlier when its tail was deleted).
      const endAt = this.opts.endSeq !== undefined ? b.endAt(this.opts.endSeq) : -1;
      const n = endAt >= 0 ? endAt + 1 : b.data.length;
      for (let i = 0; i < n; i++) {
        if (this.stopping) break read;
        this.raw.data.push(b.data[i]!);
        this.raw.subjects.push(b.subjects[i]!);
        this.raw.seqs.push(b.seqs[i]!);
        if (b.prepared) (this.raw.prepared ??= []).push(b.prepared[i]!);
        if (this.raw.data.length >= this.opts.batchSize) {
          this.schedule(false);
          // Backpressure: as many batches being prepared as the preparer takes at once (one inline)
          // while the next is read, no more.
          while (this.outstanding.length > Math.max(1, this.pool.threads)) await this.outstanding[0];
        }
      }
      if (endAt >= 0) break;
      // Flush what arrived in this I/O tick once the tick's messages are consumed.
      if (this.raw.data.length) this.schedule(true);
    }
    this.schedule(false);
    await this.flushing;
    await this.source.close();
    if (!this.aborted) await this.finish();
    if (this.failure) throw this.failure;
    return this.seq;
  }

  /** Graceful stop: the run loop ends, a final checkpoint is taken, partitions get `end`. */
  stop(): void {
    this.stopping = true;
    this.refuseQueued('the job is stopping');
    void this.source.close();
  }

  /** Answers every savepoint still waiting for its turn with an error saying why none is taken. */
  private refuseQueued(why: string): void {
    for (const [name, waiters] of this.queuedSavepoints) {
      const e = new TidemarkError('NOT_AVAILABLE', `savepoint "${name}" was not taken: ${why} (its final checkpoint is written as usual)`);
      for (const w of waiters) w.reject(e);
    }
    this.queuedSavepoints.clear();
  }

  /** Failure: stop reading and publishing at once; no final checkpoint. */
  abort(): void {
    this.aborted = true;
    this.stopping = true;
    clearInterval(this.timer);
    clearInterval(this.idleTimer);
    this.creditSub?.unsubscribe();
    for (const w of this.creditWaiters) w();
    this.creditWaiters = [];
    this.refuseQueued('the job stopped on a failure');
    for (const [name, waiters] of this.takingSavepoints) for (const w of waiters) w.reject(new TidemarkError('NOT_AVAILABLE', `savepoint "${name}" was not completed: the job stopped on a failure`));
    this.takingSavepoints.clear();
    // A checkpoint in flight never completes once an actor has failed: release whoever awaits it.
    for (const [cp, w] of this.cpWaiters) w({ t: 'checkpointed', cp, ms: 0, bytes: 0, entries: 0, error: 'the job stopped' });
    this.cpWaiters.clear();
    void this.source.close();
  }

  /** Stops the job with `err` (reported by run()). */
  fail(err: TidemarkError): void {
    if (!this.failure) this.failure = err;
    this.abort();
  }

  /**
   * Takes a savepoint named `name` as soon as a checkpoint slot is free; resolves once it is written.
   * Requests of a name already queued or being taken are answered by that same savepoint.
   */
  savepoint(name: string): Promise<SavepointTaken> {
    return new Promise((resolve, reject) => {
      if (this.stopping) {
        reject(new TidemarkError('NOT_AVAILABLE', `savepoint "${name}" was not taken: the job is stopping`));
        return;
      }
      const same = this.takingSavepoints.get(name) ?? this.queuedSavepoints.get(name);
      if (same) {
        same.push({ resolve, reject, joined: true });
        return;
      }
      if (this.queuedSavepoints.size >= MAX_QUEUED_SAVEPOINTS) {
        reject(new TidemarkError('NOT_AVAILABLE', `savepoint "${name}" was not taken: ${MAX_QUEUED_SAVEPOINTS} savepoints are already waiting; ask again once they are written`));
        return;
      }
      this.queuedSavepoints.set(name, [{ resolve, reject, joined: false }]);
      this.cpDue = true;
      this.schedule(false);
    });
  }

  /** True while a savepoint named `name` is waiting or being taken (a request of that name joins it). */
  savepointPending(name: string): boolean {
    return this.queuedSavepoints.has(name) || this.takingSavepoints.has(name);
  }

  /** Savepoints waiting for a checkpoint slot, and being taken. */
  get savepointsPending(): { queued: number; taking: number } {
    return { queued: this.queuedSavepoints.size, taking: this.takingSavepoints.size };
  }

  /** Posts accepted, dead letters, batches sent. */
  get counters(): { postsIn: number; dead: number; batches: number } {
    return { postsIn: this.ingest.postsIn, dead: this.ingest.deadCount, batches: this.n };
  }

  private schedule(deferred: boolean): void {
    if (deferred) {
      // Flush what arrived in this I/O tick once the tick's messages are consumed.
      this.immediate ??= setImmediate(() => {
        this.immediate = undefined;
        this.schedule(false);
      });
      return;
    }
    if (this.immediate) {
      clearImmediate(this.immediate);
      this.immediate = undefined;
    }
    // Preparing (JSON, keys, scores) starts now, possibly on another thread; accepting waits for
    // the batches before it, because the watermark and the routing follow input order.
    const raw = this.raw;
    this.raw = { data: [], subjects: [], seqs: [] };
    const given = raw.prepared;
    // On worker threads, preparing overlaps the batches before it. Inline, it waits for its turn:
    // a batch held back by the sink's credit (a watermark step firing many windows) costs no CPU
    // while the step's results are on their way.
    const prepare = (): Promise<Prepared[]> => (given ? Promise.resolve(given) : raw.data.length ? this.pool.prepare(raw.data, raw.subjects, raw.seqs) : Promise.resolve([]));
    const early = this.pool.threads > 0 || given ? prepare() : undefined;
    const done: Promise<void> = this.flushing.then(async () => {
      const ready = await (early ?? prepare());
      if (this.aborted) return;
      this.ingest.tick(Date.now());
      try {
        for (let i = 0; i < ready.length; i++) this.ingest.acceptPrepared(ready[i]!, raw.data[i]!, raw.subjects[i]!, raw.seqs[i]!);
      } catch (e) {
        // A bug in the job's code: stop at once; the last complete checkpoint stays intact.
        this.fail(e instanceof TidemarkError ? e : new TidemarkError('USER_CODE', (e as Error).message));
        return;
      }
      if (ready.length) this.seq = raw.seqs[ready.length - 1]!;
      await this.flushBatch();
      await this.idleness();
    });
    this.flushing = done;
    this.outstanding.push(done);
    void done.finally(() => this.outstanding.splice(this.outstanding.indexOf(done), 1)).catch(() => undefined);
  }

  private publishPartition(p: number, msg: PartitionMsg, final = false): void {
    const subject = this.subj.partition(p);
    const sealed = this.sealer.seal(subject, msg);
    // Fault points of the channel tests: the message is sealed (numbered) but never sent.
    if (msg.t === 'batch' && msg.ops.length > 0 && faultDrop('drop-batch')) return;
    if (msg.t === 'barrier' && final && p === 0 && faultDrop('drop-final-barrier')) return;
    this.pub.publish(subject, sealed);
  }

  private publishOut(msg: OutMsg): void {
    this.pub.publish(this.subj.out, this.sealer.seal(this.subj.out, msg));
  }

  private async flushBatch(): Promise<void> {
    if (this.aborted) return;
    // A batch that moves some partition's watermark past a window boundary may fire many windows.
    const steps = this.ingest.router.stepped;
    const ops = this.ingest.router.take();
    const dead = this.ingest.takeDead();
    if (ops.some((o) => o.length > 0) || dead.length > 0) {
      const n = ++this.n;
      const at = Date.now();
      for (let p = 0; p < this.opts.partitions; p++) this.publishPartition(p, { t: 'batch', n, ops: ops[p]!, at });
      // The source's own output is its dead letters: none, no message (credits come from the partitions).
      if (dead.length > 0) this.publishOut({ t: 'out', from: -1, n, results: [], late: [], dead });
    }
    // At most two checkpoints in flight: a slow disk delays the next barrier rather than queueing writes.
    // A batch that fires windows is not followed by a barrier at once: the partitions' snapshots and
    // the checkpoint's write would share the CPU with the step's results on their way out; the
    // barrier goes after the next batch (or the next tick of the checkpoint timer, input idle).
    if (this.cpDue && this.cpWaiters.size < 2 && !steps) void this.barrier();
    // Such a batch is awaited (credited) before the next one is prepared and sent: the step's
    // results then have the CPU to themselves, rather than sharing it with posts that fire nothing.
    const inflight = steps ? 0 : this.opts.maxInflight;
    if (this.aborted || this.n - this.credit <= inflight) return;
    const credited = (async () => {
      while (!this.aborted && this.n - this.credit > inflight) await new Promise<void>((r) => this.creditWaiters.push(r));
    })();
    // A batch lost on the way is never credited, and while the source waits no later message shows the gap.
    this.faultUnlessSettled(credited, `batch ${this.n - inflight} was not acknowledged`, 'a batch or its results were lost');
    await credited;
  }

  /**
   * Restarts the job from its last checkpoint (a fault) when `settled` has not settled within
   * --checkpoint-timeout: a message lost with nothing after it on its channel shows no gap, and
   * what waits for it would otherwise wait for ever.
   */
  private faultUnlessSettled(settled: Promise<unknown>, what: string, cause: string): void {
    const limit = this.opts.checkpointTimeout;
    if (!limit) return;
    const timer = setTimeout(() => {
      if (!this.aborted) this.ctx.fault(`${what} within ${limit} ms (${cause})`);
    }, limit);
    timer.unref();
    void settled.finally(() => clearTimeout(timer)).catch(() => undefined);
  }

  /**
   * Input partitions quiet for `--idle-timeout` stop holding the watermark back. That is a
   * wall-clock decision, so it is journaled at the current input sequence in a checkpoint first
   * and applied once that checkpoint is written: a restore from it, or any later one, repeats it at
   * the same position, and nothing emitted before a crash depended on a decision a restore forgets.
   */
  private async idleness(): Promise<void> {
    if (this.aborted || this.stopping) return;
    const decided = this.ingest.decideIdle(Date.now());
    if (!decided.length) return;
    // At most two checkpoints in flight, as for the periodic ones.
    while (this.cpWaiters.size >= 2 && !this.aborted) await new Promise((r) => setTimeout(r, 5));
    if (this.aborted) return;
    const written = await this.barrier();
    if (written.error || this.aborted) return;
    faultPoint('idle-journaled');
    for (const d of this.ingest.applyJournal()) this.onIdleDecision?.(d);
    await this.flushBatch();
  }

  /** Injects barrier `cp` after everything sent so far; resolves when the checkpoint is written. */
  private barrier(): Promise<Extract<CreditMsg, { t: 'checkpointed' }>> {
    this.cpDue = false;
    const cp = this.nextCp++;
    const full = this.policy.next(cp);
    const next = this.queuedSavepoints.entries().next();
    const sp = next.done ? undefined : { name: next.value[0], waiters: next.value[1] };
    const done = new Promise<Extract<CreditMsg, { t: 'checkpointed' }>>((r) => this.cpWaiters.set(cp, r));
    this.faultUnlessSettled(done, `checkpoint ${cp} did not complete`, 'a barrier or its acknowledgement was lost');
    if (sp) {
      this.queuedSavepoints.delete(sp.name);
      this.takingSavepoints.set(sp.name, sp.waiters);
      void done.then((r) => {
        this.takingSavepoints.delete(sp.name);
        for (const w of sp.waiters) {
          if (r.error) w.reject(new TidemarkError('STATE_WRITE_FAILED', `savepoint "${sp.name}" (checkpoint ${cp}) was not written: ${r.error}`));
          else w.resolve({ id: cp, joined: w.joined });
        }
      });
    }
    for (let p = 0; p < this.opts.partitions; p++) this.publishPartition(p, { t: 'barrier', cp, full }, this.finishing);
    this.publishOut({
      t: 'source-barrier',
      from: -1,
      cp,
      seq: this.seq,
      watermark: this.ingest.watermarkState(),
      full,
      depth: this.policy.lastDepth,
      ...(sp ? { savepoint: sp.name } : {}),
      counters: { postsIn: this.ingest.postsIn, dead: this.ingest.deadCount, futureBound: this.ingest.futureBound },
    });
    this.lastCpSeq = this.seq;
    if (this.queuedSavepoints.size) this.cpDue = true;
    return done;
  }

  /** True while the final checkpoint's barrier is being sent (a fault point drops it). */
  private finishing = false;

  private async finish(): Promise<void> {
    if (this.opts.endSeq !== undefined && !this.stopping) this.ingest.end();
    let last: Promise<unknown> = Promise.resolve();
    this.flushing = this.flushing.then(async () => {
      await this.flushBatch();
      this.finishing = true;
      last = this.barrier();
      this.finishing = false;
      // End of input: the final checkpoint carried the first savepoint waiting, if any; no more come.
      this.refuseQueued('the job reached the end of its input');
    });
    await this.flushing;
    const result = (await last) as Extract<CreditMsg, { t: 'checkpointed' }>;
    if (this.aborted) return;
    for (let p = 0; p < this.opts.partitions; p++) this.publishPartition(p, { t: 'end' });
    clearInterval(this.timer);
    clearInterval(this.idleTimer);
    this.creditSub?.unsubscribe();
    if (result.error) throw new TidemarkError('STATE_WRITE_FAILED', `final checkpoint failed: ${result.error}`);
  }
}
