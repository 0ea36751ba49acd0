// The type test cannot pass vacuously: with its `@ts-expect-error` lines taken out, tsc reports
// an error on the line after each of them, and nowhere else.

import t from 'tap';
import { readFileSync, writeFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { ROOT } from '../helpers/nats.js';

const dir = join(ROOT, 'test', 'types');
const source = readFileSync(join(dir, 'define-job.ts'), 'utf8').split('\n');
const expected: number[] = [];
const stripped: string[] = [];
for (const line of source) {
  // The header comment names the directive too; only the directives themselves are taken out.
  if (/^\s*\/\/ @ts-expect-error/.test(line)) expected.push(stripped.length + 1);
  else stripped.push(line);
}
const copy = join(dir, `.stripped-${process.pid}.ts`);
const config = join(dir, `.tsconfig-${process.pid}.json`);
writeFileSync(copy, stripped.join('\n'));
writeFileSync(config, JSON.stringify({ extends: '../../tsconfig.test.json', include: [], files: [copy] }));
t.teardown(() => {
  rmSync(copy, { force: true });
  rmSync(config, { force: true });
});

t.test('every directive guards a real type error', async (t) => {
  t.ok(expected.length >= 7, `${expected.length} directives`);
  const r = await promisify(execFile)(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', config], { cwd: ROOT }).then(
    () => ({ stdout: '' }),
    (e: { stdout: string }) => e,
  );
  const lines = [...r.stdout.matchAll(/\.stripped-\d+\.ts\((\d+),\d+\): error TS/g)].map((m) => Number(m[1]));
  t.same([...new Set(lines)].sort((a, b) => a - b), expected, 'errors exactly on the guarded lines');
});
