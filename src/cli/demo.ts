// `tidemark demo`: an embedded nats-server, a generator of real review sentences with hashtags,
// disorder, late posts and a few malformed messages, the job, and a live table of fired windows.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TidemarkError } from '../errors.js';
import { parseFlags, optionHelp, type OptionDef } from '../option-table.js';
import { resolveJobConfig } from '../host/run-options.js';
import { parseDuration } from '../runtime/duration.js';
import { EmbeddedNats } from '../io/nats-server.js';
import { createLogger } from '../log.js';
import { Job } from '../actors/job.js';
import { syntheticPosts } from '../runtime/synthetic.js';
import type { ResultRecord } from '../runtime/records.js';
import { connectNats } from '../io/connect.js';
import { VERSION } from './options.js';
import { startService } from '../host/service.js';
import { Dashboard } from '../host/dashboard.js';
import { portFlag } from './dashboard.js';

const DEMO_OPTIONS: OptionDef[] = [
  { flag: '--duration', key: 'duration', kind: 'dur', arg: 'DUR', help: 'stop after this long (default: until Ctrl-C)' },
  { flag: '--rate', key: 'rate', kind: 'int', arg: 'N', help: 'posts per second', default: '500' },
  { flag: '--dashboard-port', key: 'dashboardPort', kind: 'int', arg: 'PORT', help: 'port of the live dashboard on 127.0.0.1 (0 = a free one; when 8080 is taken a free one is used)', default: '8080' },
  { flag: '--sink', key: 'sinks', kind: 'string', arg: 'SPEC', repeat: true, help: 'also write the results here (e.g. postgres://USER:PASS@HOST/DB); repeatable' },
  { flag: '--help', key: 'help', kind: 'bool', help: 'this help' },
];

/** Runs the demo until Ctrl-C or --duration. */
export async function runDemo(argv: string[]): Promise<number> {
  const { opts } = parseFlags(argv, DEMO_OPTIONS);
  if (opts.help) {
    process.stdout.write(`Usage: tidemark demo [options]\n\nOptions:\n${optionHelp(DEMO_OPTIONS)}\n`);
    return 0;
  }
  const duration = opts.duration === undefined ? Infinity : parseDuration(String(opts.duration), '--duration');
  const rate = Number(opts.rate ?? 500);
  if (!Number.isInteger(rate) || rate < 1 || rate > 100_000) throw new TidemarkError('BAD_FLAG', `--rate: "${String(opts.rate)}" is not accepted; 1 to 100000`);
  const askedPort = portFlag(String(opts.dashboardPort ?? '8080'), '--dashboard-port');
  const dir = mkdtempSync(join(tmpdir(), 'tidemark-demo-'));
  const nats = await EmbeddedNats.start(join(dir, 'nats'));
  process.stdout.write(`embedded nats-server listening on ${nats.url}\n`);
  const cfg = resolveJobConfig({
    nats: nats.url, job: 'demo', window: 'tumbling:5s', maxOutOfOrderness: '1s', lateness: '3s', keys: 'hashtags,all', examples: true,
    stateDir: join(dir, 'state'), logLevel: 'warn', sinks: ['nats:tidemark.demo.results', 'jetstream:DEMO_RESULTS', ...((opts.sinks as string[] | undefined) ?? [])],
  });
  const nc = await connectNats(nats.url, 'tidemark-demo');
  const log = createLogger('warn');
  const job = await Job.start(cfg, nc, log);
  // The micro service answers the dashboard's status and query requests, as for `tidemark run`.
  const service = await startService(job, log, VERSION);
  const dashboard = await Dashboard.start({ nc, job: 'demo', log, port: askedPort }).catch((e: unknown) => {
    if (opts.dashboardPort !== undefined || !(e instanceof TidemarkError)) throw e;
    return Dashboard.start({ nc, job: 'demo', log, port: 0 });
  });
  process.stdout.write(`live dashboard: ${dashboard.url}\n`);
  const latest = new Map<string, ResultRecord>();
  let late = 0;
  let dead = 0;
  const dec = new TextDecoder();
  nc.subscribe('tidemark.demo.results', { callback: (_e, m) => { const r = JSON.parse(dec.decode(m.data)) as ResultRecord; latest.set(r.key, r); } });
  nc.subscribe('tidemark.demo.late', { callback: () => void late++ });
  nc.subscribe('tidemark.demo.dlq', { callback: () => void dead++ });
  const running = job.run();
  const enc = new TextEncoder();
  const posts = syntheticPosts({ keys: 8, lateFraction: 0.03, jitter: 1500, lateBy: 6000, seed: Date.now() % 1000, startTs: Date.now(), step: 1000 / rate });
  const t0 = Date.now();
  let sent = 0;
  const gen = setInterval(() => {
    const due = Math.floor(((Date.now() - t0) * rate) / 1000);
    for (; sent < due; sent++) {
      const p = posts.next().value!;
      p.ts = Date.now() - (p.ts < Date.now() - 4000 ? 6000 : Math.floor(Math.random() * 1500));
      nc.publish('posts.demo', enc.encode(sent % 997 === 0 ? '{"id": "broken", "text": no json' : JSON.stringify(p)));
    }
  }, 20);
  const draw = (): void => {
    const rows = [...latest.values()].sort((a, b) => Number(b.count) - Number(a.count)).slice(0, 12);
    const lines = [
      `\x1b[2J\x1b[HTidemark demo: ${sent} posts published, window tumbling 5s, lateness 3s  (Ctrl-C to stop)`,
      `live dashboard: ${dashboard.url}`,
      `late posts dropped: ${late}   dead letters: ${dead}   results: ${job.sink.counts.results}`,
      '',
      `${'key'.padEnd(12)} ${'window'.padEnd(21)} ${'count'.padStart(6)} ${'pos'.padStart(5)} ${'neg'.padStart(5)} ${'neu'.padStart(5)} ${'avg'.padStart(7)}  rev  final`,
      ...rows.map((r) => `${r.key.padEnd(12)} ${new Date(r.window.start).toISOString().slice(11, 19)}-${new Date(r.window.end).toISOString().slice(11, 19)}   ${String(r.count).padStart(6)} ${String(r.positive).padStart(5)} ${String(r.negative).padStart(5)} ${String(r.neutral).padStart(5)} ${Number(r.avgScore).toFixed(2).padStart(7)}  ${String(r.revision).padStart(3)}  ${r.final}`),
    ];
    process.stdout.write(lines.join('\n') + '\n');
  };
  const screen = setInterval(draw, 1000);
  await new Promise<void>((resolve) => {
    const timer = Number.isFinite(duration) ? setTimeout(resolve, duration) : undefined;
    const stop = (): void => {
      if (timer) clearTimeout(timer);
      resolve();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  clearInterval(gen);
  clearInterval(screen);
  draw();
  await dashboard.close();
  await job.stop();
  await running;
  await service.stop();
  await job.close();
  await nc.drain();
  await nats.stop();
  rmSync(dir, { recursive: true, force: true });
  process.stdout.write('demo stopped\n');
  return 0;
}
