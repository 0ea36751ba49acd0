// The orders example (examples/orders/job.mjs, a user job run with --job-module: revenue per region in
// sliding 10-minute windows) end to end, whole process, beside the sentiment job's throughput of the
// same run: what a user-defined aggregate costs compared with the built-in job.

import { join } from 'node:path';
import type { NatsConnection } from 'nats';
import { repoRoot, fillStream, deleteStream, median } from './common.js';
import { JobProcess, isFinishedLine } from './job-process.js';

export interface OrdersOutcome {
  /** orders per second, spawn → exit, median of the runs */
  ordersPerSec: number;
  orders: number;
  runs: number;
  wallMs: number[];
  results: number;
  method: string;
}

const REGIONS = ['eu', 'us', 'apac', 'latam', 'africa'];

/** `n` orders, event time advancing 2 ms per order, 1% late by two minutes, seeded. */
export function buildOrders(n: number): Uint8Array[] {
  const enc = new TextEncoder();
  let seed = 7;
  const rnd = (): number => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32);
  const base = Date.UTC(2025, 0, 1);
  return Array.from({ length: n }, (_, i) =>
    enc.encode(JSON.stringify({ id: `o${i}`, ts: base + i * 2 - (rnd() < 0.01 ? 120_000 : Math.floor(rnd() * 2000)), region: REGIONS[i % REGIONS.length], cents: Math.floor(rnd() * 20_000) })),
  );
}

/** Drains the orders stream with the example job `reps` times. */
export async function runOrders(nc: NatsConnection, o: { url: string; orders: number; reps: number; workDir: string; onProgress?: (f: number, label: string) => void }): Promise<OrdersOutcome> {
  await fillStream(nc, 'BENCH_ORD', 'benchord.in', buildOrders(o.orders), (f) => o.onProgress?.(f / 3, `${o.orders} orders`));
  const wallMs: number[] = [];
  let results = 0;
  for (let i = 0; i < o.reps; i++) {
    o.onProgress?.(1 / 3 + ((2 / 3) * i) / o.reps, `drain run ${i + 1}/${o.reps}`);
    const job = new JobProcess([
      '--nats', o.url, '--job', 'ord', '--job-module', join(repoRoot(), 'examples', 'orders', 'job.mjs'),
      '--input-stream', 'BENCH_ORD', '--input-subjects', 'benchord.>', '--sink', 'nats:bench.ord.results',
      '--state-dir', join(o.workDir, `ord-${i}`), '--checkpoint-interval', '1s', '--drain', '--reset-state',
    ]);
    const exit = await job.exited;
    if (exit.code !== 0) throw new Error(`orders job exited with code ${exit.code}: ${job.stderrTail.slice(-1500)}`);
    const fin = job.lines.find(isFinishedLine);
    if (!fin || Number(fin.json.seq) !== o.orders) throw new Error(`orders job did not read all ${o.orders} orders: ${job.stderrTail.slice(-800)}`);
    results = Number(fin.json.results);
    wallMs.push(exit.at - job.spawnedAt);
  }
  await deleteStream(nc, 'BENCH_ORD');
  return {
    ordersPerSec: (o.orders / median(wallMs)) * 1000,
    orders: o.orders,
    runs: o.reps,
    wallMs,
    results,
    method: 'examples/orders/job.mjs via tidemark run --job-module (sliding:10m,1m, keys region + *, checkpoints every 1 s, nats: sink), --drain, spawn → exit, median of the runs; orders of ~80 B, 1% late by 2 min',
  };
}
