// Result rows/s into PostgreSQL: the PostgreSQL sink (exactly once: every row COPYed into the
// revisions table and the current-value table, one transaction per checkpoint with its progress
// row), beside the JSONL sink on the same records, and beside two bare COPYs of the same rows (the
// same COPY data, made by the same code) by the same client: into a plain table without keys, in one
// transaction; and into two tables of the sink's columns, defaults and primary keys, committed per
// checkpoint, which is the database work the sink's contract asks for and nothing else — all in this
// run, against one PostgreSQL server of its own (fsync on).

import { join } from 'node:path';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { pathToFileURL } from 'node:url';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { from as copyFrom } from 'pg-copy-streams';
import { EmbeddedPostgres } from '../src/io/postgres-server.js';
import { PostgresSink } from '../src/io/postgres-sink.js';
import { parsePostgresSpec } from '../src/io/postgres-url.js';
import { JsonlSink, type OutRecord, type Sink } from '../src/io/sinks.js';
import { resultRecord, type ResultRecord } from '../src/runtime/records.js';
import { WORKLOAD_EPOCH } from './workload.js';

/** Bytes of a COPY binary stream's header (signature, flags, extension length). */
const COPY_HEADER_BYTES = 19;

export interface PostgresOutcome {
  method: string;
  /** result records written (one per window: a watermark step firing them all) */
  rows: number;
  /** checkpoints (snapshot → commit) taken during the write */
  checkpoints: number;
  sinkRowsPerSec: number;
  jsonlRowsPerSec: number;
  /** the same rows by a bare COPY into a table without keys, one transaction */
  bareCopyRowsPerSec: number;
  /** the same rows by bare COPYs into two tables shaped as the sink's (columns, defaults, primary keys), ordered by id per checkpoint's rows, one transaction per checkpoint */
  bareCopyKeyedRowsPerSec: number;
  ratioToBareCopy: number;
  ratioToBareCopyKeyed: number;
  ratioToJsonl: number;
  /** rows the tables hold afterwards: every revision once, one current row per window */
  revisionsRows: number;
  windowsRows: number;
  /** the same records written a second time (a replay after a crash): rows/s, and the tables unchanged */
  replayRowsPerSec: number;
  replayChangedRows: number;
  postgresVersion: string;
}

/** `n` window results as a watermark step firing `n` windows produces them: 1000 keys × n/1000 minutes. */
export function resultRows(n: number): ResultRecord[] {
  const out: ResultRecord[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const key = `#topic${i % 1000}`;
    const start = WORKLOAD_EPOCH + Math.floor(i / 1000) * 60_000;
    const count = 1 + (i % 37);
    const neg = i % 5;
    const pos = Math.min(count - neg, i % 11);
    out[i] = resultRecord('bench', key, { start, end: start + 60_000 }, { count, positive: pos, negative: neg, neutral: count - pos - neg, scoreSum: pos * 2 - neg * 3, avgScore: (pos * 2 - neg * 3) / count }, 0, true, start + 65_000);
  }
  return out;
}

/** Writes `rows` through a sink as the sink actor does: slices of 500, a snapshot every `every` rows, then flush. */
async function drive(sink: Sink, rows: readonly OutRecord[], every: number): Promise<{ ms: number; checkpoints: number }> {
  const t0 = performance.now();
  const snaps: Promise<unknown>[] = [];
  let cp = 0;
  for (let i = 0; i < rows.length; i += 500) {
    await sink.write(rows.slice(i, i + 500));
    if ((i + 500) % every === 0) snaps.push(sink.snapshot(++cp));
  }
  snaps.push(sink.snapshot(++cp));
  await Promise.all(snaps);
  await sink.flush();
  return { ms: performance.now() - t0, checkpoints: cp };
}

