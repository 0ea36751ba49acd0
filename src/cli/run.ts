// `tidemark run`: a job as a NATS microservice, restarted from its last checkpoint when NATS fails
// over, stopped gracefully (final checkpoint) on SIGTERM.

import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { connectNats, redactUrl } from '../io/connect.js';
import { stepEngineFromEnv } from '../runtime/window-step.js';
import { TidemarkError } from '../errors.js';
import { parseFlags, optionHelp, type OptionDef } from '../option-table.js';
import { RUN_OPTIONS, resolveJobConfig, rawRunOptions } from '../host/run-options.js';
import type { JobConfig } from '../runtime/job-config.js';
import { createLogger } from '../log.js';
import { EmbeddedNats } from '../io/nats-server.js';
import { partitionMappings } from '../io/subjects.js';
import { Job } from '../actors/job.js';
import { reconnectBackoff, retryTransient } from '../io/reconnect.js';
import { Instance } from '../host/instance.js';
import { GroupInstance } from '../host/group.js';
import { isTransientNatsError } from '../io/nats-errors.js';
import { loadJobModule } from '../io/job-loader.js';
import { VERSION } from './options.js';

/** How long SIGTERM waits for the final checkpoint before stopping without it; then for the abort. */
const STOP_GRACE_MS = 10_000;
const ABORT_GRACE_MS = 2_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Starts the job, again and again while NATS fails transiently (a cluster electing leaders), with backoff. */
function startRetrying(start: () => Promise<Job>, log: ReturnType<typeof createLogger>, stopping: () => boolean): Promise<Job> {
  return retryTransient(start, { stopping, onRetry: (e, wait) => log.warn({ err: e.message }, `the job could not start (${e.message}); trying again in ${Math.round(wait)} ms`) });
}

const RUN_HELP_OPTIONS: OptionDef[] = [...RUN_OPTIONS, { flag: '--help', key: 'help', kind: 'bool', help: 'this help' }];

