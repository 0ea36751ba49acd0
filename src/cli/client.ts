// Client subcommands that talk to a running job's micro service endpoints (status, query, keys,
// explain, checkpoint) and list running instances ($SRV.PING/INFO/STATS): tables for people, --json for scripts.

import { NatsError, type NatsConnection, type ServiceInfo, type ServiceStats } from 'nats';
import { TidemarkError } from '../errors.js';
import { parseFlags, optionHelp, type OptionDef, type RawOptions } from '../option-table.js';
import { connectNats, natsAuthFrom, redactUrl, NATS_AUTH_OPTIONS } from '../io/connect.js';
import {
  renderCheckpoint,
  renderExplain,
  renderKeys,
  renderQuery,
  renderServices,
  renderStatus,
} from './format.js';
import { callEndpoint, type CheckpointAnswer, type ExplainAnswer, type InstanceRow, type KeysAnswer, type QueryAnswer, type StatusAnswer } from '../io/service-request.js';

const DEFAULT_URL = 'nats://127.0.0.1:4222';

const COMMON: OptionDef[] = [
  { flag: '--nats', key: 'nats', kind: 'string', arg: 'URL', help: 'NATS server(s), comma-separated', default: DEFAULT_URL },
  { flag: '--job', key: 'job', kind: 'string', arg: 'NAME', help: 'job name', default: 'sentiment' },
  { flag: '--json', key: 'json', kind: 'bool', help: 'print the JSON answer (for scripts)' },
  { flag: '--help', key: 'help', kind: 'bool', help: 'this help' },
  ...NATS_AUTH_OPTIONS,
];

const TIME_HELP = 'ms since the epoch or ISO-8601';

interface Command {
  usage: string;
  about: string;
  options: OptionDef[];
  /** Minimum positional arguments (KEY). */
  args: number;
}

const COMMANDS: Record<string, Command> = {
  status: { usage: 'status [options]', about: "a running job's watermark(s), lag, counters, windows by state and last checkpoint", options: COMMON, args: 0 },
  query: {
    usage: 'query KEY [options]',
    about: "the current state of a key's windows, open ones included (aggregates and lifecycle state)",
    options: [
      { flag: '--from', key: 'from', kind: 'string', arg: 'TIME', help: `only windows ending after TIME (${TIME_HELP})` },
      { flag: '--to', key: 'to', kind: 'string', arg: 'TIME', help: `only windows starting before TIME (${TIME_HELP})` },
      ...COMMON,
    ],
    args: 1,
  },
  explain: {
    usage: 'explain KEY [options]',
    about: "why a key's windows have or have not fired: watermark per input partition, what holds it back, what each window needs",
    options: [{ flag: '--at', key: 'at', kind: 'string', arg: 'TIME', help: `explain the window(s) holding event time TIME (${TIME_HELP})` }, ...COMMON],
    args: 1,
  },
  keys: {
    usage: 'keys [options]',
    about: 'the busiest keys in the current open windows',
    options: [{ flag: '--top', key: 'top', kind: 'int', arg: 'N', help: 'how many keys', default: '10' }, ...COMMON],
    args: 0,
  },
  checkpoint: {
    usage: 'checkpoint [options]',
    about: 'take a savepoint of a running job now',
    options: [{ flag: '--name', key: 'name', kind: 'string', arg: 'NAME', help: 'savepoint name (default: savepoint-<time>)' }, ...COMMON],
    args: 0,
  },
  services: {
    usage: 'services [options]',
    about: 'list running Tidemark instances ($SRV.PING / $SRV.INFO / $SRV.STATS)',
    options: [COMMON[0]!, { flag: '--job', key: 'job', kind: 'string', arg: 'NAME', help: 'only instances of this job' }, COMMON[2]!, COMMON[3]!, ...NATS_AUTH_OPTIONS],
    args: 0,
  },
};

const str = (o: RawOptions, key: string): string | undefined => {
  const v = o[key];
  return v === undefined || typeof v === 'boolean' ? undefined : Array.isArray(v) ? v[v.length - 1] : v;
};

/** A time flag as the service takes it: a number when it is digits, otherwise the (ISO) text. */
const timeArg = (v: string): number | string => (/^-?\d+$/.test(v) ? Number(v) : v);

async function withConnection<T>(opts: RawOptions, fn: (nc: NatsConnection, url: string) => Promise<T>): Promise<T> {
  const url = str(opts, 'nats') ?? DEFAULT_URL;
  const nc = await connectNats(url, 'tidemark-client', natsAuthFrom((k) => str(opts, k)));
  try {
    return await fn(nc, redactUrl(url));
  } finally {
    await nc.close();
  }
}

