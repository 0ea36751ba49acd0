// The checkpoint store's own defences, on real LevelDB on disk: the manifest beside it (a torn
// last line, a damaged line, the rewrite after many prunes, a checkpoint written just before a
// crash, a state directory from before manifests), a metadata entry changed in place, ids never
// reused, the table-file checks (CRC32C and Snappy against LevelDB's own files), and a first start
// killed while LevelDB was creating its database.

import t from 'tap';
import { appendFileSync, readFileSync, writeFileSync, rmSync, readdirSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { scratchDir } from '../helpers/nats.js';
import { CheckpointStore, metaKey, type CheckpointMeta } from '../../src/io/checkpoint-store.js';
import { CheckpointManifest } from '../../src/io/checkpoint-manifest.js';
import { checkTable, crc32c, damagedTables, tablesInManifest, unsnappy } from '../../src/io/leveldb-tables.js';
import { describeOpenFailure, groupProblems, isLevelDamage, levelText } from '../../src/io/state-damage.js';
import { encode, decode } from '../../src/io/codec.js';
import type { PersistedWindow } from '../../src/runtime/window-operator.js';

const scratch = scratchDir('tidemark-manifest-');
t.teardown(() => scratch.remove());

let dirs = 0;
const freshDir = (): string => join(scratch.dir, `s${++dirs}`, 'checkpoints');

/** Writes full checkpoints `ids`, each holding `n` windows. */
async function writeFull(store: CheckpointStore, ids: number[], n = 50): Promise<void> {
  for (const id of ids) {
    const windows: PersistedWindow[] = Array.from({ length: n }, (_, i) => ({ key: `#k${i}`, start: 0, end: 60_000, state: 'open', acc: { count: id, positive: 1, negative: 0, neutral: 0, scoreSum: 1 }, revision: 0, n: id }));
    await store.write({ meta: { id, time: Date.now(), seq: id * 10, watermark: { wm: 0, maxTs: [] }, sinks: {}, parent: 0, full: true, depth: 1, windows: n, counters: {}, fingerprint: {} }, chunks: [{ u: [[0, windows]], d: [] }] });
  }
}

t.test('a checkpoint whose LevelDB records vanished is reported, not silently skipped', async (t) => {
  const dir = freshDir();
  const store = await CheckpointStore.open(dir);
  await writeFull(store, [1, 2, 3]);
  // What a damaged write-ahead log does: the newest checkpoint's records are gone.
  await store.level.del(metaKey(3));
  const r = await store.restore();
  t.equal(r?.meta.id, 2, 'falls back to checkpoint 2');
  t.match(r?.skipped, [{ id: 3, problem: /^missing: the manifest records it but LevelDB no longer holds it/ }], 'naming checkpoint 3 and what is wrong');
  t.equal(store.maxId, 3, 'the next checkpoint id stays after 3');
  await store.prune(3, [3]);
  t.notOk(store.has(3), 'pruning forgets it');
  await store.close();
});

t.test('metadata changed in place does not match the manifest', async (t) => {
  const dir = freshDir();
  const store = await CheckpointStore.open(dir);
  await writeFull(store, [1, 2]);
  const m = decode<CheckpointMeta>((await store.level.get(metaKey(2)))!);
  await store.level.put(metaKey(2), encode({ ...m, seq: m.seq + 5 }));
  const r = await store.restore();
  t.equal(r?.meta.id, 1, 'the altered checkpoint is not used');
  t.match(r?.skipped, [{ id: 2, problem: /metadata does not match the checkpoint manifest/ }]);
  await store.close();
});

t.test('a checkpoint written just before a crash (no manifest line yet) is adopted', async (t) => {
  const dir = freshDir();
  const store = await CheckpointStore.open(dir);
  await writeFull(store, [1, 2]);
  await store.close();
  const text = readFileSync(`${dir}.manifest`, 'utf8').split('\n');
  // The last line lost and the one before it torn half-way: a crash mid-append.
  writeFileSync(`${dir}.manifest`, `${text[0]}\n${text[1]!.slice(0, 20)}`);
  const again = await CheckpointStore.open(dir);
  t.match(again.notes, [/checkpoint 2 was written just before the process stopped/], 'says what it did');
  t.equal((await again.restore())?.meta.id, 2, 'and restores it');
  await again.close();
});

t.test('a damaged manifest line is reported; the checkpoint it named is not trusted', async (t) => {
  const dir = freshDir();
  const store = await CheckpointStore.open(dir);
  await writeFull(store, [1, 2, 3]);
  await store.close();
  const lines = readFileSync(`${dir}.manifest`, 'utf8').split('\n');
  lines[1] = lines[1]!.replace('"seq":20', '"seq":21');
  writeFileSync(`${dir}.manifest`, lines.join('\n'));
  const again = await CheckpointStore.open(dir);
  t.match(again.notes, [/manifest lines 2 are damaged/]);
  t.same(again.manifestProblems, ['checkpoint manifest lines 2 are damaged']);
  const rows = await again.diagnose();
  t.match(rows.find((r) => r.id === 2), { problem: /not in the checkpoint manifest/ }, 'checkpoint 2 is listed with the problem');
  t.equal((await again.restore())?.meta.id, 3, 'the newest, listed intact, is restored');
  await again.close();
});

t.test('state from before manifests gets one; a reset forgets everything', async (t) => {
  const dir = freshDir();
  const store = await CheckpointStore.open(dir);
  await writeFull(store, [1, 2]);
  await store.close();
  rmSync(`${dir}.manifest`);
  const again = await CheckpointStore.open(dir);
  t.match(again.notes, [/no checkpoint manifest was found; wrote one for the 2 checkpoints/]);
  t.equal((await again.restore())?.meta.id, 2);
  await again.reset();
  t.equal(await again.restore(), undefined, 'nothing left after a reset');
  t.equal(again.maxId, 0);
  await again.close();
});

/**
 * MANIFEST-000001 as LevelDB's NewDB writes it: one log record (masked CRC32C, length, type FULL)
 * holding a VersionEdit with the comparator, log number 0, next file number 2, last sequence 0.
 */
function newDbManifest(): Buffer {
  const name = Buffer.from('leveldb.BytewiseComparator');
  const edit = Buffer.concat([Buffer.from([1, name.length]), name, Buffer.from([2, 0, 3, 2, 4, 0])]);
  const typed = Buffer.concat([Buffer.from([1]), edit]);
  const crc = crc32c(typed);
  const masked = ((((crc >>> 15) | (crc << 17)) >>> 0) + 0xa282ead8) >>> 0;
  const header = Buffer.alloc(7);
  header.writeUInt32LE(masked, 0);
  header.writeUInt16LE(edit.length, 4);
  header[6] = 1;
  return Buffer.concat([header, edit]);
}

/** A state directory as a first start SIGKILLed inside LevelDB's creation of it leaves it. */
function cutShort(files: Record<string, Buffer | string>): string {
  const dir = freshDir();
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'LOCK'), '');
  writeFileSync(join(dir, 'LOG'), '2026/12/02-18:00:00.000000 7f00 Creating DB ' + dir + ' since it was missing.\n');
  for (const [f, b] of Object.entries(files)) writeFileSync(f.endsWith('.manifest') ? `${dir}.manifest` : join(dir, f), b);
  return dir;
}

