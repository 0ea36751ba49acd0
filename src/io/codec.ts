// The one codec for messages between actors: msgpackr with record structures
// (field names sent once per structure, not once per post).

import { Packr } from 'msgpackr';

const packr = new Packr({ useRecords: true, moreTypes: false, structuredClone: false });

/** Encodes an actor message. */
export const encode = (value: unknown): Uint8Array => packr.pack(value);

/** Decodes an actor message. */
export const decode = <T>(bytes: Uint8Array): T => packr.unpack(bytes) as T;
