// LevelDB checkpoint store: incremental checkpoints as chains of deltas on a full base,
// each written in one atomic batch and verified (entry count + hash) before it is trusted. A
// manifest beside the LevelDB directory records each checkpoint, so one that LevelDB lost (a
// damaged log or table) is reported; table checksums are checked before LevelDB reads a table;
// damage LevelDB itself reports is named with the ways out (inspect --repair, --reset-state).

import { existsSync, readdirSync, rmSync, cpSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Level } from 'level';
import { encode, decode } from './codec.js';
import { TidemarkError } from '../errors.js';
import { windowId, type PersistedWindow } from '../runtime/window-operator.js';
import { WindowCodec } from './window-codec.js';
import type { ChainState } from '../runtime/checkpoint-policy.js';
import type { WatermarkState } from '../runtime/watermark.js';
import type { SinkProgress } from './sinks.js';
import { damagedTables } from './leveldb-tables.js';
import { CheckpointManifest, type ManifestEntry } from './checkpoint-manifest.js';
import { describeOpenFailure, groupProblems, isLevelDamage, levelText, waysOut, type StateRef } from './state-damage.js';

export interface CheckpointMeta {
  id: number;
  time: number;
  /** Input stream sequence reflected by this checkpoint. */
  seq: number;
  /** the watermark(s); with several input partitions also the idle ones and the journal of idleness decisions */
  watermark: WatermarkState;
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
  /** A group's checkpoint: the coordinator's lease epoch, the generation and who owned which key groups [member, from, to). */
  group?: GroupStamp;
}

/** Who took a group's checkpoint and who owned each key group in it. */
export interface GroupStamp {
  epoch: number;
  gen: number;
  owners: Array<[string, number, number]>;
}

/** Some of a checkpoint's entries: windows by key group, and removed ids with their key group. */
export interface EntryChunk {
  u: Array<[number, PersistedWindow[]]>;
  d: Array<[number, string]>;
}

export interface CheckpointWrite {
  meta: Omit<CheckpointMeta, 'entries' | 'hash' | 'bytes'>;
  /** its changed (or, full, all) windows and its removed ids, a chunk at a time; read once, as the batch is built */
  chunks: Iterable<EntryChunk>;
}

export interface Restored {
  meta: CheckpointMeta;
  /** partition → windows */
  windows: Map<number, PersistedWindow[]>;
  /** The restored checkpoint's chain: its full checkpoint's bytes and the deltas' on top. */
  chain: ChainState;
  /** Checkpoints that were newer but could not be used, with why. */
  skipped: Unusable[];
}

const pad = (n: number): string => String(n).padStart(12, '0');
const metaKey = (id: number): string => `m!${pad(id)}`;
const deltaPrefix = (id: number): string => `d!${pad(id)}!`;
const deltaKey = (id: number, p: number, windowId: string): string => `${deltaPrefix(id)}${String(p).padStart(4, '0')}!${windowId}`;
const EMPTY = new Uint8Array(0);
/** Entries written between two yields of a large checkpoint. */
const WRITE_SLICE = 2_000;
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
/**
 * FNV-1a over the UTF-8 bytes of `s` (as `Buffer.from(s, 'utf8')` spells them, a lone surrogate
 * as U+FFFD), folded into a running hash, without building the bytes: a checkpoint hashes a key
 * per window.
 */
export function fnvUtf8(h: number, s: string): number {
  const P = 0x01000193;
  for (let i = 0; i < s.length; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      h = Math.imul(h ^ c, P);
      continue;
    }
    if (c < 0x800) {
      h = Math.imul(h ^ (0xc0 | (c >> 6)), P);
      h = Math.imul(h ^ (0x80 | (c & 0x3f)), P);
      continue;
    }
    if (c >= 0xd800 && c <= 0xdfff) {
      const d = i + 1 < s.length ? s.charCodeAt(i + 1) : 0;
      if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
        const cp = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
        i++;
        h = Math.imul(h ^ (0xf0 | (cp >> 18)), P);
        h = Math.imul(h ^ (0x80 | ((cp >> 12) & 0x3f)), P);
        h = Math.imul(h ^ (0x80 | ((cp >> 6) & 0x3f)), P);
        h = Math.imul(h ^ (0x80 | (cp & 0x3f)), P);
        continue;
      }
      c = 0xfffd;
    }
    h = Math.imul(h ^ (0xe0 | (c >> 12)), P);
    h = Math.imul(h ^ (0x80 | ((c >> 6) & 0x3f)), P);
    h = Math.imul(h ^ (0x80 | (c & 0x3f)), P);
  }
  return h >>> 0;
}
/** One entry's FNV-1a hash (key bytes, then value bytes). */
const entryHash = (key: string, value: Uint8Array): number => fnv(fnvUtf8(0x811c9dc5, key), value);

