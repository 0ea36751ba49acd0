// Leases in a JetStream KV bucket: taken with a revision-checked create, kept alive by revision-checked
// updates every ttl/3, lost when an update finds another revision (someone took it over). A lease
// expires when its holder stops renewing it: an observer that sees a key stand at one revision for the
// TTL (`--lease-ttl`, by its own clock) may take it over with an update checked against that revision.
// The bucket itself has no TTL (no max_age): see LeaseObserver. The revision at which a lease was taken
// is its epoch: it only grows, so a message or a write stamped with an older epoch is from a superseded owner.

import type { KV } from 'nats';
import type { Logger } from '../log.js';
import { apiErrorCode, WRONG_LAST_SEQUENCE } from './nats-errors.js';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** A KV entry's JSON value and revision; undefined when the key holds nothing (throws on malformed JSON). */
export async function readJsonEntry<T>(kv: KV, key: string): Promise<{ value: T; revision: number } | undefined> {
  const e = await kv.get(key);
  if (!e || e.operation !== 'PUT' || e.value.length === 0) return undefined;
  return { value: JSON.parse(dec.decode(e.value)) as T, revision: e.revision };
}

/** Writes `value` as JSON over the entry read at `revision`, or creates it when `revision` is 0 (revision-checked both ways). */
export function writeJsonEntry(kv: KV, key: string, value: unknown, revision: number): Promise<number> {
  const bytes = enc.encode(JSON.stringify(value));
  return revision ? kv.update(key, bytes, revision) : kv.create(key, bytes);
}

export interface LeaseOptions {
  /** The lease TTL: a lease not renewed for this long may be taken over. Renewed every ttl/3. */
  ttl: number;
  /** A lease nobody else contends for (a member's own entry): when it was removed as expired, take it again instead of losing it. */
  renewExpired?: boolean;
  log?: Logger;
}

/**
 * Which leases have stopped being renewed, as one process sees them: a key that stood at one revision
 * for the TTL since this observer first saw it there. Expiry is observed rather than left to the bucket's
 * max_age because nats-server 2.9 (fixed in 2.10 by nats-io/nats-server#5794, merged August 2024) checks a create
 * (`Nats-Expected-Last-Subject-Sequence: 0`) on each replica against its own store, and max_age removes
 * messages on each replica by its own clock — a node restarted after its copies aged out replays the
 * creates the others refused, stores them, and its sequences part from theirs (revisions then disagree
 * with the leader's and every renewal fails). Without max_age every replica applies the same writes to
 * the same state.
 */
export class LeaseObserver {
  private readonly seen = new Map<string, { revision: number; since: number }>();

  constructor(readonly ttl: number) {}

  /** True when `key` has stood at `revision` for at least the TTL since this observer first saw it there. */
  stale(key: string, revision: number): boolean {
    const now = performance.now();
    const s = this.seen.get(key);
    if (!s || s.revision !== revision) {
      this.seen.set(key, { revision, since: now });
      return false;
    }
    return now - s.since >= this.ttl;
  }

  /**
   * This process could not read the leases (NATS failing over): nobody could renew meanwhile either, so
   * what it saw before counts for nothing; every holder gets a full TTL from the next reading.
   */
  blind(): void {
    this.seen.clear();
  }
}

const equalBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((x, i) => x === b[i]);

/** A held lease on one key. */
export class Lease {
  private timer?: NodeJS.Timeout;
  private released = false;
  private lost = false;
  private lostNow: (why: string) => void = () => undefined;
  /** Resolves (with why) when the lease is found lost; never when it is released. */
  readonly whenLost: Promise<string> = new Promise((r) => (this.lostNow = r));

  private constructor(
    private readonly kv: KV,
    readonly key: string,
    private value: Uint8Array,
    /** The KV revision at which the lease was taken: its epoch. */
    readonly epoch: number,
    private revision: number,
    private readonly opts: LeaseOptions,
  ) {}

