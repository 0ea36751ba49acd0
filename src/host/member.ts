// The member role of a group (host/group.ts decides who has it): follow the coordinator's plans and host
// the window actors each generation gives this process. Each actor waits for its key groups' windows
// from the coordinator (restore messages), then listens for its batches like any partition actor;
// faults go back to the coordinator, which restarts the generation from its last checkpoint.

import type { NatsConnection, Subscription } from 'nats';
import { Opener, Rejections, RunKey, Sealer, SENDER, memberSender, receive, type ChannelContext } from '../io/channel.js';
import { Reassembler } from '../io/framing.js';
import { servePrepare } from '../io/remote-prepare.js';
import { partitionFilter, subjectsFor } from '../io/subjects.js';
import { InputReader } from '../actors/input-reader.js';
import { scoringPoolFor } from '../actors/job.js';
import type { ScoringPool } from '../io/scoring-pool.js';
import type { GenerationPlan, GroupStore } from '../io/group-store.js';
import { Lease } from '../io/lease.js';
import { coordinatorGone, type CoordinatorLease, type RoleContext } from './roles.js';
import type { JobConfig } from '../runtime/job-config.js';
import type { Logger } from '../log.js';
import { PartitionActor } from '../actors/partition-actor.js';
import { tuneHeapForWindows } from '../actors/heap.js';
import { checkRestoreMsg } from '../actors/message-checks.js';
import type { ControlMsg } from '../actors/messages.js';

export class MemberActors {
  readonly actors: PartitionActor[] = [];
  readonly readers: InputReader[] = [];
  /** The worker threads its input partitions' sources prepare on. */
  private pool?: ScoringPool;
  private readonly subs: Subscription[] = [];
  private readonly sealer: Sealer;
  private readonly subj: ReturnType<typeof subjectsFor>;
  private stopped = false;
  readonly ctx: ChannelContext;

  private constructor(
    private readonly nc: NatsConnection,
    job: string,
    readonly plan: GenerationPlan,
    index: number,
    log: Logger,
  ) {
    const key = RunKey.shared(plan.run);
    this.subj = subjectsFor(job);
    this.sealer = new Sealer(key, memberSender(index));
    this.ctx = { key, rejects: new Rejections((f, m) => log.warn(f, m)), fault: (why) => this.send({ t: 'fault', gen: plan.gen, why }) };
  }

  /** Starts the actors `plan` gives member `me`; they go live once their windows arrive. */
  static async start(nc: NatsConnection, cfg: JobConfig, plan: GenerationPlan, me: string, log: Logger): Promise<MemberActors | undefined> {
    const index = plan.members.findIndex((m) => m.id === me);
    if (index < 0) return undefined;
    tuneHeapForWindows();
    const m = new MemberActors(nc, cfg.job, plan, index, log);
    for (const p of plan.members[index]!.actors) {
      const actor = new PartitionActor(nc, p, { job: cfg.job, window: cfg.window, lateness: cfg.lateness, mode: cfg.emit, compiled: cfg.compiled }, m.ctx);
      actor.onFail = (e) => m.send({ t: 'fault', gen: plan.gen, why: e.message, fatal: true });
      m.actors.push(actor);
      const subject = m.subj.restore(p);
      const inbox = new Opener(m.ctx.key, subject, (from) => from === SENDER.coordinator);
      const parts = new Reassembler();
      const sub = nc.subscribe(subject);
      m.subs.push(sub);
      void (async () => {
        for await (const raw of sub) {
          let data: Uint8Array | undefined;
          try {
            data = parts.push(raw);
          } catch (e) {
            m.ctx.rejects.note(subject, (e as Error).message);
          }
          if (!data) continue;
          const msg = receive(m.ctx, inbox, data, checkRestoreMsg)?.msg;
          if (!msg || msg.gen !== plan.gen || msg.actor !== p) continue;
          await actor.restore(msg.windows, msg.watermark);
          if (!msg.last) continue;
          if (m.stopped) break;
          actor.start(cfg.job);
          await nc.flush();
          m.send({ t: 'ready', gen: plan.gen, actor: p });
          break;
        }
      })().catch((e: unknown) => m.ctx.fault(`restoring actor ${p}: ${(e as Error).message}`));
    }
    // A partitioned input: the partitions the plan gives this process are read here and sent, prepared, to the coordinator's merge.
    const inputs = plan.members[index]!.inputs ?? [];
    if (inputs.length) {
      const jsm = await nc.jetstreamManager();
      // Its posts are prepared on this process's worker threads (--scoring-threads), as the coordinator's source would.
      const pool = scoringPoolFor(cfg);
      m.pool = pool;
      for (const p of inputs) {
        const filter = partitionFilter(cfg.inputSubjects, p);
        if (!filter) continue;
        const r = new InputReader(nc, jsm, m.ctx, { job: cfg.job, stream: cfg.inputStream, filter, partition: p, batchSize: cfg.batchSize, preparer: pool });
        r.listen();
        m.readers.push(r);
      }
    }
    // The order-free part of the coordinator's intake: batches of input to decode, key and score.
    m.subs.push(servePrepare(nc, m.ctx, m.subj.prepare(index), SENDER.source, memberSender(index), cfg.compiled));
    await nc.flush();
    m.send({ t: 'hello', gen: plan.gen, member: me, actors: plan.members[index]!.actors });
    return m;
  }

