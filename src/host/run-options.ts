// The options of a job (`tidemark run`'s flags, `--config FILE`, `startJob`'s options): one table
// that drives flag parsing, the config file, `--help` and the start-up log line, so no default is
// hidden anywhere else. It sits in host, not cli, because `startJob` resolves the same table.

import { DEFAULT_KEY_GROUPS, MAX_KEY_GROUPS, routingProblem } from '../runtime/key-groups.js';
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { TidemarkError } from '../errors.js';
import type { OptionDef, RawOptions } from '../option-table.js';
import { parseDuration } from '../runtime/duration.js';
import { parseWindowSpec } from '../runtime/windows.js';
import { parseKeySpec, type KeySpec } from '../runtime/keys.js';
import { compileJob } from '../runtime/compiled-job.js';
import { sentimentJob } from '../runtime/sentiment-job.js';
import type { AnyJobDefinition } from '../runtime/job-definition.js';
import type { WindowSpec } from '../runtime/windows.js';
import type { JobConfig } from '../runtime/job-config.js';
import { JOB_NAME } from '../io/subjects.js';
import { parseSinkSpec } from '../io/sink-spec.js';
import { NATS_AUTH_OPTIONS, natsAuthFrom } from '../io/connect.js';

/**
 * Scoring threads only pay off with cores to spare: the source thread, V8's GC threads and a local
 * nats-server already fill two (measured: 100k posts took 4.3 s with one thread, 3.6 s without, on 2 cores).
 */
const DEFAULT_SCORING_THREADS = Math.max(0, Math.min(4, availableParallelism() - 2));

