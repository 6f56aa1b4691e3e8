/**
 * Shared channels: every part of a page that follows the same channel on the
 * same connection (the side panel, the React hooks of another extension, the
 * document badges) holds one `Channel`, subscribed once, and the channel is
 * left when the last of them lets go.
 *
 * `RealtimeClient.channel(name)` hands out one `Channel` per name, but
 * `unsubscribe(name)` ends it for everyone; `openChannel` counts holders so
 * that one React component unmounting does not take the lobby away from the
 * rest of the page. It also keeps what the channel has received (messages,
 * members) as immutable snapshots, which is what React's
 * `useSyncExternalStore` needs, so that a component mounted late (a side panel
 * opened after the history arrived) still shows it.
 */
import { Channel, Emitter, Member, Message, RealtimeClient } from './client';

/** What a channel has received, as values React can compare by identity. */
export interface ChannelSnapshot {
  /** Messages in the server's order, oldest first, at most `MESSAGE_BUFFER`. */
  readonly messages: readonly Message[];
  /** Members of a presence channel, empty for other channel types. */
  readonly members: readonly Member[];
  /** Whether the server has confirmed the subscription on the current connection. */
  readonly isSubscribed: boolean;
}

export const EMPTY_SNAPSHOT: ChannelSnapshot = Object.freeze({
  messages: Object.freeze([]) as readonly Message[],
  members: Object.freeze([]) as readonly Member[],
  isSubscribed: false
});

/** Messages kept per channel; the server keeps 100 by default (docs/protocol.md). */
export const MESSAGE_BUFFER = 1000;

/** One followed channel and everything it received since it was opened. */
export class ChannelStore {
  /** Something in `snapshot` changed. */
  readonly changed = new Emitter<void>();
  /** A message arrived (once per message, history replays included). */
  readonly received = new Emitter<Message>();

  constructor(
    readonly client: RealtimeClient,
    readonly name: string,
    options: { history?: boolean } = {}
  ) {
    const channel = (this.channel = client.channel(name, options));
    this._offs = [
      channel.messages.connect(message => {
        this._messages = [...this._messages, message].slice(-MESSAGE_BUFFER);
        this._invalidate();
        this.received.emit(message);
      }),
      channel.membersChanged.connect(() => {
        this._members = [...channel.members.values()];
        this._invalidate();
      }),
      channel.subscribed.connect(() => this._invalidate()),
      channel.disposed.connect(() => {
        // Left by someone calling `client.unsubscribe` directly: nothing more comes.
        this._members = [];
        this.dispose();
      }),
      // A dropped connection ends every subscription without a channel event.
      client.stateChanged.connect(() => this._invalidate())
    ];
    this._members = [...channel.members.values()];
  }

  readonly channel: Channel;

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  /** The same object until something changes. */
  get snapshot(): ChannelSnapshot {
    const isSubscribed = !this._isDisposed && this.channel.isSubscribed;
    if (!this._snapshot || this._snapshot.isSubscribed !== isSubscribed) {
      this._snapshot = Object.freeze({
        messages: this._messages,
        members: this._members,
        isSubscribed
      });
    }
    return this._snapshot;
  }

  /** Stop listening to the channel; does not unsubscribe (see `openChannel`). */
  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    for (const off of this._offs) {
      off();
    }
    this._invalidate();
    this.changed.clear();
    this.received.clear();
  }

  private _invalidate(): void {
    this._snapshot = undefined;
    this.changed.emit();
  }

  private _offs: (() => void)[];
  private _messages: readonly Message[] = [];
  private _members: readonly Member[] = [];
  private _snapshot: ChannelSnapshot | undefined;
  private _isDisposed = false;
}

/** A hold on a shared channel; `release` once, when done with it. */
export interface ChannelLease {
  readonly channel: Channel;
  readonly store: ChannelStore;
  /** Let go; the last holder to let go leaves the channel. Safe to call twice. */
  release(): void;
}

interface Entry {
  store: ChannelStore;
  holders: number;
  timer?: ReturnType<typeof setTimeout>;
}

const registries = new WeakMap<RealtimeClient, Map<string, Entry>>();

function entriesOf(client: RealtimeClient): Map<string, Entry> {
  let entries = registries.get(client);
  if (!entries) {
    entries = new Map();
    registries.set(client, entries);
  }
  return entries;
}

/**
 * Follow `name` on `client`, sharing the subscription with every other holder.
 * `history` asks for the retained history, and only counts for the holder
 * that opens the channel first; later holders find it in the store.
 */
export function openChannel(
  client: RealtimeClient,
  name: string,
  options: { history?: boolean } = {}
): ChannelLease {
  const entries = entriesOf(client);
  let entry = entries.get(name);
  if (!entry || entry.store.isDisposed) {
    entry = { store: new ChannelStore(client, name, options), holders: 0 };
    entries.set(name, entry);
  }
  if (entry.timer !== undefined) {
    clearTimeout(entry.timer);
    entry.timer = undefined;
  }
  entry.holders++;
  const held = entry;
  let released = false;
  return {
    channel: held.store.channel,
    store: held.store,
    release: () => {
      if (released) {
        return;
      }
      released = true;
      held.holders--;
      if (held.holders > 0) {
        return;
      }
      // Not at once: React lets go and takes hold again in one go when a
      // component moves or under StrictMode; that must not resubscribe.
      held.timer = setTimeout(() => {
        held.timer = undefined;
        if (held.holders > 0 || entries.get(name) !== held) {
          return;
        }
        entries.delete(name);
        held.store.dispose();
        client.unsubscribe(name).catch(() => {
          // The connection went first; the server dropped the subscription with it.
        });
      }, 0);
    }
  };
}

/** The store of `name` if someone holds it, without opening it. */
export function peekChannel(
  client: RealtimeClient,
  name: string
): ChannelStore | undefined {
  const store = registries.get(client)?.get(name)?.store;
  return store && !store.isDisposed ? store : undefined;
}
