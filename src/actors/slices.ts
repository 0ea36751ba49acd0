// Large work in slices: a yield to the event loop between slices, so a full checkpoint, a restore
// or a big watermark step never stops the loop for the whole state (other actors keep running).

/** Resolves after the event loop has handled what is waiting (I/O, timers, other actors). */
export const yieldToLoop = (): Promise<void> => new Promise((r) => setImmediate(r));

/** Calls `each` with consecutive slices of `items` (the last one possibly empty), yielding between them. */
export async function forEachSlice<T>(items: Iterable<T>, size: number, each: (slice: T[], last: boolean) => void | Promise<void>): Promise<void> {
  let slice: T[] = [];
  for (const it of items) {
    slice.push(it);
    if (slice.length >= size) {
      await each(slice, false);
      slice = [];
      await yieldToLoop();
    }
  }
  await each(slice, true);
}
