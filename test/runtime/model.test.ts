// The implementation (runInMemory) against the brute-force reference model, on hand-written
// cases that read like DESIGN.md §3 and on many seeded random streams.

import t, { type Test } from 'tap';
import { isDeepStrictEqual } from 'node:util';
import { runInMemory } from '../../src/runtime/pipeline.js';
import { compileJob } from '../../src/runtime/compiled-job.js';
import { sentimentJob } from '../../src/runtime/sentiment-job.js';
import { referenceRun, ruleCounts, type RefConfig, type Result, type Late } from '../helpers/reference.js';
import { genStream, KEYWORDS } from '../helpers/streams.js';

type Run = { results: Result[]; late: Late[]; dead: { id: string }[] };

// ---------------------------------------------------------------------------------------------
// Helpers

const JOB = 'j';

/** A post as a raw message body. `#k` is the key most tests watch; `tick` has no key at all. */
const post = (id: string, ts: number | string, text = '#k', extra: Record<string, unknown> = {}): string =>
  JSON.stringify({ id, ts, text, ...extra });
/** A post with no key: it only moves the watermark. */
const tick = (id: string, ts: number): string => post(id, ts, 'tick');

const tumbling = (size: number): RefConfig['window'] => ({ kind: 'tumbling', size });
const sliding = (size: number, slide: number): RefConfig['window'] => ({ kind: 'sliding', size, slide });
const session = (gap: number): RefConfig['window'] => ({ kind: 'session', gap });

function config(window: RefConfig['window'], o: Partial<RefConfig> = {}): RefConfig {
  return {
    job: JOB,
    window,
    maxOutOfOrderness: 0,
    lateness: 0,
    keys: { hashtags: true, all: false, keywords: [] },
    emit: 'updates',
    ...o,
  };
}

interface Agg { count: number; positive?: number; negative?: number; neutral?: number; scoreSum?: number }

/** The result record the spec predicts; aggregates default to `count` neutral posts. */
function expectResult(key: string, start: number, end: number, agg: Agg, revision: number, final: boolean, watermark: number | null): Result {
  const positive = agg.positive ?? 0;
  const negative = agg.negative ?? 0;
  const neutral = agg.neutral ?? agg.count - positive - negative;
  const scoreSum = agg.scoreSum ?? 0;
  return {
    id: `${JOB}/${key}/${start}/${end}/${revision}`,
    job: JOB,
    key,
    window: { start, end },
    count: agg.count,
    positive,
    negative,
    neutral,
    scoreSum,
    avgScore: scoreSum / agg.count,
    revision,
    final,
    watermark,
  };
}

function expectLate(key: string, start: number, end: number, postId: string, ts: number, watermark: number): Late {
  return { id: `${JOB}/${key}/${start}/${end}/${postId}`, postId, key, window: { start, end }, ts, watermark };
}

const byId = <T extends { id: string }>(xs: readonly T[]): T[] =>
  [...xs].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : JSON.stringify(a) < JSON.stringify(b) ? -1 : 1));

function implRun(payloads: string[], cfg: RefConfig, opts: { batchSize?: number; partitions?: number; drain?: boolean; restartEvery?: number; slice?: number; preaggregate?: boolean; keyGroups?: number; rescale?: readonly number[] } = {}): Run {
  const sem = { ...cfg, compiled: compileJob(sentimentJob({ keys: cfg.keys }), { stream: 'POSTS', lateIdField: 'postId' }) };
  const out = runInMemory(payloads.map((p) => Buffer.from(p)), sem, opts);
  return out as unknown as Run;
}

