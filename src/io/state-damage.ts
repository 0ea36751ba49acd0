// Damage to a job's LevelDB state in words: what LevelDB's error means (a damaged MANIFEST, a
// missing table file, an unreadable block) and the ways out an operator has, as one message.

/** Names a job's state in the commands a message suggests. */
export interface StateRef {
  stateDir: string;
  job: string;
}

interface LevelErrorLike {
  code?: unknown;
  message?: unknown;
  cause?: unknown;
}

const levelCodes = new Set(['LEVEL_CORRUPTION', 'LEVEL_IO_ERROR']);

/** The innermost LevelDB error of `e` (classic-level wraps open failures in LEVEL_DATABASE_NOT_OPEN). */
function innermost(e: unknown): LevelErrorLike | undefined {
  let cur = e as LevelErrorLike | undefined;
  while (cur && typeof cur === 'object' && cur.cause && typeof cur.cause === 'object') cur = cur.cause as LevelErrorLike;
  return cur && typeof cur === 'object' ? cur : undefined;
}

/** True when `e` is LevelDB reporting that its files are damaged or unreadable. */
export function isLevelDamage(e: unknown): boolean {
  for (let cur = e as LevelErrorLike | undefined; cur && typeof cur === 'object'; cur = cur.cause as LevelErrorLike | undefined) {
    if (typeof cur.code === 'string' && levelCodes.has(cur.code)) return true;
  }
  return false;
}

/** LevelDB's own words for `e` (e.g. "Corruption: checksum mismatch"). */
export function levelText(e: unknown): string {
  const m = innermost(e)?.message;
  return typeof m === 'string' ? m : String(e);
}

/** What an error opening the LevelDB directory says is damaged. */
export function describeOpenFailure(text: string): string {
  const missing = /(\d+) missing files?; e\.g\.: (\S+)/.exec(text);
  if (missing) return `${missing[1] === '1' ? 'a table file is' : `${missing[1]} table files are`} missing (${missing[2]})`;
  if (/create_if_missing is false/.test(text) || (/CURRENT/.test(text) && /does not exist|No such file/i.test(text))) return 'its CURRENT file is missing';
  if (/CURRENT/.test(text)) return 'its CURRENT file is damaged';
  if (/MANIFEST|MANI|No such file/i.test(text) && /IO error/.test(text)) return 'its CURRENT file names a MANIFEST that does not exist (CURRENT or MANIFEST damaged)';
  if (/descriptor|meta-nextfile|MANIFEST|checksum mismatch|bad record length|missing start of fragmented record/i.test(text)) return 'its MANIFEST file (LevelDB\'s list of table files) is damaged';
  if (/sstable|\.ldb|\.sst|block/i.test(text)) return 'a table file is damaged';
  return 'LevelDB cannot open it';
}

/** The ways out of damaged state, as a sentence for the end of a message. */
export function waysOut(ref: StateRef | undefined, opts: { repair: boolean; usable?: number }): string {
  const where = ref ? ` --state-dir ${ref.stateDir} --job ${ref.job}` : '';
  const ways: string[] = [];
  if (opts.repair) {
    ways.push(
      `\`tidemark inspect --repair${where}\` rebuilds the LevelDB files with LevelDB's own repair (keeping a copy of the damaged directory) and lists the checkpoints that still verify; \`tidemark run\` then falls back to the newest of them`,
    );
  }
  if (opts.usable !== undefined) ways.push(`\`--from-checkpoint ${opts.usable}\` starts from checkpoint ${opts.usable}, which verifies`);
  ways.push('`--reset-state` discards the state and reads the input from its beginning');
  return `ways out: ${ways.join('; ')}. No copy of the checkpoints is kept in NATS.`;
}

/** Problems of several checkpoints as one list, those with the same problem named together. */
export function groupProblems(problems: ReadonlyArray<{ id: number; problem: string }>): string {
  const byText = new Map<string, number[]>();
  for (const p of problems) byText.set(p.problem, [...(byText.get(p.problem) ?? []), p.id]);
  return [...byText].map(([text, ids]) => `checkpoint${ids.length > 1 ? 's' : ''} ${ids.join(', ')}: ${text}`).join('; ');
}