/** One checkpoint that cannot be used, and why. */
export interface Unusable {
  id: number;
  problem: string;
  /** LevelDB itself failed reading it (its files are damaged), rather than the checkpoint failing to verify. */
  level?: boolean;
}

/** The metadata of every checkpoint the manifest names, newest first; those that cannot be read are in `bad`. */
export interface Listing {
  metas: CheckpointMeta[];
  bad: Unusable[];
}

const isLocked = (e: unknown): boolean => {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code === 'LEVEL_LOCKED' || /lock/i.test(String(cause?.message ?? (e as Error).message));
};
const lockedError = (dir: string, e: unknown): TidemarkError =>
  new TidemarkError('STATE_LOCKED', `state directory ${dir} is in use by another Tidemark process; stop it first or use another --state-dir`, { cause: e });
const manifestPath = (dir: string): string => `${dir}.manifest`;
/** LevelDB's files in `dir` (its own log LOG and lock LOCK aside), if any. */
const levelFiles = (dir: string): string[] => (existsSync(dir) ? readdirSync(dir).filter((f) => /^(CURRENT|MANIFEST-\d+|\d+\.(log|ldb|sst))$/.test(f)) : []);
/**
 * True when `dir` holds only what LevelDB writes before its CURRENT file while it creates a new
 * database (MANIFEST-000001, perhaps CURRENT's temporary 000001.dbtmp, its own LOG and LOCK), and
 * the checkpoint manifest beside it is absent or empty: no data, no checkpoint. Anything more (a
 * write-ahead log, a table file, a later MANIFEST, a manifest line) without CURRENT is damage.
 */
function unfinishedCreation(dir: string): boolean {
  const files = levelFiles(dir);
  if (files.length !== 1 || files[0] !== 'MANIFEST-000001') return false;
  const manifest = manifestPath(dir);
  return !existsSync(manifest) || statSync(manifest).size === 0;
}
/** The repair of classic-level (`level` in Node is classic-level, whose types it does not re-export). */
const LevelStatics = Level as unknown as { repair(location: string): Promise<void> };

/** What the manifest records of a checkpoint whose metadata is stored as `metaBytes`. */
const manifestEntry = (m: CheckpointMeta, metaBytes: Uint8Array): ManifestEntry => ({
  id: m.id,
  seq: m.seq,
  entries: m.entries,
  hash: m.hash,
  metaHash: fnv(0x811c9dc5, metaBytes),
  parent: m.parent,
  full: m.full,
  time: m.time,
  ...(m.savepoint ? { savepoint: m.savepoint } : {}),
});

/** One checkpoint's own entries, read and verified: its windows and deletions by key group, or its problem. */
interface Verdict {
  problem?: string;
  level?: boolean;
  windows: Map<number, PersistedWindow[]>;
  deletes: Array<[number, string]>;
}

/** Windows merged between two pauses of a chain merge. */
const MERGE_SLICE = 5_000;

/**
 * The windows of a chain (its full checkpoint first, then each delta): the full checkpoint's
 * windows that no delta touched, in their order, then each window a delta wrote last (unless a
 * later delta deleted it), in the order of its last write. Only the deltas' windows are indexed,
 * never the whole state, and `pause()` is awaited every MERGE_SLICE windows.
 */
