// Test helpers around a job's input and outputs: fill an input stream, read back the JSONL and
// JetStream sinks, sort records by id.

import { readFileSync, existsSync } from 'node:fs';
import type { NatsConnection } from 'nats';

const enc = new TextEncoder();
const dec = new TextDecoder();

/** Creates `stream` on `subject.>` and publishes the payloads on `subject.in`, in order, with acks. */
export async function fillStream(nc: NatsConnection, stream: string, subject: string, payloads: readonly string[]): Promise<void> {
  const jsm = await nc.jetstreamManager();
  await jsm.streams.add({ name: stream, subjects: [`${subject}.>`] });
  const js = nc.jetstream();
  for (let i = 0; i < payloads.length; i += 500) await Promise.all(payloads.slice(i, i + 500).map((p) => js.publish(`${subject}.in`, enc.encode(p))));
}

/** The records of a JSONL file ([] when there is none). */
export function readJsonl<T = Record<string, unknown>>(path: string): T[] {
  if (!existsSync(path)) return [];
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => JSON.parse(l) as T);
}

/** Every message of a JetStream stream as JSON, with its `Nats-Msg-Id`. */
export async function readStream<T extends object>(nc: NatsConnection, stream: string): Promise<Array<T & { msgId?: string }>> {
  const info = await (await nc.jetstreamManager()).streams.info(stream);
  const out: Array<T & { msgId?: string }> = [];
  if (info.state.messages === 0) return out;
  const iter = await (await nc.jetstream().consumers.get(stream)).consume();
  for await (const m of iter) {
    out.push({ ...(JSON.parse(dec.decode(m.data)) as T), msgId: m.headers?.get('Nats-Msg-Id') });
    if (m.info.pending === 0) break;
  }
  await iter.close();
  return out;
}

/** Records sorted by id, for comparing sets of records. */
export const byId = <T extends { id: string }>(xs: readonly T[]): T[] => [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
