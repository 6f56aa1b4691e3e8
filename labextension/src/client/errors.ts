/** The client's errors. */

/** An `error` frame from the server, as an exception. */
export class RealtimeError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly channel?: string
  ) {
    super(message);
    this.name = 'RealtimeError';
  }
}
