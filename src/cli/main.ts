// The `tidemark` command line: run, produce, gen, demo, inspect and the service clients.
// Every failure becomes one line on stderr; usage errors exit 2.

import { TidemarkError, exitCodeFor } from '../errors.js';
import { runDemo } from './demo.js';
import { inspectCommand, INSPECT_OPTIONS } from './inspect.js';
import { clientCommands } from './client.js';
import { VERSION, help } from './options.js';
import { run } from './run.js';
import { produce, gen } from './produce.js';

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
        return await (await import('./dashboard.js')).dashboardCommand(rest);
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
