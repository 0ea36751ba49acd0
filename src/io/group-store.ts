// What the instances of one job share in NATS: leases (coordinator, members) in a KV bucket whose
// entries expire after the lease TTL, the current generation's plan in a durable KV bucket, and a
// copy of every complete checkpoint in an object store (the mirror), so that an instance on another
// machine can take the coordinator role over and restore what the last coordinator checkpointed.

import { randomBytes } from 'node:crypto';
import type { JetStreamManager, KV, NatsConnection, ObjectStore } from 'nats';
import { TidemarkError } from '../errors.js';
import { encode, decode } from './codec.js';
import { subjectsFor } from './subjects.js';
import { apiErrorCode, boundedNats, WRONG_LAST_SEQUENCE } from './nats-errors.js';
import { Lease, LeaseObserver, readJsonEntry, writeJsonEntry } from './lease.js';
import type { CheckpointMeta, CheckpointWrite, EntryChunk } from './checkpoint-store.js';

/**
 * "TMC2": a mirror object of records, each a u32 length and msgpack: the checkpoint's meta first,
 * then its entries a chunk at a time (so that neither writing nor reading a large checkpoint is one
 * encoding on the event loop). Objects written before are one msgpack CheckpointWrite.
 */
const MIRROR_MAGIC = [0x54, 0x4d, 0x43, 0x32];

/** One record of a mirror object: its length, then its bytes. */
function mirrorRecord(value: unknown, first = false): Uint8Array {
  const body = encode(value);
  const head = first ? 8 : 4;
  const out = new Uint8Array(head + body.length);
  if (first) out.set(MIRROR_MAGIC);
  new DataView(out.buffer).setUint32(head - 4, body.length);
  out.set(body, head);
  return out;
}

/** The bytes of a mirror object, in parts as they are made: magic and meta, then each chunk. */
export async function* mirrorObjectParts(meta: CheckpointWrite['meta'], chunks: AsyncIterable<EntryChunk> | Iterable<EntryChunk>): AsyncGenerator<Uint8Array> {
  yield mirrorRecord(meta, true);
  for await (const c of chunks) yield mirrorRecord(c);
}

/** Reads a mirror object (either format); `name` only names it in an error. */
export function readMirrorObject(bytes: Uint8Array, name: string): CheckpointWrite {
  if (!MIRROR_MAGIC.every((b, i) => bytes[i] === b)) {
    // Written by a version before chunked mirrors: one CheckpointWrite with its entries as arrays.
    const w = decode<{ meta: CheckpointWrite['meta']; upserts: EntryChunk['u']; deletes: EntryChunk['d'] }>(bytes);
    return { meta: w.meta, chunks: [{ u: w.upserts, d: w.deletes }] };
  }
  const corrupt = (why: string): never => {
    throw new TidemarkError('STATE_CORRUPT', `the checkpoint mirror's object ${name} is damaged (${why}); restore from a state directory, or --reset-state`);
  };
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  // Every record's place, checked before anything is decoded: a cut object is refused whole.
  const records: Array<[number, number]> = [];
  for (let at = 4; at < bytes.length; ) {
    if (at + 4 > bytes.length) corrupt('a record runs past its end');
    const end = at + 4 + view.getUint32(at);
    if (end > bytes.length) corrupt('a record runs past its end');
    records.push([at + 4, end]);
    at = end;
  }
  if (records.length === 0) corrupt('no checkpoint in it');
  const [m0, m1] = records[0]!;
  return {
    meta: decode<CheckpointWrite['meta']>(bytes.subarray(m0, m1)),
    // Decoded one chunk at a time, as the reader takes them.
    chunks: {
      *[Symbol.iterator]() {
        for (const [a, b] of records.slice(1)) yield decode<EntryChunk>(bytes.subarray(a, b));
      },
    },
  };
}

/** The parts as a stream the object store reads, one part per event-loop turn (it hashes each as it reads it). */
function partsStream(parts: AsyncIterator<Uint8Array>): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    pull: async (controller) => {
      await new Promise<void>((r) => setImmediate(r));
      const next = await parts.next();
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    cancel: async () => {
      await parts.return?.(undefined);
    },
  });
}

const enc = new TextEncoder();
const dec = new TextDecoder();
/** How long one object of the checkpoint mirror may take to read before the read counts as failed (and is tried again). */
const FETCH_BOUND_MS = 120_000;

/** A `tidemark run` process of a group, as its member lease says. */
export interface MemberInfo {
  id: string;
  host: string;
  pid: number;
  stateDir: string;
  since: number;
  version: string;
  /** window actors it hosts (its --partitions) */
  actors: number;
  /** set once it asked to leave (SIGTERM): the next generation does without it */
  leaving?: boolean;
}

