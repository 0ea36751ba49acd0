// LevelDB checkpoint store: incremental checkpoints as chains of deltas on a full base,
// each written in one atomic batch and verified (entry count + hash) before it is trusted.

import { Level } from 'level';
import { encode, decode } from './codec.js';
import { TidemarkError } from '../errors.js';
import { windowId, type PersistedWindow } from '../runtime/window-operator.js';
import { WindowCodec } from './window-codec.js';
import type { ChainState } from '../runtime/checkpoint-policy.js';
import type { SinkProgress } from './sinks.js';

export interface CheckpointMeta {
  id: number;
  time: number;
  /** Input stream sequence reflected by this checkpoint. */
  seq: number;
  watermark: { wm: number; maxTs: Array<[string, number]> };
  sinks: Record<string, SinkProgress>;
  parent: number;
  full: boolean;
  /** Position in its chain: 1 for a full checkpoint, parent's depth + 1 for a delta. */
  depth: number;
  entries: number;
  hash: number;
  bytes: number;
  windows: number;
  counters: Record<string, number>;
  fingerprint: Record<string, string>;
  savepoint?: string;
}

export interface CheckpointWrite {
  meta: Omit<CheckpointMeta, 'entries' | 'hash' | 'bytes'>;
  /** partition → its changed (or, full, all) windows */
  upserts: Array<[number, readonly PersistedWindow[]]>;
  deletes: Array<[number, string]>;
}

export interface Restored {
  meta: CheckpointMeta;
  /** partition → windows */
  windows: Map<number, PersistedWindow[]>;
  /** The restored checkpoint's chain: its full checkpoint's bytes and the deltas' on top. */
  chain: ChainState;
  /** Checkpoints that were newer but could not be used, with why. */
  skipped: Array<{ id: number; problem: string }>;
}

const pad = (n: number): string => String(n).padStart(12, '0');
const metaKey = (id: number): string => `m!${pad(id)}`;
const deltaPrefix = (id: number): string => `d!${pad(id)}!`;
const deltaKey = (id: number, p: number, windowId: string): string => `${deltaPrefix(id)}${String(p).padStart(4, '0')}!${windowId}`;
const EMPTY = new Uint8Array(0);
/** Entries written between two yields of a large checkpoint. */
const WRITE_SLICE = 5_000;
/** The partition and window id of an entry key under `deltaPrefix(id)` (the prefix is `prefixLength` long). */
const entryOf = (key: string, prefixLength: number): { p: number; wid: string } => ({
  p: Number(key.slice(prefixLength, prefixLength + 4)),
  wid: key.slice(prefixLength + 5),
});

