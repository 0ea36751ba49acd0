// Output adapters with an explicit lifecycle: open (recover to the checkpointed progress),
// write, snapshot (progress at a barrier, made durable asynchronously), flush, close.

import { openSync, writeSync, fsyncSync, fdatasync, closeSync, ftruncateSync, fstatSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { type JetStreamClient, type JetStreamManager, type NatsConnection, type PubAck } from 'nats';
import { TidemarkError } from '../errors.js';
import type { SinkSpec } from './sink-spec.js';
import type { Logger } from '../log.js';
import { PostgresSink, type SinkRole } from './postgres-sink.js';
import { apiErrorCode, isStreamNotFound, isTransientNatsError } from './nats-errors.js';
import { subjectMatches } from './subjects.js';

/** Stored messages read back at once when a JetStream sink recovers. */
const SCAN_WINDOW = 256;
/** JetStream API error: no message at that sequence (deleted). */
const NO_MESSAGE_FOUND = 10037;

/** Anything a sink writes: every record has a stable id. */
export interface OutRecord {
  id: string;
}

/**
 * A JetStream sink's progress: every message up to `lastSeq` was looked at; those the checkpoint
 * does not cover are listed in `pending` (ranges of sequences, inclusive): records a failed run
 * stored that are produced again after this checkpoint.
 */
export interface JetStreamProgress {
  lastSeq: number;
  pending?: Array<[number, number]>;
}

/** Progress a sink needs to recover exactly: written into each checkpoint. */
export type SinkProgress = { offset: number } | JetStreamProgress | { checkpoint: number } | Record<string, never>;

/** A sink of records. */
export interface Sink {
  readonly name: string;
  /** Recovers to `progress` (undefined: nothing was checkpointed yet). */
  open(progress: SinkProgress | undefined): Promise<void>;
  /** Writes records; may apply backpressure by returning a promise. */
  write(records: readonly OutRecord[]): Promise<void> | void;
  /**
   * Captures the progress at a checkpoint barrier (synchronously: it covers exactly what was written
   * so far) and returns a promise that resolves once that much is durable. Writing may go on meanwhile.
   * `cp` is the checkpoint's id (a transactional sink commits it with the records).
   */
  snapshot(cp?: number): Promise<SinkProgress>;
  /** Makes everything written durable; returns the progress. */
  flush(): Promise<SinkProgress>;
  close(): Promise<void>;
  /** Records written since start. */
  readonly written: number;
}

const enc = new TextEncoder();

/** Bytes of the buffers records are serialised into (one buffer for many records). */
const JSON_CHUNK = 64 * 1024;

/**
 * Each record as JSON bytes: views of a few shared buffers rather than one buffer per record (a
 * watermark step hands on hundreds of results at once). A buffer is never written again once its
 * views are handed out: nats.js keeps them until it flushes.
 */
export function jsonBytes(records: readonly OutRecord[]): Buffer[] {
  const out: Buffer[] = new Array(records.length);
  let buf = Buffer.allocUnsafe(0);
  let at = 0;
  for (let i = 0; i < records.length; i++) {
    const text = JSON.stringify(records[i]);
    // UTF-8 takes at most 3 bytes per UTF-16 code unit. A new buffer has room for the records still
    // to come if they are like this one, up to JSON_CHUNK (a write of one record takes ~1 KiB, not 64).
    const room = text.length * 3;
    if (buf.length - at < room) {
      buf = Buffer.allocUnsafe(Math.max(room, Math.min(JSON_CHUNK, room * (records.length - i))));
      at = 0;
    }
    const n = buf.write(text, at, 'utf8');
    out[i] = buf.subarray(at, at + n);
    at += n;
  }
  return out;
}

/** JSON lines in a file; exactly-once by truncating back to the checkpointed offset. */
export class JsonlSink implements Sink {
  private fd = -1;
  private offset = 0;
  private chunks: string[] = [];
  private pendingBytes = 0;
  written = 0;

  constructor(readonly path: string) {}

  get name(): string {
    return `jsonl:${this.path}`;
  }

  async open(progress: SinkProgress | undefined): Promise<void> {
    mkdirSync(dirname(this.path), { recursive: true });
    this.fd = openSync(this.path, 'a+');
    const size = fstatSync(this.fd).size;
    const target = progress && 'offset' in progress ? progress.offset : 0;
    if (size < target) {
      throw new TidemarkError('STATE_INCOMPATIBLE', `${this.name}: file is ${size} bytes but the checkpoint says ${target} were written; it was changed outside Tidemark (use --reset-state to start over)`);
    }
    // The bytes after the checkpoint were written by a run that did not finish: they are produced again.
    if (size > target) ftruncateSync(this.fd, target);
    this.offset = target;
  }

  write(records: readonly OutRecord[]): void {
    for (const r of records) {
      const line = JSON.stringify(r) + '\n';
      this.chunks.push(line);
      this.pendingBytes += line.length;
    }
    this.written += records.length;
    if (this.pendingBytes > 1 << 16) this.writeOut();
  }

  snapshot(): Promise<SinkProgress> {
    this.writeOut();
    const offset = this.offset;
    const fd = this.fd;
    return new Promise((resolve, reject) => fdatasync(fd, (err) => (err ? reject(err) : resolve({ offset }))));
  }

  async flush(): Promise<SinkProgress> {
    this.writeOut();
    fsyncSync(this.fd);
    return { offset: this.offset };
  }

  async close(): Promise<void> {
    if (this.fd < 0) return;
    this.writeOut();
    closeSync(this.fd);
    this.fd = -1;
  }

  private writeOut(): void {
    if (this.chunks.length === 0) return;
    const buf = enc.encode(this.chunks.join(''));
    let done = 0;
    while (done < buf.length) done += writeSync(this.fd, buf, done, buf.length - done, this.offset + done);
    this.offset += buf.length;
    this.chunks = [];
    this.pendingBytes = 0;
  }
}

/** Core NATS subject: at-least-once; consumers deduplicate on the record id. */
export class NatsSubjectSink implements Sink {
  written = 0;

  constructor(
    private readonly nc: NatsConnection,
    readonly subject: string,
  ) {}

  get name(): string {
    return `nats:${this.subject}`;
  }

  async open(): Promise<void> {}

  write(records: readonly OutRecord[]): void {
    for (const bytes of jsonBytes(records)) this.nc.publish(this.subject, bytes);
    this.written += records.length;
  }

  async snapshot(): Promise<SinkProgress> {
    await this.nc.flush();
    return {};
  }

  async flush(): Promise<SinkProgress> {
    await this.nc.flush();
    return {};
  }

  async close(): Promise<void> {}
}

/** Sorted sequences as inclusive ranges. */
function toRanges(seqs: number[]): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  for (const q of seqs) {
    const last = out[out.length - 1];
    if (last && q === last[1] + 1) last[1] = q;
    else out.push([q, q]);
  }
  return out;
}

