// The input adapter: ensures the JetStream input stream exists and reads it in order from a given
// sequence. No server-side progress: progress lives in checkpoints. The stream is read with an
// ephemeral pull consumer (no acks) on one core subscription, with the least work per message:
// no JsMsg, no promise, no parse of the reply subject that carries a message's sequences — that
// subject is read for the last message of each batch, and for every message only when the batch
// is not contiguous (deleted messages) or reaches the end of input.

import { AckPolicy, DeliverPolicy, createInbox, nanos, type JetStreamManager, type Msg, type NatsConnection, type Subscription } from 'nats';
import { randomBytes } from 'node:crypto';
import { TidemarkError } from '../errors.js';
import { isStreamNotFound } from './nats-errors.js';
import { inputConsumerName, jsPullSubject } from './subjects.js';
import type { Prepared } from '../runtime/compiled-job.js';

/**
 * Replicas of `stream` (1 when it is missing or cannot be read): the job's own buckets (lock,
 * leases, group state) are replicated like its input, so a cluster that survives losing a node for
 * the input survives it for them too.
 */
export async function streamReplicas(nc: NatsConnection, stream: string): Promise<number> {
  return nc
    .jetstreamManager()
    .then((jsm) => jsm.streams.info(stream))
    .then((i) => i.config.num_replicas || 1)
    .catch(() => 1);
}

/** Creates the input stream when missing; returns its last sequence now. */
export async function ensureStream(jsm: JetStreamManager, name: string, subjects: string[]): Promise<{ lastSeq: number; firstSeq: number; created: boolean }> {
  try {
    const info = await jsm.streams.info(name);
    return { lastSeq: info.state.last_seq, firstSeq: info.state.first_seq, created: false };
  } catch (e) {
    if (!isStreamNotFound(e)) {
      throw new TidemarkError('NATS_UNAVAILABLE', `cannot read stream ${name}: ${(e as Error).message}`, { cause: e });
    }
  }
  try {
    await jsm.streams.add({ name, subjects });
  } catch (e) {
    throw new TidemarkError('BAD_CONFIG', `cannot create input stream ${name} on ${subjects.join(',')}: ${(e as Error).message}`, { cause: e });
  }
  return { lastSeq: 0, firstSeq: 0, created: true };
}

/** What the reply subject of a JetStream message says: its stream and consumer sequences, and what is pending after it. */
export interface AckInfo {
  streamSeq: number;
  consumerSeq: number;
  pending: number;
}

/**
 * Reads `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>` (and the form with
 * a domain and an account hash after `ACK`); undefined when `reply` is not one.
 */
export function parseAckReply(reply: string): AckInfo | undefined {
  const t = reply.split('.');
  const o = t.length === 9 ? 0 : t.length >= 11 ? 2 : -1;
  if (o < 0 || t[0] !== '$JS' || t[1] !== 'ACK') return undefined;
  const streamSeq = Number(t[5 + o]);
  const consumerSeq = Number(t[6 + o]);
  const pending = Number(t[8 + o]);
  if (!Number.isSafeInteger(streamSeq) || !Number.isSafeInteger(consumerSeq) || !Number.isSafeInteger(pending)) return undefined;
  return { streamSeq, consumerSeq, pending };
}

/** Messages read from the input, in stream order. */
export interface InputBatch {
  data: Uint8Array[];
  subjects: string[];
  seqs: number[];
  /** Each message already prepared (a group's partitioned input, prepared where it was read); absent: the source prepares them. */
  prepared?: Prepared[];
  /**
   * Index of the first message whose sequence is `endSeq` or later, or after which nothing was
   * pending in the stream (the end of a drain); -1 when there is none.
   */
  endAt(endSeq: number): number;
}

/** Outstanding pull requests expire after this; the server tells what they did not deliver. */
const PULL_EXPIRES_MS = 30_000;
/** The server sends a heartbeat this often while a pull request waits (by default). */
const HEARTBEAT_MS = 5_000;
/** Pull requests outstanding with nothing heard for this many heartbeats: the consumer is gone. */
const MISSED_HEARTBEATS = 3;

/** Reads the stream in sequence order starting after `afterSeq`. */
export class JetStreamSource {
  private sub?: Subscription;
  private consumer?: string;
  private data: Uint8Array[] = [];
  private subjects: string[] = [];
  private replies: string[] = [];
  /** Messages asked for and not yet received. */
  private pending = 0;
  private max = 1000;
  /** Stream and consumer sequence of the last message handed out. */
  private lastSeq = 0;
  private lastConsumerSeq = 0;
  private waiter?: () => void;
  private closed = false;
  private failure?: Error;
  private heard = false;
  private silent = 0;
  private timer?: NodeJS.Timeout;
  private resetting = false;
  private readonly pullSubject: (consumer: string) => string;

