// What the figures were measured on: node and nats-server versions, CPU, cores, memory, load and
// the git commit, so a result file can be compared with another machine's or another commit's.

import { execFileSync } from 'node:child_process';
import { cpus, loadavg, totalmem, platform, release } from 'node:os';
import { repoRoot } from './common.js';

export interface BenchEnv {
  node: string;
  natsServer: string;
  natsJs: string;
  cpuModel: string;
  cores: number;
  totalMemBytes: number;
  platform: string;
  gitCommit: string;
  /** uncommitted changes in the work tree when the benchmark ran */
  gitDirty: boolean;
  /** 1-minute load average before the run (other work on the machine skews every figure) */
  loadAvg1mBefore: number;
  loadAvg1mAfter: number;
}

const git = (args: string[]): string => {
  try {
    return execFileSync('git', args, { cwd: repoRoot(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    return '';
  }
};

/** Reads the environment; `natsServer` comes from the server's INFO (the one measured). */
export function readEnv(natsServer: string, natsJs: string): BenchEnv {
  const c = cpus();
  return {
    node: process.version,
    natsServer,
    natsJs,
    cpuModel: c[0]?.model.trim() ?? 'unknown',
    cores: c.length,
    totalMemBytes: totalmem(),
    platform: `${platform()} ${release()}`,
    gitCommit: git(['rev-parse', 'HEAD']) || 'unknown',
    gitDirty: git(['status', '--porcelain', '--untracked-files=no']) !== '',
    loadAvg1mBefore: loadavg()[0] ?? 0,
    loadAvg1mAfter: loadavg()[0] ?? 0,
  };
}