/** A short description of how two record lists differ ('' when equal as sets of records). */
function diff<T extends { id: string }>(actual: readonly T[], expected: readonly T[], idsOnly = false): string {
  const a = byId(actual);
  const e = byId(expected);
  const aIds = a.map((r) => r.id);
  const eIds = e.map((r) => r.id);
  const missing = eIds.filter((id) => !aIds.includes(id));
  const extra = aIds.filter((id) => !eIds.includes(id));
  const lines: string[] = [];
  if (missing.length) lines.push(`missing ${missing.length}: ${missing.slice(0, 5).join(', ')}`);
  if (extra.length) lines.push(`extra ${extra.length}: ${extra.slice(0, 5).join(', ')}`);
  if (a.length !== e.length) lines.push(`length ${a.length} != expected ${e.length}`);
  if (!idsOnly && lines.length === 0) {
    for (let i = 0; i < a.length; i++) {
      if (!isDeepStrictEqual(a[i], e[i])) {
        lines.push(`first different record:\n  actual   ${JSON.stringify(a[i])}\n  expected ${JSON.stringify(e[i])}`);
        break;
      }
    }
  }
  return lines.join('\n');
}

function sameRun(t: Test, actual: Run, expected: Run, label: string): void {
  t.equal(diff(actual.results, expected.results), '', `${label}: results`);
  t.equal(diff(actual.late, expected.late), '', `${label}: late`);
  t.equal(diff(actual.dead, expected.dead, true), '', `${label}: dead letters`);
}

const VARIANTS = [
  { batchSize: 1, partitions: 1 },
  { batchSize: 7, partitions: 1 },
  { batchSize: 1000, partitions: 1 },
  { batchSize: 1, partitions: 3 },
  { batchSize: 7, partitions: 3 },
  { batchSize: 1000, partitions: 3 },
  // Checkpoint and restore the operators every few batches: restored windows start dormant.
  { batchSize: 5, partitions: 2, restartEvery: 1 },
  { batchSize: 3, partitions: 1, restartEvery: 4 },
  // Rescaling: each restart spreads the key groups over another number of actors.
  { batchSize: 4, partitions: 2, restartEvery: 1, keyGroups: 8, rescale: [3, 1, 4, 2] },
  { batchSize: 9, partitions: 1, restartEvery: 2, keyGroups: 3, rescale: [3, 2] },
  // Watermark steps that hand their results on one at a time.
  { batchSize: 1000, partitions: 2, slice: 1 },
];

/**
 * A hand-written case: the expectation is checked against the model and against the
 * implementation under every batching and partitioning.
 */
function spec(t: Test, name: string, payloads: string[], cfg: RefConfig, expected: { results: Result[]; late?: Late[]; dead?: number[] }, drain = true): void {
  t.test(name, async (t) => {
    const exp: Run = {
      results: expected.results,
      late: expected.late ?? [],
      dead: (expected.dead ?? []).map((seq) => ({ id: `${JOB}/dlq/${seq}` })),
    };
    sameRun(t, referenceRun(payloads, cfg, drain), exp, 'model');
    for (const v of VARIANTS) sameRun(t, implRun(payloads, cfg, { ...v, drain }), exp, `impl batch=${v.batchSize} partitions=${v.partitions}${'rescale' in v ? ` rescale ${v.rescale?.join('/')}` : ''}`);
  });
}

// ---------------------------------------------------------------------------------------------
// Hand-written cases (tumbling:10 with the window [1000, 1010) unless said otherwise)

