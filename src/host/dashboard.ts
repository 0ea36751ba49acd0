// The live dashboard's web server, on 127.0.0.1: the page and its scripts (served from this package and
// from node_modules, never a CDN), Server-Sent Events with the job's results, status, late and
// dead-letter examples and alerts, a proxy to the `query` endpoint and the alert rules.
//
// SSE: every batch of results is one `results` event whose id is `<tag>:<seq>` (tag `js-STREAM` with
// the results stream's sequence when the job has a jetstream: sink, otherwise the feed's own count).
// A page that reconnects sends its last id (Last-Event-ID, or ?lastEventId= for a fresh EventSource) and
// gets what it missed; when the id is from another source or older than what is held, it gets a
// `snapshot` (the latest revision of every window held) that replaces what it had.

import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { NatsConnection } from 'nats';
import type { Logger } from '../log.js';
import { TidemarkError } from '../errors.js';
import { DashboardFeed, type FeedEvent, type FeedOptions, type Numbered } from './dashboard-feed.js';

const require = createRequire(import.meta.url);

/** The package root (holds package.json), from dist/src/host or src/host alike. */
function packageRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('tidemark: package.json not found above the dashboard module');
    dir = up;
  }
  return dir;
}

interface Asset {
  type: string;
  body: Buffer;
}

/** The page's files: ours from src/dashboard, uPlot from node_modules. */
function loadAssets(): Map<string, Asset> {
  const page = join(packageRoot(), 'src', 'dashboard');
  const uplot = dirname(require.resolve('uplot/dist/uPlot.iife.min.js'));
  const files: Array<[string, string, string]> = [
    ['/', join(page, 'index.html'), 'text/html; charset=utf-8'],
    ['/app.js', join(page, 'app.js'), 'text/javascript; charset=utf-8'],
    ['/style.css', join(page, 'style.css'), 'text/css; charset=utf-8'],
    ['/vendor/uPlot.iife.min.js', join(uplot, 'uPlot.iife.min.js'), 'text/javascript; charset=utf-8'],
    ['/vendor/uPlot.min.css', join(uplot, 'uPlot.min.css'), 'text/css; charset=utf-8'],
  ];
  return new Map(files.map(([path, file, type]) => [path, { type, body: readFileSync(file) }]));
}

/** Records per `results` event when replaying or sending a snapshot. */
const REPLAY_CHUNK = 2000;
/** A page that falls this far behind (bytes buffered) is dropped; it reconnects and catches up. */
const MAX_BUFFERED = 32 << 20;
const HEARTBEAT_MS = 15_000;
/** How long a reconnecting page waits for the results source of a dashboard that just started. */
const SOURCE_WAIT_MS = 10_000;

interface Client {
  res: ServerResponse;
  /** Newest result sequence this page has. */
  seq: number;
}

