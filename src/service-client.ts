// Client subcommands that talk to a running job's micro service endpoints.

import { TidemarkError } from './errors.js';
import { parseFlags, optionHelp, type OptionDef } from './config.js';
import { subjectsFor } from './io/subjects.js';

const OPTIONS: OptionDef[] = [
  { flag: '--nats', key: 'nats', kind: 'string', arg: 'URL', help: 'NATS server', default: 'nats://127.0.0.1:4222' },
  { flag: '--job', key: 'job', kind: 'string', arg: 'NAME', help: 'job name', default: 'sentiment' },
  { flag: '--name', key: 'name', kind: 'string', arg: 'NAME', help: 'savepoint name (checkpoint)' },
  { flag: '--json', key: 'json', kind: 'bool', help: 'print JSON' },
  { flag: '--help', key: 'help', kind: 'bool', help: 'this help' },
];

async function call(endpoint: string, argv: string[], body: (positional: string[], opts: Record<string, unknown>) => Record<string, unknown>): Promise<number> {
  const { opts, positional } = parseFlags(argv, OPTIONS);
  if (opts.help) {
    process.stdout.write(`Usage: tidemark ${endpoint} [options]\n\nOptions:\n${optionHelp(OPTIONS)}\n`);
    return 0;
  }
  const { connectNats } = await import('./cli.js');
  const nc = await connectNats(String(opts.nats ?? 'nats://127.0.0.1:4222'));
  try {
    const job = String(opts.job ?? 'sentiment');
    const subject = `${subjectsFor(job).serviceGroup}.${endpoint}`;
    let reply;
    try {
      reply = await nc.request(subject, new TextEncoder().encode(JSON.stringify(body(positional, opts))), { timeout: 10_000 });
    } catch (e) {
      throw new TidemarkError('NATS_UNAVAILABLE', `no running job "${job}" answered on ${subject}: ${(e as Error).message}`);
    }
    const err = reply.headers?.get('Nats-Service-Error');
    if (err) throw new TidemarkError('NOT_AVAILABLE', `${endpoint}: ${err}`);
    process.stdout.write(JSON.stringify(JSON.parse(new TextDecoder().decode(reply.data)), null, opts.json ? 0 : 2) + '\n');
    return 0;
  } finally {
    await nc.close();
  }
}

/** Subcommands by name. */
export const clientCommands: Record<string, (argv: string[]) => Promise<number>> = {
  status: (argv) => call('status', argv, () => ({})),
  query: (argv) => call('query', argv, (pos) => (pos[0] ? { key: pos[0] } : {})),
  checkpoint: (argv) => call('checkpoint', argv, (_pos, o) => (typeof o.name === 'string' ? { name: o.name } : {})),
};
