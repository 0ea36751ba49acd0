// `node dist/benchmarks/state-only.js [N…]`: runs only the state-size measurement (benchmarks/state.ts)
// for the given window counts (default 10k, 100k, 1M) and prints each row as JSON with the load average.

import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { measureState } from './state.js';

const sizes = process.argv.slice(2).map(Number);
for (const n of sizes.length ? sizes : [10_000, 100_000, 1_000_000]) {
  const before = loadavg()[0]!;
  const row = await measureState(n, join(tmpdir(), `tidemark-state-${process.pid}-${n}`));
  process.stdout.write(JSON.stringify({ ...row, load1: [before, loadavg()[0]!].map((l) => Math.round(l * 100) / 100) }) + '\n');
}
