// `startJob`: a job inside a Node program (the library form of `tidemark run`), with the micro
// service endpoints as today and the sinks' records as an async iterable.

import { mkdirSync, readFileSync, existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { connect, type NatsConnection } from 'nats';
import { TidemarkError } from '../errors.js';
import type { RawOptions } from '../option-table.js';
import { resolveJobConfig } from './run-options.js';
import { createLogger, type Logger } from '../log.js';
import { Job } from '../actors/job.js';
import { validateDefinition } from '../runtime/compiled-job.js';
import type { JobDefinition } from '../runtime/job-definition.js';
import type { ResultRecord } from '../runtime/records.js';
import type { WindowView } from '../runtime/window-operator.js';

/** Tidemark's version, from the package.json above this module (sources and dist/ alike). */
function packageVersion(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) return (JSON.parse(readFileSync(file, 'utf8')) as { version: string }).version;
  }
  return '0.0.0';
}
const VERSION = packageVersion();

/** Options of an embedded job: the flags of `tidemark run`, camel-cased. */
export interface StartOptions {
  /** a server URL (comma-separated for several) or a connection you own */
  nats: string | NatsConnection;
  stateDir?: string;
  job?: string;
  window?: string;
  maxOutOfOrderness?: string;
  allowedLateness?: string;
  emit?: 'updates' | 'final';
  sinks?: string[];
  lateSink?: string;
  dlqSink?: string;
  inputStream?: string;
  inputSubjects?: string[];
  checkpointInterval?: string;
  maxFuture?: string;
  /** input partitions: the token before the last of a subject (default 1); changing it later makes the state incompatible */
  inputPartitions?: number;
  /** a quiet input partition stops holding the watermark back after this long (default 0s: never) */
  idleTimeout?: string;
  /** window actors of this process */
  partitions?: number;
  /** the key space's fixed division (default 128); changing it later makes the state incompatible */
  keyGroups?: number;
  batchSize?: number;
  drain?: boolean;
  resetState?: boolean;
  fromCheckpoint?: string;
  logLevel?: string;
  /** a pino logger of your own */
  logger?: Logger;
}

/** A running embedded job. */
export interface JobHandle<Out extends object> {
  /** Every result the sinks write, in order, until the job stops. */
  results: AsyncIterable<ResultRecord & Out>;
  /** What the `status` endpoint answers. */
  status(): Record<string, unknown>;
  /** A key's windows, open ones included, with their machine state. */
  query(key: string): Promise<WindowView[]>;
  /** Takes a savepoint now; resolves with its checkpoint id. */
  checkpoint(name?: string): Promise<number>;
  /** Resolves when the job ends by itself (`drain`); rejects when it fails. */
  finished(): Promise<void>;
  /** Graceful stop: no more intake, flush, final checkpoint. */
  stop(): Promise<void>;
}

/** An unbounded queue read as an async iterable (one reader). */
class RecordQueue<T> implements AsyncIterable<T> {
  private items: T[] = [];
  private waiting?: (r: IteratorResult<T>) => void;
  private ended = false;

  push(items: readonly T[]): void {
    for (const it of items) {
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = undefined;
        w({ value: it, done: false });
      } else this.items.push(it);
    }
  }

  end(): void {
    this.ended = true;
    this.waiting?.({ value: undefined, done: true });
    this.waiting = undefined;
  }

  [Symbol.asyncIterator](): AsyncIterator<T> {
    return {
      next: () => {
        const it = this.items.shift();
        if (it !== undefined) return Promise.resolve({ value: it, done: false });
        if (this.ended) return Promise.resolve({ value: undefined, done: true });
        return new Promise((r) => (this.waiting = r));
      },
    };
  }
}

/** Options that are a flag's value as they are (the flag table's key is the same, but for lateness). */
const SAME_AS_FLAG = ['job', 'window', 'maxOutOfOrderness', 'emit', 'sinks', 'lateSink', 'dlqSink', 'inputStream', 'checkpointInterval', 'maxFuture', 'inputPartitions', 'idleTimeout', 'partitions', 'keyGroups', 'batchSize', 'stateDir', 'fromCheckpoint', 'logLevel'] as const;

function rawOptions(o: StartOptions): RawOptions {
  const raw: RawOptions = {};
  for (const key of SAME_AS_FLAG) {
    const v = o[key];
    if (v !== undefined) raw[key] = typeof v === 'number' ? String(v) : v;
  }
  if (o.allowedLateness !== undefined) raw.lateness = o.allowedLateness;
  if (o.inputSubjects !== undefined) raw.inputSubjects = o.inputSubjects.join(',');
  if (o.drain) raw.drain = true;
  if (o.resetState) raw.resetState = true;
  // Threads would need a module to load the job from; an embedded definition is prepared inline.
  raw.scoringThreads = '0';
  return raw;
}

/** Starts `def` as a job: restores its last checkpoint, registers the micro service, starts reading. */
export async function startJob<In, Acc, Out extends object>(def: JobDefinition<In, Acc, Out>, opts: StartOptions): Promise<JobHandle<Out>> {
  const definition = validateDefinition(def, 'startJob');
  const cfg = resolveJobConfig(rawOptions(opts), definition);
  const log = opts.logger ?? createLogger(cfg.logLevel);
  let nc: NatsConnection;
  const own = typeof opts.nats === 'string';
  if (typeof opts.nats === 'string') {
    try {
      nc = await connect({ servers: opts.nats.split(','), name: `tidemark-${cfg.job}` });
    } catch (e) {
      throw new TidemarkError('NATS_UNAVAILABLE', `cannot connect to NATS at ${opts.nats}: ${(e as Error).message}`, { cause: e });
    }
  } else nc = opts.nats;
  mkdirSync(cfg.stateDir, { recursive: true });
  let job: Job;
  try {
    job = await Job.start(cfg, nc, log);
  } catch (e) {
    if (own) await nc.close();
    throw e;
  }
  const { startService, jobStatus, queryPartitions } = await import('./service.js');
  const service = await startService(job, log, VERSION);
  const results = new RecordQueue<ResultRecord & Out>();
  job.sink.onOut = (m) => results.push(m.results as Array<ResultRecord & Out>);
  let closing: Promise<void> | undefined;
  const close = (): Promise<void> =>
    (closing ??= (async () => {
      results.end();
      await service.stop().catch(() => undefined);
      await job.close().catch(() => undefined);
      if (own) await nc.drain().catch(() => undefined);
    })());
  const running = job.run().then(
    () => close(),
    async (e: unknown) => {
      await job.abort().catch(() => undefined);
      await close();
      throw e;
    },
  );
  running.catch(() => undefined);
  return {
    results,
    status: () => jobStatus(job),
    query: async (key) => (await queryPartitions(job, { key })).flatMap((r) => r.windows),
    checkpoint: (name) => job.savepoint(name ?? `savepoint-${Date.now()}`).then((r) => r.id),
    finished: () => running,
    stop: async () => {
      job.source.stop();
      await running;
    },
  };
}
