// Intake spread over a group: the order-free part of ingestion (decode, validation, keys, the
// record's accumulator — AFINN scoring for the sentiment job) runs on the group's members, batch by
// batch, while the coordinator's source keeps reading the input in order and accepts the answers in
// input order (as with local worker threads). Preparing is a pure function of a message's bytes,
// subject and sequence, so a batch prepared on a member is the batch the source would have prepared:
// a member that does not answer in time (dead, slow, gone) costs a local prepare, never a result.

import type { Msg, NatsConnection, Subscription } from 'nats';
import { Opener, Sealer, receive, type ChannelContext, type Checked } from './channel.js';
import { checkPreparedRecords, type CompiledJob, type Prepared } from '../runtime/compiled-job.js';
import { packPayloads, payloadAt, subjectDictionary } from './payload-pack.js';

/** What the source prepares its batches with: a local pool, or the group's members. */
export interface Preparer {
  /** > 0: batches are prepared off the source's turn (the source starts them as they arrive, up to this many at once). */
  readonly threads: number;
  prepare(payloads: readonly Uint8Array[], subjects: readonly string[], seqs: readonly number[]): Promise<Prepared[]>;
  close(): Promise<void>;
}

/** A batch on the wire: the payloads back to back, subjects by a dictionary, sequences as numbers. */
interface PrepareRequest {
  /** payloads, concatenated */
  b: Uint8Array;
  /** end offset of each payload in `b` */
  o: number[];
  /** distinct subjects */
  d: string[];
  /** index into `d` of each payload's subject */
  s: number[];
  /** input sequence of each payload */
  q: readonly number[];
}

type PrepareReply = { ok: true; out: Prepared[] } | { ok: false; error: string };

/** Below this many messages (or a full batch, if batches are smaller) a batch is prepared where it is: a round trip would cost more than it saves. */
const MIN_REMOTE_BATCH = 64;
/** Batches a member may have in hand at once; beyond that the coordinator prepares the batch itself. */
const PER_MEMBER_INFLIGHT = 4;

/** The subject a request is answered on, for the seal (reply inboxes differ per request). */
const replyContext = (subject: string): string => `${subject}.reply`;

/** The request for one batch; sealed (encoded) at once, so its columns may share the caller's arrays. */
function encodeRequest(payloads: readonly Uint8Array[], subjects: readonly string[], seqs: readonly number[]): PrepareRequest {
  const { bytes, ends } = packPayloads(payloads);
  const { d, s } = subjectDictionary(subjects, payloads.length);
  // The offsets travel as a plain array of numbers, as they always have (not a typed array's bytes).
  return { b: bytes, o: Array.from(ends), d, s, q: seqs };
}

/** Shape check of a request (a member trusts the seal, not the body's shape). */
function checkRequest(v: unknown): Checked<PrepareRequest> {
  const r = v as Partial<PrepareRequest> | null;
  if (!r || !(r.b instanceof Uint8Array) || !Array.isArray(r.o) || !Array.isArray(r.d) || !Array.isArray(r.s) || !Array.isArray(r.q)) return { ok: false, reason: 'not a prepare request' };
  const n = r.o.length;
  if (r.s.length !== n || r.q.length !== n) return { ok: false, reason: 'a prepare request whose columns differ in length' };
  let last = 0;
  for (let i = 0; i < n; i++) {
    const end = r.o[i];
    const k = r.s[i];
    if (typeof end !== 'number' || end < last || end > r.b.length || typeof k !== 'number' || typeof r.d[k] !== 'string' || typeof r.q[i] !== 'number') return { ok: false, reason: `a prepare request with a bad entry at ${i}` };
    last = end;
  }
  return { ok: true, msg: r as PrepareRequest };
}

function checkReply(v: unknown, n: number): Checked<Prepared[]> {
  const r = v as Partial<{ ok: boolean; out: unknown; error: unknown }> | null;
  if (!r || typeof r.ok !== 'boolean') return { ok: false, reason: 'not a prepare reply' };
  if (!r.ok) return { ok: false, reason: `the member could not prepare the batch: ${String(r.error)}` };
  if (!Array.isArray(r.out) || r.out.length !== n) return { ok: false, reason: `a prepare reply with ${Array.isArray(r.out) ? r.out.length : 'no'} records for ${n} messages` };
  const bad = checkPreparedRecords(r.out as unknown[]);
  if (bad) return { ok: false, reason: `a prepare reply with a malformed record (${bad})` };
  return { ok: true, msg: r.out as Prepared[] };
}

/** One member that prepares batches: its request subject and how many it holds now. */
interface Helper {
  subject: string;
  inflight: number;
  /** set after a failure: skipped until then (ms since the epoch) */
  restUntil: number;
  /** opens its answers (unsequenced, so one serves every request) */
  opener: Opener;
}

