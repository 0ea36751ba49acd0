// Shape checks of the actor messages (messages.ts), applied after the envelope (io/channel.ts) has
// been verified: defence in depth, so a message of the wrong shape is refused with a reason rather
// than crashing an actor. The envelope and the contents of a batch's ops are checked apart.

import type { Checked as Check } from '../io/channel.js';
import { checkPreparedRecords } from '../runtime/compiled-job.js';
import type { ControlMsg, CreditMsg, InputControlMsg, InputMsg, OutMsg, PartitionMsg, QueryRequest, RestoreMsg } from './messages.js';

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isInt = (v: unknown): v is number => Number.isSafeInteger(v);
const isNum = (v: unknown): v is number => typeof v === 'number' && !Number.isNaN(v);
const optNum = (v: unknown): boolean => v === undefined || isNum(v);
const arrays = (o: Record<string, unknown>, ...names: string[]): boolean => names.every((n) => Array.isArray(o[n]));
const fail = (reason: string): { ok: false; reason: string } => ({ ok: false, reason });

/** The contents of a batch: posts for keys and watermark steps (kept apart from the envelope checks). */
export function checkOps(ops: readonly unknown[]): string | undefined {
  for (let i = 0; i < ops.length; i++) {
    const op = ops[i];
    if (typeof op === 'number') {
      if (Number.isNaN(op)) return `op ${i}: a watermark that is not a number`;
      continue;
    }
    if (!isObj(op) || typeof op.k !== 'string' || !('a' in op)) return `op ${i}: not a record {k,id,ts,a}, a delta {k,s,a,c} or a watermark`;
    const record = typeof op.id === 'string' && isInt(op.ts);
    const delta = isInt(op.s) && isInt(op.c);
    if (!record && !delta) return `op ${i}: not a record {k,id,ts,a}, a delta {k,s,a,c} or a watermark`;
  }
  return undefined;
}

/** A message on a partition subject (from the source). */
export function checkPartitionMsg(v: unknown): Check<PartitionMsg> {
  if (!isObj(v)) return fail('not an object');
  if (v.t === 'batch') {
    if (!isInt(v.n) || !Array.isArray(v.ops) || !optNum(v.at)) return fail('a batch without n, ops or a numeric at');
    const bad = checkOps(v.ops);
    return bad ? fail(`batch ${v.n}: ${bad}`) : { ok: true, msg: v as PartitionMsg };
  }
  if (v.t === 'barrier') return isInt(v.cp) && typeof v.full === 'boolean' ? { ok: true, msg: v as PartitionMsg } : fail('a barrier without cp or full');
  if (v.t === 'end') return { ok: true, msg: v as PartitionMsg };
  return fail(`unknown message type ${JSON.stringify(v.t) ?? 'undefined'}`);
}

/** A message on the sink actor's subject, sent by `from` (the envelope's sender). */
export function checkOutMsg(v: unknown, from: number): Check<OutMsg> {
  if (!isObj(v)) return fail('not an object');
  if (v.from !== from) return fail(`claims to be from ${String(v.from)} inside an envelope from ${from}`);
  const ok = { ok: true as const, msg: v as OutMsg };
  switch (v.t) {
    case 'out':
      return isInt(v.n) && arrays(v, 'results', 'late', 'dead') && optNum(v.at) ? ok : fail('an output message without n, results, late or dead');
    case 'barrier':
      return from >= 0 && isInt(v.cp) && arrays(v, 'upserts', 'deletes') && isInt(v.windows) ? ok : fail('a partition barrier without cp, upserts, deletes or windows');
    case 'barrier-part':
      return from >= 0 && isInt(v.cp) && arrays(v, 'upserts', 'deletes') ? ok : fail('a barrier slice without cp, upserts or deletes');
    case 'source-barrier':
      return from === -1 && isInt(v.cp) && isInt(v.seq) && isObj(v.watermark) && typeof v.full === 'boolean' && isInt(v.depth) && isObj(v.counters) ? ok : fail('a source barrier with missing fields');
    case 'end':
      return ok;
    default:
      return fail(`unknown message type ${JSON.stringify(v.t) ?? 'undefined'}`);
  }
}