export async function mergeChain(chain: readonly Pick<Verdict, 'windows' | 'deletes'>[], pause?: () => Promise<void>): Promise<Map<number, PersistedWindow[]>> {
  let done = 0;
  const step = async (): Promise<void> => {
    if (++done % MERGE_SLICE === 0 && pause) await pause();
  };
  // window id → what the newest delta that names it says (null: deleted), with its key group
  const touched = new Map<string, { p: number; w: PersistedWindow | null }>();
  for (const delta of chain.slice(1)) {
    for (const [p, ws] of delta.windows) {
      for (const w of ws) {
        const id = w.id ?? windowId(w.key, w.start, w.end);
        // Deleted first so that the map's order is the order of last writes.
        touched.delete(id);
        touched.set(id, { p, w });
        await step();
      }
    }
    for (const [p, id] of delta.deletes) {
      touched.delete(id);
      touched.set(id, { p, w: null });
      await step();
    }
  }
  const out = new Map<number, PersistedWindow[]>();
  const listOf = (p: number): PersistedWindow[] => {
    let list = out.get(p);
    if (!list) out.set(p, (list = []));
    return list;
  };
  for (const [p, ws] of chain[0]!.windows) {
    const list = listOf(p);
    for (const w of ws) {
      if (!touched.has(w.id ?? windowId(w.key, w.start, w.end))) list.push(w);
      await step();
    }
  }
  for (const { p, w } of touched.values()) {
    if (w) listOf(p).push(w);
    await step();
  }
  return out;
}

/**
 * A checkpoint being written (`CheckpointStore.begin`): entries go into its batch as they come,
 * with their count, bytes and content hash; `finish` writes the batch and records the checkpoint,
 * `discard` drops it. Nothing of it is written before `finish`.
 */
export class CheckpointWriter {
  private bytes = 0;
  private count = 0;
  /** The sum of the entries' own hashes: independent of order, so the entries need no sorting. */
  private hash = 0;
  private done = false;

  constructor(
    readonly id: number,
    private readonly batch: ReturnType<Level<string, Uint8Array>['batch']>,
    private readonly codec: WindowCodec,
    private readonly commit: (meta: CheckpointMeta, batch: ReturnType<Level<string, Uint8Array>['batch']>) => Promise<void>,
  ) {}

  /** Entries added so far. */
  get entries(): number {
    return this.count;
  }

  /** A window of key group `p` as it stands at the checkpoint. */
  upsert(p: number, w: PersistedWindow): void {
    this.put(deltaKey(this.id, p, w.id ?? windowId(w.key, w.start, w.end)), this.codec.encode(w));
  }

  /** A window of key group `p` removed since the checkpoint's parent. */
  remove(p: number, windowId: string): void {
    this.put(deltaKey(this.id, p, windowId), EMPTY);
  }

  private put(key: string, value: Uint8Array): void {
    if (this.done) throw new Error(`checkpoint ${this.id} is already finished or discarded`);
    this.batch.put(key, value);
    this.bytes += key.length + value.length;
    this.hash = (this.hash + entryHash(key, value)) >>> 0;
    this.count++;
  }

  /** Writes the checkpoint (entries, shapes, meta) in one atomic batch and records it in the manifest (fsynced). */
  async finish(m: CheckpointWrite['meta']): Promise<CheckpointMeta> {
    if (this.done) throw new Error(`checkpoint ${this.id} is already finished or discarded`);
    if (m.id !== this.id) throw new Error(`checkpoint writer ${this.id} was given the meta of checkpoint ${m.id}`);
    this.done = true;
    const meta: CheckpointMeta = { ...m, entries: this.count, hash: this.hash, bytes: this.bytes };
    meta.bytes += encode(meta).length;
    await this.commit(meta, this.batch);
    return meta;
  }

  /** Drops the checkpoint: nothing of it was written. */
  async discard(): Promise<void> {
    if (this.done) return;
    this.done = true;
    await this.batch.close().catch(() => undefined);
  }
}

/** The checkpoints of one job, in LevelDB under the state directory, with a manifest beside it. */
export class CheckpointStore {
  /** Set once LevelDB has failed reading its own files: the state needs `tidemark inspect --repair`. */
  levelDamage?: string;
  /** What open() did to bring the manifest up to date with LevelDB, for the log. */
  readonly notes: string[] = [];
  /** Checkpoints LevelDB holds that the manifest does not know (and that are older than its newest). */
  private strays: Unusable[] = [];
  private readonly codec = new WindowCodec();

  private constructor(
    private readonly db: Level<string, Uint8Array>,
    readonly dir: string,
    private readonly manifest: CheckpointManifest,
    private readonly ref?: StateRef,
  ) {}

