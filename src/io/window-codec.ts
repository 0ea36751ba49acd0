// A window's value in LevelDB: its key, start and end are in the entry's key; the value is a plain
// msgpack array [state (0 open, 1 pending), revision, records, accumulator…]. An accumulator that
// is a flat object of numbers, strings, booleans or nulls (the sentiment job's counts, most users'
// sums) is stored as [shape id, ...values], its field names once per store under `s!<id>`, so a
// window costs ~15 bytes rather than its field names again in every entry.

import { Packr } from 'msgpackr';
import type { PersistedWindow } from '../runtime/window-operator.js';

const plain = new Packr({ useRecords: false });
const SHAPE_PREFIX = 's!';
/** Marks an accumulator stored by shape (a plain value is never a negative integer in this slot). */
const BY_SHAPE = -1;

type Stored = [0 | 1, number, number, unknown, ...unknown[]];

const isFlat = (v: unknown): v is Record<string, unknown> => {
  if (typeof v !== 'object' || v === null || Array.isArray(v) || Object.getPrototypeOf(v) !== Object.prototype) return false;
  for (const x of Object.values(v)) if (x !== null && typeof x === 'object') return false;
  return true;
};

/** Encodes and decodes window entries; knows the store's accumulator shapes. */
export class WindowCodec {
  private readonly shapes: string[][] = [];
  private readonly byKeys = new Map<string, number>();
  /** The shape the last accumulator had (most windows of a job share one). */
  private last?: { keys: string[]; id: number };

  /** Loads the shapes a store holds (`s!<id>` entries). */
  load(entries: Iterable<[string, Uint8Array]>): void {
    for (const [key, value] of entries) {
      const id = Number(key.slice(SHAPE_PREFIX.length));
      const keys = plain.unpack(value) as string[];
      this.shapes[id] = keys;
      this.byKeys.set(keys.join('\u0000'), id);
    }
  }

  /** The key range of shape entries. */
  static readonly range = { gte: SHAPE_PREFIX, lt: 's"' };

  /** Every shape as an entry (written with each checkpoint batch: a batch is self-contained). */
  shapeEntries(): Array<[string, Uint8Array]> {
    return this.shapes.map((keys, id) => [`${SHAPE_PREFIX}${id}`, plain.pack(keys)]);
  }

  encode(w: PersistedWindow): Uint8Array {
    const head: [0 | 1, number, number] = [w.state === 'open' ? 0 : 1, w.revision, w.n];
    const acc = w.acc;
    if (!isFlat(acc)) return plain.pack([...head, acc]);
    const keys = Object.keys(acc);
    const last = this.last;
    let id: number | undefined;
    if (last && last.keys.length === keys.length && keys.every((k, i) => k === last.keys[i])) id = last.id;
    else {
      const sig = keys.join('\u0000');
      id = this.byKeys.get(sig);
      if (id === undefined) {
        id = this.shapes.length;
        this.shapes.push(keys);
        this.byKeys.set(sig, id);
      }
      this.last = { keys, id };
    }
    const out: unknown[] = [head[0], head[1], head[2], BY_SHAPE, id];
    for (const k of keys) out.push(acc[k]);
    return plain.pack(out);
  }

  decode(wid: string, value: Uint8Array): PersistedWindow {
    const v = plain.unpack(value) as Stored;
    const e = wid.lastIndexOf('\u0000');
    const s = wid.lastIndexOf('\u0000', e - 1);
    if (!Array.isArray(v) || v.length < 4 || s < 0) throw new Error(`window entry ${JSON.stringify(wid)} is not a stored window`);
    let acc: unknown = v[3];
    if (v[3] === BY_SHAPE) {
      const keys = this.shapes[v[4] as number];
      if (!keys || keys.length !== v.length - 5) throw new Error(`window entry ${JSON.stringify(wid)} names accumulator shape ${String(v[4])}, which the store does not hold`);
      const o: Record<string, unknown> = {};
      for (let i = 0; i < keys.length; i++) o[keys[i]!] = v[5 + i];
      acc = o;
    }
    return { key: wid.slice(0, s), start: Number(wid.slice(s + 1, e)), end: Number(wid.slice(e + 1)), state: v[0] === 0 ? 'open' : 'pending', acc, revision: v[1], n: v[2], id: wid };
  }
}