/** A message on the credit subject (from the sink actor). */
export function checkCreditMsg(v: unknown): Check<CreditMsg> {
  if (!isObj(v)) return fail('not an object');
  if (v.t === 'credit') return isInt(v.n) ? { ok: true, msg: v as CreditMsg } : fail('a credit without n');
  if (v.t === 'checkpointed') {
    return isInt(v.cp) && isNum(v.ms) && isInt(v.bytes) && isInt(v.entries) && (v.error === undefined || typeof v.error === 'string') ? { ok: true, msg: v as CreditMsg } : fail('a checkpoint completion with missing fields');
  }
  return fail(`unknown message type ${JSON.stringify(v.t) ?? 'undefined'}`);
}

/** A query request to a partition actor (from the service). */
export function checkQueryRequest(v: unknown): Check<QueryRequest> {
  if (!isObj(v)) return fail('not an object');
  const okKey = v.key === undefined || typeof v.key === 'string';
  return okKey && optNum(v.from) && optNum(v.to) && (v.top === undefined || isInt(v.top)) && (v.counts === undefined || typeof v.counts === 'boolean') ? { ok: true, msg: v as QueryRequest } : fail('a query with mistyped fields');
}

/** A restore message (coordinator → a member's window actor). */
export function checkRestoreMsg(v: unknown): Check<RestoreMsg> {
  if (!isObj(v) || v.t !== 'restore') return fail('not a restore message');
  if (!isInt(v.gen) || !isInt(v.actor) || !Array.isArray(v.windows) || !isNum(v.watermark) || typeof v.last !== 'boolean') return fail('a restore message without gen, actor, windows, watermark or last');
  return { ok: true, msg: v as unknown as RestoreMsg };
}

/** A control message (member → coordinator). */
export function checkControlMsg(v: unknown): Check<ControlMsg> {
  if (!isObj(v) || !isInt(v.gen)) return fail('not a control message');
  if (v.t === 'hello') return typeof v.member === 'string' && Array.isArray(v.actors) && v.actors.every(isInt) ? { ok: true, msg: v as unknown as ControlMsg } : fail('a hello without member or actors');
  if (v.t === 'ready') return isInt(v.actor) ? { ok: true, msg: v as unknown as ControlMsg } : fail('a ready without actor');
  if (v.t === 'fault') return typeof v.why === 'string' ? { ok: true, msg: v as unknown as ControlMsg } : fail('a fault without why');
  if (v.t === 'leave') return typeof v.member === 'string' ? { ok: true, msg: v as unknown as ControlMsg } : fail('a leave without member');
  return fail(`unknown control message ${String(v.t)}`);
}

/** A message of a partition's source to the merge. */
export function checkInputMsg(v: unknown): Check<InputMsg> {
  if (!isObj(v)) return fail('not an object');
  if (v.t === 'fail') return typeof v.why === 'string' ? { ok: true, msg: v as InputMsg } : fail('a failure without why');
  if (v.t !== 'in' || !isInt(v.n) || !isInt(v.complete) || !arrays(v, 'q', 'd', 's', 'out', 'bad')) return fail('not an input message {n,complete,q,d,s,out,bad}');
  const q = v.q as unknown[];
  const s = v.s as unknown[];
  const d = v.d as unknown[];
  const out = v.out as unknown[];
  if (s.length !== q.length || out.length !== q.length) return fail(`input message ${v.n}: its columns differ in length`);
  for (let i = 0; i < q.length; i++) {
    if (!isInt(q[i]) || !isInt(s[i]) || typeof d[s[i] as number] !== 'string') return fail(`input message ${v.n}: a bad entry at ${i}`);
  }
  for (const b of v.bad as unknown[]) {
    if (!Array.isArray(b) || !isInt(b[0]) || !(b[1] instanceof Uint8Array) || (b[0] as number) >= q.length) return fail(`input message ${v.n}: a bad payload entry`);
  }
  const bad = checkPreparedRecords(out);
  return bad ? fail(`input message ${v.n}: ${bad}`) : { ok: true, msg: v as InputMsg };
}

/** A message of the merge to a partition's source. */
export function checkInputControlMsg(v: unknown): Check<InputControlMsg> {
  if (!isObj(v)) return fail('not an object');
  if (v.t === 'open') return isInt(v.after) && (v.end === undefined || isInt(v.end)) ? { ok: true, msg: v as InputControlMsg } : fail('an open without after');
  if (v.t === 'credit') return isInt(v.n) ? { ok: true, msg: v as InputControlMsg } : fail('a credit without n');
  return fail(`unknown message type ${String(v.t)}`);
}