  constructor(
    private readonly nc: NatsConnection,
    private readonly jsm: JetStreamManager,
    private readonly stream: string,
    /** `heartbeatMs`: how often the server sends a heartbeat while a pull request waits; `filter`: read only the messages on this subject (one input partition) */
    private readonly opts: { heartbeatMs?: number; filter?: string } = {},
  ) {
    const prefix = jsm.getOptions().apiPrefix ?? '$JS.API';
    this.pullSubject = (consumer) => jsPullSubject(prefix, stream, consumer);
  }

  private get heartbeatMs(): number {
    return this.opts.heartbeatMs ?? HEARTBEAT_MS;
  }

  /** Starts consuming after `afterSeq`; iterate the result (a drain's end is found by the batches' endAt). */
  async open(afterSeq: number, maxMessages = 1000): Promise<AsyncIterable<InputBatch>> {
    this.max = Math.max(1, maxMessages);
    this.lastSeq = afterSeq;
    await this.start();
    this.timer = setInterval(() => this.checkAlive(), this.heartbeatMs);
    this.timer.unref();
    return this.batches();
  }

  /** Sequence of the last message handed out (or the one reading started after). */
  get handedOut(): number {
    return this.lastSeq;
  }

  /**
   * With nothing buffered and nothing in flight: the stream's last sequence when every message this
   * source reads up to it has been handed out (for a filtered source: its partition is complete up
   * to there), else undefined. The stream's last sequence is read before the consumer's state, so a
   * message stored in between is counted as pending, never missed.
   */
  async caughtUp(): Promise<number | undefined> {
    const consumer = this.consumer;
    if (!consumer || this.data.length || this.closed || this.resetting) return undefined;
    const last = (await this.jsm.streams.info(this.stream)).state.last_seq;
    const ci = await this.jsm.consumers.info(this.stream, consumer);
    // (A filtered consumer's delivered stream sequence runs ahead over the messages it skips: its consumer sequence tells what it sent.)
    if (consumer !== this.consumer || this.data.length || ci.num_pending > 0 || ci.delivered.consumer_seq > this.lastConsumerSeq) return undefined;
    return Math.max(last, this.lastSeq);
  }

  /** Stops consuming. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    this.drop();
    this.wake();
  }

  private async *batches(): AsyncGenerator<InputBatch> {
    for (;;) {
      while (this.data.length === 0 && !this.closed && !this.failure) await new Promise<void>((r) => (this.waiter = r));
      if (this.failure) throw this.failure;
      if (this.closed) return;
      const b = this.take();
      if (b) yield b;
    }
  }

  /** A new consumer starting right after the last message handed out, read on a new inbox. */
  private async start(): Promise<void> {
    const name = inputConsumerName(randomBytes(4).toString('hex'));
    const start = this.lastSeq + 1;
    await this.jsm.consumers.add(this.stream, {
      name,
      ack_policy: AckPolicy.None,
      ...(start > 1 ? { deliver_policy: DeliverPolicy.StartSequence, opt_start_seq: start } : { deliver_policy: DeliverPolicy.All }),
      ...(this.opts.filter ? { filter_subject: this.opts.filter } : {}),
      mem_storage: true,
      num_replicas: 1,
      inactive_threshold: nanos(5 * 60_000),
    });
    if (this.closed) {
      this.jsm.consumers.delete(this.stream, name).catch(() => undefined);
      return;
    }
    this.consumer = name;
    this.lastConsumerSeq = 0;
    this.pending = 0;
    this.sub = this.nc.subscribe(createInbox(), { callback: (err, m) => this.onMessage(err, m) });
    this.refill();
  }

  private onMessage(err: Error | null, m: Msg): void {
    if (err) {
      this.fail(err);
      return;
    }
    const r = m.reply;
    if (r === undefined || !r.startsWith('$JS.ACK.')) {
      this.onStatus(m);
      return;
    }
    this.data.push(m.data);
    this.subjects.push(m.subject);
    this.replies.push(r);
    if (this.pending > 0) this.pending--;
    this.heard = true;
    this.wake();
  }

