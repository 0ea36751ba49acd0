// What the coordinator and member roles of a group (host/coordinator.ts, host/member.ts) share of the
// process that plays them (host/group.ts): its connection, configuration, identity and stop signal.

import { hostname } from 'node:os';
import type { NatsConnection } from 'nats';
import type { JobConfig } from '../runtime/job-config.js';
import type { Logger } from '../log.js';
import type { Job } from '../actors/job.js';
import type { GroupStore, MemberInfo } from '../io/group-store.js';

/** What the process around the group does with a generation's job on the coordinator. */
export interface GroupHooks {
  /** The coordinator's job of a new generation is running here; returns what undoes it (the service). */
  started(job: Job): Promise<() => Promise<void>>;
}

/** One process of a group, as its roles see it. */
export interface RoleContext {
  readonly nc: NatsConnection;
  readonly cfg: JobConfig;
  readonly log: Logger;
  readonly me: MemberInfo;
  readonly hooks: GroupHooks;
  /** SIGTERM was asked for */
  readonly stopping: boolean;
  readonly stopSignal: Promise<void>;
  /** Members that did not answer a generation's start: left out of the next one. */
  readonly suspects: Set<string>;
  /** The coordinator's job while this process coordinates (status, metrics). */
  job?: Job;
  /** Called when the NATS connection drops (the coordinator restarts its generation). */
  lostConnection: () => void;
  /** Live members that can host actors: this one first, then by id. */
  liveMembers(store: GroupStore): Promise<MemberInfo[]>;
}

/** True when `info` names a process on this host that no longer runs (a `kill -9`ed instance). */
export function deadHere(info: { host: string; pid: number }): boolean {
  if (info.host !== hostname() || info.pid === process.pid) return false;
  try {
    process.kill(info.pid, 0);
    return false;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'ESRCH';
  }
}

/** The coordinator lease's value. */
export interface CoordinatorLease {
  id: string;
  host: string;
  pid: number;
}

/** Why the coordinator lease `holder` may be taken over (its process is dead here, or it stopped renewing), or undefined. */
export function coordinatorGone(store: GroupStore, holder: { value: CoordinatorLease; revision: number }): string | undefined {
  if (deadHere(holder.value)) return 'a dead instance';
  if (store.observer.stale('coordinator', holder.revision)) return `an instance that stopped renewing its lease for ${store.ttl} ms`;
  return undefined;
}
