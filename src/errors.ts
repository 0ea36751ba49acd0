// Typed errors: callers branch on `code`, never on message text.
// The CLI maps each code to one line and an exit code.

export type ErrorCode =
  | 'BAD_FLAG'
  | 'BAD_CONFIG'
  | 'NATS_UNAVAILABLE'
  | 'NATS_SERVER_MISSING'
  | 'STATE_INCOMPATIBLE'
  | 'STATE_CORRUPT'
  | 'STATE_LOCKED'
  | 'STATE_WRITE_FAILED'
  | 'CHECKPOINT_NOT_FOUND'
  | 'SINK_FAILED'
  | 'NOT_AVAILABLE'
  | 'SAVEPOINT_EXISTS'
  | 'BAD_JOB'
  | 'USER_CODE'
  /** a write or message of a lease epoch that a newer owner superseded */
  | 'SUPERSEDED';

/** An error Tidemark knows how to explain to a user. */
export class TidemarkError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'TidemarkError';
  }
}

/** Exit code for a failed command: usage errors are 2, everything else 1. */
export function exitCodeFor(err: unknown): number {
  if (err instanceof TidemarkError && (err.code === 'BAD_FLAG' || err.code === 'BAD_CONFIG' || err.code === 'NATS_SERVER_MISSING' || err.code === 'BAD_JOB')) return 2;
  return 1;
}
