// A batch of payloads as one buffer and the end offset of each: what the scoring pool hands its
// worker threads (one transferable buffer, no per-message cloning) and what a prepare request
// carries to a group's member. One packing and one unpacking for both.

/** Payloads back to back in `bytes`; `ends[i]` is where payload `i` ends (it starts where `i - 1` ends, or at 0). */
export interface PackedPayloads {
  /** own buffers (not views over a shared or larger one): both can be transferred to a worker thread */
  bytes: Uint8Array<ArrayBuffer>;
  ends: Uint32Array<ArrayBuffer>;
}

/** Concatenates `payloads` into one buffer (a batch is far below 4 GiB: the ends fit 32 bits). */
export function packPayloads(payloads: readonly Uint8Array[]): PackedPayloads {
  let total = 0;
  for (const p of payloads) total += p.length;
  const bytes = new Uint8Array(total);
  const ends = new Uint32Array(payloads.length);
  let at = 0;
  for (let i = 0; i < payloads.length; i++) {
    bytes.set(payloads[i]!, at);
    at += payloads[i]!.length;
    ends[i] = at;
  }
  return { bytes, ends };
}

/** Payload `i` of a packed batch (a view, not a copy). `ends` may be any array of numbers (a request's decoded offsets). */
export function payloadAt(bytes: Uint8Array, ends: ArrayLike<number>, i: number): Uint8Array {
  return bytes.subarray(i === 0 ? 0 : ends[i - 1]!, ends[i]!);
}

/** Each message's subject as an index into the distinct subjects (`d`): a batch's subjects on the wire. */
export function subjectDictionary(subjects: readonly string[], n = subjects.length): { d: string[]; s: number[] } {
  const d: string[] = [];
  const index = new Map<string, number>();
  const s: number[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const subject = subjects[i]!;
    let k = index.get(subject);
    if (k === undefined) {
      k = d.length;
      d.push(subject);
      index.set(subject, k);
    }
    s[i] = k;
  }
  return { d, s };
}
