// `npm run bench [-- --quick]`: runs the benchmarks, prints the table, writes the result files
// (benchmarks/results/latest.json, a dated copy, latest.svg) and, with --profile, a CPU profile.

import { existsSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { repoRoot } from './common.js';
import { runBenchmarks, writeResults, SCALES, type Scale } from './bench.js';
import { formatTable, type Mode } from './report.js';
import { formatProfile, summarizeProfiles } from './profile.js';

const HELP = `Usage: npm run bench [-- options]

Runs Tidemark's benchmarks against a real nats-server on 127.0.0.1 and writes
benchmarks/results/latest.json, benchmarks/results/<ISO date>.json and benchmarks/results/latest.svg.

Options:
  --quick              under a minute: fewer posts, one run per setting, a short latency run
  --tiny               seconds: the machinery only (what the test runs); figures are not meaningful
  --out DIR            where the result files go (default: benchmarks/results)
  --posts N            posts in the throughput stream
  --reps N             drain runs per checkpoint setting
  --latency-seconds N  length of the open-loop latency run
  --recovery-windows N live windows in the recovery run (the target is stated for 100000)
  --postgres-rows N    window results written into PostgreSQL, the JSONL sink and a bare COPY
                       (needs Debian's postgresql: /usr/lib/postgresql/*/bin)
  --profile            one extra drain run and one extra restart under node --cpu-prof (not measured);
                       prints where their time goes
  --no-progress        no progress bar
  --help               this help`;

function parseArgs(argv: string[]): { mode: Mode; out: string; scale: Partial<Scale>; profile: boolean; progress: boolean } | undefined {
  const root = repoRoot();
  const r = { mode: 'full' as Mode, out: join(root, 'benchmarks', 'results'), scale: {} as Partial<Scale>, profile: false, progress: true };
  const int = (flag: string, v: string | undefined): number => {
    if (v === undefined || !/^\d+$/.test(v) || Number(v) < 1) throw new Error(`${flag}: needs a whole number ≥ 1`);
    return Number(v);
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--help' || a === '-h') return undefined;
    else if (a === '--quick') r.mode = 'quick';
    else if (a === '--tiny') r.mode = 'tiny';
    else if (a === '--profile') r.profile = true;
    else if (a === '--no-progress') r.progress = false;
    else if (a === '--out') {
      const v = argv[++i];
      if (!v) throw new Error('--out: needs a directory');
      r.out = v;
    } else if (a === '--posts') r.scale.posts = int(a, argv[++i]);
    else if (a === '--reps') r.scale.reps = int(a, argv[++i]);
    else if (a === '--latency-seconds') r.scale.latencySeconds = int(a, argv[++i]);
    else if (a === '--recovery-windows') r.scale.recoveryWindows = int(a, argv[++i]);
    else if (a === '--postgres-rows') r.scale.postgresRows = int(a, argv[++i]);
    else throw new Error(`${a}: unknown option; see --help`);
  }
  return r;
}

async function main(): Promise<number> {
  let args: ReturnType<typeof parseArgs>;
  try {
    args = parseArgs(process.argv.slice(2));
  } catch (e) {
    process.stderr.write(`bench: ${(e as Error).message}\n`);
    return 2;
  }
  if (!args) {
    process.stdout.write(HELP + '\n');
    return 0;
  }
  const tmp = join(repoRoot(), 'benchmarks', 'results', 'tmp');
  const profileDir = args.profile ? join(tmp, 'profile') : undefined;
  const s = { ...SCALES[args.mode], ...args.scale };
  process.stderr.write(`bench (${args.mode}): ${s.posts} posts × ${s.reps} drain runs per setting, ${s.latencySeconds} s latency run, ${s.recoveryWindows} windows for recovery\n`);
  const load = loadavg()[0] ?? 0;
  if (load > cpus().length / 2) process.stderr.write(`bench: the machine is busy (1-minute load ${load.toFixed(2)} on ${cpus().length} cores); every figure will be skewed by it\n`);
  const result = await runBenchmarks({
    mode: args.mode,
    scale: args.scale,
    workDir: join(tmp, `run-${process.pid}`),
    progress: args.progress,
    ...(profileDir ? { profileDir } : {}),
  });
  const files = writeResults(result, args.out);
  process.stdout.write(formatTable(result) + '\n\n');
  process.stdout.write(`wrote ${files.latest}\n      ${files.dated}\n      ${files.svg}\n`);
  if (profileDir) {
    for (const part of ['throughput', 'recovery']) {
      const dir = join(profileDir, part);
      if (existsSync(dir)) process.stdout.write(`\n== ${part} job (${dir})\n${formatProfile(summarizeProfiles(dir, 20))}\n`);
    }
  }
  else if (result.targets.some((t) => !t.pass)) process.stdout.write('\nA target was missed: run with --profile to see what bounds the job.\n');
  return 0;
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`\nbench failed: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
