// Recovery after kill -9 with a large state: N live windows (N distinct hashtags in one open
// day-long window), a periodic checkpoint that covers them, SIGKILL, restart on the same state.
//
// Headline: spawn of the restarted process → the first result at a NATS subscriber, where a
// post published before the restart moves the watermark past the restored windows' end.

import { cpSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import type { NatsConnection } from 'nats';
import { JobProcess, isCheckpointLine, isRecoveredLine, isStartLine } from './job-process.js';
import { waitUntil } from './common.js';

export interface RecoveryOptions {
  url: string;
  windows: number;
  /** distinct hashtags per post (builds the state with few posts) */
  tagsPerPost: number;
  workDir: string;
  timeoutMs: number;
  /**
   * Also restart once more under `node --cpu-prof` (not measured), from a copy of the state
   * taken right after the kill, profiles into this directory.
   */
  profileDir?: string;
  onProgress?: (fraction: number, label: string) => void;
}

export interface RecoveryOutcome {
  /** restart (spawn) → first result at a subscriber; null when the job never produced one */
  msToFirstResult: number | null;
  /** restart (spawn) → the "recovered from checkpoint" log line arriving */
  msToRecoveredLog: number | null;
  /** the job's own recoveryMs (open store, restore, rebuild actors; excludes node start-up) */
  loggedRecoveryMs: number | null;
  /** restart (spawn) → every restored window's result at the subscriber */
  msToAllResults: number | null;
  windows: number;
  windowsRestored: number | null;
  checkpointBytes: number | null;
  checkpointMs: number | null;
  /** why a figure is missing (the job crashed, timed out, ...) */
  error?: string;
}

const DAY = 86_400_000;

/** Job flags; the same for the first run and the restart. */
function recoveryArgs(url: string, stateDir: string, sinkSubject: string): string[] {
  return [
    '--nats', url,
    '--job', 'rec',
    '--input-stream', 'BENCH_REC',
    '--input-subjects', 'benchrec.>',
    '--window', 'tumbling:1d',
    '--keys', 'hashtags',
    '--sink', `nats:${sinkSubject}`,
    '--state-dir', stateDir,
    '--checkpoint-interval', '1s',
    '--log-level', 'debug',
  ];
}

export async function runRecovery(nc: NatsConnection, o: RecoveryOptions): Promise<RecoveryOutcome> {
  const out: RecoveryOutcome = {
    msToFirstResult: null,
    msToRecoveredLog: null,
    loggedRecoveryMs: null,
    msToAllResults: null,
    windows: o.windows,
    windowsRestored: null,
    checkpointBytes: null,
    checkpointMs: null,
  };
  const jsm = await nc.jetstreamManager();
  await jsm.streams.delete('BENCH_REC').catch(() => undefined);
  await jsm.streams.add({ name: 'BENCH_REC', subjects: ['benchrec.>'] });
  const stateDir = join(o.workDir, `rec-${o.windows}`);
  rmSync(stateDir, { recursive: true, force: true });
  rmSync(`${stateDir}-copy`, { recursive: true, force: true });
  const sinkSubject = 'bench.rec.results';
  const base = Math.floor(Date.UTC(2025, 0, 1) / DAY) * DAY;
  const enc = new TextEncoder();
  const posts = Math.ceil(o.windows / o.tagsPerPost);
  for (let i = 0; i < posts; i++) {
    const tags: string[] = [];
    for (let j = i * o.tagsPerPost; j < Math.min(o.windows, (i + 1) * o.tagsPerPost); j++) tags.push(`#w${j}`);
    nc.publish('benchrec.in', enc.encode(JSON.stringify({ id: `r${i}`, ts: base + 1000 + i, text: `a good day ${tags.join(' ')}` })));
  }
  await nc.flush();
  let job: JobProcess | undefined;
  try {
    o.onProgress?.(0.05, `building ${o.windows} live windows`);
    job = new JobProcess(recoveryArgs(o.url, stateDir, sinkSubject));
    await job.waitFor(isStartLine, 30_000, 'its start-up line');
    const cp = await job.waitFor((l) => isCheckpointLine(l) && Number(l.json.seq) >= posts, o.timeoutMs, `a checkpoint covering input sequence ${posts}`);
    out.checkpointBytes = typeof cp.json.bytes === 'number' ? cp.json.bytes : null;
    out.checkpointMs = typeof cp.json.ms === 'number' ? cp.json.ms : null;
    o.onProgress?.(0.5, 'kill -9');
    job.kill('SIGKILL');
    await job.exited;
    if (o.profileDir) cpSync(stateDir, `${stateDir}-copy`, { recursive: true });

    // The post that fires every restored window, already in the stream when the job restarts.
    nc.publish('benchrec.in', enc.encode(JSON.stringify({ id: 'tick', ts: base + DAY + 60_000, text: '#tick' })));
    await nc.flush();
    await waitUntil(async () => (await jsm.streams.info('BENCH_REC')).state.messages >= posts + 1, 10_000, 'the firing post in the stream');

    let firstAt = 0;
    let allAt = 0;
    let got = 0;
    const sub = nc.subscribe(sinkSubject, {
      callback: () => {
        const at = performance.now();
        got++;
        if (got === 1) firstAt = at;
        if (got === o.windows) allAt = at;
      },
    });
    await nc.flush();
    o.onProgress?.(0.6, `restart with ${o.windows} windows in the checkpoint`);
    job = new JobProcess(recoveryArgs(o.url, stateDir, sinkSubject));
    const restarted = job;
    const rec = await restarted.waitFor(isRecoveredLine, o.timeoutMs, 'its recovery line');
    out.msToRecoveredLog = rec.at - restarted.spawnedAt;
    out.loggedRecoveryMs = Number(rec.json.recoveryMs);
    out.windowsRestored = typeof rec.json.windows === 'number' ? rec.json.windows : null;
    let exitedEarly: string | undefined;
    void restarted.exited.then((e) => (exitedEarly = `restarted job exited (code ${e.code}, signal ${e.signal}): ${restarted.stderrTail.slice(-600)}`));
    await waitUntil(() => got >= o.windows || exitedEarly !== undefined, o.timeoutMs, `${o.windows} results after the restart`).catch((e: Error) => {
      exitedEarly ??= e.message;
    });
    sub.unsubscribe();
    if (process.env.TIDEMARK_BENCH_TRACE) {
      for (const l of restarted.lines) process.stderr.write(`${(l.at - restarted.spawnedAt).toFixed(0).padStart(6)} ms  ${String(l.json.msg)}\n`);
      process.stderr.write(`${(firstAt - restarted.spawnedAt).toFixed(0).padStart(6)} ms  first result at the subscriber\n`);
    }
    if (firstAt) out.msToFirstResult = firstAt - restarted.spawnedAt;
    if (allAt) out.msToAllResults = allAt - restarted.spawnedAt;
    if (got < o.windows) out.error = `${got} of ${o.windows} results arrived after the restart; ${exitedEarly ?? ''}`.trim();
    if (o.profileDir) {
      o.onProgress?.(0.9, 'profiling a restart (node --cpu-prof, not measured)');
      await restarted.stop();
      const prof = new JobProcess(recoveryArgs(o.url, `${stateDir}-copy`, `${sinkSubject}.profile`), { nodeFlags: ['--cpu-prof', '--cpu-prof-dir', o.profileDir] });
      job = prof;
      let n = 0;
      const psub = nc.subscribe(`${sinkSubject}.profile`, { callback: () => void n++ });
      await waitUntil(() => n >= o.windows || prof.child.exitCode !== null, o.timeoutMs, 'the profiled restart').catch(() => undefined);
      psub.unsubscribe();
    }
  } catch (e) {
    out.error = (e as Error).message.slice(0, 2000);
  } finally {
    await job?.stop();
    await jsm.streams.delete('BENCH_REC').catch(() => undefined);
  }
  return out;
}
