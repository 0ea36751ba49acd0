// When to write a full checkpoint instead of a delta. Deltas make a checkpoint's cost follow the
// rate of change; a full one now and then bounds what a restore reads. The rule: a full
// checkpoint once the deltas written since the last full one add up to its size, so a restore
// reads at most about twice the state, and the cost of full checkpoints, spread over the deltas,
// is at most the deltas' own. (A fixed "full every N" makes a 1M-window job write 66 MB every N
// seconds however little changes.) A chain is also capped in length.

export interface ChainState {
  /** bytes of the chain's full checkpoint (0: no chain yet) */
  fullBytes: number;
  /** bytes of the deltas written on top of it */
  deltaBytes: number;
  /** checkpoints in the chain, the full one included */
  depth: number;
}

export class FullCheckpointPolicy {
  private chain: ChainState;
  /** full/delta of checkpoints written but not yet confirmed */
  private readonly inFlight = new Map<number, boolean>();
  /** Position in its chain of the checkpoint decided last (1 for a full one). */
  lastDepth: number;

  constructor(
    restored?: ChainState,
    readonly maxDepth = 200,
  ) {
    this.chain = restored ?? { fullBytes: 0, deltaBytes: 0, depth: 0 };
    this.lastDepth = this.chain.depth;
  }

  /** Decides checkpoint `cp`: full (true) or delta. */
  next(cp: number): boolean {
    const c = this.chain;
    // A full checkpoint on its way resets the chain: no second one behind it.
    const fullInFlight = [...this.inFlight.values()].some(Boolean);
    const full = !fullInFlight && (c.depth === 0 || c.fullBytes === 0 || c.deltaBytes >= c.fullBytes || c.depth + this.inFlight.size >= this.maxDepth);
    this.inFlight.set(cp, full);
    this.lastDepth = full ? 1 : this.lastDepth + 1;
    return full;
  }

  /** Checkpoint `cp` is written (`bytes` on disk), or failed (`bytes` undefined). */
  written(cp: number, bytes: number | undefined): void {
    const full = this.inFlight.get(cp);
    this.inFlight.delete(cp);
    if (full === undefined || bytes === undefined) return;
    if (full) this.chain = { fullBytes: bytes, deltaBytes: 0, depth: 1 };
    else this.chain = { ...this.chain, deltaBytes: this.chain.deltaBytes + bytes, depth: this.chain.depth + 1 };
  }

  /** The chain as confirmed so far. */
  get state(): Readonly<ChainState> {
    return this.chain;
  }
}