  /**
   * Opens (creating) the store; a second process on the same directory is refused. A directory that
   * holds state is never re-created empty: LevelDB would do that silently when its CURRENT file is gone.
   */
  static async open(dir: string, ref?: StateRef): Promise<CheckpointStore> {
    const notes: string[] = [];
    if (unfinishedCreation(dir)) {
      // A process stopped while LevelDB was creating the database (it writes MANIFEST-000001, then
      // CURRENT): nothing was ever stored. Unless a process is creating it right now.
      await CheckpointStore.assertUnlocked(dir);
      for (const f of readdirSync(dir)) if (/^MANIFEST-\d+$|\.dbtmp$/.test(f)) rmSync(join(dir, f), { force: true });
      rmSync(manifestPath(dir), { force: true });
      notes.push(`${dir} holds only the start of a LevelDB database that was never finished (no CURRENT file, no data, no checkpoint): a first start was cut short; starting with empty state`);
    }
    const manifestExisted = existsSync(manifestPath(dir));
    const hasState = levelFiles(dir).length > 0 || manifestExisted;
    // LevelDB does not verify its tables' checksums: check them before it reads (or compacts) one.
    const damaged = damagedTables(dir);
    // A table LevelDB was writing when its process stopped is not in its MANIFEST yet: it holds
    // nothing of the state, and LevelDB deletes it unread on open.
    for (const d of damaged) if (!d.listed) notes.push(`LevelDB table file ${d.file} was being written when the process stopped (${d.problem}); LevelDB's MANIFEST does not list it, and LevelDB deletes it`);
    const tables = damaged.filter((d) => d.listed);
    if (tables.length) {
      await CheckpointStore.assertUnlocked(dir);
      const what = tables.map((d) => `table file ${d.file}: ${d.problem}`).join('; ');
      throw new TidemarkError('STATE_CORRUPT', `the checkpoint state in ${dir} is damaged: ${what}; ${waysOut(ref, { repair: true })}`);
    }
    const db = new Level<string, Uint8Array>(dir, { keyEncoding: 'utf8', valueEncoding: 'view', createIfMissing: !hasState });
    try {
      await db.open();
    } catch (e) {
      if (isLocked(e)) throw lockedError(dir, e);
      const text = levelText(e);
      throw new TidemarkError('STATE_CORRUPT', `the checkpoint state in ${dir} is damaged and LevelDB cannot open it: ${describeOpenFailure(text)} (LevelDB: ${text}); ${waysOut(ref, { repair: true })}`, { cause: e });
    }
    let manifest: CheckpointManifest;
    try {
      manifest = await CheckpointManifest.open(manifestPath(dir));
    } catch (e) {
      await db.close();
      throw new TidemarkError('STATE_CORRUPT', `the checkpoint manifest ${manifestPath(dir)} cannot be read: ${(e as Error).message}`, { cause: e });
    }
    const store = new CheckpointStore(db, dir, manifest, ref);
    store.notes.push(...notes);
    try {
      try {
        store.codec.load(await db.iterator(WindowCodec.range).all());
      } catch (e) {
        const text = isLevelDamage(e) ? `LevelDB: ${levelText(e)}` : (e as Error).message;
        throw new TidemarkError('STATE_CORRUPT', `the accumulator shapes in ${dir} are unreadable (${text}); ${waysOut(ref, { repair: isLevelDamage(e) })}`, { cause: e });
      }
      await store.reconcile(manifestExisted);
    } catch (e) {
      await store.close();
      throw e;
    }
    return store;
  }

  /** Deletes a job's checkpoints, LevelDB files and manifest, whatever state they are in (`--reset-state`). */
  static destroy(dir: string): void {
    rmSync(dir, { recursive: true, force: true });
    rmSync(manifestPath(dir), { force: true });
  }

