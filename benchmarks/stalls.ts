// Event-loop stalls and where their time went. On a shared machine a stall may be the process's own
// work on its main thread (JavaScript and the GC pauses it takes there), or the main thread waiting
// for a core while other processes hold them, or the main thread blocked (e.g. waiting for GC helper
// threads). A timer every TICK_MS sees how late it runs and, from Linux's schedstat for the main
// thread, how long that thread ran and how long it waited for a core meanwhile.

import { readFileSync } from 'node:fs';

const TICK_MS = 5;

export interface StallFigures {
  /** the longest a timer ran late (ms) */
  worstMs: number;
  /** of that stall: the main thread on a core (ms) */
  onCpuInWorstMs: number;
  /** of that stall: the main thread runnable but waiting for a core (ms) */
  waitingInWorstMs: number;
  /** the longest the main thread itself ran within any one stall: what the process accounts for (ms) */
  worstOnCpuMs: number;
  /** when that stall ended (performance.now(), ms since the process started: compare with --trace-gc) */
  worstOnCpuAtMs: number;
}

/** The main thread's time on a core and waiting for one (ns); process CPU time where schedstat is missing. */
function mainThreadTimes(): { run: number; wait: number } {
  try {
    const [run, wait] = readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ').map(Number);
    if (Number.isFinite(run) && Number.isFinite(wait)) return { run: run!, wait: wait! };
  } catch {
    // not Linux
  }
  const c = process.cpuUsage();
  return { run: (c.user + c.system) * 1000, wait: 0 };
}

/** Watches stalls until `stop()`. */
export function watchStalls(): { stop: () => StallFigures } {
  const f: StallFigures = { worstMs: 0, onCpuInWorstMs: 0, waitingInWorstMs: 0, worstOnCpuMs: 0, worstOnCpuAtMs: 0 };
  let last = performance.now();
  let lastTimes = mainThreadTimes();
  let timer: NodeJS.Timeout;
  const tick = (): void => {
    const now = performance.now();
    const times = mainThreadTimes();
    const late = Math.max(0, now - last - TICK_MS);
    const run = Math.min(now - last, (times.run - lastTimes.run) / 1e6);
    const wait = Math.min(now - last, (times.wait - lastTimes.wait) / 1e6);
    if (late > f.worstMs) {
      f.worstMs = late;
      f.onCpuInWorstMs = run;
      f.waitingInWorstMs = wait;
    }
    if (late > 0 && Math.min(late, run) > f.worstOnCpuMs) {
      f.worstOnCpuMs = Math.min(late, run);
      f.worstOnCpuAtMs = now;
    }
    last = now;
    lastTimes = times;
    timer = setTimeout(tick, TICK_MS);
  };
  timer = setTimeout(tick, TICK_MS);
  return {
    stop: () => {
      clearTimeout(timer);
      tick();
      clearTimeout(timer);
      const r = (x: number): number => Math.round(x * 10) / 10;
      return { worstMs: r(f.worstMs), onCpuInWorstMs: r(f.onCpuInWorstMs), waitingInWorstMs: r(f.waitingInWorstMs), worstOnCpuMs: r(f.worstOnCpuMs), worstOnCpuAtMs: Math.round(f.worstOnCpuAtMs) };
    },
  };
}