  /** Heartbeats, and pull requests that expired or were cut short (with what they did not deliver). */
  private onStatus(m: Msg): void {
    this.heard = true;
    const code = m.headers?.code ?? 0;
    if (code === 100) return;
    if (code === 404 || code === 408 || code === 409) {
      const left = Number(m.headers?.get('Nats-Pending-Messages'));
      this.pending = Number.isSafeInteger(left) && left > 0 ? Math.max(0, this.pending - left) : 0;
      if (code === 409 && /consumer (is )?deleted|push based/i.test(m.headers?.description ?? '')) this.reset();
      else this.refill();
      return;
    }
    // JetStream did not answer (no responders) or refused: try again with a new consumer.
    this.reset();
  }

  /** Asks for more when what is buffered and asked for falls to half the window. */
  private refill(): void {
    if (this.closed || this.resetting || !this.consumer) return;
    const want = this.max - this.pending - this.data.length;
    if (this.pending + this.data.length > this.max / 2 || want <= 0) return;
    this.pending += want;
    this.nc.publish(this.pullSubject(this.consumer), JSON.stringify({ batch: want, expires: nanos(PULL_EXPIRES_MS), idle_heartbeat: nanos(this.heartbeatMs) }), { reply: this.sub!.getSubject() });
  }

  /** Hands out what arrived; checks the sequences (a gap: the rest is read again from a new consumer). */
  private take(): InputBatch | undefined {
    const data = this.data;
    const subjects = this.subjects;
    const replies = this.replies;
    this.data = [];
    this.subjects = [];
    this.replies = [];
    let n = data.length;
    const last = parseAckReply(replies[n - 1]!);
    let seqs: number[];
    let pendings: number[] | undefined;
    let lastPending: number;
    if (last && last.consumerSeq === this.lastConsumerSeq + n && last.streamSeq === this.lastSeq + n) {
      // Contiguous: every sequence follows from the last one's.
      seqs = new Array<number>(n);
      for (let i = 0; i < n; i++) seqs[i] = this.lastSeq + 1 + i;
      lastPending = last.pending;
      this.lastConsumerSeq = last.consumerSeq;
    } else {
      seqs = [];
      pendings = [];
      let gap = false;
      for (let i = 0; i < n; i++) {
        const a = parseAckReply(replies[i]!);
        if (!a || a.consumerSeq !== this.lastConsumerSeq + 1 || a.streamSeq <= (seqs[i - 1] ?? this.lastSeq)) {
          gap = true;
          n = i;
          break;
        }
        this.lastConsumerSeq = a.consumerSeq;
        seqs.push(a.streamSeq);
        pendings.push(a.pending);
      }
      lastPending = pendings[n - 1] ?? 1;
      if (gap) {
        data.length = n;
        subjects.length = n;
        replies.length = n;
        // Messages were lost between the server and here: read on from the last good one.
        if (n > 0) this.lastSeq = seqs[n - 1]!;
        this.reset();
      }
    }
    if (n > 0) this.lastSeq = seqs[n - 1]!;
    this.refill();
    if (n === 0) return undefined;
    return {
      data,
      subjects,
      seqs,
      endAt(endSeq: number): number {
        if (seqs[n - 1]! < endSeq && lastPending > 0) return -1;
        pendings ??= replies.map((r) => parseAckReply(r)?.pending ?? 1);
        for (let i = 0; i < n; i++) if (seqs[i]! >= endSeq || pendings[i] === 0) return i;
        return -1;
      },
    };
  }

  /** Pull requests outstanding and nothing heard for several heartbeats: a new consumer. */
  private checkAlive(): void {
    if (this.heard || this.pending === 0) {
      this.heard = false;
      this.silent = 0;
      return;
    }
    if (++this.silent >= MISSED_HEARTBEATS) this.reset();
  }

  /** Drops the consumer and what it delivered beyond the last message handed out; reads on from there. */
  private reset(): void {
    if (this.resetting || this.closed) return;
    this.resetting = true;
    this.silent = 0;
    this.drop();
    this.start().then(
      () => {
        this.resetting = false;
        this.refill();
      },
      (e: unknown) => {
        this.resetting = false;
        this.fail(e as Error);
      },
    );
  }

  private drop(): void {
    this.sub?.unsubscribe();
    this.sub = undefined;
    this.data = [];
    this.subjects = [];
    this.replies = [];
    this.pending = 0;
    if (this.consumer) this.jsm.consumers.delete(this.stream, this.consumer).catch(() => undefined);
    this.consumer = undefined;
  }

  private fail(e: Error): void {
    this.failure ??= e;
    this.wake();
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = undefined;
    w?.();
  }
}