  /** Takes the lease on `key` if nobody holds it; undefined when it is held. */
  static tryAcquire(kv: KV, key: string, value: unknown, opts: LeaseOptions): Promise<Lease | undefined> {
    return Lease.claim(kv, key, value, 0, opts);
  }

  /** Takes over the lease held at `revision` by an owner known to be dead (revision-checked). */
  static takeOver(kv: KV, key: string, value: unknown, revision: number, opts: LeaseOptions): Promise<Lease | undefined> {
    return Lease.claim(kv, key, value, revision, opts);
  }

  private static async claim(kv: KV, key: string, value: unknown, revision: number, opts: LeaseOptions): Promise<Lease | undefined> {
    const bytes = enc.encode(JSON.stringify(value));
    try {
      const rev = await writeJsonEntry(kv, key, value, revision);
      return new Lease(kv, key, bytes, rev, rev, opts).start();
    } catch (e) {
      if (apiErrorCode(e) !== WRONG_LAST_SEQUENCE) throw e;
      // A claim retried after a timeout may find its own earlier write, which the server stored but
      // whose answer was lost (a node failing over): the entry holding exactly this value (it names
      // this process) is this lease, taken at that revision.
      const now = await kv.get(key);
      if (now?.operation !== 'PUT' || !equalBytes(now.value, bytes)) return undefined;
      opts.log?.debug({ lease: key, revision: now.revision }, `lease ${key}: an earlier try of this claim was stored; taken at revision ${now.revision}`);
      return new Lease(kv, key, bytes, now.revision, now.revision, opts).start();
    }
  }

  /** Who holds `key` now (its JSON value and epoch), if anyone (a value that is not JSON: nobody we know). */
  static async holder<T>(kv: KV, key: string): Promise<{ value: T; revision: number } | undefined> {
    try {
      return await readJsonEntry<T>(kv, key);
    } catch (e) {
      if (e instanceof SyntaxError) return undefined;
      throw e;
    }
  }

  /** False once the lease is lost or released. */
  get held(): boolean {
    return !this.lost && !this.released;
  }

  /** Replaces the lease's value (e.g. a member leaving), keeping the lease. */
  async update(value: unknown): Promise<void> {
    this.value = enc.encode(JSON.stringify(value));
    await this.renew();
  }

  /** Gives the lease up (only if it is still ours). */
  async release(): Promise<void> {
    if (this.released) return;
    this.released = true;
    clearInterval(this.timer);
    await this.kv.delete(this.key, { previousSeq: this.revision }).catch(() => undefined);
  }

  private start(): this {
    this.timer = setInterval(() => void this.renew().catch(() => undefined), Math.max(50, Math.floor(this.opts.ttl / 3)));
    this.timer.unref();
    return this;
  }

  private async renew(): Promise<void> {
    if (!this.held) return;
    try {
      this.revision = await this.kv.update(this.key, this.value, this.revision);
    } catch (e) {
      if (!this.held) return;
      if (apiErrorCode(e) !== WRONG_LAST_SEQUENCE) {
        // NATS unreachable for now: the lease survives as long as its TTL; keep trying.
        this.opts.log?.warn({ lease: this.key, err: (e as Error).message }, `lease ${this.key}: renewal failed; retrying`);
        return;
      }
      if (this.opts.renewExpired) {
        try {
          this.revision = await this.kv.create(this.key, this.value);
          this.opts.log?.warn({ lease: this.key }, `lease ${this.key} had expired (this process was too slow to renew it); taken again`);
          return;
        } catch {
          // taken meanwhile: lost after all
        }
      }
      this.lost = true;
      clearInterval(this.timer);
      const why = `lease ${this.key} (epoch ${this.epoch}) expired and was lost`;
      this.opts.log?.error({ lease: this.key, epoch: this.epoch, revision: this.revision, err: (e as Error).message }, why);
      this.lostNow(why);
    }
  }
}