/** Options of `tidemark run`. */
export const RUN_OPTIONS: OptionDef[] = [
  { flag: '--nats', key: 'nats', kind: 'string', arg: 'URL', help: 'NATS server(s) to use, comma-separated; without it an embedded nats-server is started' },
  ...NATS_AUTH_OPTIONS,
  { flag: '--job', key: 'job', kind: 'string', arg: 'NAME', help: 'job name (scopes subjects, consumers and state)', default: 'sentiment' },
  { flag: '--input-stream', key: 'inputStream', kind: 'string', arg: 'NAME', help: 'JetStream stream holding the posts (created when missing)', default: 'POSTS' },
  { flag: '--input-subjects', key: 'inputSubjects', kind: 'list', arg: 'SUBJ', help: 'subjects of the input stream, comma-separated', default: 'posts.>' },
  { flag: '--window', key: 'window', kind: 'string', arg: 'SPEC', help: 'tumbling:SIZE | sliding:SIZE,SLIDE | session:GAP (required)' },
  { flag: '--max-out-of-orderness', key: 'maxOutOfOrderness', kind: 'dur', arg: 'DUR', help: 'watermark = max event time seen minus this bound', default: '5s' },
  { flag: '--allowed-lateness', key: 'lateness', kind: 'dur', arg: 'DUR', help: 'how long after firing a window still accepts late posts', default: '0s' },
  { flag: '--input-partitions', key: 'inputPartitions', kind: 'int', arg: 'N', help: 'input partitions: the token before the last of a post\'s subject (set by the server mapping {{partition(N,1)}}); the watermark is the minimum over partitions that are not idle; in a group of two or more, each partition is read on a member and merged back into input order; fixed for the life of the state', default: '1' },
  { flag: '--idle-timeout', key: 'idleTimeout', kind: 'dur', arg: 'DUR', help: 'an input partition with no post for this long stops holding the watermark back (0 = never)', default: '0s' },
  { flag: '--job-module', key: 'jobModule', kind: 'string', arg: 'FILE', help: 'run your own job: an ES module whose default export is a job definition (defineJob)' },
  { flag: '--keys', key: 'keys', kind: 'string', arg: 'LIST', help: 'sentiment job: comma-separated: hashtags, all, keyword:WORD', default: 'hashtags' },
  { flag: '--examples', key: 'examples', kind: 'bool', help: 'sentiment job: each window keeps its most negative and most positive post (shown by query and the dashboard)' },
  { flag: '--max-future', key: 'maxFuture', kind: 'dur', arg: 'DUR', help: 'a post stamped further ahead of the wall clock is dead-lettered (future_ts) and does not move the watermark', default: '1h' },
  { flag: '--emit', key: 'emit', kind: 'string', arg: 'MODE', help: 'updates (a revision per change, final record at close) | final (one record per window)', default: 'updates' },
  { flag: '--sink', key: 'sinks', kind: 'string', arg: 'SPEC', repeat: true, help: 'jsonl:PATH | nats:SUBJECT | jetstream:STREAM[:SUBJECT] | postgres://USER[:PASS]@HOST[:PORT]/DB[?prefix=NAME]; repeatable', default: 'nats:tidemark.<job>.results' },
  { flag: '--late-sink', key: 'lateSink', kind: 'string', arg: 'SPEC', help: 'where late records go', default: 'nats:tidemark.<job>.late' },
  { flag: '--dlq-sink', key: 'dlqSink', kind: 'string', arg: 'SPEC', help: 'where dead-letter records go', default: 'nats:tidemark.<job>.dlq' },
  { flag: '--state-dir', key: 'stateDir', kind: 'string', arg: 'DIR', help: 'checkpoints (LevelDB) and the embedded server store', default: '.tidemark' },
  { flag: '--checkpoint-interval', key: 'checkpointInterval', kind: 'dur', arg: 'DUR', help: 'time between checkpoints (0 = only at shutdown)', default: '1s' },
  { flag: '--checkpoint-timeout', key: 'checkpointTimeout', kind: 'dur', arg: 'DUR', help: 'a checkpoint not complete this long after its barrier, or a batch not acknowledged this long (a lost message, a dead actor), restarts the job from its last checkpoint (0 = never)', default: '2m' },
  { flag: '--retain', key: 'retain', kind: 'int', arg: 'N', help: 'complete checkpoints kept', default: '3' },
  { flag: '--from-checkpoint', key: 'fromCheckpoint', kind: 'string', arg: 'ID', help: 'start from this checkpoint or savepoint instead of the newest' },
  { flag: '--reset-state', key: 'resetState', kind: 'bool', help: 'discard the state in --state-dir and start from the beginning of the input' },
  { flag: '--drain', key: 'drain', kind: 'bool', help: 'process what the input holds at start, emit every window, exit 0' },
  { flag: '--partitions', key: 'partitions', kind: 'int', arg: 'N', help: 'window actors in this process, each owning a range of key groups (may change between runs)', default: '2' },
  { flag: '--key-groups', key: 'keyGroups', kind: 'int', arg: 'N', help: `the key space's division into groups that move between actors as units; fixed for the life of the state (max ${MAX_KEY_GROUPS})`, default: `${DEFAULT_KEY_GROUPS}` },
  { flag: '--group', key: 'group', kind: 'bool', help: 'insist on running as one instance of a group (the default with --nats and no jsonl: sink): every `tidemark run` of the same --job on the same NATS shares the job' },
  { flag: '--lease-ttl', key: 'leaseTtl', kind: 'dur', arg: 'DUR', help: 'a group: how long a dead instance keeps its coordinator role or key groups before another takes them over', default: '5s' },
  { flag: '--batch-size', key: 'batchSize', kind: 'int', arg: 'N', help: 'posts per batch between actors', default: '1000' },
  { flag: '--prepare-on-members', key: 'prepareOnMembers', kind: 'bool', help: 'a group: the coordinator sends batches of raw input to the members to decode, key and score (pays when preparing a post costs more than shipping it: a heavy job\'s parse, machines of their own)' },
  { flag: '--scoring-threads', key: 'scoringThreads', kind: 'int', arg: 'N', help: 'worker threads that parse and score posts (0 = on the source thread)', default: `${DEFAULT_SCORING_THREADS}` },
  { flag: '--log-level', key: 'logLevel', kind: 'string', arg: 'LEVEL', help: 'fatal | error | warn | info | debug | trace', default: 'info' },
  { flag: '--metrics-port', key: 'metricsPort', kind: 'int', arg: 'PORT', help: 'serve Prometheus metrics on this port' },
  { flag: '--dashboard', key: 'dashboardPort', kind: 'int', arg: 'PORT', help: 'serve the live dashboard on this port of 127.0.0.1 (0 = a free one)' },
  { flag: '--config', key: 'config', kind: 'string', arg: 'FILE', help: 'JSON file with the same options (keys as flag names without --); flags win' },
];

