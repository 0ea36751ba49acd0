// One job on many `tidemark run` processes (Kafka Streams instances sharing an application id): every
// instance holds a member lease; the one holding the coordinator lease runs the source, the sink actor
// and the checkpoints, writes each generation's plan (which member hosts which window actors, under
// which channel key) and hands remote actors their windows. A member that dies, joins or leaves starts
// a new generation from the last complete checkpoint; a coordinator that dies is replaced by the first
// member to take its expired lease, restoring from the checkpoint mirror in NATS. Every message of a
// generation is sealed with its key and every checkpoint write is revision-checked against the lease
// epoch, so a superseded owner (paused, cut off) can neither double-count nor overwrite.

import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { resolve } from 'node:path';
import type { NatsConnection } from 'nats';
import { TidemarkError } from '../errors.js';
import type { JobConfig } from '../runtime/job-config.js';
import type { Logger } from '../log.js';
import type { Job } from '../actors/job.js';
import { GroupStore, type MemberInfo } from '../io/group-store.js';
import { Lease } from '../io/lease.js';
import { JobLock, alreadyRunning, DEFAULT_LOCK_TTL } from '../io/job-lock.js';
import { holderIsDeadHere } from './instance.js';
import { Coordinator } from './coordinator.js';
import { followPlans } from './member.js';
import { coordinatorGone, deadHere, type CoordinatorLease, type GroupHooks, type RoleContext } from './roles.js';
import { retryTransient } from '../io/reconnect.js';
import { streamReplicas } from '../io/jetstream-source.js';

export type { GroupHooks } from './roles.js';
export { groupView, ownersOf } from './coordinator.js';

/** One process's part in a group. */
export class GroupInstance implements RoleContext {
  readonly me: MemberInfo;
  stopping = false;
  private stopRequested: () => void = () => undefined;
  readonly stopSignal: Promise<void>;
  /** The coordinator's job while this process is the coordinator. */
  job?: Job;
  /** Members that did not answer a generation's start: left out of the next one (a dead one's lease expires meanwhile). */
  readonly suspects = new Set<string>();

  constructor(
    readonly nc: NatsConnection,
    readonly cfg: JobConfig,
    readonly log: Logger,
    version: string,
    readonly hooks: GroupHooks,
  ) {
    this.me = { id: randomBytes(6).toString('hex'), host: hostname(), pid: process.pid, stateDir: resolve(cfg.stateDir), since: Date.now(), version, actors: cfg.partitions };
    this.stopSignal = new Promise((r) => (this.stopRequested = r));
  }

  lostConnection: () => void = () => undefined;

  /** The NATS connection dropped: messages between instances may be lost, so the generation restarts. */
  connectionLost(): void {
    this.lostConnection();
  }

  /** SIGTERM: a coordinator takes a final checkpoint and hands over; a member leaves; both exit 0. */
  stop(): void {
    this.stopping = true;
    this.stopRequested();
  }

  /** Runs until the job ends (drain), or this process is stopped. Resolves with the exit code. */
  async run(): Promise<number> {
    // The group's buckets are replicated like the input stream (R3 on a cluster that replicates it).
    const replicas = await streamReplicas(this.nc, this.cfg.inputStream);
    // A single instance of this job (one with a jsonl: sink holds the job lock) is not joined.
    const single = await JobLock.holderOf(this.nc, this.cfg.job);
    if (single && !(await holderIsDeadHere(single, this.cfg))) throw alreadyRunning(this.cfg.job, single, DEFAULT_LOCK_TTL);
    // A cluster electing the new buckets' leaders answers "no responders" or times out for a moment.
    // One step at a time: a lease taken is never taken again because a later step failed.
    const store = await this.transient('joining the group', () => GroupStore.open(this.nc, this.cfg.job, this.cfg.leaseTtl, replicas));
    const lease = await this.transient('joining the group', async () => {
      const l = await Lease.tryAcquire(store.leases, `member.${this.me.id}`, this.me, { ttl: store.ttl, log: this.log, renewExpired: true });
      if (!l) throw new TidemarkError('NATS_UNAVAILABLE', `could not register member ${this.me.id} of job ${this.cfg.job}`);
      return l;
    });
    let startPlan: number;
    try {
      startPlan = await this.transient('joining the group', async () => (await store.plan())?.plan.gen ?? 0);
    } catch (e) {
      await lease.release();
      throw e;
    }
    let first = true;
    try {
      for (;;) {
        if (this.stopping) return 0;
        const coordinator = await this.transient('taking the coordinator lease', () => this.acquireCoordinator(store));
        if (coordinator) {
          const end = await new Coordinator(this).run(store, coordinator, first);
          first = false;
          if (end === 'exit') return 0;
          continue;
        }
        first = false;
        if ((await followPlans(this, store, lease, startPlan)) === 'exit') return 0;
      }
    } finally {
      await lease.release();
    }
  }

  /** Runs `step`, again with backoff while NATS fails transiently (for up to a minute). */
  private transient<T>(what: string, step: () => Promise<T>): Promise<T> {
    return retryTransient(step, {
      stopping: () => this.stopping,
      giveUpAfterMs: 60_000,
      onRetry: (e, wait) => this.log.warn({ err: e.message }, `${what}: NATS did not answer (${e.message}); trying again in ${Math.round(wait)} ms`),
    });
  }

  /** Takes the coordinator lease when it is free, its holder is dead on this host, or it stopped renewing it. */
  private async acquireCoordinator(store: GroupStore): Promise<Lease | undefined> {
    const value = { id: this.me.id, host: this.me.host, pid: this.me.pid };
    const opts = { ttl: store.ttl, log: this.log };
    let lease = await Lease.tryAcquire(store.leases, 'coordinator', value, opts);
    if (!lease) {
      const holder = await Lease.holder<CoordinatorLease>(store.leases, 'coordinator');
      const why = holder && coordinatorGone(store, holder);
      if (holder && why) {
        lease = await Lease.takeOver(store.leases, 'coordinator', value, holder.revision, opts);
        if (lease) this.log.warn({ previous: holder.value }, `took the coordinator role of job ${this.cfg.job} over from ${why} (pid ${holder.value.pid})`);
      }
    }
    return lease;
  }

  /** Live members that can host actors: this one first, then by id. */
  async liveMembers(store: GroupStore): Promise<MemberInfo[]> {
    const all = await store.members();
    const others = all.filter((m) => m.id !== this.me.id && !m.leaving && !deadHere(m) && !this.suspects.has(m.id));
    return [this.me, ...others];
  }
}
