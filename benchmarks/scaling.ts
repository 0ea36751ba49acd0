// Throughput of one job on 1, 2 and 3 `tidemark run` processes of a group (the same command, each with
// its own state directory) on this machine, with every process's CPU share: the group forms on an empty
// input stream, then the workload is published (core NATS, no acks) and the job's input counter is
// watched until every post is in; posts/s = posts ÷ (first publish → last post read). The CPU shares
// (from /proc/<pid>/stat over the same interval, in cores) say where the machine's cores went: the
// instances, nats-server, and the publisher (this process).

import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { connect, type NatsConnection } from 'nats';
import { mkdirSync, rmSync } from 'node:fs';
import { JobProcess } from './job-process.js';
import { buildWorkload, THROUGHPUT_JOB } from './workload.js';
import { EmbeddedNats } from '../src/io/nats-server.js';
import { callEndpoint, type StatusAnswer } from '../src/io/service-request.js';
import { repoRoot, round, sleep, waitUntil } from './common.js';

export interface ScalingRow {
  instances: number;
  postsPerSec: number;
  ms: number;
  /** CPU use over the measured interval, in cores (1 = one core busy all the time) */
  cpu: { instances: Array<{ role: string; cores: number }>; natsServer: number; publisher: number; total: number };
}

export interface ScalingOutcome {
  /** `--input-partitions` of the job measured (1: the coordinator reads the whole stream) */
  inputPartitions: number;
  method: string;
  posts: number;
  cores: number;
  rows: ScalingRow[];
  /** posts/s of two instances ÷ one instance's, same run */
  twoToOne: number;
  threeToOne: number;
}

const TICK = 100; // USER_HZ on Linux

/** utime + stime of a process in seconds, from /proc (0 when it is gone). */
function cpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / TICK;
  } catch {
    return 0;
  }
}

const selfCpu = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

async function status(nc: NatsConnection, job: string): Promise<StatusAnswer | undefined> {
  return (await callEndpoint(nc, job, 'status', {}).catch(() => undefined)) as StatusAnswer | undefined;
}

async function once(o: { url: string; serverPid: number; payloads: Uint8Array[]; workDir: string; inputPartitions: number }, n: number, idx: number): Promise<ScalingRow> {
  const job = `scl${idx}`;
  const stream = `SCL_${idx}`;
  const P = o.inputPartitions;
  // A partitioned input: the subjects as the server's {{partition(P,1)}} mapping stores them, post i on partition i mod P.
  const subjects = P > 1 ? Array.from({ length: P }, (_, p) => `scl${idx}.in.${p}.u`) : [`scl${idx}.in`];
  const nc = await connect({ servers: o.url });
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: stream, subjects: [`scl${idx}.>`] });
  const args = (i: number): string[] => [
    '--nats', o.url, '--job', job, '--input-stream', stream, '--input-subjects', `scl${idx}.>`,
    '--window', THROUGHPUT_JOB.window, '--max-out-of-orderness', `${THROUGHPUT_JOB.maxOutOfOrdernessMs}ms`, '--keys', THROUGHPUT_JOB.keys,
    '--sink', `nats:bench.${job}.results`, '--state-dir', join(o.workDir, job, `i${i}`), '--checkpoint-interval', '1s', '--log-level', 'info',
    ...(P > 1 ? ['--input-partitions', String(P)] : []),
  ];
  const procs: JobProcess[] = [];
  try {
    for (let i = 0; i < n; i++) {
      procs.push(new JobProcess(args(i)));
      // The first becomes the coordinator; the others join it as members.
      if (i === 0) await waitUntil(async () => (await status(nc, job)) !== undefined, 60_000, 'the coordinator', 100);
    }
    await waitUntil(async () => ((await status(nc, job))?.group?.instances.length ?? 0) === n, 60_000, `a generation of ${n} instance(s)`, 100);
    const pids = procs.map((p) => p.child.pid!);
    const before = { procs: pids.map(cpuSeconds), server: cpuSeconds(o.serverPid), self: selfCpu() };
    const t0 = performance.now();
    for (let i = 0; i < o.payloads.length; i++) {
      nc.publish(subjects[i % subjects.length]!, o.payloads[i]);
      if (i % 10_000 === 9_999) await nc.flush();
    }
    await nc.flush();
    let s: StatusAnswer | undefined;
    await waitUntil(async () => ((s = await status(nc, job))?.postsIn ?? 0) + (s?.deadLetters ?? 0) >= o.payloads.length, 600_000, 'every post read', 20);
    const ms = performance.now() - t0;
    const after = { procs: pids.map(cpuSeconds), server: cpuSeconds(o.serverPid), self: selfCpu() };
    const sec = ms / 1000;
    const view = s?.group?.instances ?? [];
    const instances = pids.map((pid, i) => {
      const inst = view.find((v) => v.pid === pid);
      return { role: inst ? inst.roles.join('+') || 'idle' : '?', cores: round((after.procs[i]! - before.procs[i]!) / sec, 2) };
    });
    const natsServer = round((after.server - before.server) / sec, 2);
    const publisher = round((after.self - before.self) / sec, 2);
    return { instances: n, postsPerSec: Math.round(o.payloads.length / sec), ms: Math.round(ms), cpu: { instances, natsServer, publisher, total: round(instances.reduce((a, b) => a + b.cores, 0) + natsServer + publisher, 2) } };
  } finally {
    for (const p of procs) p.child.kill('SIGTERM');
    await Promise.all(procs.map((p) => Promise.race([p.exited, sleep(15_000)])));
    for (const p of procs) p.child.kill('SIGKILL');
    await jsm.streams.delete(stream).catch(() => undefined);
    await nc.close();
  }
}