/** Input partitions a job may have (the mapping's partition tokens are 0 … N-1). */
export const MAX_INPUT_PARTITIONS = 1024;

const asString = (v: unknown): string => (Array.isArray(v) ? v.map(String).join(',') : String(v));

/** Reads `--config FILE` (JSON, keys are flag names without `--`) into raw options. */
export function readConfigFile(path: string, table: readonly OptionDef[]): RawOptions {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new TidemarkError('BAD_CONFIG', `--config: cannot read ${path}: ${(e as Error).message}`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new TidemarkError('BAD_CONFIG', `--config: ${path} must hold a JSON object`);
  const out: RawOptions = {};
  for (const [name, value] of Object.entries(json as Record<string, unknown>)) {
    const def = table.find((d) => d.flag === `--${name}`);
    if (!def || def.key === 'config') throw new TidemarkError('BAD_CONFIG', `--config: ${path}: unknown option "${name}"`);
    if (def.kind === 'bool') out[def.key] = value === true;
    else if (def.repeat) out[def.key] = Array.isArray(value) ? value.map(String) : [String(value)];
    else out[def.key] = asString(value);
  }
  return out;
}

function int(v: string, flag: string, min: number, max: number): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < min || n > max) throw new TidemarkError('BAD_FLAG', `${flag}: "${v}" is not accepted; an integer from ${min} to ${max}`);
  return n;
}

/** Raw options: the config file's, then the flags (which win). */
export function rawRunOptions(flags: RawOptions): RawOptions {
  const file = typeof flags.config === 'string' ? readConfigFile(flags.config, RUN_OPTIONS) : {};
  return { ...file, ...flags };
}

/**
 * Resolves raw options (config file, then flags) into a validated job configuration. With a job
 * definition (`--job-module`), its defaults (name, window, bounds, emit) apply where no flag is given.
 */
