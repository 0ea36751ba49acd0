// The source of one input partition in a group (`--input-partitions` > 1, two or more instances):
// on whichever instance the generation's plan puts it, it reads its partition of the input stream
// (a filtered consumer), prepares each post (decode, validate, keys, score: most of a post's cost)
// and sends the prepared records, in order, to the coordinator's merge (merged-input.ts), which puts
// the partitions back into the input's order. It says how far its partition is complete with every
// message, and when its partition is quiet, by asking JetStream (caughtUp), so that the merge never
// waits on a partition that has nothing to send.

import type { JetStreamManager, NatsConnection, Subscription } from 'nats';
import { Opener, Sealer, SENDER, readerSender, receive, type ChannelContext } from '../io/channel.js';
import { ChunkingPublisher } from '../io/framing.js';
import { subjectDictionary } from '../io/payload-pack.js';
import { JetStreamSource } from '../io/jetstream-source.js';
import { subjectsFor } from '../io/subjects.js';
import { faultDrop } from '../io/fault.js';
import type { Prepared } from '../runtime/compiled-job.js';
import type { Preparer } from '../io/remote-prepare.js';
import { checkInputControlMsg } from './message-checks.js';
import type { InputMsg } from './messages.js';

/** Messages a partition's source may send beyond the merge's credit. */
export const INPUT_WINDOW = 8;
/** How often a quiet partition's source asks JetStream how far its partition is complete (ms). */
export const PROGRESS_MS = 50;
/** A source that has sent nothing for this long sends an empty message: the merge hears it is alive, and a lost message shows as a gap. */
export const KEEPALIVE_MS = 1000;
/** A source the merge waits for that is silent this long (ten keepalives missed; at most --checkpoint-timeout) restarts the generation. */
export const INPUT_SILENCE_MS = 10_000;

export interface InputReaderOptions {
  job: string;
  stream: string;
  /** the subject filter that reads this partition alone */
  filter: string;
  partition: number;
  batchSize: number;
  /** prepares the partition's posts (decode, validate, keys, score): inline or on the process's worker threads (`--scoring-threads`) */
  preparer: Preparer;
}

