// Event-loop stalls with the CPU the process spent in them. On a shared machine a stall may be the
// process's own work (or its GC) or the scheduler giving the cores to other processes: a timer
// every TICK_MS sees how late it runs and how much CPU the process (all its threads) used meanwhile.

const TICK_MS = 5;

export interface StallFigures {
  /** the longest a timer ran late (ms) */
  worstMs: number;
  /** process CPU time used during that stall (ms; all threads, so GC helpers and LevelDB's too) */
  cpuInWorstMs: number;
  /** the largest process CPU time used during any one stall: what the process itself can account for */
  worstOnCpuMs: number;
}

/** Watches stalls until `stop()`. */
export function watchStalls(): { stop: () => StallFigures } {
  const f: StallFigures = { worstMs: 0, cpuInWorstMs: 0, worstOnCpuMs: 0 };
  let last = performance.now();
  let lastCpu = process.cpuUsage();
  let timer: NodeJS.Timeout;
  const tick = (): void => {
    const now = performance.now();
    const cpu = process.cpuUsage(lastCpu);
    const late = Math.max(0, now - last - TICK_MS);
    const onCpu = Math.min(now - last, (cpu.user + cpu.system) / 1000);
    if (late > f.worstMs) {
      f.worstMs = late;
      f.cpuInWorstMs = onCpu;
    }
    if (late > 0) f.worstOnCpuMs = Math.max(f.worstOnCpuMs, Math.min(late, onCpu));
    last = now;
    lastCpu = process.cpuUsage();
    timer = setTimeout(tick, TICK_MS);
  };
  timer = setTimeout(tick, TICK_MS);
  return {
    stop: () => {
      clearTimeout(timer);
      tick();
      clearTimeout(timer);
      const r = (x: number): number => Math.round(x * 10) / 10;
      return { worstMs: r(f.worstMs), cpuInWorstMs: r(f.cpuInWorstMs), worstOnCpuMs: r(f.worstOnCpuMs) };
    },
  };
}
