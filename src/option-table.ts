// An option table (flag, key, kind, help, default) and how argv is read against it: shared by the
// command line, `tidemark run`'s job options and the NATS security flags.

import { TidemarkError } from './errors.js';

export type Kind = 'string' | 'dur' | 'int' | 'bool' | 'list';

export interface OptionDef {
  flag: string;
  key: string;
  kind: Kind;
  arg?: string;
  help: string;
  default?: string;
  repeat?: boolean;
}

export type RawOptions = Record<string, string | string[] | boolean>;

/** Splits argv into options (by the table) and positional arguments; unknown flags are errors. */
export function parseFlags(argv: readonly string[], table: readonly OptionDef[]): { opts: RawOptions; positional: string[] } {
  const opts: RawOptions = {};
  const positional: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (!a.startsWith('--')) {
      positional.push(a);
      continue;
    }
    const eq = a.indexOf('=');
    const name = eq > 0 ? a.slice(0, eq) : a;
    const def = table.find((d) => d.flag === name);
    if (!def) {
      const known = table.map((d) => d.flag).join(', ');
      throw new TidemarkError('BAD_FLAG', `${name}: unknown option; accepted: ${known}`);
    }
    let value: string | boolean;
    if (def.kind === 'bool') {
      if (eq > 0) throw new TidemarkError('BAD_FLAG', `${name}: takes no value`);
      value = true;
    } else if (eq > 0) value = a.slice(eq + 1);
    else {
      const next = argv[i + 1];
      if (next === undefined || next.startsWith('--')) throw new TidemarkError('BAD_FLAG', `${name}: needs a value (${def.arg ?? 'VALUE'})`);
      value = next;
      i++;
    }
    if (def.repeat) opts[def.key] = [...((opts[def.key] as string[] | undefined) ?? []), String(value)];
    else opts[def.key] = value;
  }
  return { opts, positional };
}

/** Help text for a table of options. */
export function optionHelp(table: readonly OptionDef[]): string {
  return table
    .map((d) => {
      const left = `  ${d.flag}${d.arg ? ` ${d.arg}` : ''}`;
      return `${left.padEnd(34)} ${d.help}${d.default !== undefined ? ` (default: ${d.default})` : ''}`;
    })
    .join('\n');
}