t.test('fixed windows', async (t) => {
  spec(t, 'posts at the first and the last millisecond of a window', [
    post('a', 1000), post('b', 1009), post('c', 1010),
  ], config(tumbling(10)), {
    results: [
      expectResult('#k', 1000, 1010, { count: 2 }, 0, true, 1010),
      expectResult('#k', 1010, 1020, { count: 1 }, 0, true, null),
    ],
  });

  const landing = [
    post('a', 1000, '#k good'),
    tick('w-end-1', 1009), // W = end - 1: still open
    tick('w-end', 1010), // W = end: fires
    post('b', 1005, '#k bad'), // end <= W < end + L: late but accepted
    tick('w-end+L-1', 1014), // W = end + L - 1: still pending
    post('c', 1001), // accepted
    tick('w-end+L', 1015), // W = end + L: closes
    post('d', 1002), // too late
  ];
  spec(t, 'watermark landing on end-1, end, end+L-1, end+L (updates)', landing, config(tumbling(10), { lateness: 5 }), {
    results: [
      expectResult('#k', 1000, 1010, { count: 1, positive: 1, scoreSum: 3 }, 0, false, 1010),
      expectResult('#k', 1000, 1010, { count: 2, positive: 1, negative: 1, scoreSum: 0 }, 1, false, 1010),
      expectResult('#k', 1000, 1010, { count: 3, positive: 1, negative: 1, scoreSum: 0 }, 2, false, 1014),
      expectResult('#k', 1000, 1010, { count: 3, positive: 1, negative: 1, scoreSum: 0 }, 3, true, 1015),
    ],
    late: [expectLate('#k', 1000, 1010, 'd', 1002, 1015)],
  });
  spec(t, 'watermark landing on end-1, end, end+L-1, end+L (final)', landing, config(tumbling(10), { lateness: 5, emit: 'final' }), {
    results: [expectResult('#k', 1000, 1010, { count: 3, positive: 1, negative: 1, scoreSum: 0 }, 0, true, 1015)],
    late: [expectLate('#k', 1000, 1010, 'd', 1002, 1015)],
  });
  spec(t, 'with L = 0 the firing record is final and the next post is late', [
    post('a', 1000), tick('t', 1010), post('b', 1009),
  ], config(tumbling(10)), {
    results: [expectResult('#k', 1000, 1010, { count: 1 }, 0, true, 1010)],
    late: [expectLate('#k', 1000, 1010, 'b', 1009, 1010)],
  });

  spec(t, 'maxOutOfOrderness holds the watermark back', [
    post('a', 1000), tick('t', 1012), post('b', 1003), tick('u', 1013),
  ], config(tumbling(10), { maxOutOfOrderness: 3 }), {
    // W: 997, 1009 (b still on time), 1010 (fires)
    results: [expectResult('#k', 1000, 1010, { count: 2 }, 0, true, 1010)],
  });

  spec(t, 'each post is judged against the watermark before it, whatever the batch', [
    post('a', 1009), tick('jump', 1030), post('b', 1008),
  ], config(tumbling(10)), {
    results: [expectResult('#k', 1000, 1010, { count: 1 }, 0, true, 1030)],
    late: [expectLate('#k', 1000, 1010, 'b', 1008, 1030)],
  });

  spec(t, 'a late post may create its window: revision 0 at once, then the final record', [
    tick('t', 1012), post('a', 1003), tick('u', 1020),
  ], config(tumbling(10), { lateness: 5 }), {
    results: [
      expectResult('#k', 1000, 1010, { count: 1 }, 0, false, 1012),
      expectResult('#k', 1000, 1010, { count: 1 }, 1, true, 1020),
    ],
  });

  spec(t, 'fire and close at the same watermark (updates)', [
    post('a', 1000), tick('jump', 1100),
  ], config(tumbling(10), { lateness: 5 }), {
    results: [
      expectResult('#k', 1000, 1010, { count: 1 }, 0, false, 1100),
      expectResult('#k', 1000, 1010, { count: 1 }, 1, true, 1100),
    ],
  });
  spec(t, 'fire and close at the same watermark (final)', [
    post('a', 1000), tick('jump', 1100),
  ], config(tumbling(10), { lateness: 5, emit: 'final' }), {
    results: [expectResult('#k', 1000, 1010, { count: 1 }, 0, true, 1100)],
  });

  spec(t, 'drain: pending and open windows end with watermark null', [
    post('a', 1000), post('b', 1011), tick('t', 1012),
  ], config(tumbling(10), { lateness: 5 }), {
    results: [
      expectResult('#k', 1000, 1010, { count: 1 }, 0, false, 1011),
      expectResult('#k', 1000, 1010, { count: 1 }, 1, true, null),
      expectResult('#k', 1010, 1020, { count: 1 }, 0, false, null),
      expectResult('#k', 1010, 1020, { count: 1 }, 1, true, null),
    ],
  });
  spec(t, 'without drain, windows the watermark has not reached stay silent', [
    post('a', 1000), post('b', 1011), tick('t', 1012),
  ], config(tumbling(10), { lateness: 5 }), {
    results: [expectResult('#k', 1000, 1010, { count: 1 }, 0, false, 1011)],
  }, false);

  spec(t, 'window starts are aligned to multiples of SIZE since the epoch, also before it', [
    post('a', -10), post('b', -1), post('c', 0), post('d', 9),
  ], config(tumbling(10), { maxOutOfOrderness: 100 }), {
    results: [
      expectResult('#k', -10, 0, { count: 2 }, 0, true, null),
      expectResult('#k', 0, 10, { count: 2 }, 0, true, null),
    ],
  });

  spec(t, 'sliding: accepted by one window and too late for the other', [
    post('a', 1015), tick('t', 1025), post('b', 1012),
  ], config(sliding(20, 10)), {
    results: [
      expectResult('#k', 1000, 1020, { count: 1 }, 0, true, 1025),
      expectResult('#k', 1010, 1030, { count: 2 }, 0, true, null),
    ],
    late: [expectLate('#k', 1000, 1020, 'b', 1012, 1025)],
  });
  spec(t, 'sliding: a post on the first ms of a slide belongs to SIZE/SLIDE windows', [
    post('a', 1020), post('b', 1019),
  ], config(sliding(30, 10), { maxOutOfOrderness: 100 }), {
    results: [
      expectResult('#k', 990, 1020, { count: 1 }, 0, true, null),
      expectResult('#k', 1000, 1030, { count: 2 }, 0, true, null),
      expectResult('#k', 1010, 1040, { count: 2 }, 0, true, null),
      expectResult('#k', 1020, 1050, { count: 1 }, 0, true, null),
    ],
  });
});

