// Loads a job definition: the built-in sentiment job for a key spec, or a user's ES module
// (`--job-module`), whose default export is a definition. Used by the CLI and by worker threads.

import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { existsSync } from 'node:fs';
import { TidemarkError } from '../errors.js';
import { compileJob, validateDefinition, type CompiledJob } from '../runtime/compiled-job.js';
import { sentimentJob } from '../runtime/sentiment-job.js';
import type { AnyJobDefinition } from '../runtime/job-definition.js';
import type { KeySpec } from '../runtime/keys.js';

/** What a thread needs to build the same compiled job: plain data, it crosses thread boundaries. */
export type JobSource = { stream: string } & ({ module: string } | { keys: KeySpec; examples?: boolean });

/** Imports `file` (resolved from the current directory) and validates its default export; `exports` are all of the module's. */
export async function loadJobModule(file: string, label = '--job-module'): Promise<{ definition: AnyJobDefinition; url: string; exports: Record<string, unknown> }> {
  const path = resolve(file);
  if (!/\.(m?js)$/.test(path)) throw new TidemarkError('BAD_FLAG', `${label}: "${file}" is not accepted; an ES module file ending in .js or .mjs (compile TypeScript first)`);
  if (!existsSync(path)) throw new TidemarkError('BAD_FLAG', `${label}: no file ${path}`);
  const url = pathToFileURL(path).href;
  let mod: Record<string, unknown>;
  try {
    mod = (await import(url)) as Record<string, unknown>;
  } catch (e) {
    throw new TidemarkError('BAD_JOB', `${label}: ${file} could not be loaded: ${(e as Error).message}`, { cause: e });
  }
  if (mod.default === undefined) throw new TidemarkError('BAD_JOB', `${label}: ${file} has no default export; export default defineJob({ … })`);
  return { definition: validateDefinition(mod.default, `${label} ${file}`), url, exports: mod };
}

/** Builds the compiled job a source describes. */
export async function loadCompiledJob(src: JobSource): Promise<CompiledJob> {
  if ('module' in src) {
    const mod = (await import(src.module)) as { default: unknown };
    return compileJob(validateDefinition(mod.default), { stream: src.stream });
  }
  return compileJob(sentimentJob({ keys: src.keys, examples: src.examples === true }), { stream: src.stream, lateIdField: 'postId' });
}
