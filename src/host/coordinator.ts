// The coordinator role of a group (host/group.ts decides who has it): one generation after another —
// a plan of who hosts which window actors under a new channel key, the remote actors handed their
// windows over NATS, the job run here (source, sink actor, checkpoints mirrored to NATS) — until the
// job ends, this process stops, or its lease is lost. A member leaving, joining or dying, a fault on
// any channel, or a dropped connection starts the next generation from the last checkpoint.

import type { NatsConnection } from 'nats';
import { TidemarkError } from '../errors.js';
import type { Logger } from '../log.js';
import { Job, openJobStore, type GroupView, type Placement } from '../actors/job.js';
import { GroupStore, SupersededError, type GenerationPlan, type MemberInfo, type MirrorPointer } from '../io/group-store.js';
import type { Lease } from '../io/lease.js';
import { Opener, Rejections, RunKey, Sealer, SENDER, memberSender, receive } from '../io/channel.js';
import { ChunkingPublisher } from '../io/framing.js';
import { partitionFilter, subjectsFor } from '../io/subjects.js';
import type { JobConfig } from '../runtime/job-config.js';
import { ensureStream } from '../io/jetstream-source.js';
import { isTransientNatsError } from '../io/nats-errors.js';
import { reconnectBackoff } from '../io/reconnect.js';
import { checkControlMsg } from '../actors/message-checks.js';
import { forEachSlice, yieldToLoop } from '../actors/slices.js';
import { SNAPSHOT_SLICE } from '../actors/partition-actor.js';
import type { ControlMsg } from '../actors/messages.js';
import type { PersistedWindow } from '../runtime/window-operator.js';
import { groupsOf } from '../runtime/key-groups.js';
import type { RoleContext } from './roles.js';

/** How long the coordinator waits for a member's hello and its actors' ready before doing without it. */
const MEMBER_ANSWER_MS = 15_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export type CoordinatorEnd = 'exit' | 'lost';

export class Coordinator {
  constructor(private readonly g: RoleContext) {}

