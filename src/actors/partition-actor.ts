// A partition actor: the per-key actors of one key range. It subscribes to its partition
// subject, applies batches to its window operator (one xstate actor per window) and
// publishes results, late records and checkpoint barriers to the sink actor.

import type { NatsConnection, Subscription } from 'nats';
import { encode } from '../io/codec.js';
import { Opener, Sealer, SENDER, receive, type ChannelContext } from '../io/channel.js';
import { checkPartitionMsg, checkQueryRequest } from './message-checks.js';
import { subjectsFor } from '../io/subjects.js';
import { ChunkingPublisher, Reassembler } from '../io/framing.js';
import { WindowOperator, type OperatorConfig, type PersistedWindow } from '../runtime/window-operator.js';
import { topKeys } from '../runtime/top-keys.js';
import type { OutMsg, PartitionMsg, QueryReply, QueryRequest } from './messages.js';
import { TidemarkError } from '../errors.js';
import { forEachSlice, yieldToLoop } from './slices.js';

/** Windows per message of a checkpoint barrier (and per restore step): each is encoded on its own, with a yield between. */
export const SNAPSHOT_SLICE = 10_000;

/** Results per message while a watermark step fires many windows. */
const OUTPUT_SLICE = 500;
const FIRST_SLICE = 25;

export class PartitionActor {
  readonly operator: WindowOperator;
  private sub?: Subscription;
  private querySub?: Subscription;
  private done?: Promise<void>;
  batches = 0;
  /** Called when the job's code fails in this actor (the actor stops). */
  onFail?: (e: TidemarkError) => void;

  constructor(
    private readonly nc: NatsConnection,
    readonly partition: number,
    cfg: OperatorConfig,
    private readonly ctx: ChannelContext,
  ) {
    this.operator = new WindowOperator(cfg);
  }

  /** Rebuilds windows from a checkpoint before start, in slices with a yield between them. */
  async restore(windows: readonly PersistedWindow[], watermark: number): Promise<void> {
    await forEachSlice(windows, SNAPSHOT_SLICE, (slice) => this.operator.restore(slice, watermark));
  }

  /** Subscribes and processes messages in order until `end`. */
  start(job: string): void {
    const subj = subjectsFor(job);
    const pub = new ChunkingPublisher(this.nc);
    const sealer = new Sealer(this.ctx.key, this.partition);
    const out = (m: OutMsg): void => void pub.publish(subj.out, sealer.seal(subj.out, m));
    const subject = subj.partition(this.partition);
    const inbox = new Opener(this.ctx.key, subject, (from) => from === SENDER.source);
    const queries = new Opener(this.ctx.key, `${subject}.query`, (from) => from === SENDER.service, false);
    this.sub = this.nc.subscribe(subject);
    this.querySub = this.nc.subscribe(queries.subject, {
      callback: (err, msg) => {
        if (err) return;
        const req = receive(this.ctx, queries, msg.data, checkQueryRequest)?.msg;
        if (!req) return;
        // A ranking request answers with the short list only, never every window of the partition.
        const reply: QueryReply = req.counts
          ? { partition: this.partition, watermark: this.operator.watermark, windows: [], counts: { ...this.operator.countsByState(), closedAwaitingCheckpoint: this.operator.closedAwaitingCheckpoint } }
          : req.top !== undefined
            ? { partition: this.partition, watermark: this.operator.watermark, windows: [], keys: topKeys(this.operator.query(), req.top) }
            : { partition: this.partition, watermark: this.operator.watermark, windows: this.operator.query(req.key, req.from, req.to) };
        let bytes = encode(reply);
        if (bytes.length > pub.limit) {
          const error = `the answer holds ${reply.windows.length} windows (${bytes.length} bytes), more than one NATS message carries; narrow it with a time range`;
          bytes = encode({ partition: this.partition, watermark: this.operator.watermark, windows: [], error } satisfies QueryReply);
        }
        msg.respond(bytes);
      },
    });
    const sub = this.sub;
    this.done = this.loop(sub, out, inbox).catch((e: unknown) => {
      sub.unsubscribe();
      this.onFail?.(e instanceof TidemarkError ? e : new TidemarkError('USER_CODE', `partition ${this.partition}: ${(e as Error).message}`));
    });
  }

  private async loop(sub: Subscription, out: (m: OutMsg) => void, inbox: Opener): Promise<void> {
    {
      const parts = new Reassembler();
      for await (const m of sub) {
        let data: Uint8Array | undefined;
        try {
          data = parts.push(m);
        } catch (e) {
          this.ctx.rejects.note(inbox.subject, (e as Error).message);
        }
        if (!data) continue;
        const msg = receive(this.ctx, inbox, data, checkPartitionMsg)?.msg;
        if (!msg) continue;
        if (msg.t === 'batch') {
          // A watermark step that fires many windows hands its results on in slices, yielding
          // between them so they reach the sink while the rest are fired.
          // Slices start small (the first results leave at once) and grow to OUTPUT_SLICE.
          let slice = FIRST_SLICE;
          for (let i = 0; (i = this.operator.applySome(msg.ops, i, slice)) < msg.ops.length; slice = Math.min(OUTPUT_SLICE, 2 * slice)) {
            const o = this.operator.drainOutput();
            out({ t: 'out', from: this.partition, n: msg.n, results: o.results, late: o.late, dead: [], partial: true });
            await yieldToLoop();
          }
          this.batches++;
          const { results, late } = this.operator.drainOutput();
          out({ t: 'out', from: this.partition, n: msg.n, results, late, dead: [], ...(msg.at !== undefined ? { at: msg.at } : {}) });
        } else if (msg.t === 'barrier') {
          // A large snapshot leaves in slices, each encoded on its own with a yield in between, so the
          // event loop never stops for the whole state; nothing is applied until the last slice is out.
          const snap = this.operator.snapshot(msg.full);
          await forEachSlice(snap.upserts, SNAPSHOT_SLICE, (upserts, last) =>
            out(last ? { t: 'barrier', from: this.partition, cp: msg.cp, upserts, deletes: snap.deletes, windows: this.operator.size } : { t: 'barrier-part', from: this.partition, cp: msg.cp, upserts }),
          );
        } else {
          out({ t: 'end', from: this.partition });
          break;
        }
      }
    }
  }

  /** Resolves when the actor has processed `end` (or was stopped). */
  async finished(): Promise<void> {
    await this.done;
  }

  /** Stops listening (without processing further messages). */
  stop(): void {
    this.sub?.unsubscribe();
    this.querySub?.unsubscribe();
  }
}
