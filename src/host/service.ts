// The job as a NATS micro service: `$SRV.PING/INFO/STATS` discovery and JSON endpoints
// in a group per job (tidemark.<job>.status, .query, .keys, .explain, .checkpoint).

import { hostname } from 'node:os';
import { resolve } from 'node:path';
import { ServiceError, type JetStreamManager, type Service, type ServiceMsg } from 'nats';
import type { Job } from '../actors/job.js';
import type { Logger } from '../log.js';
import { subjectsFor } from '../io/subjects.js';
import { decode } from '../io/codec.js';
import { Sealer, SENDER } from '../io/channel.js';
import type { QueryReply, QueryRequest } from '../actors/messages.js';
import { fixedWindows, formatWindowSpec, type Window } from '../runtime/windows.js';
import { formatDuration } from '../runtime/duration.js';
import { parseEventTime } from '../runtime/post.js';
import { actorOfKey } from '../runtime/key-groups.js';
import { explainKey, type LiveWindow } from '../runtime/explain.js';
import { mergeTopKeys } from '../runtime/top-keys.js';
import type { WindowView } from '../runtime/window-operator.js';
import { formatSinkSpec } from '../io/sink-spec.js';
import { stateFingerprint } from '../runtime/job-config.js';
import { TidemarkError } from '../errors.js';

/** How long an endpoint waits for a partition actor or a savepoint before answering with an error. */
const PARTITION_TIMEOUT = 5000;
const SAVEPOINT_TIMEOUT = 30_000;
const MAX_TOP = 1000;

/** Window counts by lifecycle state, summed over the job's partitions. */
export function windowsByState(job: Job): { open: number; pending: number; closedAwaitingCheckpoint: number } {
  const c = { open: 0, pending: 0, closedAwaitingCheckpoint: 0 };
  for (const p of job.partitions) {
    const s = p.operator.countsByState();
    c.open += s.open;
    c.pending += s.pending;
    c.closedAwaitingCheckpoint += p.operator.closedAwaitingCheckpoint;
  }
  return c;
}

/** Status of a running job, as the `status` endpoint answers it (consumer lag aside). */
export function jobStatus(job: Job, now = Date.now()): Record<string, unknown> {
  const src = job.source;
  const wm = src.ingest.watermark;
  const cfg = job.cfg;
  return {
    job: cfg.job,
    host: hostname(),
    pid: process.pid,
    config: {
      window: formatWindowSpec(cfg.window),
      maxOutOfOrderness: formatDuration(cfg.maxOutOfOrderness),
      allowedLateness: formatDuration(cfg.lateness),
      idleTimeout: formatDuration(cfg.idleTimeout),
      inputPartitions: cfg.inputPartitions,
      emit: cfg.emit,
      keys: stateFingerprint(cfg).keys,
      partitions: job.actors,
      keyGroups: cfg.keyGroups,
      inputStream: cfg.inputStream,
      inputSubjects: cfg.inputSubjects,
      sinks: cfg.sinks.map(formatSinkSpec),
      lateSink: formatSinkSpec(cfg.lateSink),
      dlqSink: formatSinkSpec(cfg.dlqSink),
      stateDir: resolve(cfg.stateDir),
      checkpointInterval: formatDuration(cfg.checkpointInterval),
    },
    watermark: wm,
    watermarkLagMs: Number.isFinite(wm) ? now - wm : null,
    inputs: src.ingest.inputs(now).map((p) => ({ ...p, lagMs: Number.isFinite(p.watermark) ? now - p.watermark : null })),
    /** Idleness decisions (--input-partitions > 1): the latest applied, and those journaled but not applied yet. */
    idleDecisions: { recent: src.ingest.idleness.recent.slice(-8), ahead: src.ingest.idleness.ahead.slice(0, 8) },
    inputSeq: src.seq,
    postsIn: src.counters.postsIn,
    resultsOut: job.sink.counts.results,
    late: job.sink.counts.late,
    deadLetters: job.sink.counts.dead,
    /** Internal messages refused (garbage, forged, replayed, of an earlier run): see the log for the first of each sender. */
    rejectedMessages: job.channel.rejects.total,
    windows: windowsByState(job),
    lastCheckpoint: src.lastCheckpoint ? { id: src.lastCheckpoint.cp, ageMs: now - src.lastCheckpoint.at, ms: Math.round(src.lastCheckpoint.ms), bytes: src.lastCheckpoint.bytes } : null,
    startedAt: new Date(src.startedAt).toISOString(),
    uptimeMs: now - src.startedAt,
    group: job.group ? { ...job.group, preparedBatches: job.prepared ?? null, inputMerge: job.merged?.progress ?? null } : null,
  };
}

