// The job as a NATS micro service: `$SRV.PING/INFO/STATS` discovery and JSON endpoints
// in a group per job (tidemark.<job>.status, .query, .checkpoint, ...).

import type { Service, ServiceMsg } from 'nats';
import type { Job } from './actors/job.js';
import type { Logger } from './log.js';
import { subjectsFor } from './io/subjects.js';
import { encode, decode } from './io/codec.js';
import type { QueryReply, QueryRequest } from './actors/messages.js';
import { formatWindowSpec } from './runtime/windows.js';
import { formatDuration } from './runtime/duration.js';

const wmJson = (w: number): number | null | string => (Number.isFinite(w) ? w : w > 0 ? '+inf' : null);

/** Status of a running job, as the `status` endpoint answers it. */
export function jobStatus(job: Job): Record<string, unknown> {
  const now = Date.now();
  const src = job.source;
  const wm = src.ingest.watermark;
  const counts = job.partitions.reduce(
    (a, p) => {
      const c = p.operator.countsByState();
      return { open: a.open + c.open, pending: a.pending + c.pending, closedAwaitingCheckpoint: a.closedAwaitingCheckpoint + p.operator.closedAwaitingCheckpoint };
    },
    { open: 0, pending: 0, closedAwaitingCheckpoint: 0 },
  );
  return {
    job: job.cfg.job,
    config: {
      window: formatWindowSpec(job.cfg.window),
      maxOutOfOrderness: formatDuration(job.cfg.maxOutOfOrderness),
      allowedLateness: formatDuration(job.cfg.lateness),
      emit: job.cfg.emit,
      keys: job.cfg.keys,
      partitions: job.cfg.partitions,
      inputStream: job.cfg.inputStream,
    },
    watermark: wmJson(wm),
    watermarkLagMs: Number.isFinite(wm) ? now - wm : null,
    inputSeq: src.seq,
    postsIn: src.counters.postsIn,
    resultsOut: job.sink.counts.results,
    late: job.sink.counts.late,
    deadLetters: job.sink.counts.dead,
    windows: counts,
    lastCheckpoint: src.lastCheckpoint ? { id: src.lastCheckpoint.cp, ageMs: now - src.lastCheckpoint.at, ms: Math.round(src.lastCheckpoint.ms), bytes: src.lastCheckpoint.bytes } : null,
    uptimeMs: now - src.startedAt,
  };
}

/** Asks every partition actor (over NATS) for a key's windows. */
export async function queryPartitions(job: Job, req: QueryRequest): Promise<QueryReply[]> {
  const subj = subjectsFor(job.cfg.job);
  const replies = await Promise.all(job.partitions.map((p) => job.nc.request(`${subj.partition(p.partition)}.query`, encode(req), { timeout: 5000 })));
  return replies.map((r) => decode<QueryReply>(r.data));
}

function parseRequest(m: ServiceMsg): Record<string, unknown> {
  if (m.data.length === 0) return {};
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder().decode(m.data));
  } catch {
    throw new Error('request is not JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('request must be a JSON object');
  return v as Record<string, unknown>;
}

/** Registers the service; stop() deregisters it. */
export async function startService(job: Job, log: Logger, version: string): Promise<{ stop(): Promise<void>; service: Service }> {
  const svc = await job.nc.services.add({
    name: 'tidemark',
    version,
    description: `Tidemark event-time stream processor, job ${job.cfg.job}`,
    metadata: { job: job.cfg.job },
  });
  const group = svc.addGroup(subjectsFor(job.cfg.job).serviceGroup);
  const endpoint = (name: string, fn: (req: Record<string, unknown>) => Promise<unknown> | unknown): void => {
    group.addEndpoint(name, {
      handler: (err, m) => {
        if (err) return;
        void (async () => {
          try {
            const body = await fn(parseRequest(m));
            m.respond(new TextEncoder().encode(JSON.stringify(body)));
          } catch (e) {
            m.respondError(400, (e as Error).message);
          }
        })();
      },
      metadata: { job: job.cfg.job },
    });
  };
  endpoint('status', () => jobStatus(job));
  endpoint('query', async (req) => {
    if (req.key !== undefined && typeof req.key !== 'string') throw new Error('"key" must be a string');
    const replies = await queryPartitions(job, { ...(typeof req.key === 'string' ? { key: req.key } : {}) });
    const windows = replies.flatMap((r) => r.windows).map((w) => ({ ...w, closesAt: w.closesAt }));
    return { key: req.key ?? null, watermark: wmJson(job.source.ingest.watermark), windows };
  });
  endpoint('checkpoint', async (req) => {
    const name = typeof req.name === 'string' ? req.name : `savepoint-${Date.now()}`;
    const id = await job.source.savepoint(name);
    return { id, name };
  });
  log.debug({ service: svc.info() }, 'micro service registered');
  return { service: svc, stop: () => svc.stop().then(() => undefined) };
}
