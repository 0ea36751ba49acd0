// Property-based fuzzing (fast-check) of everything that reads outside input: the post decoder, the
// internal message decoder (envelope and shape checks), the duration / window / key / sink parsers,
// flag parsing and the config loader. Any input gives a value or a TidemarkError, never an exception
// escaping. FUZZ_RUNS sets the cases per property (npm test: 300; npm run fuzz: 100,000).

import t from 'tap';
import fc from 'fast-check';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parsePost, parseEventTime } from '../../src/runtime/post.js';
import { parseDuration } from '../../src/runtime/duration.js';
import { parseWindowSpec } from '../../src/runtime/windows.js';
import { parseKeySpec } from '../../src/runtime/keys.js';
import { parseSinkSpec } from '../../src/io/sink-spec.js';
import { parseFlags } from '../../src/option-table.js';
import { resolveJobConfig, RUN_OPTIONS } from '../../src/host/run-options.js';
import { Opener, RunKey, Sealer, SENDER, readEnvelope } from '../../src/io/channel.js';
import { checkCreditMsg, checkOutMsg, checkPartitionMsg, checkQueryRequest } from '../../src/actors/message-checks.js';
import { encode } from '../../src/io/codec.js';
import { TidemarkError } from '../../src/errors.js';
import { scratchDir } from '../helpers/nats.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 300);
const params = { numRuns: RUNS, seed: process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : undefined };
const scratch = scratchDir('tidemark-fuzz-');
t.teardown(() => scratch.remove());

/** Runs fn; passes when it returns or throws a TidemarkError, fails on any other exception. */
const typedOnly = (fn: () => unknown): boolean => {
  try {
    fn();
    return true;
  } catch (e) {
    if (e instanceof TidemarkError) return true;
    throw e;
  }
};
const enc = new TextEncoder();

// Text that often looks like the real thing: prefixes, units, separators, numbers, unicode.
const specLike = fc.oneof(
  fc.string(),
  fc.string({ unit: 'grapheme' }),
  fc.tuple(fc.constantFrom('tumbling:', 'sliding:', 'session:', 'jsonl:', 'nats:', 'jetstream:', 'keyword:', 'hashtags,', 'all,', ''), fc.oneof(fc.string(), fc.double().map(String), fc.nat().map(String)), fc.constantFrom('ms', 's', 'm', 'h', 'd', ',', ':', '', 'x', '.5', '1e400')).map((p) => p.join('')),
);

const postLike = fc.oneof(
  fc.uint8Array({ maxLength: 300 }),
  fc.jsonValue().map((v) => enc.encode(JSON.stringify(v) ?? '')),
  fc.record({ id: fc.oneof(fc.string(), fc.anything()), ts: fc.oneof(fc.integer(), fc.double(), fc.string(), fc.date({ noInvalidDate: false }).map((d) => (Number.isNaN(d.getTime()) ? 'x' : d.toISOString())), fc.anything()), text: fc.oneof(fc.string(), fc.anything()), lang: fc.oneof(fc.constantFrom('en', 'es', 'fr'), fc.anything()), user: fc.anything() }, { requiredKeys: [] }).map((o) => enc.encode(JSON.stringify(o) ?? '')),
);

t.test('the post decoder: every input is a post or a dead-letter reason', async (t) => {
  fc.assert(
    fc.property(postLike, (bytes) => {
      const r = parsePost(bytes);
      return r.ok ? typeof r.post.id === 'string' && Number.isSafeInteger(r.post.ts) : typeof r.reason === 'string' && r.reason.length > 0;
    }),
    params,
  );
  fc.assert(fc.property(fc.anything(), (v) => ['number', 'string'].includes(typeof parseEventTime(v))), params);
  t.pass(`${RUNS} cases per property`);
});

