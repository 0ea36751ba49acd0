// Prometheus metrics of a running job on `--metrics-port` (prom-client over node:http), named the
// way Flink and Spark operators know them: numRecordsIn/Out, numLateRecordsDropped, watermark lag, checkpoints.

import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { JetStreamManager } from 'nats';
import type { Job } from '../actors/job.js';
import type { Logger } from '../log.js';
import { TidemarkError } from '../errors.js';
import { windowsByState } from './service.js';

const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];
const CHECKPOINT_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
/** Rates are averaged over this many one-second samples (Flink's meters use a 60 s window; shorter suits a live job). */
const RATE_SAMPLES = 10;

/** Sets a counter to a total kept elsewhere (the job's own counters, restored from checkpoints). */
const setTotal = (c: Counter, total: number): void => {
  c.reset();
  c.inc(Math.max(0, total));
};

/** The metrics of one job process; attach() points them at the running job (it changes after a restart). */
export class JobMetrics {
  readonly registry = new Registry();
  private job?: Job;
  private jsm?: JetStreamManager;
  private readonly samples: Array<{ t: number; inN: number; outN: number }> = [];
  private readonly sampler: NodeJS.Timeout;
  private readonly latency: Histogram;
  private readonly checkpointDuration: Histogram;
  private readonly checkpoints: Counter;
  private readonly lastCheckpointDuration: Gauge;
  private readonly lastCheckpointSize: Gauge;

