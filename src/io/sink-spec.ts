// Sink specs: `jsonl:PATH`, `nats:SUBJECT`, `jetstream:STREAM[:SUBJECT]`, `postgres://…`.

import { TidemarkError } from '../errors.js';
import { isPostgresUrl, parsePostgresSpec, formatPostgresSpec, redactPostgresUrl, type PostgresSpec } from './postgres-url.js';

export type SinkSpec = { kind: 'jsonl'; path: string } | { kind: 'nats'; subject: string } | { kind: 'jetstream'; stream: string; subject?: string } | PostgresSpec;

/** Parses a sink spec: `jsonl:PATH`, `nats:SUBJECT`, `jetstream:STREAM[:SUBJECT]`, `postgres://…`. */
export function parseSinkSpec(text: string, flag: string): SinkSpec {
  if (isPostgresUrl(String(text))) return parsePostgresSpec(String(text), flag);
  const m = /^(jsonl|nats|jetstream):(.+)$/.exec(String(text));
  const accepted = 'accepted: jsonl:PATH, nats:SUBJECT, jetstream:STREAM, postgres://USER@HOST/DB';
  if (!m) throw new TidemarkError('BAD_FLAG', `${flag}: "${redactPostgresUrl(String(text))}" is not a sink; ${accepted}`);
  const rest = m[2]!;
  if (m[1] === 'jsonl') return { kind: 'jsonl', path: rest };
  if (m[1] === 'nats') {
    if (/\s|[*>]/.test(rest)) throw new TidemarkError('BAD_FLAG', `${flag}: "${rest}" is not a publishable NATS subject`);
    return { kind: 'nats', subject: rest };
  }
  const [stream, subject] = rest.split(':');
  if (!stream || !/^[A-Za-z0-9_-]+$/.test(stream)) throw new TidemarkError('BAD_FLAG', `${flag}: "${rest}" is not a stream name (letters, digits, _ and -)`);
  return subject ? { kind: 'jetstream', stream, subject } : { kind: 'jetstream', stream };
}

/** Canonical text of a sink spec. */
export function formatSinkSpec(s: SinkSpec): string {
  if (s.kind === 'jsonl') return `jsonl:${s.path}`;
  if (s.kind === 'nats') return `nats:${s.subject}`;
  if (s.kind === 'postgres') return formatPostgresSpec(s);
  return `jetstream:${s.stream}${s.subject ? `:${s.subject}` : ''}`;
}
