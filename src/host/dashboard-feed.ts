// What the live dashboard knows about a running job, from NATS alone (so it runs on any machine that
// reaches the server): window results from the job's results sink, late records and dead letters with
// their reasons, the `status` endpoint polled every second, and the alert rules evaluated on every
// result. It hands new results on in batches, each numbered so a page that reconnects says where it was.

import { randomBytes } from 'node:crypto';
import { DeliverPolicy, type ConsumerMessages, type NatsConnection, type Subscription } from 'nats';
import type { Logger } from '../log.js';
import type { DeadLetterRecord, LateRecord, ResultRecord } from '../runtime/records.js';
import { parseSinkSpec, type SinkSpec } from '../io/sink-spec.js';
import { subjectsFor } from '../io/subjects.js';
import { callEndpoint, type StatusAnswer } from '../io/service-request.js';
import { AlertBook, type AlertMessage, type AlertRule } from './alerts.js';

/** A result as the feed numbers it: the stream sequence (JetStream sink) or the feed's own count. */
export interface Numbered {
  seq: number;
  record: ResultRecord;
}

/** Where the feed reads results from. */
export type ResultSource = { kind: 'jetstream'; stream: string } | { kind: 'nats'; subject: string };

export interface StatusSnapshot {
  available: boolean;
  at: number;
  /** The `status` answer, when the job answered. */
  status?: StatusAnswer;
  /** Posts per second over the last poll interval. */
  inputRate?: number;
  error?: string;
}

export type FeedEvent =
  | { type: 'results'; lastSeq: number; records: Numbered[] }
  | { type: 'status'; status: StatusSnapshot }
  | { type: 'late'; records: LateRecord[] }
  | { type: 'dlq'; records: DeadLetterRecord[] }
  | { type: 'alert'; alert: AlertMessage }
  | { type: 'rules'; rules: AlertRule[] }
  | { type: 'source'; source: ResultSource };

export interface FeedOptions {
  nc: NatsConnection;
  job: string;
  log: Logger;
  /** Windows kept per key (the latest revision of each). */
  historyPerKey?: number;
  /** Results kept for pages that reconnect (replayed after their last event id). */
  ringSize?: number;
  /** How far back to read the results stream at start, in ms. */
  sinceMs?: number;
  statusIntervalMs?: number;
  /** Time between result batches handed to listeners. */
  batchMs?: number;
}

const EXAMPLES = 8;
/** Results heard on the default subject before the job first answered, at most. */
const EARLY_MAX = 100_000;
const dec = new TextDecoder();
const enc = new TextEncoder();

const windowKey = (r: { key: string; window: { start: number; end: number } }): string => `${r.key}\u0000${r.window.start}\u0000${r.window.end}`;

/** Results kept by window (latest revision), bounded per key, and a ring of recent numbered results. */
export class ResultStore {
  /** window → latest revision */
  readonly latest = new Map<string, ResultRecord>();
  private readonly byKey = new Map<string, string[]>();
  private readonly seen = new Set<string>();
  readonly ring: Numbered[] = [];

  constructor(
    private readonly historyPerKey: number,
    private readonly ringSize: number,
    private readonly onEvict: (r: ResultRecord) => void = () => undefined,
  ) {}

  /** Adds a result; false when its id was seen already (a replay after a job restart). */
  add(n: Numbered): boolean {
    const r = n.record;
    if (this.seen.has(r.id)) return false;
    this.seen.add(r.id);
    // Ids are remembered longer than windows are kept (a replay of an evicted window is still one),
    // oldest first out: a Set iterates in insertion order.
    if (this.seen.size > this.ringSize * 2) {
      for (const id of this.seen) {
        this.seen.delete(id);
        if (this.seen.size <= this.ringSize * 2) break;
      }
    }
    this.ring.push(n);
    if (this.ring.length > this.ringSize * 1.25) this.ring.splice(0, this.ring.length - this.ringSize);
    const wk = windowKey(r);
    const prev = this.latest.get(wk);
    if (!prev || prev.revision <= r.revision || r.final) this.latest.set(wk, r);
    if (!prev) {
      let list = this.byKey.get(r.key);
      if (!list) this.byKey.set(r.key, (list = []));
      list.push(wk);
      if (list.length > this.historyPerKey) {
        // Oldest by window start: results mostly arrive in window order, so the head usually is it.
        list.sort((a, b) => this.latest.get(a)!.window.start - this.latest.get(b)!.window.start);
        for (const old of list.splice(0, list.length - this.historyPerKey)) {
          const gone = this.latest.get(old)!;
          this.latest.delete(old);
          this.onEvict(gone);
        }
      }
    }
    return true;
  }

