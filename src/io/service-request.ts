// One request to a running job's micro service endpoint, and the shapes of the JSON answers:
// what the command line's clients and the dashboard feed share.

import { NatsError, type NatsConnection } from 'nats';
import { TidemarkError } from '../errors.js';
import { subjectsFor } from './subjects.js';

const REQUEST_TIMEOUT = 10_000;

/** A watermark or time as the service sends it: ms, null (−∞, none yet) or "+inf" (end of input). */
export type WireTime = number | null | '+inf';

/** An idleness decision as the service sends it. */
export interface IdleDecisionWire {
  seq: number;
  partition: string;
  idle: boolean;
  wm: WireTime;
}

export interface StatusAnswer {
  job: string;
  host: string;
  pid: number;
  config: { window: string; maxOutOfOrderness: string; allowedLateness: string; idleTimeout: string; inputPartitions?: number; emit: string; keys: string; partitions: number; keyGroups: number; inputStream: string; inputSubjects: string[]; sinks: string[]; stateDir: string };
  watermark: WireTime;
  watermarkLagMs: number | null;
  inputs: Array<{ partition: string; watermark: WireTime; idle: boolean; lagMs: number | null; lastSeq?: number | null; quietMs?: number }>;
  idleDecisions?: { recent: IdleDecisionWire[]; ahead: IdleDecisionWire[] };
  input: { stream: string; seq: number; lastSeq?: number; pending?: number; error?: string };
  postsIn: number;
  resultsOut: number;
  late: number;
  deadLetters: number;
  windows: { open: number; pending: number; closedAwaitingCheckpoint: number };
  lastCheckpoint: { id: number; ageMs: number; ms: number; bytes: number } | null;
  uptimeMs: number;
  /** a group's generation: instances, roles, window actors and key groups; null for a single instance */
  group?: {
    epoch: number;
    gen: number;
    instances: Array<{ id: string; host: string; pid: number; roles: string[]; actors: number[]; keyGroups: Array<[number, number]>; inputs?: number[] }>;
    /** a partitioned input read partition by partition: the merge's position, how far each partition's source is complete, records waiting for the slowest, and sequences no partition delivered (deleted, or on no partition's subject) */
    inputMerge?: { position: number; complete: number[]; buffered: number; strays: { deleted: number; found: number } } | null;
    /** --prepare-on-members: this generation's input batches prepared by members, by the coordinator, and sent to a member in vain */
    preparedBatches?: { remote: number; local: number; failed: number } | null;
  } | null;
}

export interface WindowAnswer {
  key: string;
  window: { start: number; end: number };
  state: string;
  count: number;
  positive: number;
  negative: number;
  neutral: number;
  avgScore: number;
  nextRevision: number;
  firesAt: number;
  closesAt: number;
}

export interface QueryAnswer {
  key: string;
  watermark: WireTime;
  windows: WindowAnswer[];
}

export interface KeysAnswer {
  top: number;
  watermark: WireTime;
  keys: Array<{ key: string; count: number; positive: number; negative: number; neutral: number; windows: number }>;
}

export interface ExplainAnswer {
  key: string;
  watermark: WireTime;
  heldBackBy: string | null;
  inputs: Array<{ partition: string; watermark: WireTime; idle: boolean; holdsBack: boolean }>;
  windows: Array<{ window: { start: number; end: number }; state: string; count: number; firesAt: number; closesAt: number; firingTs: number; reason: string }>;
  reason: string;
}

export interface CheckpointAnswer {
  id: number;
  name: string;
  /** True when an earlier request of the same name took this savepoint. */
  joined?: boolean;
  ms?: number;
  bytes?: number;
}

/** One running instance, joined from $SRV.INFO and $SRV.STATS. */
export interface InstanceRow {
  id: string;
  version: string;
  job: string;
  host: string;
  pid: string;
  started?: string;
  endpoints: Array<{ name: string; subject: string; requests?: number; errors?: number }>;
}

/** Sends one request to an endpoint of job `job`; service errors become TidemarkErrors. */
export async function callEndpoint(nc: NatsConnection, job: string, endpoint: string, body: Record<string, unknown>): Promise<unknown> {
  const subject = `${subjectsFor(job).serviceGroup}.${endpoint}`;
  let reply;
  try {
    reply = await nc.request(subject, new TextEncoder().encode(JSON.stringify(body)), { timeout: REQUEST_TIMEOUT });
  } catch (e) {
    if (e instanceof NatsError && e.code === '503') {
      throw new TidemarkError('NOT_AVAILABLE', `no running job "${job}" answers on ${subject}; start it with tidemark run --job ${job}, or check --nats and --job (tidemark services lists what runs)`);
    }
    throw new TidemarkError('NOT_AVAILABLE', `job "${job}" did not answer on ${subject}: ${(e as Error).message}`);
  }
  const err = reply.headers?.get('Nats-Service-Error');
  if (err) {
    const code = reply.headers?.get('Nats-Service-Error-Code');
    throw new TidemarkError(code === '400' ? 'BAD_FLAG' : 'NOT_AVAILABLE', `job "${job}" rejected the request: ${err}`);
  }
  return JSON.parse(new TextDecoder().decode(reply.data)) as unknown;
}
