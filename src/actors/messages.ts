// Messages the actors exchange over NATS (msgpackr-encoded). One batch message carries
// many posts; barriers travel in the same streams as data (aligned checkpoints).

import type { Op, PersistedWindow, WindowView } from '../runtime/window-operator.js';
import type { DeadLetterRecord, LateRecord, ResultRecord } from '../runtime/records.js';
import type { KeyCount } from '../runtime/top-keys.js';
import type { WatermarkState } from '../runtime/watermark.js';
import type { Prepared } from '../runtime/compiled-job.js';

/** the coordinator's merge → the source of one input partition (a group's partitioned input) */
export type InputControlMsg =
  /** read the partition from after `after`; with `end`, stop once it is complete up to `end` (drain) */
  | { t: 'open'; after: number; end?: number }
  /** the merge has taken `n` of the source's messages: it may send up to a window beyond */
  | { t: 'credit'; n: number };

/** the source of one input partition → the coordinator's merge */
export type InputMsg =
  | {
      t: 'in';
      /** message number, from 1 */
      n: number;
      /** the partition holds nothing else up to this input sequence */
      complete: number;
      /** input sequence of each record */
      q: number[];
      /** distinct subjects, and the index into them of each record's subject */
      d: string[];
      s: number[];
      /** each record, prepared (decoded, validated, keyed, scored) */
      out: Prepared[];
      /** the payloads of records that were not prepared (dead letters carry them): [index, bytes] */
      bad: Array<[number, Uint8Array]>;
    }
  /** the source cannot read its partition (the generation restarts from the last checkpoint) */
  | { t: 'fail'; why: string };

/** source → partition actor */
export type PartitionMsg =
  | { t: 'batch'; n: number; ops: Op[]; /** wall-clock ms when the source sent it (latency metric) */ at?: number }
  | { t: 'barrier'; cp: number; full: boolean }
  | { t: 'end' };

/** partition actors and source → sink actor. `from` is the partition, or -1 for the source. */
export type OutMsg =
  | {
      t: 'out';
      from: number;
      n: number;
      results: ResultRecord[];
      late: LateRecord[];
      dead: DeadLetterRecord[];
      /** `at` of the batch it answers */
      at?: number;
      /** more output of batch `n` follows (a large watermark step streams its results) */
      partial?: true;
    }
  | { t: 'barrier'; from: number; cp: number; upserts: PersistedWindow[]; deletes: string[]; windows: number }
  /** a slice of a large barrier's windows and removed ids, sent before the barrier itself */
  | { t: 'barrier-part'; from: number; cp: number; upserts: PersistedWindow[]; deletes: string[] }
  | { t: 'source-barrier'; from: -1; cp: number; seq: number; watermark: WatermarkState; full: boolean; depth: number; savepoint?: string; counters: Record<string, number> }
  | { t: 'end'; from: number };

/** sink actor → source: flow-control credit and checkpoint completion. */
export type CreditMsg =
  | { t: 'credit'; n: number }
  | { t: 'checkpointed'; cp: number; ms: number; bytes: number; entries: number; error?: string };

/** request to a partition actor for the `query` endpoint */
export interface QueryRequest {
  key?: string;
  from?: number;
  to?: number;
  /** Also rank this partition's busiest keys in open windows (the `keys` endpoint). */
  top?: number;
  /** Only count the windows by state (status, for actors on other instances). */
  counts?: boolean;
}

export interface QueryReply {
  partition: number;
  watermark: number;
  windows: WindowView[];
  keys?: KeyCount[];
  counts?: { open: number; pending: number; closedAwaitingCheckpoint: number };
  /** Set instead of windows when the answer would not fit in one NATS message. */
  error?: string;
}

/** coordinator → a window actor hosted by another instance: its key groups' windows at a generation's start */
export interface RestoreMsg {
  t: 'restore';
  gen: number;
  actor: number;
  windows: PersistedWindow[];
  watermark: number;
  last: boolean;
}

/** members → coordinator, on the job's control subject */
export type ControlMsg =
  /** listening for its actors' restore messages */
  | { t: 'hello'; gen: number; member: string; actors: number[] }
  /** actor restored and subscribed to its batches */
  | { t: 'ready'; gen: number; actor: number }
  /** a channel fault (the generation restarts from the last checkpoint), or the job's code failed (`fatal`) */
  | { t: 'fault'; gen: number; why: string; fatal?: boolean }
  /** the member stops (SIGTERM): the next generation does without it */
  | { t: 'leave'; gen: number; member: string };
