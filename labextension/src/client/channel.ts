/**
 * One channel of a `RealtimeClient`: its messages (each once, in order), its
 * members, and what the application calls on it.
 */

import type { RealtimeClient } from './client';
import { RealtimeError } from './errors';
import { Emitter } from './events';
import { SharedState } from './state';
import type { Member, Message, Status } from './types';

/** A `since` no server knows; see `Channel.subscribeFrame`. */
export const FROM_START = '';

/** One channel as this client sees it: members (presence channels) and messages. */
export class Channel {
  /** Members by user id; kept whole across reconnections by `subscribed`. */
  readonly members = new Map<string, Member>();
  /** Every message, once, in the server's order. */
  readonly messages = new Emitter<Message>();
  /** The members changed (join, leave, status or meta, or a fresh list). */
  readonly membersChanged = new Emitter<Map<string, Member>>();
  /** The channel was left (`leave`, `unsubscribe`); it will not come back. */
  readonly disposed = new Emitter<void>();
  /**
   * A `subscribed` frame arrived. `recovered` false means some messages were
   * lost for good while away (history moved on): reload what you show.
   */
  readonly subscribed = new Emitter<{
    recovered: boolean;
    resubscribed: boolean;
  }>();

  /** Last message id seen, for `since` on resubscription. */
  lastId: string | undefined;
  channelType: string | undefined;
  /** Whether the server has confirmed the current subscription. */
  isSubscribed = false;
  /** The channel's shared state, once asked for (`RealtimeClient.sharedState`). */
  state: SharedState | undefined;

  private _seen = new Set<string>();
  private _seenOrder: string[] = [];
  private _status: Status | undefined;
  private _meta: Record<string, unknown> | undefined;
  private _wantsHistory: boolean;
  private _firstSubscribe = true;
  private _isDisposed = false;
  private _askedSince = false;

  constructor(
    readonly name: string,
    private _client: RealtimeClient,
    options: { history?: boolean }
  ) {
    this._wantsHistory = !!options.history;
  }

  /** Our own status and meta, re-sent after every reconnection. */
  get status(): Status | undefined {
    return this._status;
  }

  get meta(): Record<string, unknown> | undefined {
    return this._meta;
  }

  /** Send a message; resolves with its id once the server accepted it. */
  async publish(
    event: string,
    payload: unknown,
    options: { echo?: boolean } = {}
  ): Promise<string> {
    const frame: Record<string, unknown> = {
      type: 'broadcast',
      channel: this.name,
      event,
      payload
    };
    if (options.echo === false) {
      frame.echo = false;
    }
    const reply = await this._client.request(frame, { afterSubscribe: this });
    return reply.id as string;
  }

  /**
   * Set our status and/or meta on this presence channel. Remembered, so that
   * a reconnection restores it rather than falling back to "online".
   */
  async setPresence(update: {
    status?: Status;
    meta?: Record<string, unknown>;
  }): Promise<Member[]> {
    const before = { status: this._status, meta: this._meta };
    if (update.status !== undefined) {
      this._status = update.status;
    }
    if (update.meta !== undefined) {
      this._meta = update.meta;
    }
    if (!this._client.isOpen || !this.isSubscribed) {
      // Sent by `_restorePresence` once the subscription is live.
      return [...this.members.values()];
    }
    try {
      const reply = await this._client.request({
        type: 'presence',
        channel: this.name,
        ...update
      });
      return reply.members as Member[];
    } catch (error) {
      if (
        error instanceof RealtimeError &&
        error.code !== 'disconnected' &&
        error.code !== 'timeout'
      ) {
        // Refused by the server: nothing to put back after a reconnect.
        this._status = before.status;
        this._meta = before.meta;
      }
      throw error;
    }
  }

  /** The client this channel belongs to. */
  get client(): RealtimeClient {
    return this._client;
  }

  /** Stop following the channel; members and history are forgotten. */
  async leave(): Promise<void> {
    await this._client.unsubscribe(this.name);
  }

  // -- called by the client -------------------------------------------------

  /** The `subscribe` frame for the current state: `since` once anything was seen. */
  subscribeFrame(): Record<string, unknown> {
    const frame: Record<string, unknown> = {
      type: 'subscribe',
      channel: this.name
    };
    this._askedSince = this.lastId !== undefined;
    if (this.state) {
      frame.state = true;
    }
    if (this.lastId !== undefined) {
      frame.since = this.lastId;
    } else if (this._wantsHistory || !this._firstSubscribe) {
      // docs/protocol.md: an unknown `since` gets "what it still has", oldest first;
      // an empty id is never a real one, so this asks for the retained history.
      // After a reconnect with nothing seen yet, it is the only way not to
      // miss what was said meanwhile (at the cost of older messages, as the
      // Python client does).
      frame.since = FROM_START;
    }
    return frame;
  }

  onSubscribed(frame: any): void {
    this.isSubscribed = true;
    this.channelType = frame.channelType;
    if (Array.isArray(frame.members)) {
      // The list is the truth after a gap: joins and leaves we missed are in it.
      this.members.clear();
      for (const member of frame.members as Member[]) {
        this.members.set(member.userId, member);
      }
      this.membersChanged.emit(this.members);
    }
    const resubscribed = !this._firstSubscribe;
    this._firstSubscribe = false;
    // Only a resubscription from a real id can tell that something was lost:
    // FROM_START is always "not recovered" to the server, yet loses nothing.
    const recovered = this._askedSince ? frame.recovered !== false : true;
    this.subscribed.emit({ recovered, resubscribed });
  }

  onMessage(message: Message): void {
    if (this._seen.has(message.id)) {
      return;
    }
    this._seen.add(message.id);
    this._seenOrder.push(message.id);
    if (this._seenOrder.length > this._client.dedupWindow) {
      this._seen.delete(this._seenOrder.shift()!);
    }
    this.lastId = message.id;
    this.messages.emit(message);
  }

  onState(frame: any): void {
    this.state?.onSnapshot(frame);
  }

  onStateChanged(frame: any): void {
    if (!this.state) {
      return;
    }
    if (typeof frame.version === 'string') {
      // Numbered in the channel's one sequence, as message ids: a resubscription
      // from it asks for the messages and the state written after it.
      this.lastId = frame.version;
    }
    this.state.onChanged(frame);
  }

  onMember(type: string, member: Member): void {
    if (type === 'user:left') {
      this.members.delete(member.userId);
    } else {
      this.members.set(member.userId, member);
    }
    this.membersChanged.emit(this.members);
  }

  onMembers(members: Member[]): void {
    this.members.clear();
    for (const member of members) {
      this.members.set(member.userId, member);
    }
    this.membersChanged.emit(this.members);
  }

  onDisconnected(): void {
    this.isSubscribed = false;
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    this._isDisposed = true;
    this.isSubscribed = false;
    this.disposed.emit();
    this.disposed.clear();
    this.members.clear();
    this.messages.clear();
    this.membersChanged.clear();
    this.subscribed.clear();
    this.state?.changed.clear();
    this.state?.loaded.clear();
  }
}
