/**
 * React hooks over the TypeScript client, for JupyterLab extensions that
 * render with React (`ReactWidget`). See docs/react.md.
 *
 * - `useWebSocket({url, token, ...})` opens a connection of its own, closed on
 *   unmount; `useWebSocket(realtime)` follows the page's `IRealtime` one.
 * - `useChannel(ws, channel, {onMessage})`: `{messages, send, isSubscribed}`.
 * - `usePresence(ws, channel)`: `{members, updateStatus}`.
 * - `useRealtimeChannel(options, channel)`: all of it in one call.
 * - `useSharedState(ws, channel)`: `{state, set, remove, compareAndSet, version, loaded}`,
 *   the channel's shared state (docs/protocol.md, "Shared state").
 * - `useLobby(realtime)`: `realtime.lobby`, re-rendering when the setting moves it.
 *
 * `ws` is what `useWebSocket` returned, an `IRealtime`, or a `RealtimeClient`.
 * Channels are shared with the rest of the page (see `openChannel`): a
 * component subscribes when it mounts, not on re-renders, and its unmounting
 * unsubscribes unless something else on the page still follows the channel.
 *
 * React is JupyterLab's shared copy: `react` is a dependency that the
 * extension builder shares and does not bundle.
 */
import {
  useCallback,
  useEffect,
  useMemo,
  useRef,
  useState,
  useSyncExternalStore
} from 'react';

import {
  ClientOptions,
  ConnectionState,
  Member,
  Message,
  RealtimeClient,
  RealtimeError,
  SharedState,
  StateEntry,
  Status,
  User,
  WebSocketFactory,
  WebSocketLike
} from './client';
import type { ISignal } from '@lumino/signaling';
import { ChannelSnapshot, EMPTY_SNAPSHOT, openChannel, peekChannel } from './store';

/** The client options of `useWebSocket`, with their defaults. */
export const WEBSOCKET_DEFAULTS = {
  autoConnect: true,
  reconnect: true,
  reconnectDelay: 3000,
  maxReconnectAttempts: 10,
  heartbeatInterval: 25_000
} as const;

export interface UseWebSocketOptions {
  /** The WebSocket URL, e.g. `ws://localhost:3001/ws`; a function is asked on every attempt. */
  url: string | (() => string);
  /**
   * A JWT, sent in an `auth` frame. A function is asked again on every
   * attempt, which also lets the client come back after the token expired.
   */
  token?: string | (() => string | Promise<string>);
  /** Connect on mount (default true); otherwise call `connect()`. */
  autoConnect?: boolean;
  /** Reconnect after the connection drops (default true). */
  reconnect?: boolean;
  /** The first reconnection window in ms (3000), doubling up to 30 s; full jitter. */
  reconnectDelay?: number;
  /** Attempts in a row before giving up, state `closed` (10); `Infinity` for no limit. */
  maxReconnectAttempts?: number;
  /** How often to ping, in ms (25000); the server's interval wins when shorter. */
  heartbeatInterval?: number;
  /** Another WebSocket implementation, e.g. `ws` in Node. */
  createSocket?: WebSocketFactory;
}

/** Anything the hooks can follow channels on. */
export type RealtimeSource =
  RealtimeClient | { readonly client: RealtimeClient | null } | null | undefined;

/** What `useWebSocket` returns: React state of one connection. */
export interface UseWebSocketResult {
  /** The client; `null` only when `useWebSocket` was given no connection. */
  readonly client: RealtimeClient | null;
  readonly connectionState: ConnectionState;
  /** Who the server says we are, once authenticated. */
  readonly user: User | undefined;
  /** The last error the server sent without a request (or why it closed). */
  readonly error: RealtimeError | undefined;
  /** Connect (again, after `closed`); resolves once authenticated. */
  connect(): Promise<User>;
  /** Close a connection this hook opened; a shared one (`IRealtime`) is left open. */
  disconnect(): void;
}

export interface UseChannelOptions {
  /** Called for every message that arrives while mounted, history replays included. */
  onMessage?: (message: Message) => void;
  /** Ask for the channel's retained history when this opens the channel. */
  history?: boolean;
}

export interface UseChannelResult {
  /** Messages in the server's order, oldest first (the last 1000). */
  readonly messages: readonly Message[];
  /** Publish; resolves with the id the server acknowledged. */
  send(event: string, payload?: unknown, options?: { echo?: boolean }): Promise<string>;
  readonly isSubscribed: boolean;
}

export interface UsePresenceResult {
  /** Who is on the channel now, one entry per user. */
  readonly members: readonly Member[];
  /** Set our status (and `meta`, which replaces the previous one); resolves with the members. */
  updateStatus(status: Status, meta?: Record<string, unknown>): Promise<Member[]>;
}