t.test('a first start killed while LevelDB created the database starts empty; without CURRENT anything more is damage', async (t) => {
  const m = newDbManifest();
  const leftovers: Array<[string, Record<string, Buffer | string>]> = [
    ['MANIFEST-000001 written, CURRENT not yet', { 'MANIFEST-000001': m }],
    ['MANIFEST-000001 half written', { 'MANIFEST-000001': m.subarray(0, 11) }],
    ['MANIFEST-000001 created empty', { 'MANIFEST-000001': Buffer.alloc(0) }],
    ["CURRENT's temporary file written, not yet renamed", { 'MANIFEST-000001': m, '000001.dbtmp': 'MANIFEST-000001\n' }],
    ['an empty checkpoint manifest beside it', { 'MANIFEST-000001': m, '.manifest': '' }],
  ];
  for (const [what, files] of leftovers) {
    const dir = cutShort(files);
    const store = await CheckpointStore.open(dir);
    t.match(store.notes, [/only the start of a LevelDB database that was never finished .*a first start was cut short; starting with empty state/], `${what}: opened as empty, with a note`);
    t.equal(await store.restore(), undefined, `${what}: no checkpoint`);
    await writeFull(store, [1]);
    await store.close();
    const again = await CheckpointStore.open(dir);
    t.same(again.notes, [], `${what}: the next start finds the state it wrote`);
    t.equal((await again.restore())?.meta.id, 1, `${what}: and restores its checkpoint`);
    await again.close();
  }

  // A real database's write-ahead log (data) beside MANIFEST-000001, no CURRENT: damage, as before.
  const real = freshDir();
  const store = await CheckpointStore.open(real);
  await writeFull(store, [1]);
  await store.close();
  const log = readdirSync(real).find((f) => f.endsWith('.log'))!;
  const damaged: Array<[string, Record<string, Buffer | string>]> = [
    ['a write-ahead log with data', { 'MANIFEST-000001': m, [log]: readFileSync(join(real, log)) }],
    ['a later MANIFEST', { 'MANIFEST-000001': m, 'MANIFEST-000004': m }],
    ['a checkpoint manifest with a line', { 'MANIFEST-000001': m, '.manifest': readFileSync(`${real}.manifest`) }],
  ];
  for (const [what, files] of damaged) {
    const dir = cutShort(files);
    await t.rejects(CheckpointStore.open(dir), { code: 'STATE_CORRUPT', message: /damaged and LevelDB cannot open it/ }, `${what}, no CURRENT: reported as damaged`);
    t.ok(readdirSync(dir).includes('MANIFEST-000001'), `${what}: nothing was deleted`);
  }
});

