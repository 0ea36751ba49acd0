// One running instance per job on a NATS system, so two instances never double-count: a JetStream
// KV entry per job with a TTL, kept alive by a heartbeat, so a crashed holder's claim expires by itself.

import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { KV, NatsConnection } from 'nats';
import { TidemarkError } from '../errors.js';
import { humanDuration } from '../runtime/duration.js';
import type { Logger } from '../log.js';
import { subjectsFor } from './subjects.js';
import { apiErrorCode, WRONG_LAST_SEQUENCE } from './nats-errors.js';

/** Who holds a job's lock: enough for a person to find the process, and for a restart to recognise itself. */
export interface LockHolder {
  job: string;
  host: string;
  pid: number;
  /** Absolute state directory of the holder. */
  stateDir: string;
  /** Wall-clock ms when the holder took the lock. */
  since: number;
  version: string;
}

export interface JobLockOptions {
  /** How long a claim lives without a heartbeat (the KV bucket's TTL when this call creates it). */
  ttl?: number;
  /**
   * Asked when another holder's claim is still there: true when that holder is known to be dead
   * (e.g. same host and state directory, whose LevelDB lock this process could take), so the
   * claim is taken over at once instead of waiting for it to expire.
   */
  isHolderDead?: (holder: LockHolder) => Promise<boolean>;
  /** Called once if the claim is lost (taken over after it expired): the job must stop. */
  onLost?: (why: string) => void;
  /** Replicas of the lock bucket when this call creates it (a cluster: as many as the input stream has, so losing a node loses no claim). */
  replicas?: number;
  log?: Logger;
}

/** Default claim lifetime: a crashed instance on another host blocks its job for at most this long. */
export const DEFAULT_LOCK_TTL = 10_000;


/** Describes a holder in one line. */
export function describeHolder(h: LockHolder): string {
  return `pid ${h.pid} on host ${h.host}, state dir ${h.stateDir}, since ${new Date(h.since).toISOString()}`;
}

/** A held job lock; release() gives it up. */
export class JobLock {
  private timer?: NodeJS.Timeout;
  private released = false;

  private constructor(
    private readonly kv: KV,
    readonly holder: LockHolder,
    private revision: number,
    private readonly ttl: number,
    private readonly opts: JobLockOptions,
  ) {}

  /** This process as a lock holder. */
  static self(job: string, stateDir: string, version: string): LockHolder {
    return { job, host: hostname(), pid: process.pid, stateDir: resolve(stateDir), since: Date.now(), version };
  }

  /** Takes the job's lock, or fails with STATE_LOCKED naming the live holder. */
  static async acquire(nc: NatsConnection, me: LockHolder, opts: JobLockOptions = {}): Promise<JobLock> {
    let kv: KV;
    try {
      kv = await nc.jetstream().views.kv(subjectsFor(me.job).lockBucket, { history: 1, ttl: opts.ttl ?? DEFAULT_LOCK_TTL, replicas: opts.replicas ?? 1 });
    } catch (e) {
      throw new TidemarkError('NATS_UNAVAILABLE', `cannot open the job lock bucket ${subjectsFor(me.job).lockBucket}: ${(e as Error).message}`, { cause: e });
    }
    const ttl = (await kv.status()).ttl || (opts.ttl ?? DEFAULT_LOCK_TTL);
    const value = new TextEncoder().encode(JSON.stringify(me));
    // A few rounds: the other claim may expire or be released between our reads.
    for (let attempt = 0; attempt < 5; attempt++) {
      try {
        const rev = await kv.create(me.job, value);
        return new JobLock(kv, me, rev, ttl, opts).start();
      } catch (e) {
        if (apiErrorCode(e) !== WRONG_LAST_SEQUENCE) throw e;
      }
      const entry = await kv.get(me.job);
      if (!entry || entry.operation !== 'PUT') continue;
      const holder = parseHolder(entry.value);
      if (holder && opts.isHolderDead && (await opts.isHolderDead(holder))) {
        try {
          const rev = await kv.update(me.job, value, entry.revision);
          opts.log?.warn({ previous: holder }, `took over the lock of job ${me.job} from a dead instance (${describeHolder(holder)})`);
          return new JobLock(kv, me, rev, ttl, opts).start();
        } catch (e) {
          if (apiErrorCode(e) !== WRONG_LAST_SEQUENCE) throw e;
          continue;
        }
      }
      throw alreadyRunning(me.job, holder, ttl);
    }
    throw new TidemarkError('STATE_LOCKED', `job "${me.job}": could not take its lock; another instance keeps claiming it`);
  }

  /** Who holds job `job`'s lock now, if anyone (without taking it; the bucket is not created). */
  static async holderOf(nc: NatsConnection, job: string): Promise<LockHolder | undefined> {
    try {
      const kv = await nc.jetstream().views.kv(subjectsFor(job).lockBucket, { bindOnly: true });
      const entry = await kv.get(job);
      return entry && entry.operation === 'PUT' ? parseHolder(entry.value) : undefined;
    } catch {
      return undefined;
    }
  }

  /** Gives the lock up (only if it is still ours). */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    await this.kv.delete(this.holder.job, { previousSeq: this.revision }).catch(() => undefined);
  }

  private start(): this {
    this.timer = setInterval(() => void this.heartbeat(), Math.max(100, Math.floor(this.ttl / 3)));
    this.timer.unref();
    return this;
  }

  private async heartbeat(): Promise<void> {
    const value = new TextEncoder().encode(JSON.stringify(this.holder));
    try {
      this.revision = await this.kv.update(this.holder.job, value, this.revision);
      return;
    } catch (e) {
      if (this.released) return;
      if (apiErrorCode(e) !== WRONG_LAST_SEQUENCE) {
        // NATS unreachable for now: keep trying; the claim survives as long as the TTL.
        this.opts.log?.warn({ err: (e as Error).message }, `job lock heartbeat failed; retrying`);
        return;
      }
    }
    // Our claim changed under us: it expired (maybe re-taken by another instance), or was deleted.
    try {
      this.revision = await this.kv.create(this.holder.job, value);
      this.opts.log?.warn(`job lock of ${this.holder.job} had expired; claimed it again`);
    } catch (e) {
      if (this.released) return;
      const entry = await this.kv.get(this.holder.job).catch(() => null);
      const other = entry ? parseHolder(entry.value) : undefined;
      clearInterval(this.timer);
      this.released = true;
      const why = `lost the lock of job ${this.holder.job}${other ? ` to ${describeHolder(other)}` : ''}: ${(e as Error).message}`;
      this.opts.log?.error(why);
      this.opts.onLost?.(why);
    }
  }
}

/** The refusal of a second instance while `holder` runs the job. */
export function alreadyRunning(job: string, holder: LockHolder | undefined, ttl: number, why = ''): TidemarkError {
  const who = holder ? describeHolder(holder) : 'an unknown holder';
  return new TidemarkError('STATE_LOCKED', `job "${job}" is already running (${who})${why}; stop it first or use another --job (a crashed instance's lock expires within ${humanDuration(ttl)})`);
}

function parseHolder(bytes: Uint8Array): LockHolder | undefined {
  try {
    const v = JSON.parse(new TextDecoder().decode(bytes)) as Partial<LockHolder>;
    if (typeof v.host === 'string' && typeof v.pid === 'number' && typeof v.stateDir === 'string' && typeof v.since === 'number') return v as LockHolder;
  } catch {
    // Not ours: treated as an unknown holder.
  }
  return undefined;
}