/** Asks partition actors (over NATS) for windows or top keys; all of them unless `only` names one. */
export async function queryPartitions(job: Job, req: QueryRequest, only?: number): Promise<QueryReply[]> {
  const subj = subjectsFor(job.cfg.job);
  const targets = only === undefined ? Array.from({ length: job.actors }, (_, p) => p) : [only];
  const replies = await Promise.all(
    targets.map((p) =>
      job.nc.request(`${subj.partition(p)}.query`, new Sealer(job.channel.key, SENDER.service).seal(`${subj.partition(p)}.query`, req), { timeout: PARTITION_TIMEOUT }).catch((e: unknown) => {
        throw new ServiceError(504, `partition actor ${p} did not answer: ${(e as Error).message}`);
      }),
    ),
  );
  return replies.map((r) => {
    const reply = decode<QueryReply>(r.data);
    if (reply.error) throw new ServiceError(413, `partition ${reply.partition}: ${reply.error}`);
    return reply;
  });
}

// ---- request validation: synchronous, so the micro framework counts a malformed request as an error

type Fields = Record<string, unknown>;

const bad = (message: string): ServiceError => new ServiceError(400, message);

/** Parses a request body: empty, or a JSON object with only the accepted fields. */
export function parseRequest(data: Uint8Array, endpoint: string, accepted: readonly string[]): Fields {
  if (data.length === 0) return {};
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(data));
  } catch {
    throw bad(`${endpoint}: the request is not JSON; send a JSON object${accepted.length ? ` with ${accepted.join(', ')}` : ' (or nothing)'}`);
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad(`${endpoint}: the request must be a JSON object`);
  for (const k of Object.keys(v)) {
    if (!accepted.includes(k)) throw bad(`${endpoint}: unknown field "${k}"; accepted: ${accepted.length ? accepted.join(', ') : 'none'}`);
  }
  return v as Fields;
}

function keyField(req: Fields, endpoint: string): string {
  const k = req.key;
  if (k === undefined) throw bad(`${endpoint}: "key" is required, e.g. {"key":"#nats"}`);
  if (typeof k !== 'string' || k.length === 0 || k.length > 1024) throw bad(`${endpoint}: "key" must be a non-empty string`);
  return k;
}

function timeField(req: Fields, endpoint: string, name: string): number | undefined {
  const v = req[name];
  if (v === undefined) return undefined;
  const t = parseEventTime(v);
  if (typeof t === 'string') throw bad(`${endpoint}: "${name}" must be ms since the epoch or an ISO-8601 time (${t.replace(/^ts/, name)})`);
  return t;
}

function intField(req: Fields, endpoint: string, name: string, min: number, max: number): number | undefined {
  const v = req[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(`${endpoint}: "${name}" must be an integer from ${min} to ${max}`);
  return v;
}

// ---- answers

/** JSON for people and scripts: −∞ (no watermark yet) becomes null, +∞ (end of input) "+inf". */
export const toJson = (body: unknown): string =>
  JSON.stringify(body, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? (v > 0 ? '+inf' : null) : v));

const windowJson = (v: WindowView, partition: number): Record<string, unknown> => ({
  key: v.key,
  window: v.window,
  state: v.state,
  records: v.records,
  ...v.aggregate,
  ...v.extra,
  nextRevision: v.nextRevision,
  firesAt: v.firesAt,
  closesAt: v.closesAt,
  partition,
});

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new ServiceError(504, `${what} did not complete within ${formatDuration(ms)}`)), ms);
    // A request still waiting never keeps a stopping process alive.
    timer.unref();
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

