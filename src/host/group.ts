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
import { Job, openJobStore, type GroupView, type Placement } from '../actors/job.js';
import { GroupStore, SupersededError, type GenerationPlan, type MemberInfo, type MirrorPointer } from '../io/group-store.js';
import { Lease } from '../io/lease.js';
import { Opener, Rejections, RunKey, Sealer, SENDER, memberSender, receive } from '../io/channel.js';
import { ChunkingPublisher } from '../io/framing.js';
import { subjectsFor } from '../io/subjects.js';
import { ensureStream } from '../io/jetstream-source.js';
import { isTransientNatsError } from '../io/nats-errors.js';
import { reconnectBackoff } from '../io/reconnect.js';
import { checkControlMsg } from '../actors/message-checks.js';
import { forEachSlice } from '../actors/slices.js';
import { SNAPSHOT_SLICE } from '../actors/partition-actor.js';
import type { ControlMsg } from '../actors/messages.js';
import type { PersistedWindow } from '../runtime/window-operator.js';
import { MemberActors } from './member.js';
import { JobLock, alreadyRunning, DEFAULT_LOCK_TTL } from '../io/job-lock.js';
import { holderIsDeadHere } from './instance.js';
import { groupsOf } from '../runtime/key-groups.js';

/** How long the coordinator waits for a member's hello and its actors' ready before doing without it. */
const MEMBER_ANSWER_MS = 15_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** What the process around the group does with a generation's job on the coordinator. */
export interface GroupHooks {
  /** The coordinator's job of a new generation is running here; returns what undoes it (the service). */
  started(job: Job): Promise<() => Promise<void>>;
}

