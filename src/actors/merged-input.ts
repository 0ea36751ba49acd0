// The coordinator's side of a group's partitioned input: the sources of the input partitions
// (input-reader.ts, on any instance) send their prepared records here, and the merge
// (runtime/input-merge.ts) hands them to the job's source actor in the input's own order, exactly as
// one reader of the whole stream would have read them. Sequences no partition delivered are looked up
// in the stream: deleted ones are skipped, and a message on no partition's subject is prepared here
// and dead-lettered by the source as a single reader would (`no_input_partition`). It credits each
// partition's source as the merge passes its messages, so no partition runs far ahead of the others.

import type { JetStreamManager, NatsConnection, Subscription } from 'nats';
import { Opener, Sealer, SENDER, readerSender, receive, type ChannelContext } from '../io/channel.js';
import { ChunkingPublisher, Reassembler } from '../io/framing.js';
import type { InputBatch } from '../io/jetstream-source.js';
import { NO_MESSAGE_FOUND, apiErrorCode } from '../io/nats-errors.js';
import { subjectsFor } from '../io/subjects.js';
import { faultDrop } from '../io/fault.js';
import { InputMerge } from '../runtime/input-merge.js';
import type { CompiledJob, Prepared } from '../runtime/compiled-job.js';
import { checkInputMsg } from './message-checks.js';
import type { InputControlMsg } from './messages.js';

/** Where the source actor reads its input from: the stream itself, or the merge of its partitions' sources. */
export interface InputSource {
  /** Starts reading after `afterSeq`; a drain (`endSeq`) may end the iteration there. */
  open(afterSeq: number, maxMessages: number, endSeq?: number): Promise<AsyncIterable<InputBatch>>;
  close(): Promise<void>;
}

interface Item {
  prepared: Prepared;
  subject: string;
  /** the payload of a record that was not prepared (a dead letter carries it); empty otherwise */
  payload: Uint8Array;
}

const EMPTY = new Uint8Array(0);

interface Lane {
  /** each received message's `complete`, oldest first, until the merge has passed it */
  completes: number[];
  /** messages the merge has passed (the credit sent back) */
  taken: number;
}