  /**
   * The NATS connection dropped: messages to or from this member's actors (and its input partitions'
   * sources) may be lost, and a lost one that nothing follows shows no gap. The coordinator restarts the
   * generation from its last checkpoint (this fault is sent once NATS is back), as it does for its own.
   */
  connectionLost(member: string): void {
    this.send({ t: 'fault', gen: this.plan.gen, why: `member ${member} lost its NATS connection (messages to or from it may be lost)` });
  }

  /** Asks the coordinator to do without this member from the next generation on. */
  leave(member: string): void {
    this.send({ t: 'leave', gen: this.plan.gen, member });
  }

  stop(): void {
    this.stopped = true;
    for (const s of this.subs) s.unsubscribe();
    for (const a of this.actors) a.stop();
    for (const r of this.readers) r.stop();
    void this.pool?.close();
  }

  private send(msg: ControlMsg): void {
    if (this.stopped && msg.t !== 'leave') return;
    this.nc.publish(this.subj.control, this.sealer.seal(this.subj.control, msg));
  }
}

/** The member role: host the actors each plan gives this process, until the job ends or the coordinator's lease is free. */
export async function followPlans(g: RoleContext, store: GroupStore, lease: Lease, startGen: number): Promise<'exit' | 'vacant'> {
  let current: MemberActors | undefined;
  let gen = 0;
  let resolveEnd: (e: 'exit' | 'vacant') => void = () => undefined;
  const ended = new Promise<'exit' | 'vacant'>((r) => (resolveEnd = r));
  let chain = Promise.resolve();
  const onPlan = (plan: GenerationPlan): void => {
    chain = chain.then(async () => {
      if (plan.gen <= gen) return;
      gen = plan.gen;
      current?.stop();
      current = undefined;
      if (plan.done) {
        if (plan.gen > startGen) resolveEnd('exit');
        return;
      }
      if (g.stopping && !plan.members.some((m) => m.id === g.me.id)) {
        resolveEnd('exit');
        return;
      }
      current = await MemberActors.start(g.nc, g.cfg, plan, g.me.id, g.log.child({ gen: plan.gen }));
      const mine = plan.members.find((m) => m.id === g.me.id);
      if (current) g.log.info({ gen: plan.gen, actors: mine?.actors, ...(mine?.inputs ? { inputPartitions: mine.inputs } : {}) }, `member of job ${g.cfg.job}, generation ${plan.gen}`);
    }).catch((e: unknown) => g.log.error({ err: (e as Error).message }, 'could not join the generation'));
  };
  // Plans come by a watch, and are also read at every vacancy check: the watch is an ordered consumer,
  // which can wait for ever once its node died in a failover (or not be made while NATS fails over).
  const stopWatch = await store.watchPlan(onPlan).catch((e: unknown) => {
    g.log.warn({ err: (e as Error).message }, `could not watch the plans of job ${g.cfg.job} (${(e as Error).message}); reading them every ${Math.round(g.cfg.leaseTtl / 3)} ms`);
    return () => undefined;
  });
  const vacancy = setInterval(() => {
    void Lease.holder<CoordinatorLease>(store.leases, 'coordinator')
      .then(async (h) => {
        // A coordinator that ended the job (drain) released its lease after writing so: the plan after the lease.
        const p = await store.plan();
        if (p) onPlan(p.plan);
        if (h && !coordinatorGone(store, h)) return;
        resolveEnd(p?.plan.done && p.plan.gen > startGen ? 'exit' : 'vacant');
      })
      .catch(() => store.observer.blind());
  }, Math.max(100, Math.floor(g.cfg.leaseTtl / 3)));
  g.lostConnection = () => current?.connectionLost(g.me.id);
  const onStop = g.stopSignal.then(async () => {
    g.log.info('stopping: leaving the group');
    await lease.update({ ...g.me, leaving: true }).catch(() => undefined);
    current?.leave(g.me.id);
    // The coordinator rebalances at its next checkpoint; without an answer in time, leave anyway.
    setTimeout(() => resolveEnd('exit'), 10_000).unref();
  });
  try {
    return await ended;
  } finally {
    void onStop;
    g.lostConnection = () => undefined;
    clearInterval(vacancy);
    stopWatch();
    await chain;
    current?.stop();
  }
}
