// `tidemark produce` (a JSONL file of posts into the input stream) and `tidemark gen` (synthetic posts).

import { readFileSync } from 'node:fs';
import type { NatsConnection } from 'nats';
import { connectNats, natsAuthFrom, NATS_AUTH_OPTIONS } from '../io/connect.js';
import { TidemarkError } from '../errors.js';
import { parseFlags, type OptionDef } from '../option-table.js';
import { parseDuration } from '../runtime/duration.js';
import { syntheticPosts } from '../runtime/synthetic.js';
import { get, intFlag, help } from './options.js';
import { keyedSubject } from '../io/subjects.js';

const CONNECT_OPTIONS: OptionDef[] = [
  { flag: '--nats', key: 'nats', kind: 'string', arg: 'URL', help: 'NATS server(s), comma-separated', default: 'nats://127.0.0.1:4222' },
  ...NATS_AUTH_OPTIONS,
  { flag: '--input-stream', key: 'inputStream', kind: 'string', arg: 'NAME', help: 'input stream (created when missing)', default: 'POSTS' },
  { flag: '--input-subjects', key: 'inputSubjects', kind: 'string', arg: 'SUBJ', help: 'subjects of the input stream when it is created', default: 'posts.>' },
  { flag: '--subject', key: 'subject', kind: 'string', arg: 'SUBJ', help: 'subject to publish posts on', default: 'posts.in' },
  {
    flag: '--key-token',
    key: 'keyToken',
    kind: 'string',
    arg: 'FIELD',
    help: "append the post's FIELD (user, id …) to --subject as one more token, for a server that maps <subject>.* onto input partitions (tidemark run --input-partitions)",
  },
];

/** The subject of one post: `--subject`, or with `--key-token FIELD` that subject and the post's field as a last token. */
function subjectFor(subject: string, field: string | undefined, post: unknown): string {
  if (field === undefined) return subject;
  const v = typeof post === 'object' && post !== null ? (post as Record<string, unknown>)[field] : undefined;
  return keyedSubject(subject, typeof v === 'string' || typeof v === 'number' ? String(v) : '_');
}

const parsed = (line: string): unknown => {
  try {
    return JSON.parse(line);
  } catch {
    return undefined;
  }
};

const PRODUCE_OPTIONS: OptionDef[] = [{ flag: '--file', key: 'file', kind: 'string', arg: 'PATH', help: 'JSONL file, one post per line (required)' }, ...CONNECT_OPTIONS, { flag: '--help', key: 'help', kind: 'bool', help: 'this help' }];

const GEN_OPTIONS: OptionDef[] = [
  { flag: '--rate', key: 'rate', kind: 'int', arg: 'N', help: 'posts per second (0 = as fast as possible)', default: '1000' },
  { flag: '--duration', key: 'duration', kind: 'dur', arg: 'DUR', help: 'how long to generate', default: '10s' },
  { flag: '--count', key: 'count', kind: 'int', arg: 'N', help: 'stop after N posts (overrides --duration)' },
  { flag: '--keys', key: 'keys', kind: 'int', arg: 'N', help: 'distinct hashtags', default: '100' },
  { flag: '--late-fraction', key: 'lateFraction', kind: 'string', arg: 'F', help: 'share of posts that arrive late, 0..1', default: '0.02' },
  { flag: '--seed', key: 'seed', kind: 'int', arg: 'N', help: 'random seed', default: '1' },
  { flag: '--stdout', key: 'stdout', kind: 'bool', help: 'write JSONL to stdout instead of publishing' },
  ...CONNECT_OPTIONS,
  { flag: '--help', key: 'help', kind: 'bool', help: 'this help' },
];

async function ensureInput(nc: NatsConnection, stream: string, subjects: string): Promise<void> {
  const { ensureStream } = await import('../io/jetstream-source.js');
  await ensureStream(await nc.jetstreamManager(), stream, subjects.split(','));
}