  /**
   * Runs LevelDB's own repair on `dir` (it rebuilds the MANIFEST from the table files and logs it
   * finds, dropping what it cannot read) after copying the directory aside; returns the copy's path.
   */
  static async repair(dir: string): Promise<{ copy: string; moved: string[] }> {
    // LevelDB's repair takes no lock: make sure no process has the directory open.
    await CheckpointStore.assertUnlocked(dir);
    const copy = `${dir}.damaged-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    cpSync(dir, copy, { recursive: true });
    // Tables whose checksums fail go where LevelDB's repair puts what it cannot use: its repair
    // would read them unverified (and may abort on a garbled key).
    const moved = damagedTables(dir);
    if (moved.length) mkdirSync(join(dir, 'lost'), { recursive: true });
    for (const d of moved) renameSync(join(dir, d.file), join(dir, 'lost', d.file));
    try {
      await LevelStatics.repair(dir);
    } catch (e) {
      throw new TidemarkError('STATE_CORRUPT', `LevelDB's repair of ${dir} failed (LevelDB: ${levelText(e)}); the damaged files are kept in ${copy}`, { cause: e });
    }
    return { copy, moved: moved.map((d) => d.file) };
  }

  /**
   * Throws STATE_LOCKED when a process has `dir` open. LevelDB takes its lock first and, with
   * errorIfExists, stops right after it: nothing is read, replayed or written.
   */
  private static async assertUnlocked(dir: string): Promise<void> {
    const probe = new Level(dir, { createIfMissing: false, errorIfExists: true });
    try {
      await probe.open();
      await probe.close();
    } catch (e) {
      if (isLocked(e)) throw lockedError(dir, e);
    }
  }

  /**
   * Brings the manifest up to date with what LevelDB holds: checkpoints newer than the manifest's
   * newest were written just before the process stopped (the manifest line follows the LevelDB
   * batch) and are added; pruned ones whose deletion was cut short are deleted; any other
   * checkpoint the manifest does not know is reported, never used.
   */
  private async reconcile(manifestExisted: boolean): Promise<void> {
    const adopt: ManifestEntry[] = [];
    const dropped: number[] = [];
    try {
      for await (const [key, value] of this.db.iterator({ gte: 'm!', lt: 'm"' })) {
        const id = Number(key.slice(2));
        if (this.manifest.live.has(id)) continue;
        if (this.manifest.dropped.has(id)) {
          dropped.push(id);
          continue;
        }
        let m: CheckpointMeta | undefined;
        try {
          m = decode<CheckpointMeta>(value);
        } catch {
          m = undefined;
        }
        if (!manifestExisted || id > this.manifest.maxId) {
          if (m && m.id === id) adopt.push(manifestEntry(m, value));
          else this.strays.push({ id, problem: 'metadata unreadable' });
        } else this.strays.push({ id, problem: 'not in the checkpoint manifest (a damaged key or a damaged manifest line): not trusted' });
      }
    } catch (e) {
      if (!isLevelDamage(e)) throw e;
      this.levelDamage ??= levelText(e);
    }
    if (adopt.length) {
      await this.manifest.add(adopt);
      if (!manifestExisted) this.notes.push(`no checkpoint manifest was found; wrote one for the ${adopt.length} checkpoints in LevelDB`);
      else this.notes.push(`checkpoint${adopt.length > 1 ? 's' : ''} ${adopt.map((a) => a.id).join(', ')} ${adopt.length > 1 ? 'were' : 'was'} written just before the process stopped; added to the manifest`);
    }
    for (const id of dropped) await this.deleteEntries(id);
    if (this.manifest.damagedLines.length) this.notes.push(`checkpoint manifest lines ${this.manifest.damagedLines.join(', ')} are damaged and were ignored`);
  }

  /**
   * Starts checkpoint `id`: its entries go into one LevelDB chained batch as they are given (the
   * batch is native memory; nothing is written, nor visible, until `finish`). A sink hands each
   * barrier slice over as it arrives, so a full checkpoint of a large state is never held decoded.
   */
  begin(id: number): CheckpointWriter {
    return new CheckpointWriter(id, this.db.batch(), this.codec, (meta, batch) => this.commit(meta, batch));
  }

  /**
   * Writes one checkpoint in one atomic batch, then records it in the manifest (fsynced). The
   * entries go into a LevelDB chained batch in slices, with `pause()` awaited between them (a yield
   * to the event loop for a large state).
   */
  async write(cp: CheckpointWrite, pause?: () => Promise<void>): Promise<CheckpointMeta> {
    const w = this.begin(cp.meta.id);
    const paused = async (): Promise<void> => {
      if (w.entries % WRITE_SLICE === 0 && pause) await pause();
    };
    try {
      for (const c of cp.chunks) {
        for (const [p, ws] of c.u) {
          for (const win of ws) {
            w.upsert(p, win);
            await paused();
          }
        }
        for (const [p, id] of c.d) {
          w.remove(p, id);
          await paused();
        }
      }
    } catch (e) {
      await w.discard();
      throw e;
    }
    return w.finish(cp.meta);
  }

  /** Writes a finished writer's batch with the codec's shapes and the meta, then records it in the manifest. */
  private async commit(meta: CheckpointMeta, batch: ReturnType<Level<string, Uint8Array>['batch']>): Promise<void> {
    try {
      const metaBytes = encode(meta);
      for (const [k, v] of this.codec.shapeEntries()) batch.put(k, v);
      batch.put(metaKey(meta.id), metaBytes);
      await batch.write();
      await this.manifest.add([manifestEntry(meta, metaBytes)]);
    } catch (e) {
      const hint = isLevelDamage(e) ? `: LevelDB reports damage in ${this.dir} (LevelDB: ${levelText(e)}); ${waysOut(this.ref, { repair: true })}` : `: ${(e as Error).message}`;
      throw new TidemarkError('STATE_WRITE_FAILED', `checkpoint ${meta.id} could not be written${hint}`, { cause: e });
    }
  }

  /** The highest checkpoint id ever written here (new ids continue after it, never reusing one). */
  get maxId(): number {
    return this.manifest.maxId;
  }

  /** The newest checkpoint recorded under savepoint name `name`, if any (damaged ones included). */
  savepointNamed(name: string): number | undefined {
    let best: number | undefined;
    for (const e of this.manifest.live.values()) if (e.savepoint === name && (best === undefined || e.id > best)) best = e.id;
    return best;
  }

  /** What the manifest records of checkpoint `id`. */
  recorded(id: number): ManifestEntry | undefined {
    return this.manifest.live.get(id);
  }

  /** True when the manifest records checkpoint `id` (readable or not). */
  has(id: number): boolean {
    return this.manifest.live.has(id);
  }

  /** Problems of the checkpoint manifest itself, for `inspect`. */
  get manifestProblems(): string[] {
    return this.manifest.damagedLines.length ? [`checkpoint manifest lines ${this.manifest.damagedLines.join(', ')} are damaged`] : [];
  }

  /** Every checkpoint the manifest names, newest first, each read and checked against it. */
  async list(): Promise<Listing> {
    const metas: CheckpointMeta[] = [];
    const bad: Unusable[] = [...this.strays];
    const ids = [...this.manifest.live.keys()].sort((a, b) => b - a);
    for (const id of ids) {
      const entry = this.manifest.live.get(id)!;
      let value: Uint8Array | undefined;
      try {
        value = await this.db.get(metaKey(id));
      } catch (e) {
        if (!isLevelDamage(e)) throw e;
        this.levelDamage ??= levelText(e);
        bad.push({ id, problem: `LevelDB cannot read its metadata (LevelDB: ${levelText(e)})`, level: true });
        continue;
      }
      if (value === undefined) {
        bad.push({ id, problem: 'missing: the manifest records it but LevelDB no longer holds it (a damaged write-ahead log or a lost table file)' });
        continue;
      }
      if (fnv(0x811c9dc5, value) !== entry.metaHash) {
        bad.push({ id, problem: 'corrupted: its metadata does not match the checkpoint manifest' });
        continue;
      }
      try {
        const m = decode<CheckpointMeta>(value);
        if (typeof m?.id !== 'number' || m.id !== id) throw new Error('id mismatch');
        metas.push(m);
      } catch (e) {
        bad.push({ id, problem: `metadata unreadable (${(e as Error).message})` });
      }
    }
    bad.sort((a, b) => b.id - a.id);
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

  /**
   * A written checkpoint's own entries, decoded a few thousand at a time as LevelDB hands them over
   * (a group's mirror copies a checkpoint this way, holding no more than one chunk of it). Ends with
   * an error when the entries are not those the meta counted and hashed.
   */
  async *chunksOf(meta: CheckpointMeta): AsyncGenerator<EntryChunk> {
    const at = deltaPrefix(meta.id).length;
    let n = 0;
    let hash = 0;
    for await (const entries of this.scan(deltaPrefix(meta.id))) {
      const byGroup = new Map<number, PersistedWindow[]>();
      const d: EntryChunk['d'] = [];
      for (const [key, value] of entries) {
        n++;
        hash = (hash + entryHash(key, value)) >>> 0;
        const { p, wid } = entryOf(key, at);
        if (value.length === 0) {
          d.push([p, wid]);
          continue;
        }
        let list = byGroup.get(p);
        if (!list) byGroup.set(p, (list = []));
        list.push(this.codec.decode(wid, value));
      }
      yield { u: [...byGroup], d };
    }
    if (n !== meta.entries || hash !== meta.hash) throw new TidemarkError('STATE_CORRUPT', `checkpoint ${meta.id} read back ${n} entries (hash ${hash.toString(16)}) where it wrote ${meta.entries} (hash ${meta.hash.toString(16)})`);
  }

  /**
   * Reads one checkpoint's own entries and verifies them against its meta, in one pass; with
   * `decode`, the windows are decoded as they are read (LevelDB hands them over a few thousand per
   * step, each step a turn of the event loop), so no step decodes the whole state at once.
   */
  private async read(meta: CheckpointMeta, decode = true): Promise<Verdict> {
    let n = 0;
    let hash = 0;
    const windows = new Map<number, PersistedWindow[]>();
    const deletes: Array<[number, string]> = [];
    let unreadable: unknown;
    const at = deltaPrefix(meta.id).length;
    try {
      for await (const entries of this.scan(deltaPrefix(meta.id))) {
        for (const [key, value] of entries) {
          n++;
          hash = (hash + entryHash(key, value)) >>> 0;
          if (!decode || unreadable !== undefined) continue;
          const { p, wid } = entryOf(key, at);
          if (value.length === 0) {
            deletes.push([p, wid]);
            continue;
          }
          let part = windows.get(p);
          if (!part) windows.set(p, (part = []));
          try {
            part.push(this.codec.decode(wid, value));
          } catch (e) {
            // Judged once the entries are verified: a damaged entry fails the hash first.
            unreadable = e;
          }
        }
      }
    } catch (e) {
      if (!isLevelDamage(e)) throw e;
      this.levelDamage ??= levelText(e);
      return { problem: `unreadable: LevelDB cannot read its entries (LevelDB: ${levelText(e)})`, level: true, windows: new Map(), deletes: [] };
    }
    if (n !== meta.entries) return { problem: `truncated: ${n} of ${meta.entries} entries present`, windows: new Map(), deletes: [] };
    if (hash !== meta.hash) return { problem: `corrupted: content hash ${hash.toString(16)} does not match ${meta.hash.toString(16)}`, windows: new Map(), deletes: [] };
    if (unreadable !== undefined) throw unreadable;
    return { windows, deletes };
  }

  /**
   * Loads the newest usable checkpoint (or `id`), falling back past damaged ones. Merging a chain
   * of deltas onto its full checkpoint awaits `pause()` every few thousand windows (a yield to the
   * event loop for a large state).
   */
  async restore(id?: number, pause?: () => Promise<void>): Promise<Restored | undefined> {
    const { metas, bad } = await this.list();
    const skipped: Unusable[] = [];
    const byId = new Map(metas.map((m) => [m.id, m]));
    const badById = new Map(bad.map((b) => [b.id, b]));
    if (id !== undefined && !byId.has(id)) {
      const b = badById.get(id);
      if (!b) throw new TidemarkError('CHECKPOINT_NOT_FOUND', `checkpoint ${id} not found (tidemark inspect lists them)`);
      throw new TidemarkError('STATE_CORRUPT', `checkpoint ${id} is unusable: ${b.problem}; ${waysOut(this.ref, { repair: b.level === true })}`);
    }
    // Newest first, the unreadable ones in their place so each is reported once.
    const heads: Array<CheckpointMeta | Unusable> = id === undefined ? [...metas, ...bad].sort((x, y) => y.id - x.id) : [byId.get(id)!];
    const verdict = new Map<number, Awaited<ReturnType<CheckpointStore['read']>>>();
    const check = async (m: CheckpointMeta): Promise<{ problem?: string; level?: boolean }> => {
      if (!verdict.has(m.id)) verdict.set(m.id, await this.read(m));
      return verdict.get(m.id)!;
    };
    for (const head of heads) {
      if (!('seq' in head)) {
        skipped.push(head);
        continue;
      }
      const chain: CheckpointMeta[] = [];
      let problem: Unusable | undefined;
      for (let cur: CheckpointMeta = head; ; ) {
        const p = await check(cur);
        if (p.problem) {
          problem = { id: head.id, problem: cur.id === head.id ? p.problem : `depends on checkpoint ${cur.id}, which is ${p.problem}`, ...(p.level ? { level: true } : {}) };
          break;
        }
        chain.push(cur);
        if (cur.full) break;
        const parent = byId.get(cur.parent);
        if (!parent) {
          const b = badById.get(cur.parent);
          problem = { id: head.id, problem: b ? `depends on checkpoint ${cur.parent}, which is ${b.problem}` : `its base checkpoint ${cur.parent} is missing`, ...(b?.level ? { level: true } : {}) };
          break;
        }
        cur = parent;
      }
      if (problem) {
        skipped.push(problem);
        continue;
      }
      if (chain.length === 1) {
        // A full checkpoint alone: its entries are the windows, no merging needed.
        return { meta: head, windows: verdict.get(head.id)!.windows, chain: { fullBytes: head.bytes, deltaBytes: 0, depth: 1 }, skipped };
      }
      const out = await mergeChain(chain.reverse().map((m) => verdict.get(m.id)!), pause);
      // chain was reversed above: the full checkpoint comes first.
      const chainState: ChainState = { fullBytes: chain[0]!.bytes, deltaBytes: chain.slice(1).reduce((a, m) => a + m.bytes, 0), depth: chain.length };
      return { meta: head, windows: out, chain: chainState, skipped };
    }
    if (skipped.length > 0) {
      const why = groupProblems(skipped);
      const what = id === undefined ? 'no checkpoint in the state directory is usable' : `checkpoint ${id} is unusable`;
      throw new TidemarkError('STATE_CORRUPT', `${what} (${why}); ${waysOut(this.ref, { repair: skipped.some((s) => s.level) })}`);
    }
    return undefined;
  }

  /** Every checkpoint, newest first, each with what makes it unusable (its own entries or its chain's), if anything. */
  async diagnose(): Promise<Array<{ id: number; meta?: CheckpointMeta; problem?: string }>> {
    const { metas, bad } = await this.list();
    const byId = new Map(metas.map((m) => [m.id, m]));
    const problems = new Map<number, string | undefined>(bad.map((b) => [b.id, b.problem]));
    const own = async (m: CheckpointMeta): Promise<string | undefined> => (await this.read(m, false)).problem;
    const rows: Array<{ id: number; meta?: CheckpointMeta; problem?: string }> = [];
    // Oldest first, so a delta's parent is judged before it.
    for (const m of [...metas].reverse()) {
      let problem = await own(m);
      if (!problem && !m.full) {
        if (!problems.has(m.parent) && !byId.has(m.parent)) problem = `its base checkpoint ${m.parent} is missing`;
        else if (problems.get(m.parent)) problem = `depends on checkpoint ${m.parent}, which is ${problems.get(m.parent)!}`;
      }
      problems.set(m.id, problem);
    }
    for (const id of [...problems.keys()].sort((a, b) => b - a)) rows.push({ id, ...(byId.has(id) ? { meta: byId.get(id)! } : {}), ...(problems.get(id) ? { problem: problems.get(id)! } : {}) });
    return rows;
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
    // What LevelDB cannot read is left for its repair: deleting it would read the damaged files again.
    const drop = [...metas.map((m) => m.id).filter((id) => !keep.has(id)), ...bad.filter((b) => !b.level).map((b) => b.id)];
    // The manifest first: a prune cut short leaves entries that reconcile() finishes deleting.
    await this.manifest.drop(drop.filter((id) => this.manifest.live.has(id)));
    for (const id of drop) await this.deleteEntries(id);
    this.strays = this.strays.filter((s) => !drop.includes(s.id));
    return drop;
  }

  private async deleteEntries(id: number): Promise<void> {
    await this.db.del(metaKey(id));
    await this.db.clear({ gte: deltaPrefix(id), lt: deltaPrefix(id) + '\uffff' });
  }

  /** Discards every checkpoint (`--reset-state`). */
  async reset(): Promise<void> {
    await this.db.clear();
    await this.manifest.clear();
    this.strays = [];
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
    await this.manifest.close().catch(() => undefined);
    await this.db.close();
  }
}

export { metaKey, deltaPrefix };