export async function runPostgres(o: { rows: number; workDir: string; onProgress?: (f: number, label: string) => void }): Promise<PostgresOutcome> {
  const rows = resultRows(o.rows);
  const every = 20_000;
  o.onProgress?.(0.05, 'starting PostgreSQL');
  const server = await EmbeddedPostgres.start({ fsync: true });
  try {
    await server.createDatabase('bench');
    const spec = parsePostgresSpec(server.url('bench'), '--sink');
    const c = await server.client('bench');
    const postgresVersion = String((await c.query('SHOW server_version')).rows[0].server_version);

    o.onProgress?.(0.2, `${o.rows} results into the PostgreSQL sink`);
    const sink = new PostgresSink(spec, 'results', 'bench');
    await sink.open(undefined);
    const run = await drive(sink, rows, every);
    const count = async (table: string): Promise<number> => Number((await c.query(`SELECT count(*) AS n FROM ${table}`)).rows[0].n);
    const revisionsRows = await count('tidemark_windows_revisions');
    const windowsRows = await count('tidemark_windows');
    const columns = sink.copyColumns;

    // A replay of the same records (what a restart after kill -9 rewrites): nothing may change.
    o.onProgress?.(0.45, 'the same results again (replay)');
    // As text: the client's Date has ms, PostgreSQL µs.
    const before = String((await c.query('SELECT max(updated_at)::text AS t FROM tidemark_windows')).rows[0].t);
    const replay = await drive(sink, rows, every);
    const changed = Number((await c.query('SELECT count(*) AS n FROM tidemark_windows WHERE updated_at > $1::timestamptz', [before])).rows[0].n);
    const replayRevisions = await count('tidemark_windows_revisions');
    await sink.close();

    o.onProgress?.(0.65, `${o.rows} results into the JSONL sink`);
    const dir = join(o.workDir, 'pg-bench');
    mkdirSync(dir, { recursive: true });
    const jsonl = new JsonlSink(join(dir, 'results.jsonl'));
    await jsonl.open(undefined);
    const j = await drive(jsonl, rows, every);
    await jsonl.close();
    rmSync(dir, { recursive: true, force: true });

    // Bare COPY: the same COPY data (binary, as the sink sends it, encoded in the timed section by the
    // same code) into a plain table. A COPY binary stream has one header and one trailer: the chunks
    // are cut out of their own streams.
    o.onProgress?.(0.8, `bare COPY of ${o.rows} rows`);
    await c.query(`CREATE TABLE bare_copy (${columns.map((k) => `"${k.name}" ${k.type}`).join(', ')})`);
    const encoder = new PostgresSink(spec, 'results', 'bench');
    encoder.observe(rows);
    const t0 = performance.now();
    await c.query('BEGIN');
    const chunks = function* (): Generator<Buffer> {
      for (let i = 0; i < rows.length; i += every) {
        const data = encoder.copyData(rows.slice(i, i + every));
        yield data.subarray(i === 0 ? 0 : COPY_HEADER_BYTES, i + every >= rows.length ? data.length : data.length - 2);
      }
    };
    await pipeline(Readable.from(chunks()), c.query(copyFrom(`COPY bare_copy (${columns.map((k) => `"${k.name}"`).join(', ')}) FROM STDIN (FORMAT binary)`)));
    await c.query('COMMIT');
    const bareMs = performance.now() - t0;
    const bareRows = await count('bare_copy');

    // Bare COPY into the sink's shape: two tables LIKE the sink's (columns, defaults, primary keys),
    // each checkpoint's rows ordered by id (as the sink orders them) and COPYed into both, then
    // committed — the sink's database work without its bookkeeping (no progress row, no staging).
    o.onProgress?.(0.9, `bare COPY of ${o.rows} rows into two keyed tables`);
    const keyed = ['bare_revisions', 'bare_windows'];
    await c.query(`CREATE TABLE bare_revisions (LIKE tidemark_windows_revisions INCLUDING ALL); CREATE TABLE bare_windows (LIKE tidemark_windows INCLUDING ALL)`);
    const copyInto = (table: string, data: Buffer): Promise<void> => pipeline(Readable.from([data]), c.query(copyFrom(`COPY ${table} (${columns.map((k) => `"${k.name}"`).join(', ')}) FROM STDIN (FORMAT binary)`)));
    const t1 = performance.now();
    for (let i = 0; i < rows.length; i += every) {
      const part = rows.slice(i, i + every).sort((a, b) => (a.id < b.id ? -1 : 1));
      const data = encoder.copyData(part);
      await c.query('BEGIN');
      for (const table of keyed) await copyInto(table, data);
      await c.query('COMMIT');
    }
    const keyedMs = performance.now() - t1;
    const keyedRows = [await count('bare_revisions'), await count('bare_windows')];
    await c.end();
    if (bareRows !== o.rows) throw new Error(`benchmarks: the bare COPY stored ${bareRows} of ${o.rows} rows`);
    if (keyedRows.some((n) => n !== o.rows)) throw new Error(`benchmarks: the keyed bare COPY stored ${keyedRows.join(' and ')} of ${o.rows} rows`);
    if (replayRevisions !== revisionsRows) throw new Error(`benchmarks: the replay changed the revisions table (${revisionsRows} → ${replayRevisions} rows)`);

    const rate = (ms: number): number => Math.round((o.rows / ms) * 1000);
    const sinkRowsPerSec = rate(run.ms);
    const jsonlRowsPerSec = rate(j.ms);
    const bareCopyRowsPerSec = rate(bareMs);
    const bareCopyKeyedRowsPerSec = rate(keyedMs);
    return {
      method:
        'in process, one PostgreSQL 15 of its own (fsync on): N window results (1000 keys × N/1000 minutes) written as the sink actor does (slices of 500, a checkpoint every 20,000 rows, each committed with its progress row), first write to last commit; the JSONL sink on the same records (fdatasync per checkpoint); bare COPYs of the same COPY data (binary, made by the same code in the timed section) by the same client: into a table without keys, one transaction; and into two tables LIKE the sink\'s (columns, defaults, primary keys), each 20,000 rows ordered by id, COPYed into both and committed',
      rows: o.rows,
      checkpoints: run.checkpoints,
      sinkRowsPerSec,
      jsonlRowsPerSec,
      bareCopyRowsPerSec,
      bareCopyKeyedRowsPerSec,
      ratioToBareCopy: sinkRowsPerSec / bareCopyRowsPerSec,
      ratioToBareCopyKeyed: sinkRowsPerSec / bareCopyKeyedRowsPerSec,
      ratioToJsonl: sinkRowsPerSec / jsonlRowsPerSec,
      revisionsRows,
      windowsRows,
      replayRowsPerSec: rate(replay.ms),
      replayChangedRows: changed,
      postgresVersion,
    };
  } finally {
    await server.remove();
  }
}

// `node dist/benchmarks/postgres.js [--rows N]` (after `npm run build`): this phase alone, its
// outcome as JSON on stdout (with the 1-minute load average before and after).
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const argv = process.argv.slice(2);
  let rows = 100_000;
  for (let i = 0; i < argv.length; i++) {
    const v = argv[i + 1];
    if (argv[i] === '--rows' && v !== undefined && /^\d+$/.test(v) && Number(v) >= 1) rows = Number(argv[++i]);
    else {
      process.stderr.write(`${argv[i]}: unknown option or bad value; accepted: --rows N (a whole number ≥ 1)\n`);
      process.exit(2);
    }
  }
  const workDir = mkdtempSync(join(tmpdir(), 'tidemark-pgbench-'));
  const load1mBefore = loadavg()[0] ?? 0;
  runPostgres({ rows, workDir }).then(
    (r) => {
      rmSync(workDir, { recursive: true, force: true });
      process.stdout.write(JSON.stringify({ ...r, load1mBefore, load1mAfter: loadavg()[0] ?? 0 }, null, 2) + '\n');
    },
    (e: unknown) => {
      rmSync(workDir, { recursive: true, force: true });
      process.stderr.write(`postgres benchmark failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}
