// `--sink postgres://user:pass@host:port/db[?prefix=NAME]`: parsing and the password-free form
// that is the only one ever shown (logs, `status`, checkpoint keys).

import { TidemarkError } from '../errors.js';

export interface PostgresSpec {
  kind: 'postgres';
  /** The connection string handed to the client (password included when given), without `prefix`. */
  url: string;
  /** Table-name prefix, `tidemark_` unless `?prefix=` says otherwise. */
  prefix: string;
}

export const DEFAULT_PREFIX = 'tidemark_';
const PREFIX = /^[a-z_][a-z0-9_]{0,39}$/;

/** True when the text is a PostgreSQL connection string. */
export const isPostgresUrl = (text: string): boolean => /^postgres(ql)?:\/\//i.test(text);

/** Parses a connection string into a sink spec; a bad one is a BAD_FLAG line naming `flag`. */
export function parsePostgresSpec(text: string, flag: string): PostgresSpec {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new TidemarkError('BAD_FLAG', `${flag}: "${redactPostgresUrl(text)}" is not a PostgreSQL connection string; accepted: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?prefix=NAME]`);
  }
  let prefix = DEFAULT_PREFIX;
  const p = u.searchParams.get('prefix');
  if (p !== null) {
    if (!PREFIX.test(p)) throw new TidemarkError('BAD_FLAG', `${flag}: prefix "${p}" is not accepted; lower-case letters, digits and _, starting with a letter or _ (e.g. acme_)`);
    prefix = p;
    u.searchParams.delete('prefix');
  }
  if (u.pathname.length <= 1) throw new TidemarkError('BAD_FLAG', `${flag}: "${redactPostgresUrl(text)}" names no database; accepted: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`);
  return { kind: 'postgres', url: u.toString(), prefix };
}

/** The connection string without its password (`postgres://user@host:port/db?prefix=…`). */
export function redactPostgresUrl(text: string): string {
  try {
    const u = new URL(text);
    u.password = '';
    return u.toString();
  } catch {
    // Not a URL: cut anything between "://user:" and "@".
    return text.replace(/(:\/\/[^:/@]*):[^@]*@/, '$1@');
  }
}

/** Canonical, password-free text of a spec. */
export function formatPostgresSpec(s: PostgresSpec): string {
  const shown = redactPostgresUrl(s.url);
  if (s.prefix === DEFAULT_PREFIX) return shown;
  return `${shown}${shown.includes('?') ? '&' : '?'}prefix=${s.prefix}`;
}