  constructor(jobName: string) {
    const registers = [this.registry];
    this.registry.setDefaultLabels({ job_name: jobName });
    collectDefaultMetrics({ register: this.registry });
    const self = this;
    const counter = (name: string, help: string, read: (j: Job) => number): Counter =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          if (self.job) setTotal(this, read(self.job));
        },
      });
    counter('tidemark_num_records_in_total', 'Posts read from the input and accepted (Flink numRecordsIn)', (j) => j.source.counters.postsIn);
    counter('tidemark_num_records_out_total', 'Window results emitted to the sinks (Flink numRecordsOut)', (j) => j.sink.counts.results);
    counter('tidemark_num_late_records_dropped_total', 'Late records: (post, key, window) dropped because the window had closed (Flink numLateRecordsDropped)', (j) => j.sink.counts.late);
    counter('tidemark_num_dead_letter_records_total', 'Malformed input messages sent to the dead-letter output', (j) => j.sink.counts.dead);
    counter('tidemark_internal_messages_rejected_total', 'Internal actor messages refused: garbage, forged, replayed or of an earlier run', (j) => j.channel.rejects.total);
    // A gauge read from the job at scrape time; undefined leaves it without a sample.
    const gauge = (name: string, help: string, read: (j: Job) => number | undefined): Gauge =>
      new Gauge({
        name,
        help,
        registers,
        collect() {
          const v = self.job ? read(self.job) : undefined;
          if (v === undefined) this.reset();
          else this.set(v);
        },
      });
    gauge('tidemark_num_records_in_per_second', `Posts accepted per second, averaged over the last ${RATE_SAMPLES} s (Flink numRecordsInPerSecond)`, () => self.rate('inN'));
    gauge('tidemark_num_records_out_per_second', `Results emitted per second, averaged over the last ${RATE_SAMPLES} s (Flink numRecordsOutPerSecond)`, () => self.rate('outN'));
    gauge('tidemark_current_input_watermark_ms', 'Event-time watermark of the job, ms since the epoch (Flink currentInputWatermark); -Inf before the first post', (j) => j.source.ingest.watermark);
    gauge('tidemark_watermark_lag_seconds', 'Wall-clock time minus the watermark, in seconds (how far event time trails now)', (j) => {
      const wm = j.source.ingest.watermark;
      return Number.isFinite(wm) ? (Date.now() - wm) / 1000 : undefined;
    });
    gauge('tidemark_input_sequence', 'Last input stream sequence read', (j) => j.source.seq);
    new Gauge({
      name: 'tidemark_input_pending_records',
      help: 'Input stream messages not read yet (consumer lag, like Kafka records-lag)',
      registers,
      async collect() {
        const lag = await self.consumerLag();
        if (lag === undefined) this.reset();
        else this.set(lag);
      },
    });
    new Gauge({
      name: 'tidemark_windows',
      help: 'Windows by lifecycle state: open, pending (fired, accepting late posts), closed_awaiting_checkpoint',
      labelNames: ['state'],
      registers,
      collect() {
        if (!self.job) return;
        const c = windowsByState(self.job);
        this.set({ state: 'open' }, c.open);
        this.set({ state: 'pending' }, c.pending);
        this.set({ state: 'closed_awaiting_checkpoint' }, c.closedAwaitingCheckpoint);
      },
    });
    new Gauge({
      name: 'tidemark_input_partition_watermark_ms',
      help: 'Event-time watermark of each input partition (--input-partitions), ms since the epoch; -Inf before its first post',
      labelNames: ['partition'],
      registers,
      collect() {
        this.reset();
        if (!self.job || self.job.cfg.inputPartitions < 2) return;
        for (const i of self.job.source.ingest.tracker.partitions()) this.set({ partition: i.partition }, i.watermark);
      },
    });
    new Gauge({
      name: 'tidemark_input_partition_idle',
      help: '1 while an input partition is idle (no post for --idle-timeout: it does not hold the watermark back), else 0',
      labelNames: ['partition'],
      registers,
      collect() {
        this.reset();
        if (!self.job || self.job.cfg.inputPartitions < 2) return;
        for (const i of self.job.source.ingest.tracker.partitions()) this.set({ partition: i.partition }, i.idle ? 1 : 0);
      },
    });
    this.latency = new Histogram({ name: 'tidemark_processing_latency_seconds', help: 'Time from the source sending a batch to the sink writing its output', buckets: LATENCY_BUCKETS, registers });
    this.checkpointDuration = new Histogram({ name: 'tidemark_checkpoint_duration_seconds', help: 'Time to complete a checkpoint (sink flush and LevelDB batch)', buckets: CHECKPOINT_BUCKETS, registers });
    this.checkpoints = new Counter({ name: 'tidemark_num_completed_checkpoints_total', help: 'Checkpoints completed (Flink numberOfCompletedCheckpoints)', registers });
    this.lastCheckpointDuration = new Gauge({ name: 'tidemark_last_checkpoint_duration_seconds', help: 'Duration of the last checkpoint (Flink lastCheckpointDuration)', registers });
    this.lastCheckpointSize = new Gauge({ name: 'tidemark_last_checkpoint_size_bytes', help: 'Bytes written by the last checkpoint (Flink lastCheckpointSize)', registers });
    this.sampler = setInterval(() => this.sample(), 1000);
    this.sampler.unref();
  }

  /** Points the metrics at `job` and hooks its sink (latency, checkpoints). */
  attach(job: Job): void {
    this.job = job;
    this.samples.length = 0;
    this.sample();
    const sink = job.sink;
    const onOut = sink.onOut;
    sink.onOut = (m) => {
      onOut?.(m);
      if (m.from >= 0 && m.at !== undefined) this.latency.observe(Math.max(0, Date.now() - m.at) / 1000);
    };
    const onCheckpoint = sink.onCheckpoint;
    sink.onCheckpoint = (e) => {
      onCheckpoint?.(e);
      this.checkpoints.inc();
      this.checkpointDuration.observe(e.ms / 1000);
      this.lastCheckpointDuration.set(e.ms / 1000);
      this.lastCheckpointSize.set(e.meta.bytes);
    };
  }

  /** Stops sampling. */
  close(): void {
    clearInterval(this.sampler);
  }

  private sample(): void {
    if (!this.job) return;
    this.samples.push({ t: Date.now(), inN: this.job.source.counters.postsIn, outN: this.job.sink.counts.results });
    if (this.samples.length > RATE_SAMPLES + 1) this.samples.shift();
  }

  private rate(field: 'inN' | 'outN'): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last || last.t === first.t) return 0;
    return ((last[field] - first[field]) * 1000) / (last.t - first.t);
  }

  private async consumerLag(): Promise<number | undefined> {
    const job = this.job;
    if (!job) return undefined;
    try {
      this.jsm ??= await job.nc.jetstreamManager();
      const info = await this.jsm.streams.info(job.cfg.inputStream);
      return Math.max(0, info.state.last_seq - job.source.seq);
    } catch {
      return undefined;
    }
  }
}

/** Serves `registry` at http://HOST:port/metrics; resolves once listening (port 0 picks a free one). */
export async function serveMetrics(metrics: JobMetrics, port: number, log: Logger): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '/').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: metrics are at /metrics\n');
      return;
    }
    metrics.registry.metrics().then(
      (body) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(body),
      (e: unknown) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${(e as Error).message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, () => resolve());
  }).catch((e: unknown) => {
    throw new TidemarkError('BAD_FLAG', `--metrics-port: cannot listen on port ${port}: ${(e as Error).message}`);
  });
  const addr = server.address();
  const bound = typeof addr === 'object' && addr ? addr.port : port;
  log.info({ metricsPort: bound }, `Prometheus metrics on http://0.0.0.0:${bound}/metrics`);
  return {
    port: bound,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
