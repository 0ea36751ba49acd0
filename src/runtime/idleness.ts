// Idleness of input partitions (`--idle-timeout`), made deterministic by a journal.
//
// Whether a partition has gone quiet is a wall-clock question, so the answer is recorded: a
// decision "after input sequence s, partition p is idle (the watermark was w)" is journaled and
// takes effect at that position of the input, between two messages. A restore or a replay that
// reads the same input applies the journaled decisions at the same positions, so the watermark
// sequence — and with it every result — is a pure function of the input, the configuration and
// the journal. Only past the journal's last entry are new decisions made from the wall clock.
// A post makes its partition active again: that follows from the input, so it needs no journal
// entry to be repeated (it is listed among the recent decisions for people).

import type { IdleDecision, WatermarkState } from './watermark.js';

/** Recent decisions kept for status and inspect (and carried in checkpoints). */
export const RECENT_DECISIONS = 64;

/** The journal of one job's idleness decisions, and the wall-clock view that makes new ones. */
export class IdleJournal {
  /** Decisions still to apply, in input order (restored from a checkpoint, or given for a replay). */
  private pending: IdleDecision[] = [];
  /** Applied decisions, newest last (at most RECENT_DECISIONS). */
  recent: IdleDecision[] = [];
  /** Wall-clock time of each partition's last post (or of the start). */
  private readonly lastSeen = new Map<string, number>();
  /** Input sequence of each partition's last post. */
  readonly lastSeq = new Map<string, number>();

  constructor(
    /** `--idle-timeout` in ms; 0 = partitions never go idle */
    readonly idleTimeout: number,
    partitions: readonly string[],
    now: number,
  ) {
    for (const p of partitions) this.lastSeen.set(p, now);
  }

  /** True while journaled decisions remain ahead: no new decision is made from the wall clock. */
  get replaying(): boolean {
    return this.pending.length > 0;
  }

  /** Decisions waiting for their position. */
  get ahead(): readonly IdleDecision[] {
    return this.pending;
  }

  /** Replays `decisions` (input order) at their positions, after any already waiting. */
  replay(decisions: readonly IdleDecision[]): void {
    this.pending.push(...decisions.filter((d) => d.idle));
    this.pending.sort((a, b) => a.seq - b.seq);
  }

  /** Takes the decisions whose position comes before input message `seq` (all of those at `seq - 1` or earlier). */
  dueBefore(seq: number): IdleDecision[] {
    let n = 0;
    while (n < this.pending.length && this.pending[n]!.seq < seq) n++;
    return n ? this.pending.splice(0, n) : [];
  }

  /** Notes a decision as applied (bounded history). */
  applied(d: IdleDecision): void {
    this.recent.push(d);
    if (this.recent.length > RECENT_DECISIONS) this.recent.splice(0, this.recent.length - RECENT_DECISIONS);
  }

  /** A post of `partition` (input sequence `seq`) was read at wall-clock `now`. */
  seen(partition: string, seq: number, now: number): void {
    this.lastSeen.set(partition, now);
    this.lastSeq.set(partition, seq);
  }

  /** Wall-clock ms since the partition's last post (or since the start). */
  quietFor(partition: string, now: number): number {
    return now - (this.lastSeen.get(partition) ?? now);
  }

  /**
   * Partitions that are due to go idle at wall-clock `now` (none while replaying, with one
   * partition, or without an idle timeout): they have had no post for `idleTimeout`.
   */
  due(now: number, isIdle: (p: string) => boolean): string[] {
    if (this.idleTimeout <= 0 || this.lastSeen.size < 2 || this.replaying) return [];
    const out: string[] = [];
    for (const [p, at] of this.lastSeen) if (!isIdle(p) && now - at >= this.idleTimeout) out.push(p);
    return out;
  }

  /** Journals new decisions at position `seq` (to be applied once they are durable). */
  decide(partitions: readonly string[], seq: number, wm: number): IdleDecision[] {
    const ds = partitions.map((partition) => ({ seq, partition, idle: true, wm }));
    this.pending.push(...ds);
    return ds;
  }

  /** The journal's part of a checkpoint: what is still to apply, and the recent history. */
  toState(): Pick<WatermarkState, 'journal' | 'recent'> {
    return { journal: this.pending.map((d) => ({ ...d })), recent: this.recent.map((d) => ({ ...d })) };
  }

  /** Restores the journal's part of a checkpoint. */
  restore(state: Pick<WatermarkState, 'journal' | 'recent'>): void {
    this.pending = [];
    this.replay(state.journal ?? []);
    this.recent = [...(state.recent ?? [])];
  }
}
