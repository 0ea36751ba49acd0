// The one place that knows Tidemark's NATS subject names, stream and consumer names.
// Everything a job publishes or subscribes to is scoped by the job name.

/** Subjects and names of one job. */
export function subjectsFor(job: string) {
  const base = `tidemark.${job}`;
  return {
    /** source → partition p: batches of ops, barriers, end of input */
    partition: (p: number) => `${base}.part.${p}`,
    /** partitions and source → sink actor */
    out: `${base}.out`,
    /** sink actor → source: credits (flow control) and checkpoint completion */
    credit: `${base}.credit`,
    /** default results output */
    results: `${base}.results`,
    /** default late output */
    late: `${base}.late`,
    /** default dead-letter output */
    dlq: `${base}.dlq`,
    /** alerts fired by the dashboard's rules (JSON, one message per rule and window) */
    alerts: `${base}.alerts`,
    /** micro service group */
    serviceGroup: base,
    /** lock held by the instance that runs the job (a job that cannot run as a group) */
    lockBucket: 'tidemark_locks',
    /** coordinator → a window actor on another instance: its key groups' windows at a generation's start */
    restore: (p: number) => `${base}.part.${p}.restore`,
    /** coordinator → member `i` of a generation: batches of input to prepare (decode, keys, score), answered in a reply */
    prepare: (i: number) => `${base}.prepare.${i}`,
    /** the source reading input partition p (on any instance of a group) → the coordinator's merge: prepared records, in order */
    input: (p: number) => `${base}.input.${p}`,
    /** the coordinator's merge → the source reading input partition p: where to start, credits */
    inputControl: (p: number) => `${base}.input.${p}.control`,
    /** members → coordinator: hello, ready, fault, leave (sealed with the generation's key) */
    control: `${base}.control`,
    /** KV bucket of leases (no TTL of its own: a lease not renewed for --lease-ttl is taken over, see LeaseObserver): `coordinator`, `member.<id>` */
    leaseBucket: `tidemark_group_${job}`,
    /** KV bucket of the group's durable records: `plan` (the generation), `checkpoint` (the mirror's pointer) */
    groupStateBucket: `tidemark_job_${job}`,
    /** object store holding a copy of every complete checkpoint (the mirror) */
    checkpointObjects: `tidemark_cp_${job}`,
  };
}

/**
 * Name of an ephemeral consumer the source reads the input stream with (`id`: random, one per
 * consumer). Short on purpose: it is in the reply subject of every input message, which the client
 * reads byte by byte.
 */
export const inputConsumerName = (id: string): string => `tm${id}`;

/** Where a pull consumer is asked for its next messages (`prefix`: the JetStream API prefix, `$JS.API` by default). */
export const jsPullSubject = (prefix: string, stream: string, consumer: string): string => `${prefix}.CONSUMER.MSG.NEXT.${stream}.${consumer}`;

/** Valid job name: it becomes a subject token and a directory name. */
export const JOB_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** True when `subject` (literal tokens) is matched by `pattern` under NATS rules: `*` is one token, a last `>` one or more. */
export function subjectMatches(pattern: string, subject: string): boolean {
  const p = pattern.split('.');
  const s = subject.split('.');
  for (let i = 0; i < p.length; i++) {
    if (p[i] === '>') return i === p.length - 1 && s.length > i;
    if (i >= s.length || (p[i] !== '*' && p[i] !== s[i])) return false;
  }
  return p.length === s.length;
}

// Partitioned input (`--input-partitions P`). Producers publish a post on `<base>.in.<key>` (any
// one token as the key: a user, an id); the server's account mapping
// `<base>.in.*` → `<base>.in.{{partition(P,1)}}.{{wildcard(1)}}` (nats-server ≥ 2.8; streams of
// 2.9 have no subject transforms, so the mapping lives in the server's config) stores it as
// `<base>.in.<p>.<key>`. The input partition is the token before the last.

/** The input partition a stored message's subject names (the token before the last, `0`…), or undefined. */
export function inputPartitionOf(subject: string): number | undefined {
  const end = subject.lastIndexOf('.');
  if (end <= 0) return undefined;
  const token = subject.slice(subject.lastIndexOf('.', end - 1) + 1, end);
  return /^(0|[1-9]\d{0,5})$/.test(token) ? Number(token) : undefined;
}

/**
 * The server mappings that partition a job's input: for each input subject `<base>.>`,
 * `<base>.in.*` → `<base>.in.{{partition(P,1)}}.{{wildcard(1)}}`.
 */
export function partitionMappings(inputSubjects: readonly string[], partitions: number): Record<string, string> {
  const out: Record<string, string> = {};
  for (const s of inputSubjects) {
    if (!s.endsWith('.>')) continue;
    const base = s.slice(0, -2);
    out[`${base}.in.*`] = `${base}.in.{{partition(${partitions},1)}}.{{wildcard(1)}}`;
  }
  return out;
}

/** A nats-server config fragment holding `mappings` (what the README shows and the embedded server loads). */
export function mappingsConfig(mappings: Record<string, string>): string {
  const lines = Object.entries(mappings).map(([from, to]) => `  ${JSON.stringify(from)}: ${JSON.stringify(to)}`);
  return `mappings = {\n${lines.join('\n')}\n}\n`;
}

/**
 * The subject filter that reads input partition `p` alone: `<base>.in.<p>.*` for the one input
 * subject `<base>.>`; undefined when the input has several subjects (a consumer of nats-server 2.9
 * takes one filter), or one that does not end in `.>`.
 */
export function partitionFilter(inputSubjects: readonly string[], p: number): string | undefined {
  if (inputSubjects.length !== 1 || !inputSubjects[0]!.endsWith('.>')) return undefined;
  return `${inputSubjects[0]!.slice(0, -2)}.in.${p}.*`;
}

/** The subject a producer publishes a post on for a partitioned input: `<subject>.<key token>`. */
export function keyedSubject(subject: string, key: string): string {
  const token = key.replace(/[\s.*>]/g, '_').slice(0, 128) || '_';
  return `${subject}.${token}`;
}
