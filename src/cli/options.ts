// Flag helpers shared by the commands: the version, an option's value with its default, whole
// numbers, and `--help` output.

import { readFileSync } from 'node:fs';
import { TidemarkError } from '../errors.js';
import { optionHelp, type OptionDef, type RawOptions } from '../option-table.js';

export const VERSION = (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;


export const get = (o: RawOptions, table: OptionDef[], key: string): string | undefined => {
  const v = o[key];
  if (v === undefined) return table.find((d) => d.key === key)?.default;
  return Array.isArray(v) ? v[v.length - 1] : String(v);
};

export function intFlag(o: RawOptions, table: OptionDef[], key: string, min = 0): number | undefined {
  const v = get(o, table, key);
  if (v === undefined) return undefined;
  const flag = table.find((d) => d.key === key)!.flag;
  if (!/^\d+$/.test(v) || Number(v) < min) throw new TidemarkError('BAD_FLAG', `${flag}: "${v}" is not accepted; a whole number ≥ ${min}`);
  return Number(v);
}

export function help(usage: string, table: OptionDef[]): number {
  process.stdout.write(`Usage: tidemark ${usage}\n\nOptions:\n${optionHelp(table)}\n`);
  return 0;
}