export interface UseRealtimeChannelResult extends UseChannelResult, UsePresenceResult {
  readonly connectionState: ConnectionState;
}

/** A source that says when its lobby moves: an `IRealtime`. */
interface LobbySource {
  readonly lobby: string;
  readonly lobbyChanged: ISignal<unknown, string>;
}

function lobbySourceOf(source: RealtimeSource): LobbySource | undefined {
  const candidate = source as Partial<LobbySource> | null | undefined;
  return candidate && typeof candidate === 'object' && candidate.lobbyChanged
    ? (candidate as LobbySource)
    : undefined;
}

/**
 * `realtime.lobby` as React state: the component re-renders when the `lobby`
 * setting moves it. `useChannel` and `usePresence` do this themselves when
 * given an `IRealtime`, so `usePresence(realtime, realtime.lobby)` follows it.
 */
export function useLobby(realtime: RealtimeSource): string | undefined {
  const source = lobbySourceOf(realtime);
  const subscribe = useCallback(
    (notify: () => void) => {
      if (!source) {
        return () => undefined;
      }
      const slot = () => notify();
      source.lobbyChanged.connect(slot);
      return () => {
        source.lobbyChanged.disconnect(slot);
      };
    },
    [source]
  );
  return useSyncExternalStore(subscribe, () => source?.lobby);
}

/** The client behind a source. */
export function clientOf(source: RealtimeSource): RealtimeClient | null {
  if (!source) {
    return null;
  }
  return source instanceof RealtimeClient ? source : source.client;
}

function isOptions(value: unknown): value is UseWebSocketOptions {
  return (
    typeof value === 'object' &&
    value !== null &&
    !(value instanceof RealtimeClient) &&
    'url' in value
  );
}

/**
 * A connection as React state. With options, this hook owns a client: it
 * connects on mount (unless `autoConnect` is false) and closes on unmount, and
 * a new one is made only when `url`, `token` or an option changes value (new
 * function identities on each render do not count: the latest is used).
 */
export function useWebSocket(
  options: UseWebSocketOptions | RealtimeSource
): UseWebSocketResult {
  const own = isOptions(options) ? options : undefined;
  const latest = useRef(own);
  latest.current = own;

  const autoConnect = own?.autoConnect ?? WEBSOCKET_DEFAULTS.autoConnect;
  const settings: Settings | undefined = own && {
    url: typeof own.url === 'string' ? own.url : FUNCTION,
    token:
      own.token === undefined || typeof own.token === 'string' ? own.token : FUNCTION,
    reconnect: own.reconnect ?? WEBSOCKET_DEFAULTS.reconnect,
    reconnectDelay: own.reconnectDelay ?? WEBSOCKET_DEFAULTS.reconnectDelay,
    maxReconnectAttempts:
      own.maxReconnectAttempts ?? WEBSOCKET_DEFAULTS.maxReconnectAttempts,
    heartbeatInterval: own.heartbeatInterval ?? WEBSOCKET_DEFAULTS.heartbeatInterval
  };
  const key = settings && JSON.stringify(settings);
  const owned = useMemo(
    () => (settings ? createClient(settings, latest) : null),
    // The settings are all in `key`; functions are read through `latest`.
    // eslint-disable-next-line react-hooks/exhaustive-deps
    [key]
  );
  const client = owned ?? clientOf(options as RealtimeSource);

  // Whether an owned client was asked to connect: until then it is `closed`,
  // not the `connecting` a new client starts in.
  const [started, setStarted] = useState<RealtimeClient | null>(null);
  const connect = useCallback((): Promise<User> => {
    if (!client) {
      return Promise.reject(new RealtimeError('closed', 'no connection'));
    }
    if (owned) {
      setStarted(owned);
    }
    return client.connect();
  }, [client, owned]);
  const disconnect = useCallback(() => owned?.close(), [owned]);

  useEffect(() => {
    return () => owned?.close();
  }, [owned]);
  useEffect(() => {
    if (owned && autoConnect) {
      connect().catch(() => {
        // Refused or given up: the state says `closed` and `error` says why.
      });
    }
  }, [owned, autoConnect, connect]);

  const subscribe = useCallback(
    (notify: () => void) => {
      if (!client) {
        return () => undefined;
      }
      const offs = [
        client.stateChanged.connect(notify),
        client.authenticated.connect(notify)
      ];
      return () => offs.forEach(off => off());
    },
    [client]
  );
  const state = useSyncExternalStore(subscribe, () => client?.state ?? 'closed');
  const user = useSyncExternalStore(subscribe, () => client?.user);

  const [error, setError] = useState<RealtimeError | undefined>(undefined);
  useEffect(() => {
    setError(undefined);
    if (!client) {
      return;
    }
    const offs = [
      client.errors.connect(setError),
      client.authenticated.connect(() => setError(undefined))
    ];
    return () => offs.forEach(off => off());
  }, [client]);

  const connectionState: ConnectionState =
    owned && !autoConnect && started !== owned ? 'closed' : state;
  return useMemo(
    () => ({ client, connectionState, user, error, connect, disconnect }),
    [client, connectionState, user, error, connect, disconnect]
  );
}

