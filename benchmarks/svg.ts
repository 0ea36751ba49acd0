// A self-contained SVG chart of one result file (no scripts, fonts or links): rates on a log
// scale, latency percentiles against the p99 target, and each target's value relative to it.

import type { BenchResult } from './report.js';

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

const fmt = (x: number | null, digits = 0): string =>
  x === null || !Number.isFinite(x) ? 'n/a' : x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

interface Bar {
  label: string;
  value: number | null;
  text: string;
  color: string;
}

/** Horizontal bars on a log10 axis from `lo` to `hi`; optional vertical marker. */
function logBars(x: number, y: number, w: number, labelW: number, title: string, bars: Bar[], lo: number, hi: number, marker?: { value: number; label: string }): string {
  const plotX = x + labelW;
  const plotW = w - labelW - 8;
  const l0 = Math.log10(lo);
  const l1 = Math.log10(hi);
  const sx = (v: number): number => plotX + (Math.max(0, Math.min(1, (Math.log10(Math.max(v, lo)) - l0) / (l1 - l0))) * plotW);
  const rowH = 34;
  const parts: string[] = [`<text x="${x}" y="${y}" class="t">${esc(title)}</text>`];
  const top = y + 14;
  const bottom = top + bars.length * rowH;
  for (let e = Math.ceil(l0); e <= Math.floor(l1); e++) {
    const gx = sx(10 ** e);
    parts.push(`<line x1="${gx}" y1="${top}" x2="${gx}" y2="${bottom}" class="g"/>`);
    parts.push(`<text x="${gx}" y="${bottom + 13}" class="a" text-anchor="middle">${esc(fmt(10 ** e, e < 0 ? -e : 0))}</text>`);
  }
  bars.forEach((b, i) => {
    const by = top + i * rowH + 6;
    parts.push(`<text x="${x}" y="${by + 14}" class="l">${esc(b.label)}</text>`);
    if (b.value !== null && Number.isFinite(b.value) && b.value > 0) {
      const bw = Math.max(1, sx(b.value) - plotX);
      parts.push(`<rect x="${plotX}" y="${by}" width="${bw.toFixed(1)}" height="20" fill="${b.color}" rx="2"/>`);
      const inside = bw > 70;
      parts.push(`<text x="${(inside ? plotX + bw - 4 : plotX + bw + 4).toFixed(1)}" y="${by + 14}" class="${inside ? 'vi' : 'v'}" text-anchor="${inside ? 'end' : 'start'}">${esc(b.text)}</text>`);
    } else {
      parts.push(`<text x="${plotX + 4}" y="${by + 14}" class="v">${esc(b.text)}</text>`);
    }
  });
  if (marker) {
    const mx = sx(marker.value);
    parts.push(`<line x1="${mx}" y1="${top}" x2="${mx}" y2="${bottom + 16}" class="m"/>`);
    parts.push(`<text x="${mx}" y="${bottom + 26}" class="ml" text-anchor="middle">${esc(marker.label)}</text>`);
  }
  return parts.join('\n');
}

