// `tidemark dashboard --nats URL --job J [--port 8080]`: the live page for a running job, from NATS alone
// (its results sink, late and dead-letter outputs, and its micro service endpoints).

import { TidemarkError } from '../errors.js';
import { parseFlags, optionHelp, type OptionDef, type RawOptions } from '../option-table.js';
import { JOB_NAME } from '../io/subjects.js';
import { connectNats, natsAuthFrom, NATS_AUTH_OPTIONS } from '../io/connect.js';
import { parseDuration } from '../runtime/duration.js';
import { createLogger } from '../log.js';
import { Dashboard } from '../host/dashboard.js';

export const DASHBOARD_OPTIONS: OptionDef[] = [
  { flag: '--nats', key: 'nats', kind: 'string', arg: 'URL', help: 'NATS server the job runs on', default: 'nats://127.0.0.1:4222' },
  { flag: '--job', key: 'job', kind: 'string', arg: 'NAME', help: 'job name', default: 'sentiment' },
  { flag: '--port', key: 'port', kind: 'int', arg: 'PORT', help: 'HTTP port on 127.0.0.1 (0 = a free one)', default: '8080' },
  { flag: '--history', key: 'history', kind: 'int', arg: 'N', help: 'windows kept per key', default: '30' },
  { flag: '--since', key: 'since', kind: 'dur', arg: 'DUR', help: 'how far back to read a jetstream: results sink at start', default: '1h' },
  { flag: '--log-level', key: 'logLevel', kind: 'string', arg: 'LEVEL', help: 'fatal | error | warn | info | debug', default: 'info' },
  { flag: '--help', key: 'help', kind: 'bool', help: 'this help' },
  ...NATS_AUTH_OPTIONS,
];

const val = (o: RawOptions, key: string): string => {
  const v = o[key];
  if (v === undefined) return DASHBOARD_OPTIONS.find((d) => d.key === key)!.default!;
  return Array.isArray(v) ? v[v.length - 1]! : String(v);
};

/** Parses a port flag: an integer from 0 to 65535. */
export function portFlag(text: string, flag: string): number {
  if (!/^\d+$/.test(text) || Number(text) > 65535) throw new TidemarkError('BAD_FLAG', `${flag}: "${text}" is not accepted; a port from 0 to 65535 (0 = a free one)`);
  return Number(text);
}

/** Serves the dashboard until SIGINT/SIGTERM. */
export async function dashboardCommand(argv: string[]): Promise<number> {
  const { opts, positional } = parseFlags(argv, DASHBOARD_OPTIONS);
  if (opts.help) {
    process.stdout.write(`Usage: tidemark dashboard [options]\n\nServes a live page for a running job on 127.0.0.1 (results, state, alerts).\n\nOptions:\n${optionHelp(DASHBOARD_OPTIONS)}\n`);
    return 0;
  }
  if (positional.length) throw new TidemarkError('BAD_FLAG', `dashboard: unexpected argument "${positional[0]}"; options start with --`);
  const job = val(opts, 'job');
  if (!JOB_NAME.test(job)) throw new TidemarkError('BAD_FLAG', `--job: "${job}" is not accepted; 1-64 letters, digits, _ or -`);
  const port = portFlag(val(opts, 'port'), '--port');
  const history = val(opts, 'history');
  if (!/^\d+$/.test(history) || Number(history) < 1 || Number(history) > 10_000) throw new TidemarkError('BAD_FLAG', `--history: "${history}" is not accepted; an integer from 1 to 10000`);
  const sinceMs = parseDuration(val(opts, 'since'), '--since');
  const url = val(opts, 'nats');
  const log = createLogger(val(opts, 'logLevel'));
  const nc = await connectNats(url, `tidemark-dashboard-${job}`, natsAuthFrom((k) => (opts[k] === undefined ? undefined : val(opts, k))));
  let dash: Dashboard | undefined;
  try {
    dash = await Dashboard.start({ nc, job, log, port, historyPerKey: Number(history), sinceMs });
    process.stdout.write(`dashboard for job ${job} on ${url}: ${dash.url}\n`);
    await new Promise<void>((resolve) => {
      process.once('SIGINT', () => resolve());
      process.once('SIGTERM', () => resolve());
    });
    return 0;
  } finally {
    await dash?.close();
    await nc.close();
  }
}
