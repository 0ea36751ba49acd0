// Checks LevelDB's table files (.ldb) against the CRC32C that LevelDB stores with every block.
// classic-level reads and compacts tables without verifying those checksums (it does not expose
// LevelDB's paranoid_checks / verify_checksums), so a flipped bit in a table is read as data: a
// garbled key can then trip an assertion in LevelDB's compaction or repair and abort the process.
// Reading every block's checksum first turns that into a report naming the file.
//
// Format (LevelDB's doc/table_format.md): blocks, each followed by a 5-byte trailer (compression
// type, masked CRC32C of contents + type); a 48-byte footer at the end with the metaindex and index
// block handles and a magic number. The index block maps keys to data-block handles.

import { openSync, readSync, fstatSync, closeSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

const MAGIC_LO = 0x8b80fb57;
const MAGIC_HI = 0xdb477524;
const FOOTER = 48;
const TRAILER = 5;

const CRC_TABLE = (() => {
  const t = new Int32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    t[i] = c;
  }
  return t;
})();

/** CRC32C (Castagnoli) of `b[from, to)`. */
export function crc32c(b: Uint8Array, from = 0, to = b.length): number {
  let c = ~0;
  for (let i = from; i < to; i++) c = CRC_TABLE[(c ^ b[i]!) & 0xff]! ^ (c >>> 8);
  return ~c >>> 0;
}

/** LevelDB stores checksums masked (a CRC of data that holds CRCs is otherwise weak). */
const unmask = (m: number): number => {
  const rot = (m - 0xa282ead8) >>> 0;
  return ((rot >>> 17) | (rot << 15)) >>> 0;
};

class Reader {
  constructor(
    readonly b: Uint8Array,
    public at = 0,
  ) {}
  varint(): number {
    let v = 0;
    let mul = 1;
    for (let i = 0; i < 10; i++) {
      if (this.at >= this.b.length) throw new Error('a varint runs past the end of its block');
      const x = this.b[this.at++]!;
      v += (x & 0x7f) * mul;
      if (x < 0x80) return v;
      mul *= 128;
    }
    throw new Error('a varint is too long');
  }
}

/** Snappy decompression (the only compression LevelDB uses), for index blocks. */
export function unsnappy(src: Uint8Array): Uint8Array {
  const r = new Reader(src);
  const n = r.varint();
  if (n > 64 * 1024 * 1024) throw new Error('a compressed block claims an impossible size');
  const out = new Uint8Array(n);
  let o = 0;
  let i = r.at;
  const need = (k: number): void => {
    if (i + k > src.length) throw new Error('corrupted compressed block contents');
  };
  while (i < src.length) {
    const tag = src[i++]!;
    const kind = tag & 3;
    let len: number;
    let off: number;
    if (kind === 0) {
      len = (tag >>> 2) + 1;
      if (len > 60) {
        const extra = len - 60;
        need(extra);
        len = 0;
        for (let k = 0; k < extra; k++) len |= src[i + k]! << (8 * k);
        len = (len >>> 0) + 1;
        i += extra;
      }
      need(len);
      if (o + len > n) throw new Error('corrupted compressed block contents');
      out.set(src.subarray(i, i + len), o);
      o += len;
      i += len;
      continue;
    }
    if (kind === 1) {
      need(1);
      len = ((tag >>> 2) & 7) + 4;
      off = ((tag >>> 5) << 8) | src[i++]!;
    } else if (kind === 2) {
      need(2);
      len = (tag >>> 2) + 1;
      off = src[i]! | (src[i + 1]! << 8);
      i += 2;
    } else {
      need(4);
      len = (tag >>> 2) + 1;
      off = (src[i]! | (src[i + 1]! << 8) | (src[i + 2]! << 16) | (src[i + 3]! << 24)) >>> 0;
      i += 4;
    }
    if (off === 0 || off > o || o + len > n) throw new Error('corrupted compressed block contents');
    for (let k = 0; k < len; k++, o++) out[o] = out[o - off]!;
  }
  if (o !== n) throw new Error('corrupted compressed block contents');
  return out;
}

/** What is wrong with one table file, or undefined when every block's checksum matches. */
export function checkTable(path: string): string | undefined {
  const fd = openSync(path, 'r');
  try {
    const size = fstatSync(fd).size;
    if (size < FOOTER) return `not a table: ${size} bytes, shorter than a table's footer`;
    const read = (at: number, n: number): Uint8Array => {
      const b = new Uint8Array(n);
      if (readSync(fd, b, 0, n, at) !== n) throw new Error(`cannot read ${n} bytes at ${at}`);
      return b;
    };
    const footer = new DataView(read(size - FOOTER, FOOTER).buffer);
    if (footer.getUint32(40, true) !== MAGIC_LO || footer.getUint32(44, true) !== MAGIC_HI) return 'not a table (bad magic number): truncated or overwritten';
    const fr = new Reader(new Uint8Array(footer.buffer));
    const meta = { off: fr.varint(), len: fr.varint() };
    const index = { off: fr.varint(), len: fr.varint() };
    /** A block's contents after its checksum is verified (decompressed when snappy). */
    const block = (h: { off: number; len: number }, what: string): Uint8Array | string => {
      if (h.off + h.len + TRAILER > size - FOOTER) return `${what} block at offset ${h.off} runs past the end of the file (truncated?)`;
      const b = read(h.off, h.len + TRAILER);
      const stored = new DataView(b.buffer).getUint32(h.len + 1, true);
      if (crc32c(b, 0, h.len + 1) !== unmask(stored)) return `checksum mismatch in the ${what} block at offset ${h.off}`;
      const type = b[h.len]!;
      if (type === 0) return b.subarray(0, h.len);
      if (type === 1) return unsnappy(b.subarray(0, h.len));
      return `unknown compression type ${type} in the ${what} block at offset ${h.off}`;
    };
    const mb = block(meta, 'metaindex');
    if (typeof mb === 'string') return mb;
    const ib = block(index, 'index');
    if (typeof ib === 'string') return ib;
    if (ib.length < 4) return 'the index block is empty';
    const restarts = new DataView(ib.buffer, ib.byteOffset, ib.byteLength).getUint32(ib.length - 4, true);
    const end = ib.length - 4 - 4 * restarts;
    if (end < 0) return 'the index block is malformed';
    const r = new Reader(ib);
    while (r.at < end) {
      r.varint(); // shared key bytes
      const unshared = r.varint();
      const valueLength = r.varint();
      r.at += unshared;
      const valueEnd = r.at + valueLength;
      const handle = { off: r.varint(), len: r.varint() };
      r.at = valueEnd;
      const p = block(handle, 'data');
      if (typeof p === 'string') return p;
    }
    return undefined;
  } catch (e) {
    return `unreadable: ${(e as Error).message}`;
  } finally {
    closeSync(fd);
  }
}

