// A job's definition as it runs (what `tidemark run` and `startJob` resolve their options into),
// and the settings that make saved state incompatible when they change.

import { formatDuration } from './duration.js';
import { formatWindowSpec } from './windows.js';
import type { KeySpec } from './keys.js';
import type { JobSemantics } from './ingest.js';
import type { SinkSpec } from '../io/sink-spec.js';
import type { NatsAuth } from '../io/connect.js';

export interface JobConfig extends JobSemantics {
  /** the sentiment job's keys (absent with a job module) */
  keys?: KeySpec;
  /** the sentiment job keeps example posts per window */
  examples?: boolean;
  /** `--job-module`: the user's job module, as given */
  jobModule?: string;
  nats?: string;
  natsAuth: NatsAuth;
  inputStream: string;
  inputSubjects: string[];
  idleTimeout: number;
  /** `--input-partitions`: the input's partitions (the token before the last of a subject); 1 = the stream is one partition */
  inputPartitions: number;
  sinks: SinkSpec[];
  lateSink: SinkSpec;
  dlqSink: SinkSpec;
  stateDir: string;
  checkpointInterval: number;
  /** a checkpoint not complete this long after its barrier restarts the job from the last one (ms; 0 = never) */
  checkpointTimeout: number;
  drain: boolean;
  /** window actors of this process (each owns a contiguous range of key groups) */
  partitions: number;
  /** `--key-groups`: the key space's fixed division, for the life of the job's state */
  keyGroups: number;
  batchSize: number;
  scoringThreads: number;
  /** a group's coordinator has its members prepare (decode, key, score) batches of input */
  prepareOnMembers?: boolean;
  retain: number;
  /** `--group`: one instance of a job shared by many processes */
  group?: boolean;
  /** a group's lease lifetime (ms) */
  leaseTtl: number;
  resetState: boolean;
  fromCheckpoint?: string;
  logLevel: string;
  metricsPort?: number;
  /** Serve the live dashboard on this port of 127.0.0.1 from the job's process. */
  dashboardPort?: number;
}

/** What a setting absent from a fingerprint stands for (state written before it existed). */
export const FINGERPRINT_DEFAULTS: Readonly<Record<string, string>> = { 'input-partitions': '1' };

/** The settings that make saved state incompatible when they change. */
export function stateFingerprint(cfg: JobConfig): Record<string, string> {
  return {
    job: cfg.job,
    window: formatWindowSpec(cfg.window),
    'allowed-lateness': formatDuration(cfg.lateness),
    'max-out-of-orderness': formatDuration(cfg.maxOutOfOrderness),
    ...(cfg.keys ? { keys: [cfg.keys.hashtags ? 'hashtags' : '', cfg.keys.all ? 'all' : '', ...cfg.keys.keywords.map((k) => `keyword:${k}`)].filter(Boolean).join(',') } : { 'job-module': cfg.compiled.def.name }),
    ...(cfg.examples ? { examples: 'on' } : {}),
    emit: cfg.emit,
    'key-groups': String(cfg.keyGroups),
    'input-stream': cfg.inputStream,
    // One partition is how state was always written: absent, so that state stays compatible.
    ...(cfg.inputPartitions > 1 ? { 'input-partitions': String(cfg.inputPartitions) } : {}),
  };
}
