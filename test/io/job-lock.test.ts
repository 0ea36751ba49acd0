// The job lock on a real nats-server: one holder per job, a clear refusal naming the holder, takeover
// of a holder known dead, expiry of a crashed holder's claim, and the holder told when it loses the lock.

import t from 'tap';
import { connect, type NatsConnection } from 'nats';
import { scratchDir, startNats } from '../helpers/nats.js';
import { JobLock, type LockHolder } from '../../src/io/job-lock.js';
import { TidemarkError } from '../../src/errors.js';

const scratch = scratchDir();
const nats = await startNats(scratch.dir);
const nc: NatsConnection = await connect({ servers: nats.url });
t.teardown(async () => {
  await nc.close();
  await nats.stop();
  scratch.remove();
});

// The first acquire creates the bucket: a short TTL keeps the expiry case quick.
const TTL = 1000;
const holder = (job: string, pid: number, host = 'host-a'): LockHolder => ({ job, host, pid, stateDir: `/state/${pid}`, since: Date.now(), version: '0.0.0' });
const kv = async () => nc.jetstream().views.kv('tidemark_locks');

t.test('a second holder is refused, naming the first; after release it may take the lock', async (t) => {
  const first = await JobLock.acquire(nc, holder('j1', 101), { ttl: TTL });
  const err = await JobLock.acquire(nc, holder('j1', 202), { ttl: TTL }).catch((e: unknown) => e);
  t.ok(err instanceof TidemarkError && err.code === 'STATE_LOCKED', 'STATE_LOCKED');
  t.match((err as Error).message, /job "j1" is already running \(pid 101 on host host-a, state dir \/state\/101, since .*\)/);
  const other = await JobLock.acquire(nc, holder('j2', 303), { ttl: TTL });
  t.pass('another job is not affected');
  await first.release();
  const second = await JobLock.acquire(nc, holder('j1', 202), { ttl: TTL });
  t.equal(second.holder.pid, 202);
  await second.release();
  await other.release();
});

t.test('the heartbeat keeps a live claim beyond its TTL', async (t) => {
  const lock = await JobLock.acquire(nc, holder('j3', 1), { ttl: TTL });
  await new Promise((r) => setTimeout(r, 3 * TTL));
  await t.rejects(JobLock.acquire(nc, holder('j3', 2), { ttl: TTL }), { code: 'STATE_LOCKED' });
  await lock.release();
});

t.test('a holder known to be dead is taken over at once; a crashed one expires after the TTL', async (t) => {
  const store = await kv();
  await store.create('j4', new TextEncoder().encode(JSON.stringify(holder('j4', 404))));
  const asked: LockHolder[] = [];
  const taken = await JobLock.acquire(nc, holder('j4', 405), {
    isHolderDead: async (h) => {
      asked.push(h);
      return h.pid === 404;
    },
  });
  t.equal(asked[0]?.pid, 404, 'asked about the recorded holder');
  await taken.release();

  await store.create('j5', new TextEncoder().encode(JSON.stringify(holder('j5', 500))));
  await t.rejects(JobLock.acquire(nc, holder('j5', 501), { isHolderDead: async () => false }), { code: 'STATE_LOCKED' });
  await new Promise((r) => setTimeout(r, 2.5 * TTL));
  const after = await JobLock.acquire(nc, holder('j5', 501));
  t.equal(after.holder.pid, 501, 'the crashed claim expired');
  await after.release();
});

t.test('a holder whose claim is replaced by another is told it lost the lock', async (t) => {
  let lost: string | undefined;
  const lock = await JobLock.acquire(nc, holder('j6', 600), { onLost: (why) => (lost = why) });
  await (await kv()).put('j6', new TextEncoder().encode(JSON.stringify(holder('j6', 601, 'host-b'))));
  const deadline = Date.now() + 5 * TTL;
  while (lost === undefined && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
  t.match(lost, /lost the lock of job j6 to pid 601 on host host-b/);
  await lock.release();
});