  /** The coordinator role: generations until the job ends, this process stops, or the lease is lost. */
  async run(store: GroupStore, lease: Lease, first: boolean): Promise<CoordinatorEnd> {
    const epoch = lease.epoch;
    const lostSignal = lease.whenLost.then(() => undefined);
    const log = this.g.log.child({ epoch });
    // (debug: a refusal at start — a sink that cannot open — stays the one line a user sees)
    log.debug({ member: this.g.me.id }, `coordinator of job ${this.g.cfg.job} (epoch ${epoch})`);
    let cfg = this.g.cfg;
    try {
      let pointer: MirrorPointer | undefined;
      if (first && cfg.resetState) await store.resetMirror(epoch);
      else pointer = await store.claimMirror(epoch);
      // --from-checkpoint names a checkpoint of this state directory: it is not replaced by the mirror's.
      log.debug({ checkpoint: pointer?.cp }, 'checkpoint mirror claimed');
      if (!(first && cfg.fromCheckpoint !== undefined)) await this.syncLocalState(store, pointer, first && cfg.resetState);
      cfg = { ...cfg, resetState: false };
      const current = await store.plan();
      let planRevision = current?.revision ?? 0;
      const prev = current && !current.plan.done ? current.plan : undefined;
      const drainSeq = cfg.drain ? (prev?.drainSeq ?? (await ensureStream(await this.g.nc.jetstreamManager(), cfg.inputStream, cfg.inputSubjects)).lastSeq) : undefined;
      let gen = current?.plan.gen ?? 0;
      const backoff = reconnectBackoff();
      for (;;) {
        if (this.g.stopping) {
          await lease.release();
          return 'exit';
        }
        const members = await this.g.liveMembers(store);
        let next = 0;
        const assigned: GenerationPlan['members'] = members.map((m) => ({ id: m.id, actors: Array.from({ length: m.actors }, () => next++) }));
        // A partitioned input's sources go to the members, round robin: the coordinator merges what they read (its serial part).
        const spreadInput = inputSpread(cfg, assigned.length);
        if (spreadInput) for (let p = 0; p < cfg.inputPartitions; p++) (assigned[1 + (p % (assigned.length - 1))]!.inputs ??= []).push(p);
        const plan: GenerationPlan = { gen: ++gen, epoch, coordinator: this.g.me.id, total: next, members: assigned, run: GroupStore.newRun(), ...(drainSeq !== undefined ? { drainSeq } : {}) };
        const gl = log.child({ gen: plan.gen });
        const control = new ControlChannel(this.g.nc, cfg.job, plan, gl);
        let undo: (() => Promise<void>) | undefined;
        let job: Job | undefined;
        try {
          planRevision = await store.putPlan(plan, planRevision);
          const placement: Placement = {
            total: plan.total,
            local: assigned[0]!.actors,
            key: control.key,
            remote: (windowsOf, wm) => control.handOut(windowsOf, wm, (id) => this.g.suspects.add(id)),
            mirrorHead: pointer?.cp ?? 0,
            mirror: async (meta, chunks) => {
              pointer = await store.mirror({ meta, chunks }, epoch, pointer);
            },
            stamp: { epoch, gen: plan.gen, owners: ownersOf(plan, cfg.keyGroups) },
            // --prepare-on-members: every member prepares batches of input (decode, keys, score) for the source.
            ...(!cfg.prepareOnMembers ? {} : { prepare: { subjects: assigned.slice(1).map((_, i) => subjectsFor(cfg.job).prepare(i + 1)), from: (s) => s >= memberSender(1) && s < memberSender(assigned.length) } }),
            ...(drainSeq !== undefined ? { drainSeq } : {}),
            ...(spreadInput ? { mergedInput: true } : {}),
          };
          gl.debug({ members: assigned.map((m) => m.id) }, `starting generation ${plan.gen}`);
          job = await Job.start(cfg, this.g.nc, gl, placement);
          gl.info({ member: this.g.me.id, members: assigned.map((m) => `${m.id}:${m.actors.join('+')}`) }, `generation ${plan.gen}: ${members.length} instance(s), ${plan.total} window actors; coordinator ${this.g.me.id} (epoch ${epoch})`);
          job.group = groupView(plan, members, cfg.keyGroups);
          // --from-checkpoint picks the first generation's state; later ones go on from their own checkpoints.
          if (cfg.fromCheckpoint !== undefined) cfg = (({ fromCheckpoint: _from, ...rest }) => rest)(cfg);
          this.g.suspects.clear();
          this.g.job = job;
          undo = await this.g.hooks.started(job);
          const outcome = await this.watchGeneration(store, job, plan, control, lostSignal);
          if (outcome === 'done') {
            gl.info({ seq: job.source.seq, results: job.sink.counts.results, late: job.sink.counts.late, dead: job.sink.counts.dead, ...(job.prepared ? { batchesPreparedByMembers: job.prepared.remote, batchesPreparedHere: job.prepared.local } : {}) }, 'job finished');
            await store.putPlan({ ...plan, done: true }, planRevision);
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
          this.g.job = undefined;
          control.close();
          await undo?.().catch(() => undefined);
        }
      }
    } catch (e) {
      if (e instanceof SupersededError) return 'lost';
      await lease.release();
      // NATS failing over while the role is taken (reading the mirror, the plan, the stream): the role is
      // given up and taken again (by this process or another) once NATS answers, never a raw error.
      if (isTransientNatsError(e)) {
        this.g.log.warn({ err: (e as Error).message }, `coordinator role given up while NATS fails over (${(e as Error).message}); taking it again`);
        await sleep(1000);
        return 'lost';
      }
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
      rebalanceTimer = setTimeout(() => trigger({ restart: `${why} (rebalanced from the last checkpoint)` }), Math.max(2000, 2 * this.g.cfg.checkpointInterval));
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
      void this.g.liveMembers(store)
        .then((live) => {
          const ids = new Set(live.map((m) => m.id));
          const gone = [...planned].filter((id) => !ids.has(id));
          if (gone.length) trigger({ restart: `member(s) ${gone.join(', ')} gone (lease expired or process dead)` });
          const joined = live.filter((m) => !planned.has(m.id)).map((m) => m.id);
          if (joined.length) rebalanceSoon(`member(s) ${joined.join(', ')} joined`);
        })
        .catch(() => store.observer.blind());
    }, Math.max(100, Math.floor(this.g.cfg.leaseTtl / 3)));
    const disconnected = new Promise<{ restart: string; backoff: boolean }>((r) => (this.g.lostConnection = () => r({ restart: 'the NATS connection was lost', backoff: true })));
    const stop = this.g.stopSignal.then(async () => {
      await job.stop().catch(() => undefined);
      return 'stopped' as const;
    });
    try {
      const finished = job.run().then(() => (this.g.stopping ? ('stopped' as const) : ('done' as const)));
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
    const local = await openJobStore(this.g.cfg.stateDir, this.g.cfg.job, reset);
    try {
      if (!pointer) return;
      const mine = local.recorded(pointer.cp);
      if (mine && mine.hash === pointer.hash && mine.seq === pointer.seq && local.maxId === pointer.cp) return;
      const chain = await store.fetchChain(pointer);
      await local.reset();
      // Each chunk decoded as the store takes it, a turn of the event loop every few thousand entries.
      for (const w of chain) await local.write(w, yieldToLoop);
      this.g.log.info({ checkpoint: pointer.cp, chain: chain.length }, `restored checkpoint ${pointer.cp} from the group's mirror in NATS (${chain.length} checkpoint(s) in its chain)`);
    } finally {
      await local.close();
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
  async handOut(windowsOf: (actor: number) => Iterable<PersistedWindow>, watermark: number, suspect: (member: string) => void): Promise<void> {
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

/**
 * True when a generation of `instances` reads its input partition by partition, each on the
 * instance the plan names: a partitioned input (`--input-partitions` > 1) whose one input subject
 * lets a consumer read a partition alone, in a group of two or more. Otherwise the coordinator's
 * source reads the whole stream (with `--prepare-on-members`, the members prepare it).
 */
function inputSpread(cfg: Pick<JobConfig, 'inputPartitions' | 'inputSubjects'>, instances: number): boolean {
  return cfg.inputPartitions > 1 && instances > 1 && partitionFilter(cfg.inputSubjects, 0) !== undefined;
}

/** A generation as `status` shows it: each instance's roles, window actors and key groups. */
export function groupView(plan: GenerationPlan, members: readonly MemberInfo[], keyGroups: number): GroupView {
  const owners = ownersOf(plan, keyGroups);
  return {
    epoch: plan.epoch,
    gen: plan.gen,
    instances: plan.members.map((m) => {
      const info = members.find((x) => x.id === m.id);
      const roles = [...(m.id === plan.coordinator ? ['coordinator', 'source', 'sink'] : []), ...(m.inputs?.length ? ['input partitions'] : []), ...(m.actors.length ? ['window actors'] : [])];
      return { id: m.id, host: info?.host ?? '?', pid: info?.pid ?? 0, roles, actors: m.actors, keyGroups: owners.filter((o) => o[0] === m.id).map(([, from, to]) => [from, to] as [number, number]), ...(m.inputs ? { inputs: m.inputs } : {}) };
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
