// The input adapter: ensures the JetStream input stream exists and reads it in order from a
// given sequence with an ordered consumer (no server-side state: progress lives in checkpoints).

import type { JetStreamClient, JetStreamManager, ConsumerMessages, JsMsg } from 'nats';
import { TidemarkError } from '../errors.js';
import { isStreamNotFound } from './nats-errors.js';

/** Creates the input stream when missing; returns its last sequence now. */
export async function ensureStream(jsm: JetStreamManager, name: string, subjects: string[]): Promise<{ lastSeq: number; firstSeq: number; created: boolean }> {
  try {
    const info = await jsm.streams.info(name);
    return { lastSeq: info.state.last_seq, firstSeq: info.state.first_seq, created: false };
  } catch (e) {
    if (!isStreamNotFound(e)) {
      throw new TidemarkError('NATS_UNAVAILABLE', `cannot read stream ${name}: ${(e as Error).message}`, { cause: e });
    }
  }
  try {
    await jsm.streams.add({ name, subjects });
  } catch (e) {
    throw new TidemarkError('BAD_CONFIG', `cannot create input stream ${name} on ${subjects.join(',')}: ${(e as Error).message}`, { cause: e });
  }
  return { lastSeq: 0, firstSeq: 0, created: true };
}

/** Reads the stream in sequence order starting after `afterSeq`. */
export class JetStreamSource {
  private messages?: ConsumerMessages;

  constructor(
    private readonly js: JetStreamClient,
    private readonly stream: string,
  ) {}

  /** Starts consuming after `afterSeq`; iterate the result. */
  async open(afterSeq: number, maxMessages = 1000): Promise<AsyncIterable<JsMsg>> {
    const consumer = await this.js.consumers.get(this.stream, afterSeq > 0 ? { opt_start_seq: afterSeq + 1 } : {});
    this.messages = await consumer.consume({ max_messages: maxMessages });
    return this.messages;
  }

  /** Stops consuming. */
  async close(): Promise<void> {
    this.messages?.stop();
    await this.messages?.close().catch(() => undefined);
  }
}