/**
 * Prepares the source's batches on the group's members (round robin, at most a few batches each),
 * and locally (`local`) when every member is busy, a batch is small, or a member fails to answer.
 */
export class RemotePreparer implements Preparer {
  readonly threads: number;
  private readonly helpers: Helper[];
  private readonly sealer: Sealer;
  private next = 0;
  private readonly minBatch: number;
  /** batches prepared by members / here (status and the benchmark's shares) */
  readonly counts = { remote: 0, local: 0, failed: 0 };

  constructor(
    private readonly nc: NatsConnection,
    private readonly ctx: ChannelContext,
    /** the request subject of each member that prepares */
    subjects: readonly string[],
    /** the members' senders' ids (who may answer) */
    members: (from: number) => boolean,
    sender: number,
    private readonly local: Preparer,
    private readonly timeoutMs: number,
    private readonly warn: (why: string) => void,
    /** the source's batch size: a full batch goes to a member even when it is small */
    batchSize = MIN_REMOTE_BATCH,
  ) {
    this.minBatch = Math.min(MIN_REMOTE_BATCH, batchSize);
    this.helpers = subjects.map((subject) => ({ subject, inflight: 0, restUntil: 0, opener: new Opener(ctx.key, replyContext(subject), members, false) }));
    this.sealer = new Sealer(ctx.key, sender);
    // Batches that may be prepared at once: the source reads ahead this far.
    this.threads = this.helpers.length * PER_MEMBER_INFLIGHT + local.threads;
  }

  prepare(payloads: readonly Uint8Array[], subjects: readonly string[], seqs: readonly number[]): Promise<Prepared[]> {
    const helper = payloads.length >= this.minBatch ? this.pick() : undefined;
    if (!helper) {
      this.counts.local++;
      return this.local.prepare(payloads, subjects, seqs);
    }
    const body = this.sealer.seal(helper.subject, encodeRequest(payloads, subjects, seqs));
    if (body.length > this.nc.info!.max_payload) {
      this.counts.local++;
      return this.local.prepare(payloads, subjects, seqs);
    }
    helper.inflight++;
    this.counts.remote++;
    return this.nc
      .request(helper.subject, body, { timeout: this.timeoutMs })
      .then((m: Msg) => {
        const got = receive(this.ctx, helper.opener, m.data, (v) => checkReply(v, payloads.length));
        if (!got) throw new Error('its answer was refused');
        return got.msg;
      })
      .catch((e: unknown) => {
        // Preparing is pure: the batch prepared here is the one the member would have sent.
        this.counts.failed++;
        helper.restUntil = Date.now() + this.timeoutMs;
        this.warn(`${helper.subject}: ${(e as Error).message}; preparing here`);
        return this.local.prepare(payloads, subjects, seqs);
      })
      .finally(() => helper.inflight--);
  }

  private pick(): Helper | undefined {
    const now = Date.now();
    for (let i = 0; i < this.helpers.length; i++) {
      const h = this.helpers[(this.next + i) % this.helpers.length]!;
      if (h.inflight < PER_MEMBER_INFLIGHT && h.restUntil <= now) {
        this.next = (this.next + i + 1) % this.helpers.length;
        return h;
      }
    }
    return undefined;
  }

  close(): Promise<void> {
    return this.local.close();
  }
}

/** A member's side: answers the coordinator's prepare requests on `subject` with `job`. */
export function servePrepare(nc: NatsConnection, ctx: ChannelContext, subject: string, source: number, sender: number, job: CompiledJob): Subscription {
  const inbox = new Opener(ctx.key, subject, (from) => from === source, false);
  const sealer = new Sealer(ctx.key, sender);
  const seal = (reply: PrepareReply): Uint8Array => sealer.seal(replyContext(subject), reply);
  return nc.subscribe(subject, {
    callback: (err, m) => {
      if (err || !m.reply) return;
      // Whatever fails here is answered as a failure (the coordinator prepares the batch itself at
      // once), not thrown into the client's subscription, where the request would wait out its timeout.
      try {
        const req = receive(ctx, inbox, m.data, checkRequest)?.msg;
        if (!req) return;
        const out: Prepared[] = new Array(req.o.length);
        for (let i = 0; i < req.o.length; i++) out[i] = job.prepare(payloadAt(req.b, req.o, i), req.d[req.s[i]!]!, req.q[i]!);
        const sealed = seal({ ok: true, out });
        m.respond(sealed.length > nc.info!.max_payload ? seal({ ok: false, error: `the prepared batch (${sealed.length} bytes) exceeds the server's max_payload` }) : sealed);
      } catch (e) {
        try {
          m.respond(seal({ ok: false, error: e instanceof Error ? e.message : String(e) }));
        } catch {
          // Not even a failure can be sent (the connection is closing): the request times out and the coordinator prepares the batch itself.
        }
      }
    },
  });
}