/** Measures 1, 2 and 3 instances, `reps` times each in the order 1,2,3,3,2,1,…; the median per count. */
export async function measureScaling(o: { url: string; serverPid: number; posts: number; reps: number; workDir: string; inputPartitions?: number; onProgress?: (f: number, label: string) => void }): Promise<ScalingOutcome> {
  const inputPartitions = o.inputPartitions ?? 1;
  const payloads = buildWorkload(o.posts).payloads;
  const counts = [1, 2, 3];
  const order: number[] = [];
  for (let r = 0; r < o.reps; r++) order.push(...(r % 2 === 0 ? counts : [...counts].reverse()));
  const byCount = new Map<number, ScalingRow[]>();
  for (let i = 0; i < order.length; i++) {
    const n = order[i]!;
    o.onProgress?.(i / order.length, `${n} instance(s)`);
    const row = await once({ url: o.url, serverPid: o.serverPid, payloads, workDir: o.workDir, inputPartitions }, n, i + (inputPartitions > 1 ? 100 : 0));
    byCount.set(n, [...(byCount.get(n) ?? []), row]);
  }
  const rows = counts.map((n) => {
    const rs = [...byCount.get(n)!].sort((a, b) => a.postsPerSec - b.postsPerSec);
    return rs[Math.floor(rs.length / 2)]!;
  });
  const one = rows[0]!.postsPerSec;
  return {
    inputPartitions,
    method: `a group of N \`tidemark run\` processes formed on an empty stream${inputPartitions > 1 ? ` with --input-partitions ${inputPartitions} (post i on partition i mod ${inputPartitions}; two or more instances read it partition by partition)` : ''}, then the posts published with core NATS; first publish → the job has read every post (status endpoint, 20 ms polls); CPU from /proc/<pid>/stat over the same interval, in cores; median of the runs per N, runs in the order 1,2,3,3,2,1`,
    posts: o.posts,
    cores: (await import('node:os')).availableParallelism(),
    rows,
    twoToOne: round(rows[1]!.postsPerSec / one, 3),
    threeToOne: round(rows[2]!.postsPerSec / one, 3),
  };
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const argv = process.argv.slice(2);
  const num = (flag: string, d: number): number => {
    const i = argv.indexOf(flag);
    return i >= 0 ? Number(argv[i + 1]) : d;
  };
  const workDir = join(repoRoot(), 'benchmarks', 'results', 'tmp', 'scaling');
  rmSync(workDir, { recursive: true, force: true });
  mkdirSync(workDir, { recursive: true });
  const server = await EmbeddedNats.start(join(workDir, 'nats'));
  try {
    const out = await measureScaling({ url: server.url, serverPid: server.pid ?? 0, posts: num('--posts', 100_000), reps: num('--reps', 1), inputPartitions: num('--input-partitions', 1), workDir, onProgress: (f, l) => process.stderr.write(`\r${Math.round(f * 100)}% ${l}      `) });
    process.stderr.write('\n');
    process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  } finally {
    await server.stop();
    rmSync(workDir, { recursive: true, force: true });
  }
}
