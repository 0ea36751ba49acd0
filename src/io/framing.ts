// Actor messages larger than the server's max_payload (1 MiB by default) travel as a run of
// chunks. A message that fits goes out as it is, with no header and no copy; a larger one is cut
// into parts, each carrying the header `Tidemark-Chunk: <message id> <index> <count>`. NATS keeps
// the order of one publisher's messages on a subject, so a receiver rebuilds each message from
// its parts, keyed by message id (several publishers may share a subject).

import { headers, type Msg, type NatsConnection } from 'nats';
import { randomBytes } from 'node:crypto';

export const CHUNK_HEADER = 'Tidemark-Chunk';
/** Room left for the header and protocol line under max_payload. */
const HEADROOM = 4096;
const DEFAULT_MAX_PAYLOAD = 1024 * 1024;
/** Unfinished chunked messages a receiver keeps at once (its publishers send one at a time each). */
const MAX_PARTIAL = 64;

/** Publishes byte messages of any size on a connection, in chunks when needed. */
export class ChunkingPublisher {
  private readonly sender = randomBytes(6).toString('hex');
  private seq = 0;
  readonly limit: number;

  constructor(
    private readonly nc: NatsConnection,
    limit?: number,
  ) {
    this.limit = limit ?? Math.max(1024, (nc.info?.max_payload ?? DEFAULT_MAX_PAYLOAD) - HEADROOM);
  }

  /** Publishes `bytes` on `subject`; returns how many NATS messages it took. */
  publish(subject: string, bytes: Uint8Array): number {
    if (bytes.length <= this.limit) {
      this.nc.publish(subject, bytes);
      return 1;
    }
    const count = Math.ceil(bytes.length / this.limit);
    const id = `${this.sender}-${this.seq++}`;
    for (let i = 0; i < count; i++) {
      const h = headers();
      h.set(CHUNK_HEADER, `${id} ${i} ${count}`);
      this.nc.publish(subject, bytes.subarray(i * this.limit, (i + 1) * this.limit), { headers: h });
    }
    return count;
  }
}

interface Partial {
  next: number;
  count: number;
  parts: Uint8Array[];
  size: number;
}

/** Rebuilds chunked messages; a whole message passes through untouched. */
export class Reassembler {
  private readonly partial = new Map<string, Partial>();

  /** The message's bytes when complete, `undefined` while parts are missing. Throws on a broken run. */
  push(m: Pick<Msg, 'data' | 'headers'>): Uint8Array | undefined {
    const h = m.headers?.get(CHUNK_HEADER);
    if (!h) return m.data;
    const [id, idx, cnt] = h.split(' ');
    const index = Number(idx);
    const count = Number(cnt);
    if (!id || !Number.isInteger(index) || !Number.isInteger(count) || index < 0 || count < 1 || index >= count) {
      throw new Error(`malformed ${CHUNK_HEADER} header: "${h}"`);
    }
    let p = this.partial.get(id);
    if (index === 0) {
      if (p) throw new Error(`chunked message ${id} started twice`);
      p = { next: 0, count, parts: [], size: 0 };
      // Forged first parts that never finish must not pile up: the oldest unfinished run gives way.
      if (this.partial.size >= MAX_PARTIAL) this.partial.delete(this.partial.keys().next().value!);
      this.partial.set(id, p);
    }
    if (!p || p.next !== index || p.count !== count) {
      this.partial.delete(id);
      throw new Error(`chunked message ${id}: part ${index}/${count} arrived out of order (expected ${p ? p.next : 0})`);
    }
    p.parts.push(m.data);
    p.size += m.data.length;
    p.next++;
    if (p.next < count) return undefined;
    this.partial.delete(id);
    const out = new Uint8Array(p.size);
    let at = 0;
    for (const part of p.parts) {
      out.set(part, at);
      at += part.length;
    }
    return out;
  }

  /** Messages begun and not finished (should be 0 between messages). */
  get pending(): number {
    return this.partial.size;
  }
}
