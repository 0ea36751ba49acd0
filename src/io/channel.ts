// The envelope of every message between a job's actors: run id, sender and a sequence number per
// channel, sealed with an HMAC under a secret made for this run that never leaves the process. A
// receiver tells the job's own messages from garbage, forgeries, replays and leftovers of an earlier
// run (all dropped and counted), and notices a gap (a lost message: the job restarts from its checkpoint).

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { encode, decode } from './codec.js';

const MAC_BYTES = 16;
const VERSION = 1;

/** The secret and id of one run of a job (a new one at every start and restart). */
export class RunKey {
  private constructor(
    readonly id: string,
    private readonly secret: Buffer,
  ) {}

  static create(): RunKey {
    return new RunKey(randomBytes(4).toString('hex'), randomBytes(32));
  }

  /** The key of a group's generation, shared by its instances through the job's KV bucket. */
  static shared(run: { id: string; secret: string }): RunKey {
    return new RunKey(run.id, Buffer.from(run.secret, 'base64'));
  }

  /** MAC of `bytes` as sent on `subject` (a message replayed on another subject does not verify). */
  mac(subject: string, bytes: Uint8Array): Buffer {
    return createHmac('sha256', this.secret).update(subject).update(bytes).digest().subarray(0, MAC_BYTES);
  }
}

/** Who sends on internal subjects: a partition number, or one of these. */
export const SENDER = { source: -1, sink: -2, service: -3, coordinator: -4 } as const;

/** Sender id of the member at index `i` of a generation's plan (its control messages). */
export const memberSender = (i: number): number => 1_000_000 + i;

/** Sender id of the source reading input partition `p` in a group (its prepared records). */
export const readerSender = (p: number): number => 2_000_000 + p;

/** Seals the messages one sender publishes, numbering them per subject from 1. */
export class Sealer {
  private readonly seqs = new Map<string, number>();

  constructor(
    private readonly key: RunKey,
    readonly from: number,
  ) {}

  seal(subject: string, body: unknown): Uint8Array {
    const seq = (this.seqs.get(subject) ?? 0) + 1;
    this.seqs.set(subject, seq);
    const bytes = encode([VERSION, this.key.id, this.from, seq, body]);
    const out = new Uint8Array(bytes.length + MAC_BYTES);
    out.set(bytes, 0);
    out.set(this.key.mac(subject, bytes), bytes.length);
    return out;
  }
}

/** An opened message, or why it was refused. `gap`: it is genuine but messages before it were lost. */
export type Opened = { ok: true; from: number; seq: number; body: unknown } | { ok: false; reason: string; from?: number; gap?: boolean };

interface Envelope {
  run: string;
  from: number;
  seq: number;
  body: unknown;
}

/** Reads an envelope without trusting it; undefined when the bytes are not one. Never throws. */
export function readEnvelope(bytes: Uint8Array): Envelope | undefined {
  let v: unknown;
  try {
    v = decode<unknown>(bytes);
  } catch {
    return undefined;
  }
  if (!Array.isArray(v) || v.length !== 5 || v[0] !== VERSION) return undefined;
  const [, run, from, seq, body] = v as unknown[];
  if (typeof run !== 'string' || !Number.isSafeInteger(from) || !Number.isSafeInteger(seq) || (seq as number) < 1) return undefined;
  return { run, from: from as number, seq: seq as number, body };
}

/**
 * Opens the messages arriving on one subject. `senders` says who may send there; `sequenced`
 * channels must number their messages 1, 2, 3… (requests that are answered one by one need not).
 */
export class Opener {
  private readonly last = new Map<number, number>();

  constructor(
    private readonly key: RunKey,
    readonly subject: string,
    private readonly senders: (from: number) => boolean,
    private readonly sequenced = true,
  ) {}

  open(bytes: Uint8Array): Opened {
    if (bytes.length <= MAC_BYTES) return { ok: false, reason: `${bytes.length} bytes, too short to be a sealed message` };
    const body = bytes.subarray(0, bytes.length - MAC_BYTES);
    const mac = bytes.subarray(bytes.length - MAC_BYTES);
    if (!timingSafeEqual(mac, this.key.mac(this.subject, body))) {
      const env = readEnvelope(body);
      if (!env) return { ok: false, reason: 'not a Tidemark message (garbage)' };
      const why = env.run === this.key.id ? 'its seal does not verify (forged or damaged)' : `it belongs to another run (${env.run.slice(0, 16)}), not ${this.key.id}`;
      return { ok: false, reason: why, from: env.from };
    }
    const env = readEnvelope(body);
    if (!env || env.run !== this.key.id) return { ok: false, reason: 'a sealed message with a malformed envelope' };
    if (!this.senders(env.from)) return { ok: false, reason: `sender ${env.from} does not send on this subject`, from: env.from };
    if (this.sequenced) {
      const last = this.last.get(env.from) ?? 0;
      if (env.seq <= last) return { ok: false, reason: `sequence ${env.seq} after ${last} (a replay)`, from: env.from };
      this.last.set(env.from, env.seq);
      if (env.seq !== last + 1) return { ok: false, reason: `sequence ${env.seq} after ${last}: ${env.seq - last - 1} message(s) lost`, from: env.from, gap: true };
    }
    return { ok: true, from: env.from, seq: env.seq, body: env.body };
  }
}

/** What a job does with refused internal messages: counts them, logs once per sender and subject. */
export class Rejections {
  total = 0;
  private readonly seen = new Set<string>();

  constructor(private readonly warn: (fields: Record<string, unknown>, msg: string) => void) {}

  note(subject: string, reason: string, from?: number): void {
    this.total++;
    const who = from === undefined ? 'unknown sender' : `sender ${from}`;
    const key = `${subject}\u0000${who}`;
    if (this.seen.has(key)) return;
    this.seen.add(key);
    this.warn({ subject, sender: from ?? null, reason }, `dropped a message on ${subject} from ${who}: ${reason} (further ones from it are only counted)`);
  }
}

/** The outcome of a shape check of a message body. */
export type Checked<T> = { ok: true; msg: T } | { ok: false; reason: string };

/** Opens, verifies and shape-checks one message; refused ones are noted (a gap faults the job). */
export function receive<T>(ctx: ChannelContext, opener: Opener, bytes: Uint8Array, check: (body: unknown, from: number) => Checked<T>): { msg: T; from: number } | undefined {
  const o = opener.open(bytes);
  if (!o.ok) {
    ctx.rejects.note(opener.subject, o.reason, o.from);
    if (o.gap) ctx.fault(`${opener.subject}: ${o.reason}`);
    return undefined;
  }
  const c = check(o.body, o.from);
  if (!c.ok) {
    ctx.rejects.note(opener.subject, c.reason, o.from);
    return undefined;
  }
  return { msg: c.msg, from: o.from };
}

/** What every actor of one run shares to seal, open and report on its messages. */
export interface ChannelContext {
  key: RunKey;
  rejects: Rejections;
  /** A lost or unusable internal message: the job must restart from its last checkpoint. */
  fault: (why: string) => void;
}