interface EndpointDef {
  description: string;
  fields: readonly string[];
  /** Validates the request (synchronously) and returns the work that answers it. */
  handle(req: Fields): () => Promise<unknown>;
}

function endpoints(job: Job): Record<string, EndpointDef> {
  let jsm: JetStreamManager | undefined;
  const cfg = job.cfg;
  return {
    status: {
      description: 'watermark(s) and lag, input sequence and consumer lag, counters, windows by state, last checkpoint, uptime',
      fields: [],
      handle: () => async () => {
        const status = jobStatus(job);
        if (job.actors > job.partitions.length) {
          // A group: the window actors on other instances count their windows themselves.
          const local = new Set(job.partitions.map((p) => p.partition));
          const remote = Array.from({ length: job.actors }, (_, p) => p).filter((p) => !local.has(p));
          const replies = await Promise.all(remote.map((p) => queryPartitions(job, { counts: true }, p).then((r) => r[0]!)));
          const w = status.windows as ReturnType<typeof windowsByState>;
          for (const r of replies) {
            w.open += r.counts?.open ?? 0;
            w.pending += r.counts?.pending ?? 0;
            w.closedAwaitingCheckpoint += r.counts?.closedAwaitingCheckpoint ?? 0;
          }
        }
        let input: Record<string, unknown> = { stream: cfg.inputStream, seq: job.source.seq };
        try {
          jsm ??= await job.nc.jetstreamManager();
          const info = await jsm.streams.info(cfg.inputStream);
          input = { ...input, lastSeq: info.state.last_seq, pending: Math.max(0, info.state.last_seq - job.source.seq) };
        } catch (e) {
          input = { ...input, error: (e as Error).message };
        }
        return { ...status, input };
      },
    },
    query: {
      description: "a key's windows (optionally overlapping [from, to)): aggregates and xstate state, open ones included",
      fields: ['key', 'from', 'to'],
      handle: (req) => {
        const key = keyField(req, 'query');
        const from = timeField(req, 'query', 'from');
        const to = timeField(req, 'query', 'to');
        if (from !== undefined && to !== undefined && from >= to) throw bad('query: "from" must be before "to"');
        return async () => {
          const p = actorOfKey(key, { keyGroups: cfg.keyGroups, actors: job.actors });
          const [reply] = await queryPartitions(job, { key, ...(from !== undefined ? { from } : {}), ...(to !== undefined ? { to } : {}) }, p);
          return { key, watermark: job.source.ingest.watermark, partitionWatermark: reply!.watermark, windows: reply!.windows.map((w) => windowJson(w, p)) };
        };
      },
    },
    keys: {
      description: 'the busiest keys in the current open windows (top N by count, default 10)',
      fields: ['top'],
      handle: (req) => {
        const top = intField(req, 'keys', 'top', 1, MAX_TOP) ?? 10;
        return async () => {
          const replies = await queryPartitions(job, { top });
          return { top, watermark: job.source.ingest.watermark, keys: mergeTopKeys(replies.map((r) => r.keys ?? []), top) };
        };
      },
    },
    explain: {
      description: 'why a key\'s windows (or the window holding time "at") have or have not fired: watermark per input partition, what holds it back, what each window needs',
      fields: ['key', 'at'],
      handle: (req) => {
        const key = keyField(req, 'explain');
        const at = timeField(req, 'explain', 'at');
        return async () => {
          const p = actorOfKey(key, { keyGroups: cfg.keyGroups, actors: job.actors });
          const [reply] = await queryPartitions(job, { key }, p);
          const live: LiveWindow[] = reply!.windows.map((w) => ({ window: w.window, state: w.state, count: w.records }));
          let asked: Window[] | undefined;
          if (at !== undefined) {
            const holding = live.filter((l) => l.window.start <= at && at < l.window.end).map((l) => l.window);
            if (cfg.window.kind === 'session') asked = holding.length ? holding : [{ start: at, end: at + cfg.window.gap }];
            else asked = fixedWindows(cfg.window, at);
          }
          const src = job.source.ingest;
          const explanation = explainKey(key, src.watermark, src.tracker.partitions(), live, { maxOutOfOrderness: cfg.maxOutOfOrderness, lateness: cfg.lateness, idleTimeout: cfg.idleTimeout }, asked);
          return { ...explanation, windowSpec: formatWindowSpec(cfg.window), maxOutOfOrderness: cfg.maxOutOfOrderness, allowedLateness: cfg.lateness, partitionWatermark: reply!.watermark };
        };
      },
    },
    checkpoint: {
      description: 'take a savepoint now; answers with its id',
      fields: ['name'],
      handle: (req) => {
        const name = req.name;
        if (name !== undefined && (typeof name !== 'string' || !/^[\w.:-]{1,128}$/.test(name))) throw bad('checkpoint: "name" must be 1-128 letters, digits, _ . : or -');
        // --from-checkpoint reads digits as a checkpoint id, so a name must not be all digits.
        if (typeof name === 'string' && /^\d+$/.test(name)) throw bad('checkpoint: "name" must not be all digits (those mean a checkpoint id); add a letter');
        return async () => {
          const label = typeof name === 'string' ? name : `savepoint-${new Date().toISOString()}`;
          const taken = job.savepoint(label);
          const { id, joined } = await withTimeout(taken, SAVEPOINT_TIMEOUT, `savepoint "${label}" (still queued: it will be taken, and tidemark inspect lists it once written)`);
          const last = job.source.lastCheckpoint;
          return { id, name: label, ...(joined ? { joined: true } : {}), ...(last?.cp === id ? { ms: Math.round(last.ms), bytes: last.bytes } : {}) };
        };
      },
    },
  };
}

