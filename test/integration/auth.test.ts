// Secured NATS: a real nats-server with an `authorization` block and per-user permissions. The job's
// user has exactly the permissions the README lists and runs a job end to end (produce, run --drain,
// services) with its password from the environment, never echoed; a second user cannot publish on
// the job's internal subjects; a wrong password gets one clear line and exit 1.

import t from 'tap';
import { writeFileSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { connect, Events } from 'nats';
import { scratchDir, runCli } from '../helpers/nats.js';
import { EmbeddedNats } from '../../src/io/nats-server.js';
import { genStream } from '../helpers/streams.js';
import { referenceRun, type RefConfig } from '../helpers/reference.js';
import { connectionOptions, redactUrl } from '../../src/io/connect.js';

const JOB = 'secure';
const PASSWORD = 'pw-3f9a1c';
const scratch = scratchDir('tidemark-auth-');
// The job user's permissions, as README "Secured NATS" lists them for a job named `secure`
// reading posts.> and writing results to a file.
const config = join(scratch.dir, 'auth.conf');
writeFileSync(
  config,
  `authorization {
  users = [
    { user: tm, password: "${PASSWORD}", permissions: {
        publish: { allow: ["tidemark.${JOB}.>", "$JS.API.>", "$JS.ACK.>", "$JS.FC.>", "$KV.tidemark_locks.${JOB}", "$SRV.>", "_INBOX.>", "posts.>"] }
        subscribe: { allow: ["tidemark.${JOB}.>", "$SRV.>", "_INBOX.>"] } } }
    { user: other, password: "other-pw", permissions: {
        publish: { allow: ["posts.>", "_INBOX.>"] }
        subscribe: { allow: ["_INBOX.>"] } } }
  ]
}
`,
);
const nats = await EmbeddedNats.start(join(scratch.dir, 'store'), { config });
t.teardown(async () => {
  await nats.stop();
  scratch.remove();
});
const env = { NATS_USER: 'tm', NATS_PASSWORD: PASSWORD };

t.test('a job runs end to end as a user with only the documented permissions', async (t) => {
  const cfg: RefConfig = { job: JOB, window: { kind: 'tumbling', size: 60_000 }, maxOutOfOrderness: 5_000, lateness: 0, keys: { hashtags: true, all: true, keywords: [] }, emit: 'updates' };
  const payloads = genStream(51, { n: 800, unit: 60_000, step: 2_000, maxOutOfOrderness: 5_000 });
  const file = join(scratch.dir, 'posts.jsonl');
  writeFileSync(file, payloads.join('\n') + '\n');
  // A blank line in the file would be skipped by produce; the generator writes none.
  const p = await runCli(['produce', '--nats', nats.url, '--file', file], { env });
  t.equal(p.code, 0, `produce exits 0 (stderr: ${p.stderr})`);
  const dir = join(scratch.dir, JOB);
  const r = await runCli(
    ['run', '--nats', nats.url, '--job', JOB, '--window', 'tumbling:1m', '--max-out-of-orderness', '5s', '--keys', 'hashtags,all',
      '--sink', `jsonl:${dir}/results.jsonl`, '--late-sink', `jsonl:${dir}/late.jsonl`, '--dlq-sink', `jsonl:${dir}/dlq.jsonl`, '--state-dir', join(dir, 'state'), '--drain'],
    { env },
  );
  t.equal(r.code, 0, `run exits 0 (stderr: ${r.stderr.slice(-1500)})`);
  t.notMatch(r.stderr, /Permissions Violation/i, 'no permission was missing');
  t.notOk(r.stderr.includes(PASSWORD) || r.stdout.includes(PASSWORD), 'the password is never printed');
  const read = (f: string): Array<{ id: string }> => (existsSync(f) ? readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { id: string }) : []);
  const ids = (xs: Array<{ id: string }>): string[] => xs.map((x) => x.id).sort();
  const expected = referenceRun(payloads, cfg);
  t.same(ids(read(`${dir}/results.jsonl`)), ids(expected.results), 'results equal the model');
  const s = await runCli(['services', '--nats', nats.url.replace('nats://', `nats://tm:${PASSWORD}@`)], {});
  t.equal(s.code, 0, `services with the password in the URL exits 0 (stderr: ${s.stderr})`);
  t.notOk(s.stdout.includes(PASSWORD) || s.stderr.includes(PASSWORD), 'the URL is shown without its password');
});