const SECURITY_HEADERS = {
  // Everything the page loads comes from this server: no CDN, works offline.
  'content-security-policy': "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

export interface DashboardOptions extends Omit<FeedOptions, 'log' | 'nc' | 'job'> {
  nc: NatsConnection;
  job: string;
  log: Logger;
  /** 0 picks a free port. */
  port: number;
  host?: string;
}

/** The dashboard: a feed from NATS and an HTTP server for pages. */
export class Dashboard {
  private readonly clients = new Set<Client>();
  private heartbeat?: NodeJS.Timeout;

  private constructor(
    readonly feed: DashboardFeed,
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async start(o: DashboardOptions): Promise<Dashboard> {
    const assets = loadAssets();
    const feed = new DashboardFeed(o);
    const host = o.host ?? '127.0.0.1';
    let dash: Dashboard | undefined;
    const server = createServer((req, res) => {
      dash!.handle(req, res, assets).catch((e: unknown) => {
        o.log.warn({ err: (e as Error).message, url: req.url }, 'dashboard request failed');
        if (!res.headersSent) send(res, 500, { error: (e as Error).message });
        else res.end();
      });
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(e.code === 'EADDRINUSE' ? new TidemarkError('BAD_FLAG', `--port: ${o.port} is in use on ${host}; pick another port (0 picks a free one)`) : e),
      );
      server.listen(o.port, host, () => resolve());
    });
    const addr = server.address();
    const port = typeof addr === 'object' && addr ? addr.port : o.port;
    dash = new Dashboard(feed, server, `http://${host}:${port}/`);
    feed.on((e) => dash!.broadcast(e));
    feed.start();
    dash.heartbeat = setInterval(() => {
      for (const c of dash!.clients) c.res.write(': keep-alive\n\n');
    }, HEARTBEAT_MS);
    o.log.info({ url: dash.url, job: o.job }, 'dashboard listening');
    return dash;
  }

  private async handle(req: IncomingMessage, res: ServerResponse, assets: Map<string, Asset>): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const path = url.pathname === '/index.html' ? '/' : url.pathname;
    if (req.method === 'GET' && path === '/events') return this.events(req, res, url);
    if (path === '/api/query' && req.method === 'GET') {
      const key = url.searchParams.get('key');
      if (!key) return send(res, 400, { error: 'query: ?key=KEY is required' });
      try {
        return send(res, 200, await this.feed.query(key));
      } catch (e) {
        return send(res, 503, { error: (e as Error).message });
      }
    }
    if (path === '/api/alerts') {
      if (req.method === 'GET') return send(res, 200, { rules: this.feed.alerts.list(), alerts: this.feed.recentAlerts });
      if (req.method === 'POST') {
        let body: unknown;
        try {
          body = JSON.parse(await readBody(req));
        } catch {
          return send(res, 400, { error: 'alert rule: the body is not JSON' });
        }
        try {
          return send(res, 201, this.feed.addRule(body));
        } catch (e) {
          return send(res, 400, { error: `alert rule: ${(e as Error).message}` });
        }
      }
    }
    const rule = /^\/api\/alerts\/([\w-]+)$/.exec(path);
    if (rule && req.method === 'DELETE') return this.feed.removeRule(rule[1]!) ? send(res, 200, { removed: rule[1] }) : send(res, 404, { error: `no alert rule ${rule[1]}` });
    if (path === '/favicon.ico') {
      res.writeHead(204, SECURITY_HEADERS);
      res.end();
      return;
    }
    const asset = assets.get(path);
    if (asset && (req.method === 'GET' || req.method === 'HEAD')) {
      res.writeHead(200, { 'content-type': asset.type, 'cache-control': 'no-cache', ...SECURITY_HEADERS });
      res.end(req.method === 'HEAD' ? undefined : asset.body);
      return;
    }
    send(res, 404, { error: `not found: ${req.method} ${path}` });
  }

  private async events(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    const last = (req.headers['last-event-id'] as string | undefined) ?? url.searchParams.get('lastEventId') ?? '';
    // A page coming back (to a restarted job) names the source of its last event: wait for ours to be
    // known before deciding between "what you missed" and a snapshot.
    if (last && !this.feed.source) await Promise.race([this.feed.ready, new Promise((r) => setTimeout(r, SOURCE_WAIT_MS))]);
    if (req.destroyed) return;
    res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', connection: 'keep-alive', 'x-accel-buffering': 'no' });
    req.socket.setNoDelay(true);
    const feed = this.feed;
    const client: Client = { res, seq: -1 };
    write(res, 'hello', { job: feed.job, tag: feed.tag, source: feed.source ?? null, serverTime: Date.now() }, undefined, 'retry: 1000\n');
    const m = /^(.+):(\d+)$/.exec(last);
    const missed = m && m[1] === feed.tag ? feed.store.after(Number(m[2])) : undefined;
    if (missed) {
      client.seq = Number(m![2]);
      this.sendRecords(client, missed);
    } else {
      // A snapshot: the latest revision of every window held, in chunks; the first one resets the page.
      const all = feed.store.snapshot();
      const seq = feed.store.ring.length ? feed.store.ring[feed.store.ring.length - 1]!.seq : 0;
      for (let i = 0; i === 0 || i < all.length; i += REPLAY_CHUNK) {
        write(res, 'snapshot', { reset: i === 0, records: all.slice(i, i + REPLAY_CHUNK) }, i + REPLAY_CHUNK >= all.length ? `${feed.tag}:${seq}` : undefined);
      }
      client.seq = seq;
    }
    write(res, 'status', feed.status);
    write(res, 'late', { records: feed.lateExamples, reset: true });
    write(res, 'dlq', { records: feed.dlqExamples, reset: true });
    write(res, 'rules', { rules: feed.alerts.list() });
    write(res, 'alerts', { alerts: feed.recentAlerts });
    this.clients.add(client);
    const drop = (): void => void this.clients.delete(client);
    req.on('close', drop);
    res.on('error', drop);
  }

  private sendRecords(client: Client, records: Numbered[]): void {
    const fresh = records.filter((n) => n.seq > client.seq);
    for (let i = 0; i < fresh.length; i += REPLAY_CHUNK) {
      const chunk = fresh.slice(i, i + REPLAY_CHUNK);
      const lastSeq = chunk[chunk.length - 1]!.seq;
      write(client.res, 'results', { records: chunk.map((n) => n.record), lastSeq }, `${this.feed.tag}:${lastSeq}`);
      client.seq = lastSeq;
    }
  }

  private broadcast(e: FeedEvent): void {
    for (const c of this.clients) {
      if (c.res.writableLength > MAX_BUFFERED) {
        c.res.destroy();
        this.clients.delete(c);
        continue;
      }
      switch (e.type) {
        case 'results':
          this.sendRecords(c, e.records);
          break;
        case 'status':
          write(c.res, 'status', e.status);
          break;
        case 'late':
        case 'dlq':
          write(c.res, e.type, { records: e.records });
          break;
        case 'alert':
          write(c.res, 'alert', e.alert);
          break;
        case 'rules':
          write(c.res, 'rules', { rules: e.rules });
          break;
        case 'source':
          write(c.res, 'hello', { job: this.feed.job, tag: this.feed.tag, source: e.source, serverTime: Date.now() });
          break;
      }
    }
  }

  async close(): Promise<void> {
    clearInterval(this.heartbeat);
    await this.feed.close();
    for (const c of this.clients) c.res.end();
    this.clients.clear();
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}

function write(res: ServerResponse, event: string, data: unknown, id?: string, prefix = ''): void {
  res.write(`${prefix}${id !== undefined ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
}

function send(res: ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-cache', ...SECURITY_HEADERS });
  res.end(JSON.stringify(body));
}

function readBody(req: IncomingMessage, limit = 64 * 1024): Promise<string> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > limit) {
        reject(new Error('body too large'));
        req.destroy();
      } else chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
