// The k-way merge of a partitioned input read by many sources (one per input partition, anywhere in
// a group) back into the input's own order. Each partition's records arrive in sequence order, with
// how far that partition is known to be complete ("nothing else of mine up to seq u"); the merge
// hands out every record at or below the frontier (the least of those bounds) in sequence order. The
// source then judges each post against the watermark in force before it *in the input's order*
// (DESIGN.md §3) exactly as a single reader would: which process read which partition, and when,
// changes nothing. Pure: no I/O, no clock.

/** Records taken from the merge, in input order, and the sequence ranges no partition holds. */
export interface MergedRun<T> {
  seqs: number[];
  items: T[];
  /** Inclusive ranges of sequences below `upTo` that no partition delivered (deleted messages, or messages on no partition's subject). */
  gaps: Array<[number, number]>;
  /** Everything up to here has been taken. */
  upTo: number;
}

interface Lane<T> {
  seqs: number[];
  items: T[];
  head: number;
  /** This partition has delivered everything it holds up to here. */
  complete: number;
}

export class InputMerge<T> {
  private readonly lanes: Lane<T>[];
  /** Everything up to here has been taken. */
  position: number;

  constructor(partitions: number, after: number) {
    if (!(partitions >= 1)) throw new RangeError('a merge needs at least one partition');
    this.position = after;
    this.lanes = Array.from({ length: partitions }, () => ({ seqs: [], items: [], head: 0, complete: after }));
  }

  /**
   * Partition `p`'s next records (increasing sequences, after its earlier ones), and that it holds
   * nothing else up to `complete` (at least the last of `seqs`). Throws on records out of order.
   */
  push(p: number, seqs: readonly number[], items: readonly T[], complete: number): void {
    const lane = this.lanes[p];
    if (!lane) throw new RangeError(`no input partition ${p}`);
    if (seqs.length !== items.length) throw new RangeError('sequences and records differ in number');
    let last = Math.max(lane.complete, lane.seqs.length > lane.head ? lane.seqs[lane.seqs.length - 1]! : -Infinity);
    for (const s of seqs) {
      if (!(s > last)) throw new RangeError(`input partition ${p}: sequence ${s} does not follow ${last}`);
      last = s;
    }
    if (complete < last) throw new RangeError(`input partition ${p}: complete up to ${complete}, but it sent ${last}`);
    for (let i = 0; i < seqs.length; i++) {
      lane.seqs.push(seqs[i]!);
      lane.items.push(items[i]!);
    }
    lane.complete = complete;
  }

  /** Every partition has delivered everything it holds up to here. */
  get frontier(): number {
    let f = Infinity;
    for (const l of this.lanes) if (l.complete < f) f = l.complete;
    return f;
  }

  /** How far partition `p` is known to be complete. */
  completeOf(p: number): number {
    return this.lanes[p]!.complete;
  }

  /** Records waiting for the frontier. */
  get buffered(): number {
    let n = 0;
    for (const l of this.lanes) n += l.seqs.length - l.head;
    return n;
  }

  /** Takes the records up to the frontier (and at most up to `limit`), in sequence order. */
  take(limit = Infinity): MergedRun<T> {
    const end = Math.min(this.frontier, limit);
    const out: MergedRun<T> = { seqs: [], items: [], gaps: [], upTo: Math.max(this.position, end) };
    if (!(end > this.position)) return out;
    let prev = this.position;
    for (;;) {
      let best: Lane<T> | undefined;
      let bestSeq = Infinity;
      for (const l of this.lanes) {
        if (l.head < l.seqs.length) {
          const s = l.seqs[l.head]!;
          if (s < bestSeq) {
            bestSeq = s;
            best = l;
          }
        }
      }
      if (!best || bestSeq > end) break;
      if (bestSeq > prev + 1) out.gaps.push([prev + 1, bestSeq - 1]);
      out.seqs.push(bestSeq);
      out.items.push(best.items[best.head]!);
      best.head++;
      prev = bestSeq;
    }
    if (end > prev) out.gaps.push([prev + 1, end]);
    this.position = end;
    for (const l of this.lanes) {
      // Compact now and then: the taken records are let go.
      if (l.head > 1024 && l.head * 2 > l.seqs.length) {
        l.seqs = l.seqs.slice(l.head);
        l.items = l.items.slice(l.head);
        l.head = 0;
      }
    }
    return out;
  }
}
