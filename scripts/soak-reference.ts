// The reference model of one soak round, in a worker thread, so that checking a round overlaps the
// kills of the next one.

import { parentPort, workerData } from 'node:worker_threads';
import { referenceRun, type RefConfig } from '../test/helpers/reference.js';

const { payloads, cfg } = workerData as { payloads: string[]; cfg: RefConfig };
parentPort!.postMessage(referenceRun(payloads, cfg));
