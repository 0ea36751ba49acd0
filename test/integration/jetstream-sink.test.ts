// The JetStream sink's recovery on a real nats-server, driven call by call as the sink actor drives
// it across runs that are killed: open (read back what a failed run stored after the checkpoint),
// write, snapshot at a barrier. Records are interleaved differently from run to run (partitions
// reach the sink in whatever order they are ready), which is what these cases pin down. The stream's
// duplicate window is tiny and each case waits past it: JetStream's own deduplication must not be
// what keeps the stream exact.

import t from 'tap';
import { connect, type NatsConnection } from 'nats';
import { scratchDir, startNats } from '../helpers/nats.js';
import { readStream } from '../helpers/sinks.js';
import { JetStreamSink, type OutRecord, type SinkProgress } from '../../src/io/sinks.js';

const scratch = scratchDir('tidemark-jssink-');
const nats = await startNats(scratch.dir);
const nc: NatsConnection = await connect({ servers: nats.url });
const js = nc.jetstream();
const jsm = await nc.jetstreamManager();
t.teardown(async () => {
  await nc.close();
  await nats.stop();
  scratch.remove();
});

/** The duplicate window of the streams here; every run waits past it before writing. */
const WINDOW_MS = 100;
const pastWindow = (): Promise<void> => new Promise((r) => setTimeout(r, 3 * WINDOW_MS));
const recs = (...ids: string[]): OutRecord[] => ids.map((id) => ({ id }));
let streams = 0;

/** A fresh stream and a function that opens a sink on it (one per simulated run). */
async function stream(): Promise<{ name: string; run: (p: SinkProgress | undefined) => Promise<JetStreamSink>; ids: () => Promise<string[]> }> {
  const name = `RES_${++streams}`;
  await jsm.streams.add({ name, subjects: [`res.${streams}`], duplicate_window: WINDOW_MS * 1_000_000 });
  const subject = `res.${streams}`;
  return {
    name,
    run: async (p) => {
      await pastWindow();
      const s = new JetStreamSink(js, jsm, name, subject);
      await s.open(p);
      return s;
    },
    ids: async () => (await readStream<{ id: string }>(nc, name)).map((r) => r.id),
  };
}

t.test('a checkpoint taken while records read back are still to come keeps them covered', async (t) => {
  const s = await stream();
  // Run A: checkpoint 1 after a1; a2 (partition 0) and a3 (partition 1) stored after it; killed.
  const a = await s.run(undefined);
  await a.write(recs('a1'));
  const cp1 = await a.snapshot();
  await a.write(recs('a2', 'a3'));
  await a.flush();
  // Run B from checkpoint 1: partition 0 is ahead this time: a2 again (read back: skipped) and b1,
  // a record A never reached, before the barrier of checkpoint 2; partition 1's a3 comes after it.
  const b = await s.run(cp1);
  t.equal(b.skipping, 2, 'run B reads back a2 and a3');
  await b.write(recs('a2', 'b1'));
  const cp2 = await b.snapshot();
  await b.flush();
  // Killed before a3. Run C from checkpoint 2 produces a3 (after checkpoint 2 in every run): A stored it.
  t.match(cp2, { pending: [[3, 3]] }, 'checkpoint 2 lists a3 (sequence 3) as still to come');
  const c = await s.run(cp2);
  t.equal(c.skipping, 1, 'run C reads back a3, stored before the sequence checkpoint 2 records');
  await c.write(recs('a3', 'c1'));
  await c.flush();
  t.same(await s.ids(), ['a1', 'a2', 'a3', 'b1', 'c1'], 'every record once');
});

t.test('a checkpoint with nothing published since the read-back still covers what was read back', async (t) => {
  const s = await stream();
  const a = await s.run(undefined);
  await a.write(recs('a1'));
  const cp1 = await a.snapshot();
  await a.write(recs('a2', 'a3', 'a4'));
  await a.flush();
  // Run B: a2 before the barrier, all skipped: checkpoint 2 publishes nothing of its own.
  const b = await s.run(cp1);
  await b.write(recs('a2'));
  const cp2 = await b.snapshot();
  await b.write(recs('a3'));
  await b.flush();
  // Run C from checkpoint 2: a3 and a4 again, then new records; then D from C's checkpoint.
  const c = await s.run(cp2);
  await c.write(recs('a3', 'c1'));
  const cp3 = await c.snapshot();
  await c.write(recs('a4', 'c2'));
  await c.flush();
  const d = await s.run(cp3);
  await d.write(recs('a4', 'c2', 'd1'));
  await d.flush();
  t.same((await s.ids()).sort(), ['a1', 'a2', 'a3', 'a4', 'c1', 'c2', 'd1'], 'every record once');
});

t.test('records read back and produced again are not published twice; new ones are', async (t) => {
  const s = await stream();
  const a = await s.run(undefined);
  const cp0 = await a.snapshot();
  await a.write(recs('a1', 'a2'));
  await a.flush();
  const b = await s.run(cp0);
  await b.write(recs('a2', 'a1', 'b1'));
  const cp1 = await b.snapshot();
  await b.flush();
  t.same(await s.ids(), ['a1', 'a2', 'b1'], 'a1 and a2 once, in the order run A stored them');
  const c = await s.run(cp1);
  await c.write(recs('c1'));
  await c.flush();
  t.same(await s.ids(), ['a1', 'a2', 'b1', 'c1'], 'a run after a clean checkpoint reads nothing back it would skip');
});

t.test('a malformed list of records to skip in a checkpoint is a clear error', async (t) => {
  const s = await stream();
  for (const pending of [[[5, 4]], [[2, 9]], [[3, 3], [2, 2]], [[1.5, 2]], 'x'] as unknown[]) {
    await t.rejects(s.run({ lastSeq: 8, pending } as SinkProgress), { code: 'STATE_CORRUPT', message: /list of records to skip is malformed/ }, JSON.stringify(pending));
  }
});
