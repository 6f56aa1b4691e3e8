/**
 * `RealtimeClient`: one WebSocket and its connection loop (authentication,
 * reconnection, heartbeat, resubscription) and the requests sent over it.
 */

import { backoffDelay, backoffWindow, DEFAULTS } from './backoff';
import { Channel } from './channel';
import { RealtimeError } from './errors';
import { Emitter } from './events';
import { SharedState } from './state';
import type { Member, Message, User } from './types';

/** Where the connection is, as a person should see it; the Python client's states too. */
export type ConnectionState =
  | 'connecting' // from `connect()` until the first attempt's outcome
  | 'open' // authenticated; subscriptions are live
  | 'reconnecting' // waiting for the next attempt, after a lost connection or a failed attempt
  | 'closed'; // for good: `close()`, refused credentials, or gave up (see `closeReason`)

/** The minimum of the WebSocket API the client needs; browsers' and `ws`'s both fit. */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: any) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: any) => void) | null;
  onmessage: ((ev: { data: any }) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

export type WebSocketFactory = (url: string) => WebSocketLike;

export interface ClientOptions {
  /** The WebSocket URL; a function is called again on every attempt. */
  url: string | (() => string);
  /**
   * A JWT, sent in an `auth` frame after opening. Leave it out when the
   * handshake itself authenticates (Jupyter's cookie or `?token=`). A function
   * is asked before every attempt, and after a 4401 for a new token.
   */
  token?: string | (() => string | Promise<string>);
  /** Defaults to the global `WebSocket`. */
  createSocket?: WebSocketFactory;
  /** The window of the first reconnect attempt, in ms (3000). */
  reconnectDelay?: number;
  /** The widest backoff window, in ms (30000). */
  maxReconnectDelay?: number;
  /**
   * Failed attempts in a row before the client gives up (10); `Infinity` keeps
   * trying at `maxReconnectDelay`, as a page that stays open should.
   */
  maxReconnectAttempts?: number;
  /** How often to ping, in ms; the server's advertised interval wins when shorter. */
  heartbeatInterval?: number;
  /** How long a request waits for its reply, in ms (10000). */
  requestTimeout?: number;
  /** How long an attempt may take to be authenticated, in ms (20000). */
  connectTimeout?: number;
  /** How many message ids per channel are remembered to drop duplicates. */
  dedupWindow?: number;
  /** Replaces `Math.random` for the jitter (tests pin it). */
  random?: () => number;
  /** The window of the first retry of a subscription answered `unavailable`, ms. */
  resubscribeDelay?: number;
  /** No retry window of such a subscription is wider, ms. */
  maxResubscribeDelay?: number;
}

/** Why and when the next attempt comes: sent on `retryScheduled`. */
export interface RetryInfo {
  /** Attempts since the connection was last open, this one included. */
  attempt: number;
  /** The backoff window, in ms. */
  window: number;
  /** The delay drawn in it, in ms. */
  delay: number;
  /** The close code that ended the last connection, if there was one. */
  code?: number;
  reason: string;
}

interface Pending {
  resolve: (frame: any) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
}

const OPEN = 1;

/** Close codes of docs/protocol.md that matter to reconnection. */
export const CloseCode = {
  GOING_AWAY: 1001,
  TOO_BIG: 1009,
  UNAUTHORIZED: 4401,
  HEARTBEAT: 4408,
  TOO_MANY: 4429
} as const;

export class RealtimeClient {
  /** Connection state changes, for the "reconnecting…" mark. */
  readonly stateChanged = new Emitter<ConnectionState>();
  /** A reconnect attempt was scheduled: which one, after how long, and why. */
  readonly retryScheduled = new Emitter<RetryInfo>();
  /** Errors the server sent without a request to pin them on, and close reasons. */
  readonly errors = new Emitter<RealtimeError>();
  /** The user the server authenticated, on every (re)connection. */
  readonly authenticated = new Emitter<User>();

  readonly dedupWindow: number;

  constructor(options: ClientOptions) {
    this._options = options;
    this._random = options.random ?? Math.random;
    this.dedupWindow = options.dedupWindow ?? 1000;
    this._createSocket =
      options.createSocket ??
      ((url: string) => new WebSocket(url) as unknown as WebSocketLike);
  }

  get state(): ConnectionState {
    return this._state;
  }

  get isOpen(): boolean {
    return this._state === 'open';
  }

  /** The authenticated user, once known. */
  get user(): User | undefined {
    return this._user;
  }

  get connectionId(): string | undefined {
    return this._connectionId;
  }

  /** Number of reconnection attempts since the last successful connection. */
  get attempt(): number {
    return this._attempt;
  }

  /** Why the client is `closed` (closed by the client, refused, gave up). */
  get closeReason(): string | undefined {
    return this._state === 'closed' ? this._closeReason : undefined;
  }

  /** Open the connection; resolves once authenticated (rejects if refused). */
  connect(): Promise<User> {
    if (this._state === 'closed') {
      // Closed by `close()`, refused or given up: this is a fresh start.
      this._closedByUser = false;
      this._closeError = undefined;
      this._attempt = this._step = 0;
      this._setState('connecting');
    }
    if (!this._socket && !this._retryTimer) {
      this._open();
    }
    if (this._user && this.isOpen) {
      return Promise.resolve(this._user);
    }
    return new Promise<User>((resolve, reject) => {
      const offAuth = this.authenticated.connect(user => {
        offAuth();
        offState();
        resolve(user);
      });
      const offState = this.stateChanged.connect(state => {
        if (state === 'closed') {
          offAuth();
          offState();
          reject(this._closeError ?? new RealtimeError('closed', 'closed'));
        }
      });
    });
  }

  /** Follow a channel; kept across reconnections until `unsubscribe`. */
  channel(name: string, options: { history?: boolean } = {}): Channel {
    let channel = this._channels.get(name);
    if (!channel) {
      channel = new Channel(name, this, options);
      this._channels.set(name, channel);
      if (this.isOpen) {
        this._subscribe(channel);
      }
    }
    return channel;
  }

  /**
   * A channel's shared state, a live map: the channel is followed with `state: true`
   * (asked again on a channel already followed, for its snapshot).
   */
  sharedState(name: string): SharedState {
    let channel = this._channels.get(name);
    if (channel?.state) {
      return channel.state;
    }
    if (!channel) {
      channel = new Channel(name, this, {});
      this._channels.set(name, channel);
    }
    const state = (channel.state = new SharedState(channel));
    if (this.isOpen) {
      // A first subscribe, or a repeated one (answered with the whole state).
      this._subscribe(channel);
    }
    return state;
  }

  async unsubscribe(name: string): Promise<void> {
    const channel = this._channels.get(name);
    if (!channel) {
      return;
    }
    this._channels.delete(name);
    channel.dispose();
    if (this.isOpen) {
      await this.request({ type: 'unsubscribe', channel: name });
    }
  }

  /** Drop the socket and reconnect at once, as after a network change. */
  reconnect(): void {
    if (this._state === 'closed') {
      return;
    }
    this._attempt = this._step = 0;
    if (this._socket) {
      this._teardown('reconnect requested');
    }
    this._clearRetry();
    this._open();
  }

  /** Close for good. */
  close(): void {
    this._closedByUser = true;
    this._clearRetry();
    this._teardown('client closed');
    this._closeReason = 'closed by the client';
    this._setState('closed');
  }

  /**
   * Send a request with a `ref` and wait for its direct reply. With
   * `afterSubscribe`, waits for the connection and that channel's subscription
   * first, so that a message typed while reconnecting is sent, once, afterwards.
   */
  async request(
    frame: Record<string, unknown>,
    options: { afterSubscribe?: Channel } = {}
  ): Promise<any> {
    if (options.afterSubscribe) {
      await this._whenSubscribed(options.afterSubscribe);
    }
    if (!this.isOpen || !this._socket) {
      throw new RealtimeError('disconnected', 'not connected');
    }
    const ref = this._nextRef++;
    const socket = this._socket;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this._pending.delete(ref);
        reject(new RealtimeError('timeout', `no reply to ${frame.type}`));
      }, this._options.requestTimeout ?? DEFAULTS.requestTimeout);
      this._pending.set(ref, { resolve, reject, timer });
      socket.send(JSON.stringify({ ...frame, ref }));
    });
  }

  // -- internals --------------------------------------------------------------

  private _whenSubscribed(channel: Channel): Promise<void> {
    if (this.isOpen && channel.isSubscribed) {
      return Promise.resolve();
    }
    if (this._state === 'closed') {
      return Promise.reject(new RealtimeError('closed', 'connection closed'));
    }
    if (channel.isDisposed) {
      return Promise.reject(new RealtimeError('not_subscribed', 'channel was left'));
    }
    return new Promise((resolve, reject) => {
      const done = (error?: RealtimeError) => {
        offSub();
        offState();
        offDisposed();
        if (error) {
          reject(error);
        } else {
          resolve();
        }
      };
      const offSub = channel.subscribed.connect(() => done());
      const offState = this.stateChanged.connect(state => {
        if (state === 'closed') {
          done(new RealtimeError('closed', 'connection closed'));
        }
      });
      const offDisposed = channel.disposed.connect(() =>
        done(new RealtimeError('not_subscribed', 'channel was left'))
      );
    });
  }

  private _url(): string {
    const url = this._options.url;
    return typeof url === 'function' ? url() : url;
  }

  private _open(): void {
    let socket: WebSocketLike;
    try {
      socket = this._createSocket(this._url());
    } catch (error) {
      this._retry(undefined, `cannot connect: ${error}`);
      return;
    }
    this._socket = socket;
    // An attempt that hangs (a handshake or an `auth` nobody answers) is a failed one.
    this._connectTimer = setTimeout(() => {
      this._connectTimer = undefined;
      if (socket === this._socket && !this.isOpen) {
        this._teardown('connect timeout');
        this._retry(undefined, 'timed out waiting for the server');
      }
    }, this._options.connectTimeout ?? DEFAULTS.connectTimeout);
    socket.onopen = () => {
      if (socket !== this._socket) {
        return;
      }
      this._touch();
      if (this._options.token !== undefined) {
        void this._sendAuth(socket);
      }
    };
    socket.onmessage = event => {
      if (socket !== this._socket) {
        return;
      }
      this._touch();
      let frame: any;
      try {
        frame = JSON.parse(String(event.data));
      } catch {
        return; // docs/protocol.md: every frame is JSON; anything else is not ours to act on
      }
      this._dispatch(frame);
    };
    socket.onerror = () => {
      // `onclose` always follows and decides what to do.
    };
    socket.onclose = event => {
      if (socket !== this._socket) {
        return;
      }
      this._onClosed(event.code, event.reason);
    };
  }

  private async _sendAuth(socket: WebSocketLike): Promise<void> {
    let value = this._nextToken;
    this._nextToken = undefined;
    if (value === undefined) {
      try {
        value = await this._currentToken();
      } catch (error) {
        console.error('nyo-realtime: the token provider failed', error);
        // No `auth`: the server closes with 4401 after its `auth_timeout`.
        return;
      }
    }
    if (socket === this._socket && socket.readyState === OPEN && value) {
      socket.send(JSON.stringify({ type: 'auth', token: value }));
    }
  }

  private async _currentToken(): Promise<string | undefined> {
    const token = this._options.token;
    const value = typeof token === 'function' ? await token() : token;
    this._lastToken = value;
    return value;
  }

  private _dispatch(frame: any): void {
    const ref = frame.ref;
    if (ref !== undefined && this._pending.has(ref)) {
      const pending = this._pending.get(ref)!;
      this._pending.delete(ref);
      clearTimeout(pending.timer);
      if (frame.type === 'error') {
        const error = new RealtimeError(frame.code, frame.message, frame.channel);
        if ('entry' in frame) {
          error.entry = frame.entry;
        }
        pending.reject(error);
      } else {
        pending.resolve(frame);
      }
    }
    const channel =
      typeof frame.channel === 'string' ? this._channels.get(frame.channel) : undefined;
    switch (frame.type) {
      case 'authenticated':
        this._onAuthenticated(frame);
        break;
      case 'subscribed':
        if (channel) {
          this._resubscribeAttempts.delete(channel);
        }
        channel?.onSubscribed(frame);
        if (channel) {
          this._restorePresence(channel);
        }
        break;
      case 'message':
        channel?.onMessage(frame as Message);
        break;
      case 'state':
        channel?.onState(frame);
        break;
      case 'state:changed':
        channel?.onStateChanged(frame);
        break;
      case 'user:joined':
      case 'user:left':
      case 'presence:updated':
        channel?.onMember(frame.type, frame.member as Member);
        break;
      case 'presence:state':
        channel?.onMembers(frame.members as Member[]);
        break;
      case 'unsubscribed':
        if (ref === undefined && channel) {
          // Not asked for: the server put us out (rights withdrawn). The channel
          // is left for good, not resubscribed after a reconnect.
          this._channels.delete(channel.name);
          this.errors.emit(
            new RealtimeError(
              frame.reason ?? 'unsubscribed',
              'the server ended the subscription',
              channel.name
            )
          );
          channel.dispose();
        }
        break;
      case 'error':
        if (ref === undefined) {
          if (frame.code === 'token_expired' || frame.code === 'unauthorized') {
            this._closeError = new RealtimeError(frame.code, frame.message);
          }
          if (frame.code === 'unavailable' && channel && !channel.isSubscribed) {
            // A (re)subscription the server could not serve just now: nothing is
            // wrong with it, so it is sent again, later.
            this._retrySubscribe(channel);
          }
          this.errors.emit(new RealtimeError(frame.code, frame.message, frame.channel));
        }
        break;
    }
  }

  private _onAuthenticated(frame: any): void {
    this._user = frame.user as User;
    this._connectionId = frame.connectionId;
    this._attempt = this._step = 0;
    this._clearConnectTimer();
    this._heartbeatMs = Math.max(
      10,
      Math.min(
        this._options.heartbeatInterval ?? DEFAULTS.heartbeatInterval,
        positive(frame.heartbeatInterval) ?? Infinity
      )
    );
    this._silenceMs = positive(frame.heartbeatTimeout) ?? DEFAULTS.heartbeatTimeout;
    this._startHeartbeat();
    this._setState('open');
    for (const channel of this._channels.values()) {
      this._subscribe(channel);
    }
    this.authenticated.emit(this._user);
  }

  private _subscribe(channel: Channel): void {
    if (this._socket && this.isOpen) {
      this._socket.send(JSON.stringify(channel.subscribeFrame()));
    }
  }

  /**
   * Subscribe to `channel` again after a jittered delay that doubles with each
   * `unavailable` answer in a row (`resubscribeDelay` up to `maxResubscribeDelay`),
   * so that the clients a busy server refused together do not come back together.
   */
  private _retrySubscribe(channel: Channel): void {
    if (this._resubscribeTimers.has(channel)) {
      return;
    }
    const attempt = (this._resubscribeAttempts.get(channel) ?? 0) + 1;
    this._resubscribeAttempts.set(channel, attempt);
    const delay = backoffDelay(
      attempt,
      this._options.resubscribeDelay ?? DEFAULTS.resubscribeDelay,
      this._options.maxResubscribeDelay ?? DEFAULTS.maxResubscribeDelay,
      this._random
    );
    const timer = setTimeout(() => {
      this._resubscribeTimers.delete(channel);
      if (this._channels.get(channel.name) === channel && !channel.isSubscribed) {
        this._subscribe(channel);
      }
    }, delay);
    this._resubscribeTimers.set(channel, timer);
  }

  /** After (re)subscribing, put back the status and meta we had set. */
  private _restorePresence(channel: Channel): void {
    if (channel.status === undefined && channel.meta === undefined) {
      return;
    }
    const frame: Record<string, unknown> = {
      type: 'presence',
      channel: channel.name
    };
    if (channel.status !== undefined) {
      frame.status = channel.status;
    }
    if (channel.meta !== undefined) {
      frame.meta = channel.meta;
    }
    this._socket?.send(JSON.stringify(frame));
  }

  private _onClosed(code: number, reason: string): void {
    this._teardown();
    if (this._closedByUser) {
      return;
    }
    const text = reason
      ? `closed by the server (${code} ${reason})`
      : `connection lost (${code})`;
    if (code === CloseCode.UNAUTHORIZED) {
      // docs/protocol.md: do not retry without a new token. Only a token provider
      // (a function) can bring one; a fixed token or a cookie cannot.
      this._closeError ??= new RealtimeError(
        'unauthorized',
        reason || 'authentication failed'
      );
      if (typeof this._options.token !== 'function') {
        this._giveUp(this._closeError);
        return;
      }
      void this._retryWithFreshToken(code, text);
      return;
    }
    this._retry(code, text);
  }

  /** After a 4401: ask the provider; retry only with a token it had not given. */
  private async _retryWithFreshToken(code: number, reason: string): Promise<void> {
    const refused = this._lastToken;
    let fresh: string | undefined;
    try {
      fresh = await this._currentToken();
    } catch (error) {
      console.error('nyo-realtime: the token provider failed', error);
    }
    if (this._closedByUser || this._state === 'closed' || this._socket) {
      return; // closed, or `reconnect()`ed, meanwhile
    }
    if (!fresh || fresh === refused) {
      this._giveUp(this._closeError!);
      return;
    }
    this._nextToken = fresh; // the next attempt uses it: no second call
    this._closeError = undefined;
    this._retry(code, reason);
  }

  /**
   * Schedule the next attempt (docs/protocol.md, "Client behaviour"): full
   * jitter in a window that doubles per failed attempt up to
   * `maxReconnectDelay`; after a 4429 at least the window of attempt 4; after
   * `maxReconnectAttempts` attempts in a row, give up.
   */
  private _retry(code: number | undefined, reason: string): void {
    this._attempt += 1;
    this._step += 1;
    if (code === CloseCode.TOO_MANY) {
      // Cut for flooding, for reading too slowly or one connection too many:
      // coming straight back would only repeat it. Not counted as extra attempts.
      this._step = Math.max(this._step, DEFAULTS.rateLimitedAttempt);
    }
    const limit = this._options.maxReconnectAttempts ?? DEFAULTS.maxReconnectAttempts;
    if (this._attempt > limit) {
      this._giveUp(
        new RealtimeError(
          'gave_up',
          `gave up after ${limit} reconnect attempts: ${reason}`
        )
      );
      return;
    }
    const window = backoffWindow(
      this._step,
      this._options.reconnectDelay ?? DEFAULTS.reconnectDelay,
      this._options.maxReconnectDelay ?? DEFAULTS.maxReconnectDelay
    );
    const delay = this._random() * window;
    this._clearRetry();
    this._setState('reconnecting');
    this.retryScheduled.emit({ attempt: this._attempt, window, delay, code, reason });
    this._retryTimer = setTimeout(() => {
      this._retryTimer = undefined;
      this._open();
    }, delay);
  }

  /** Closed for good, not by the client: say why. */
  private _giveUp(error: RealtimeError): void {
    this._clearRetry();
    this._closeError = error;
    this._closeReason = `${error.code}: ${error.message}`;
    this.errors.emit(error);
    this._setState('closed');
  }

  /** Forget the socket; every request in flight fails, since its reply can't come. */
  private _teardown(reason?: string): void {
    const socket = this._socket;
    this._socket = undefined;
    this._stopHeartbeat();
    this._clearConnectTimer();
    if (socket) {
      socket.onopen = socket.onmessage = socket.onclose = null;
      // Closed while still connecting, a socket reports an error (`ws` throws
      // it when nobody listens); it is no longer ours to hear.
      socket.onerror = () => undefined;
      if (reason !== undefined && socket.readyState <= OPEN) {
        try {
          socket.close(1000, reason);
        } catch {
          // already closing
        }
      }
    }
    for (const channel of this._channels.values()) {
      channel.onDisconnected();
    }
    // The next connection subscribes to everything anew.
    for (const timer of this._resubscribeTimers.values()) {
      clearTimeout(timer);
    }
    this._resubscribeTimers.clear();
    this._resubscribeAttempts.clear();
    for (const pending of this._pending.values()) {
      clearTimeout(pending.timer);
      pending.reject(new RealtimeError('disconnected', 'connection lost'));
    }
    this._pending.clear();
  }

  private _touch(): void {
    this._lastFrameAt = Date.now();
  }

  /** Ping every `_heartbeatMs`; watch for `_silenceMs` without any frame. */
  private _startHeartbeat(): void {
    this._stopHeartbeat();
    this._heartbeatTimer = setInterval(() => {
      this._socket?.send(JSON.stringify({ type: 'ping' }));
    }, this._heartbeatMs);
    this._watchSilence();
  }

  private _watchSilence(): void {
    const wait = Math.max(0, this._lastFrameAt + this._silenceMs - Date.now());
    this._silenceTimer = setTimeout(() => {
      this._silenceTimer = undefined;
      if (!this._socket) {
        return;
      }
      if (Date.now() - this._lastFrameAt < this._silenceMs) {
        this._watchSilence(); // something came meanwhile
        return;
      }
      // Nothing, not even a pong, for the server's whole timeout: the link is
      // dead even if the socket has not noticed (a laptop lid, a NAT dropping it).
      this._teardown('heartbeat timeout');
      this._retry(
        CloseCode.HEARTBEAT,
        `no frame from the server for ${this._silenceMs / 1000} s`
      );
    }, wait);
  }

  private _stopHeartbeat(): void {
    if (this._heartbeatTimer !== undefined) {
      clearInterval(this._heartbeatTimer);
      this._heartbeatTimer = undefined;
    }
    if (this._silenceTimer !== undefined) {
      clearTimeout(this._silenceTimer);
      this._silenceTimer = undefined;
    }
  }

  private _clearConnectTimer(): void {
    if (this._connectTimer !== undefined) {
      clearTimeout(this._connectTimer);
      this._connectTimer = undefined;
    }
  }

  private _clearRetry(): void {
    if (this._retryTimer !== undefined) {
      clearTimeout(this._retryTimer);
      this._retryTimer = undefined;
    }
  }

  private _setState(state: ConnectionState): void {
    if (state !== this._state) {
      this._state = state;
      this.stateChanged.emit(state);
    }
  }

  private _options: ClientOptions;
  private _random: () => number;
  private _createSocket: WebSocketFactory;
  private _socket: WebSocketLike | undefined;
  private _state: ConnectionState = 'connecting';
  private _closedByUser = false;
  private _closeError: RealtimeError | undefined;
  private _closeReason: string | undefined;
  private _lastToken: string | undefined;
  private _nextToken: string | undefined;
  private _user: User | undefined;
  private _connectionId: string | undefined;
  private _channels = new Map<string, Channel>();
  private _pending = new Map<number, Pending>();
  private _nextRef = 1;
  /** Attempts since the connection was last open; `maxReconnectAttempts` bounds it. */
  private _attempt = 0;
  /** The attempt whose backoff window applies: `_attempt`, or more after a 4429. */
  private _step = 0;
  private _retryTimer: ReturnType<typeof setTimeout> | undefined;
  private _connectTimer: ReturnType<typeof setTimeout> | undefined;
  private _heartbeatTimer: ReturnType<typeof setInterval> | undefined;
  private _silenceTimer: ReturnType<typeof setTimeout> | undefined;
  private _heartbeatMs: number = DEFAULTS.heartbeatInterval;
  private _silenceMs: number = DEFAULTS.heartbeatTimeout;
  private _lastFrameAt = 0;
  /** Subscriptions answered `unavailable`: the retry scheduled, and how many in a row. */
  private _resubscribeTimers = new Map<Channel, ReturnType<typeof setTimeout>>();
  private _resubscribeAttempts = new Map<Channel, number>();
}

/** A positive number of ms from the server, or undefined. */
function positive(value: unknown): number | undefined {
  return typeof value === 'number' && value > 0 ? value : undefined;
}