/** A channel's snapshot as React state; holds the channel while mounted. */
function useChannelSnapshot(
  client: RealtimeClient | null,
  name: string,
  options: UseChannelOptions = {}
): ChannelSnapshot {
  const onMessage = useRef(options.onMessage);
  onMessage.current = options.onMessage;
  const history = useRef(options.history);
  history.current = options.history;

  const subscribe = useCallback(
    (notify: () => void) => {
      if (!client || !name) {
        return () => undefined;
      }
      const lease = openChannel(client, name, { history: history.current });
      const offs = [
        lease.store.changed.connect(notify),
        lease.store.received.connect(message => onMessage.current?.(message))
      ];
      return () => {
        offs.forEach(off => off());
        lease.release();
      };
    },
    [client, name]
  );
  const getSnapshot = useCallback(
    () =>
      (client && name ? peekChannel(client, name)?.snapshot : undefined) ??
      EMPTY_SNAPSHOT,
    [client, name]
  );
  return useSyncExternalStore(subscribe, getSnapshot);
}

/** Messages of a channel as state, and `send`. */
export function useChannel(
  ws: RealtimeSource,
  channelId: string,
  options: UseChannelOptions = {}
): UseChannelResult {
  const client = clientOf(ws);
  // Re-render when an IRealtime's lobby moves: the caller's `realtime.lobby` is new.
  useLobby(ws);
  const { messages, isSubscribed } = useChannelSnapshot(client, channelId, options);
  const send = useCallback(
    (event: string, payload: unknown = null, sendOptions?: { echo?: boolean }) => {
      const store = client ? peekChannel(client, channelId) : undefined;
      if (!store) {
        return Promise.reject(
          new RealtimeError('not_subscribed', 'the channel is not open', channelId)
        );
      }
      return store.channel.publish(event, payload, sendOptions);
    },
    [client, channelId]
  );
  return useMemo(
    () => ({ messages, send, isSubscribed }),
    [messages, send, isSubscribed]
  );
}

/** Members of a presence channel as state, and our own status. */
export function usePresence(ws: RealtimeSource, channelId: string): UsePresenceResult {
  const client = clientOf(ws);
  useLobby(ws);
  const { members } = useChannelSnapshot(client, channelId);
  const updateStatus = useCallback(
    (status: Status, meta?: Record<string, unknown>) => {
      const store = client ? peekChannel(client, channelId) : undefined;
      if (!store) {
        return Promise.reject(
          new RealtimeError('not_subscribed', 'the channel is not open', channelId)
        );
      }
      return store.channel.setPresence(
        meta === undefined ? { status } : { status, meta }
      );
    },
    [client, channelId]
  );
  return useMemo(() => ({ members, updateStatus }), [members, updateStatus]);
}

/** A connection and one channel: state, messages, members, `send`, `updateStatus`. */
export function useRealtimeChannel(
  options: UseWebSocketOptions | RealtimeSource,
  channel: string,
  channelOptions: UseChannelOptions = {}
): UseRealtimeChannelResult {
  const ws = useWebSocket(options);
  const { messages, send, isSubscribed } = useChannel(ws, channel, channelOptions);
  const { members, updateStatus } = usePresence(ws, channel);
  const { connectionState } = ws;
  return useMemo(
    () => ({ connectionState, isSubscribed, messages, members, send, updateStatus }),
    [connectionState, isSubscribed, messages, members, send, updateStatus]
  );
}

export interface UseSharedStateResult {
  /** The values by key (a new object after each change). */
  readonly state: Readonly<Record<string, unknown>>;
  /** Whether the server's snapshot has arrived. */
  readonly loaded: boolean;
  /** The entry of `key`: value, version and who wrote it. */
  entry(key: string): StateEntry | undefined;
  /** The version of `key`, for `compareAndSet`. */
  version(key: string): string | undefined;
  /** Set `key` (null deletes it); resolves with the new version. */
  set(key: string, value: unknown): Promise<string>;
  /** Delete `key`. */
  remove(key: string): Promise<string>;
  /**
   * Set `key` only if its version is `ifVersion` (undefined: only if absent); rejects
   * with a `RealtimeError` of code `conflict` (its `entry`: the entry as it is).
   */
  compareAndSet(
    key: string,
    value: unknown,
    ifVersion: string | undefined
  ): Promise<string>;
}

