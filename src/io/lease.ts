// Leases in a JetStream KV bucket whose entries live for the bucket's TTL (`--lease-ttl`): taken with
// a revision-checked create, kept alive by revision-checked updates, lost when an update finds another
// revision (the entry expired and someone else took it). The revision at which a lease was taken is
// its epoch: it only grows, so a message or a write stamped with an older epoch is from a superseded owner.

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
  /** The bucket's TTL: a lease not renewed for this long expires. Renewed every ttl/3. */
  ttl: number;
  /** A lease nobody else contends for (a member's own entry): when it expired, take it again instead of losing it. */
  renewExpired?: boolean;
  log?: Logger;
}

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
    try {
      const rev = await writeJsonEntry(kv, key, value, revision);
      return new Lease(kv, key, enc.encode(JSON.stringify(value)), rev, rev, opts).start();
    } catch (e) {
      if (apiErrorCode(e) === WRONG_LAST_SEQUENCE) return undefined;
      throw e;
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
      this.opts.log?.error({ lease: this.key, epoch: this.epoch }, why);
      this.lostNow(why);
    }
  }
}
