// The kill -9 loop of the recovery tests and the soak script: spawn `tidemark run --drain`, let it
// die (SIGKILL after a delay, or at a fault point inside a checkpoint or sink write), restart it on
// the same state directory, until a run exits on its own.

import { spawnCli, type CliResult } from './nats.js';

/**
 * How the next run dies. `killAfterMs`: SIGKILL that long after the run's `afterCheckpoints`-th
 * checkpoint (and its first post), or after its spawn when `afterCheckpoints` is left out.
 * `fault`: TIDEMARK_FAULT makes the process kill itself at that point. `finish`: left to exit.
 */
export type KillPlan = { afterCheckpoints?: number; killAfterMs: number } | { fault: string } | 'finish';

export interface LoopRun {
  plan: KillPlan;
  result: CliResult;
  /** the input sequence the run resumed after (from its log), when it restored a checkpoint */
  resumedAfter?: number;
  /** it died by SIGKILL, and input was left when it did (see `inputLength`) */
  counted: boolean;
}

export interface KillLoopOptions {
  /** the CLI's arguments, or a function of the run's number (from 0) giving them: e.g. rescaling */
  args: readonly string[] | ((run: number) => readonly string[]);
  /** the plan of the next run, given the counted kills so far */
  plan: (kills: number) => KillPlan;
  maxRuns: number;
  /** the input's length: a killed run that had resumed at or past it had nothing to lose, and is not counted */
  inputLength?: number;
  /** a run that lives longer is killed and ends the loop (`timedOut`) */
  runTimeoutMs?: number;
  /** called after every run */
  onRun?: (run: LoopRun, totals: { kills: number; runs: number }) => void;
}

export interface KillLoopResult {
  /** the run that ended the loop */
  last: CliResult;
  /** SIGKILLs while input was left */
  kills: number;
  /** counted kills whose plan was a fault point */
  faultKills: number;
  /** runs that resumed from a checkpoint */
  recoveries: number;
  /** processes spawned */
  runs: number;
  /** a run exited on its own while the plan still asked for a kill */
  finishedEarly: boolean;
  /** a run outlived `runTimeoutMs` */
  timedOut: boolean;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const checkpointsAndFirstPost = (k: number) => (err: string): boolean => (err.match(/checkpoint complete/g) ?? []).length >= k && /watermark = max\(ts\)/.test(err);

/** Runs the CLI with `args` again and again, killing it as `plan` says, until a run exits on its own. */
export async function killLoop(o: KillLoopOptions): Promise<KillLoopResult> {
  const out: KillLoopResult = { last: { code: null, signal: null, stdout: '', stderr: '' }, kills: 0, faultKills: 0, recoveries: 0, runs: 0, finishedEarly: false, timedOut: false };
  while (out.runs < o.maxRuns) {
    const plan = o.plan(out.kills);
    const fault = typeof plan === 'object' && 'fault' in plan ? plan.fault : undefined;
    const args = typeof o.args === 'function' ? o.args(out.runs) : o.args;
    const { child, done, waitFor } = spawnCli([...args], { env: fault ? { TIDEMARK_FAULT: fault } : {} });
    out.runs++;
    let timer: NodeJS.Timeout | undefined;
    if (o.runTimeoutMs) {
      timer = setTimeout(() => {
        out.timedOut = true;
        child.kill('SIGKILL');
      }, o.runTimeoutMs);
    }
    if (typeof plan === 'object' && 'killAfterMs' in plan) {
      // Counting from the k-th checkpoint of this run: start-up and checkpoint times vary with load.
      if (plan.afterCheckpoints !== undefined) await waitFor(checkpointsAndFirstPost(plan.afterCheckpoints)).catch(() => undefined);
      const exited = await Promise.race([done, sleep(plan.killAfterMs).then(() => undefined)]);
      if (!exited) child.kill('SIGKILL');
    }
    const result = await done;
    clearTimeout(timer);
    out.last = result;
    const resumed = /resuming after input sequence (\d+)/.exec(result.stderr);
    const resumedAfter = resumed ? Number(resumed[1]) : undefined;
    if (resumedAfter !== undefined) out.recoveries++;
    const killed = result.signal === 'SIGKILL' && !out.timedOut;
    const counted = killed && (o.inputLength === undefined || resumedAfter === undefined || resumedAfter < o.inputLength);
    if (counted) {
      out.kills++;
      if (fault) out.faultKills++;
    }
    o.onRun?.({ plan, result, resumedAfter, counted }, { kills: out.kills, runs: out.runs });
    if (killed) continue;
    out.finishedEarly = plan !== 'finish' && result.code === 0;
    break;
  }
  return out;
}
