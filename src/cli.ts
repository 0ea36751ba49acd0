// The `tidemark` command line: run, produce, gen, demo, inspect and the service clients.
// Every failure becomes one line on stderr; usage errors exit 2.

import { readFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import type { NatsConnection } from 'nats';
import { connectNats, natsAuthFrom, redactUrl, NATS_AUTH_OPTIONS } from './io/connect.js';
import { TidemarkError, exitCodeFor } from './errors.js';
import { RUN_OPTIONS, parseFlags, resolveJobConfig, rawRunOptions, optionHelp, type OptionDef, type RawOptions, type JobConfig } from './config.js';
import { createLogger } from './log.js';
import { EmbeddedNats } from './io/nats-server.js';
import { Job } from './actors/job.js';
import { parseDuration } from './runtime/duration.js';
import { syntheticPosts } from './runtime/synthetic.js';
import { runDemo } from './demo.js';
import { inspectCommand, INSPECT_OPTIONS } from './inspect.js';
import { clientCommands } from './service-client.js';
import { reconnectBackoff } from './io/reconnect.js';
import { Instance } from './instance.js';
import { isTransientNatsError } from './io/nats-errors.js';
import { loadJobModule } from './io/job-loader.js';

export const VERSION = (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;

const USAGE = `tidemark ${VERSION}: event-time stream processing for NATS

Usage: tidemark <command> [options]

Commands:
  run        run a job as a NATS microservice (tidemark run --help)
  demo       embedded NATS, synthetic posts, live windows on screen and in a web page
  dashboard  a live web page for a running job (tidemark dashboard --help)
  produce    publish a JSONL file of posts into the input stream
  gen        generate synthetic posts (to NATS, or JSONL on stdout)
  inspect    list checkpoints in a state directory, dump a key's windows
  check-job  check a job module's aggregate laws on generated records (fast-check)
  checkpoint take a savepoint of a running job
  status     status of a running job         query KEY    a key's windows
  explain    why a key's windows fired or not keys         busiest keys
  services   list running Tidemark instances

Run 'tidemark <command> --help' for the options of a command.`;

/** How long SIGTERM waits for the final checkpoint before stopping without it; then for the abort. */
const STOP_GRACE_MS = 10_000;
const ABORT_GRACE_MS = 2_000;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Starts the job, again and again while NATS fails transiently (a cluster electing leaders), with backoff. */
async function startRetrying(start: () => Promise<Job>, log: ReturnType<typeof createLogger>, stopping: () => boolean): Promise<Job> {
  const backoff = reconnectBackoff();
  for (;;) {
    try {
      return await start();
    } catch (e) {
      if (!isTransientNatsError(e) || stopping()) throw e;
      const wait = backoff();
      log.warn({ err: (e as Error).message }, `the job could not start (${(e as Error).message}); trying again in ${Math.round(wait)} ms`);
      await sleep(wait);
    }
  }
}

const CONNECT_OPTIONS: OptionDef[] = [
  { flag: '--nats', key: 'nats', kind: 'string', arg: 'URL', help: 'NATS server(s), comma-separated', default: 'nats://127.0.0.1:4222' },
  ...NATS_AUTH_OPTIONS,
  { flag: '--input-stream', key: 'inputStream', kind: 'string', arg: 'NAME', help: 'input stream (created when missing)', default: 'POSTS' },
  { flag: '--input-subjects', key: 'inputSubjects', kind: 'string', arg: 'SUBJ', help: 'subjects of the input stream when it is created', default: 'posts.>' },
  { flag: '--subject', key: 'subject', kind: 'string', arg: 'SUBJ', help: 'subject to publish posts on', default: 'posts.in' },
];

const PRODUCE_OPTIONS: OptionDef[] = [{ flag: '--file', key: 'file', kind: 'string', arg: 'PATH', help: 'JSONL file, one post per line (required)' }, ...CONNECT_OPTIONS, { flag: '--help', key: 'help', kind: 'bool', help: 'this help' }];

const GEN_OPTIONS: OptionDef[] = [
  { flag: '--rate', key: 'rate', kind: 'int', arg: 'N', help: 'posts per second (0 = as fast as possible)', default: '1000' },
  { flag: '--duration', key: 'duration', kind: 'dur', arg: 'DUR', help: 'how long to generate', default: '10s' },
  { flag: '--count', key: 'count', kind: 'int', arg: 'N', help: 'stop after N posts (overrides --duration)' },
  { flag: '--keys', key: 'keys', kind: 'int', arg: 'N', help: 'distinct hashtags', default: '100' },
  { flag: '--late-fraction', key: 'lateFraction', kind: 'string', arg: 'F', help: 'share of posts that arrive late, 0..1', default: '0.02' },
  { flag: '--seed', key: 'seed', kind: 'int', arg: 'N', help: 'random seed', default: '1' },
  { flag: '--stdout', key: 'stdout', kind: 'bool', help: 'write JSONL to stdout instead of publishing' },
  ...CONNECT_OPTIONS,
  { flag: '--help', key: 'help', kind: 'bool', help: 'this help' },
];

const get = (o: RawOptions, table: OptionDef[], key: string): string | undefined => {
  const v = o[key];
  if (v === undefined) return table.find((d) => d.key === key)?.default;
  return Array.isArray(v) ? v[v.length - 1] : String(v);
};

function intFlag(o: RawOptions, table: OptionDef[], key: string, min = 0): number | undefined {
  const v = get(o, table, key);
  if (v === undefined) return undefined;
  const flag = table.find((d) => d.key === key)!.flag;
  if (!/^\d+$/.test(v) || Number(v) < min) throw new TidemarkError('BAD_FLAG', `${flag}: "${v}" is not accepted; a whole number ≥ ${min}`);
  return Number(v);
}


async function ensureInput(nc: NatsConnection, stream: string, subjects: string): Promise<void> {
  const { ensureStream } = await import('./io/jetstream-source.js');
  await ensureStream(await nc.jetstreamManager(), stream, subjects.split(','));
}

async function produce(argv: string[]): Promise<number> {
  const { opts } = parseFlags(argv, PRODUCE_OPTIONS);
  if (opts.help) return help('produce --file PATH [options]', PRODUCE_OPTIONS);
  const file = get(opts, PRODUCE_OPTIONS, 'file');
  if (!file) throw new TidemarkError('BAD_FLAG', '--file: required; a JSONL file of posts');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new TidemarkError('BAD_FLAG', `--file: cannot read ${file}: ${(e as Error).message}`);
  }
  const nc = await connectNats(get(opts, PRODUCE_OPTIONS, 'nats')!, 'tidemark-produce', natsAuthFrom((k) => get(opts, PRODUCE_OPTIONS, k)));
  try {
    await ensureInput(nc, get(opts, PRODUCE_OPTIONS, 'inputStream')!, get(opts, PRODUCE_OPTIONS, 'inputSubjects')!);
    const js = nc.jetstream();
    const subject = get(opts, PRODUCE_OPTIONS, 'subject')!;
    const lines = text.split('\n').filter((l) => l.trim() !== '');
    let inflight: Promise<unknown>[] = [];
    const enc = new TextEncoder();
    for (const line of lines) {
      // Lines are published as they are: a malformed one is the job's to dead-letter.
      inflight.push(js.publish(subject, enc.encode(line)));
      if (inflight.length >= 1000) {
        await Promise.all(inflight);
        inflight = [];
      }
    }
    await Promise.all(inflight);
    process.stdout.write(`published ${lines.length} posts to ${subject}\n`);
  } finally {
    await nc.close();
  }
  return 0;
}

async function gen(argv: string[]): Promise<number> {
  const { opts } = parseFlags(argv, GEN_OPTIONS);
  if (opts.help) return help('gen [options]', GEN_OPTIONS);
  const rate = intFlag(opts, GEN_OPTIONS, 'rate')!;
  const count = intFlag(opts, GEN_OPTIONS, 'count');
  const duration = parseDuration(get(opts, GEN_OPTIONS, 'duration')!, '--duration');
  const keys = intFlag(opts, GEN_OPTIONS, 'keys', 1)!;
  const lateFraction = Number(get(opts, GEN_OPTIONS, 'lateFraction'));
  if (!(lateFraction >= 0 && lateFraction <= 1)) throw new TidemarkError('BAD_FLAG', `--late-fraction: "${get(opts, GEN_OPTIONS, 'lateFraction')}" is not accepted; a number from 0 to 1`);
  const total = count ?? (rate > 0 ? Math.round((rate * duration) / 1000) : 100_000);
  const posts = syntheticPosts({ keys, lateFraction, jitter: 2000, lateBy: 60_000, seed: intFlag(opts, GEN_OPTIONS, 'seed')!, startTs: Date.now(), step: rate > 0 ? 1000 / rate : 1 });
  if (opts.stdout) {
    const out: string[] = [];
    for (let i = 0; i < total; i++) out.push(JSON.stringify(posts.next().value));
    process.stdout.write(out.join('\n') + '\n');
    return 0;
  }
  const nc = await connectNats(get(opts, GEN_OPTIONS, 'nats')!, 'tidemark-gen', natsAuthFrom((k) => get(opts, GEN_OPTIONS, k)));
  try {
    await ensureInput(nc, get(opts, GEN_OPTIONS, 'inputStream')!, get(opts, GEN_OPTIONS, 'inputSubjects')!);
    const subject = get(opts, GEN_OPTIONS, 'subject')!;
    const enc = new TextEncoder();
    const t0 = Date.now();
    for (let i = 0; i < total; i++) {
      const p = posts.next().value!;
      nc.publish(subject, enc.encode(JSON.stringify(p)));
      if (rate > 0 && i % 100 === 99) {
        const due = t0 + ((i + 1) * 1000) / rate;
        const wait = due - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      } else if (i % 5000 === 4999) await nc.flush();
      if (i % 10_000 === 9_999) process.stderr.write(`\rgen: ${i + 1}/${total} posts`);
    }
    await nc.flush();
    process.stderr.write(`\rgen: published ${total} posts to ${subject}\n`);
  } finally {
    await nc.close();
  }
  return 0;
}

function help(usage: string, table: OptionDef[]): number {
  process.stdout.write(`Usage: tidemark ${usage}\n\nOptions:\n${optionHelp(table)}\n`);
  return 0;
}

const RUN_HELP_OPTIONS: OptionDef[] = [...RUN_OPTIONS, { flag: '--help', key: 'help', kind: 'bool', help: 'this help' }];

async function run(argv: string[]): Promise<number> {
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
  const log = createLogger(cfg.logLevel);
  let embedded: EmbeddedNats | undefined;
  let url = cfg.nats;
  if (!url) {
    embedded = await EmbeddedNats.start(join(cfg.stateDir, 'nats'));
    url = embedded.url;
    process.stdout.write(`embedded nats-server listening on ${url}\n`);
  }
  mkdirSync(cfg.stateDir, { recursive: true });
  const nc = await connectNats(url, `tidemark-${cfg.job}`, cfg.natsAuth);
  // The dashboard outlives job restarts after a NATS failover; it reads the job over NATS like any other.
  const dashboard = cfg.dashboardPort === undefined ? undefined : await (await import('./host/dashboard.js')).Dashboard.start({ nc, job: cfg.job, log, port: cfg.dashboardPort });
  if (dashboard) process.stdout.write(`dashboard: ${dashboard.url}\n`);
  // Core NATS is at-most-once between actors: when the connection drops, batches in flight may be
  // lost, so the job restarts from its last checkpoint once NATS is back (Flink's failover).
  let connectionLost: () => void = () => undefined;
  let reconnected: () => void = () => undefined;
  void (async () => {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        log.warn({ server: s.data }, 'NATS connection lost; reconnecting with backoff');
        connectionLost();
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
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  try {
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
      const { startService } = await import('./service.js');
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

/** Entry point: returns the exit code. */
export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  try {
    switch (cmd) {
      case 'run':
        return await run(rest);
      case 'produce':
        return await produce(rest);
      case 'gen':
        return await gen(rest);
      case 'demo':
        return await runDemo(rest);
      case 'dashboard':
        return await (await import('./cli/dashboard.js')).dashboardCommand(rest);
      case 'check-job': {
        const { checkJobCommand } = await import('./check-job-command.js');
        return await checkJobCommand(rest);
      }
      case 'inspect':
        if (rest.includes('--help')) return help('inspect --state-dir DIR [options]', INSPECT_OPTIONS);
        return await inspectCommand(rest);
      case undefined:
      case 'help':
      case '--help':
      case '-h':
        process.stdout.write(USAGE + '\n');
        return cmd === undefined ? 2 : 0;
      case '--version':
      case 'version':
        process.stdout.write(`${VERSION}\n`);
        return 0;
      default: {
        const client = clientCommands[cmd];
        if (client) return await client(rest);
        process.stderr.write(`tidemark: unknown command "${cmd}"; accepted: run, demo, dashboard, produce, gen, inspect, check-job, checkpoint, status, query, explain, keys, services\n`);
        return 2;
      }
    }
  } catch (e) {
    process.stderr.write(`tidemark ${cmd}: ${e instanceof TidemarkError ? e.message : (e as Error).stack ?? String(e)}\n`);
    return exitCodeFor(e);
  }
}
