// Alert rules of the live dashboard: "average below −1 with at least 50 posts", for one key or any.
// Pure: validation and evaluation against window results; the dashboard feed publishes what fires.

import type { ResultRecord } from '../runtime/records.js';
import type { SentimentResult } from '../runtime/sentiment-job.js';

/** A result of the sentiment job (the fields the dashboard draws and alerts on). */
export type SentimentRecord = ResultRecord & SentimentResult;

/** True when a result carries the sentiment job's fields (a user job's may not). */
export const isSentiment = (r: ResultRecord): r is SentimentRecord =>
  typeof r.count === 'number' && typeof r.avgScore === 'number' && typeof r.positive === 'number' && typeof r.negative === 'number' && typeof r.neutral === 'number';

export interface AlertRule {
  id: string;
  /** The key the rule watches; absent: every key. */
  key?: string;
  op: 'below' | 'above';
  /** avgScore threshold */
  threshold: number;
  /** Fewest posts in the window for the rule to apply. */
  minCount: number;
}

/** What is published on `tidemark.<job>.alerts` when a rule fires: once per rule and window. */
export interface AlertMessage {
  id: string;
  job: string;
  rule: AlertRule;
  key: string;
  window: { start: number; end: number };
  avgScore: number;
  count: number;
  positive: number;
  negative: number;
  neutral: number;
  revision: number;
  final: boolean;
  resultId: string;
  firedAt: string;
}

/** Rule text for people: `avg below -1 with ≥ 50 posts (#nats)`. */
export function describeRule(r: AlertRule): string {
  return `average ${r.op} ${r.threshold} with at least ${r.minCount} post${r.minCount === 1 ? '' : 's'}${r.key === undefined ? ', any key' : `, key ${r.key}`}`;
}

const FIELDS = ['key', 'op', 'threshold', 'minCount'];

/** Validates a rule sent by the page (JSON body); throws an Error naming the field and what is accepted. */
export function parseRule(body: unknown, id: string): AlertRule {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new Error('an alert rule is a JSON object {op, threshold, minCount, key?}');
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (!FIELDS.includes(k)) throw new Error(`unknown field "${k}"; accepted: ${FIELDS.join(', ')}`);
  if (b.op !== 'below' && b.op !== 'above') throw new Error('"op" must be "below" or "above"');
  if (typeof b.threshold !== 'number' || !Number.isFinite(b.threshold)) throw new Error('"threshold" must be a finite number (an average AFINN score, e.g. -1)');
  const minCount = b.minCount ?? 1;
  if (typeof minCount !== 'number' || !Number.isInteger(minCount) || minCount < 1 || minCount > 1e9) throw new Error('"minCount" must be an integer from 1 to 1000000000');
  const rule: AlertRule = { id, op: b.op, threshold: b.threshold, minCount };
  if (b.key !== undefined && b.key !== null && b.key !== '') {
    if (typeof b.key !== 'string' || b.key.length > 1024) throw new Error('"key" must be a string (or absent for every key)');
    rule.key = b.key;
  }
  return rule;
}

/** True when the result meets the rule. */
export function ruleMatches(rule: AlertRule, r: ResultRecord): r is SentimentRecord {
  if (!isSentiment(r)) return false;
  if (rule.key !== undefined && rule.key !== r.key) return false;
  if (r.count < rule.minCount) return false;
  return rule.op === 'below' ? r.avgScore < rule.threshold : r.avgScore > rule.threshold;
}

/** Rules and which (rule, window) pairs have fired; each pair fires once, at the first revision that meets it. */
export class AlertBook {
  private readonly rules = new Map<string, AlertRule>();
  private readonly fired = new Set<string>();
  private next = 1;

  constructor(private readonly job: string) {}

  list(): AlertRule[] {
    return [...this.rules.values()];
  }

  add(body: unknown): AlertRule {
    const rule = parseRule(body, `r${this.next}`);
    this.next++;
    this.rules.set(rule.id, rule);
    return rule;
  }

  remove(id: string): boolean {
    for (const f of this.fired) if (f.startsWith(`${id}|`)) this.fired.delete(f);
    return this.rules.delete(id);
  }

  /** The alerts `r` fires (against every rule, or only `only`). */
  evaluate(r: ResultRecord, only?: AlertRule, now = Date.now()): AlertMessage[] {
    const out: AlertMessage[] = [];
    for (const rule of only ? [only] : this.rules.values()) {
      if (!ruleMatches(rule, r)) continue;
      const mark = `${rule.id}|${r.key}|${r.window.start}|${r.window.end}`;
      if (this.fired.has(mark)) continue;
      this.fired.add(mark);
      out.push({
        id: `${this.job}/alert/${rule.id}/${r.key}/${r.window.start}/${r.window.end}`,
        job: this.job,
        rule,
        key: r.key,
        window: { start: r.window.start, end: r.window.end },
        avgScore: r.avgScore,
        count: r.count,
        positive: r.positive,
        negative: r.negative,
        neutral: r.neutral,
        revision: r.revision,
        final: r.final,
        resultId: r.id,
        firedAt: new Date(now).toISOString(),
      });
    }
    return out;
  }

  /** Forgets the fired marks of a window no longer held (bounded memory). */
  forgetWindow(key: string, start: number, end: number): void {
    if (this.fired.size === 0) return;
    for (const rule of this.rules.values()) this.fired.delete(`${rule.id}|${key}|${start}|${end}`);
  }
}