/** One generation of a group: who hosts which window actors, under which channel key. */
export interface GenerationPlan {
  gen: number;
  /** the coordinator lease's epoch */
  epoch: number;
  coordinator: string;
  /** window actors in all; key groups are spread over them in contiguous ranges */
  total: number;
  /** each instance's window actors, and the input partitions it reads (a partitioned input read by the group) */
  members: Array<{ id: string; actors: number[]; inputs?: number[] }>;
  /** the channel key of this generation (run id and HMAC secret, base64) */
  run: { id: string; secret: string };
  /** drain: the input sequence the job ends at, fixed by the first coordinator */
  drainSeq?: number;
  /** the job has ended (drain): members exit */
  done?: boolean;
  /** the job has stopped (SIGTERM of the coordinator with no one to take over) */
  stopped?: boolean;
}

/** The mirror's pointer: the chain (object names, full checkpoint first) of the newest complete checkpoint. */
export interface MirrorPointer {
  epoch: number;
  cp: number;
  /** the checkpoint's content hash and input sequence (a local copy with the same is the same checkpoint) */
  hash: number;
  seq: number;
  chain: string[];
}

/** A checkpoint write refused because its writer's epoch was superseded. */
export class SupersededError extends TidemarkError {
  constructor(what: string) {
    super('SUPERSEDED', what);
  }
}

export class GroupStore {
  private pointerRevision = 0;
  /** Which leases stopped being renewed, as this process sees them. */
  readonly observer: LeaseObserver;

  private constructor(
    private readonly jsm: JetStreamManager,
    private readonly leaseBucketName: string,
    readonly job: string,
    readonly leases: KV,
    readonly state: KV,
    readonly objects: ObjectStore,
    readonly ttl: number,
  ) {
    this.observer = new LeaseObserver(ttl);
  }

  static async open(nc: NatsConnection, job: string, ttl: number, replicas = 1): Promise<GroupStore> {
    const s = subjectsFor(job);
    const js = nc.jetstream();
    try {
      // No max_age on the lease bucket (LeaseObserver says why), and reads from the stream's leader:
      // nats-server before 2.9.17 may answer a direct get from a restarted replica not yet caught up
      // (nats-io/nats-server#4162), and a lease or plan read stale is a revision check lost for nothing.
      const leases = await js.views.kv(s.leaseBucket, { history: 1, replicas, allow_direct: false });
      const state = await js.views.kv(s.groupStateBucket, { history: 1, replicas, allow_direct: false });
      const objects = await js.views.os(s.checkpointObjects, { replicas });
      // A lease bucket made by an earlier version expired its entries by max_age: no more.
      const jsm = await nc.jetstreamManager();
      const info = (await leases.status()).streamInfo;
      if (info.config.max_age) await jsm.streams.update(info.config.name, { ...info.config, max_age: 0 });
      return new GroupStore(jsm, s.leaseBucket, job, leases, state, objects, ttl);
    } catch (e) {
      throw new TidemarkError('NATS_UNAVAILABLE', `cannot open the group buckets of job ${job} (${s.leaseBucket}, ${s.groupStateBucket}, ${s.checkpointObjects}): ${(e as Error).message}`, { cause: e });
    }
  }

  /** The holder of lease `key` unless this process saw it stop renewing (an expired lease is removed, revision-checked). */
  async liveHolder<T>(key: string): Promise<{ value: T; revision: number } | undefined> {
    const h = await Lease.holder<T>(this.leases, key);
    if (!h || !this.observer.stale(key, h.revision)) return h;
    await this.leases.delete(key, { previousSeq: h.revision }).catch(() => undefined);
    return undefined;
  }