/**
 * The damaged table files of a LevelDB directory, with what is wrong with each; `listed` says
 * whether LevelDB's MANIFEST names the file (false: a table it was writing when its process
 * stopped, which it deletes unread on open).
 */
export function damagedTables(dir: string): Array<{ file: string; problem: string; listed: boolean }> {
  const out: Array<{ file: string; problem: string; listed: boolean }> = [];
  const named = tablesInManifest(dir);
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return out;
  }
  for (const f of names.filter((n) => /^\d+\.(ldb|sst)$/.test(n)).sort()) {
    const problem = checkTable(join(dir, f));
    if (problem) out.push({ file: f, problem, listed: !named || named.has(Number(f.slice(0, f.indexOf('.')))) });
  }
  return out;
}

/** LevelDB's log format (doc/log_format.md): 32 KiB blocks of records, each a 7-byte header (masked CRC32C, length, type) and its data. */
const LOG_BLOCK = 32_768;
const LOG_HEADER = 7;

/**
 * The records of a LevelDB log file (a MANIFEST is one), fragments joined; a torn last record (a
 * process stopped mid-write) ends the list, as it does for LevelDB. Undefined when a record fails
 * its checksum or the framing is broken.
 */
function logRecords(b: Uint8Array): Uint8Array[] | undefined {
  const out: Uint8Array[] = [];
  let parts: Uint8Array[] | undefined;
  let at = 0;
  while (at < b.length) {
    const left = LOG_BLOCK - (at % LOG_BLOCK);
    if (left < LOG_HEADER) {
      at += left;
      continue;
    }
    if (at + LOG_HEADER > b.length) break;
    const dv = new DataView(b.buffer, b.byteOffset + at, LOG_HEADER);
    const len = dv.getUint16(4, true);
    const type = b[at + 6]!;
    // A block's zero-filled tail (a preallocated or padded end): nothing more in this block.
    if (type === 0 && len === 0) {
      at += left;
      continue;
    }
    if (at + LOG_HEADER + len > b.length) break;
    if (LOG_HEADER + len > left) return undefined;
    if (crc32c(b, at + 6, at + LOG_HEADER + len) !== unmask(dv.getUint32(0, true))) return undefined;
    const data = b.subarray(at + LOG_HEADER, at + LOG_HEADER + len);
    at += LOG_HEADER + len;
    if (type === 1) {
      out.push(data);
      parts = undefined;
    } else if (type === 2) parts = [data];
    else if (type === 3 && parts) parts.push(data);
    else if (type === 4 && parts) {
      parts.push(data);
      out.push(Buffer.concat(parts));
      parts = undefined;
    } else return undefined;
  }
  return out;
}

/**
 * The numbers of the table files that the current MANIFEST of a LevelDB directory names (every
 * table it ever added: a table LevelDB was still writing when its process stopped is not among
 * them, since LevelDB records a table only once it is written and synced). Undefined when CURRENT
 * or the MANIFEST cannot be read: then every table counts.
 */
export function tablesInManifest(dir: string): Set<number> | undefined {
  try {
    const current = readFileSync(join(dir, 'CURRENT'), 'utf8');
    const name = /^(MANIFEST-\d+)\n$/.exec(current)?.[1];
    if (!name) return undefined;
    const records = logRecords(readFileSync(join(dir, name)));
    if (!records) return undefined;
    const out = new Set<number>();
    for (const rec of records) {
      const r = new Reader(rec);
      const bytes = (): void => {
        const n = r.varint();
        r.at += n;
      };
      while (r.at < rec.length) {
        const tag = r.varint();
        if (tag === 1) bytes(); // comparator
        else if (tag === 2 || tag === 3 || tag === 4 || tag === 9) r.varint(); // log, next file, last sequence, previous log
        else if (tag === 5) (r.varint(), bytes()); // compaction pointer: level, key
        else if (tag === 6) (r.varint(), r.varint()); // deleted file: level, number
        else if (tag === 7) {
          r.varint(); // level
          out.add(r.varint());
          r.varint(); // size
          bytes(); // smallest key
          bytes(); // largest key
        } else return undefined;
      }
      if (r.at !== rec.length) return undefined;
    }
    return out;
  } catch {
    return undefined;
  }
}
