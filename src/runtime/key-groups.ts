// Key groups (Flink's max parallelism): the key space is hashed into a fixed number of groups, fixed
// for the life of a job's state. A key group is the unit that moves: its windows, timers and
// checkpoint slice go together to whichever window actor owns it. Actors own contiguous ranges,
// so any number of actors from 1 to the number of groups can share a job's state.

import { hashKey } from './partitioner.js';

/** Key groups of a job unless `--key-groups` says otherwise. */
export const DEFAULT_KEY_GROUPS = 128;
/** The most key groups a job may have (checkpoint entries spell a group in four digits). */
export const MAX_KEY_GROUPS = 4096;

/** The key group of `key` among `keyGroups`. */
export const keyGroupOf = (key: string, keyGroups: number): number => hashKey(key) % keyGroups;

/** How a job's key groups are spread over its window actors. */
export interface Routing {
  keyGroups: number;
  actors: number;
}

/** The window actor that owns key group `kg` (Flink's `keyGroup * parallelism / maxParallelism`). */
export const actorOfGroup = (kg: number, r: Routing): number => Math.floor((kg * r.actors) / r.keyGroups);

/** The window actor that owns `key`. */
export const actorOfKey = (key: string, r: Routing): number => actorOfGroup(keyGroupOf(key, r.keyGroups), r);

/** The key groups window actor `a` owns: a contiguous range [from, to). */
export function groupsOf(a: number, r: Routing): { from: number; to: number } {
  // The smallest kg with floor(kg * actors / keyGroups) >= a is ceil(a * keyGroups / actors).
  const first = (x: number): number => Math.ceil((x * r.keyGroups) / r.actors);
  return { from: first(a), to: first(a + 1) };
}

/** The key of a window id (`key \0 start \0 end`; a key never holds \0 after the keys are parsed). */
export function keyOfWindowId(id: string): string {
  const end = id.lastIndexOf('\u0000');
  const mid = id.lastIndexOf('\u0000', end - 1);
  return id.slice(0, mid);
}

/** Checks a routing: 1 ≤ actors ≤ keyGroups ≤ MAX_KEY_GROUPS. */
export function routingProblem(r: Routing): string | undefined {
  if (!Number.isInteger(r.keyGroups) || r.keyGroups < 1 || r.keyGroups > MAX_KEY_GROUPS) return `--key-groups must be a whole number from 1 to ${MAX_KEY_GROUPS} (got ${r.keyGroups})`;
  if (!Number.isInteger(r.actors) || r.actors < 1 || r.actors > r.keyGroups) return `--partitions (window actors, ${r.actors}) must be from 1 to --key-groups (${r.keyGroups})`;
  return undefined;
}