export class InputReader {
  private readonly subj: ReturnType<typeof subjectsFor>;
  private readonly sealer: Sealer;
  private readonly pub: ChunkingPublisher;
  private sub?: Subscription;
  private source?: JetStreamSource;
  private sent = 0;
  private credit = 0;
  private creditWaiter?: () => void;
  /** The partition holds nothing else up to here, as sent. */
  private complete = 0;
  /** Sequence of the last record sent. */
  private lastSent = 0;
  private asking = false;
  /** When the last batch of the partition's messages arrived (ms): a partition that has them asks nothing. */
  private lastBatchAt = 0;
  /** When the last message went to the merge (ms). */
  private lastSentAt = 0;
  private timer?: NodeJS.Timeout;
  private stopped = false;
  private end?: number;
  /** Batches read and being prepared, oldest first: each is sent once it and those before it are. */
  private readonly outstanding: Promise<void>[] = [];
  private sending: Promise<void> = Promise.resolve();

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly ctx: ChannelContext,
    private readonly opts: InputReaderOptions,
  ) {
    this.subj = subjectsFor(opts.job);
    this.sealer = new Sealer(ctx.key, readerSender(opts.partition));
    this.pub = new ChunkingPublisher(nc);
  }

  /** Waits for the merge's `open` (where to start); call before the generation's hello. */
  listen(): void {
    const subject = this.subj.inputControl(this.opts.partition);
    const inbox = new Opener(this.ctx.key, subject, (from) => from === SENDER.source);
    this.sub = this.nc.subscribe(subject, {
      callback: (err, m) => {
        if (err || this.stopped) return;
        const msg = receive(this.ctx, inbox, m.data, checkInputControlMsg)?.msg;
        if (!msg) return;
        if (msg.t === 'credit') {
          this.credit = Math.max(this.credit, msg.n);
          this.creditWaiter?.();
        } else if (!this.source) {
          this.run(msg.after, msg.end).catch((e: unknown) => this.fail(`input partition ${this.opts.partition}: ${(e as Error).message}`));
        }
      },
    });
  }

  stop(): void {
    this.stopped = true;
    clearInterval(this.timer);
    this.sub?.unsubscribe();
    this.creditWaiter?.();
    void this.source?.close();
  }

  private fail(why: string): void {
    if (this.stopped) return;
    this.publish({ t: 'fail', why });
    this.stop();
  }

  private async run(after: number, end?: number): Promise<void> {
    this.complete = after;
    this.lastSent = after;
    this.end = end;
    const source = new JetStreamSource(this.nc, this.jsm, this.opts.stream, { filter: this.opts.filter });
    this.source = source;
    const batches = await source.open(after, Math.max(this.opts.batchSize, 256));
    this.timer = setInterval(() => this.progress(), PROGRESS_MS);
    this.timer.unref();
    for await (const b of batches) {
      if (this.stopped) return;
      this.lastBatchAt = Date.now();
      let n = b.data.length;
      let done = false;
      if (end !== undefined) {
        // Drain: the records up to `end`; a partition with nothing pending is complete up to there.
        const i = b.endAt(end);
        if (i >= 0) {
          n = b.seqs[i]! > end ? i : i + 1;
          done = true;
        }
      }
      const q = b.seqs.slice(0, n);
      const subjects = b.subjects.slice(0, n);
      const data = b.data.slice(0, n);
      // Preparing starts now (on a worker thread when the process has them) while the next batch is
      // read; sending keeps the order: each batch goes once those before it have.
      const prepared = n ? this.opts.preparer.prepare(data, subjects, q) : Promise.resolve<Prepared[]>([]);
      const complete = done ? Math.max(end!, q[n - 1] ?? 0, this.complete) : (q[n - 1] ?? this.complete);
      const sent = (this.sending = this.sending.then(async () => {
        const out = await prepared;
        await this.window();
        if (this.stopped) return;
        const { d, s } = subjectDictionary(subjects);
        const bad: Array<[number, Uint8Array]> = [];
        for (let i = 0; i < out.length; i++) if (!out[i]!.ok) bad.push([i, data[i]!]);
        this.send(q, d, s, out, bad, complete);
      }));
      this.outstanding.push(sent);
      void sent.finally(() => this.outstanding.splice(this.outstanding.indexOf(sent), 1)).catch(() => undefined);
      if (done) {
        await this.sending;
        return this.finish();
      }
      // As many batches being prepared as the preparer takes at once (one inline), no more.
      while (this.outstanding.length > Math.max(1, this.opts.preparer.threads) && !this.stopped) await this.outstanding[0];
    }
    await this.sending;
  }

  /** Waits until a message may be sent within the merge's credit. */
  private async window(): Promise<void> {
    while (!this.stopped && this.sent - this.credit >= INPUT_WINDOW) await new Promise<void>((r) => (this.creditWaiter = r));
  }

  private send(q: number[], d: string[], s: number[], out: Prepared[], bad: Array<[number, Uint8Array]>, complete: number): void {
    this.complete = Math.max(this.complete, complete);
    if (q.length) this.lastSent = q[q.length - 1]!;
    this.lastSentAt = Date.now();
    this.publish({ t: 'in', n: ++this.sent, complete: this.complete, q, d, s, out, bad });
  }

  private publish(msg: InputMsg): void {
    const subject = this.subj.input(this.opts.partition);
    const sealed = this.sealer.seal(subject, msg);
    // Fault point of the channel tests: the message is sealed (numbered) but never sent.
    if (msg.t === 'in' && faultDrop('drop-input')) return;
    this.pub.publish(subject, sealed);
  }

  private finish(): void {
    clearInterval(this.timer);
    void this.source?.close();
  }

  /** A quiet partition: how far is it complete now? Sent only when nothing read is still unsent. */
  private progress(): void {
    const source = this.source;
    if (this.asking || this.stopped || !source || this.sent - this.credit >= INPUT_WINDOW) return;
    // A partition whose messages keep coming says how far it is complete with each of them; asking
    // JetStream costs the server a count over the stream for the filter, so only a quiet one asks.
    if (source.handedOut !== this.lastSent || Date.now() - this.lastBatchAt < PROGRESS_MS) return;
    this.asking = true;
    source
      .caughtUp()
      .then((upTo) => {
        this.asking = false;
        // Checked again at once before sending: a batch handed out meanwhile and not sent yet holds
        // records at or below `upTo`, and the merge must have them before it hears "complete".
        if (upTo === undefined || this.stopped || source.handedOut !== this.lastSent || this.sent - this.credit >= INPUT_WINDOW) return;
        const end = this.end;
        const bound = end !== undefined ? Math.min(upTo, end) : upTo;
        if (bound <= this.complete) {
          if (Date.now() - this.lastSentAt >= KEEPALIVE_MS) this.send([], [], [], [], [], this.complete);
          return;
        }
        this.send([], [], [], [], [], bound);
        if (end !== undefined && bound >= end) this.finish();
      })
      .catch((e: unknown) => {
        this.asking = false;
        // A NATS hiccup while asking: ask again at the next tick; the consumer itself reports real failures.
        void e;
      });
  }
}
