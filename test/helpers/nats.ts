// Test helpers: one real nats-server per test file on a free loopback port,
// and the built CLI run as a child process.

import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { connect, type NatsConnection } from 'nats';
import { EmbeddedNats } from '../../src/io/nats-server.js';
import { callEndpoint, type StatusAnswer } from '../../src/io/service-request.js';

const up2 = fileURLToPath(new URL('../..', import.meta.url));
/** The project's root, also when these helpers run compiled from dist/ (scripts/soak.ts). */
export const ROOT = existsSync(join(up2, 'package.json')) ? up2 : join(up2, '..');
export const CLI = join(ROOT, 'bin', 'tidemark.js');

/** A scratch directory removed at teardown. */
export function scratchDir(prefix = 'tidemark-test-'): { dir: string; remove(): void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Starts a nats-server for this test file. */
export async function startNats(dir: string): Promise<EmbeddedNats> {
  return EmbeddedNats.start(join(dir, 'nats-store'));
}

export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Spawns the CLI; `done` resolves when it exits; `waitFor` resolves once stderr or stdout matches. */
/** A CLI process the test runs: its end, a wait for a line it logs, and its stderr so far. */
export interface CliProcess {
  child: ChildProcess;
  done: Promise<CliResult>;
  waitFor: (what: RegExp | ((stderr: string) => boolean), timeoutMs?: number) => Promise<void>;
  stderr: () => string;
}

export function spawnCli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): CliProcess {
  const child = spawn(process.execPath, [CLI, ...args], { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<CliResult>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  const waitFor = async (what: RegExp | ((stderr: string) => boolean), timeoutMs = 30_000): Promise<void> => {
    const deadline = Date.now() + timeoutMs;
    const seen = (): boolean => (typeof what === 'function' ? what(stderr) : what.test(stderr) || what.test(stdout));
    while (!seen()) {
      if (child.exitCode !== null || Date.now() > deadline) throw new Error(`never saw ${String(what)} (stderr: ${stderr.slice(-500)})`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  return { child, done, waitFor, stderr: () => stderr };
}

/** Runs the CLI to completion. */
export function runCli(args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliResult> {
  return spawnCli(args, opts).done;
}

/**
 * The usual set-up of an integration test file: a scratch directory, a nats-server, a client
 * connection and a set of spawned children; all killed, closed and removed at teardown.
 */
export async function natsFixture(
  t: { teardown(fn: () => unknown): void },
  prefix?: string,
): Promise<{ scratch: { dir: string; remove(): void }; nats: EmbeddedNats; nc: NatsConnection; children: Set<ChildProcess> }> {
  const scratch = scratchDir(prefix);
  const nats = await startNats(scratch.dir);
  const nc = await connect({ servers: nats.url });
  const children = new Set<ChildProcess>();
  t.teardown(async () => {
    for (const c of children) c.kill('SIGKILL');
    await nc.close();
    await nats.stop();
    scratch.remove();
  });
  return { scratch, nats, nc, children };
}

/** Publishes payloads into a new input stream `stream` (subjects `subject.>`), in order, with acks. */
export async function fillStream(nc: NatsConnection, stream: string, subject: string, payloads: readonly string[]): Promise<void> {
  await (await nc.jetstreamManager()).streams.add({ name: stream, subjects: [`${subject}.>`] });
  const js = nc.jetstream();
  const enc = new TextEncoder();
  for (let i = 0; i < payloads.length; i += 500) await Promise.all(payloads.slice(i, i + 500).map((p) => js.publish(`${subject}.in`, enc.encode(p))));
}

/** Every record a JetStream sink's stream holds, decoded (deleted sequences skipped). */
export async function storedResults(conn: NatsConnection, stream: string): Promise<Array<{ id: string }>> {
  const jsm = await conn.jetstreamManager();
  const info = await jsm.streams.info(stream);
  const dec = new TextDecoder();
  const out: Array<{ id: string }> = [];
  for (let seq = info.state.first_seq; seq <= info.state.last_seq && info.state.messages > 0; seq++) {
    const m = await jsm.streams.getMessage(stream, { seq }).catch(() => undefined);
    if (m) out.push(JSON.parse(dec.decode(m.data)) as { id: string });
  }
  return out;
}

/**
 * Asks the job's status endpoint (in a group any instance answers for the whole job) until `ready`
 * holds of the answer or `timeoutMs` passed; the last answer. Between two generations the service is
 * briefly away: asked again.
 */
export async function statusUntil(conn: NatsConnection, job: string, ready: (s: StatusAnswer) => boolean, timeoutMs: number): Promise<StatusAnswer | undefined> {
  const deadline = Date.now() + timeoutMs;
  let status: StatusAnswer | undefined;
  for (;;) {
    status = ((await callEndpoint(conn, job, 'status', {}).catch(() => undefined)) as StatusAnswer | undefined) ?? status;
    if ((status && ready(status)) || Date.now() >= deadline) return status;
    await new Promise((r) => setTimeout(r, 100));
  }
}
