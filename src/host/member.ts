// The window actors a member instance hosts for one generation of a group: each waits for its key
// groups' windows from the coordinator (restore messages), then listens for its batches like any
// partition actor; faults go back to the coordinator, which restarts the generation from its last checkpoint.

import type { NatsConnection, Subscription } from 'nats';
import { Opener, Rejections, RunKey, Sealer, SENDER, memberSender, receive, type ChannelContext } from '../io/channel.js';
import { Reassembler } from '../io/framing.js';
import { subjectsFor } from '../io/subjects.js';
import type { GenerationPlan } from '../io/group-store.js';
import type { JobConfig } from '../runtime/job-config.js';
import type { Logger } from '../log.js';
import { PartitionActor } from '../actors/partition-actor.js';
import { tuneHeapForWindows } from '../actors/heap.js';
import { checkRestoreMsg } from '../actors/message-checks.js';
import type { ControlMsg } from '../actors/messages.js';

export class MemberActors {
  readonly actors: PartitionActor[] = [];
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
          // The windows of the actor's key groups, as one run (restoreGroups slices them).
          await actor.restore(new Map([[0, msg.windows]]), { from: 0, to: 1 }, msg.watermark);
          if (!msg.last) continue;
          if (m.stopped) break;
          actor.start(cfg.job);
          await nc.flush();
          m.send({ t: 'ready', gen: plan.gen, actor: p });
          break;
        }
      })().catch((e: unknown) => m.ctx.fault(`restoring actor ${p}: ${(e as Error).message}`));
    }
    await nc.flush();
    m.send({ t: 'hello', gen: plan.gen, member: me, actors: plan.members[index]!.actors });
    return m;
  }

  /** Resolves when every actor has processed the end of input. */
  async finished(): Promise<void> {
    await Promise.all(this.actors.map((a) => a.finished()));
  }

  /** Asks the coordinator to do without this member from the next generation on. */
  leave(member: string): void {
    this.send({ t: 'leave', gen: this.plan.gen, member });
  }

  stop(): void {
    this.stopped = true;
    for (const s of this.subs) s.unsubscribe();
    for (const a of this.actors) a.stop();
  }

  private send(msg: ControlMsg): void {
    if (this.stopped && msg.t !== 'leave') return;
    this.nc.publish(this.subj.control, this.sealer.seal(this.subj.control, msg));
  }
}
