// The transport reference: raw nats.js core publish + subscribe on this machine, with the
// workload's own payloads, so the job's rate can be read against what NATS alone can move.

import { connect } from 'nats';

export interface TransportOutcome {
  msgsPerSec: number;
  messages: number;
  received: number;
  payloadBytes: number;
  ms: number;
}

/**
 * Publishes `messages` payloads (cycling through `payloads`) on one connection and receives
 * them on another, in this process; the rate is messages received / (last receive − first publish).
 */
export async function runTransport(url: string, payloads: readonly Uint8Array[], messages: number, onProgress?: (f: number) => void): Promise<TransportOutcome> {
  const pub = await connect({ servers: url, name: 'bench-transport-pub' });
  const sub = await connect({ servers: url, name: 'bench-transport-sub' });
  try {
    const subject = `bench.transport.${process.pid}`;
    let received = 0;
    let bytes = 0;
    let tLast = 0;
    let resolveAll: () => void = () => undefined;
    const all = new Promise<void>((r) => (resolveAll = r));
    const s = sub.subscribe(subject, {
      callback: (_err, m) => {
        received++;
        bytes += m.data.length;
        if (received === messages) {
          tLast = performance.now();
          resolveAll();
        }
      },
    });
    await sub.flush();
    const t0 = performance.now();
    for (let i = 0; i < messages; i++) {
      pub.publish(subject, payloads[i % payloads.length]);
      // Let the socket drain now and then so the client buffer stays bounded.
      if (i % 20_000 === 19_999) {
        await pub.flush();
        onProgress?.(i / messages);
      }
    }
    await pub.flush();
    // Whatever has not arrived within a few seconds after the last flush was dropped.
    const timeout = new Promise<void>((r) => setTimeout(r, 5000).unref());
    await Promise.race([all, timeout]);
    const end = received === messages ? tLast : performance.now();
    s.unsubscribe();
    const ms = end - t0;
    return { msgsPerSec: (received / ms) * 1000, messages, received, payloadBytes: received ? bytes / received : 0, ms };
  } finally {
    await pub.close();
    await sub.close();
  }
}