t.test('sessions (gap 10)', async (t) => {
  spec(t, 'merging two sessions makes a new window; the absorbed ones emit nothing', [
    post('a', 1000), post('b', 1020), post('c', 1010),
  ], config(session(10), { maxOutOfOrderness: 100 }), {
    results: [expectResult('#k', 1000, 1030, { count: 3 }, 0, true, null)],
  });

  const life = [
    post('a', 1000, '#k good'), // S1 = [1000, 1010)
    tick('t1', 1015), // S1 fires
    tick('t2', 1025),
    post('b', 1008, '#k bad'), // extends S1: new window [1000, 1018), pending at once
    post('c', 1002), // inside [1000, 1018): update in place, next revision
    tick('t3', 1068), // W = 1018 + L: closes
    post('d', 1001), // no live session, 1011 + L <= W: late
    post('e', 1018), // touches only the closed session: a new one, pending at once
  ];
  const lifeCfg = config(session(10), { lateness: 50 });
  spec(t, 'session life: fire, merge while pending, update in place, close, late (updates)', life, lifeCfg, {
    results: [
      expectResult('#k', 1000, 1010, { count: 1, positive: 1, scoreSum: 3 }, 0, false, 1015),
      expectResult('#k', 1000, 1018, { count: 2, positive: 1, negative: 1 }, 0, false, 1025),
      expectResult('#k', 1000, 1018, { count: 3, positive: 1, negative: 1 }, 1, false, 1025),
      expectResult('#k', 1000, 1018, { count: 3, positive: 1, negative: 1 }, 2, true, 1068),
      expectResult('#k', 1018, 1028, { count: 1 }, 0, false, 1068),
      expectResult('#k', 1018, 1028, { count: 1 }, 1, true, null),
    ],
    late: [expectLate('#k', 1001, 1011, 'd', 1001, 1068)],
  });
  spec(t, 'session life (final)', life, { ...lifeCfg, emit: 'final' }, {
    results: [
      expectResult('#k', 1000, 1018, { count: 3, positive: 1, negative: 1 }, 0, true, 1068),
      expectResult('#k', 1018, 1028, { count: 1 }, 0, true, null),
    ],
    late: [expectLate('#k', 1001, 1011, 'd', 1001, 1068)],
  });

  spec(t, 'a proto-session that only touches (end == start) still merges', [
    post('a', 1010), post('b', 1000),
  ], config(session(10), { maxOutOfOrderness: 100 }), {
    results: [expectResult('#k', 1000, 1020, { count: 2 }, 0, true, null)],
  });
  spec(t, 'with L = 0 a session fires final and a touching post starts afresh', [
    post('a', 1000), tick('t', 1010), post('b', 1005),
  ], config(session(10)), {
    // b: proto [1005, 1015) touches no live session and 1015 > W = 1010: a new session
    results: [
      expectResult('#k', 1000, 1010, { count: 1 }, 0, true, 1010),
      expectResult('#k', 1005, 1015, { count: 1 }, 0, true, null),
    ],
  });
});