export function resolveJobConfig(flags: RawOptions, definition?: AnyJobDefinition): JobConfig {
  const raw = rawRunOptions(flags);
  if (definition && raw.examples === true) throw new TidemarkError('BAD_FLAG', '--examples: is an option of the built-in sentiment job; a --job-module keeps what its aggregate keeps');
  if (definition && raw.keys !== undefined) throw new TidemarkError('BAD_FLAG', '--keys: is an option of the built-in sentiment job; a --job-module computes its own keys');
  const fromDef: Record<string, string | undefined> = definition
    ? { job: definition.name, window: definition.window, maxOutOfOrderness: definition.maxOutOfOrderness, lateness: definition.allowedLateness, emit: definition.emit }
    : {};
  const get = (key: string): string | undefined => {
    const def = RUN_OPTIONS.find((d) => d.key === key)!;
    const v = raw[key];
    if (v === undefined) return fromDef[key] ?? def.default;
    return Array.isArray(v) ? v[v.length - 1] : String(v);
  };
  const job = get('job')!;
  if (!JOB_NAME.test(job)) throw new TidemarkError('BAD_FLAG', `--job: "${job}" is not accepted; 1-64 letters, digits, _ or -`);
  const windowText = get('window');
  if (windowText === undefined) throw new TidemarkError('BAD_FLAG', '--window: required; accepted: tumbling:SIZE, sliding:SIZE,SLIDE, session:GAP');
  const window: WindowSpec = parseWindowSpec(windowText);
  const emit = get('emit');
  if (emit !== 'updates' && emit !== 'final') throw new TidemarkError('BAD_FLAG', `--emit: "${emit}" is not accepted; updates or final`);
  const logLevel = get('logLevel')!;
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) {
    throw new TidemarkError('BAD_FLAG', `--log-level: "${logLevel}" is not accepted; fatal, error, warn, info, debug, trace, silent`);
  }
  const sinksRaw = raw.sinks === undefined ? [`nats:tidemark.${job}.results`] : (raw.sinks as string[]);
  const keys: KeySpec | undefined = definition ? undefined : parseKeySpec(get('keys')!);
  const metrics = get('metricsPort');
  const dashboard = get('dashboardPort');
  const inputSubjects = get('inputSubjects')!.split(',').map((s) => s.trim()).filter(Boolean);
  if (inputSubjects.length === 0) throw new TidemarkError('BAD_FLAG', '--input-subjects: needs at least one subject');
  const inputStream = get('inputStream')!;
  const cfg: JobConfig = {
    job,
    window,
    maxOutOfOrderness: parseDuration(get('maxOutOfOrderness')!, '--max-out-of-orderness'),
    lateness: parseDuration(get('lateness')!, '--allowed-lateness'),
    emit,
    compiled: compileJob(definition ?? sentimentJob({ keys: keys!, examples: raw.examples === true }), { stream: inputStream, lateIdField: definition ? 'recordId' : 'postId' }),
    maxFuture: parseDuration(get('maxFuture')!, '--max-future'),
    inputStream,
    inputSubjects,
    idleTimeout: parseDuration(get('idleTimeout')!, '--idle-timeout'),
    inputPartitions: int(get('inputPartitions')!, '--input-partitions', 1, MAX_INPUT_PARTITIONS),
    sinks: sinksRaw.map((s) => parseSinkSpec(s, '--sink')),
    lateSink: parseSinkSpec(raw.lateSink === undefined ? `nats:tidemark.${job}.late` : get('lateSink')!, '--late-sink'),
    dlqSink: parseSinkSpec(raw.dlqSink === undefined ? `nats:tidemark.${job}.dlq` : get('dlqSink')!, '--dlq-sink'),
    stateDir: get('stateDir')!,
    checkpointInterval: parseDuration(get('checkpointInterval')!, '--checkpoint-interval'),
    checkpointTimeout: parseDuration(get('checkpointTimeout')!, '--checkpoint-timeout'),
    drain: raw.drain === true,
    partitions: int(get('partitions')!, '--partitions', 1, 256),
    keyGroups: int(get('keyGroups')!, '--key-groups', 1, MAX_KEY_GROUPS),
    batchSize: int(get('batchSize')!, '--batch-size', 1, 100_000),
    scoringThreads: int(get('scoringThreads')!, '--scoring-threads', 0, 64),
    prepareOnMembers: raw.prepareOnMembers === true,
    retain: int(get('retain')!, '--retain', 1, 1000),
    leaseTtl: parseDuration(get('leaseTtl')!, '--lease-ttl'),
    resetState: raw.resetState === true,
    logLevel,
    natsAuth: natsAuthFrom(get),
  };
  const routing = routingProblem({ keyGroups: cfg.keyGroups, actors: cfg.partitions });
  if (routing) throw new TidemarkError('BAD_FLAG', routing);
  if (keys) cfg.keys = keys;
  if (raw.examples === true) cfg.examples = true;
  // A job on a NATS of the user's with sinks every machine reaches is a group: the same command on
  // more processes shares it. A jsonl: file lives on one machine's disk, so such a job runs alone (lock).
  const local = [...cfg.sinks, cfg.lateSink, cfg.dlqSink].find((s) => s.kind === 'jsonl');
  if (raw.group === true && local) throw new TidemarkError('BAD_FLAG', `--group: a jsonl: sink (${local.kind === 'jsonl' ? local.path : ''}) lives on one machine's disk and cannot follow the coordinator role between machines; use jetstream:, postgres:// or nats: sinks in a group`);
  if (raw.group === true && raw.nats === undefined) throw new TidemarkError('BAD_FLAG', '--group: needs --nats (the instances of a group share a NATS server or cluster; an embedded one lives and dies with its process)');
  if (raw.nats !== undefined && !local) cfg.group = true;
  if (cfg.leaseTtl < 500 || cfg.leaseTtl > 3_600_000) throw new TidemarkError('BAD_FLAG', `--lease-ttl: ${get('leaseTtl')} is not accepted; a duration from 500ms to 1h`);
  const jobModule = get('jobModule');
  if (jobModule !== undefined) cfg.jobModule = jobModule;
  if (!/^[A-Za-z0-9_-]+$/.test(cfg.inputStream)) throw new TidemarkError('BAD_FLAG', `--input-stream: "${cfg.inputStream}" is not a stream name (letters, digits, _ and -)`);
  const from = get('fromCheckpoint');
  if (from !== undefined) cfg.fromCheckpoint = from;
  if (metrics !== undefined) cfg.metricsPort = int(metrics, '--metrics-port', 0, 65535);
  if (dashboard !== undefined) cfg.dashboardPort = int(dashboard, '--dashboard', 0, 65535);
  if (typeof raw.nats === 'string') cfg.nats = get('nats')!;
  return cfg;
}
