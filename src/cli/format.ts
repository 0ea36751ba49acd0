// Human-readable renderings of the service's JSON answers for `tidemark status|query|explain|keys|
// checkpoint|services`: pure functions from an answer to text, so the wording is tested without NATS.

import { humanDuration } from '../runtime/duration.js';
import type { CheckpointAnswer, ExplainAnswer, InstanceRow, KeysAnswer, QueryAnswer, StatusAnswer, WireTime } from '../io/service-request.js';

/** An instant for people: ISO-8601 without milliseconds when they are zero, or ±∞. */
export function when(t: WireTime | undefined): string {
  if (t === null || t === undefined) return '−∞ (no post yet)';
  if (t === '+inf') return '+∞ (end of input)';
  return new Date(t).toISOString().replace('.000Z', 'Z');
}

/** Bytes for people. */
export function bytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Left-aligned columns (numbers right-aligned), two spaces apart. */
export function table(head: readonly string[], rows: ReadonlyArray<ReadonlyArray<string | number>>): string {
  const cells = [head.map(String), ...rows.map((r) => r.map(String))];
  const numeric = head.map((_, i) => rows.length > 0 && rows.every((r) => typeof r[i] === 'number'));
  const widths = head.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (numeric[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n');
}

const lag = (ms: number | null): string => (ms === null ? '' : ` (${humanDuration(ms)} behind now)`);

/** `tidemark status` */
export function renderStatus(s: StatusAnswer): string {
  const c = s.config;
  const input = s.input.error
    ? `${s.input.stream}: read up to sequence ${s.input.seq} (stream unreadable: ${s.input.error})`
    : `${s.input.stream} (${c.inputSubjects.join(',')}): read up to sequence ${s.input.seq} of ${s.input.lastSeq ?? '?'}, ${s.input.pending ?? '?'} pending`;
  const lines = [
    `job ${s.job}: pid ${s.pid} on ${s.host}, up ${humanDuration(s.uptimeMs)}`,
    `  window ${c.window}, watermark = max(ts) - ${c.maxOutOfOrderness}, allowed lateness ${c.allowedLateness}, emit ${c.emit}, keys ${c.keys}, ${c.partitions} window actors over ${c.keyGroups} key groups`,
    `  input      ${input}`,
    `  watermark  ${when(s.watermark)}${lag(s.watermarkLagMs)}`,
  ];
  if (s.inputs.length > 1) {
    for (const i of s.inputs) {
      const last = i.lastSeq === undefined ? '' : i.lastSeq === null ? ', no post yet' : `, last post at sequence ${i.lastSeq}`;
      const quiet = i.quietMs === undefined ? '' : `, quiet for ${humanDuration(i.quietMs)}`;
      lines.push(`    input partition ${i.partition}: ${when(i.watermark)}${lag(i.lagMs)}${i.idle ? ' (idle: not holding the watermark back)' : ''}${last}${quiet}`);
    }
    const recent = s.idleDecisions?.recent ?? [];
    if (recent.length) lines.push(`    idleness (--idle-timeout ${c.idleTimeout}): ${recent.slice(-4).map((d) => `partition ${d.partition} ${d.idle ? 'idle after' : 'active again at'} sequence ${d.seq}`).join('; ')}`);
  }
  lines.push(
    `  posts in ${s.postsIn}, results out ${s.resultsOut}, late ${s.late}, dead letters ${s.deadLetters}`,
    `  windows    ${s.windows.open} open, ${s.windows.pending} pending, ${s.windows.closedAwaitingCheckpoint} closed awaiting checkpoint`,
    `  checkpoint ${s.lastCheckpoint ? `#${s.lastCheckpoint.id}, ${humanDuration(s.lastCheckpoint.ageMs)} ago, took ${s.lastCheckpoint.ms} ms, ${bytes(s.lastCheckpoint.bytes)}` : 'none yet'}`,
  );
  if (s.group) {
    lines.push(`  group      generation ${s.group.gen}, coordinator lease epoch ${s.group.epoch}, ${s.group.instances.length} instance(s)`);
    const ranges = (kg: Array<[number, number]>): string => kg.map(([a, b]) => (b - a === 1 ? `${a}` : `${a}-${b - 1}`)).join(',') || '-';
    const partitioned = s.group.instances.some((i) => i.inputs?.length);
    const head = ['    instance', 'host', 'pid', 'roles', 'window actors', 'key groups', ...(partitioned ? ['input partitions'] : [])];
    lines.push(table(head, s.group.instances.map((i) => [`    ${i.id}`, i.host, i.pid, i.roles.join(','), i.actors.join(',') || '-', ranges(i.keyGroups), ...(partitioned ? [i.inputs?.join(',') || '-'] : [])])));
    const m = s.group.inputMerge;
    if (m) lines.push(`  merge      input read partition by partition, merged up to sequence ${m.position} (partitions complete up to ${m.complete.join(', ')}; ${m.buffered} records waiting for the slowest${m.strays.found || m.strays.deleted ? `; ${m.strays.found} on no partition's subject, ${m.strays.deleted} deleted` : ''})`);
  }
  return lines.join('\n');
}

/** `tidemark query KEY` */
export function renderQuery(q: QueryAnswer): string {
  if (q.windows.length === 0) return `key ${q.key}: no live windows (watermark ${when(q.watermark)}); try tidemark explain ${q.key}`;
  const rows = q.windows.map((w) => [when(w.window.start), when(w.window.end), w.state, w.count, w.positive, w.negative, w.neutral, w.avgScore.toFixed(2), w.state === 'open' ? `fires at ${when(w.firesAt)}` : `closes at ${when(w.closesAt)}`]);
  return `key ${q.key}, watermark ${when(q.watermark)}\n${table(['start', 'end', 'state', 'count', 'pos', 'neg', 'neu', 'avg', 'next'], rows)}`;
}

/** `tidemark keys` */
export function renderKeys(k: KeysAnswer): string {
  if (k.keys.length === 0) return `no open windows (watermark ${when(k.watermark)})`;
  return table(
    ['#', 'key', 'count', 'pos', 'neg', 'neu', 'windows'],
    k.keys.map((r, i) => [i + 1, r.key, r.count, r.positive, r.negative, r.neutral, r.windows]),
  );
}

/** `tidemark explain KEY` */
export function renderExplain(e: ExplainAnswer): string {
  const lines = [e.reason, '', `watermark ${when(e.watermark)}${e.heldBackBy !== null ? `, held back by input partition "${e.heldBackBy}"` : ''}`];
  for (const i of e.inputs) lines.push(`  input partition ${i.partition}: ${when(i.watermark)}${i.idle ? ', idle (ignored)' : ''}${i.holdsBack ? ', holds it back' : ''}`);
  for (const w of e.windows) {
    lines.push('', `[${when(w.window.start)}, ${when(w.window.end)}) ${w.state}, ${w.count} posts; fires at watermark ${when(w.firesAt)}, closes at ${when(w.closesAt)}`, `  ${w.reason}`);
  }
  return lines.join('\n');
}

/** `tidemark checkpoint` */
export function renderCheckpoint(c: CheckpointAnswer): string {
  return `savepoint ${c.id} "${c.name}" written${c.ms !== undefined ? ` in ${c.ms} ms` : ''}${c.bytes !== undefined ? `, ${bytes(c.bytes)}` : ''}${c.joined ? ' (taken for an earlier request of the same name)' : ''}`;
}

/** `tidemark services` */
export function renderServices(rows: readonly InstanceRow[], url: string): string {
  if (rows.length === 0) return `no running Tidemark instance answered $SRV.PING on ${url}`;
  const sum = (r: InstanceRow, f: 'requests' | 'errors'): number => r.endpoints.reduce((a, e) => a + (e[f] ?? 0), 0);
  return table(
    ['job', 'id', 'version', 'host', 'pid', 'started', 'endpoints', 'requests', 'errors'],
    rows.map((r) => [r.job, r.id, r.version, r.host, r.pid, r.started ?? '', r.endpoints.map((e) => e.name).join(','), sum(r, 'requests'), sum(r, 'errors')]),
  );
}