t.test('many prunes rewrite the manifest to its live checkpoints; ids are never reused', async (t) => {
  const dir = freshDir();
  const store = await CheckpointStore.open(dir);
  for (let id = 1; id <= 60; id++) {
    await writeFull(store, [id], 2);
    await store.prune(2);
  }
  const lines = readFileSync(`${dir}.manifest`, 'utf8').split('\n').filter(Boolean);
  t.ok(lines.length < 100, `the file was rewritten (${lines.length} lines for 2 live checkpoints)`);
  await store.close();
  const again = await CheckpointStore.open(dir);
  t.same((await again.list()).metas.map((m) => m.id), [60, 59], 'the live checkpoints survive the rewrite');
  t.equal(again.maxId, 60);
  t.same(again.notes, [], 'and nothing needed reconciling');
  await again.close();
});

t.test('the manifest on its own: torn line, damaged line, drop and clear', async (t) => {
  const path = join(scratch.dir, 'solo.manifest');
  const m = await CheckpointManifest.open(path);
  await m.add([{ id: 1, seq: 1, entries: 1, hash: 1, metaHash: 1, parent: 0, full: true, time: 0, savepoint: 'a' }]);
  await m.add([{ id: 2, seq: 2, entries: 1, hash: 1, metaHash: 1, parent: 1, full: false, time: 0 }]);
  await m.close();
  appendFileSync(path, '00000000 {"op":"add"'); // torn
  const back = await CheckpointManifest.open(path);
  t.same([...back.live.keys()], [1, 2]);
  t.same(back.damagedLines, [], 'a torn last line is not damage');
  await back.drop([1]);
  t.same([...back.live.keys()], [2]);
  t.ok(back.dropped.has(1));
  await back.close();
  const third = await CheckpointManifest.open(path);
  t.same([...third.live.keys()], [2], 'the line after the torn one is read');
  await third.clear();
  t.equal(third.live.size, 0);
  await third.close();
});

