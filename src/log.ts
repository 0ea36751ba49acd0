// The one logger: structured JSON lines (pino) on stderr, so stdout stays for results and tables.

import { pino, type Logger } from 'pino';

export type { Logger };

/** Creates the process logger at `level`. */
export function createLogger(level = 'info', name = 'tidemark'): Logger {
  return pino({ name, level, base: { pid: process.pid } }, pino.destination({ fd: 2, sync: true }));
}
