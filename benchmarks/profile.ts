// Reads the .cpuprofile files `node --cpu-prof` writes and ranks functions and packages by self
// time, so a missed target comes with what bounds it. Also runnable: node dist/benchmarks/profile.js DIR

import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { repoRoot } from './common.js';

interface CpuNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface CpuProfile {
  nodes: CpuNode[];
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileRow {
  name: string;
  selfMs: number;
  percent: number;
}

export interface ProfileSummary {
  totalMs: number;
  functions: ProfileRow[];
  /** self time grouped by where the code lives: a src/ file, a package, node internals, GC, idle */
  places: ProfileRow[];
  /** the project's own functions by inclusive time (self + callees; each sample once per function) */
  inclusive: ProfileRow[];
}

function place(url: string, name: string): string {
  if (name === '(garbage collector)') return '(garbage collector)';
  if (name === '(idle)' || name === '(program)') return name;
  if (!url) return '(native / vm)';
  const pkg = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg) return pkg[1]!;
  if (url.startsWith('node:')) return 'node internals';
  try {
    return relative(repoRoot(), new URL(url).pathname);
  } catch {
    return url;
  }
}

/** Sums self time over every profile in `dir`. */
export function summarizeProfiles(dir: string, top = 20): ProfileSummary {
  const fn = new Map<string, number>();
  const pl = new Map<string, number>();
  const inc = new Map<string, number>();
  let total = 0;
  const label = (n: CpuNode): { name: string; where: string } => {
    const { functionName, url, lineNumber } = n.callFrame;
    const where = place(url, functionName);
    return { name: `${functionName || '(anonymous)'} ${where.startsWith('(') ? '' : `${where}:${lineNumber + 1}`}`.trim(), where };
  };
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.cpuprofile'))) {
    const p = JSON.parse(readFileSync(join(dir, f), 'utf8')) as CpuProfile;
    const byId = new Map(p.nodes.map((n) => [n.id, n]));
    const parent = new Map<number, number>();
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    p.samples.forEach((id, i) => {
      const dt = (p.timeDeltas[i] ?? 0) / 1000;
      const n = byId.get(id);
      if (!n) return;
      const { name, where } = label(n);
      fn.set(name, (fn.get(name) ?? 0) + dt);
      pl.set(where, (pl.get(where) ?? 0) + dt);
      total += dt;
      const seen = new Set<string>();
      for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
        const l = label(byId.get(cur)!);
        if ((l.where.startsWith('src/') || l.where.startsWith('dist/src/')) && !seen.has(l.name)) {
          seen.add(l.name);
          inc.set(l.name, (inc.get(l.name) ?? 0) + dt);
        }
      }
    });
  }
  const rank = (m: Map<string, number>): ProfileRow[] =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([name, ms]) => ({ name, selfMs: Math.round(ms), percent: total ? Math.round((ms / total) * 1000) / 10 : 0 }));
  return { totalMs: Math.round(total), functions: rank(fn), places: rank(pl), inclusive: rank(inc) };
}

/** Plain-text rendering of a summary. */
export function formatProfile(s: ProfileSummary): string {
  const rows = (title: string, list: ProfileRow[]): string[] => [title, ...list.map((r) => `  ${String(r.percent.toFixed(1)).padStart(5)}%  ${String(r.selfMs).padStart(6)} ms  ${r.name}`)];
  return [
    `cpu profile: ${s.totalMs} ms sampled`,
    ...rows('by place (self time):', s.places),
    ...rows('top functions (self time):', s.functions),
    ...rows("the project's functions (inclusive time):", s.inclusive),
  ].join('\n');
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const dir = process.argv[2];
  if (!dir) {
    process.stderr.write('usage: node dist/benchmarks/profile.js DIR_WITH_CPUPROFILES [TOP]\n');
    process.exit(2);
  }
  process.stdout.write(formatProfile(summarizeProfiles(dir, Number(process.argv[3] ?? 25))) + '\n');
}
