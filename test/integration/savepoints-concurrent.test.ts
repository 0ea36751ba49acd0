// Savepoints asked for all at once, against a real running job on a real nats-server: 100
// concurrent requests on the `checkpoint` endpoint (70 names, one of them asked for 31 times) are
// all answered; requests of the same name share one savepoint; a name already written is refused
// plainly; `tidemark inspect` lists every savepoint once. Then 100 more are sent and SIGTERM follows
// at once: every request still gets an answer (a savepoint or "the job is stopping") and the job
// exits 0 (not after a request's timeout).

import t from 'tap';
import { join } from 'node:path';
import { natsFixture, spawnCli, runCli, type CliResult } from '../helpers/nats.js';
import { genStream } from '../helpers/streams.js';

const { scratch, nats, nc, children } = await natsFixture(t, 'tidemark-savepoints-');
const enc = new TextEncoder();
const dec = new TextDecoder();
const JOB = 'spc';
const stateDir = join(scratch.dir, 'state');

const payloads = genStream(5, { n: 600, unit: 60_000, step: 2_000, maxOutOfOrderness: 5_000 });
await (await nc.jetstreamManager()).streams.add({ name: 'IN_SPC', subjects: ['spc.>'] });
const js = nc.jetstream();
await Promise.all(payloads.map((p) => js.publish('spc.in', enc.encode(p))));

interface Answer {
  ok: boolean;
  code?: string;
  error?: string;
  body?: { id: number; name: string; joined?: boolean };
}

/** One request on the checkpoint endpoint; a timeout is an answer too, recorded as such. */
async function ask(name: string): Promise<Answer> {
  try {
    const m = await nc.request(`tidemark.${JOB}.checkpoint`, enc.encode(JSON.stringify({ name })), { timeout: 25_000 });
    const err = m.headers?.get('Nats-Service-Error');
    if (err) return { ok: false, code: m.headers?.get('Nats-Service-Error-Code'), error: err };
    return { ok: true, body: JSON.parse(dec.decode(m.data)) as Answer['body'] };
  } catch (e) {
    return { ok: false, code: 'no answer', error: (e as Error).message };
  }
}

const run = spawnCli([
  'run', '--nats', nats.url, '--job', JOB, '--input-stream', 'IN_SPC', '--input-subjects', 'spc.>', '--window', 'tumbling:1m',
  '--sink', `jsonl:${scratch.dir}/results.jsonl`, '--state-dir', stateDir, '--checkpoint-interval', '1s', '--log-level', 'warn',
]);
children.add(run.child);
let exited: CliResult | undefined;
void run.done.then((r) => (exited = r));

t.test('the job is up and has read its input', async (t) => {
  for (;;) {
    if (exited) throw new Error(`the job exited: ${exited.stderr}`);
    try {
      const m = await nc.request(`tidemark.${JOB}.status`, enc.encode('{}'), { timeout: 2_000 });
      if ((JSON.parse(dec.decode(m.data)) as { inputSeq?: number }).inputSeq === payloads.length) break;
    } catch {
      // not registered yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  t.pass('status answers with the whole input read');
});

const names = Array.from({ length: 100 }, (_, i) => (i < 31 ? 'shared' : `sp-${i}`));

t.test('100 concurrent savepoint requests are all answered', async (t) => {
  const answers = await Promise.all(names.map((n) => ask(n)));
  const failed = answers.filter((a) => !a.ok);
  t.equal(failed.length, 0, `every request answered with a savepoint (failures: ${JSON.stringify(failed.slice(0, 3))})`);
  const shared = answers.filter((_, i) => names[i] === 'shared').map((a) => a.body!);
  t.equal(new Set(shared.map((b) => b.id)).size, 1, 'the 31 requests named "shared" are answered by one savepoint');
  t.equal(shared.filter((b) => !b.joined).length, 1, 'one of them took it, the other 30 say they joined it');
  const ids = answers.filter((_, i) => names[i] !== 'shared').map((a) => a.body!.id);
  t.equal(new Set([...ids, shared[0]!.id]).size, 70, 'the 70 names got 70 different checkpoints');
  t.ok(answers.every((a, i) => a.body?.name === names[i]), 'each answer names the savepoint asked for');

  const again = await ask('sp-40');
  t.notOk(again.ok, 'a name already written is refused');
  t.equal(again.code, '409');
  t.match(again.error, /a savepoint named "sp-40" already exists \(checkpoint \d+\); names are unique, choose another/, 'and it says so plainly');

  const cli = await runCli(['checkpoint', '--nats', nats.url, '--job', JOB, '--name', 'shared']);
  t.equal(cli.code, 1, 'tidemark checkpoint --name with a written name: exit 1');
  t.match(cli.stderr, /already exists/, `with the reason (${cli.stderr.trim()})`);
});

t.test('SIGTERM with 100 savepoint requests in flight: every one answered, exit 0', async (t) => {
  const pending = Array.from({ length: 100 }, (_, i) => ask(`late-${i}`));
  // Let the requests reach the job, then stop it while they queue.
  await new Promise((r) => setTimeout(r, 50));
  run.child.kill('SIGTERM');
  const answers = await Promise.all(pending);
  const unanswered = answers.filter((a) => a.code === 'no answer');
  t.equal(unanswered.length, 0, `no request goes unanswered (${JSON.stringify(unanswered.slice(0, 2))})`);
  const refused = answers.filter((x) => !x.ok);
  const unclear = refused.filter((a) => a.code !== '503' || !/not taken: the job is stopping/.test(a.error ?? ''));
  t.same(unclear, [], `every refusal (${refused.length}) is a 503 that says the job is stopping`);
  const guard = setTimeout(() => run.child.kill('SIGKILL'), 30_000);
  const r = await run.done;
  clearTimeout(guard);
  t.equal(r.signal, null, 'the job exits by itself, not by the SIGKILL guard');
  t.equal(r.code, 0, `exit 0 (${r.stderr.slice(-400)})`);

  const listing = await runCli(['inspect', '--state-dir', stateDir, '--job', JOB, '--json']);
  const rows = JSON.parse(listing.stdout) as Array<{ id: number; savepoint: string; problem: string }>;
  const taken = answers.filter((a) => a.ok).map((a) => a.body!);
  const listed = new Map(rows.filter((row) => row.savepoint).map((row) => [row.savepoint, row.id]));
  t.equal(listed.size, 70 + taken.length, 'inspect lists every savepoint once');
  t.ok(taken.every((b) => listed.get(b.name) === b.id), 'including those taken while the job stopped, under the ids answered');
  t.ok(rows.every((row) => row.problem === ''), 'and none has a problem');
});
