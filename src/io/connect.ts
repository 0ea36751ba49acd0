// Connecting to NATS, secured or not, the same way in every command: servers as a comma list,
// credentials from --creds/--nkey files, user/password or token from the URL or the environment
// (NATS_USER, NATS_PASSWORD, NATS_TOKEN), TLS from --tls-ca/--tls-cert/--tls-key. Secrets never
// appear in a log line or an error: URLs are shown with their user info removed.

import { readFileSync } from 'node:fs';
import { connect, credsAuthenticator, nkeyAuthenticator, NatsError, type ConnectionOptions, type NatsConnection } from 'nats';
import { TidemarkError } from '../errors.js';
import type { OptionDef } from '../option-table.js';
import { reconnectBackoff } from './reconnect.js';

/** How a command authenticates to NATS (file paths; secrets from the environment are read at connect). */
export interface NatsAuth {
  creds?: string;
  nkey?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
}

/** The security flags every command that connects to NATS takes. */
export const NATS_AUTH_OPTIONS: OptionDef[] = [
  { flag: '--creds', key: 'creds', kind: 'string', arg: 'FILE', help: 'NATS credentials file (JWT + nkey seed)' },
  { flag: '--nkey', key: 'nkey', kind: 'string', arg: 'FILE', help: 'file holding an nkey seed (SU…)' },
  { flag: '--tls-ca', key: 'tlsCa', kind: 'string', arg: 'FILE', help: 'CA certificate (PEM) to verify the server; connects with TLS' },
  { flag: '--tls-cert', key: 'tlsCert', kind: 'string', arg: 'FILE', help: 'client certificate (PEM), with --tls-key' },
  { flag: '--tls-key', key: 'tlsKey', kind: 'string', arg: 'FILE', help: 'client private key (PEM), with --tls-cert' },
];

/** Picks the security flags out of parsed options. */
export function natsAuthFrom(get: (key: string) => string | undefined): NatsAuth {
  const auth: NatsAuth = {};
  for (const d of NATS_AUTH_OPTIONS) {
    const v = get(d.key);
    if (v !== undefined) auth[d.key as keyof NatsAuth] = v;
  }
  if ((auth.tlsCert === undefined) !== (auth.tlsKey === undefined)) throw new TidemarkError('BAD_FLAG', '--tls-cert and --tls-key: give both (a client certificate and its key) or neither');
  if (auth.creds !== undefined && auth.nkey !== undefined) throw new TidemarkError('BAD_FLAG', '--creds and --nkey: give one of them (a creds file already holds an nkey seed)');
  return auth;
}

/** A URL list as it may be shown: user info (user:password, token) replaced by `***`. */
export function redactUrl(urls: string): string {
  return urls.replace(/(^|,|\/\/)\s*([^/@,\s]+)@/g, '$1***@');
}

function readSecretFile(path: string, flag: string): Uint8Array {
  try {
    return readFileSync(path);
  } catch (e) {
    throw new TidemarkError('BAD_FLAG', `${flag}: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** nats.js connection options for these servers and this authentication. */
export function connectionOptions(urls: string, auth: NatsAuth = {}, env: NodeJS.ProcessEnv = process.env): ConnectionOptions {
  const servers: string[] = [];
  let user: string | undefined;
  let pass: string | undefined;
  let token: string | undefined;
  for (const raw of urls.split(',').map((u) => u.trim()).filter(Boolean)) {
    // nats://user:password@host or nats://token@host: the secret is taken out, the server kept.
    const m = /^([a-z]+:\/\/)?([^/@]+)@(.+)$/i.exec(raw);
    if (!m) {
      servers.push(raw);
      continue;
    }
    servers.push(`${m[1] ?? ''}${m[3]}`);
    const [u, p] = m[2]!.split(':').map((x) => decodeURIComponent(x));
    if (p === undefined) token = u;
    else [user, pass] = [u, p];
  }
  user ??= env.NATS_USER;
  pass ??= env.NATS_PASSWORD;
  token ??= env.NATS_TOKEN;
  const opts: ConnectionOptions = { servers };
  if (auth.creds !== undefined) opts.authenticator = credsAuthenticator(readSecretFile(auth.creds, '--creds'));
  else if (auth.nkey !== undefined) opts.authenticator = nkeyAuthenticator(new TextEncoder().encode(new TextDecoder().decode(readSecretFile(auth.nkey, '--nkey')).trim()));
  if (user !== undefined) {
    opts.user = user;
    if (pass !== undefined) opts.pass = pass;
  } else if (token !== undefined) opts.token = token;
  if (auth.tlsCa !== undefined || auth.tlsCert !== undefined) {
    for (const [flag, path] of [['--tls-ca', auth.tlsCa], ['--tls-cert', auth.tlsCert], ['--tls-key', auth.tlsKey]] as const) if (path !== undefined) readSecretFile(path, flag);
    opts.tls = { ...(auth.tlsCa !== undefined ? { caFile: auth.tlsCa } : {}), ...(auth.tlsCert !== undefined ? { certFile: auth.tlsCert, keyFile: auth.tlsKey! } : {}) };
  }
  return opts;
}

const AUTH_CODES = new Set(['AUTHORIZATION_VIOLATION', 'BAD_AUTHENTICATION', 'AUTHENTICATION_EXPIRED', 'AUTHENTICATION_TIMEOUT', 'BAD_CREDS', 'ACCOUNT_EXPIRED']);

/** Connects to NATS (reconnecting forever once connected) or fails with one clear line. */
export async function connectNats(urls: string, name = 'tidemark', auth: NatsAuth = {}): Promise<NatsConnection> {
  const opts = connectionOptions(urls, auth);
  try {
    return await connect({ ...opts, name, maxReconnectAttempts: -1, reconnectDelayHandler: reconnectBackoff(), timeout: 5000 });
  } catch (e) {
    const shown = redactUrl(urls);
    if (e instanceof NatsError && AUTH_CODES.has(e.code)) {
      throw new TidemarkError('NATS_UNAVAILABLE', `NATS at ${shown} refused the credentials (${e.message.toLowerCase()}); check --creds, --nkey, the user and password or token in the URL, or NATS_USER/NATS_PASSWORD/NATS_TOKEN`, { cause: e });
    }
    throw new TidemarkError('NATS_UNAVAILABLE', `cannot connect to NATS at ${shown}: ${(e as Error).message}`, { cause: e });
  }
}