t.test('keys, validation, dead letters', async (t) => {
  spec(t, 'hashtags are lower-cased and counted once per post; keywords are whole words', [
    post('a', 1000, '#Nats #nats #NATS good: GOOD goodness #día_1#x'),
    post('b', 1001, 'bad_idea xgood #ÑANDÚ'),
  ], config(tumbling(10), { keys: { hashtags: true, all: true, keywords: ['good', 'bad'] } }), {
    results: [
      // a scores good + GOOD + goodness = 9; b scores bad (from bad_idea) = -3
      expectResult('#nats', 1000, 1010, { count: 1, positive: 1, scoreSum: 9 }, 0, true, null),
      expectResult('#día_1', 1000, 1010, { count: 1, positive: 1, scoreSum: 9 }, 0, true, null),
      expectResult('#x', 1000, 1010, { count: 1, positive: 1, scoreSum: 9 }, 0, true, null),
      expectResult('good', 1000, 1010, { count: 1, positive: 1, scoreSum: 9 }, 0, true, null),
      expectResult('#ñandú', 1000, 1010, { count: 1, negative: 1, scoreSum: -3 }, 0, true, null),
      expectResult('*', 1000, 1010, { count: 2, positive: 1, negative: 1, scoreSum: 6 }, 0, true, null),
    ],
  });
  spec(t, 'Spanish posts are scored with AFINN-es', [
    post('a', 1000, '#k muy bueno y excelente', { lang: 'es' }),
    post('b', 1001, '#k triste', { lang: 'es' }),
  ], config(tumbling(10)), {
    results: [expectResult('#k', 1000, 1010, { count: 2, positive: 1, negative: 1, scoreSum: 4 }, 0, true, null)],
  });
  spec(t, 'ISO-8601 timestamps', [
    post('a', '1970-01-01T00:00:01.000Z'),
    post('b', '1970-01-01T00:00:01.009'), // no offset: UTC
    post('c', '1970-01-01T02:00:01.005+02:00'),
    post('d', '1970-01-01'), // a date: midnight UTC
    post('e', '1970-01-01T00:00Z'), // no seconds
    post('f', '1970-01-01T00:00:00.5Z'), // one fraction digit: 500 ms
  ], config(tumbling(10), { maxOutOfOrderness: 5000 }), {
    results: [
      expectResult('#k', 1000, 1010, { count: 3 }, 0, true, null),
      expectResult('#k', 0, 10, { count: 2 }, 0, true, null),
      expectResult('#k', 500, 510, { count: 1 }, 0, true, null),
    ],
  });
  spec(t, 'malformed messages are dead letters and do not move the watermark', [
    post('a', 1000),
    '{not json',
    JSON.stringify([1, 2]),
    post('big-ts-bad-lang', 999999, '#k', { lang: 'fr' }),
    post('', 1001),
    post('x'.repeat(257), 1001),
    post('frac', 1001.5),
    post('bad-iso', 'yesterday'),
    post('huge', 1000, '#k ' + 'a'.repeat(65534)),
    post('null-lang', 1001, '#k', { lang: null }),
    post('b', 1001, '#k', { user: 'u', extra: true }),
    post('y'.repeat(256), 1002, '#k ' + 'é'.repeat(32766)), // 256 chars, 65535 bytes: valid
    post('😀'.repeat(128), 1003), // 256 UTF-16 units: valid
    post('😀'.repeat(129), 1003), // 258 UTF-16 units: too long
    post('num-user', 1003, '#k', { user: 5 }),
    JSON.stringify({ id: 'no-text', ts: 1003 }),
  ], config(tumbling(10)), {
    results: [expectResult('#k', 1000, 1010, { count: 4 }, 0, true, null)],
    dead: [2, 3, 4, 5, 6, 7, 8, 9, 10, 14, 15, 16],
  });
});

