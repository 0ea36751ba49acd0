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
    /** lock held by the instance that runs the job */
    lockBucket: 'tidemark_locks',
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
