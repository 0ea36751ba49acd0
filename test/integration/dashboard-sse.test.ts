// The dashboard's Server-Sent Events without a browser: the results it sends are the sink's records,
// revisions and final records included, across a job restart (kill -9):
// - jetstream: sink, dashboard in the job's process (`run --dashboard PORT`): the server goes down with
//   the job; the client reconnects with Last-Event-ID and gets exactly what it missed from the stream;
// - nats: sink, `tidemark dashboard` on its own: it stays up while the job restarts (from the start of
//   its input) and sends its records again; the replays (same ids) are not sent twice.

import t from 'tap';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { natsFixture, spawnCli } from '../helpers/nats.js';
import { BASE_TS, genStream } from '../helpers/streams.js';
import { readResultsStream, SseClient } from '../helpers/dashboard.js';
import type { SentimentRecord as ResultRecord } from '../../src/host/alerts.js';

const enc = new TextEncoder();
const dec = new TextDecoder();
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

const POSTS = genStream(13, { n: 4000, unit: 2000, step: 10, maxOutOfOrderness: 1000, pMalformed: 0.01 });
/** Moves the watermark past every window of the stream: all of them emit their final record. */
const SENTINEL = JSON.stringify({ id: 'sentinel', ts: BASE_TS + 86_400_000, text: 'the end #sentinel' });
const windowOf = (r: ResultRecord): string => `${r.key}|${r.window.start}|${r.window.end}`;

/** The newest event time among the valid posts. */
const LAST_TS = Math.max(...POSTS.map((p) => { try { const v = (JSON.parse(p) as { ts?: unknown }).ts; return typeof v === 'number' ? v : typeof v === 'string' ? Date.parse(v) || 0 : 0; } catch { return 0; } }));

/** Every window but the sentinel's has its final record among `records`, up to the stream's last windows. */
function allFinal(records: ResultRecord[]): boolean {
  const windows = new Set(records.filter((r) => r.key !== '#sentinel').map(windowOf));
  const finals = new Set(records.filter((r) => r.final).map(windowOf));
  const reachedEnd = records.some((r) => r.final && r.key !== '#sentinel' && r.window.end >= LAST_TS - 10_000);
  return reachedEnd && windows.size > 0 && [...windows].every((w) => finals.has(w));
}

const jobArgs = (nats: string, dir: string, job: string, sink: string): string[] => [
  'run', '--nats', nats, '--job', job, '--input-stream', `IN_${job}`, '--input-subjects', `${job}.>`, '--window', 'tumbling:2s', '--max-out-of-orderness', '1s',
  '--allowed-lateness', '3s', '--sink', sink, '--state-dir', join(dir, job), '--checkpoint-interval', '200ms', '--batch-size', '100', '--log-level', 'warn',
];

