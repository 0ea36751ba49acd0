// Which NATS failures pass by themselves (a server failing over, a JetStream cluster electing a
// leader: a timeout, no responders) and which are answers (a stream that does not exist), so a
// caller retries or restarts from its checkpoint on the first kind and never mistakes one for the other.

import { NatsError } from 'nats';

/** JetStream API error: "stream not found". */
export const STREAM_NOT_FOUND = 10059;
/** JetStream API error: "wrong last sequence" (a KV compare-and-set lost). */
export const WRONG_LAST_SEQUENCE = 10071;
/** JetStream API error: "no message found" (a sequence that was deleted, or never stored). */
export const NO_MESSAGE_FOUND = 10037;
/** JetStream API errors of a cluster in transition: system temporarily unavailable, no peers, stream offline. */
const TRANSIENT_API_ERRORS = new Set([10008, 10005, 10074, 10118]);
/** Client error codes of a request that may succeed when tried again. */
const TRANSIENT_CODES = new Set(['TIMEOUT', '503', '408', 'DISCONNECT', 'CONNECTION_REFUSED', 'CONNECTION_TIMEOUT']);

/** The JetStream API error code carried by an error, if any. */
export const apiErrorCode = (e: unknown): number | undefined => (e as { api_error?: { err_code?: number } } | undefined)?.api_error?.err_code;

/**
 * True when the error says the stream does not exist: JetStream API error 10059 and nothing else.
 * A timeout is not "missing", nor is a bare "stream not found" status without the API's error code
 * (a node that lost its quorum answers so while the stream is there).
 */
export function isStreamNotFound(e: unknown): boolean {
  return apiErrorCode(e) === STREAM_NOT_FOUND;
}

/** True when the error (or one it wraps) is a NATS failure that retrying can cure. */
export function isTransientNatsError(e: unknown): boolean {
  for (let cur: unknown = e, depth = 0; cur instanceof Error && depth < 5; cur = cur.cause, depth++) {
    const api = apiErrorCode(cur);
    if (api !== undefined && TRANSIENT_API_ERRORS.has(api)) return true;
    if (cur instanceof NatsError && TRANSIENT_CODES.has(cur.code)) return true;
    // "stream not found" without the API's error code: a node in transition, not an answer (see isStreamNotFound).
    if (cur instanceof NatsError && api === undefined && /stream not found/i.test(cur.message)) return true;
    if (/jetstream (system )?(temporarily )?(not available|unavailable)|no suitable peers|leader (not|un)/i.test(cur.message)) return true;
  }
  return false;
}

/**
 * `p`, or a NATS TIMEOUT (transient, see isTransientNatsError) when it has not settled within `ms`: for
 * what nats.js does not bound itself (an ordered consumer that lost its server in a failover waits for
 * ever). What `p` does afterwards is let go.
 */
export async function boundedNats<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(NatsError.errorForCode('TIMEOUT', new Error(`${what}: no answer within ${ms} ms`))), ms);
  });
  try {
    return await Promise.race([p, late]);
  } finally {
    clearTimeout(timer);
  }
}