interface StateView {
  stamp: number;
  state: Readonly<Record<string, unknown>>;
  loaded: boolean;
}

const NO_STATE: StateView = Object.freeze({
  stamp: -1,
  state: Object.freeze({}),
  loaded: false
});
const stateViews = new WeakMap<SharedState, StateView>();

/** One immutable view per change of `shared`, as `useSyncExternalStore` wants. */
function viewOf(shared: SharedState | undefined): StateView {
  if (!shared) {
    return NO_STATE;
  }
  const cached = stateViews.get(shared);
  if (cached && cached.stamp === shared.stamp) {
    return cached;
  }
  const view = {
    stamp: shared.stamp,
    state: Object.freeze(shared.toObject()),
    loaded: shared.isLoaded
  };
  stateViews.set(shared, view);
  return view;
}

/**
 * A channel's shared state as React state: re-renders on every change, whoever made
 * it, on any server; writes go through the server. The channel is shared with the
 * rest of the page, as `useChannel`'s is.
 */
export function useSharedState(
  ws: RealtimeSource,
  channelId: string
): UseSharedStateResult {
  const client = clientOf(ws);
  useLobby(ws);
  const subscribe = useCallback(
    (notify: () => void) => {
      if (!client || !channelId) {
        return () => undefined;
      }
      // State first: the channel is then subscribed with `state: true` at once.
      const shared = client.sharedState(channelId);
      const lease = openChannel(client, channelId);
      const offs = [shared.changed.connect(notify), shared.loaded.connect(notify)];
      notify();
      return () => {
        offs.forEach(off => off());
        lease.release();
      };
    },
    [client, channelId]
  );
  const shared = useCallback(
    (): SharedState | undefined =>
      client && channelId ? peekChannel(client, channelId)?.channel.state : undefined,
    [client, channelId]
  );
  const view = useSyncExternalStore(
    subscribe,
    useCallback(() => viewOf(shared()), [shared])
  );
  const write = useCallback(
    (run: (state: SharedState) => Promise<string>) => {
      const state = shared();
      return state
        ? run(state)
        : Promise.reject(
            new RealtimeError('not_subscribed', 'the channel is not open', channelId)
          );
    },
    [shared, channelId]
  );
  return useMemo(
    () => ({
      state: view.state,
      loaded: view.loaded,
      entry: (key: string) => shared()?.entries.get(key),
      version: (key: string) => shared()?.entries.get(key)?.version,
      set: (key: string, value: unknown) => write(state => state.set(key, value)),
      remove: (key: string) => write(state => state.delete(key)),
      compareAndSet: (key: string, value: unknown, ifVersion: string | undefined) =>
        write(state => state.compareAndSet(key, value, ifVersion))
    }),
    [view, write, shared]
  );
}

// -- the client a hook owns ----------------------------------------------------

const FUNCTION = '(function)';

interface Settings {
  url: string;
  token: string | undefined;
  reconnect: boolean;
  reconnectDelay: number;
  maxReconnectAttempts: number;
  heartbeatInterval: number;
}

function createClient(
  settings: Settings,
  latest: { readonly current: UseWebSocketOptions | undefined }
): RealtimeClient {
  const options: ClientOptions = {
    url:
      settings.url === FUNCTION
        ? () => {
            const url = latest.current?.url;
            return typeof url === 'function' ? url() : (url ?? '');
          }
        : settings.url,
    // Read when a socket is made, so that a new function each render is no new client.
    createSocket: url => (latest.current?.createSocket ?? browserSocket)(url),
    heartbeatInterval: settings.heartbeatInterval,
    reconnectDelay: settings.reconnectDelay,
    // `reconnect: false` is no attempt at all after a lost connection.
    maxReconnectAttempts: settings.reconnect ? settings.maxReconnectAttempts : 0
  };
  if (settings.token !== undefined) {
    options.token =
      settings.token === FUNCTION
        ? () => {
            const token = latest.current?.token;
            return typeof token === 'function' ? token() : (token ?? '');
          }
        : settings.token;
  }
  return new RealtimeClient(options);
}

const browserSocket = (url: string): WebSocketLike =>
  new WebSocket(url) as unknown as WebSocketLike;
