// Test helpers for the live dashboard: Debian's chromium, reading a results stream, an SSE client.

import { existsSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import type { NatsConnection } from 'nats';
import type { SentimentRecord as ResultRecord } from '../../src/host/alerts.js';

export const CHROMIUM = '/usr/bin/chromium';

/** Installs Debian's chromium when it is missing (as .ci/run does); throws with apt's output when that fails. */
export function ensureChromium(): string {
  if (!existsSync(CHROMIUM)) {
    try {
      execFileSync('bash', ['-c', 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium'], { stdio: 'pipe', timeout: 600_000 });
    } catch (e) {
      throw new Error(`chromium is missing and apt-get install -y chromium failed: ${String((e as { stderr?: Buffer }).stderr ?? e)}`);
    }
  }
  return CHROMIUM;
}

/** Chromium flags for a quiet headless run in a container. */
export const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/** Every record of a JetStream results stream, by stream sequence. */
export async function readResultsStream(nc: NatsConnection, stream: string): Promise<Map<number, ResultRecord>> {
  const out = new Map<number, ResultRecord>();
  const jsm = await nc.jetstreamManager();
  const last = (await jsm.streams.info(stream)).state.last_seq;
  if (last === 0) return out;
  const consumer = await nc.jetstream().consumers.get(stream);
  const dec = new TextDecoder();
  while (true) {
    const m = await consumer.next({ expires: 3000 });
    if (!m) break;
    out.set(m.seq, JSON.parse(dec.decode(m.data)) as ResultRecord);
    if (m.seq >= last) break;
  }
  return out;
}

/** The latest revision of each window among `records` (as a dashboard should show it). */
export function latestByWindow(records: Iterable<ResultRecord>): Map<string, ResultRecord> {
  const out = new Map<string, ResultRecord>();
  for (const r of records) {
    const k = `${r.key}|${r.window.start}|${r.window.end}`;
    const p = out.get(k);
    if (!p || p.revision <= r.revision) out.set(k, r);
  }
  return out;
}

export interface SseEvent {
  event: string;
  id?: string;
  data: unknown;
}

/** A minimal Server-Sent Events client (node:http): events as they arrive, reconnect by hand. */
export class SseClient {
  readonly events: SseEvent[] = [];
  lastId = '';
  /** Responses received (one per connection that got through). */
  connections = 0;
  private req?: http.ClientRequest;
  closed = false;

  constructor(private readonly url: string) {}

  /** Connects (sending Last-Event-ID when there is one); resolves when the stream closes or fails. */
  connect(): Promise<'closed' | 'error'> {
    return new Promise((resolve) => {
      const headers: Record<string, string> = { accept: 'text/event-stream' };
      if (this.lastId) headers['last-event-id'] = this.lastId;
      const req = http.get(`${this.url}events`, { headers }, (res) => {
        this.connections++;
        let buf = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          buf += chunk;
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            const ev: { event: string; id?: string; data: string[] } = { event: 'message', data: [] };
            for (const line of block.split('\n')) {
              if (line.startsWith(':')) continue;
              const c = line.indexOf(':');
              const field = c < 0 ? line : line.slice(0, c);
              const value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
              if (field === 'event') ev.event = value;
              else if (field === 'data') ev.data.push(value);
              else if (field === 'id') ev.id = value;
            }
            if (ev.data.length === 0) continue;
            if (ev.id !== undefined) this.lastId = ev.id;
            this.events.push({ event: ev.event, ...(ev.id !== undefined ? { id: ev.id } : {}), data: JSON.parse(ev.data.join('\n')) });
          }
        });
        res.on('end', () => resolve('closed'));
        res.on('error', () => resolve('error'));
      });
      req.on('error', () => resolve('error'));
      this.req = req;
    });
  }

  /** Connects again and again (every 200 ms) until close(). */
  async keepConnected(): Promise<void> {
    while (!this.closed) {
      await this.connect();
      if (!this.closed) await new Promise((r) => setTimeout(r, 200));
    }
  }

  close(): void {
    this.closed = true;
    this.req?.destroy();
  }

  /** Every result record received (`results` and `snapshot` events), in order. */
  results(): ResultRecord[] {
    const out: ResultRecord[] = [];
    for (const e of this.events) if (e.event === 'results' || e.event === 'snapshot') out.push(...(e.data as { records: ResultRecord[] }).records);
    return out;
  }

  async waitFor(pred: () => boolean, what: string, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`SSE: timed out waiting for ${what} (${this.events.length} events)`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