t.test('another user cannot publish on the job\'s internal subjects', async (t) => {
  const nc = await connect({ servers: nats.url, user: 'other', pass: 'other-pw' });
  const violations: string[] = [];
  void (async () => {
    for await (const s of nc.status()) {
      const ctx = (s as { permissionContext?: { operation: string; subject: string } }).permissionContext;
      if (s.type === Events.Error) violations.push(`${String(s.data)} ${ctx?.operation} ${ctx?.subject}`);
    }
  })();
  for (const subject of [`tidemark.${JOB}.part.0`, `tidemark.${JOB}.out`, `tidemark.${JOB}.credit`]) {
    nc.publish(subject, new Uint8Array([1, 2, 3]));
    await nc.flush();
  }
  for (let i = 0; i < 50 && violations.length < 3; i++) await new Promise((r) => setTimeout(r, 20));
  t.equal(violations.length, 3, `the server refused all three publishes (${violations.join('; ')})`);
  t.ok(violations.every((v) => /PERMISSIONS_VIOLATION publish tidemark\.secure\./.test(v)), 'as permission violations on the job\'s subjects');
  await nc.close();
});

t.test('a wrong password: one clear line, exit 1, the password not echoed', async (t) => {
  const r = await runCli(['run', '--nats', nats.url, '--job', JOB, '--window', 'tumbling:1m', '--state-dir', join(scratch.dir, 'wrong'), '--drain'], { env: { NATS_USER: 'tm', NATS_PASSWORD: 'not-it-77' } });
  t.equal(r.code, 1, 'exit code 1');
  t.equal(r.stderr.trim().split('\n').length, 1, `one line: ${r.stderr.trim()}`);
  t.match(r.stderr, /refused the credentials .*NATS_USER\/NATS_PASSWORD/);
  t.notOk(r.stderr.includes('not-it-77'), 'the password is not echoed');
  const s = await runCli(['status', '--nats', nats.url, '--job', JOB], { env: { NATS_TOKEN: 'wrong-token-5' } });
  t.equal(s.code, 1, 'status with a wrong token: exit code 1');
  t.match(s.stderr, /refused the credentials/);
  t.notOk(s.stderr.includes('wrong-token-5'), 'the token is not echoed');
});

t.test('connection options: secrets come out of URLs, files are checked, flags combine sanely', async (t) => {
  const o = connectionOptions('nats://u1:p%40ss@h1:4222, tls://tok@h2:4222,h3:4222', {}, {});
  t.same(o.servers, ['nats://h1:4222', 'tls://h2:4222', 'h3:4222'], 'servers without user info');
  t.equal(o.user, 'u1');
  t.equal(o.pass, 'p@ss', 'percent-decoded password');
  t.same(connectionOptions('nats://h:1', {}, { NATS_TOKEN: 'tk' }).token, 'tk', 'token from the environment');
  t.equal(redactUrl('nats://u:secret@h:1,tok@h2:2'), 'nats://***@h:1,***@h2:2');
  t.throws(() => connectionOptions('nats://h:1', { creds: join(scratch.dir, 'missing.creds') }), /--creds: cannot read/);
  t.throws(() => connectionOptions('nats://h:1', { tlsCa: join(scratch.dir, 'missing.pem') }), /--tls-ca: cannot read/);
  const r = await runCli(['status', '--tls-cert', 'a.pem']);
  t.equal(r.code, 2, 'a certificate without its key is a bad flag');
  t.match(r.stderr, /--tls-cert and --tls-key: give both/);
});