/** True when `info` names a process on this host that no longer runs (a `kill -9`ed instance). */
function deadHere(info: { host: string; pid: number }): boolean {
  if (info.host !== hostname() || info.pid === process.pid) return false;
  try {
    process.kill(info.pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

type CoordinatorEnd = 'exit' | 'lost';

/** One process's part in a group. */
export class GroupInstance {
  readonly me: MemberInfo;
  private stopping = false;
  private stopRequested: () => void = () => undefined;
  private readonly stopSignal: Promise<void>;
  private currentJob?: Job;
  /** Members that did not answer a generation's start: left out of the next one (a dead one's lease expires meanwhile). */
  private readonly suspects = new Set<string>();

  constructor(
    private readonly nc: NatsConnection,
    private readonly cfg: JobConfig,
    private readonly log: Logger,
    version: string,
    private readonly hooks: GroupHooks,
  ) {
    this.me = { id: randomBytes(6).toString('hex'), host: hostname(), pid: process.pid, stateDir: resolve(cfg.stateDir), since: Date.now(), version, actors: cfg.partitions };
    this.stopSignal = new Promise((r) => (this.stopRequested = r));
  }

  private lostConnection: () => void = () => undefined;

  /** The NATS connection dropped: messages between instances may be lost, so the generation restarts. */
  connectionLost(): void {
    this.lostConnection();
  }

  /** The coordinator's job while this process is the coordinator. */
  get job(): Job | undefined {
    return this.currentJob;
  }

  /** SIGTERM: a coordinator takes a final checkpoint and hands over; a member leaves; both exit 0. */
  stop(): void {
    this.stopping = true;
    this.stopRequested();
  }

  /** Runs until the job ends (drain), or this process is stopped. Resolves with the exit code. */
  async run(): Promise<number> {
    // The group's buckets are replicated like the input stream (R3 on a cluster that replicates it).
    const replicas = await this.nc
      .jetstreamManager()
      .then((jsm) => jsm.streams.info(this.cfg.inputStream))
      .then((i) => i.config.num_replicas || 1)
      .catch(() => 1);
    // A single instance of this job (one with a jsonl: sink holds the job lock) is not joined.
    const single = await JobLock.holderOf(this.nc, this.cfg.job);
    if (single && !(await holderIsDeadHere(single, this.cfg))) throw alreadyRunning(this.cfg.job, single, DEFAULT_LOCK_TTL);
    const store = await GroupStore.open(this.nc, this.cfg.job, this.cfg.leaseTtl, replicas);
    const lease = await Lease.tryAcquire(store.leases, `member.${this.me.id}`, this.me, { ttl: store.ttl, log: this.log, renewExpired: true });
    if (!lease) throw new TidemarkError('NATS_UNAVAILABLE', `could not register member ${this.me.id} of job ${this.cfg.job}`);
    const startPlan = (await store.plan())?.plan.gen ?? 0;
    let first = true;
    try {
      for (;;) {
        if (this.stopping) return 0;
        const coordinator = await this.acquireCoordinator(store);
        if (coordinator) {
          const end = await this.coordinate(store, coordinator, first);
          first = false;
          if (end === 'exit') return 0;
          continue;
        }
        first = false;
        if ((await this.follow(store, lease, startPlan)) === 'exit') return 0;
      }
    } finally {
      await lease.release();
    }
  }

  /** Takes the coordinator lease when it is free or its holder is dead on this host. */
  private async acquireCoordinator(store: GroupStore): Promise<Lease | undefined> {
    const value = { id: this.me.id, host: this.me.host, pid: this.me.pid };
    const opts = { ttl: store.ttl, log: this.log };
    let lease = await Lease.tryAcquire(store.leases, 'coordinator', value, opts);
    if (!lease) {
      const holder = await Lease.holder<{ id: string; host: string; pid: number }>(store.leases, 'coordinator');
      if (holder && deadHere(holder.value)) {
        lease = await Lease.takeOver(store.leases, 'coordinator', value, holder.revision, opts);
        if (lease) this.log.warn({ previous: holder.value }, `took the coordinator role of job ${this.cfg.job} over from a dead instance (pid ${holder.value.pid})`);
      }
    }
    return lease;
  }

  /** Live members that can host actors: this one first, then by id. */
  private async liveMembers(store: GroupStore): Promise<MemberInfo[]> {
    const all = await store.members();
    const others = all.filter((m) => m.id !== this.me.id && !m.leaving && !deadHere(m) && !this.suspects.has(m.id));
    return [this.me, ...others];
  }

  /** The coordinator role: generations until the job ends, this process stops, or the lease is lost. */
  private async coordinate(store: GroupStore, lease: Lease, first: boolean): Promise<CoordinatorEnd> {
    const epoch = lease.epoch;
    const lostSignal = lease.whenLost.then(() => undefined);
    const log = this.log.child({ epoch });
    // (debug: a refusal at start — a sink that cannot open — stays the one line a user sees)
    log.debug({ member: this.me.id }, `coordinator of job ${this.cfg.job} (epoch ${epoch})`);
    let cfg = this.cfg;
    try {
      let pointer: MirrorPointer | undefined;
      if (first && cfg.resetState) await store.resetMirror(epoch);
      else pointer = await store.claimMirror(epoch);
      // --from-checkpoint names a checkpoint of this state directory: it is not replaced by the mirror's.
      if (!(first && cfg.fromCheckpoint !== undefined)) await this.syncLocalState(store, pointer, first && cfg.resetState);
      cfg = { ...cfg, resetState: false };
      let current = await store.plan();
      let planRevision = current?.revision ?? 0;
      const prev = current && !current.plan.done ? current.plan : undefined;
      const drainSeq = cfg.drain ? (prev?.drainSeq ?? (await ensureStream(await this.nc.jetstreamManager(), cfg.inputStream, cfg.inputSubjects)).lastSeq) : undefined;
      let gen = current?.plan.gen ?? 0;
      const backoff = reconnectBackoff();
      for (;;) {
        if (this.stopping) {
          await lease.release();
          return 'exit';
        }
        const members = await this.liveMembers(store);
        let next = 0;
        const assigned = members.map((m) => ({ id: m.id, actors: Array.from({ length: m.actors }, () => next++) }));
        const plan: GenerationPlan = { gen: ++gen, epoch, coordinator: this.me.id, total: next, members: assigned, run: GroupStore.newRun(), ...(drainSeq !== undefined ? { drainSeq } : {}) };
        const gl = log.child({ gen: plan.gen });
        const control = new ControlChannel(this.nc, cfg.job, plan, gl);
        let undo: (() => Promise<void>) | undefined;
        let job: Job | undefined;
        try {
          planRevision = await store.putPlan(plan, planRevision);
          const placement: Placement = {
            total: plan.total,
            local: assigned[0]!.actors,
            key: control.key,
            remote: (windowsOf, wm) => control.handOut(windowsOf, wm, (id) => this.suspects.add(id)),
            mirror: async (w, meta) => {
              pointer = await store.mirror(w, meta.hash, epoch, pointer);
            },
            stamp: { epoch, gen: plan.gen, owners: ownersOf(plan, cfg.keyGroups) },
            ...(drainSeq !== undefined ? { drainSeq } : {}),
          };
          job = await Job.start(cfg, this.nc, gl, placement);
          gl.info({ member: this.me.id, members: assigned.map((m) => `${m.id}:${m.actors.join('+')}`) }, `generation ${plan.gen}: ${members.length} instance(s), ${plan.total} window actors; coordinator ${this.me.id} (epoch ${epoch})`);
          job.group = groupView(plan, members, cfg.keyGroups);
          // --from-checkpoint picks the first generation's state; later ones go on from their own checkpoints.
          if (cfg.fromCheckpoint !== undefined) cfg = (({ fromCheckpoint: _from, ...rest }) => rest)(cfg);
          this.suspects.clear();
          this.currentJob = job;
          undo = await this.hooks.started(job);
          const outcome = await this.watchGeneration(store, job, plan, control, lostSignal);
          if (outcome === 'done') {
            gl.info({ seq: job.source.seq, results: job.sink.counts.results, late: job.sink.counts.late, dead: job.sink.counts.dead }, 'job finished');
            current = { plan: { ...plan, done: true }, revision: await store.putPlan({ ...plan, done: true }, planRevision) };
            await job.close();
            await lease.release();
            return 'exit';
          }
          if (outcome === 'stopped') {
            gl.info('stopped after a final checkpoint; the coordinator role is handed over');
            await job.close();
            await lease.release();
            return 'exit';
          }
          await job.abort();
          if (outcome === 'lost') return 'lost';
          gl.warn({ reason: outcome.restart }, `new generation from the last checkpoint: ${outcome.restart}`);
          if (outcome.backoff) await sleep(backoff());
        } catch (e) {
          await job?.abort().catch(() => undefined);
          if (e instanceof SupersededError) {
            gl.warn({ err: e.message }, 'superseded: another instance coordinates the job now');
            return 'lost';
          }
          if (!isTransientNatsError(e) && !(e instanceof TidemarkError && e.code === 'NOT_AVAILABLE')) throw e;
          gl.warn({ err: (e as Error).message }, `generation ${plan.gen} could not start: ${(e as Error).message}`);
          await sleep(backoff());
        } finally {
          this.currentJob = undefined;
          control.close();
          await undo?.().catch(() => undefined);
        }
      }
    } catch (e) {
      if (e instanceof SupersededError) return 'lost';
      await lease.release();
      throw e;
    }
  }

  /** Runs a generation until the job ends, it must restart, this process stops, or the lease is lost. */
  private async watchGeneration(store: GroupStore, job: Job, plan: GenerationPlan, control: ControlChannel, lostSignal: Promise<void>): Promise<'done' | 'stopped' | 'lost' | { restart: string; backoff?: boolean }> {
    let trigger: (o: { restart: string; backoff?: boolean }) => void = () => undefined;
    const triggered = new Promise<{ restart: string; backoff?: boolean }>((r) => (trigger = r));
    let rebalance: string | undefined;
    let rebalanceTimer: NodeJS.Timeout | undefined;
    // Taken in or out at the next checkpoint; an idle job takes none, so at the latest after two intervals.
    const rebalanceSoon = (why: string): void => {
      if (rebalance) return;
      rebalance = why;
      rebalanceTimer = setTimeout(() => trigger({ restart: `${why} (rebalanced from the last checkpoint)` }), Math.max(2000, 2 * this.cfg.checkpointInterval));
    };
    const prevCheckpoint = job.sink.onCheckpoint;
    job.sink.onCheckpoint = (e) => {
      prevCheckpoint?.(e);
      if (rebalance) trigger({ restart: `${rebalance} (rebalanced at checkpoint ${e.meta.id})` });
    };
    control.onMessage = (m) => {
      if (m.t === 'fault') {
        if (m.fatal) job.source.fail(new TidemarkError('USER_CODE', m.why));
        else trigger({ restart: `a member reported: ${m.why}`, backoff: true });
      } else if (m.t === 'leave') rebalanceSoon(`member ${m.member} leaves`);
    };
    const planned = new Set(plan.members.map((m) => m.id));
    const poll = setInterval(() => {
      void this.liveMembers(store)
        .then((live) => {
          const ids = new Set(live.map((m) => m.id));
          const gone = [...planned].filter((id) => !ids.has(id));
          if (gone.length) trigger({ restart: `member(s) ${gone.join(', ')} gone (lease expired or process dead)` });
          const joined = live.filter((m) => !planned.has(m.id)).map((m) => m.id);
          if (joined.length) rebalanceSoon(`member(s) ${joined.join(', ')} joined`);
        })
        .catch(() => undefined);
    }, Math.max(100, Math.floor(this.cfg.leaseTtl / 3)));
    const disconnected = new Promise<{ restart: string; backoff: boolean }>((r) => (this.lostConnection = () => r({ restart: 'the NATS connection was lost', backoff: true })));
    const stop = this.stopSignal.then(async () => {
      await job.stop().catch(() => undefined);
      return 'stopped' as const;
    });
    try {
      const finished = job.run().then(() => (this.stopping ? ('stopped' as const) : ('done' as const)));
      return await Promise.race([
        finished.catch((e: unknown) => {
          if (isTransientNatsError(e)) return { restart: (e as Error).message, backoff: true };
          throw e;
        }),
        job.faulted.then((why) => ({ restart: why, backoff: true })),
        triggered,
        disconnected,
        lostSignal.then(() => 'lost' as const),
        stop.then(() => finished),
      ]);
    } finally {
      clearInterval(poll);
      clearTimeout(rebalanceTimer);
    }
  }

  /**
   * Makes the local LevelDB hold the mirror's newest checkpoint: kept as it is when its newest
   * checkpoint is that one, otherwise replaced by the mirror's chain (another instance coordinated since).
   */
  private async syncLocalState(store: GroupStore, pointer: MirrorPointer | undefined, reset: boolean): Promise<void> {
    const local = await openJobStore(this.cfg.stateDir, this.cfg.job, reset);
    try {
      if (!pointer) return;
      const mine = local.recorded(pointer.cp);
      if (mine && mine.hash === pointer.hash && mine.seq === pointer.seq && local.maxId === pointer.cp) return;
      const chain = await store.fetchChain(pointer);
      await local.reset();
      for (const w of chain) await local.write(w);
      this.log.info({ checkpoint: pointer.cp, chain: chain.length }, `restored checkpoint ${pointer.cp} from the group's mirror in NATS (${chain.length} checkpoint(s) in its chain)`);
    } finally {
      await local.close();
    }
  }

  /** The member role: host the actors each plan gives this process, until the job ends or the coordinator's lease is free. */
  private async follow(store: GroupStore, lease: Lease, startGen: number): Promise<'exit' | 'vacant'> {
    let current: MemberActors | undefined;
    let gen = 0;
    let resolveEnd: (e: 'exit' | 'vacant') => void = () => undefined;
    const ended = new Promise<'exit' | 'vacant'>((r) => (resolveEnd = r));
    let chain = Promise.resolve();
    const stopWatch = await store.watchPlan((plan) => {
      chain = chain.then(async () => {
        if (plan.gen <= gen) return;
        gen = plan.gen;
        current?.stop();
        current = undefined;
        if (plan.done) {
          if (plan.gen > startGen) resolveEnd('exit');
          return;
        }
        if (this.stopping && !plan.members.some((m) => m.id === this.me.id)) {
          resolveEnd('exit');
          return;
        }
        current = await MemberActors.start(this.nc, this.cfg, plan, this.me.id, this.log.child({ gen: plan.gen }));
        if (current) this.log.info({ gen: plan.gen, actors: plan.members.find((m) => m.id === this.me.id)?.actors }, `member of job ${this.cfg.job}, generation ${plan.gen}`);
      }).catch((e: unknown) => this.log.error({ err: (e as Error).message }, 'could not join the generation'));
    });
    const vacancy = setInterval(() => {
      void Lease.holder<{ id: string; host: string; pid: number }>(store.leases, 'coordinator')
        .then(async (h) => {
          if (h && !deadHere(h.value)) return;
          // A coordinator that ended the job (drain) released its lease after writing so.
          const p = await store.plan();
          resolveEnd(p?.plan.done && p.plan.gen > startGen ? 'exit' : 'vacant');
        })
        .catch(() => undefined);
    }, Math.max(100, Math.floor(this.cfg.leaseTtl / 3)));
    const onStop = this.stopSignal.then(async () => {
      this.log.info('stopping: leaving the group');
      await lease.update({ ...this.me, leaving: true }).catch(() => undefined);
      current?.leave(this.me.id);
      // The coordinator rebalances at its next checkpoint; without an answer in time, leave anyway.
      setTimeout(() => resolveEnd('exit'), 10_000).unref();
    });
    try {
      return await ended;
    } finally {
      void onStop;
      clearInterval(vacancy);
      stopWatch();
      await chain;
      current?.stop();
    }
  }
}

/** The coordinator's side of a generation's control subject, and the restore hand-out. */
class ControlChannel {
  readonly key: RunKey;
  private readonly sub;
  private readonly subj;
  private readonly sealer: Sealer;
  private readonly pub: ChunkingPublisher;
  /** Members that said hello and actors that are ready, and who waits for them (either may come first). */
  private readonly hellos = new Arrivals<string>();
  private readonly readies = new Arrivals<number>();
  onMessage?: (m: ControlMsg) => void;

  constructor(
    private readonly nc: NatsConnection,
    job: string,
    private readonly plan: GenerationPlan,
    log: Logger,
  ) {
    this.key = RunKey.shared(plan.run);
    this.subj = subjectsFor(job);
    this.sealer = new Sealer(this.key, SENDER.coordinator);
    this.pub = new ChunkingPublisher(nc);
    const ctx = { key: this.key, rejects: new Rejections((f, m) => log.warn(f, m)), fault: (why: string) => this.onMessage?.({ t: 'fault', gen: plan.gen, why }) };
    const n = plan.members.length;
    const inbox = new Opener(this.key, this.subj.control, (from) => from >= memberSender(1) && from < memberSender(n));
    this.sub = nc.subscribe(this.subj.control, {
      callback: (err, m) => {
        if (err) return;
        const msg = receive(ctx, inbox, m.data, checkControlMsg)?.msg;
        if (!msg || msg.gen !== plan.gen) return;
        if (msg.t === 'hello') this.hellos.arrive(msg.member);
        else if (msg.t === 'ready') this.readies.arrive(msg.actor);
        else this.onMessage?.(msg);
      },
    });
  }

  /** Sends every remote actor its windows once its member said hello; resolves when all are ready. */
  async handOut(windowsOf: (actor: number) => PersistedWindow[], watermark: number, suspect: (member: string) => void): Promise<void> {
    await this.nc.flush();
    const remote = this.plan.members.slice(1);
    await Promise.all(
      remote.map(async (m) => {
        const ready = m.actors.map((a) => this.readies.wait(a));
        const hello = this.hellos.wait(m.id);
        const answered = await within(hello, MEMBER_ANSWER_MS);
        if (!answered) {
          suspect(m.id);
          throw new TidemarkError('NOT_AVAILABLE', `member ${m.id} did not answer generation ${this.plan.gen} within ${MEMBER_ANSWER_MS / 1000}s; starting again without it`);
        }
        for (const a of m.actors) {
          const subject = this.subj.restore(a);
          await forEachSlice(windowsOf(a), SNAPSHOT_SLICE, (windows, last) => {
            this.pub.publish(subject, this.sealer.seal(subject, { t: 'restore', gen: this.plan.gen, actor: a, windows, watermark, last }));
          });
        }
        if (!(await within(Promise.all(ready), MEMBER_ANSWER_MS))) {
          suspect(m.id);
          throw new TidemarkError('NOT_AVAILABLE', `member ${m.id}'s actors were not ready for generation ${this.plan.gen} within ${MEMBER_ANSWER_MS / 1000}s; starting again without it`);
        }
      }),
    );
  }

  close(): void {
    this.sub.unsubscribe();
  }
}

/** A generation as `status` shows it: each instance's roles, window actors and key groups. */
export function groupView(plan: GenerationPlan, members: readonly MemberInfo[], keyGroups: number): GroupView {
  const owners = ownersOf(plan, keyGroups);
  return {
    epoch: plan.epoch,
    gen: plan.gen,
    instances: plan.members.map((m) => {
      const info = members.find((x) => x.id === m.id);
      const roles = [...(m.id === plan.coordinator ? ['coordinator', 'source', 'sink'] : []), ...(m.actors.length ? ['window actors'] : [])];
      return { id: m.id, host: info?.host ?? '?', pid: info?.pid ?? 0, roles, actors: m.actors, keyGroups: owners.filter((o) => o[0] === m.id).map(([, from, to]) => [from, to] as [number, number]) };
    }),
  };
}

/** Key-group ranges [member, from, to) of a plan (each actor's contiguous range, merged per member). */
export function ownersOf(plan: GenerationPlan, keyGroups: number): Array<[string, number, number]> {
  const out: Array<[string, number, number]> = [];
  for (const m of plan.members) {
    for (const a of m.actors) {
      const { from, to } = groupsOf(a, { keyGroups, actors: plan.total });
      if (from === to) continue;
      const last = out[out.length - 1];
      if (last && last[0] === m.id && last[2] === from) last[2] = to;
      else out.push([m.id, from, to]);
    }
  }
  return out;
}

/** Arrivals of named events, waited for before or after they come. */
class Arrivals<K> {
  private readonly arrived = new Set<K>();
  private readonly waiting = new Map<K, () => void>();

  arrive(k: K): void {
    this.arrived.add(k);
    this.waiting.get(k)?.();
  }

  wait(k: K): Promise<void> {
    if (this.arrived.has(k)) return Promise.resolve();
    return new Promise((r) => this.waiting.set(k, r));
  }
}

/** True when `p` settles within `ms`. */
async function within(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((r) => (timer = setTimeout(() => r(false), ms)));
  try {
    return await Promise.race([p.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
