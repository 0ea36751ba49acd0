// `tidemark check-job FILE`: the aggregate laws of a user's job module checked on generated
// records before the job ever runs (the records come from the module or from a JSONL file).

import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { TidemarkError } from '../errors.js';
import { parseFlags, type OptionDef, type RawOptions } from '../option-table.js';
import { loadJobModule } from '../io/job-loader.js';
import { checkLaws, recordLists, show, type LawOutcome } from '../runtime/check-job.js';
import { decodeJson, validateDefinition } from '../runtime/compiled-job.js';
import { sentimentJob } from '../runtime/sentiment-job.js';
import { parseKeySpec } from '../runtime/keys.js';
import { reviewSentences } from '../runtime/synthetic.js';
import type { AnyJobDefinition } from '../runtime/job-definition.js';

export const CHECK_JOB_OPTIONS: OptionDef[] = [
  { flag: '--samples', key: 'samples', kind: 'string', arg: 'FILE', help: 'JSONL file of input messages (decoded with the job\'s decode), used when the module exports neither arbitrary nor samples' },
  { flag: '--builtin', key: 'builtin', kind: 'string', arg: 'NAME', help: 'check a built-in job instead of a module: sentiment' },
  { flag: '--keys', key: 'keys', kind: 'string', arg: 'LIST', help: 'with --builtin sentiment: its key spec', default: 'hashtags,all' },
  { flag: '--runs', key: 'runs', kind: 'string', arg: 'N', help: 'generated record lists per law', default: '200' },
  { flag: '--max-records', key: 'maxRecords', kind: 'string', arg: 'N', help: 'longest generated list of records', default: '8' },
  { flag: '--seed', key: 'seed', kind: 'string', arg: 'N', help: 'fast-check seed (to replay a run)' },
  { flag: '--help', key: 'help', kind: 'bool', help: 'this help' },
];

export const CHECK_JOB_USAGE = `Usage: tidemark check-job FILE [options]

Checks the laws the engine relies on, on the job module's own aggregate, with generated records:
merge of split halves = add one by one (every split), merge associative, the accumulator survives a
msgpack round trip, result never throws, add and merge mutate nothing. Records come from the
module's \`arbitrary\` export (a fast-check Arbitrary of records, or a function fc => Arbitrary) or
its \`samples\` export (an array of records), else from --samples FILE.jsonl. Exit 0 when every law
holds, 1 when one fails (with the smallest counter-example), 2 when it cannot run.`;

function intOpt(opts: RawOptions, key: string, min: number, max: number): number | undefined {
  const def = CHECK_JOB_OPTIONS.find((d) => d.key === key)!;
  const v = opts[key] === undefined ? def.default : String(opts[key]);
  if (v === undefined) return undefined;
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) throw new TidemarkError('BAD_FLAG', `${def.flag}: "${v}" is not accepted; an integer from ${min} to ${max}`);
  return Number(v);
}

const isArbitrary = (v: unknown): v is fc.Arbitrary<unknown> =>
  typeof v === 'object' && v !== null && typeof (v as { generate?: unknown }).generate === 'function' && typeof (v as { shrink?: unknown }).shrink === 'function';

/** Reads a JSONL file of input messages through the job's decode; lines it rejects are skipped. */
function samplesFile(path: string, def: AnyJobDefinition): { records: unknown[]; skipped: number } {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new TidemarkError('BAD_FLAG', `--samples: cannot read ${path}: ${(e as Error).message}`);
  }
  const decode = def.decode ?? decodeJson;
  const enc = new TextEncoder();
  const records: unknown[] = [];
  let skipped = 0;
  for (const line of text.split('\n')) {
    if (line.trim() === '') continue;
    try {
      records.push(decode(enc.encode(line)));
    } catch {
      skipped++;
    }
  }
  if (records.length === 0) throw new TidemarkError('BAD_FLAG', `--samples: ${path} holds no record the job decodes (${skipped} lines rejected)`);
  return { records, skipped };
}

/** Posts for the built-in sentiment job: real review sentences, hashtags, both languages. */
function sentimentPosts(): fc.Arbitrary<unknown> {
  const sentences = reviewSentences();
  return fc.record({
    id: fc.nat().map((n) => `p${n}`),
    ts: fc.integer({ min: 1_700_000_000_000, max: 1_800_000_000_000 }),
    text: fc.tuple(fc.constantFrom(...sentences), fc.subarray(['#nats', '#tidemark', 'nats'])).map(([s, tags]) => [s, ...tags].join(' ')),
    lang: fc.constantFrom('en', 'es'),
  });
}

interface Subject {
  name: string;
  definition: AnyJobDefinition;
  lists: fc.Arbitrary<unknown[]>;
  from: string;
  examples?: unknown[][];
  notes: string[];
}