/** The sequences of `pending` ranges, checked (a checkpoint written by Tidemark holds sorted ranges at or below `lastSeq`). */
function fromRanges(name: string, pending: unknown, lastSeq: number): number[] {
  if (pending === undefined) return [];
  const bad = (): never => {
    throw new TidemarkError('STATE_CORRUPT', `${name}: the checkpoint's list of records to skip is malformed; use --reset-state to start over`);
  };
  if (!Array.isArray(pending)) bad();
  const out: number[] = [];
  let prev = 0;
  for (const r of pending as unknown[]) {
    if (!Array.isArray(r) || r.length !== 2) bad();
    const [a, b] = r as unknown[];
    if (!Number.isSafeInteger(a) || !Number.isSafeInteger(b) || (a as number) <= prev || (b as number) < (a as number) || (b as number) > lastSeq) bad();
    for (let q = a as number; q <= (b as number); q++) out.push(q);
    prev = b as number;
  }
  return out;
}

/**
 * JetStream stream: Nats-Msg-Id = record id, plus a read-back of what a failed run already stored.
 *
 * Exactly once across kills, whatever JetStream's duplicate window: on open, the messages a failed
 * run stored after the checkpoint are read back and their ids skipped when produced again. A
 * record read back may come after a later checkpoint of this run (partitions reach the sink in a
 * different order each run), so each checkpoint lists the read-back records still to come
 * (`pending`) and the next run reads those back too; `lastSeq` is past everything looked at.
 */
export class JetStreamSink implements Sink {
  private inflight: Promise<PubAck>[] = [];
  private lastSeq = 0;
  /** Read-back records not yet produced again: id → stream sequence. */
  private skip = new Map<string, number>();
  private subject: string;
  written = 0;

  constructor(
    private readonly js: JetStreamClient,
    private readonly jsm: JetStreamManager,
    readonly stream: string,
    subject: string,
    private readonly maxInflight = 2000,
  ) {
    this.subject = subject;
  }

  get name(): string {
    return `jetstream:${this.stream}`;
  }

  /** Read-back records still to be produced again (for tests and the log). */
  get skipping(): number {
    return this.skip.size;
  }