// ---------------------------------------------------------------------------------------------
// Seeded random streams

const SEEDS = Array.from({ length: 30 }, (_, i) => 1000 + i * 7919);

// step: typical clock advance per post; latenesses: the allowed lateness values tried. Sessions
// get a denser stream and a larger lateness so that pending sessions are updated in place and
// merged often.
// rules: the model's rules the generated streams must exercise (a guard against toothless streams).
const FIXED_RULES = ['fixed: late', 'fixed: late accepted', 'fixed: late accepted, creates window', 'fixed: fire and close at one watermark'];
const SESSION_RULES = [
  'session: late', 'session: update in place (open)', 'session: update in place (pending)', 'session: merge of 1',
  'session: merge of 2', 'session: merge absorbing a pending session', 'session: pending at once',
];
const WINDOWS: { name: string; window: RefConfig['window']; unit: number; step: number; latenesses: number[]; rules: string[] }[] = [
  { name: 'tumbling:1000', window: tumbling(1000), unit: 1000, step: 250, latenesses: [0, 1200], rules: FIXED_RULES },
  { name: 'sliding:3000,1000', window: sliding(3000, 1000), unit: 1000, step: 250, latenesses: [0, 1200], rules: FIXED_RULES },
  { name: 'session:700', window: session(700), unit: 700, step: 90, latenesses: [0, 3000], rules: SESSION_RULES },
];

for (const w of WINDOWS) {
  t.test(`random streams, ${w.name}`, async (t) => {
    const rulesBefore = { ...ruleCounts };
    let dead = 0;
    for (const seed of SEEDS) {
      const maxOutOfOrderness = [0, 400, 1500][seed % 3]!;
      const payloads = genStream(seed, { n: 150, unit: w.unit, step: w.step, maxOutOfOrderness });
      const keys = { hashtags: true, all: seed % 2 === 0, keywords: seed % 5 === 0 ? [] : KEYWORDS };
      const drain = seed % 4 !== 1;
      for (const lateness of w.latenesses) {
        for (const emit of ['updates', 'final'] as const) {
          const cfg = config(w.window, { maxOutOfOrderness, lateness, keys, emit });
          const label = `seed=${seed} M=${maxOutOfOrderness} L=${lateness} ${emit}${drain ? '' : ' no-drain'}`;
          const expected = referenceRun(payloads, cfg, drain);
          dead += expected.dead.length;
          for (const v of VARIANTS) {
            const actual = implRun(payloads, cfg, { ...v, drain });
            const d = [diff(actual.results, expected.results), diff(actual.late, expected.late), diff(actual.dead, expected.dead, true)];
            t.equal(d.filter(Boolean).join('\n'), '', `${label} batch=${v.batchSize} partitions=${v.partitions}${'restartEvery' in v ? ` restart every ${v.restartEvery}` : ''}${'slice' in v ? ` slice ${v.slice}` : ''}`);
          }
        }
      }
    }
    for (const r of w.rules) t.ok((ruleCounts[r] ?? 0) - (rulesBefore[r] ?? 0) >= 5, `the streams exercise "${r}"`);
    t.ok(dead > 0, 'the streams hold malformed messages');
  });
}