/** Registers the service; stop() deregisters it. */
export async function startService(job: Job, log: Logger, version: string): Promise<{ stop(): Promise<void>; service: Service }> {
  // Failures after validation (a partition not answering, a savepoint timing out) are answered with
  // respondError, which nats.js does not count; they are counted here and shown in $SRV.STATS `data`.
  const failed = new Map<string, number>();
  const svc = await job.nc.services.add({
    name: 'tidemark',
    version,
    description: `Tidemark event-time stream processor, job ${job.cfg.job}`,
    metadata: { job: job.cfg.job, host: hostname(), pid: String(process.pid), state_dir: resolve(job.cfg.stateDir), window: formatWindowSpec(job.cfg.window) },
    statsHandler: (ep) => Promise.resolve({ failed: failed.get(ep.subject) ?? 0 }),
  });
  const prefix = subjectsFor(job.cfg.job).serviceGroup;
  const group = svc.addGroup(prefix);
  for (const [name, def] of Object.entries(endpoints(job))) {
    const subject = `${prefix}.${name}`;
    group.addEndpoint(name, {
      metadata: { job: job.cfg.job, description: def.description, fields: def.fields.join(',') },
      handler: (err, m: ServiceMsg) => {
        if (err) return;
        // Throws ServiceError(400) synchronously on a malformed request: the framework answers and counts it.
        const work = def.handle(parseRequest(m.data, name, def.fields));
        work().then(
          (body) => m.respond(new TextEncoder().encode(toJson(body))),
          (e: unknown) => {
            failed.set(subject, (failed.get(subject) ?? 0) + 1);
            // A savepoint refused because the job is stopping or too many wait: 503, the service is unavailable for it.
            // A name already written: 409.
            const code = e instanceof ServiceError ? e.code : e instanceof TidemarkError ? (e.code === 'NOT_AVAILABLE' ? 503 : e.code === 'SAVEPOINT_EXISTS' ? 409 : 500) : 500;
            log.warn({ endpoint: name, err: (e as Error).message }, 'service request failed');
            m.respondError(code, `${name}: ${(e as Error).message}`);
          },
        );
      },
    });
  }
  log.debug({ service: svc.info() }, 'micro service registered');
  return { service: svc, stop: () => svc.stop().then(() => undefined) };
}
