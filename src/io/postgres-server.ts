// A PostgreSQL server of its own, for the tests and the benchmarks (as nats-server.ts is for NATS):
// the Debian `postgresql` package's binaries (/usr/lib/postgresql/<version>/bin), `initdb` in a
// scratch directory, `pg_ctl` on a free 127.0.0.1 port with password authentication over TCP.
// PostgreSQL refuses to run as root, so as root every server command runs as the `postgres` user.

import { execFile } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { TidemarkError } from '../errors.js';
import { freePort } from './nats-server.js';

const run = promisify(execFile);

/** The directory holding initdb, pg_ctl and postgres: $TIDEMARK_PG_BIN, else the newest Debian install. */
export function postgresBinDir(): string | undefined {
  if (process.env.TIDEMARK_PG_BIN) return process.env.TIDEMARK_PG_BIN;
  const root = '/usr/lib/postgresql';
  if (!existsSync(root)) return undefined;
  const versions = readdirSync(root)
    .filter((v) => existsSync(join(root, v, 'bin', 'initdb')))
    .sort((a, b) => Number(b) - Number(a));
  return versions[0] ? join(root, versions[0], 'bin') : undefined;
}

const isRoot = (): boolean => process.getuid?.() === 0;

/** A running PostgreSQL server with one superuser, `tidemark`, who logs in with a password over TCP. */
export class EmbeddedPostgres {
  readonly host = '127.0.0.1';
  readonly user = 'tidemark';
  readonly password = 'tidemark-test-secret';

  private constructor(
    readonly dir: string,
    readonly port: number,
    private readonly bin: string,
  ) {}

  private get data(): string {
    return join(this.dir, 'data');
  }

  /** Initialises a cluster in a new scratch directory and starts it. */
  static async start(opts: { fsync?: boolean } = {}): Promise<EmbeddedPostgres> {
    const bin = postgresBinDir();
    if (!bin) throw new TidemarkError('NOT_AVAILABLE', 'PostgreSQL binaries not found under /usr/lib/postgresql/*/bin (Debian: apt-get install -y postgresql) or in $TIDEMARK_PG_BIN');
    // mkdtemp makes a 0700 directory; the postgres user must be able to enter it.
    const dir = mkdtempSync(join(tmpdir(), 'tidemark-pg-'));
    chmodSync(dir, 0o755);
    const server = new EmbeddedPostgres(dir, await freePort(), bin);
    writeFileSync(join(dir, 'pwfile'), server.password + '\n');
    mkdirSync(join(dir, 'run'));
    if (isRoot()) {
      const uid = Number((await run('id', ['-u', 'postgres'])).stdout.trim());
      const gid = Number((await run('id', ['-g', 'postgres'])).stdout.trim());
      for (const p of [dir, join(dir, 'pwfile'), join(dir, 'run')]) chownSync(p, uid, gid);
    }
    await server.as('initdb', ['-D', server.data, '-U', server.user, '--pwfile', join(dir, 'pwfile'), '--auth-local=trust', '--auth-host=scram-sha-256', '-E', 'UTF8', '--locale=C', '--no-sync']);
    // Settings for a throwaway server: small, quick to start, durable only when asked.
    const conf = [`port = ${server.port}`, "listen_addresses = '127.0.0.1'", `unix_socket_directories = '${join(dir, 'run')}'`, `fsync = ${opts.fsync ? 'on' : 'off'}`, 'max_connections = 50', 'shared_buffers = 64MB'];
    await server.as('sh', ['-c', `printf '%s\\n' ${conf.map((c) => `"${c}"`).join(' ')} >> '${join(server.data, 'postgresql.conf')}'`]);
    await server.resume();
    return server;
  }

  /** Runs a server command (as the postgres user when we are root). */
  private async as(cmd: string, args: string[]): Promise<string> {
    const file = cmd === 'sh' ? 'sh' : join(this.bin, cmd);
    try {
      const r = isRoot() ? await run('runuser', ['-u', 'postgres', '--', file, ...args], { cwd: this.dir }) : await run(file, args, { cwd: this.dir });
      return r.stdout;
    } catch (e) {
      const err = e as Error & { stderr?: string };
      throw new Error(`${cmd} failed: ${err.stderr?.trim() || err.message}`);
    }
  }

  /** The connection string; without the password when `password: false` (it then comes from PGPASSWORD). */
  url(database = 'tidemark', o: { password?: boolean | string; prefix?: string } = {}): string {
    const pw = o.password === false ? '' : `:${encodeURIComponent(typeof o.password === 'string' ? o.password : this.password)}`;
    return `postgres://${this.user}${pw}@${this.host}:${this.port}/${database}${o.prefix ? `?prefix=${o.prefix}` : ''}`;
  }

  /** A client on `database`, connected. */
  async client(database = 'tidemark'): Promise<pg.Client> {
    const c = new pg.Client({ host: this.host, port: this.port, user: this.user, password: this.password, database });
    await c.connect();
    return c;
  }

  /** Creates a database (ignores one that exists). */
  async createDatabase(name: string): Promise<void> {
    const c = await this.client('postgres');
    try {
      const { rowCount } = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      if (!rowCount) await c.query(`CREATE DATABASE ${pg.escapeIdentifier(name)}`);
    } finally {
      await c.end();
    }
  }

  /** Stops the server: `fast` rolls back open transactions and shuts down cleanly; `immediate` is a crash. */
  async stop(mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    if (!existsSync(join(this.data, 'postmaster.pid'))) return;
    await this.as('pg_ctl', ['-D', this.data, '-m', mode, '-w', 'stop']);
  }

  /** Starts the (stopped) server again on the same port and data. */
  async resume(): Promise<void> {
    await this.as('pg_ctl', ['-D', this.data, '-l', join(this.dir, 'server.log'), '-w', '-t', '60', 'start']);
  }

  /** Stops the server and removes its directory. */
  async remove(): Promise<void> {
    await this.stop('immediate').catch(() => undefined);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