export async function run(argv: string[]): Promise<number> {
  const { opts, positional } = parseFlags(argv, RUN_HELP_OPTIONS);
  if (opts.help) {
    process.stdout.write(
      `Usage: tidemark run --window SPEC [options]\n\nRuns a job: reads records from a JetStream stream and aggregates them in event-time windows per key;\nthe built-in job scores posts (AFINN) and counts them, --job-module FILE runs your own. Window\nresults go to the sinks. DUR is like 250ms, 30s, 10m, 1h.\n\nOptions:\n${optionHelp(RUN_HELP_OPTIONS)}\n`,
    );
    return 0;
  }
  if (positional.length) throw new TidemarkError('BAD_FLAG', `run: unexpected argument "${positional[0]}"; options start with --`);
  const moduleFile = rawRunOptions(opts).jobModule;
  const definition = typeof moduleFile === 'string' ? (await loadJobModule(moduleFile)).definition : undefined;
  const cfg = resolveJobConfig(opts, definition);
  // A bad TIDEMARK_WINDOW_STEP is named now, before anything starts.
  stepEngineFromEnv();
  const log = createLogger(cfg.logLevel);
  let embedded: EmbeddedNats | undefined;
  let url = cfg.nats;
  if (!url) {
    // A partitioned input: the embedded server maps `<base>.in.*` onto the partitions (README, Partitioned input).
    const mappings = cfg.inputPartitions > 1 ? partitionMappings(cfg.inputSubjects, cfg.inputPartitions) : {};
    if (cfg.inputPartitions > 1 && Object.keys(mappings).length === 0) {
      throw new TidemarkError('BAD_FLAG', `--input-partitions: the embedded nats-server partitions <base>.in.* for input subjects <base>.>, and ${cfg.inputSubjects.join(',')} has none; give such --input-subjects or --nats a server with your own mapping`);
    }
    embedded = await EmbeddedNats.start(join(cfg.stateDir, 'nats'), { mappings });
    url = embedded.url;
    process.stdout.write(`embedded nats-server listening on ${url}\n`);
  }
  mkdirSync(cfg.stateDir, { recursive: true });
  const nc = await connectNats(url, `tidemark-${cfg.job}`, cfg.natsAuth);
  // The dashboard outlives job restarts after a NATS failover; it reads the job over NATS like any other.
  const dashboard = cfg.dashboardPort === undefined ? undefined : await (await import('../host/dashboard.js')).Dashboard.start({ nc, job: cfg.job, log, port: cfg.dashboardPort });
  if (dashboard) process.stdout.write(`dashboard: ${dashboard.url}\n`);
  // Core NATS is at-most-once between actors: when the connection drops, batches in flight may be
  // lost, so the job restarts from its last checkpoint once NATS is back (Flink's failover).
  let connectionLost: () => void = () => undefined;
  let group: GroupInstance | undefined;
  let reconnected: () => void = () => undefined;
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        log.warn({ server: s.data }, 'NATS connection lost; reconnecting with backoff');
        connectionLost();
        group?.connectionLost();
      } else if (s.type === 'reconnect') {
        log.info({ server: s.data }, 'NATS connection re-established');
        reconnected();
      } else if (s.type === 'reconnecting') log.debug('reconnecting to NATS');
    }
  })();
  let job: Job | undefined;
  let service: { stop(): Promise<void> } | undefined;
  let instance: Instance | undefined;
  let lockLost: string | undefined;
  let stopRequested = false;
  // A graceful stop that cannot finish (a wedged channel, NATS gone) is cut short: SIGTERM always ends the process.
  let forceStop: () => void = () => undefined;
  const forced = new Promise<'forced'>((r) => (forceStop = () => r('forced')));
  const hardStop = (): void => {
    forceStop();
    // Whatever still holds the process (a request to a frozen server, a start-up step) must not keep it.
    setTimeout(() => process.exit(1), ABORT_GRACE_MS * 2);
  };
  const onSignal = (sig: string): void => {
    if (stopRequested) {
      log.warn({ signal: sig }, 'second signal: stopping now, without a final checkpoint');
      hardStop();
      return;
    }
    stopRequested = true;
    log.info({ signal: sig }, 'stopping: no more intake, flushing, final checkpoint');
    setTimeout(() => {
      log.error(`the graceful stop did not finish within ${STOP_GRACE_MS / 1000}s; stopping without a final checkpoint (the last complete one is intact)`);
      hardStop();
    }, STOP_GRACE_MS).unref();
    // Its outcome (or failure) is the main loop's to report.
    job?.stop().catch(() => undefined);
    group?.stop();
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
    if (cfg.group) {
      // One instance of a group: the lock is replaced by leases; the coordinator's generations run the job here.
      instance = await Instance.start(nc, cfg, log, VERSION, () => undefined, { lock: false });
      const running = instance;
      group = new GroupInstance(nc, cfg, log, VERSION, {
        started: async (j) => {
          running.attach(j);
          const { startService } = await import('../host/service.js');
          const s = await startService(j, log, VERSION);
          return () => s.stop();
        },
      });
      if (stopRequested) group.stop();
      return await Promise.race([group.run(), forced.then(() => 1)]);
    }
    instance = await Instance.start(nc, cfg, log, VERSION, (why) => {
      lockLost = why;
      job?.stop().catch(() => undefined);
    });
    let restartCfg: JobConfig | undefined;
    const faultBackoff = reconnectBackoff();
    for (;;) {
      const lost = new Promise<'lost'>((r) => (connectionLost = () => r('lost')));
      const back = new Promise<void>((r) => (reconnected = r));
      job = await startRetrying(() => Job.start(restartCfg ?? cfg, nc, log), log, () => stopRequested);
      // A restart after a lost connection resumes from the job's own last checkpoint: neither
      // --from-checkpoint nor --reset-state applies again.
      restartCfg ??= (({ fromCheckpoint: _from, ...rest }) => ({ ...rest, resetState: false }))(cfg);
      instance.attach(job);
      const running = job;
      const { startService } = await import('../host/service.js');
      service = await startService(running, log, VERSION);
      if (stopRequested) running.stop().catch(() => undefined);
      // A NATS request that timed out while the cluster fails over is no reason to end: the job restarts from its checkpoint.
      const finished = running.run().then(
        () => 'done' as const,
        async (e: unknown) => {
          if (isTransientNatsError(e)) return { fault: (e as Error).message };
          // A failed job (a bug in the job's code, a checkpoint write failure) stops every actor
          // before its sinks are closed, so no flush races the close.
          await running.abort().catch(() => undefined);
          throw e;
        },
      );
      const outcome = await Promise.race([finished, lost, forced, running.faulted.then((why) => ({ fault: why }))]);
      if (outcome === 'forced') {
        await Promise.race([running.abort(), sleep(ABORT_GRACE_MS)]);
        job = undefined;
        return 1;
      }
      if (outcome === 'done') {
        log.info({ seq: running.source.seq, results: running.sink.counts.results, late: running.sink.counts.late, dead: running.sink.counts.dead }, 'job finished');
        if (lockLost) throw new TidemarkError('STATE_LOCKED', lockLost);
        return 0;
      }
      await running.abort();
      job = undefined;
      if (typeof outcome === 'object') {
        // An internal message was lost (or NATS failed a request): the checkpoint is the consistent cut to go back to.
        if (stopRequested) throw new TidemarkError('NATS_UNAVAILABLE', `stopped without a final checkpoint: ${outcome.fault}`);
        await service.stop().catch(() => undefined);
        service = undefined;
        const wait = faultBackoff();
        log.warn({ reason: outcome.fault }, `restarting the job from its last checkpoint in ${Math.round(wait)} ms: ${outcome.fault}`);
        await sleep(wait);
        continue;
      }
      if (nc.isClosed()) throw new TidemarkError('NATS_UNAVAILABLE', `lost the connection to NATS at ${redactUrl(url)} for good`);
      await back;
      await service.stop().catch(() => undefined);
      service = undefined;
      log.warn('restarting the job from its last checkpoint');
    }
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    await service?.stop().catch(() => undefined);
    await job?.close().catch(() => undefined);
    await instance?.close().catch(() => undefined);
    await dashboard?.close().catch(() => undefined);
    await nc.drain().catch(() => undefined);
    await embedded?.stop();
  }
}