t.test('SSE: results, revisions and finals match the sink across a job restart', async (t) => {
  const { scratch, nats, nc, children } = await natsFixture(t, 'tidemark-sse-');
  const js = nc.jetstream();
  const jsm = await nc.jetstreamManager();
  const publish = async (job: string, payloads: string[]): Promise<void> => {
    for (let i = 0; i < payloads.length; i += 500) await Promise.all(payloads.slice(i, i + 500).map((p) => js.publish(`${job}.in`, enc.encode(p))));
  };

  t.test('jetstream: sink, dashboard in the job process, the page reconnects with Last-Event-ID', async (t) => {
    const job = 'ssejs';
    await jsm.streams.add({ name: `IN_${job}`, subjects: [`${job}.>`] });
    await publish(job, POSTS.slice(0, 2000));
    const port = await freePort();
    const args = [...jobArgs(nats.url, scratch.dir, job, 'jetstream:SSERES'), '--dashboard', String(port)];
    const first = spawnCli(args);
    children.add(first.child);
    await first.waitFor(new RegExp(`dashboard: http://127\\.0\\.0\\.1:${port}/`));
    const sse = new SseClient(`http://127.0.0.1:${port}/`);
    const running = sse.keepConnected();
    await sse.waitFor(() => sse.results().some((r) => r.revision > 0), 'a revision before the kill');
    first.child.kill('SIGKILL');
    await first.done;
    const beforeRestart = sse.events.length;
    await publish(job, [...POSTS.slice(2000), SENTINEL]);
    const second = spawnCli(args);
    children.add(second.child);
    await second.waitFor(new RegExp(`dashboard: http://127\\.0\\.0\\.1:${port}/`));
    let stream = new Map<number, ResultRecord>();
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline) {
      stream = await readResultsStream(nc, 'SSERES');
      if (allFinal([...stream.values()]) && new Set(sse.results().map((r) => r.id)).size >= stream.size) break;
      await sleep(300);
    }
    sse.close();
    second.child.kill('SIGTERM');
    t.equal((await second.done).code, 0, 'the restarted job stops with exit 0');
    await running;

    const sink = [...stream.entries()].sort((a, b) => a[0] - b[0]).map(([, r]) => r);
    t.ok(allFinal(sink), 'the sink holds a final record for every window');
    // Every result event, in order; a snapshot only ever at the very start (an empty page).
    const snapshots = sse.events.filter((e) => e.event === 'snapshot');
    t.ok(snapshots.every((s) => (s.data as { records: unknown[] }).records.length === 0), 'no snapshot carried records: the first connection began before any result');
    const after = sse.events.slice(beforeRestart);
    t.ok(after.some((e) => e.event === 'hello'), 'the client reconnected to the restarted job');
    t.notOk(after.some((e) => e.event === 'snapshot'), 'after the restart it got what it missed, not a snapshot');
    const got = sse.results();
    t.same(got.map((r) => r.id), sink.map((r) => r.id), `the events are the sink's ${sink.length} records, in order, none missing, none twice`);
    t.same(got, sink, 'with the same contents');
    t.ok(got.some((r) => r.revision > 0 && !r.final), 'revisions from late posts among them');
    t.ok(got.filter((r) => r.final).length > 10, 'and final records');
    const ids = sse.events.filter((e) => e.event === 'results').map((e) => Number(/:(\d+)$/.exec(e.id ?? '')?.[1]));
    t.ok(ids.every((s, i) => i === 0 || s > ids[i - 1]!), 'event ids (stream sequences) only increase');
  });

  t.test('nats: sink, tidemark dashboard on its own, replays after the restart are not sent twice', async (t) => {
    const job = 'ssenats';
    const subject = `tidemark.${job}.results`;
    await jsm.streams.add({ name: `IN_${job}`, subjects: [`${job}.>`] });
    const seen: ResultRecord[] = [];
    nc.subscribe(subject, { callback: (_e, m) => seen.push(JSON.parse(dec.decode(m.data)) as ResultRecord) });
    await publish(job, POSTS.slice(0, 2000));
    const dash = spawnCli(['dashboard', '--nats', nats.url, '--job', job, '--port', '0', '--log-level', process.env.DEBUG_SSE ? 'debug' : 'warn']);
    children.add(dash.child);
    const out: string[] = [];
    dash.child.stdout!.on('data', (d: Buffer) => out.push(d.toString()));
    await dash.waitFor(/dashboard for job ssenats on \S+: http/);
    const url = /(http:\/\/127\.0\.0\.1:\d+\/)/.exec(out.join(''))![1]!;
    // The HTTP API around the events: static files with a strict CSP, query proxy, alert rules.
    const index = await fetch(url);
    t.equal(index.status, 200);
    t.match(index.headers.get('content-security-policy'), /default-src 'self'/, 'the page may load nothing from elsewhere');
    t.match(await index.text(), /<script src="\/vendor\/uPlot\.iife\.min\.js">/, 'uPlot is served by the dashboard');
    t.equal((await fetch(`${url}vendor/uPlot.iife.min.js`)).status, 200);
    t.equal((await fetch(`${url}nope`)).status, 404);
    const noKey = await fetch(`${url}api/query`);
    t.equal(noKey.status, 400);
    t.match(await noKey.json(), { error: /\?key=KEY is required/ });
    const notRunning = await fetch(`${url}api/query?key=%23b`);
    t.equal(notRunning.status, 503, 'query while the job does not run: 503');
    t.match(await notRunning.json(), { error: /no running job "ssenats"/ });
    const post = (body: string): Promise<Response> => fetch(`${url}api/alerts`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
    t.match(await (await post('{nope')).json(), { error: /not JSON/ });
    t.match(await (await post('{"op":"under","threshold":1}')).json(), { error: /"op" must be "below" or "above"/ });
    t.match(await (await post('{"op":"below","threshold":"x"}')).json(), { error: /"threshold" must be a finite number/ });
    t.match(await (await post('{"op":"below","threshold":1,"minCount":0}')).json(), { error: /"minCount" must be an integer/ });
    t.match(await (await post('{"op":"below","threshold":1,"colour":"red"}')).json(), { error: /unknown field "colour"/ });
    const rule = await post('{"op":"above","threshold":1.5,"minCount":3}');
    t.equal(rule.status, 201);
    const { id } = (await rule.json()) as { id: string };
    t.match(await (await fetch(`${url}api/alerts`)).json(), { rules: [{ id, op: 'above', threshold: 1.5, minCount: 3 }] });
    t.equal((await fetch(`${url}api/alerts/${id}`, { method: 'DELETE' })).status, 200);
    t.equal((await fetch(`${url}api/alerts/${id}`, { method: 'DELETE' })).status, 404);
    // Any key whose window averages above 1 with at least 3 posts: published on NATS, once per window.
    const alerts: Array<{ id: string; key: string; resultId: string; avgScore: number; count: number }> = [];
    nc.subscribe(`tidemark.${job}.alerts`, { callback: (_e, m) => alerts.push(JSON.parse(dec.decode(m.data)) as (typeof alerts)[number]) });
    t.equal((await post('{"op":"above","threshold":1,"minCount":3}')).status, 201);

    const sse = new SseClient(url);
    const running = sse.keepConnected();
    await sse.waitFor(() => sse.events.some((e) => e.event === 'hello'), 'hello');
    const args = jobArgs(nats.url, scratch.dir, job, `nats:${subject}`);
    const first = spawnCli(args);
    children.add(first.child);
    await sse.waitFor(() => sse.results().length > 30, 'results before the kill');
    first.child.kill('SIGKILL');
    await first.done;
    const connections = sse.connections;
    await publish(job, [...POSTS.slice(2000), SENTINEL]);
    // Restarted from the beginning of the input (--reset-state), the job sends every record again with
    // the same id: replays whatever the kill's timing (a restart from the checkpoint replays only what
    // followed it, which may be nothing).
    const second = spawnCli([...args, '--reset-state']);
    children.add(second.child);
    const deadline = Date.now() + 60_000;
    while (Date.now() < deadline && !(allFinal(seen) && new Set(sse.results().map((r) => r.id)).size >= new Set(seen.map((r) => r.id)).size)) await sleep(300);
    await sleep(500);
    sse.close();
    second.child.kill('SIGTERM');
    t.equal((await second.done).code, 0, 'the restarted job stops with exit 0');
    dash.child.kill('SIGTERM');
    const dashResult = await dash.done;
    t.equal(dashResult.code, 0, 'tidemark dashboard stops with exit 0');
    if (process.env.DEBUG_SSE) t.comment(`dashboard stderr: ${dashResult.stderr.slice(-3000)} timing ${Date.now()}`);
    await running;

    const unique = new Map<string, ResultRecord>();
    for (const r of seen) if (!unique.has(r.id)) unique.set(r.id, r);
    t.ok(seen.length > unique.size, `the job replayed records (${seen.length - unique.size} duplicates on the subject)`);
    t.ok(allFinal([...unique.values()]), 'a final record for every window');
    const got = sse.results();
    t.equal(new Set(got.map((r) => r.id)).size, got.length, 'the dashboard sent each record once');
    const byId = (a: ResultRecord, b: ResultRecord): number => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
    t.same([...got].sort(byId), [...unique.values()].sort(byId), `the events are the subject's ${unique.size} records, deduplicated by id, with the same contents (${got.length} sent)`);
    t.equal(sse.connections, connections, 'the same SSE connection throughout the job restart');
    t.ok(got.some((r) => r.revision > 0 && !r.final) && got.some((r) => r.final), 'revisions and finals among them');
    // The server evaluated the rule on every result, rendered or not: one alert per window that met it.
    const meeting = new Map<string, ResultRecord>();
    for (const r of got) if (r.avgScore > 1 && r.count >= 3 && !meeting.has(windowOf(r))) meeting.set(windowOf(r), r);
    t.ok(meeting.size > 0, `${meeting.size} windows met the rule`);
    t.same(alerts.map((a) => a.resultId).sort(), [...meeting.values()].map((r) => r.id).sort(), 'one alert per window that met the rule, at its first qualifying record');
    t.equal(new Set(alerts.map((a) => a.id)).size, alerts.length, 'alert ids are unique');
  });
});
