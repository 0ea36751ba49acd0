// A partition actor: the per-key actors of one key range. It subscribes to its partition
// subject, applies batches to its window operator (each window stepped by its machine) and
// publishes results, late records and checkpoint barriers to the sink actor.

import type { NatsConnection, Subscription } from 'nats';
import { encode } from '../io/codec.js';
import { Opener, Sealer, SENDER, receive, type ChannelContext } from '../io/channel.js';
import { checkPartitionMsg, checkQueryRequest } from './message-checks.js';
import { subjectsFor } from '../io/subjects.js';
import { ChunkingPublisher, Reassembler } from '../io/framing.js';
import { WindowOperator, type Op, type OperatorConfig, type PersistedWindow } from '../runtime/window-operator.js';
import { topKeys } from '../runtime/top-keys.js';
import type { OutMsg, PartitionMsg, QueryReply, QueryRequest } from './messages.js';
import { TidemarkError } from '../errors.js';
import { forEachSlice, yieldToLoop } from './slices.js';

/** Windows per message of a checkpoint barrier (and per restore step): each is encoded on its own, with a yield between. */
export const SNAPSHOT_SLICE = 2_000;

/** Windows stepped (fired or closed) per slice while a watermark step takes many timers. */
export const OUTPUT_SLICE = 500;
const FIRST_SLICE = 25;
/**
 * A slice also ends once it has run this long (ms), whatever it has stepped: a slice that a GC
 * step or a slow user aggregate stretches hands on what it has and lets the loop run.
 */
export const SLICE_MS = 8;
/** Windows stepped between looks at the clock. */
const CLOCK_EVERY = 25;

/**
 * Applies `ops` from `i` for one slice: up to `windows` windows stepped, or SLICE_MS. Returns where
 * to resume (`ops.length` when all is applied).
 */
function applySlice(operator: WindowOperator, ops: readonly Op[], i: number, windows: number): number {
  const until = performance.now() + SLICE_MS;
  for (let left = windows; ; left -= CLOCK_EVERY) {
    i = operator.applySome(ops, i, Math.min(left, CLOCK_EVERY));
    if (i >= ops.length || left <= CLOCK_EVERY || performance.now() >= until) return i;
  }
}

/**
 * Applies one batch. A watermark step that fires many windows hands its results on in slices,
 * yielding between them so they reach the sink while the rest are fired. Slices start small (the
 * first results leave at once) and grow to OUTPUT_SLICE windows, and none runs longer than SLICE_MS.
 */
export async function applyBatch(operator: WindowOperator, from: number, msg: Extract<PartitionMsg, { t: 'batch' }>, out: (m: OutMsg) => void): Promise<void> {
  let slice = FIRST_SLICE;
  for (let i = 0; (i = applySlice(operator, msg.ops, i, slice)) < msg.ops.length; slice = Math.min(OUTPUT_SLICE, 2 * slice)) {
    const o = operator.drainOutput();
    out({ t: 'out', from, n: msg.n, results: o.results, late: o.late, dead: [], partial: true });
    await yieldToLoop();
  }
  const { results, late } = operator.drainOutput();
  out({ t: 'out', from, n: msg.n, results, late, dead: [], ...(msg.at !== undefined ? { at: msg.at } : {}) });
}

/**
 * Answers a checkpoint barrier: the windows (every live one, or those changed since the last
 * checkpoint) and the removed ids leave in slices of SNAPSHOT_SLICE, each its own message encoded
 * on its own, with a yield in between, so the event loop never stops for the whole state; nothing
 * is applied until the last slice (the `barrier` message itself) is out.
 */
export async function sendSnapshot(operator: WindowOperator, from: number, msg: Extract<PartitionMsg, { t: 'barrier' }>, out: (m: OutMsg) => void): Promise<void> {
  const snap = operator.snapshot(msg.full);
  let upserts: PersistedWindow[] = [];
  let deletes: string[] = [];
  const part = async (): Promise<void> => {
    if (upserts.length + deletes.length < SNAPSHOT_SLICE) return;
    out({ t: 'barrier-part', from, cp: msg.cp, upserts, deletes });
    upserts = [];
    deletes = [];
    await yieldToLoop();
  };
  for (const w of snap.upserts) {
    upserts.push(w);
    await part();
  }
  for (const id of snap.deletes) {
    deletes.push(id);
    await part();
  }
  out({ t: 'barrier', from, cp: msg.cp, upserts, deletes, windows: operator.size });
}

/** The windows of key groups [from, to) of a restored checkpoint (by key group), in key-group order. */
export function* windowsOfGroups(windows: ReadonlyMap<number, readonly PersistedWindow[]>, groups: { from: number; to: number }): Generator<PersistedWindow> {
  for (let kg = groups.from; kg < groups.to; kg++) yield* windows.get(kg) ?? [];
}

/** Rebuilds an operator's windows, in slices with a yield between them. */
export async function restoreWindows(operator: WindowOperator, windows: Iterable<PersistedWindow>, watermark: number): Promise<void> {
  await forEachSlice(windows, SNAPSHOT_SLICE, (slice) => operator.restore(slice, watermark));
}

/** Rebuilds an operator's windows of key groups [from, to) from a restored checkpoint (see restoreWindows). */
export async function restoreGroups(operator: WindowOperator, windows: ReadonlyMap<number, readonly PersistedWindow[]>, groups: { from: number; to: number }, watermark: number): Promise<void> {
  await restoreWindows(operator, windowsOfGroups(windows, groups), watermark);
}

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

  /** Rebuilds windows from a checkpoint (or a coordinator's restore messages) before start, in slices. */
  async restore(windows: Iterable<PersistedWindow>, watermark: number): Promise<void> {
    await restoreWindows(this.operator, windows, watermark);
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
          await applyBatch(this.operator, this.partition, msg, out);
          this.batches++;
        } else if (msg.t === 'barrier') {
          await sendSnapshot(this.operator, this.partition, msg, out);
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