  /** Live members (their leases renewed within the TTL, as far as this process has seen). */
  async members(): Promise<MemberInfo[]> {
    const out: MemberInfo[] = [];
    // The keys from the stream's subjects (one request, bounded), not kv.keys(): that is an ordered
    // consumer, which waits for ever when its node dies in a failover.
    const prefix = `$KV.${this.leaseBucketName}.`;
    const info = await this.jsm.streams.info(`KV_${this.leaseBucketName}`, { subjects_filter: `${prefix}member.>` });
    const names = Object.keys(info.state.subjects ?? {}).map((s) => s.slice(prefix.length));
    for (const k of names) {
      const m = await this.liveHolder<MemberInfo>(k);
      if (m) out.push(m.value);
    }
    return out.sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  async plan(): Promise<{ plan: GenerationPlan; revision: number } | undefined> {
    const e = await readJsonEntry<GenerationPlan>(this.state, 'plan');
    return e && { plan: e.value, revision: e.revision };
  }

  /** Writes a plan over the one read at `revision` (0: none); a plan of a newer epoch wins. */
  async putPlan(plan: GenerationPlan, revision: number): Promise<number> {
    try {
      return await writeJsonEntry(this.state, 'plan', plan, revision);
    } catch (e) {
      if (apiErrorCode(e) === WRONG_LAST_SEQUENCE) throw new SupersededError(`the plan of job ${this.job} changed under epoch ${plan.epoch}: another coordinator took over`);
      throw e;
    }
  }

  /** Calls `fn` with every plan written from now on (and the current one); returns a stop function. */
  async watchPlan(fn: (plan: GenerationPlan) => void): Promise<() => void> {
    const w = await this.state.watch({ key: 'plan' });
    void (async () => {
      for await (const e of w) {
        if (e.operation !== 'PUT' || e.value.length === 0) continue;
        try {
          fn(JSON.parse(dec.decode(e.value)) as GenerationPlan);
        } catch {
          // a malformed plan is ignored
        }
      }
    })().catch(() => undefined);
    return () => w.stop();
  }

  /** A new channel key for a generation. */
  static newRun(): { id: string; secret: string } {
    return { id: randomBytes(4).toString('hex'), secret: randomBytes(32).toString('base64') };
  }

  // ---- the checkpoint mirror ----

  async pointer(): Promise<{ value: MirrorPointer; revision: number } | undefined> {
    return readJsonEntry<MirrorPointer>(this.state, 'checkpoint');
  }

  /** Empties the mirror (a group's --reset-state), keeping the pointer's revision check. */
  async resetMirror(epoch: number): Promise<void> {
    const p = await this.pointer();
    const value: MirrorPointer = { epoch, cp: 0, hash: 0, seq: 0, chain: [] };
    this.pointerRevision = await writeJsonEntry(this.state, 'checkpoint', value, p?.revision ?? 0);
    for (const name of p?.value.chain ?? []) await this.objects.delete(name).catch(() => undefined);
  }

  /**
   * Claims the mirror for `epoch`: rewrites the pointer stamped with it, so that a superseded
   * coordinator's next checkpoint (revision-checked against what it last wrote) is refused.
   */
  async claimMirror(epoch: number): Promise<MirrorPointer | undefined> {
    const p = await this.pointer();
    const value: MirrorPointer = p ? { ...p.value, epoch } : { epoch, cp: 0, hash: 0, seq: 0, chain: [] };
    try {
      this.pointerRevision = await writeJsonEntry(this.state, 'checkpoint', value, p?.revision ?? 0);
    } catch (e) {
      if (apiErrorCode(e) === WRONG_LAST_SEQUENCE) throw new SupersededError(`the checkpoint mirror of job ${this.job} changed while epoch ${epoch} claimed it`);
      throw e;
    }
    return p?.value.cp ? p.value : undefined;
  }

  /**
   * Stores a complete checkpoint in the mirror and moves the pointer to it (revision-checked: a writer
   * whose epoch was superseded gets SupersededError and nothing changes for the others).
   */
  async mirror(write: { meta: CheckpointMeta; chunks: AsyncIterable<EntryChunk> }, epoch: number, previous: MirrorPointer | undefined): Promise<MirrorPointer> {
    const name = `cp-${write.meta.id}-e${epoch}`;
    const hash = write.meta.hash;
    await this.objects.put({ name }, partsStream(mirrorObjectParts(write.meta, write.chunks)));
    // A delta continues the mirror's chain only from its own base; anything else would leave a delta
    // whose base a new coordinator cannot import (the job starts such a chain with a full checkpoint).
    if (!write.meta.full && previous?.cp !== write.meta.parent) throw new Error(`checkpoint ${write.meta.id} is a delta on ${write.meta.parent}, but the mirror ends at ${previous?.cp ?? 'nothing'}`);
    const chain = write.meta.full ? [name] : [...previous!.chain, name];
    const value: MirrorPointer = { epoch, cp: write.meta.id, hash, seq: write.meta.seq, chain };
    try {
      this.pointerRevision = await this.state.update('checkpoint', enc.encode(JSON.stringify(value)), this.pointerRevision);
    } catch (e) {
      await this.objects.delete(name).catch(() => undefined);
      if (apiErrorCode(e) === WRONG_LAST_SEQUENCE) throw new SupersededError(`checkpoint ${write.meta.id} of epoch ${epoch} refused: a newer coordinator owns the job's checkpoints`);
      throw e;
    }
    // Objects of the previous chain that the new one does not continue are of no more use.
    if (previous) for (const old of previous.chain) if (!chain.includes(old)) await this.objects.delete(old).catch(() => undefined);
    return value;
  }

  /** The checkpoint writes of the pointer's chain, full checkpoint first. */
  async fetchChain(p: MirrorPointer): Promise<CheckpointWrite[]> {
    const out: CheckpointWrite[] = [];
    for (const name of p.chain) {
      // An object is read by an ordered consumer: bounded (a failover can leave it waiting for ever).
      const bytes = await boundedNats(this.objects.getBlob(name), FETCH_BOUND_MS, `reading ${name} of the checkpoint mirror`);
      if (!bytes) throw new TidemarkError('STATE_CORRUPT', `the checkpoint mirror of job ${this.job} lacks ${name} (its pointer names checkpoint ${p.cp}); restore from a state directory, or --reset-state`);
      out.push(readMirrorObject(bytes, name));
    }
    return out;
  }
}
