// What one `tidemark run` process owns besides the job itself: the job's lock (one instance per job
// on a NATS system) and the Prometheus endpoint, both outliving job restarts after a NATS failover.

import { resolve } from 'node:path';
import { hostname } from 'node:os';
import type { NatsConnection } from 'nats';
import { TidemarkError } from '../errors.js';
import type { JobConfig } from '../runtime/job-config.js';
import type { Logger } from '../log.js';
import { checkpointDir, type Job } from '../actors/job.js';
import { CheckpointStore } from '../io/checkpoint-store.js';
import { JobLock, type LockHolder } from '../io/job-lock.js';
import type { JobMetrics } from './metrics.js';
import { subjectsFor } from '../io/subjects.js';
import { Lease } from '../io/lease.js';
import { streamReplicas } from '../io/jetstream-source.js';
import { deadHere } from './roles.js';

/**
 * True when a lock holder on this host with this state directory is dead: a live one would hold the
 * LevelDB lock of that directory, so being able to open it proves the holder is gone (`kill -9`).
 */
export async function holderIsDeadHere(holder: LockHolder, cfg: JobConfig): Promise<boolean> {
  if (holder.host !== hostname() || holder.stateDir !== resolve(cfg.stateDir)) return false;
  try {
    const store = await CheckpointStore.open(checkpointDir(cfg.stateDir, cfg.job));
    await store.close();
    return true;
  } catch (e) {
    if (e instanceof TidemarkError && e.code === 'STATE_LOCKED') return false;
    // Damaged state opens only after LevelDB took its lock, so nobody holds it.
    if (e instanceof TidemarkError && e.code === 'STATE_CORRUPT') return true;
    throw e;
  }
}

/**
 * The live coordinator of job `job`'s group, if any (the lease bucket is not created): a holder that is
 * not dead here and renews its lease (the entry moves within the lease TTL `ttl`; leases do not expire by themselves).
 */
async function groupCoordinator(nc: NatsConnection, job: string, ttl: number): Promise<{ host: string; pid: number } | undefined> {
  try {
    const kv = await nc.jetstream().views.kv(subjectsFor(job).leaseBucket, { bindOnly: true, allow_direct: false });
    const holder = await Lease.holder<{ host: string; pid: number }>(kv, 'coordinator');
    if (!holder || deadHere(holder.value)) return undefined;
    await new Promise((r) => setTimeout(r, ttl));
    const now = await Lease.holder<{ host: string; pid: number }>(kv, 'coordinator');
    return now && now.revision !== holder.revision ? now.value : undefined;
  } catch {
    return undefined;
  }
}

/** The lock and metrics of a running instance. */
export class Instance {
  private constructor(
    readonly lock: JobLock | undefined,
    private readonly metrics?: JobMetrics,
    private readonly server?: { port: number; close(): Promise<void> },
  ) {}

  /** Takes the job lock (or fails with STATE_LOCKED naming the holder) and serves metrics when asked. */
  static async start(nc: NatsConnection, cfg: JobConfig, log: Logger, version: string, onLockLost: (why: string) => void, opts: { lock?: boolean } = {}): Promise<Instance> {
    const lock = opts.lock === false ? undefined : await JobLock.acquire(nc, JobLock.self(cfg.job, cfg.stateDir, version), { isHolderDead: (h) => holderIsDeadHere(h, cfg), onLost: onLockLost, log, replicas: await streamReplicas(nc, cfg.inputStream) });
    if (lock) {
      // A group of this job (instances without a jsonl: sink) must not run beside a single instance.
      const coordinator = await groupCoordinator(nc, cfg.job, cfg.leaseTtl);
      if (coordinator) {
        await lock.release();
        throw new TidemarkError('STATE_LOCKED', `job "${cfg.job}" is already running as a group (coordinator pid ${coordinator.pid} on host ${coordinator.host}); a job with a jsonl: sink runs alone: stop the group first or use another --job`);
      }
    }
    if (cfg.metricsPort === undefined) return new Instance(lock);
    // The Prometheus client loads only when metrics are served.
    const { JobMetrics, serveMetrics } = await import('./metrics.js');
    const metrics = new JobMetrics(cfg.job);
    try {
      return new Instance(lock, metrics, await serveMetrics(metrics, cfg.metricsPort, log));
    } catch (e) {
      metrics.close();
      await lock?.release();
      throw e;
    }
  }

  /** Port the metrics are served on, if any. */
  get metricsPort(): number | undefined {
    return this.server?.port;
  }

  /** Points the metrics at the job now running. */
  attach(job: Job): void {
    this.metrics?.attach(job);
  }

  /** Stops serving metrics and gives the job lock up. */
  async close(): Promise<void> {
    this.metrics?.close();
    await this.server?.close();
    await this.lock?.release();
  }
}