/** Every running Tidemark instance (optionally of one job), from $SRV.INFO joined with $SRV.STATS. */
export async function listInstances(nc: NatsConnection, job?: string): Promise<InstanceRow[]> {
  const client = nc.services.client();
  const infos: ServiceInfo[] = [];
  const stats = new Map<string, ServiceStats>();
  try {
    for await (const i of await client.info('tidemark')) infos.push(i);
    for await (const s of await client.stats('tidemark')) stats.set(s.id, s);
  } catch (e) {
    // No responders: nothing runs.
    if (!(e instanceof NatsError && e.code === '503')) throw e;
  }
  return infos
    .map((i): InstanceRow => {
      const st = stats.get(i.id);
      return {
        id: i.id,
        version: i.version,
        job: i.metadata?.job ?? '',
        host: i.metadata?.host ?? '',
        pid: i.metadata?.pid ?? '',
        ...(st?.started ? { started: st.started } : {}),
        endpoints: i.endpoints.map((e) => {
          const es = st?.endpoints?.find((x) => x.subject === e.subject);
          return { name: e.name, subject: e.subject, ...(es ? { requests: es.num_requests, errors: es.num_errors } : {}) };
        }),
      };
    })
    .filter((r) => job === undefined || r.job === job)
    .sort((a, b) => a.job.localeCompare(b.job) || a.id.localeCompare(b.id));
}

function print(opts: RawOptions, answer: unknown, human: () => string): void {
  process.stdout.write(`${opts.json ? JSON.stringify(answer) : human()}\n`);
}

async function runCommand(name: string, argv: string[]): Promise<number> {
  const cmd = COMMANDS[name]!;
  const { opts, positional } = parseFlags(argv, cmd.options);
  if (opts.help) {
    process.stdout.write(`Usage: tidemark ${cmd.usage}\n\n${cmd.about[0]!.toUpperCase()}${cmd.about.slice(1)}.\n\nOptions:\n${optionHelp(cmd.options)}\n`);
    return 0;
  }
  if (positional.length < cmd.args) throw new TidemarkError('BAD_FLAG', `KEY is required (usage: tidemark ${cmd.usage})`);
  if (positional.length > cmd.args) throw new TidemarkError('BAD_FLAG', `unexpected argument "${positional[cmd.args]}" (usage: tidemark ${cmd.usage})`);
  const job = str(opts, 'job') ?? 'sentiment';
  const key = positional[0];
  switch (name) {
    case 'status':
      return withConnection(opts, async (nc) => {
        const a = (await callEndpoint(nc, job, 'status', {})) as StatusAnswer;
        print(opts, a, () => renderStatus(a));
        return 0;
      });
    case 'query': {
      const from = str(opts, 'from');
      const to = str(opts, 'to');
      const body = { key, ...(from !== undefined ? { from: timeArg(from) } : {}), ...(to !== undefined ? { to: timeArg(to) } : {}) };
      return withConnection(opts, async (nc) => {
        const a = (await callEndpoint(nc, job, 'query', body)) as QueryAnswer;
        print(opts, a, () => renderQuery(a));
        return 0;
      });
    }
    case 'explain': {
      const at = str(opts, 'at');
      return withConnection(opts, async (nc) => {
        const a = (await callEndpoint(nc, job, 'explain', { key, ...(at !== undefined ? { at: timeArg(at) } : {}) })) as ExplainAnswer;
        print(opts, a, () => renderExplain(a));
        return 0;
      });
    }
    case 'keys': {
      const topText = str(opts, 'top') ?? '10';
      if (!/^\d+$/.test(topText) || Number(topText) < 1 || Number(topText) > 1000) throw new TidemarkError('BAD_FLAG', `--top: "${topText}" is not accepted; an integer from 1 to 1000`);
      return withConnection(opts, async (nc) => {
        const a = (await callEndpoint(nc, job, 'keys', { top: Number(topText) })) as KeysAnswer;
        print(opts, a, () => renderKeys(a));
        return 0;
      });
    }
    case 'checkpoint': {
      const n = str(opts, 'name');
      return withConnection(opts, async (nc) => {
        const a = (await callEndpoint(nc, job, 'checkpoint', n !== undefined ? { name: n } : {})) as CheckpointAnswer;
        print(opts, a, () => renderCheckpoint(a));
        return 0;
      });
    }
    default:
      return withConnection(opts, async (nc, url) => {
        const rows = await listInstances(nc, str(opts, 'job'));
        print(opts, rows, () => renderServices(rows, url));
        return 0;
      });
  }
}

/** Subcommands by name. */
export const clientCommands: Record<string, (argv: string[]) => Promise<number>> = Object.fromEntries(
  Object.keys(COMMANDS).map((name) => [name, (argv: string[]) => runCommand(name, argv)]),
);