export async function produce(argv: string[]): Promise<number> {
  const { opts } = parseFlags(argv, PRODUCE_OPTIONS);
  if (opts.help) return help('produce --file PATH [options]', PRODUCE_OPTIONS);
  const file = get(opts, PRODUCE_OPTIONS, 'file');
  if (!file) throw new TidemarkError('BAD_FLAG', '--file: required; a JSONL file of posts');
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new TidemarkError('BAD_FLAG', `--file: cannot read ${file}: ${(e as Error).message}`);
  }
  const nc = await connectNats(get(opts, PRODUCE_OPTIONS, 'nats')!, 'tidemark-produce', natsAuthFrom((k) => get(opts, PRODUCE_OPTIONS, k)));
  try {
    await ensureInput(nc, get(opts, PRODUCE_OPTIONS, 'inputStream')!, get(opts, PRODUCE_OPTIONS, 'inputSubjects')!);
    const js = nc.jetstream();
    const subject = get(opts, PRODUCE_OPTIONS, 'subject')!;
    const keyToken = get(opts, PRODUCE_OPTIONS, 'keyToken');
    const lines = text.split('\n').filter((l) => l.trim() !== '');
    let inflight: Promise<unknown>[] = [];
    const enc = new TextEncoder();
    for (const line of lines) {
      // Lines are published as they are: a malformed one is the job's to dead-letter.
      inflight.push(js.publish(subjectFor(subject, keyToken, keyToken === undefined ? undefined : parsed(line)), enc.encode(line)));
      if (inflight.length >= 1000) {
        await Promise.all(inflight);
        inflight = [];
      }
    }
    await Promise.all(inflight);
    process.stdout.write(`published ${lines.length} posts to ${keyToken === undefined ? subject : `${subject}.<${keyToken}>`}\n`);
  } finally {
    await nc.close();
  }
  return 0;
}

export async function gen(argv: string[]): Promise<number> {
  const { opts } = parseFlags(argv, GEN_OPTIONS);
  if (opts.help) return help('gen [options]', GEN_OPTIONS);
  const rate = intFlag(opts, GEN_OPTIONS, 'rate')!;
  const count = intFlag(opts, GEN_OPTIONS, 'count');
  const duration = parseDuration(get(opts, GEN_OPTIONS, 'duration')!, '--duration');
  const keys = intFlag(opts, GEN_OPTIONS, 'keys', 1)!;
  const lateFraction = Number(get(opts, GEN_OPTIONS, 'lateFraction'));
  if (!(lateFraction >= 0 && lateFraction <= 1)) throw new TidemarkError('BAD_FLAG', `--late-fraction: "${get(opts, GEN_OPTIONS, 'lateFraction')}" is not accepted; a number from 0 to 1`);
  const total = count ?? (rate > 0 ? Math.round((rate * duration) / 1000) : 100_000);
  const posts = syntheticPosts({ keys, lateFraction, jitter: 2000, lateBy: 60_000, seed: intFlag(opts, GEN_OPTIONS, 'seed')!, startTs: Date.now(), step: rate > 0 ? 1000 / rate : 1 });
  if (opts.stdout) {
    const out: string[] = [];
    for (let i = 0; i < total; i++) out.push(JSON.stringify(posts.next().value));
    process.stdout.write(out.join('\n') + '\n');
    return 0;
  }
  const nc = await connectNats(get(opts, GEN_OPTIONS, 'nats')!, 'tidemark-gen', natsAuthFrom((k) => get(opts, GEN_OPTIONS, k)));
  try {
    await ensureInput(nc, get(opts, GEN_OPTIONS, 'inputStream')!, get(opts, GEN_OPTIONS, 'inputSubjects')!);
    const subject = get(opts, GEN_OPTIONS, 'subject')!;
    const keyToken = get(opts, GEN_OPTIONS, 'keyToken');
    const enc = new TextEncoder();
    const t0 = Date.now();
    for (let i = 0; i < total; i++) {
      const p = posts.next().value!;
      nc.publish(subjectFor(subject, keyToken, p), enc.encode(JSON.stringify(p)));
      if (rate > 0 && i % 100 === 99) {
        const due = t0 + ((i + 1) * 1000) / rate;
        const wait = due - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      } else if (i % 5000 === 4999) await nc.flush();
      if (i % 10_000 === 9_999) process.stderr.write(`\rgen: ${i + 1}/${total} posts`);
    }
    await nc.flush();
    process.stderr.write(`\rgen: published ${total} posts to ${keyToken === undefined ? subject : `${subject}.<${keyToken}>`}\n`);
  } finally {
    await nc.close();
  }
  return 0;
}
