// The V8 heap of a process that holds windows. V8 pretenures an allocation site (allocates its
// objects straight into the old generation) once it sees all of them survive a GC. During a
// watermark step that fires 1M windows, --trace-pretenuring-statistics showed a dozen sites decided
// "tenure" on a few hundred objects each (the size of a slice of results held until it is handed
// on), after which what they allocate for every later window goes to the old generation and dies
// there: ~750 MB of dead objects between mark-compacts, heap peaks of 1.0–1.4 GB, an atomic pause of
// 276 ms. Without pretenuring: ~100 MB between mark-compacts, peaks ~600 MB (that run: no GC pause
// above 45 ms). Objects that do live long (restored or opened windows) are promoted by the scavenger
// as before. Drain throughput and latency with and without it were within this machine's
// run-to-run noise (npm run bench -- --quick --posts 200000, two runs each).

import { setFlagsFromString } from 'node:v8';

let tuned = false;

/** Turns V8's allocation-site pretenuring off for this process (once; every job and the state benchmark call it). */
export function tuneHeapForWindows(): void {
  if (tuned) return;
  tuned = true;
  setFlagsFromString('--no-allocation-site-pretenuring');
}