t.test('the internal message decoder: garbage and tampering are refused, sealed messages open, nothing throws', async (t) => {
  const key = RunKey.create();
  const subject = 'tidemark.fuzz.part.0';
  const values = fc.anything({ withBigInt: false, withMap: false, withSet: false, withTypedArray: true, withDate: true });
  // Arbitrary bytes and msgpack of arbitrary values: refused with a reason.
  fc.assert(
    fc.property(fc.oneof(fc.uint8Array({ maxLength: 512 }), values.map((v) => encode(v))), (bytes) => {
      readEnvelope(bytes);
      const o = new Opener(key, subject, () => true).open(bytes);
      return !o.ok && o.reason.length > 0;
    }),
    params,
  );
  // A sealed message opens to what was sealed; any flipped byte makes it refused.
  fc.assert(
    fc.property(values, fc.nat(), fc.integer({ min: 1, max: 255 }), (body, at, flip) => {
      const sealed = new Sealer(key, SENDER.source).seal(subject, body);
      const opened = new Opener(key, subject, (f) => f === SENDER.source).open(sealed);
      if (!opened.ok) return false;
      const damaged = sealed.slice();
      damaged[at % damaged.length]! ^= flip;
      return !new Opener(key, subject, () => true).open(damaged).ok;
    }),
    params,
  );
  // The shape checks take any value.
  fc.assert(
    fc.property(values, fc.integer({ min: -3, max: 8 }), (v, from) => {
      for (const r of [checkPartitionMsg(v), checkOutMsg(v, from), checkCreditMsg(v), checkQueryRequest(v)]) if (!r.ok && !r.reason) return false;
      return true;
    }),
    params,
  );
  // Shape checks on message-like objects (right type tag, fuzzed fields).
  const tagged = fc.record({ t: fc.constantFrom('batch', 'barrier', 'end', 'out', 'source-barrier', 'credit', 'checkpointed', 'x'), n: fc.anything(), cp: fc.anything(), ops: fc.oneof(fc.array(fc.oneof(fc.double(), fc.record({ k: fc.anything(), id: fc.anything(), ts: fc.anything(), s: fc.anything() }))), fc.anything()), from: fc.integer({ min: -2, max: 3 }), results: fc.anything(), late: fc.anything(), dead: fc.anything(), full: fc.anything() }, { requiredKeys: ['t'] });
  fc.assert(fc.property(tagged, (v) => [checkPartitionMsg(v), checkOutMsg(v, v.from ?? 0), checkCreditMsg(v)].every((r) => r.ok || r.reason.length > 0)), params);
  t.pass(`${RUNS} cases per property`);
});

t.test('the duration, window, key and sink parsers: a value or a TidemarkError', async (t) => {
  fc.assert(
    fc.property(specLike, (s) => typedOnly(() => parseDuration(s, '--x')) && typedOnly(() => parseWindowSpec(s)) && typedOnly(() => parseKeySpec(s)) && typedOnly(() => parseSinkSpec(s, '--sink'))),
    params,
  );
  t.pass(`${RUNS} cases`);
});

t.test('flags and the config loader: a configuration or a TidemarkError', async (t) => {
  const flagNames = RUN_OPTIONS.map((d) => d.flag);
  const argv = fc.array(fc.oneof(fc.constantFrom(...flagNames), fc.constantFrom(...flagNames).map((f) => `${f}=`), specLike, fc.constantFrom('--drain', '--window', 'tumbling:1m', '--', '--=x')), { maxLength: 8 });
  fc.assert(fc.property(argv, (a) => typedOnly(() => resolveJobConfig(parseFlags(a, RUN_OPTIONS).opts))), params);
  const file = join(scratch.dir, 'job.json');
  const optionKeys = RUN_OPTIONS.map((d) => d.flag.slice(2));
  const configJson = fc.oneof(
    fc.jsonValue(),
    fc.dictionary(fc.oneof(fc.constantFrom(...optionKeys), fc.string()), fc.oneof(fc.jsonValue(), specLike, fc.array(specLike))),
    fc.string(),
  );
  fc.assert(
    fc.property(configJson, fc.boolean(), (v, raw) => {
      writeFileSync(file, raw && typeof v === 'string' ? v : JSON.stringify(v) ?? '');
      return typedOnly(() => resolveJobConfig({ config: file }));
    }),
    params,
  );
  t.pass(`${RUNS} cases per property`);
});
