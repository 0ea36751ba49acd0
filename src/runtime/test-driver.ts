// Runs a job definition over records in memory with the engine's own runtime (ingest, routing,
// window operator): for users' unit tests, like Kafka Streams' TopologyTestDriver.

import { compileJob, validateDefinition } from './compiled-job.js';
import { Ingestor } from './ingest.js';
import { WindowOperator } from './window-operator.js';
import { parseWindowSpec } from './windows.js';
import { parseDuration } from './duration.js';
import { TidemarkError } from '../errors.js';
import type { JobDefinition } from './job-definition.js';
import type { DeadLetterRecord, LateRecord, ResultRecord } from './records.js';
import type { EmitMode } from './window-machine.js';

export interface TestOptions {
  /** `tumbling:1m` etc.; default the definition's */
  window?: string;
  maxOutOfOrderness?: string;
  allowedLateness?: string;
  emit?: EmitMode;
  /** job name in ids (default the definition's name) */
  job?: string;
}

/** A window result with the job's result fields. */
export type TestResult<Out> = ResultRecord & Out;

export interface TestOutput<Out> {
  results: Array<TestResult<Out>>;
  late: LateRecord[];
  deadLetters: DeadLetterRecord[];
}

const enc = new TextEncoder();

/** Feeds records one at a time, with a watermark you can drive by hand. */
export class TestDriver<In, Acc, Out extends object> {
  private readonly ingest: Ingestor;
  private readonly operator: WindowOperator;
  private seq = 0;
  private readonly out: TestOutput<Out> = { results: [], late: [], deadLetters: [] };

  constructor(def: JobDefinition<In, Acc, Out>, opts: TestOptions = {}) {
    const checked = validateDefinition(def);
    // Records are given as values: decode is the identity (a payload is only built for dead letters).
    const values = new Map<number, unknown>();
    const compiled = compileJob({ ...checked, decode: (b: Uint8Array) => values.get(Number(new TextDecoder().decode(b))) }, { stream: 'test' });
    this.values = values;
    const windowText = opts.window ?? def.window;
    if (windowText === undefined) throw new TidemarkError('BAD_FLAG', 'window: required (in the options or the definition), e.g. tumbling:1m');
    const sem = {
      job: opts.job ?? def.name,
      window: parseWindowSpec(windowText, 'window'),
      maxOutOfOrderness: parseDuration(opts.maxOutOfOrderness ?? def.maxOutOfOrderness ?? '0s', 'maxOutOfOrderness'),
      lateness: parseDuration(opts.allowedLateness ?? def.allowedLateness ?? '0s', 'allowedLateness'),
      emit: opts.emit ?? def.emit ?? 'updates',
      compiled,
    };
    this.ingest = new Ingestor(sem, { keyGroups: 1, actors: 1 });
    this.operator = new WindowOperator({ job: sem.job, window: sem.window, lateness: sem.lateness, mode: sem.emit, compiled });
  }

  private readonly values: Map<number, unknown>;

  /** Processes one record (judged against the watermark in force before it). */
  send(record: In): this {
    const seq = ++this.seq;
    this.values.set(seq, record);
    this.ingest.accept(enc.encode(String(seq)), 'test', seq);
    this.values.delete(seq);
    // A dead letter shows the record itself, not the internal handle it travelled as.
    for (const d of this.ingest.dead) if (d.seq === seq) d.payload = safeJson(record);
    return this.deliver();
  }

  /** Moves the watermark to `w` (ms) when that is later than the current one. */
  advanceWatermark(w: number): this {
    this.ingest.advanceWatermark(w);
    return this.deliver();
  }

  /** End of input: the watermark becomes +∞ and every window fires and closes. */
  end(): this {
    this.ingest.end();
    return this.deliver();
  }

  /** The watermark in force. */
  get watermark(): number {
    return this.ingest.watermark;
  }

  /** Everything produced so far. */
  output(): TestOutput<Out> {
    return { results: [...this.out.results], late: [...this.out.late], deadLetters: [...this.out.deadLetters] };
  }

  private deliver(): this {
    const [ops] = this.ingest.router.take();
    this.operator.apply(ops!);
    const { results, late } = this.operator.drainOutput();
    this.out.results.push(...(results as Array<TestResult<Out>>));
    this.out.late.push(...late);
    this.out.deadLetters.push(...this.ingest.takeDead());
    return this;
  }
}

function safeJson(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** Runs `records` through the job and ends the input (every window fires and closes). */
export function testJob<In, Acc, Out extends object>(def: JobDefinition<In, Acc, Out>, records: readonly In[], opts: TestOptions & { drain?: boolean } = {}): TestOutput<Out> {
  const d = new TestDriver(def, opts);
  for (const r of records) d.send(r);
  if (opts.drain ?? true) d.end();
  return d.output();
}