async function subjectOf(file: string | undefined, opts: RawOptions, maxRecords: number): Promise<Subject> {
  const builtin = opts.builtin;
  if (typeof builtin === 'string') {
    if (file !== undefined) throw new TidemarkError('BAD_FLAG', `--builtin: checks a built-in job; give either FILE or --builtin, not both`);
    if (builtin !== 'sentiment') throw new TidemarkError('BAD_FLAG', `--builtin: "${builtin}" is not accepted; sentiment`);
    const keys = String(opts.keys ?? CHECK_JOB_OPTIONS.find((d) => d.key === 'keys')!.default);
    const definition = validateDefinition(sentimentJob({ keys: parseKeySpec(keys) }), '--builtin sentiment');
    return { name: `built-in sentiment job (--keys ${keys})`, definition, lists: recordLists({ arbitrary: sentimentPosts() }, maxRecords), from: 'generated posts of review sentences', notes: [] };
  }
  if (file === undefined) throw new TidemarkError('BAD_FLAG', 'FILE: required; a job module (.js or .mjs), or --builtin sentiment');
  if (opts.keys !== undefined) throw new TidemarkError('BAD_FLAG', '--keys: is an option of the built-in sentiment job (--builtin sentiment); a job module computes its own keys');
  const { definition, exports } = await loadJobModule(file, 'job module');
  const name = `${definition.name} (${file})`;
  let arbitrary = exports.arbitrary;
  if (typeof arbitrary === 'function') arbitrary = (arbitrary as (f: typeof fc) => unknown)(fc);
  if (arbitrary !== undefined) {
    if (!isArbitrary(arbitrary)) throw new TidemarkError('BAD_JOB', `${file}: the "arbitrary" export must be a fast-check Arbitrary of records (or a function fc => Arbitrary)`);
    return { name, definition, lists: recordLists({ arbitrary }, maxRecords), from: 'its "arbitrary" export', notes: [] };
  }
  const samples = exports.samples;
  if (samples !== undefined) {
    if (!Array.isArray(samples) || samples.length === 0) throw new TidemarkError('BAD_JOB', `${file}: the "samples" export must be a non-empty array of records`);
    return { name, definition, lists: recordLists({ samples }, maxRecords), from: `its "samples" export (${samples.length} records)`, examples: [samples.slice(0, 16)], notes: [] };
  }
  const note = `${file} exports neither "arbitrary" (a fast-check Arbitrary of records) nor "samples" (an array of records)`;
  if (typeof opts.samples !== 'string') throw new TidemarkError('BAD_FLAG', `--samples: required: ${note}; export one, or give --samples FILE.jsonl`);
  const { records, skipped } = samplesFile(opts.samples, definition);
  const notes = [`${note}: using the records of --samples ${opts.samples}`];
  if (skipped) notes.push(`${skipped} lines of ${opts.samples} were rejected by the job's decode and are not used`);
  return { name, definition, lists: recordLists({ samples: records }, maxRecords), from: `--samples ${opts.samples} (${records.length} records)`, examples: [records.slice(0, 16)], notes };
}

/** Formats one law's outcome: a line, and for a failure the counter-example and what broke. */
export function formatOutcome(o: LawOutcome): string {
  if (o.passed) return `  ok    ${o.title} (${o.runs} runs)`;
  const lines = [`  FAIL  ${o.title}`, `        ${o.detail ?? ''}`];
  if (o.counterexample) {
    lines.push(`        smallest counter-example (${o.counterexample.length} record${o.counterexample.length === 1 ? '' : 's'}, after ${o.shrinks ?? 0} shrinks):`);
    o.counterexample.forEach((r, i) => lines.push(`          records[${i}] = ${show(r)}`));
  }
  return lines.join('\n');
}

/** Entry point of `tidemark check-job`: returns the exit code. */
export async function checkJobCommand(argv: string[]): Promise<number> {
  const { opts, positional } = parseFlags(argv, CHECK_JOB_OPTIONS);
  if (opts.help) {
    const { optionHelp } = await import('../option-table.js');
    process.stdout.write(`${CHECK_JOB_USAGE}\n\nOptions:\n${optionHelp(CHECK_JOB_OPTIONS)}\n`);
    return 0;
  }
  if (positional.length > 1) throw new TidemarkError('BAD_FLAG', `FILE: unexpected second argument "${positional[1]}"; one job module FILE`);
  const runs = intOpt(opts, 'runs', 1, 1_000_000)!;
  const maxRecords = intOpt(opts, 'maxRecords', 1, 1000)!;
  const seed = intOpt(opts, 'seed', 0, 2 ** 31 - 1) ?? Date.now() % 2 ** 31;
  const subject = await subjectOf(positional[0], opts, maxRecords);
  for (const n of subject.notes) process.stdout.write(`check-job: ${n}\n`);
  process.stdout.write(`check-job ${subject.name}: records from ${subject.from}, ${runs} runs per law, seed ${seed}\n`);
  const outcomes = checkLaws(subject.definition, subject.lists, { runs, seed, ...(subject.examples ? { examples: subject.examples } : {}) });
  for (const o of outcomes) process.stdout.write(formatOutcome(o) + '\n');
  const failed = outcomes.filter((o) => !o.passed).length;
  if (failed === 0) {
    process.stdout.write(`${outcomes.length} laws passed\n`);
    return 0;
  }
  process.stdout.write(`${failed} of ${outcomes.length} laws failed (replay with --seed ${seed})\n`);
  return 1;
}
