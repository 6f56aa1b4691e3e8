/**
 * When to try again after a lost connection, and the rest of the client policy
 * of docs/protocol.md ("Client behaviour"): the Python client's
 * nyo_realtime_ext/client/backoff.py.
 */

/**
 * The client policy of docs/protocol.md ("Client behaviour"), in ms; the Python
 * client's defaults are the same, in seconds.
 */
export const DEFAULTS = {
  /** The window of the first reconnect attempt; it doubles per failed attempt. */
  reconnectDelay: 3_000,
  /** No window is wider. */
  maxReconnectDelay: 30_000,
  /** Failed attempts in a row before giving up (state `closed`); Infinity: never. */
  maxReconnectAttempts: 10,
  /** After a 4429 the next attempt waits in the window of this attempt (8 × the first). */
  rateLimitedAttempt: 4,
  /** Between pings, unless the server advertises a shorter `heartbeatInterval`. */
  heartbeatInterval: 25_000,
  /** Silence that means a dead connection when the server advertises no `heartbeatTimeout`. */
  heartbeatTimeout: 60_000,
  /** How long a request waits for its reply. */
  requestTimeout: 10_000,
  /** How long an attempt may take from opening the socket to `authenticated`. */
  connectTimeout: 20_000,
  /**
   * The window of the first retry of a subscription the server answered
   * `unavailable` (its engine busy or away) on a live connection; it doubles per
   * failed retry up to `maxResubscribeDelay`. Full jitter, as for reconnects.
   */
  resubscribeDelay: 1_000,
  maxResubscribeDelay: 30_000
} as const;

/**
 * The widest delay before reconnect attempt `attempt` (1 for the first):
 * `reconnectDelay` doubled per attempt, at most `maxReconnectDelay`.
 */
export function backoffWindow(
  attempt: number,
  reconnectDelay: number = DEFAULTS.reconnectDelay,
  maxReconnectDelay: number = DEFAULTS.maxReconnectDelay
): number {
  return Math.min(
    maxReconnectDelay,
    reconnectDelay * Math.pow(2, Math.max(0, attempt - 1))
  );
}

/**
 * The delay before reconnect attempt `attempt` (1 for the first): "full
 * jitter", anywhere in its window. Exponential so that a server that is down is
 * not hammered; jittered so that the many clients a restart disconnects at the
 * same instant do not all come back at the same instant too.
 */
export function backoffDelay(
  attempt: number,
  reconnectDelay: number = DEFAULTS.reconnectDelay,
  maxReconnectDelay: number = DEFAULTS.maxReconnectDelay,
  random: () => number = Math.random
): number {
  return random() * backoffWindow(attempt, reconnectDelay, maxReconnectDelay);
}
