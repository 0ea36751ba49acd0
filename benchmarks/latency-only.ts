// `node dist/benchmarks/latency-only.js [--rate N] [--seconds S] [--keys K] [--warmup-ms MS] [--bare] [--histogram] [--cpu-prof DIR]`:
// runs only the latency measurement (benchmarks/latency.ts) against a nats-server of its own and
// prints the outcome as one JSON line with the load average before and after (the histogram only with
// --histogram). --bare measures the bare JetStream consumer instead of the job; --cpu-prof profiles the job.
// `npm run bench` runs its latency phases through this, in a process of their own: the open-loop
// generator must not share an event loop and a heap with the rest of the benchmark (its pauses would
// count as the job's latency, coordinated omission corrected).

import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { rmSync } from 'node:fs';
import { connect } from 'nats';
import { EmbeddedNats } from '../src/io/nats-server.js';
import { ISSUE_LATENCY_RATE, runBareConsumer, runLatency } from './latency.js';

const args = process.argv.slice(2);
const opt = (flag: string): string | undefined => {
  const i = args.indexOf(flag);
  return i >= 0 ? args[i + 1] : undefined;
};
const rate = Number(opt('--rate') ?? ISSUE_LATENCY_RATE);
const seconds = Number(opt('--seconds') ?? 15);
const hashtags = Number(opt('--keys') ?? 1000);
const profileDir = opt('--cpu-prof');
const workDir = join(tmpdir(), `tidemark-latency-${process.pid}`);
const load = (): number => Math.round(loadavg()[0]! * 100) / 100;
const before = load();
const server = await EmbeddedNats.start(join(workDir, 'nats'));
const nc = await connect({ servers: server.url });
try {
  const warmup = opt('--warmup-ms');
  const common = { url: server.url, rate, durationMs: seconds * 1000, warmupMs: warmup !== undefined ? Number(warmup) : Math.min(3, seconds / 5) * 1000, hashtags };
  const out = args.includes('--bare')
    ? await runBareConsumer(nc, common)
    : await runLatency(nc, { ...common, windowMs: 1000, maxOutOfOrdernessMs: 50, workDir, ...(profileDir ? { nodeFlags: ['--cpu-prof', '--cpu-prof-dir', profileDir] } : {}) });
  const { histogram: h, ...rest } = out as typeof out & { histogram?: string };
  process.stdout.write(JSON.stringify({ ...rest, ...(args.includes('--histogram') && h !== undefined ? { histogram: h } : {}), load1: [before, load()] }) + '\n');
} finally {
  await nc.close();
  await server.stop();
  rmSync(workDir, { recursive: true, force: true });
}
