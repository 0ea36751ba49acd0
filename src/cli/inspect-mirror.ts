// `tidemark inspect --nats URL`: a group's checkpoint mirror in NATS (the object store the coordinator
// copies every complete checkpoint to), as `inspect --state-dir` shows a local one.

import { TidemarkError } from '../errors.js';
import { connectNats, natsAuthFrom } from '../io/connect.js';
import { GroupStore } from '../io/group-store.js';
import type { GroupStamp } from '../io/checkpoint-store.js';
import { subjectsFor } from '../io/subjects.js';
import { windowId, type PersistedWindow } from '../runtime/window-operator.js';
import type { RawOptions } from '../option-table.js';

/** A group's checkpoint stamp in one cell: epoch, generation and the owners of key-group ranges. */
export const formatGroupStamp = (g: GroupStamp | undefined): string => (g ? `epoch ${g.epoch} gen ${g.gen}: ${g.owners.map(([id, a, b]) => `${id.slice(0, 6)} ${a}-${b - 1}`).join(', ')}` : '');

/** `--key K`: a key's windows of one checkpoint, as JSON or one line each. */
export function printKeyWindows(heading: string, checkpoint: number, key: string, windows: Iterable<PersistedWindow>, json: boolean): void {
  const rows = [...windows].filter((w) => w.key === key).sort((a, b) => a.start - b.start).map((w) => ({ window: { start: w.start, end: w.end }, state: w.state, records: w.n, accumulator: w.acc, nextRevision: w.revision }));
  if (json) process.stdout.write(JSON.stringify({ checkpoint, key, windows: rows }) + '\n');
  else {
    process.stdout.write(`${heading}, key ${key}: ${rows.length} windows\n`);
    for (const w of rows) process.stdout.write(`  [${w.window.start}, ${w.window.end})  ${String(w.state).padEnd(8)} records ${w.records}  ${JSON.stringify(w.accumulator)}\n`);
  }
}

const wm = (w: number): string => (w === Infinity ? '+inf' : w === -Infinity ? '-inf' : new Date(w).toISOString());

/** Lists the mirror's chain, or dumps one key's windows as of its newest checkpoint. */
export async function inspectMirror(opts: RawOptions, job: string): Promise<number> {
  const nc = await connectNats(String(opts.nats), 'tidemark-inspect', natsAuthFrom((k) => (typeof opts[k] === 'string' ? String(opts[k]) : undefined)));
  try {
    // Only an existing group is read: nothing is created by looking.
    const exists = await nc
      .jetstreamManager()
      .then((jsm) => jsm.streams.info(`KV_${subjectsFor(job).groupStateBucket}`))
      .then(() => true, () => false);
    if (!exists) throw new TidemarkError('CHECKPOINT_NOT_FOUND', `job "${job}" has no group state in this NATS (no bucket ${subjectsFor(job).groupStateBucket}); it has not run as a group here`);
    const store = await GroupStore.open(nc, job, 5000);
    const p = await store.pointer();
    if (!p || p.value.cp === 0) throw new TidemarkError('CHECKPOINT_NOT_FOUND', `job "${job}" has no checkpoint in its NATS mirror (${subjectsFor(job).checkpointObjects}); a group's coordinator writes one at every checkpoint`);
    const chain = await store.fetchChain(p.value);
    if (typeof opts.key === 'string') {
      // The chain applied in order: the full checkpoint, then each delta's upserts and deletes.
      const live = new Map<string, PersistedWindow>();
      for (const w of chain) {
        for (const c of w.chunks) {
          for (const [, ws] of c.u) for (const x of ws) live.set(x.id ?? windowId(x.key, x.start, x.end), x);
          for (const [, id] of c.d) live.delete(id);
        }
      }
      printKeyWindows(`checkpoint ${p.value.cp} (NATS mirror, epoch ${p.value.epoch})`, p.value.cp, opts.key, live.values(), opts.json === true);
      return 0;
    }
    const rows = chain.map((w, i) => ({
      id: w.meta.id,
      object: p.value.chain[i]!,
      time: new Date(w.meta.time).toISOString(),
      seq: w.meta.seq,
      watermark: wm(w.meta.watermark.wm),
      windows: w.meta.windows,
      kind: w.meta.full ? 'full' : `delta of ${w.meta.parent}`,
      group: formatGroupStamp(w.meta.group),
    }));
    if (opts.json) process.stdout.write(JSON.stringify({ pointer: p.value, checkpoints: rows }) + '\n');
    else {
      process.stdout.write(`job ${job}: NATS mirror at checkpoint ${p.value.cp} (coordinator epoch ${p.value.epoch}), a chain of ${rows.length}\n`);
      const head = ['id', 'object', 'time', 'input seq', 'watermark', 'windows', 'kind', 'group (owners of key groups)'];
      const table = [head, ...rows.map((r) => [r.id, r.object, r.time, r.seq, r.watermark, r.windows, r.kind, r.group].map(String))];
      const widths = head.map((_, i) => Math.max(...table.map((r) => r[i]!.length)));
      for (const r of table) process.stdout.write(r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd() + '\n');
    }
    return 0;
  } finally {
    await nc.close();
  }
}
