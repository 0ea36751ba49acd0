// PostgreSQL sink: exactly once by idempotent upserts keyed on the deterministic ids, written in
// one transaction per checkpoint together with that checkpoint's id in a progress table.
//
// Records between two barriers form an epoch. One connection streams an epoch's records into an
// open transaction in batches of COPY binary rows (encoded in slices while the database works on the
// previous batch, and ordered by id so the primary keys' index inserts stay close together): rows no
// earlier write can have made, such as a window's revision 0, by a plain COPY into their tables; the
// others by COPY into a temporary staging table, then INSERT … SELECT … ON CONFLICT; an epoch whose
// plain COPY meets an existing row — a replay — is written again the second way. At the barrier it
// writes the progress row and commits; only
// then does the checkpoint's snapshot promise resolve, so LevelDB never records a checkpoint whose
// results are not durable in PostgreSQL, and a reader never sees results of an uncommitted cut.
// Records are kept until their epoch commits: when the connection is lost the epoch is written
// again from its first record on a new connection (the upserts make a repeat harmless).

import type pgModule from 'pg';
import type { from as copyFromFn } from 'pg-copy-streams';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { TidemarkError } from '../errors.js';
import type { Logger } from '../log.js';
import type { OutRecord, Sink, SinkProgress } from './sinks.js';
import { formatPostgresSpec, type PostgresSpec } from './postgres-url.js';
import { reconnectBackoff } from './reconnect.js';
import { faultPoint } from './fault.js';

// The PostgreSQL client loads with the first connection: a job without a PostgreSQL sink does not
// pay for it at start-up.
let pg: typeof pgModule;
let copyFrom: typeof copyFromFn;
async function loadPg(): Promise<void> {
  pg ??= (await import('pg')).default;
  copyFrom ??= (await import('pg-copy-streams')).from;
}

/** What a sink carries: window results, late records or dead letters. */
export type SinkRole = 'results' | 'late' | 'dead';

export type PgType = 'text' | 'integer' | 'bigint' | 'double precision' | 'boolean' | 'timestamptz' | 'jsonb';

/**
 * Column types of the fields Tidemark's own records carry (DESIGN.md §2). A field not listed gets
 * its type from its first non-null value: number → double precision, boolean, string → text,
 * object or array → jsonb.
 */
export const KNOWN_COLUMNS: Readonly<Record<string, PgType>> = {
  id: 'text',
  job: 'text',
  key: 'text',
  window_start: 'timestamptz',
  window_end: 'timestamptz',
  revision: 'integer',
  final: 'boolean',
  watermark: 'timestamptz',
  count: 'integer',
  positive: 'integer',
  negative: 'integer',
  neutral: 'integer',
  score_sum: 'double precision',
  avg_score: 'double precision',
  ts: 'timestamptz',
  post_id: 'text',
  record_id: 'text',
  reason: 'text',
  subject: 'text',
  seq: 'bigint',
  payload: 'text',
};

/** Existing column types (information_schema spelling) an expected type accepts. */
const COMPATIBLE: Readonly<Record<PgType, readonly string[]>> = {
  text: ['text', 'character varying'],
  integer: ['integer', 'bigint', 'numeric', 'double precision'],
  bigint: ['bigint', 'numeric'],
  'double precision': ['double precision', 'numeric'],
  boolean: ['boolean'],
  timestamptz: ['timestamp with time zone'],
  jsonb: ['jsonb', 'json'],
};

/** snake_case column name of a record field. */
export function columnName(field: string): string {
  const s = field
    .replace(/([a-z0-9])([A-Z])/g, '$1_$2')
    .toLowerCase()
    .replace(/[^a-z0-9_]/g, '_');
  return (/^[0-9]/.test(s) ? `_${s}` : s).slice(0, 63);
}

type Rec = Record<string, unknown>;

interface Column {
  name: string;
  type: PgType;
  /** the record field it comes from (`window.start` for window_start) */
  field: string;
  get: (r: Rec) => unknown;
  notNull?: boolean;
}

/** Appends one column's cell of a record to a row. */
type CellWriter = (w: RowBuffer, r: Rec) => void;

interface Target {
  table: string;
  /** conflict target columns */
  conflict: string[];
  /** `replace`: a higher revision replaces the row; `keep`: the first write stays */
  onConflict: 'keep' | 'replace';
}

/**
 * Records `from`…`to` of an epoch as COPY binary rows, ordered by id (so the primary keys' index
 * inserts stay close together), cut and encoded in slices between other work (so the encoding
 * overlaps the database's work on the batch before).
 */
interface Batch {
  from: number;
  to: number;
  /** record indexes, ordered by id */
  order: number[];
  /** how many of `order` are encoded */
  done: number;
  /** rows no earlier write can have made in the current-value table: all of late records and dead letters, results of revision 0 */
  fresh: RowBuffer;
  /** the others: results of a higher revision */
  later: RowBuffer;
  /** the records in `later`, in its order */
  laterRecords: OutRecord[];
}

interface Epoch {
  cp?: number;
  records: OutRecord[];
  /** batches cut from `sent` on, in order, each starting where the one before ends */
  batches: Batch[];
  sent: number;
  closed: boolean;
  /** written with ON CONFLICT only (a plain COPY of this epoch met a row that was there) */
  safe?: boolean;
  resolve?: (p: SinkProgress) => void;
  reject?: (e: Error) => void;
}

const windowOf = (r: Rec): { start?: unknown; end?: unknown } | undefined => r.window as { start?: unknown; end?: unknown } | undefined;

const q = (name: string): string => `"${name}"`;

