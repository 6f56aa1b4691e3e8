/** The client's errors. */

/** An `error` frame from the server, as an exception. */
export class RealtimeError extends Error {
  /** For a `conflict` of a compare-and-set: the entry as it is (null: absent). */
  entry?: unknown;

  constructor(
    readonly code: string,
    message: string,
    readonly channel?: string
  ) {
    super(message);
    this.name = 'RealtimeError';
  }
}
