// Small helpers shared by every benchmark phase: the repository root, clocks, statistics,
// and a NATS stream filler, so each phase measures its subject and nothing of its own making.

import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NatsConnection } from 'nats';

/** The repository root (holds package.json named tidemark), found from this file's location. */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const pkg = join(dir, 'package.json');
    if (existsSync(pkg)) {
      try {
        if ((JSON.parse(readFileSync(pkg, 'utf8')) as { name?: string }).name === 'tidemark') return dir;
      } catch {
        // not ours: keep walking up
      }
    }
    const up = dirname(dir);
    if (up === dir) throw new Error('benchmarks: cannot find the tidemark repository root');
    dir = up;
  }
}

/** Wall-clock time in ms since the epoch with sub-millisecond resolution (monotonic within a process). */
export const epochNow = (): number => performance.timeOrigin + performance.now();

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Median of a non-empty list. */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return Number.NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

/** Rounds for display and storage (keeps ratios computed from stored values exact). */
export const round = (x: number, digits = 0): number => {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
};

/** Waits until `cond` holds, polling; throws `what` on timeout. */
export async function waitUntil(cond: () => boolean | Promise<boolean>, timeoutMs: number, what: string, pollMs = 20): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`benchmarks: timed out after ${timeoutMs} ms waiting for ${what}`);
    await sleep(pollMs);
  }
}

/**
 * Publishes payloads with core NATS into a (new) JetStream stream and waits until the stream
 * holds them all. Core publish without acks, as the issue asks of every generator.
 */
export async function fillStream(
  nc: NatsConnection,
  stream: string,
  subject: string,
  payloads: readonly Uint8Array[],
  onProgress?: (fraction: number) => void,
): Promise<{ ms: number }> {
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: stream, subjects: [`${subject.split('.')[0]}.>`] });
  const t0 = performance.now();
  for (let i = 0; i < payloads.length; i++) {
    nc.publish(subject, payloads[i]);
    if (i % 10_000 === 9_999) {
      await nc.flush();
      onProgress?.((i + 1) / payloads.length / 2);
    }
  }
  await nc.flush();
  let stalled = 0;
  let last = -1;
  for (;;) {
    const n = (await jsm.streams.info(stream)).state.messages;
    onProgress?.(0.5 + n / payloads.length / 2);
    if (n >= payloads.length) break;
    stalled = n === last ? stalled + 1 : 0;
    if (stalled > 100) throw new Error(`benchmarks: stream ${stream} holds ${n} of ${payloads.length} posts and is not growing`);
    last = n;
    await sleep(50);
  }
  return { ms: performance.now() - t0 };
}

/** Deletes a stream, ignoring a missing one (frees disk between phases). */
export async function deleteStream(nc: NatsConnection, stream: string): Promise<void> {
  const jsm = await nc.jetstreamManager();
  await jsm.streams.delete(stream).catch(() => undefined);
}