/** Rows per COPY batch (each batch is a few round trips). */
const CHUNK = 20_000;
/** Records encoded at a time between other work. */
const ENCODE_SLICE = 2_000;
/** Records accepted but not yet sent before write() makes the sink actor wait. */
const HIGH_WATER = 100_000;

const TRANSIENT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', '57P01', '57P02', '57P03', '08000', '08001', '08003', '08004', '08006', '53300']);

/** A lost or refused connection (worth retrying), as opposed to a refusal that will not change. */
export function isTransient(e: unknown): boolean {
  const code = (e as { code?: unknown }).code;
  if (typeof code === 'string' && TRANSIENT_CODES.has(code)) return true;
  const msg = e instanceof Error ? e.message : String(e);
  return /Connection terminated|connection timeout|timeout expired|Client has encountered a connection error|not queryable|write after end|socket hang up/i.test(msg);
}

/** Existing column types (information_schema spelling, or ours after an ALTER) that take our binary COPY form as is. */
const BINARY_SAME: Readonly<Record<PgType, readonly string[]>> = {
  text: ['text', 'character varying'],
  integer: ['integer'],
  bigint: ['bigint'],
  'double precision': ['double precision'],
  boolean: ['boolean'],
  timestamptz: ['timestamp with time zone', 'timestamptz'],
  jsonb: ['jsonb'],
};

/** COPY binary header: signature, flags, header extension length. */
const COPY_HEADER = Buffer.from([0x50, 0x47, 0x43, 0x4f, 0x50, 0x59, 0x0a, 0xff, 0x0d, 0x0a, 0x00, 0, 0, 0, 0, 0, 0, 0, 0]);
/** ms from the Unix epoch to PostgreSQL's (2000-01-01 UTC). */
const PG_EPOCH_MS = 946_684_800_000;
const TWO_32 = 4_294_967_296;

/** Rows in COPY binary form, back to back in one growing buffer. */
class RowBuffer {
  buf: Buffer;
  /** big-endian writes through a DataView (inlined by V8, cheaper than Buffer's checked writers) */
  dv: DataView;
  pos = 0;

  constructor(size = 64 * 1024) {
    this.buf = Buffer.allocUnsafe(Math.max(1024, Math.ceil(size)));
    this.dv = new DataView(this.buf.buffer, this.buf.byteOffset, this.buf.length);
  }

  ensure(n: number): void {
    if (this.pos + n > this.buf.length) this.grow(n);
  }

  private grow(n: number): void {
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
    this.dv = new DataView(next.buffer, next.byteOffset, next.length);
  }

  int16(v: number): void {
    this.ensure(2);
    this.dv.setInt16(this.pos, v);
    this.pos += 2;
  }

  int32(v: number): void {
    this.ensure(4);
    this.dv.setInt32(this.pos, v);
    this.pos += 4;
  }

  /** A field of 4 bytes (its length, then the int32). */
  int32Field(v: number): void {
    this.ensure(8);
    this.dv.setInt32(this.pos, 4);
    this.dv.setInt32(this.pos + 4, v);
    this.pos += 8;
  }

  /** A field of 8 bytes: a double. */
  float64Field(v: number): void {
    this.ensure(12);
    this.dv.setInt32(this.pos, 8);
    this.dv.setFloat64(this.pos + 4, v);
    this.pos += 12;
  }

  /** A field of 1 byte: a boolean. */
  boolField(v: boolean): void {
    this.ensure(5);
    this.dv.setInt32(this.pos, 1);
    this.buf[this.pos + 4] = v ? 1 : 0;
    this.pos += 5;
  }

  /** A field of 8 bytes: an int64 given as a Number (exact up to 2^53) or a BigInt. */
  int64(v: number | bigint): void {
    this.ensure(12);
    const dv = this.dv;
    const at = this.pos;
    dv.setInt32(at, 8);
    if (typeof v === 'bigint') dv.setBigInt64(at + 4, v);
    else {
      const hi = Math.floor(v / TWO_32);
      dv.setInt32(at + 4, hi);
      dv.setUint32(at + 8, v - hi * TWO_32);
    }
    this.pos = at + 12;
  }

  /** A text field (`prefix`: a byte before it, jsonb's version); NUL, which PostgreSQL text cannot hold, becomes U+FFFD. */
  text(s: string, prefix?: number): void {
    const len = s.length;
    this.ensure(5 + len * 3);
    const buf = this.buf;
    const at = this.pos;
    let p = at + 4;
    if (prefix !== undefined) buf[p++] = prefix;
    // Short ASCII text (ids, keys) byte by byte: cheaper than a call into the UTF-8 encoder.
    let i = 0;
    if (len <= 64) {
      for (; i < len; i++) {
        const ch = s.charCodeAt(i);
        if (ch >= 0x80 || ch === 0) break;
        buf[p + i] = ch;
      }
    }
    if (i === len) p += len;
    else {
      if (s.indexOf('\0') >= 0) s = s.replaceAll('\0', '\uFFFD');
      p += buf.write(s, p, 'utf8');
    }
    this.dv.setInt32(at, p - at - 4);
    this.pos = p;
  }

