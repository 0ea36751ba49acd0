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
    /** members → coordinator: hello, ready, fault, leave (sealed with the generation's key) */
    control: `${base}.control`,
    /** KV bucket of leases (entries expire after --lease-ttl): `coordinator`, `member.<id>` */
    leaseBucket: `tidemark_group_${job}`,
    /** KV bucket of the group's durable records: `plan` (the generation), `checkpoint` (the mirror's pointer) */
    groupStateBucket: `tidemark_job_${job}`,
    /** object store holding a copy of every complete checkpoint (the mirror) */
    checkpointObjects: `tidemark_cp_${job}`,
  };
}

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
