// Embedded nats-server: spawned from PATH on a free 127.0.0.1 port with JetStream,
// its store under the state directory; stopped by its owner. Also used by the tests.

import { spawn, type ChildProcess } from 'node:child_process';
import { createServer } from 'node:net';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'nats';
import { TidemarkError } from '../errors.js';
import { mappingsConfig } from './subjects.js';

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** A running nats-server child process. */
export class EmbeddedNats {
  private constructor(
    readonly url: string,
    readonly port: number,
    private readonly child: ChildProcess,
    readonly storeDir: string,
  ) {}

  /**
   * Starts nats-server with JetStream; resolves once it accepts connections. `mappings` (subject
   * mappings of the default account, e.g. partitioning the input) go into a config file written
   * beside the store, which includes `config` when both are given.
   */
  static async start(storeDir: string, opts: { port?: number; binary?: string; config?: string; mappings?: Record<string, string> } = {}): Promise<EmbeddedNats> {
    const port = opts.port ?? (await freePort());
    const binary = opts.binary ?? process.env.TIDEMARK_NATS_SERVER ?? 'nats-server';
    mkdirSync(storeDir, { recursive: true });
    if (opts.mappings && Object.keys(opts.mappings).length) {
      const file = join(storeDir, 'tidemark-mappings.conf');
      writeFileSync(file, `${opts.config ? `include ${JSON.stringify(opts.config)}\n` : ''}${mappingsConfig(opts.mappings)}`);
      opts = { ...opts, config: file };
    }
    // A config file (authorization, cluster routes, TLS) comes first; the flags after it win.
    const args = [...(opts.config ? ['-c', opts.config] : []), '-a', '127.0.0.1', '-p', String(port), '-js', '-sd', storeDir];
    const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      stderr = (stderr + d.toString()).slice(-4000);
    });
    const spawnError = await new Promise<Error | undefined>((resolve) => {
      child.once('error', (e) => resolve(e));
      child.once('spawn', () => resolve(undefined));
    });
    if (spawnError) {
      throw new TidemarkError(
        'NATS_SERVER_MISSING',
        `nats-server not found on PATH (${binary}); install it (Debian: apt-get install -y nats-server) or pass --nats URL`,
      );
    }
    const url = `nats://127.0.0.1:${port}`;
    const deadline = Date.now() + 10_000;
    for (;;) {
      if (child.exitCode !== null) throw new TidemarkError('NATS_UNAVAILABLE', `nats-server exited with code ${child.exitCode}: ${stderr.trim()}`);
      try {
        const nc = await connect({ servers: url, timeout: 500, reconnect: false });
        await nc.close();
        break;
      } catch (e) {
        // A server that refuses an anonymous client is up.
        if (/authorization|authentication/i.test((e as Error).message)) break;
        if (Date.now() > deadline) throw new TidemarkError('NATS_UNAVAILABLE', `nats-server did not start on ${url}: ${stderr.trim()}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    return new EmbeddedNats(url, port, child, storeDir);
  }

  /** Process id of the server. */
  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Stops the server (SIGTERM, then SIGKILL after a grace period). */
  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = new Promise<void>((r) => this.child.once('exit', () => r()));
    this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}
