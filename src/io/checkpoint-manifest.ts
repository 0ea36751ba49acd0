// The checkpoint manifest: one small append-only file beside the LevelDB directory that records
// each checkpoint (id, input sequence, entry count, content hash, hash of its metadata) after its
// LevelDB batch is written, and each one pruned. LevelDB drops damaged write-ahead-log records
// without a word and cannot list what a lost table file held; this file says what should be
// there, so damage that erases the newest checkpoint is reported instead of silently restoring an
// older one. Every line carries its own checksum; each append is fsynced.

import { existsSync, readFileSync, renameSync, openSync, writeSync, fsyncSync, closeSync, rmSync } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';

/** What the manifest knows of one checkpoint. */
export interface ManifestEntry {
  id: number;
  seq: number;
  entries: number;
  /** Content hash of the checkpoint's own entries (as in its metadata). */
  hash: number;
  /** FNV-1a of the metadata's stored bytes. */
  metaHash: number;
  parent: number;
  full: boolean;
  time: number;
  savepoint?: string;
}

type Line = ({ op: 'add' } & ManifestEntry) | { op: 'drop'; id: number };

/** FNV-1a of a string's UTF-16 code units: a line's checksum. */
function lineSum(s: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) {
    h ^= s.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return (h >>> 0).toString(16).padStart(8, '0');
}

const format = (l: Line): string => {
  const body = JSON.stringify(l);
  return `${lineSum(body)} ${body}\n`;
};

export class CheckpointManifest {
  /** Live checkpoints by id. */
  readonly live = new Map<number, ManifestEntry>();
  /** Ids recorded as pruned since the file was last rewritten. */
  readonly dropped = new Set<number>();
  /** Lines that failed their checksum (1-based line numbers); a torn last line is not counted. */
  readonly damagedLines: number[] = [];
  /** The highest id the manifest has ever named (live or dropped). */
  maxId = 0;
  private lines = 0;

  private constructor(
    readonly path: string,
    /** False when the file did not exist: the state predates manifests (or it was removed). */
    readonly existed: boolean,
    private fh: FileHandle,
  ) {}

  /** Reads the manifest at `path` (creating an empty one) and opens it for appending. */
  static async open(path: string): Promise<CheckpointManifest> {
    const existed = existsSync(path);
    const text = existed ? readFileSync(path, 'utf8') : '';
    const m = new CheckpointManifest(path, existed, await open(path, 'a'));
    const rows = text.split('\n');
    const torn = !text.endsWith('\n') && text.length > 0;
    rows.forEach((row, i) => {
      if (row === '') return;
      const sp = row.indexOf(' ');
      const body = row.slice(sp + 1);
      let line: Line | undefined;
      if (sp === 8 && lineSum(body) === row.slice(0, 8)) {
        try {
          line = JSON.parse(body) as Line;
        } catch {
          line = undefined;
        }
      }
      // The last line of a file cut short by a crash mid-append is expected, not damage.
      if (!line || typeof line.id !== 'number') {
        if (!(torn && i === rows.length - 1)) m.damagedLines.push(i + 1);
        return;
      }
      m.apply(line);
    });
    // A torn last line would glue onto the next append: end it first.
    if (torn) await m.fh.write('\n');
    return m;
  }

  private apply(line: Line): void {
    this.lines++;
    this.maxId = Math.max(this.maxId, line.id);
    if (line.op === 'add') {
      const { op: _op, ...entry } = line;
      this.live.set(line.id, entry);
      this.dropped.delete(line.id);
    } else {
      this.live.delete(line.id);
      this.dropped.add(line.id);
    }
  }

  /** Records checkpoints as written (durably: fsynced before it resolves). */
  async add(entries: ManifestEntry[]): Promise<void> {
    await this.append(entries.map((e) => ({ op: 'add', ...e })));
  }

  /** Records checkpoints as pruned; rewrites the file when pruned lines dominate it. */
  async drop(ids: number[]): Promise<void> {
    if (ids.length === 0) return;
    await this.append(ids.map((id) => ({ op: 'drop', id })));
    if (this.lines > 64 && this.lines > 4 * this.live.size) await this.rewrite();
  }

  private async append(lines: Line[]): Promise<void> {
    if (lines.length === 0) return;
    await this.fh.write(lines.map(format).join(''));
    await this.fh.datasync();
    for (const l of lines) this.apply(l);
  }

  /** Rewrites the file with only the live checkpoints (temp file, fsync, rename, fsync the directory). */
  private async rewrite(): Promise<void> {
    const tmp = `${this.path}.tmp`;
    const fd = openSync(tmp, 'w');
    try {
      // The highest id is kept as a drop line when it is not live, so ids are never reused.
      const rows: Line[] = [...this.live.values()].sort((a, b) => a.id - b.id).map((e) => ({ op: 'add', ...e }));
      if (!this.live.has(this.maxId) && this.maxId > 0) rows.push({ op: 'drop', id: this.maxId });
      writeSync(fd, rows.map(format).join(''));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    await this.fh.close();
    renameSync(tmp, this.path);
    const dirFd = openSync(dirname(this.path), 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
    this.fh = await open(this.path, 'a');
    this.lines = this.live.size + (this.live.has(this.maxId) ? 0 : 1);
    this.dropped.clear();
  }

  /** Forgets every checkpoint (`--reset-state`). */
  async clear(): Promise<void> {
    await this.fh.close();
    rmSync(this.path, { force: true });
    this.fh = await open(this.path, 'a');
    this.live.clear();
    this.dropped.clear();
    this.damagedLines.length = 0;
    this.maxId = 0;
    this.lines = 0;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}