  async open(progress: SinkProgress | undefined): Promise<void> {
    let info;
    try {
      info = await this.jsm.streams.info(this.stream);
    } catch (e) {
      // Only "stream not found" means missing: a timeout while a cluster elects a leader must not create a second stream.
      if (!isStreamNotFound(e)) throw new TidemarkError('NATS_UNAVAILABLE', `${this.name}: cannot look the stream up: ${(e as Error).message}`, { cause: e });
      try {
        info = await this.jsm.streams.add({ name: this.stream, subjects: [this.subject] });
      } catch (e2) {
        if (isTransientNatsError(e2)) throw new TidemarkError('NATS_UNAVAILABLE', `${this.name}: cannot create the stream: ${(e2 as Error).message}`, { cause: e2 });
        throw new TidemarkError('BAD_CONFIG', `${this.name}: cannot create the stream on ${this.subject}: ${(e2 as Error).message}`, { cause: e2 });
      }
    }
    const subjects = info.config.subjects ?? [];
    if (!subjects.some((p) => subjectMatches(p, this.subject))) {
      if (subjects.length === 1 && !/[*>]/.test(subjects[0]!)) this.subject = subjects[0]!;
      else throw new TidemarkError('BAD_CONFIG', `jetstream:${this.stream}: the stream does not take subject ${this.subject}; use jetstream:${this.stream}:SUBJECT`);
    }
    const from = progress && 'lastSeq' in progress ? progress.lastSeq : 0;
    const pending = progress && 'lastSeq' in progress ? fromRanges(this.name, progress.pending, from) : [];
    // Records stored after the checkpoint by a failed run, and those an earlier read-back found that
    // are still to come: produced again, so skip them (JetStream's own deduplication only covers its
    // duplicate window).
    const last = info.state.last_seq;
    // Stored message by stored message, each a request with a timeout: a scan during a failover
    // fails within a bounded time (and the job retries) instead of waiting on a consumer that is re-created forever.
    const windows = function* (): Generator<number[]> {
      for (let i = 0; i < pending.length; i += SCAN_WINDOW) yield pending.slice(i, i + SCAN_WINDOW);
      for (let seq = from + 1; seq <= last; seq += SCAN_WINDOW) yield Array.from({ length: Math.min(SCAN_WINDOW, last - seq + 1) }, (_, i) => seq + i);
    };
    for (const window of windows()) {
      const msgs = await Promise.all(
        window.map((q) =>
          this.jsm.streams.getMessage(this.stream, { seq: q }).catch((e: unknown) => {
            if (apiErrorCode(e) === NO_MESSAGE_FOUND) return undefined;
            throw new TidemarkError('NATS_UNAVAILABLE', `${this.name}: cannot read back message ${q} of the stream: ${(e as Error).message}`, { cause: e });
          }),
        ),
      );
      for (const m of msgs) {
        const id = m && m.subject === this.subject ? m.header?.get('Nats-Msg-Id') : undefined;
        if (id && !this.skip.has(id)) this.skip.set(id, m!.seq);
      }
    }
    // Everything up to `last` has been looked at: what of it is still to come is in `skip`.
    this.lastSeq = Math.max(from, last);
  }

  async write(records: readonly OutRecord[]): Promise<void> {
    const fresh = this.skip.size ? records.filter((r) => !this.skip.delete(r.id)) : records;
    const bytes = jsonBytes(fresh);
    for (let i = 0; i < fresh.length; i++) {
      const ack = this.js.publish(this.subject, bytes[i], { msgID: fresh[i]!.id });
      // A failed publish (a timeout during a failover) is reported where the acks are awaited, not as an unhandled rejection.
      ack.catch(() => undefined);
      this.inflight.push(ack);
      if (this.inflight.length >= this.maxInflight) await this.settle();
    }
    this.written += records.length;
  }

  snapshot(): Promise<SinkProgress> {
    // The acks of what was published before the barrier; later publishes do not delay it.
    const before = this.inflight;
    const base = this.lastSeq;
    this.inflight = [];
    // The read-back records not produced again before the barrier come after it on a restart from this checkpoint.
    const pending = this.skip.size ? toRanges([...this.skip.values()].sort((a, b) => a - b)) : undefined;
    return Promise.all(before).then((acks) => {
      let seq = base;
      for (const a of acks) if (a.seq > seq) seq = a.seq;
      if (seq > this.lastSeq) this.lastSeq = seq;
      return pending ? { lastSeq: seq, pending } : { lastSeq: seq };
    });
  }

  async flush(): Promise<SinkProgress> {
    await this.settle();
    const pending = this.skip.size ? toRanges([...this.skip.values()].sort((a, b) => a - b)) : undefined;
    return pending ? { lastSeq: this.lastSeq, pending } : { lastSeq: this.lastSeq };
  }

  async close(): Promise<void> {
    await this.settle();
  }

  private async settle(): Promise<void> {
    const acks = await Promise.all(this.inflight);
    this.inflight = [];
    for (const a of acks) if (a.seq > this.lastSeq) this.lastSeq = a.seq;
  }
}

/** Builds the sink for a spec; `role` says what it carries (results, late records, dead letters). */
export function createSink(spec: SinkSpec, nc: NatsConnection, js: JetStreamClient, jsm: JetStreamManager, job: string, role: SinkRole = 'results', log?: Logger): Sink {
  if (spec.kind === 'jsonl') return new JsonlSink(spec.path);
  if (spec.kind === 'postgres') return new PostgresSink(spec, role, job, log);
  if (spec.kind === 'nats') return new NatsSubjectSink(nc, spec.subject);
  return new JetStreamSink(js, jsm, spec.stream, spec.subject ?? `tidemark.${job}.js.${spec.stream}`);
}