t.test('LevelDB table files: CRC32C, Snappy and the checks on real tables', async (t) => {
  t.equal(crc32c(new TextEncoder().encode('123456789')), 0xe3069283, 'CRC32C check value');
  // Snappy: a literal "abcd" then a copy of 8 bytes at offset 4 -> "abcdabcdabcd".
  t.same([...unsnappy(Uint8Array.from([12, 3 << 2, 97, 98, 99, 100, 0b000_100_01, 4]))], [...new TextEncoder().encode('abcdabcdabcd')]);
  t.throws(() => unsnappy(Uint8Array.from([5, 0x00])), /corrupted compressed block contents/);
  const dir = freshDir();
  for (let round = 0; round < 2; round++) {
    const store = await CheckpointStore.open(dir);
    await writeFull(store, [round * 2 + 1, round * 2 + 2], 2000);
    await store.close();
  }
  const tables = readdirSync(dir).filter((f) => f.endsWith('.ldb'));
  t.ok(tables.length >= 1, `LevelDB wrote table files (${tables.join(', ')})`);
  t.same(damagedTables(dir), [], "every block of LevelDB's own tables verifies");
  const victim = join(dir, tables[0]!);
  const b = readFileSync(victim);
  b[100] ^= 0x01;
  writeFileSync(victim, b);
  t.match(checkTable(victim), /checksum mismatch in the data block at offset \d+/, 'one flipped bit is found');
  writeFileSync(victim, b.subarray(0, 30));
  t.match(checkTable(victim), /shorter than a table's footer/);
  await t.rejects(CheckpointStore.open(dir), { code: 'STATE_CORRUPT', message: /table file \d+\.ldb: .*ways out: .*inspect --repair/ }, 'the store refuses to open it, naming the file');
  const { moved } = await CheckpointStore.repair(dir);
  t.same(moved, [tables[0]], 'repair moves the damaged table aside');
  const repaired = await CheckpointStore.open(dir);
  t.ok((await repaired.diagnose()).some((r) => r.problem === undefined), 'a checkpoint still verifies after the repair');
  await repaired.close();
});

t.test('a table file LevelDB was writing when its process was killed (not in its MANIFEST) is no damage', async (t) => {
  const dir = freshDir();
  for (let round = 0; round < 2; round++) {
    const store = await CheckpointStore.open(dir);
    await writeFull(store, [round * 2 + 1, round * 2 + 2], 2000);
    await store.close();
  }
  const tables = readdirSync(dir).filter((f) => f.endsWith('.ldb')).map((f) => Number(f.slice(0, -4)));
  t.ok(tables.length >= 1, 'LevelDB wrote table files');
  t.same([...(tablesInManifest(dir) ?? [])].filter((n) => tables.includes(n)).sort(), tables.sort(), "LevelDB's MANIFEST, read here, names every table on disk");
  // What a SIGKILL in the middle of a compaction or a memtable flush leaves: a table cut short,
  // under a number LevelDB allocated but had not recorded yet.
  const orphan = `${String(Math.max(...tables) + 50).padStart(6, '0')}.ldb`;
  const whole = readFileSync(join(dir, `${String(tables[0]).padStart(6, '0')}.ldb`));
  writeFileSync(join(dir, orphan), whole.subarray(0, Math.floor(whole.length / 2)));
  t.match(damagedTables(dir), [{ file: orphan, problem: /bad magic number/, listed: false }], 'the file is damaged, and not listed');
  const store = await CheckpointStore.open(dir);
  t.match(store.notes, [new RegExp(`table file ${orphan} was being written when the process stopped .*MANIFEST does not list it`)], 'opened, with a note');
  t.equal((await store.restore())?.meta.id, 4, 'the newest checkpoint is restored');
  await store.close();
  t.same(damagedTables(dir), [], 'LevelDB deleted the unfinished table on open');
  // The same damage to a table the MANIFEST lists is refused (as in the test above).
  const listed = `${String(tables[0]).padStart(6, '0')}.ldb`;
  writeFileSync(join(dir, listed), whole.subarray(0, Math.floor(whole.length / 2)));
  await t.rejects(CheckpointStore.open(dir), { code: 'STATE_CORRUPT', message: new RegExp(`table file ${listed}: not a table`) }, 'a listed table cut short is damage');
});

t.test('LevelDB errors in words', async (t) => {
  t.match(describeOpenFailure('Corruption: 1 missing files; e.g.: /x/000008.ldb'), /a table file is missing \(\/x\/000008.ldb\)/);
  t.match(describeOpenFailure('Corruption: 2 missing files; e.g.: /x/000008.ldb'), /2 table files are missing/);
  t.equal(describeOpenFailure('Invalid argument: /x: does not exist (create_if_missing is false)'), 'its CURRENT file is missing');
  t.equal(describeOpenFailure('Corruption: CURRENT file does not end with newline'), 'its CURRENT file is damaged');
  t.match(describeOpenFailure('IO error: /x/MANIESTw00j007: No such file or directory'), /CURRENT file names a MANIFEST that does not exist/);
  t.match(describeOpenFailure('Corruption: checksum mismatch'), /MANIFEST file/);
  t.equal(describeOpenFailure('Corruption: bad block in 000005.sst'), 'a table file is damaged');
  t.equal(describeOpenFailure('something else'), 'LevelDB cannot open it');
  const e = Object.assign(new Error('Database failed to open'), { code: 'LEVEL_DATABASE_NOT_OPEN', cause: Object.assign(new Error('Corruption: x'), { code: 'LEVEL_CORRUPTION' }) });
  t.ok(isLevelDamage(e));
  t.equal(levelText(e), 'Corruption: x');
  t.notOk(isLevelDamage(new Error('plain')));
  t.equal(groupProblems([{ id: 3, problem: 'p' }, { id: 2, problem: 'p' }, { id: 1, problem: 'q' }]), 'checkpoints 3, 2: p; checkpoint 1: q');
});