export class MergedInput implements InputSource {
  private readonly subj: ReturnType<typeof subjectsFor>;
  private readonly sealer: Sealer;
  private readonly pub: ChunkingPublisher;
  private readonly subs: Subscription[] = [];
  private readonly lanes: Lane[];
  private merge?: InputMerge<Item>;
  private waiter?: () => void;
  private closed = false;
  /** When each partition's source was last heard (ms), and the watch on it. */
  private readonly heard: number[];
  private watch?: NodeJS.Timeout;
  /** Messages looked up because no partition delivered them: deleted, and on no partition's subject. */
  readonly strays = { deleted: 0, found: 0 };

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
    private readonly partitions: number,
    private readonly ctx: ChannelContext,
    job: string,
    /** prepares a message no partition's source read (it is dead-lettered or, on a subject that still names a partition, accepted) */
    private readonly compiled: Pick<CompiledJob, 'prepare'>,
    /** a source holding the merge back that sends nothing this long (ms: a lost message, a cut-off instance) restarts the job from its checkpoint; 0 = never */
    private readonly silenceMs = 0,
  ) {
    this.subj = subjectsFor(job);
    this.sealer = new Sealer(ctx.key, SENDER.source);
    this.pub = new ChunkingPublisher(nc);
    this.lanes = Array.from({ length: partitions }, () => ({ completes: [], taken: 0 }));
    this.heard = new Array<number>(partitions).fill(0);
  }

  /** The merge's position, how far each partition is complete, records waiting, and the strays looked up (status). */
  get progress(): { position: number; complete: number[]; buffered: number; strays: { deleted: number; found: number } } | undefined {
    const m = this.merge;
    return m && { position: m.position, complete: this.lanes.map((_, p) => m.completeOf(p)), buffered: m.buffered, strays: { ...this.strays } };
  }

  async open(afterSeq: number, _maxMessages: number, endSeq?: number): Promise<AsyncIterable<InputBatch>> {
    // A purged head of the stream is not looked up message by message: reading starts where the stream does.
    const first = (await this.jsm.streams.info(this.stream)).state.first_seq;
    const after = Math.max(afterSeq, first - 1);
    const merge = new InputMerge<Item>(this.partitions, after);
    this.merge = merge;
    for (let p = 0; p < this.partitions; p++) {
      const subject = this.subj.input(p);
      const inbox = new Opener(this.ctx.key, subject, (from) => from === readerSender(p));
      const parts = new Reassembler();
      this.subs.push(
        this.nc.subscribe(subject, {
          callback: (err, m) => {
            if (err || this.closed) return;
            let data: Uint8Array | undefined;
            try {
              data = parts.push(m);
            } catch (e) {
              this.ctx.rejects.note(subject, (e as Error).message);
            }
            if (!data) return;
            const msg = receive(this.ctx, inbox, data, checkInputMsg)?.msg;
            if (!msg) return;
            this.heard[p] = Date.now();
            if (msg.t === 'fail') {
              this.ctx.fault(`the source of input partition ${p} failed: ${msg.why}`);
              return;
            }
            const bad = new Map(msg.bad);
            const items: Item[] = new Array(msg.q.length);
            for (let i = 0; i < msg.q.length; i++) items[i] = { prepared: msg.out[i]!, subject: msg.d[msg.s[i]!]!, payload: bad.get(i) ?? EMPTY };
            try {
              merge.push(p, msg.q, items, msg.complete);
            } catch (e) {
              this.ctx.fault(`input partition ${p}: ${(e as Error).message}`);
              return;
            }
            this.lanes[p]!.completes.push(msg.complete);
            this.wake();
          },
        }),
      );
    }
    await this.nc.flush();
    this.heard.fill(Date.now());
    for (let p = 0; p < this.partitions; p++) this.control(p, { t: 'open', after, ...(endSeq !== undefined ? { end: endSeq } : {}) });
    // A source sends at least a keepalive every second; one that the merge waits for and that has
    // gone silent lost a message (or its instance is cut off): no later message would show the gap.
    if (this.silenceMs > 0) {
      this.watch = setInterval(() => {
        const now = Date.now();
        for (let p = 0; p < this.partitions; p++) {
          if (merge.completeOf(p) > merge.position || now - this.heard[p]! <= this.silenceMs) continue;
          clearInterval(this.watch);
          this.ctx.fault(`the source of input partition ${p} sent nothing for ${this.silenceMs} ms while the merge waited for it (a lost message, or its instance cut off)`);
          return;
        }
      }, Math.min(1000, this.silenceMs));
      this.watch.unref();
    }
    return this.batches(endSeq);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.watch);
    for (const s of this.subs) s.unsubscribe();
    this.wake();
  }

  private control(p: number, msg: InputControlMsg): void {
    const subject = this.subj.inputControl(p);
    const sealed = this.sealer.seal(subject, msg);
    // Fault point of the channel tests: sealed (numbered) but never sent — the source waits for ever unless its silence is noticed.
    if (faultDrop('drop-input-control')) return;
    this.pub.publish(subject, sealed);
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }

  private async *batches(endSeq?: number): AsyncGenerator<InputBatch> {
    const merge = this.merge!;
    for (;;) {
      if (this.closed) return;
      if (endSeq !== undefined && merge.position >= endSeq) return;
      const run = merge.take(endSeq ?? Infinity);
      if (!run.seqs.length && !run.gaps.length) {
        await new Promise<void>((r) => (this.waiter = r));
        continue;
      }
      this.credit(merge.position);
      const strays = run.gaps.length ? await this.lookUp(run.gaps) : [];
      if (this.closed) return;
      const batch = this.batch(run.seqs, run.items, strays);
      if (batch.seqs.length) yield batch;
    }
  }

  /** Tells each partition's source how many of its messages the merge has passed. */
  private credit(position: number): void {
    for (let p = 0; p < this.partitions; p++) {
      const lane = this.lanes[p]!;
      let k = 0;
      while (k < lane.completes.length && lane.completes[k]! <= position) k++;
      if (!k) continue;
      lane.completes.splice(0, k);
      lane.taken += k;
      this.control(p, { t: 'credit', n: lane.taken });
    }
  }

  /** The messages stored at sequences no partition delivered (deleted ones are skipped). */
  private async lookUp(gaps: Array<[number, number]>): Promise<Array<{ seq: number; item: Item }>> {
    const out: Array<{ seq: number; item: Item }> = [];
    for (const [from, to] of gaps) {
      for (let seq = from; seq <= to && !this.closed; seq++) {
        try {
          const m = await this.jsm.streams.getMessage(this.stream, { seq });
          this.strays.found++;
          out.push({ seq, item: { prepared: this.compiled.prepare(m.data, m.subject, seq), subject: m.subject, payload: m.data } });
        } catch (e) {
          if (apiErrorCode(e) !== NO_MESSAGE_FOUND) throw e;
          this.strays.deleted++;
        }
      }
    }
    return out;
  }

  /** The merged records and the strays found among them, in input order, as the source actor reads them. */
  private batch(seqs: number[], items: Item[], strays: Array<{ seq: number; item: Item }>): InputBatch {
    const n = seqs.length + strays.length;
    const data: Uint8Array[] = new Array(n);
    const subjects: string[] = new Array(n);
    const prepared: Prepared[] = new Array(n);
    const all: number[] = new Array(n);
    let i = 0;
    let j = 0;
    for (let k = 0; k < n; k++) {
      const fromMerge = j >= strays.length || (i < seqs.length && seqs[i]! < strays[j]!.seq);
      const seq = fromMerge ? seqs[i]! : strays[j]!.seq;
      const item = fromMerge ? items[i++]! : strays[j++]!.item;
      all[k] = seq;
      data[k] = item.payload;
      subjects[k] = item.subject;
      prepared[k] = item.prepared;
    }
    return {
      data,
      subjects,
      seqs: all,
      prepared,
      endAt(endSeq: number): number {
        for (let k = 0; k < n; k++) if (all[k]! >= endSeq) return k;
        return -1;
      },
    };
  }
}
