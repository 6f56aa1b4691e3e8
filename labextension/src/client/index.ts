/**
 * A client for the nyo-realtime wire protocol (docs/protocol.md, version 1).
 *
 * It behaves like the Python client (docs/protocol.md, "Client behaviour"; both
 * replay tests/scenarios/client.json): one WebSocket, reconnection with jittered
 * exponential backoff, resubscription with `since` so that nothing is missed,
 * de-duplication so that nothing is seen twice, and one's own status put back
 * after a reconnect. It has no JupyterLab dependency, so it runs in the browser
 * and, with `ws`, in Node for its tests.
 *
 * The identity is never the client's to choose: the server takes it from the
 * Jupyter login (cookie or `?token=`), or from a JWT given as `token`.
 *
 * One module per concern, as in the Python client (nyo_realtime_ext/client/):
 * `client` (RealtimeClient, the connection loop), `channel` (Channel: messages
 * once and in order, members), `events` (the emitter), `backoff` (the reconnect
 * policy), `errors` (RealtimeError) and `types` (what the protocol carries).
 * This file is the public API: import from './client', not from its modules.
 */

export { backoffDelay, backoffWindow, DEFAULTS } from './backoff';
export { Channel, FROM_START } from './channel';
export { CloseCode, RealtimeClient } from './client';
export type {
  ClientOptions,
  ConnectionState,
  RetryInfo,
  WebSocketFactory,
  WebSocketLike
} from './client';
export { RealtimeError } from './errors';
export { isNewer, SharedState } from './state';
export type { StateChange, StateEntry } from './state';
export { Emitter } from './events';
export { isPerson, STATUSES } from './types';
export type { Member, Message, Status, User } from './types';