  /** Ring entries after `seq`, or undefined when the ring no longer reaches back that far. */
  after(seq: number): Numbered[] | undefined {
    const first = this.ring[0];
    if (first === undefined) return seq >= 0 ? [] : undefined;
    if (seq < first.seq - 1) return undefined;
    let lo = 0;
    let hi = this.ring.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.ring[mid]!.seq <= seq) lo = mid + 1;
      else hi = mid;
    }
    return this.ring.slice(lo);
  }

  /** The latest revision of every window held, oldest window first. */
  snapshot(): ResultRecord[] {
    return [...this.latest.values()].sort((a, b) => a.window.start - b.window.start || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** The newest window of each key (the dashboard's "latest results"). */
  newestPerKey(): ResultRecord[] {
    const out = new Map<string, ResultRecord>();
    for (const r of this.latest.values()) {
      const o = out.get(r.key);
      if (!o || o.window.start < r.window.start) out.set(r.key, r);
    }
    return [...out.values()];
  }
}

/** The NATS side of the dashboard. */
export class DashboardFeed {
  readonly store: ResultStore;
  readonly alerts: AlertBook;
  /** Tag of the event ids: stable for a JetStream source (its sequence), per feed for a core subject. */
  tag = `n-${randomBytes(4).toString('hex')}`;
  source: ResultSource | undefined;
  status: StatusSnapshot = { available: false, at: Date.now(), error: 'waiting for the job to answer' };
  readonly lateExamples: LateRecord[] = [];
  readonly dlqExamples: DeadLetterRecord[] = [];
  readonly recentAlerts: AlertMessage[] = [];
  private readonly listeners = new Set<(e: FeedEvent) => void>();
  private pending: Numbered[] = [];
  private localSeq = 0;
  private lastSeq = 0;
  private timers: NodeJS.Timeout[] = [];
  private subs: Subscription[] = [];
  private consumers: ConsumerMessages[] = [];
  private started = false;
  private closed = false;
  private lastPosts?: { at: number; posts: number };
  private readonly subjects;
  private early?: { subject: string; data: Uint8Array[]; handle: (d: Uint8Array) => void; sub: Subscription };
  private sourceKnown!: () => void;
  /** Resolves once the results source (and with it the event-id tag) is known. */
  readonly ready = new Promise<void>((resolve) => (this.sourceKnown = resolve));

  constructor(private readonly o: FeedOptions) {
    this.subjects = subjectsFor(o.job);
    this.alerts = new AlertBook(o.job);
    this.store = new ResultStore(o.historyPerKey ?? 30, o.ringSize ?? 200_000, (r) => this.alerts.forgetWindow(r.key, r.window.start, r.window.end));
  }

  get job(): string {
    return this.o.job;
  }

  /** Sequence of the newest result handed on. */
  get seq(): number {
    return this.lastSeq;
  }

  on(fn: (e: FeedEvent) => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  private emit(e: FeedEvent): void {
    for (const fn of this.listeners) fn(e);
  }

  /**
   * Starts polling the job; the result and example sources are set up at its first answer. Until then
   * the job's default results subject is heard already (core NATS keeps no history): what arrives there
   * is kept when the job turns out to write to it and no JetStream sink.
   */
  start(): void {
    const early: NonNullable<DashboardFeed['early']> = {
      subject: this.subjects.results,
      data: [],
      handle: (d) => void (early.data.length < EARLY_MAX && early.data.push(d)),
      sub: this.o.nc.subscribe(this.subjects.results, { callback: (_e, m) => early.handle(m.data) }),
    };
    this.early = early;
    const poll = (): void => {
      if (this.closed) return;
      void this.pollStatus().finally(() => {
        if (!this.closed) this.timers.push(setTimeout(poll, this.o.statusIntervalMs ?? 1000));
      });
    };
    poll();
    const flush = setInterval(() => this.flush(), this.o.batchMs ?? 100);
    this.timers.push(flush);
  }

  private async pollStatus(): Promise<void> {
    const at = Date.now();
    try {
      const status = (await callEndpoint(this.o.nc, this.o.job, 'status', {})) as StatusAnswer;
      let inputRate: number | undefined;
      if (this.lastPosts && at > this.lastPosts.at && status.postsIn >= this.lastPosts.posts) inputRate = ((status.postsIn - this.lastPosts.posts) * 1000) / (at - this.lastPosts.at);
      this.lastPosts = { at, posts: status.postsIn };
      this.status = { available: true, at, status, ...(inputRate !== undefined ? { inputRate } : {}) };
      if (!this.started) {
        this.started = true;
        await this.connectSources(status).catch((e: unknown) => {
          this.started = false;
          this.o.log.warn({ err: (e as Error).message }, 'dashboard: cannot read the job\'s outputs yet');
        });
      }
    } catch (e) {
      this.lastPosts = undefined;
      this.status = { available: false, at, error: (e as Error).message };
    }
    this.emit({ type: 'status', status: this.status });
  }

  private async connectSources(status: StatusAnswer): Promise<void> {
    const sinks = status.config.sinks.map((s) => parseSinkSpec(s, 'sink'));
    const js = sinks.find((s): s is Extract<SinkSpec, { kind: 'jetstream' }> => s.kind === 'jetstream');
    const core = sinks.find((s): s is Extract<SinkSpec, { kind: 'nats' }> => s.kind === 'nats');
    const cfg = status.config as StatusAnswer['config'] & { lateSink?: string; dlqSink?: string };
    if (js) {
      // Exactly once (Nats-Msg-Id) and replayable: pages catch up by stream sequence.
      this.source = { kind: 'jetstream', stream: js.stream };
      this.tag = `js-${js.stream}`;
      const since = new Date(Date.now() - (this.o.sinceMs ?? 3_600_000)).toISOString();
      this.consumeStream(js.stream, { deliver_policy: DeliverPolicy.StartTime, opt_start_time: since }, (data, seq) => this.receive(JSON.parse(dec.decode(data)) as ResultRecord, seq));
    } else if (core) {
      this.source = { kind: 'nats', subject: core.subject };
      const early = this.early?.subject === core.subject ? this.early : undefined;
      this.subs.push(this.o.nc.subscribe(core.subject, { callback: (_e, m) => this.receiveJson(m.data) }));
      if (early) {
        // Both subscriptions hear the subject until the server has the new one (ids deduplicate).
        for (const d of early.data) this.receiveJson(d);
        early.handle = (d) => this.receiveJson(d);
        await this.o.nc.flush();
      }
    } else {
      throw new Error(`job "${this.o.job}" writes results only to ${status.config.sinks.join(', ')}; the dashboard reads a nats: or jetstream: sink`);
    }
    this.early?.sub.unsubscribe();
    this.early = undefined;
    this.sourceKnown();
    this.emit({ type: 'source', source: this.source });
    this.o.log.info({ source: this.source }, 'dashboard: reading results');
    this.examplesFrom(cfg.lateSink, (d) => this.keep(this.lateExamples, JSON.parse(dec.decode(d)) as LateRecord, 'late'));
    this.examplesFrom(cfg.dlqSink, (d) => this.keep(this.dlqExamples, JSON.parse(dec.decode(d)) as DeadLetterRecord, 'dlq'));
  }

  private receiveJson(data: Uint8Array): void {
    let r: ResultRecord;
    try {
      r = JSON.parse(dec.decode(data)) as ResultRecord;
    } catch {
      return;
    }
    this.receive(r, ++this.localSeq);
  }

  private receive(record: ResultRecord, seq: number): void {
    if (typeof record?.id !== 'string' || typeof record.key !== 'string' || !record.window) return;
    const n = { seq, record };
    if (!this.store.add(n)) return;
    this.pending.push(n);
    for (const a of this.alerts.evaluate(record)) this.fire(a);
  }

  private consumeStream(stream: string, opts: { deliver_policy: DeliverPolicy; opt_start_time?: string; opt_start_seq?: number }, each: (data: Uint8Array, seq: number) => void): void {
    void (async () => {
      const consumer = await this.o.nc.jetstream().consumers.get(stream, opts);
      const msgs = await consumer.consume();
      this.consumers.push(msgs);
      for await (const m of msgs) {
        try {
          each(m.data, m.seq);
        } catch (e) {
          this.o.log.debug({ err: (e as Error).message, stream, seq: m.seq }, 'dashboard: unreadable message skipped');
        }
      }
    })().catch((e: unknown) => {
      if (!this.closed) this.o.log.warn({ err: (e as Error).message, stream }, 'dashboard: stream consumer stopped');
    });
  }

  private examplesFrom(specText: string | undefined, each: (data: Uint8Array) => void): void {
    if (!specText) return;
    const spec = parseSinkSpec(specText, 'sink');
    const guarded = (d: Uint8Array): void => {
      try {
        each(d);
      } catch {
        /* not JSON: not an example */
      }
    };
    if (spec.kind === 'nats') this.subs.push(this.o.nc.subscribe(spec.subject, { callback: (_e, m) => guarded(m.data) }));
    else if (spec.kind === 'jetstream') this.consumeStream(spec.stream, { deliver_policy: DeliverPolicy.New }, guarded);
    // jsonl: a file on the job's machine; no examples (the counts come from `status`).
  }

  private keep<T>(list: T[], r: T, type: 'late' | 'dlq'): void {
    list.unshift(r);
    if (list.length > EXAMPLES) list.length = EXAMPLES;
    if (type === 'late') this.emit({ type, records: [r as LateRecord] });
    else this.emit({ type, records: [r as DeadLetterRecord] });
  }

  private fire(a: AlertMessage): void {
    this.o.nc.publish(this.subjects.alerts, enc.encode(JSON.stringify(a)));
    this.recentAlerts.unshift(a);
    if (this.recentAlerts.length > 50) this.recentAlerts.length = 50;
    this.emit({ type: 'alert', alert: a });
  }

  /** Adds a rule and evaluates it against each key's newest window at once. */
  addRule(body: unknown): AlertRule {
    const rule = this.alerts.add(body);
    this.emit({ type: 'rules', rules: this.alerts.list() });
    for (const r of this.store.newestPerKey()) for (const a of this.alerts.evaluate(r, rule)) this.fire(a);
    return rule;
  }

  removeRule(id: string): boolean {
    const ok = this.alerts.remove(id);
    if (ok) this.emit({ type: 'rules', rules: this.alerts.list() });
    return ok;
  }

  /** Hands the results received since the last batch on. */
  flush(): void {
    if (this.pending.length === 0) return;
    const records = this.pending;
    this.pending = [];
    this.lastSeq = records[records.length - 1]!.seq;
    this.emit({ type: 'results', lastSeq: this.lastSeq, records });
  }

  /** A key's windows as the `query` endpoint answers (open ones included). */
  query(key: string): Promise<unknown> {
    return callEndpoint(this.o.nc, this.o.job, 'query', { key });
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const t of this.timers) clearTimeout(t);
    for (const s of this.subs) s.unsubscribe();
    this.early?.sub.unsubscribe();
    for (const c of this.consumers) await c.close().catch(() => undefined);
    this.listeners.clear();
  }
}
