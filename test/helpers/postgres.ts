// Test helpers: one real PostgreSQL server per test file (Debian's binaries, initdb/pg_ctl in a
// scratch directory on a free 127.0.0.1 port, as the postgres user when we are root), stopped and
// removed at teardown; and the tables read back in the shape of the JSON records.

import type pg from 'pg';
import { EmbeddedPostgres } from '../../src/io/postgres-server.js';

export { EmbeddedPostgres };

/** Starts a server with a `tidemark` database for this test file; removed at teardown. */
export async function postgresFixture(t: { teardown(fn: () => unknown): void }): Promise<EmbeddedPostgres> {
  const server = await EmbeddedPostgres.start();
  t.teardown(() => server.remove());
  await server.createDatabase('tidemark');
  return server;
}

type Row = Record<string, unknown>;

const camel = (s: string): string => s.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());

/**
 * A table row as the JSON record it came from: snake_case back to camelCase, window_start and
 * window_end back to `window`, timestamps back to ms; `updated_at` dropped, and `job` dropped
 * unless the record carried one (results do, late records and dead letters do not).
 */
export function rowToRecord(row: Row, keepJob: boolean): Row {
  const out: Row = {};
  for (const [k, v] of Object.entries(row)) {
    if (k === 'updated_at' || (k === 'job' && !keepJob) || v === null && k !== 'watermark') continue;
    const val = v instanceof Date ? v.getTime() : v;
    if (k === 'window_start') out.window = { ...(out.window as Row | undefined), start: val };
    else if (k === 'window_end') out.window = { ...(out.window as Row | undefined), end: val };
    else if (k === 'seq') out.seq = Number(val);
    else out[camel(k)] = val;
  }
  return out;
}

export interface Tables {
  windows: Row[];
  revisions: Row[];
  late: Row[];
  dead: Row[];
  progress: Array<{ sink: string; checkpoint_id: string }>;
}

const byId = (a: Row, b: Row): number => (String(a.id) < String(b.id) ? -1 : String(a.id) > String(b.id) ? 1 : 0);

/** Reads every Tidemark table of `job` (missing tables read as empty). */
export async function readTables(server: EmbeddedPostgres, job: string, prefix = 'tidemark_', database = 'tidemark'): Promise<Tables> {
  const c: pg.Client = await server.client(database);
  try {
    const read = async (table: string, keepJob: boolean): Promise<Row[]> => {
      const exists = await c.query('SELECT to_regclass($1) AS r', [`${prefix}${table}`]);
      if (exists.rows[0].r === null) return [];
      const { rows } = await c.query<Row>(`SELECT * FROM ${prefix}${table} WHERE job = $1`, [job]);
      return rows.map((r) => rowToRecord(r, keepJob)).sort(byId);
    };
    const progressExists = (await c.query('SELECT to_regclass($1) AS r', [`${prefix}progress`])).rows[0].r !== null;
    return {
      windows: await read('windows', true),
      revisions: await read('windows_revisions', true),
      late: await read('late', false),
      dead: await read('dead_letters', false),
      progress: progressExists ? (await c.query(`SELECT sink, checkpoint_id FROM ${prefix}progress WHERE job = $1 ORDER BY sink`, [job])).rows : [],
    };
  } finally {
    await c.end();
  }
}

/** The last revision of every window among `results` (what the current-value table must hold). */
export function lastRevisions<T extends { id: string; key: string; window: { start: number; end: number }; revision: number }>(results: readonly T[]): T[] {
  const best = new Map<string, T>();
  for (const r of results) {
    const k = `${r.key}\u0000${r.window.start}\u0000${r.window.end}`;
    const b = best.get(k);
    if (!b || r.revision > b.revision) best.set(k, r);
  }
  return [...best.values()].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
}

/** Sorted by id, for comparisons. */
export const sortById = <T extends { id: string }>(xs: readonly T[]): T[] => [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
