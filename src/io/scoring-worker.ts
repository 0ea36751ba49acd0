// Worker thread body of the scoring pool: prepares each payload of a batch (validate, keys,
// score) with the same function the source uses inline, and sends the results back in order.

import { parentPort, workerData } from 'node:worker_threads';
import { preparer } from '../runtime/ingest.js';
import type { KeySpec } from '../runtime/keys.js';

const prepare = preparer((workerData as { keys: KeySpec }).keys);

parentPort?.on('message', ({ buf, offsets }: { buf: Uint8Array; offsets: Uint32Array }) => {
  const out = [];
  for (let i = 0; i + 1 < offsets.length; i++) out.push(prepare(buf.subarray(offsets[i]!, offsets[i + 1]!)));
  parentPort!.postMessage(out);
});