/** FNV-1a over bytes, folded into a running hash. */
function fnv(h: number, bytes: Uint8Array): number {
  for (let i = 0; i < bytes.length; i++) {
    h ^= bytes[i]!;
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}
const keyBytes = (k: string): Uint8Array => Buffer.from(k, 'utf8');
/** One entry's FNV-1a hash (key bytes, then value bytes). */
const entryHash = (key: string, value: Uint8Array): number => fnv(fnv(0x811c9dc5, keyBytes(key)), value);

/** The checkpoints of one job, in LevelDB under the state directory. */
export class CheckpointStore {
  private readonly codec = new WindowCodec();

  private constructor(private readonly db: Level<string, Uint8Array>) {}

  /** Opens (creating) the store; a second process on the same directory is refused. */
  static async open(dir: string): Promise<CheckpointStore> {
    const db = new Level<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view' });
    try {
      await db.open();
    } catch (e) {
      const cause = (e as { cause?: { code?: string; message?: string } }).cause;
      if (cause?.code === 'LEVEL_LOCKED' || /lock/i.test(String(cause?.message ?? (e as Error).message))) {
        throw new TidemarkError('STATE_LOCKED', `state directory ${dir} is in use by another Tidemark process; stop it first or use another --state-dir`, { cause: e });
      }
      throw new TidemarkError('STATE_CORRUPT', `cannot open the LevelDB state in ${dir}: ${(e as Error).message}`, { cause: e });
    }
    const store = new CheckpointStore(db);
    try {
      store.codec.load(await db.iterator(WindowCodec.range).all());
    } catch (e) {
      await db.close();
      throw new TidemarkError('STATE_CORRUPT', `the accumulator shapes in ${dir} are unreadable: ${(e as Error).message}`, { cause: e });
    }
    return store;
  }

  /**
   * Writes one checkpoint in one atomic batch. The entries go into a LevelDB chained batch in
   * slices, with `pause()` awaited between them (a yield to the event loop for a large state).
   */
  async write(cp: CheckpointWrite, pause?: () => Promise<void>): Promise<CheckpointMeta> {
    const batch = this.db.batch();
    let bytes = 0;
    let entries = 0;
    // The content hash is the sum of the entries' own hashes: independent of order, so the
    // entries need no sorting here (LevelDB sorts them anyway).
    let hash = 0;
    const add = async (key: string, value: Uint8Array): Promise<void> => {
      batch.put(key, value);
      bytes += key.length + value.length;
      hash = (hash + entryHash(key, value)) >>> 0;
      if (++entries % WRITE_SLICE === 0 && pause) await pause();
    };
    try {
      for (const [p, ws] of cp.upserts) for (const w of ws) await add(deltaKey(cp.meta.id, p, w.id ?? windowId(w.key, w.start, w.end)), this.codec.encode(w));
      for (const [p, id] of cp.deletes) await add(deltaKey(cp.meta.id, p, id), EMPTY);
    } catch (e) {
      await batch.close().catch(() => undefined);
      throw e;
    }
    const meta: CheckpointMeta = { ...cp.meta, entries, hash, bytes };
    const metaBytes = encode(meta);
    meta.bytes += metaBytes.length;
    try {
      for (const [k, v] of this.codec.shapeEntries()) batch.put(k, v);
      batch.put(metaKey(meta.id), encode(meta));
      await batch.write();
    } catch (e) {
      throw new TidemarkError('STATE_WRITE_FAILED', `checkpoint ${meta.id} could not be written: ${(e as Error).message}`, { cause: e });
    }
    return meta;
  }

  /** All checkpoint metas that parse, newest first; unreadable ones are reported in `bad`. */
  async list(): Promise<{ metas: CheckpointMeta[]; bad: Array<{ id: number; problem: string }> }> {
    const metas: CheckpointMeta[] = [];
    const bad: Array<{ id: number; problem: string }> = [];
    for await (const [key, value] of this.db.iterator({ gte: 'm!', lt: 'm"', reverse: true })) {
      const id = Number(key.slice(2));
      try {
        const m = decode<CheckpointMeta>(value);
        if (typeof m?.id !== 'number' || m.id !== id) throw new Error('id mismatch');
        metas.push(m);
      } catch (e) {
        bad.push({ id, problem: `metadata unreadable (${(e as Error).message})` });
      }
    }
    return { metas, bad };
  }

  /** The entries under `prefix`, in key order, a few thousand per step (one step per entry is slow). */
  private async *scan(prefix: string): AsyncGenerator<Array<[string, Uint8Array]>> {
    const it = this.db.iterator({ gte: prefix, lt: prefix + '\uffff' });
    try {
      // The next read runs in LevelDB's thread while the caller works on this one.
      let next = it.nextv(4096);
      for (;;) {
        const entries = await next;
        if (entries.length === 0) return;
        next = it.nextv(4096);
        yield entries;
      }
    } finally {
      await it.close();
    }
  }

  /** Verifies one checkpoint's own entries against its meta. */
  async verify(meta: CheckpointMeta): Promise<string | undefined> {
    return (await this.read(meta)).problem;
  }

  /** Reads one checkpoint's own entries and verifies them against its meta, in one pass. */
  private async read(meta: CheckpointMeta): Promise<{ problem?: string; entries: Array<Array<[string, Uint8Array]>> }> {
    let n = 0;
    let hash = 0;
    const all: Array<Array<[string, Uint8Array]>> = [];
    for await (const entries of this.scan(deltaPrefix(meta.id))) {
      all.push(entries);
      for (const [key, value] of entries) {
        n++;
        hash = (hash + entryHash(key, value)) >>> 0;
      }
    }
    if (n !== meta.entries) return { problem: `truncated: ${n} of ${meta.entries} entries present`, entries: [] };
    if (hash !== meta.hash) return { problem: `corrupted: content hash ${hash.toString(16)} does not match ${meta.hash.toString(16)}`, entries: [] };
    return { entries: all };
  }

  /** Loads the newest usable checkpoint (or `id`), falling back past damaged ones. */
  async restore(id?: number): Promise<Restored | undefined> {
    const { metas, bad } = await this.list();
    const skipped = [...bad];
    const byId = new Map(metas.map((m) => [m.id, m]));
    const badIds = new Set(bad.map((b) => b.id));
    const candidates = id === undefined ? metas : metas.filter((m) => m.id === id);
    if (id !== undefined && candidates.length === 0) throw new TidemarkError('CHECKPOINT_NOT_FOUND', `checkpoint ${id} not found (tidemark inspect lists them)`);
    const verdict = new Map<number, Awaited<ReturnType<CheckpointStore['read']>>>();
    const check = async (m: CheckpointMeta): Promise<string | undefined> => {
      if (!verdict.has(m.id)) verdict.set(m.id, await this.read(m));
      return verdict.get(m.id)!.problem;
    };
    for (const head of candidates) {
      const chain: CheckpointMeta[] = [];
      let problem: string | undefined;
      for (let cur: CheckpointMeta | undefined = head; ; ) {
        if (!cur) {
          problem = 'its base checkpoint is missing';
          break;
        }
        const p = await check(cur);
        if (p) {
          problem = cur.id === head.id ? p : `depends on checkpoint ${cur.id}, which is ${p}`;
          break;
        }
        chain.push(cur);
        if (cur.full) break;
        if (badIds.has(cur.parent)) {
          problem = `depends on checkpoint ${cur.parent}, whose metadata is unreadable`;
          break;
        }
        cur = byId.get(cur.parent);
      }
      if (problem) {
        skipped.push({ id: head.id, problem });
        continue;
      }
      const out = new Map<number, PersistedWindow[]>();
      if (chain.length === 1) {
        // A full checkpoint alone: its entries are the windows, no merging needed.
        const at = deltaPrefix(head.id).length;
        for (const entries of verdict.get(head.id)!.entries) {
          for (const [key, value] of entries) {
            const { p, wid } = entryOf(key, at);
            let part = out.get(p);
            if (!part) out.set(p, (part = []));
            if (value.length > 0) part.push(this.codec.decode(wid, value));
          }
        }
        return { meta: head, windows: out, chain: { fullBytes: head.bytes, deltaBytes: 0, depth: 1 }, skipped: skipped.filter((s) => s.id > head.id) };
      }
      const windows = new Map<number, Map<string, PersistedWindow>>();
      for (const m of chain.reverse()) {
        const at = deltaPrefix(m.id).length;
        for (const entries of verdict.get(m.id)!.entries) {
          for (const [key, value] of entries) {
            const { p, wid } = entryOf(key, at);
            let part = windows.get(p);
            if (!part) windows.set(p, (part = new Map()));
            if (value.length === 0) part.delete(wid);
            else part.set(wid, this.codec.decode(wid, value));
          }
        }
      }
      for (const [p, m] of windows) out.set(p, [...m.values()]);
      // chain was reversed above: the full checkpoint comes first.
      const chainState: ChainState = { fullBytes: chain[0]!.bytes, deltaBytes: chain.slice(1).reduce((a, m) => a + m.bytes, 0), depth: chain.length };
      return { meta: head, windows: out, chain: chainState, skipped: skipped.filter((s) => s.id > head.id) };
    }
    if (candidates.length > 0 || bad.length > 0) {
      const why = skipped.map((s) => `checkpoint ${s.id}: ${s.problem}`).join('; ');
      throw new TidemarkError('STATE_CORRUPT', `no usable checkpoint in the state directory (${why}); use --reset-state to start over`);
    }
    return undefined;
  }

  /** Deletes checkpoints beyond the newest `retain` (and unusable ones), keeping what they depend on and savepoints. */
  async prune(retain: number, unusable: number[] = []): Promise<number[]> {
    const { metas, bad } = await this.list();
    const byId = new Map(metas.map((m) => [m.id, m]));
    const keep = new Set<number>();
    const unusableSet = new Set(unusable);
    const heads = metas.filter((m) => !unusableSet.has(m.id)).slice(0, retain).concat(metas.filter((m) => m.savepoint && !unusableSet.has(m.id)));
    for (const head of heads) {
      for (let cur: CheckpointMeta | undefined = head; cur && !keep.has(cur.id); cur = cur.full ? undefined : byId.get(cur.parent)) keep.add(cur.id);
    }
    const drop = [...metas.map((m) => m.id).filter((id) => !keep.has(id)), ...bad.map((b) => b.id)];
    for (const id of drop) {
      await this.db.del(metaKey(id));
      await this.db.clear({ gte: deltaPrefix(id), lt: deltaPrefix(id) + '\uffff' });
    }
    return drop;
  }

  /** The windows of one checkpoint as stored (for `inspect`). */
  async windowsOf(id: number): Promise<Map<number, PersistedWindow[]> | undefined> {
    const r = await this.restore(id).catch(() => undefined);
    return r?.windows;
  }

  /** Raw access for tests that damage checkpoints on purpose. */
  get level(): Level<string, Uint8Array> {
    return this.db;
  }

  async close(): Promise<void> {
    await this.db.close();
  }
}

export { metaKey, deltaPrefix };