  /** The rows made so far (no copy). */
  get data(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}

/** COPY binary trailer. */
const COPY_TRAILER = Buffer.from([0xff, 0xff]);

/** True when no two results of the batch are of the same window. */
function windowsUnique(records: readonly OutRecord[]): boolean {
  const seen = new Set<string>();
  for (const x of records) {
    const r = x as unknown as Rec;
    const w = windowOf(r);
    seen.add(`${String(r.key)}\u0000${String(w?.start)}\u0000${String(w?.end)}`);
  }
  return seen.size === records.length;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The PostgreSQL sink of one role (results, late records or dead letters). */
export class PostgresSink implements Sink {
  written = 0;
  private readonly shown: string;
  private readonly flag: string;
  private readonly base: Column[];
  private readonly extra: Column[] = [];
  private readonly targets: Target[];
  private readonly progressTable: string;
  private readonly stage: string;
  /** fields already mapped (or skipped) */
  private readonly seen = new Set<string>();
  private readonly columnsTaken = new Map<string, string>();
  /** existing columns per table, as PostgreSQL reports them */
  private existing = new Map<string, Map<string, string>>();
  private schemaVersion = 0;
  private appliedVersion = -1;
  private client?: pgModule.Client;
  /** the connection whose transaction holds the head epoch's records sent so far (none: no transaction open) */
  private txClient?: pgModule.Client;
  private resetPending = false;
  private epochs: Epoch[] = [{ records: [], batches: [], sent: 0, closed: false }];
  private unsent = 0;
  private drainWaiters: Array<() => void> = [];
  private pumping?: Promise<void>;
  private fatal?: Error;
  private closing = false;
  private lastCp = 0;
  private outageSince?: number;
  private readonly backoff = reconnectBackoff(200, 5000);
  private encoding?: NodeJS.Immediate;
  /** bytes to allow per row in a new batch's buffer (the widest rows made so far, and a tenth more) */
  private rowBytes = 256;
  /** records committed by this process (metrics, benchmarks) */
  committed = 0;

  constructor(
    readonly spec: PostgresSpec,
    readonly role: SinkRole,
    private readonly job: string,
    private readonly log?: Logger,
  ) {
    this.shown = formatPostgresSpec(spec);
    this.flag = role === 'results' ? '--sink' : role === 'late' ? '--late-sink' : '--dlq-sink';
    const p = spec.prefix;
    this.progressTable = `${p}progress`;
    this.stage = `tidemark_stage_${role}`;
    const col = (name: string, field: string, get: (r: Rec) => unknown, notNull = false): Column => ({ name, type: KNOWN_COLUMNS[name]!, field, get, notNull });
    const id = col('id', 'id', (r) => r.id, true);
    const jobCol = col('job', 'job', () => this.job, true);
    const windowCols = [col('key', 'key', (r) => r.key, true), col('window_start', 'window.start', (r) => windowOf(r)?.start, true), col('window_end', 'window.end', (r) => windowOf(r)?.end, true)];
    if (role === 'results') {
      this.base = [id, jobCol, ...windowCols, col('revision', 'revision', (r) => r.revision, true), col('final', 'final', (r) => r.final), col('watermark', 'watermark', (r) => r.watermark)];
      this.targets = [
        { table: `${p}windows_revisions`, conflict: ['id'], onConflict: 'keep' },
        { table: `${p}windows`, conflict: ['job', 'key', 'window_start', 'window_end'], onConflict: 'replace' },
      ];
    } else if (role === 'late') {
      this.base = [id, jobCol, ...windowCols, col('ts', 'ts', (r) => r.ts), col('watermark', 'watermark', (r) => r.watermark)];
      this.targets = [{ table: `${p}late`, conflict: ['id'], onConflict: 'keep' }];
    } else {
      this.base = [id, jobCol];
      this.targets = [{ table: `${p}dead_letters`, conflict: ['id'], onConflict: 'keep' }];
    }
    for (const c of this.base) {
      this.seen.add(c.field.split('.')[0]!);
      this.columnsTaken.set(c.name, c.field);
    }
    this.columnsTaken.set('updated_at', '(time of the commit)');
  }

  get name(): string {
    return this.shown;
  }

  private allColumns?: Column[];
  private cellWriters?: CellWriter[];

  private get columns(): Column[] {
    return (this.allColumns ??= [...this.base, ...this.extra]);
  }

  /** Column names and types of the COPY text. */
  get copyColumns(): Array<{ name: string; type: PgType }> {
    return this.columns.map((c) => ({ name: c.name, type: c.type }));
  }

  /** Registers the columns of records not yet written (as write() does). */
  observe(records: readonly OutRecord[]): void {
    for (const r of records) for (const k in r) if (!this.seen.has(k)) this.discover(k, (r as unknown as Rec)[k]);
  }

  // ---------------------------------------------------------------------------------------------
  // Lifecycle

  async open(progress: SinkProgress | undefined): Promise<void> {
    try {
      await this.recover(progress);
    } catch (e) {
      await this.close();
      throw e;
    }
  }

  private async recover(progress: SinkProgress | undefined): Promise<void> {
    const c = await this.connect(true);
    await this.prepareTables(c);
    const { rows } = await c.query<{ checkpoint_id: string }>(`SELECT checkpoint_id FROM ${this.progressTable} WHERE job = $1 AND sink = $2`, [this.job, this.role]);
    const held = rows[0] ? Number(rows[0].checkpoint_id) : undefined;
    const restored = progress && 'checkpoint' in progress ? progress.checkpoint : undefined;
    if (restored !== undefined && (held === undefined || held < restored)) {
      throw new TidemarkError(
        'STATE_INCOMPATIBLE',
        `${this.flag} ${this.shown}: the state says checkpoint ${restored} was committed to ${this.targets[0]!.table}, but PostgreSQL holds ${held === undefined ? 'no checkpoint' : `checkpoint ${held}`} of job ${this.job}; the tables were changed outside Tidemark (use --reset-state to start over)`,
      );
    }
    // A fresh start over rows of an earlier run: they are replaced, atomically with the first commit
    // (as the JSONL sink truncates its file).
    this.resetPending = restored === undefined && held !== undefined;
    this.lastCp = restored ?? 0;
    this.log?.info(
      { sink: this.shown, role: this.role, tables: this.targets.map((t) => t.table), heldCheckpoint: held ?? null, restoredCheckpoint: restored ?? null },
      `PostgreSQL sink ${this.shown} (${this.targets.map((t) => t.table).join(', ')}): ${held === undefined ? 'no checkpoint committed yet' : `holds checkpoint ${held}`}${this.resetPending ? '; rows of the earlier run are replaced at the first commit' : ''}`,
    );
  }

  write(records: readonly OutRecord[]): Promise<void> | void {
    if (this.fatal || this.closing) return;
    const ep = this.epochs[this.epochs.length - 1]!;
    try {
      const version = this.schemaVersion;
      this.observe(records);
      // A new column: rows made before it lack a cell, make them again.
      if (version !== this.schemaVersion) for (const e of this.epochs) e.batches = [];
    } catch (e) {
      this.fail(e);
      return;
    }
    for (const r of records) ep.records.push(r);
    this.unsent += records.length;
    this.written += records.length;
    this.kick();
    this.encodeLater();
    if (this.unsent > HIGH_WATER) return new Promise((r) => this.drainWaiters.push(r));
  }

  snapshot(cp?: number): Promise<SinkProgress> {
    if (this.fatal) return this.rejected(this.fatal);
    const ep = this.epochs[this.epochs.length - 1]!;
    ep.cp = cp ?? this.lastCp;
    this.lastCp = ep.cp;
    ep.closed = true;
    const p = new Promise<SinkProgress>((resolve, reject) => {
      ep.resolve = resolve;
      ep.reject = reject;
    });
    // The sink actor may stop awaiting at an earlier failure: never an unhandled rejection.
    p.catch(() => undefined);
    this.epochs.push({ records: [], batches: [], sent: 0, closed: false });
    this.kick();
    return p;
  }

  /** Commits everything written so far (with the last checkpoint's id: no new cut). */
  flush(): Promise<SinkProgress> {
    return this.snapshot(this.lastCp);
  }

  async close(): Promise<void> {
    this.closing = true;
    if (this.encoding) clearImmediate(this.encoding);
    this.releaseWaiters(true);
    const pending = this.epochs.filter((e) => e.closed);
    this.epochs = [{ records: [], batches: [], sent: 0, closed: false }];
    for (const e of pending) e.reject?.(new TidemarkError('SINK_FAILED', `${this.shown}: closed before checkpoint ${e.cp} was committed`));
    const c = this.client;
    this.client = undefined;
    await c?.end().catch(() => undefined);
    if (this.pumping) await Promise.race([this.pumping, sleep(2000)]);
  }

  // ---------------------------------------------------------------------------------------------
  // Columns

  /** Maps a field seen for the first time to a column (null: decided when a value comes). */
  private discover(field: string, value: unknown): void {
    if (value === null || value === undefined) return;
    this.seen.add(field);
    const name = columnName(field);
    const taken = this.columnsTaken.get(name);
    if (taken !== undefined) throw new TidemarkError('SINK_FAILED', `${this.shown}: fields "${taken}" and "${field}" would both be column ${name}`);
    const type: PgType = KNOWN_COLUMNS[name] ?? (typeof value === 'number' ? 'double precision' : typeof value === 'boolean' ? 'boolean' : typeof value === 'string' ? 'text' : typeof value === 'bigint' ? 'bigint' : 'jsonb');
    for (const t of this.targets) {
      const have = this.existing.get(t.table)?.get(name);
      if (have !== undefined && !COMPATIBLE[type].includes(have)) {
        throw new TidemarkError('BAD_CONFIG', `${this.flag} ${this.shown}: column ${t.table}.${name} is ${have}, but field "${field}" needs ${type} (drop or rename the column, or use ?prefix=NAME for tables of their own)`);
      }
    }
    this.columnsTaken.set(name, field);
    this.extra.push({ name, type, field, get: (r) => r[field] });
    this.allColumns = undefined;
    this.cellWriters = undefined;
    this.schemaVersion++;
  }

  /** The records as one COPY binary stream (header, a row per record in `copyColumns` order, trailer): also what the benchmark's bare COPY sends. */
  copyData(records: readonly OutRecord[]): Buffer {
    const w = new RowBuffer();
    w.ensure(COPY_HEADER.length);
    w.pos = COPY_HEADER.copy(w.buf, 0);
    for (const r of records) this.row(w, r);
    w.int16(-1);
    return w.data;
  }

  /** Cuts and encodes batches of waiting records, a slice at a time between other work (the writer makes what it needs and is not made yet). */
  private encodeLater(): void {
    if (this.encoding || this.fatal || this.closing) return;
    this.encoding = setImmediate(() => {
      this.encoding = undefined;
      let budget = ENCODE_SLICE;
      try {
        for (const ep of this.epochs) {
          for (;;) {
            let b = ep.batches[ep.batches.length - 1];
            if (!b || b.done === b.order.length) {
              // A new batch once a whole one waits, or the rest of a closed epoch: a batch cut
              // early would be smaller than the writer would make it.
              const from = b ? b.to : ep.sent;
              const waiting = ep.records.length - from;
              if (waiting < CHUNK && !(ep.closed && waiting > 0)) break;
              b = this.cut(ep, from, from + Math.min(waiting, CHUNK));
            }
            budget -= this.encodeSome(ep, b, budget);
            if (budget <= 0) break;
          }
          if (budget <= 0) break;
        }
      } catch (e) {
        this.fail(e);
        return;
      }
      if (budget <= 0) this.encodeLater();
    });
  }

  /** A new batch of records `from`…`to` of `ep` (appended to its batches), ordered by id, none encoded yet. */
  private cut(ep: Epoch, from: number, to: number): Batch {
    const recs = ep.records as unknown as Rec[];
    const ids: string[] = new Array<string>(to - from);
    const order: number[] = new Array<number>(to - from);
    for (let i = from; i < to; i++) {
      order[i - from] = i;
      ids[i - from] = String(recs[i]!.id);
    }
    // One comparison per step (ids of one batch are distinct; were two equal, only their order would be arbitrary).
    order.sort((a, b) => (ids[a - from]! < ids[b - from]! ? -1 : 1));
    // Sized for the batch by the rows made so far: no copying while it grows.
    const b: Batch = { from, to, order, done: 0, fresh: new RowBuffer((to - from) * this.rowBytes), later: new RowBuffer(this.rowBytes * 64), laterRecords: [] };
    ep.batches.push(b);
    return b;
  }

  /** Encodes up to `n` more rows of batch `b`; returns how many. */
  private encodeSome(ep: Epoch, b: Batch, n: number): number {
    const end = Math.min(b.order.length, b.done + n);
    const results = this.role === 'results';
    for (let k = b.done; k < end; k++) {
      const rec = ep.records[b.order[k]!]!;
      if (results && (rec as unknown as Rec).revision !== 0) {
        this.row(b.later, rec);
        b.laterRecords.push(rec);
      } else this.row(b.fresh, rec);
    }
    const made = end - b.done;
    b.done = end;
    if (end === b.order.length) this.rowBytes = Math.max(this.rowBytes, Math.ceil(((b.fresh.pos + b.later.pos) / end) * 1.1));
    return made;
  }

  /** The head epoch's next batch, from `sent` on, all encoded (cut now when not cut yet). */
  private nextBatch(ep: Epoch): Batch {
    let b = ep.batches[0];
    if (!b || b.from !== ep.sent) {
      ep.batches = [];
      b = this.cut(ep, ep.sent, ep.sent + Math.min(ep.records.length - ep.sent, CHUNK));
    }
    this.encodeSome(ep, b, b.order.length);
    return b;
  }

  /** Appends one record's COPY binary row. */
  private row(w: RowBuffer, rec: OutRecord): void {
    const writers = (this.cellWriters ??= this.columns.map((c) => this.writerOf(c)));
    const r = rec as unknown as Rec;
    w.int16(writers.length);
    for (let i = 0; i < writers.length; i++) writers[i]!(w, r);
  }

  /** The writer of one column's cells (made once per column set: no per-cell dispatch on the type). */
  private writerOf(c: Column): CellWriter {
    const get = c.get;
    const cannot = (v: unknown, r: Rec): never => {
      throw new TidemarkError('SINK_FAILED', `${this.shown}: field "${c.field}" of record ${String(r.id)} is ${typeof v === 'bigint' ? String(v) : JSON.stringify(v)}, which column ${c.name} (${c.type}) cannot hold`);
    };
    const absent = (w: RowBuffer, r: Rec): void => {
      if (c.notNull) throw new TidemarkError('SINK_FAILED', `${this.shown}: record ${String(r.id)} has no ${c.field}`);
      w.int32(-1);
    };
    switch (c.type) {
      case 'text':
        return (w, r) => {
          const v = get(r);
          if (typeof v === 'string') w.text(v);
          else if (v === null || v === undefined) absent(w, r);
          else cannot(v, r);
        };
      case 'integer':
        return (w, r) => {
          const v = get(r);
          // an integer Number within int32 (-0 is 0)
          if (typeof v === 'number' && (v | 0) === v) w.int32Field(v);
          else if (v === null || v === undefined) absent(w, r);
          else if (typeof v === 'bigint' && v >= -2147483648n && v <= 2147483647n) w.int32Field(Number(v));
          else cannot(v, r);
        };
      case 'bigint':
        return (w, r) => {
          const v = get(r);
          if (typeof v === 'number' && Number.isSafeInteger(v)) w.int64(v);
          else if (v === null || v === undefined) absent(w, r);
          else if (typeof v === 'bigint' && v >= -(2n ** 63n) && v < 2n ** 63n) w.int64(v);
          else cannot(v, r);
        };
      case 'double precision':
        return (w, r) => {
          const v = get(r);
          if (typeof v === 'number') w.float64Field(v);
          else if (v === null || v === undefined) absent(w, r);
          else cannot(v, r);
        };
      case 'boolean':
        return (w, r) => {
          const v = get(r);
          if (typeof v === 'boolean') w.boolField(v);
          else if (v === null || v === undefined) absent(w, r);
          else cannot(v, r);
        };
      case 'timestamptz':
        // µs since 2000-01-01 UTC, of whole ms (as a Date holds them), within a Date's range.
        return (w, r) => {
          const v = get(r);
          if (typeof v === 'number' && Number.isFinite(v) && Math.abs(v) <= 8.64e15) {
            const us = (Math.trunc(v) - PG_EPOCH_MS) * 1000;
            w.int64(Number.isSafeInteger(us) ? us : BigInt(Math.trunc(v) - PG_EPOCH_MS) * 1000n);
          } else if (v === null || v === undefined) absent(w, r);
          else cannot(v, r);
        };
      case 'jsonb':
        return (w, r) => {
          const v = get(r);
          if (v === null || v === undefined) return absent(w, r);
          const json = JSON.stringify(v) as string | undefined;
          if (json === undefined) cannot(v, r);
          else w.text(json, 1);
        };
    }
  }

  /** True when every column of `t` has the type the binary rows are made for (a table made by Tidemark, or alike). */
  private takesRowsAsIs(t: Target): boolean {
    const have = this.existing.get(t.table);
    return this.columns.every((k) => BINARY_SAME[k.type].includes(have?.get(k.name) ?? ''));
  }

  // ---------------------------------------------------------------------------------------------
  // Connection and tables

  /** Connects, retrying a lost or refused connection with backoff; a refusal that will not change throws. */
  private async connect(atStart: boolean): Promise<pgModule.Client> {
    await loadPg();
    for (;;) {
      if (this.client) return this.client;
      if (this.closing) throw new TidemarkError('SINK_FAILED', `${this.shown}: closed`);
      const c = new pg.Client({ connectionString: this.spec.url, connectionTimeoutMillis: 10_000, keepAlive: true, application_name: `tidemark-${this.job}` });
      c.on('error', (e) => {
        // An idle connection that drops: the next query reconnects.
        if (this.client === c) this.client = undefined;
        this.log?.debug({ err: e.message, sink: this.shown, role: this.role }, 'PostgreSQL connection error');
      });
      try {
        await c.connect();
        this.client = c;
        if (!atStart) await this.reloadColumns(c);
        return c;
      } catch (e) {
        await c.end().catch(() => undefined);
        if (!isTransient(e)) throw this.explain(e);
        this.outage(e, atStart ? 'at start' : 'reconnecting');
        await sleep(this.backoff());
      }
    }
  }

  /** One clear line for a connection the server refuses. */
  private explain(e: unknown): TidemarkError {
    if (e instanceof TidemarkError) return e;
    const err = e as Error & { code?: string };
    const at = `${this.flag} ${this.shown}`;
    let u: URL | undefined;
    try {
      u = new URL(this.spec.url);
    } catch {
      u = undefined;
    }
    const user = decodeURIComponent(u?.username ?? '') || process.env.PGUSER || '(the OS user)';
    const db = decodeURIComponent(u?.pathname.slice(1) ?? '');
    if (err.code === '28P01') return new TidemarkError('BAD_CONFIG', `${at}: password authentication failed for user "${user}" (check the password in the URL or in PGPASSWORD)`);
    if (err.code === '3D000') return new TidemarkError('BAD_CONFIG', `${at}: database "${db}" does not exist (create it first: createdb ${db})`);
    if (err.code === '28000') return new TidemarkError('BAD_CONFIG', `${at}: the server refuses user "${user}": ${err.message}`);
    if (err.code === 'ENOTFOUND') return new TidemarkError('BAD_CONFIG', `${at}: host "${u?.hostname ?? ''}" not found`);
    if (/password must be a string|no password/i.test(err.message)) return new TidemarkError('BAD_CONFIG', `${at}: the server asks for a password and none was given (put it in the URL or in PGPASSWORD)`);
    if (err.code === '42501') return new TidemarkError('BAD_CONFIG', `${at}: permission denied (${err.message}); the user needs CREATE on the schema, INSERT, UPDATE and DELETE on the tables`);
    return new TidemarkError('SINK_FAILED', `${at}: ${err.message}`);
  }

  private outage(e: unknown, what: string): void {
    const reason = e instanceof Error ? e.message || (e as { code?: string }).code || String(e) : String(e);
    const first = this.outageSince === undefined;
    this.outageSince ??= Date.now();
    const held = this.epochs.filter((x) => x.closed).length;
    this.log?.warn(
      { sink: this.shown, role: this.role, reason, since: new Date(this.outageSince).toISOString(), checkpointsWaiting: held, what },
      `PostgreSQL ${this.shown} unavailable (${reason})${first ? '' : ` for ${Math.round((Date.now() - this.outageSince) / 1000)} s`}: checkpoints wait for it; retrying with backoff`,
    );
  }

  private async reloadColumns(c: pgModule.Client): Promise<void> {
    const { rows } = await c.query<{ table_name: string; column_name: string; data_type: string }>(
      'SELECT table_name, column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ANY($1)',
      [this.targets.map((t) => t.table)],
    );
    this.existing = new Map(this.targets.map((t) => [t.table, new Map<string, string>()]));
    for (const r of rows) this.existing.get(r.table_name)?.set(r.column_name, r.data_type);
    this.appliedVersion = -1;
  }

  /** Creates the tables when missing and checks the shape of those that exist. */
  private async prepareTables(c: pgModule.Client): Promise<void> {
    const ddl = (t: Target): string => {
      const cols = [...this.base.map((k) => `${q(k.name)} ${k.type}${k.notNull ? ' NOT NULL' : ''}`), `${q('updated_at')} timestamptz NOT NULL DEFAULT now()`];
      return `CREATE TABLE IF NOT EXISTS ${t.table} (${cols.join(', ')}, PRIMARY KEY (${t.conflict.map(q).join(', ')}))`;
    };
    const creates = [...this.targets.map(ddl), `CREATE TABLE IF NOT EXISTS ${this.progressTable} (job text NOT NULL, sink text NOT NULL, checkpoint_id bigint NOT NULL, updated_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (job, sink))`];
    for (const sql of creates) {
      try {
        await c.query(sql);
      } catch (e) {
        // Two jobs creating the same tables at once: the loser sees a duplicate type; the table is there.
        if ((e as { code?: string }).code !== '23505') throw this.explain(e);
      }
    }
    await this.reloadColumns(c);
    for (const t of this.targets) {
      const have = this.existing.get(t.table)!;
      for (const [name, type] of have) {
        const want = KNOWN_COLUMNS[name] ?? (name === 'updated_at' ? 'timestamptz' : undefined);
        if (want && !COMPATIBLE[want].includes(type)) throw this.shape(t.table, `column ${name} is ${type}, not ${want}`);
      }
      for (const k of this.base) if (!have.has(k.name)) throw this.shape(t.table, `it has no column ${k.name}`);
      const { rows } = await c.query<{ cols: string[] }>(
        `SELECT array_agg(a.attname::text ORDER BY a.attname) AS cols FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)
         WHERE i.indrelid = to_regclass($1) AND i.indisunique GROUP BY i.indexrelid`,
        [t.table],
      );
      const want = [...t.conflict].sort().join(',');
      if (!rows.some((r) => r.cols.join(',') === want)) throw this.shape(t.table, `it has no primary key or unique index on (${t.conflict.join(', ')})`);
    }
    const { rows } = await c.query<{ column_name: string; data_type: string }>('SELECT column_name, data_type FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = $1', [this.progressTable]);
    const progress = new Map(rows.map((r) => [r.column_name, r.data_type]));
    if (progress.get('checkpoint_id') === undefined || !['bigint', 'integer', 'numeric'].includes(progress.get('checkpoint_id')!) || !progress.has('job') || !progress.has('sink')) {
      throw this.shape(this.progressTable, 'it lacks job, sink or an integer checkpoint_id');
    }
  }

  private shape(table: string, what: string): TidemarkError {
    return new TidemarkError('BAD_CONFIG', `${this.flag} ${this.shown}: table ${table} exists with an incompatible shape (${what}); fix or drop it, or use ?prefix=NAME for tables of their own`);
  }

  /** Columns added since the last batch: ALTER the tables, rebuild the staging table (inside the open transaction). */
  private async syncSchema(c: pgModule.Client): Promise<void> {
    if (this.appliedVersion === this.schemaVersion) return;
    // What this change covers, fixed before the await: a column discovered while the ALTER runs is
    // another version, applied by the caller's next round (recording it here would let a COPY name a
    // column the tables do not have yet).
    const version = this.schemaVersion;
    const extra = [...this.extra];
    const columns = this.columns;
    const stmts: string[] = [];
    for (const t of this.targets) {
      const have = this.existing.get(t.table)!;
      for (const x of extra) if (!have.has(x.name)) stmts.push(`ALTER TABLE ${t.table} ADD COLUMN IF NOT EXISTS ${q(x.name)} ${x.type}`);
    }
    stmts.push(`DROP TABLE IF EXISTS pg_temp.${this.stage}`, `CREATE TEMP TABLE ${this.stage} (${columns.map((k) => `${q(k.name)} ${k.type}`).join(', ')})`);
    await c.query(stmts.join(';\n'));
    for (const t of this.targets) for (const x of extra) this.existing.get(t.table)!.set(x.name, x.type);
    this.appliedVersion = version;
  }

  /**
   * Writes a batch (its rows ordered by id, so the inserts into the primary keys' indexes are near
   * one another, not spread over them). Fast path, when this epoch has met no existing row: rows no
   * earlier write can have made are COPYed straight into their tables — every revision into the
   * revisions table (its id names the revision), every late record and dead letter, and a window's
   * revision 0 into the current-value table; a row that is there after all (a replay after a crash)
   * makes the COPY fail with a unique violation, and the epoch is written again with `safe`. The
   * higher revisions for the current-value table (and all rows of a safe epoch, and all rows for a
   * table whose column types differ from ours) go through the staging table and INSERT … ON CONFLICT.
   * The column list and the rows are fixed before the first await: a new column meanwhile cannot
   * change what a statement names (it makes the epoch's later batches anew).
   */
  private async sendBatch(c: pgModule.Client, ep: Epoch, b: Batch, safe: boolean): Promise<void> {
    const cols = this.columns.map((k) => q(k.name)).join(', ');
    // One statement at a time: pg deprecates queueing a query behind another.
    const steps: Array<() => Promise<unknown>> = [];
    const copy = (table: string, rows: Buffer[]): void => {
      const chunks = [COPY_HEADER, ...rows.filter((x) => x.length > 0), COPY_TRAILER];
      steps.push(() => pipeline(Readable.from(chunks), c.query(copyFrom(`COPY ${table} (${cols}) FROM STDIN (FORMAT binary)`))));
    };
    const fresh = b.fresh.data;
    const later = b.later.data;
    let staged: Buffer[];
    let stagedRecords: readonly OutRecord[];
    let upsert: Target[];
    if (!safe && this.targets.every((t) => this.takesRowsAsIs(t))) {
      for (const t of this.targets) {
        if (t.onConflict === 'keep') copy(t.table, [fresh, later]);
        else if (fresh.length) copy(t.table, [fresh]);
      }
      staged = later.length ? [later] : [];
      stagedRecords = b.laterRecords;
      upsert = this.targets.filter((t) => t.onConflict === 'replace');
    } else {
      staged = [fresh, later];
      stagedRecords = b.order.map((i) => ep.records[i]!);
      upsert = this.targets;
    }
    if (staged.length && upsert.length) {
      copy(this.stage, staged);
      const unique = this.role !== 'results' || windowsUnique(stagedRecords);
      const stmts: string[] = [];
      for (const t of upsert) {
        const key = t.conflict.map(q).join(', ');
        if (t.onConflict === 'keep') stmts.push(`INSERT INTO ${t.table} (${cols}) SELECT ${cols} FROM ${this.stage} ON CONFLICT (${key}) DO NOTHING`);
        else {
          const set = [...this.columns.filter((k) => !t.conflict.includes(k.name)).map((k) => `${q(k.name)} = EXCLUDED.${q(k.name)}`), `${q('updated_at')} = now()`].join(', ');
          stmts.push(
            // Two revisions of one window in a batch: only the highest may reach the upsert (a row is
            // affected once per statement).
            `INSERT INTO ${t.table} AS t (${cols}) SELECT ${unique ? '' : `DISTINCT ON (${key}) `}${cols} FROM ${this.stage}${unique ? '' : ` ORDER BY ${key}, ${q('revision')} DESC`} ` +
              `ON CONFLICT (${key}) DO UPDATE SET ${set} WHERE EXCLUDED.${q('revision')} > t.${q('revision')}`,
          );
        }
      }
      stmts.push(`TRUNCATE ${this.stage}`);
      const sql = stmts.join(';\n');
      steps.push(() => c.query(sql));
    }
    for (const step of steps) await step();
  }

  // ---------------------------------------------------------------------------------------------
  // The writer: one epoch at a time, in checkpoint order

  private kick(): void {
    if (this.pumping || this.fatal || this.closing) return;
    this.pumping = this.pump().finally(() => {
      this.pumping = undefined;
      const head = this.epochs[0]!;
      if (head.closed || head.sent < head.records.length) this.kick();
    });
  }

  private async pump(): Promise<void> {
    while (!this.closing && !this.fatal) {
      const ep = this.epochs[0]!;
      if (ep.records.length === ep.sent && !ep.closed) return;
      try {
        const c = await this.connect(false);
        if (this.outageSince !== undefined) {
          this.log?.info({ sink: this.shown, role: this.role, downMs: Date.now() - this.outageSince, checkpointsWaiting: this.epochs.filter((x) => x.closed).length }, `PostgreSQL ${this.shown} reachable again after ${Math.round((Date.now() - this.outageSince) / 1000)} s: writing the waiting checkpoints`);
          this.outageSince = undefined;
        }
        if (this.txClient !== c) {
          // A transaction lost with its connection (an idle connection can drop between batches):
          // what it held is gone, and the epoch is written again from its first record.
          if (ep.sent > 0) {
            this.resend(ep);
            this.log?.debug({ sink: this.shown, role: this.role, checkpoint: ep.cp ?? null }, 'the open transaction was lost with its connection: writing this checkpoint again');
          }
          const reset = this.resetPending ? this.targets.map((t) => `DELETE FROM ${t.table} WHERE job = ${pg.escapeLiteral(this.job)}`) : [];
          await c.query(['BEGIN', ...reset].join(';\n'));
          this.txClient = c;
        }
        // Counted here, after a lost transaction has put the epoch's records back to send.
        if (ep.records.length > ep.sent) {
          // Columns added while the schema was being changed are added too before the batch is made.
          while (this.appliedVersion !== this.schemaVersion) await this.syncSchema(c);
          const b = this.nextBatch(ep);
          const n = b.to - b.from;
          const sending = this.sendBatch(c, ep, b, ep.safe === true);
          // The next batch is cut and encoded while the database works on this one.
          this.encodeLater();
          await sending;
          if (ep.batches[0] === b) ep.batches.shift();
          ep.sent += n;
          this.unsent -= n;
          faultPoint('postgres-batch-written');
          this.releaseWaiters(false);
          continue;
        }
        faultPoint('postgres-before-commit');
        await c.query(
          `INSERT INTO ${this.progressTable} (job, sink, checkpoint_id, updated_at) VALUES (${pg.escapeLiteral(this.job)}, ${pg.escapeLiteral(this.role)}, ${ep.cp!}, now()) ` +
            `ON CONFLICT (job, sink) DO UPDATE SET checkpoint_id = EXCLUDED.checkpoint_id, updated_at = now();\nCOMMIT`,
        );
        this.txClient = undefined;
        this.resetPending = false;
        this.committed += ep.records.length;
        this.epochs.shift();
        faultPoint('postgres-after-commit');
        ep.resolve?.({ checkpoint: ep.cp! });
      } catch (e) {
        this.txClient = undefined;
        if (this.closing) return;
        if ((e as { code?: string }).code === '23505' && !ep.safe) {
          // A plain COPY met a row that is there (a replay): this epoch again, with ON CONFLICT.
          this.log?.debug({ sink: this.shown, role: this.role, checkpoint: ep.cp ?? null }, 'rows already in PostgreSQL: writing this checkpoint again with ON CONFLICT');
          ep.safe = true;
          this.resend(ep);
          const c = this.client;
          // The rollback also undid this transaction's staging table and added columns: look again.
          const rolledBack = c ? await c.query('ROLLBACK').then(() => this.reloadColumns(c)).then(() => true, () => false) : false;
          if (rolledBack) continue;
          e = Object.assign(new Error('Connection terminated during ROLLBACK'), { code: '08006' });
        }
        if (!isTransient(e)) {
          this.fail(e);
          return;
        }
        // The transaction is gone: the epoch is written again from its first record.
        const c = this.client;
        this.client = undefined;
        void c?.end().catch(() => undefined);
        this.resend(ep);
        this.outage(e, 'writing');
        await sleep(this.backoff());
      }
    }
  }

  /** The transaction that held `ep`'s records sent so far is gone: they are sent again, from the first. */
  private resend(ep: Epoch): void {
    this.unsent += ep.sent;
    ep.sent = 0;
    ep.batches = [];
  }

  private fail(e: unknown): void {
    const err = e instanceof TidemarkError ? e : this.explain(e);
    this.fatal = err;
    this.log?.error({ sink: this.shown, role: this.role, err: err.message }, `PostgreSQL sink failed: ${err.message}`);
    for (const ep of this.epochs) ep.reject?.(err);
    this.releaseWaiters(true);
    const c = this.client;
    this.client = undefined;
    void c?.end().catch(() => undefined);
  }

  private releaseWaiters(all: boolean): void {
    if (!all && this.unsent > HIGH_WATER / 2) return;
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const f of w) f();
  }

  private rejected(e: Error): Promise<SinkProgress> {
    const p = Promise.reject(e);
    p.catch(() => undefined);
    return p;
  }
}
