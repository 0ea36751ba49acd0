// `tidemark run` as a child process, the way a user runs it: its JSON log lines (pino, stderr)
// are parsed as they arrive and stamped with this process's clock, so phases can wait on them.

import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { repoRoot } from './common.js';

/** One log line of the job, with the benchmark's receive time (performance.now()). */
export interface LogLine {
  at: number;
  json: Record<string, unknown>;
}

export interface JobExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** performance.now() when the process exited */
  at: number;
}

/** A spawned job. */
export class JobProcess {
  readonly child: ChildProcess;
  /** performance.now() right before spawn */
  readonly spawnedAt: number;
  readonly lines: LogLine[] = [];
  readonly exited: Promise<JobExit>;
  private plain = '';
  private partial = '';
  private waiters: Array<{ pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }> = [];

  constructor(args: readonly string[], opts: { nodeFlags?: readonly string[] } = {}) {
    const cli = join(repoRoot(), 'bin', 'tidemark.js');
    this.spawnedAt = performance.now();
    this.child = spawn(process.execPath, [...(opts.nodeFlags ?? []), cli, 'run', ...args], { cwd: repoRoot(), stdio: ['ignore', 'ignore', 'pipe'] });
    this.child.stderr!.on('data', (d: Buffer) => this.onData(d.toString()));
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => resolve({ code, signal, at: performance.now() }));
    });
  }

  /**
   * What to quote when the job fails: its last non-JSON stderr lines (a crash trace) if any,
   * else the messages of its last log lines.
   */
  get stderrTail(): string {
    const plain = this.plain.trim();
    if (plain) {
      // A crash trace: its error line and the first frame outside node_modules say the most.
      const lines = plain.split('\n').map((l) => l.trim());
      const i = lines.findIndex((l) => /^[A-Z]\w*(Error|Exception)\b/.test(l));
      if (i < 0) return plain;
      const frame = lines.slice(i + 1).find((l) => l.startsWith('at ') && !l.includes('node_modules'));
      return [lines[i], frame].filter(Boolean).join(' ');
    }
    return this.lines
      .slice(-5)
      .map((l) => `${String(l.json.msg ?? '')}${l.json.err ? ` ${JSON.stringify(l.json.err).slice(0, 400)}` : ''}`)
      .join(' | ');
  }

  /** Resolves with the first line (already seen or future) that satisfies `pred`; rejects on exit or timeout. */
  waitFor(pred: (l: LogLine) => boolean, timeoutMs: number, what: string): Promise<LogLine> {
    const seen = this.lines.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise<LogLine>((resolve, reject) => {
      const entry = { pred, resolve: (l: LogLine) => done(() => resolve(l)) };
      const timer = setTimeout(() => done(() => reject(new Error(`job did not log ${what} within ${timeoutMs} ms; stderr: ${this.stderrTail.slice(-1500)}`))), timeoutMs);
      const onExit = (e: JobExit): void => done(() => reject(new Error(`job exited (code ${e.code}, signal ${e.signal}) before logging ${what}; stderr: ${this.stderrTail.slice(-1500)}`)));
      let settled = false;
      const done = (f: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.waiters = this.waiters.filter((w) => w !== entry);
        f();
      };
      this.waiters.push(entry);
      void this.exited.then(onExit);
    });
  }

  /** Sends a signal if the process is still running. */
  kill(signal: NodeJS.Signals): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }

  /** SIGTERM, then SIGKILL after `graceMs`; resolves on exit. */
  async stop(graceMs = 10_000): Promise<JobExit> {
    this.kill('SIGTERM');
    const t = setTimeout(() => this.kill('SIGKILL'), graceMs);
    const e = await this.exited;
    clearTimeout(t);
    return e;
  }

  private onData(text: string): void {
    const at = performance.now();
    const parts = (this.partial + text).split('\n');
    this.partial = parts.pop() ?? '';
    for (const raw of parts) {
      let json: unknown;
      try {
        json = raw.startsWith('{') ? JSON.parse(raw) : undefined;
      } catch {
        json = undefined;
      }
      if (typeof json !== 'object' || json === null) {
        if (raw.trim()) this.plain = `${this.plain}${raw}\n`.slice(-4000);
        continue;
      }
      const line: LogLine = { at, json: json as Record<string, unknown> };
      this.lines.push(line);
      for (const w of [...this.waiters]) if (w.pred(line)) w.resolve(line);
    }
  }
}

/** The start-up line every job logs once it is wired and about to read its input. */
export const isStartLine = (l: LogLine): boolean => typeof l.json.window === 'string' && typeof l.json.emit === 'string';

/** The line a job logs when it has processed its input and exits (drain). */
export const isFinishedLine = (l: LogLine): boolean => typeof l.json.seq === 'number' && typeof l.json.results === 'number';

/** The line logged after restoring a checkpoint, with `recoveryMs`. */
export const isRecoveredLine = (l: LogLine): boolean => typeof l.json.recoveryMs === 'number';

/** A completed checkpoint (debug level), with the input sequence it covers. */
export const isCheckpointLine = (l: LogLine): boolean => l.json.msg === 'checkpoint complete' && typeof l.json.seq === 'number';
