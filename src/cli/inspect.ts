// `tidemark inspect`: what the state directory holds, for an operator at a terminal.

import { existsSync } from 'node:fs';
import { TidemarkError } from '../errors.js';
import { parseFlags, type OptionDef } from '../option-table.js';
import { CheckpointStore } from '../io/checkpoint-store.js';
import { checkpointDir, openJobStore, resolveCheckpointId } from '../actors/job.js';
import { waysOut } from '../io/state-damage.js';
import { NATS_AUTH_OPTIONS } from '../io/connect.js';
import { formatGroupStamp, inspectMirror, printKeyWindows } from './inspect-mirror.js';

export const INSPECT_OPTIONS: OptionDef[] = [
  { flag: '--state-dir', key: 'stateDir', kind: 'string', arg: 'DIR', help: 'state directory of the job', default: '.tidemark' },
  { flag: '--job', key: 'job', kind: 'string', arg: 'NAME', help: 'job name', default: 'sentiment' },
  { flag: '--checkpoint', key: 'checkpoint', kind: 'string', arg: 'ID', help: 'checkpoint id or savepoint name to read (default: newest usable)' },
  { flag: '--key', key: 'key', kind: 'string', arg: 'KEY', help: "dump this key's windows" },
  { flag: '--json', key: 'json', kind: 'bool', help: 'print JSON' },
  { flag: '--repair', key: 'repair', kind: 'bool', help: "repair damaged LevelDB files with LevelDB's own repair (a copy is kept), then list" },
  { flag: '--nats', key: 'nats', kind: 'string', arg: 'URL', help: "read a group's checkpoint mirror in NATS instead of a state directory" },
  ...NATS_AUTH_OPTIONS,
  { flag: '--help', key: 'help', kind: 'bool', help: 'this help' },
];

const wm = (w: number): string => (w === Infinity ? '+inf' : w === -Infinity ? '-inf' : new Date(w).toISOString());

/** Lists checkpoints, or dumps one key's windows. */
export async function inspectCommand(argv: string[]): Promise<number> {
  const { opts } = parseFlags(argv, INSPECT_OPTIONS);
  const stateDir = String(opts.stateDir ?? '.tidemark');
  const job = String(opts.job ?? 'sentiment');
  if (typeof opts.nats === 'string') return inspectMirror(opts, job);
  const dir = checkpointDir(stateDir, job);
  if (!existsSync(dir)) throw new TidemarkError('BAD_FLAG', `--state-dir: no state for job "${job}" in ${stateDir}`);
  if (opts.repair) {
    const { copy, moved } = await CheckpointStore.repair(dir);
    if (moved.length) process.stderr.write(`table files ${moved.join(', ')} fail their checksums: moved to ${dir}/lost\n`);
    process.stderr.write(`repaired ${dir} with LevelDB's repair; the files as they were are kept in ${copy}\n`);
  }
  const store = await openJobStore(stateDir, job);
  try {
    for (const note of store.notes) process.stderr.write(`${note}\n`);
    if (typeof opts.key === 'string') {
      const r = await store.restore(await resolveCheckpointId(store, opts.checkpoint === undefined ? undefined : String(opts.checkpoint), '--checkpoint'));
      if (!r) throw new TidemarkError('CHECKPOINT_NOT_FOUND', 'no checkpoint yet');
      printKeyWindows(`checkpoint ${r.meta.id}`, r.meta.id, opts.key, [...r.windows.values()].flat(), opts.json === true);
      return 0;
    }
    const rows = [];
    for (const { id, meta: m, problem } of await store.diagnose()) {
      // A checkpoint whose metadata is gone is shown with what the manifest recorded of it.
      const rec = store.recorded(id);
      rows.push({
        id,
        time: m ? new Date(m.time).toISOString() : rec ? new Date(rec.time).toISOString() : '',
        seq: m?.seq ?? rec?.seq ?? 0,
        // Partitioned input: the idle partitions at the checkpoint, and decisions journaled there and not applied yet.
        watermark: m ? `${wm(m.watermark.wm)}${m.watermark.idle?.length ? ` (idle: ${m.watermark.idle.join(',')})` : ''}${m.watermark.journal?.length ? ` (journaled: ${m.watermark.journal.map((d) => `${d.partition} idle after ${d.seq}`).join(', ')})` : ''}` : '',
        windows: m?.windows ?? 0,
        bytes: m?.bytes ?? 0,
        kind: (m ?? rec) ? ((m ?? rec)!.full ? 'full' : `delta of ${(m ?? rec)!.parent}`) : '',
        savepoint: m?.savepoint ?? rec?.savepoint ?? '',
        // A group's checkpoint: the coordinator's lease epoch, the generation and the key-group owners.
        group: formatGroupStamp(m?.group),
        problem: problem ?? '',
      });
    }
    const usable = rows.find((r) => r.problem === '');
    const damaged = store.levelDamage;
    const summary = [
      ...store.manifestProblems,
      ...(damaged !== undefined ? [`LevelDB's files are damaged (LevelDB: ${damaged}); ${waysOut({ stateDir, job }, { repair: true })}`] : []),
      ...(rows.length && !usable ? [`no checkpoint is usable; ${waysOut({ stateDir, job }, { repair: damaged !== undefined })}`] : []),
      ...(usable && rows[0] !== usable ? [`newer checkpoints are unusable; tidemark run falls back to checkpoint ${usable.id}`] : []),
    ];
    for (const line of summary) process.stderr.write(`${line}\n`);
    if (opts.json) {
      process.stdout.write(JSON.stringify(rows) + '\n');
      return 0;
    }
    const grouped = rows.some((r) => r.group !== '');
    const head = ['id', 'time', 'input seq', 'watermark', 'windows', 'bytes', 'kind', 'savepoint', ...(grouped ? ['group (owners of key groups)'] : []), 'problem'];
    const table = [head, ...rows.map((r) => [r.id, r.time, r.seq, r.watermark, r.windows, r.bytes, r.kind, r.savepoint, ...(grouped ? [r.group] : []), r.problem].map(String))];
    const widths = head.map((_, i) => Math.max(...table.map((r) => String(r[i]).length)));
    for (const r of table) process.stdout.write(r.map((c, i) => String(c).padEnd(widths[i]!)).join('  ').trimEnd() + '\n');
    return 0;
  } finally {
    await store.close();
  }
}