/** Renders the chart. */
export function renderSvg(r: BenchResult): string {
  const W = 1000;
  // Tall enough for every target's bar (54 px each below the title).
  const H = Math.max(340, 90 + r.targets.length * 54 + 10);
  const blue = '#3b6ea5';
  const grey = '#8a8f98';
  const green = '#2e8b57';
  const red = '#c0392b';

  const rates: Bar[] = [
    { label: 'NATS pub+sub', value: r.transport.msgsPerSec, text: `${fmt(r.transport.msgsPerSec)} msg/s`, color: grey },
    { label: 'baseline loop', value: r.baseline.postsPerSec, text: `${fmt(r.baseline.postsPerSec)}/s`, color: grey },
    { label: 'job, ckpt off', value: r.checkpoint.offPostsPerSec, text: `${fmt(r.checkpoint.offPostsPerSec)}/s`, color: blue },
    { label: 'job, ckpt 1s', value: r.throughput.postsPerSec, text: `${fmt(r.throughput.postsPerSec)}/s`, color: blue },
  ];
  const maxRate = Math.max(10_000, ...rates.map((b) => b.value ?? 0));
  const p99Target = r.targets.find((t) => t.metric === 'latency.p99Ms')?.target ?? 20;
  const lat: Bar[] = (
    [
      ['p50', r.latency.p50Ms],
      ['p90', r.latency.p90Ms],
      ['p99', r.latency.p99Ms],
      ['p99.9', r.latency.p999Ms],
      ['max', r.latency.maxMs],
    ] as Array<[string, number]>
  ).map(([label, v]) => ({ label, value: v, text: `${fmt(v, 1)} ms`, color: label === 'p99' ? (v <= p99Target ? green : red) : blue }));
  const maxLat = Math.max(p99Target * 2, ...lat.map((b) => b.value ?? 0));

  const names: Record<string, string> = {
    'ratio.throughputToBaseline': 'job / baseline',
    'latency.p99Ms': 'p99 latency',
    'checkpoint.overheadRatio': 'ckpt on / off',
    'recovery.msFor100kWindows': 'recovery',
    'state.maxEventLoopDelayMs': 'loop stall 1M',
    'postgres.ratioToBareCopyKeyed': 'pg / COPY',
    'scaling.twoToOne': '2 procs / 1',
  };
  const tx = 700;
  const tw = 285;
  const targetParts: string[] = [`<text x="${tx}" y="70" class="t">Targets (dashed line = target)</text>`];
  const plotX = tx + 95;
  const plotW = tw - 100;
  const scale = (s: number): number => Math.max(0, Math.min(2, s)) / 2 * plotW;
  r.targets.forEach((t, i) => {
    const y = 90 + i * 54;
    const score = t.value === null ? 0 : t.op === '>=' ? t.value / t.target : t.value === 0 ? 2 : t.target / t.value;
    const valueText = t.value === null ? 'n/a' : fmt(t.value, t.value < 10 ? 3 : 0);
    targetParts.push(`<text x="${tx}" y="${y + 14}" class="l">${esc(names[t.metric] ?? t.metric)}</text>`);
    targetParts.push(`<rect x="${plotX}" y="${y}" width="${Math.max(1, scale(score)).toFixed(1)}" height="20" fill="${t.pass ? green : red}" rx="2"/>`);
    targetParts.push(`<line x1="${plotX + plotW / 2}" y1="${y - 4}" x2="${plotX + plotW / 2}" y2="${y + 24}" class="m"/>`);
    targetParts.push(`<text x="${plotX}" y="${y + 36}" class="a">${esc(`${valueText} (${t.op === '>=' ? '≥' : '≤'} ${t.target}) ${t.pass ? 'pass' : 'MISS'}`)}</text>`);
  });

  const env = r.env;
  const sub = `${r.mode} run ${r.startedAt} · node ${env.node} · nats-server ${env.natsServer} · ${env.cpuModel} × ${env.cores} · commit ${env.gitCommit.slice(0, 10)}${env.gitDirty ? ' (dirty)' : ''}`;
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="Helvetica, Arial, sans-serif">
<style>
.t{font-size:13px;font-weight:bold;fill:#222}.l{font-size:12px;fill:#333}.v{font-size:11px;fill:#222}.vi{font-size:11px;fill:#fff}
.a{font-size:10px;fill:#666}.g{stroke:#e3e3e3;stroke-width:1}.m{stroke:#222;stroke-width:1.5;stroke-dasharray:4 3}.ml{font-size:10px;fill:#222}
.h{font-size:16px;font-weight:bold;fill:#111}.s{font-size:11px;fill:#555}
</style>
<rect width="${W}" height="${H}" fill="#fff"/>
<text x="20" y="24" class="h">Tidemark benchmarks</text>
<text x="20" y="42" class="s">${esc(sub)}</text>
${logBars(20, 70, 330, 110, 'Rates, per second (log scale)', rates, 1000, 10 ** Math.ceil(Math.log10(maxRate)))}
${logBars(370, 70, 310, 50, `Result latency at ${fmt(r.latency.atPostsPerSec)} posts/s (ms, log)`, lat, 0.1, 10 ** Math.ceil(Math.log10(maxLat)), { value: p99Target, label: `p99 target ${p99Target} ms` })}
${targetParts.join('\n')}
<text x="20" y="${H - 28}" class="s">${esc(`Throughput: wall clock of tidemark run --drain over ${fmt(r.workload.posts)} posts in JetStream, ${fmt(r.workload.distinctKeys)} keys, ${r.workload.window}. Baseline: the same per-post work as one loop.`)}</text>
<text x="20" y="${H - 12}" class="s">${esc(`Latency: ${fmt(r.latency.samples)} window results, open-loop generator, from the intended send time. Recovery: restart after kill -9 to first result, ${fmt(r.recovery.windows)} windows.`)}</text>
</svg>
`;
}
