// A lease expires when its holder stops renewing it, as an observer sees it: the key stands at one
// revision for the TTL by the observer's clock; a renewal (a new revision) or a spell of not being able to
// read the leases at all (blind) gives the holder a full TTL again.

import t from 'tap';
import { LeaseObserver } from '../../src/io/lease.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

t.test('stale only after the TTL at one revision, since first seen', async (t) => {
  const o = new LeaseObserver(100);
  t.notOk(o.stale('coordinator', 5), 'first sight: not stale, whatever the entry’s age');
  await sleep(40);
  t.notOk(o.stale('coordinator', 5), 'within the TTL');
  await sleep(80);
  t.ok(o.stale('coordinator', 5), 'the TTL passed at the same revision');
  t.notOk(o.stale('coordinator', 6), 'renewed: a new revision starts the clock again');
  t.notOk(o.stale('member.a', 5), 'keys are watched apart');
});

t.test('blind: what was seen before an outage counts for nothing', async (t) => {
  const o = new LeaseObserver(50);
  o.stale('coordinator', 1);
  await sleep(70);
  o.blind();
  t.notOk(o.stale('coordinator', 1), 'after blind, a full TTL again');
  await sleep(70);
  t.ok(o.stale('coordinator', 1), 'then stale');
});
