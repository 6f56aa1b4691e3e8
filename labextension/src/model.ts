/**
 * What the front end shows, in one place: the connection, the lobby (who is
 * here, their status, what each has open), names for the lobby chat, and the
 * presence channel of every open document. Views only read it and listen to
 * `changed`; the side panel reads the lobby's members and chat through the
 * React hooks, on the same shared channel (`openChannel`).
 */
import { ISignal, Signal } from '@lumino/signaling';

import {
  Channel,
  ConnectionState,
  isPerson,
  Member,
  Message,
  RealtimeClient,
  Status,
  User
} from './client';
import { CELL_EXECUTED_EVENT, CellRef, ExecutionEntry, executionOf } from './activity';
import { documentChannel, LOBBY } from './channels';
import { labelled } from './names';
import { ChannelLease, openChannel } from './store';
import { TrailingThrottle } from './throttle';

/** Executions remembered per document; the server keeps 100 messages by default. */
const MAX_EXECUTIONS = 100;

/** Where one is sent at most this often: 250 ms is four updates a second. */
export const WHERE_INTERVAL = 250;

/** The chat event on the lobby channel, `{text}`: the same as the Python ChatWidget's. */
export const CHAT_EVENT = 'chat:message';

/** Longest chat message sent; the server's frame limit is far above it. */
export const MAX_CHAT_LENGTH = 4000;

export interface ChatEntry {
  id: string;
  userId: string | null;
  text: string;
  ts: number;
}

/** A lobby message as a chat entry, if it is one a person could read. */
export function chatEntryOf(message: Message): ChatEntry | undefined {
  if (message.event !== CHAT_EVENT) {
    return undefined;
  }
  const payload = message.payload as { text?: unknown } | null;
  if (!payload || typeof payload.text !== 'string') {
    return undefined; // someone else's client; nothing a person could read
  }
  return {
    id: message.id,
    userId: message.from?.userId ?? null,
    text: payload.text,
    ts: message.ts
  };
}

const STATUS_KEY = 'nyo-realtime:status';

/** How many times names of people who left are asked for before giving up. */
const LOOK_UP_TRIES = 4;

export interface ModelOptions {
  /**
   * Everyone the lobby has known, including people who left (the HTTP API's
   * `members?include=offline`): names for chat history written by people who
   * are no longer here. Without it, they show as "someone who left".
   */
  knownPeople?: () => Promise<Member[]>;
  /** Which server's files the documents are (see `documentChannel`); '' when shared. */
  documentScope?: string;
  /** The lobby's channel name; `LOBBY` by default. */
  lobby?: string;
}

export class RealtimeModel {
  private _documentChannel(path: string): string {
    return documentChannel(path, this._options.documentScope ?? '');
  }

  constructor(
    readonly client: RealtimeClient,
    private _options: ModelOptions = {}
  ) {
    this._lobbyName = _options.lobby ?? LOBBY;
    this._lobbyLease = this._joinLobby(this._lobbyName);
    client.stateChanged.connect(() => this._changed.emit());
    client.authenticated.connect(user => {
      this._remember(user);
      this._changed.emit();
    });
    const saved = readStatus();
    if (saved) {
      void this.lobby.setPresence({ status: saved });
    }
  }

  /** The lobby channel: everyone here, their status and meta, and the chat. */
  get lobby(): Channel {
    return this._lobbyLease.channel;
  }

  /** The lobby's channel name (the `lobby` setting). */
  get lobbyName(): string {
    return this._lobbyName;
  }

  /** The lobby moved to another channel; views following its messages follow it. */
  get lobbyChanged(): ISignal<this, Channel> {
    return this._lobbyChanged;
  }

  /**
   * Move to another lobby (the setting changed): leave the old one and join the
   * new, taking one's status and meta (open documents, where one is) along.
   */
  setLobby(name: string): void {
    if (name === this._lobbyName) {
      return;
    }
    const old = this._lobbyLease;
    const status = old.channel.status;
    const meta = old.channel.meta;
    const offOld = this._lobbyOff;
    this._lobbyName = name;
    this._lobbyLease = this._joinLobby(name);
    offOld();
    old.release();
    if (status !== undefined || meta !== undefined) {
      void this.lobby
        .setPresence({ status, meta })
        .catch(error => console.warn('nyo-realtime: presence update failed', error));
    }
    this._lobbyChanged.emit(this.lobby);
    this._changed.emit();
  }

  /**
   * Hold `name` with its history, for the page's lifetime (or until the lobby
   * moves): the chat shows it whenever the panel is first opened.
   */
  private _joinLobby(name: string): ChannelLease {
    const lease = openChannel(this.client, name, { history: true });
    const offMembers = lease.channel.membersChanged.connect(members => {
      for (const member of members.values()) {
        this._remember(member);
      }
      this._changed.emit();
    });
    const offMessages = lease.channel.messages.connect(message =>
      this._onMessage(message)
    );
    this._lobbyOff = () => {
      offMembers();
      offMessages();
    };
    return lease;
  }

  /** Anything shown changed: members, statuses, connection, user. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** A document's set of other people changed; the argument is its path. */
  get documentChanged(): ISignal<this, string> {
    return this._documentChanged;
  }

  get state(): ConnectionState {
    return this.client.state;
  }

  get me(): User | undefined {
    return this.client.user;
  }

  get myStatus(): Status {
    return this.lobby.status ?? 'online';
  }

  /** Lobby members: me first, then by name. */
  get members(): Member[] {
    return this.sorted(this.lobby.members.values());
  }

  /** Members as people see them listed: me first, then by name; kernels last. */
  sorted(members: Iterable<Member>): Member[] {
    const me = this.me?.userId;
    return [...members].sort((a, b) =>
      isPerson(a) !== isPerson(b)
        ? isPerson(a)
          ? -1
          : 1
        : a.userId === me
          ? -1
          : b.userId === me
            ? 1
            : a.name.localeCompare(b.name)
    );
  }

  /** The lobby's people (kernels are not people: docs/protocol.md, `kind`). */
  get people(): Member[] {
    return this.members.filter(isPerson);
  }

  /** A display name for a user id, also for people who have left. */
  nameOf(userId: string | null): string {
    if (userId === null) {
      return 'Server';
    }
    return this._people.get(userId)?.name ?? 'someone who left';
  }

  /**
   * The name to show alone (a chat author, a run mark, a mention toast, the
   * member list): `nameOf`, with the user id when another person met on this
   * page has a name or id that looks like it (names.ts), so that nobody passes
   * for somebody else whatever name they were given.
   */
  labelOf(userId: string | null): string {
    const name = this.nameOf(userId);
    return userId === null ? name : labelled(name, userId, this._people.values());
  }

  personOf(userId: string): {
    userId: string;
    name: string;
    color?: string;
    avatar_url?: string;
  } {
    return this._people.get(userId) ?? { userId, name: this.nameOf(userId) };
  }

  /** Executions in a document, oldest first, from its history and live. */
  executions(path: string): readonly ExecutionEntry[] {
    return this._executions.get(path) ?? [];
  }

  /**
   * The cell one has active in `path`. Sent coalesced (at most 4/s, the last
   * one wins): on the document's channel for the marks on its cells, and on
   * the lobby for the panel's "where is everyone".
   */
  setActiveCell(path: string, cell: CellRef): void {
    this._where.push({ path, cell });
  }

  /** Tell everyone with `path` open that we ran `cell`. */
  async cellExecuted(path: string, cell: CellRef, success: boolean): Promise<void> {
    const channel = this._documents.get(path)?.lease.channel;
    if (channel) {
      await channel.publish(CELL_EXECUTED_EVENT, { cell, success });
    }
  }

  /** Set one's status on the lobby and on every open document's channel. */
  async setStatus(status: Status): Promise<void> {
    writeStatus(status);
    const documents = [...this._documents.values()].map(({ lease }) =>
      lease.channel.setPresence({ status })
    );
    const done = Promise.all([this.lobby.setPresence({ status }), ...documents]);
    // Shown at once: the lobby remembers it even before the server confirms.
    this._changed.emit();
    try {
      await done;
    } finally {
      this._changed.emit(); // a refused status is taken back
    }
  }

  // -- documents ----------------------------------------------------------------

  /** Follow a document's presence; counted, as several views may show one path. */
  openDocument(path: string): void {
    const open = this._documents.get(path);
    if (open) {
      open.count++;
    } else {
      // With its history: who ran what before we opened it (or reloaded).
      const lease = openChannel(this.client, this._documentChannel(path), {
        history: true
      });
      const channel = lease.channel;
      const offMembers = channel.membersChanged.connect(members => {
        // Known by name too: a run mark's author is labelled among everyone met.
        for (const member of members.values()) {
          this._remember(member);
        }
        this._documentChanged.emit(path);
      });
      for (const message of lease.store.snapshot.messages) {
        this._onDocumentMessage(path, message);
      }
      const offMessages = lease.store.received.connect(message => {
        if (this._onDocumentMessage(path, message)) {
          this._documentChanged.emit(path);
          this._changed.emit();
        }
      });
      const off = () => {
        offMembers();
        offMessages();
      };
      this._documents.set(path, { count: 1, lease, off });
      // One status per person: a document shows the same one as the lobby.
      if (this.myStatus !== 'online') {
        void channel.setPresence({ status: this.myStatus }).catch(() => {
          // restored with the subscription; nothing else to do
        });
      }
      this._publishOpen();
    }
  }

  closeDocument(path: string): void {
    const open = this._documents.get(path);
    if (!open) {
      return;
    }
    if (open.count > 1) {
      open.count--;
      return;
    }
    this._documents.delete(path);
    this._executions.delete(path);
    // Left unless another extension still follows it (`IRealtime`).
    open.off();
    open.lease.release();
    this._publishOpen();
    this._documentChanged.emit(path);
  }

  /** Paths of the documents open on this page, sorted. */
  get openDocuments(): string[] {
    return [...this._documents.keys()].sort();
  }

  /** Other people who have `path` open. */
  othersOn(path: string): Member[] {
    const channel = this._documents.get(path)?.lease.channel;
    const me = this.me?.userId;
    return channel ? [...channel.members.values()].filter(m => m.userId !== me) : [];
  }

  /** Paths a member has open, from the lobby meta each client publishes. */
  /**
   * Whether `member`'s paths are files of this server: on JupyterHub another
   * user's `Untitled.ipynb` is in their home, not ours, so it cannot be opened here.
   */
  sharesFiles(member: Member): boolean {
    const scope = member.meta?.scope;
    return (
      (typeof scope === 'string' ? scope : '') === (this._options.documentScope ?? '')
    );
  }

  openPaths(member: Member): string[] {
    const open = member.meta?.open;
    return Array.isArray(open)
      ? open.filter((p): p is string => typeof p === 'string')
      : [];
  }

  dispose(): void {
    for (const { lease, off } of this._documents.values()) {
      off();
      lease.release();
    }
    this._documents.clear();
    this._where.cancel();
    this._lobbyLease.release();
    this.client.close();
    Signal.clearData(this);
  }

  private _publishOpen(): void {
    // One presence update per burst of opens (a restored layout opens many).
    if (this._publishTimer !== undefined) {
      return;
    }
    this._publishTimer = setTimeout(() => {
      this._publishTimer = undefined;
      const open = [...this._documents.keys()].sort();
      const scope = this._options.documentScope ?? '';
      const meta: Record<string, unknown> = { ...(this.lobby.meta ?? {}), open, scope };
      // Not "on cell 3 of" a notebook one has closed.
      const where = meta.where as { path?: string } | undefined;
      if (where && !open.includes(where.path ?? '')) {
        delete meta.where;
      }
      void this.lobby
        .setPresence({ meta })
        .catch(error => console.warn('nyo-realtime: presence update failed', error));
    }, 50);
  }

  /** Remember an execution; whether it was a new one. */
  private _onDocumentMessage(path: string, message: Message): boolean {
    const entry = executionOf(message);
    if (!entry) {
      return false;
    }
    const entries = this._executions.get(path) ?? [];
    if (entries.some(e => e.id === entry.id)) {
      return false; // a history replay after reconnecting
    }
    this._executions.set(path, [...entries, entry].slice(-MAX_EXECUTIONS));
    if (entry.userId !== null && !this._people.has(entry.userId)) {
      this._lookUpPeople();
    }
    return true;
  }

  /** Send where one is: the document's channel and the lobby, one update each. */
  private _sendWhere({ path, cell }: { path: string; cell: CellRef }): void {
    const channel = this._documents.get(path)?.lease.channel;
    if (!channel) {
      return; // closed meanwhile
    }
    const warn = (error: unknown) =>
      console.warn('nyo-realtime: presence update failed', error);
    void channel.setPresence({ meta: { ...(channel.meta ?? {}), cell } }).catch(warn);
    void this.lobby
      .setPresence({ meta: { ...(this.lobby.meta ?? {}), where: { path, cell } } })
      .catch(warn);
  }

  /** Chat authors we have no name for are looked up (people who left). */
  private _onMessage(message: Message): void {
    const entry = chatEntryOf(message);
    if (entry && entry.userId !== null && !this._people.has(entry.userId)) {
      this._lookUpPeople();
    }
  }

  /**
   * Names of authors who left, asked once per burst of history. An author met
   * while a request is out (it may have been answered before their message
   * came) is asked again once it returns; a failed request is tried again
   * a few times, later, rather than leave names unknown for good.
   */
  private _lookUpPeople(failures = 0): void {
    const knownPeople = this._options.knownPeople;
    if (!knownPeople) {
      return;
    }
    if (this._lookingUp) {
      this._askAgain = true;
      return;
    }
    this._lookingUp = true;
    // Let the whole history arrive first: one request, not one per message.
    setTimeout(
      () => {
        this._askAgain = false;
        let failed = false;
        knownPeople()
          .then(members => {
            for (const member of members) {
              if (!this._people.has(member.userId)) {
                this._remember(member);
              }
            }
            this._changed.emit();
          })
          .catch(error => {
            failed = true;
            console.warn('nyo-realtime: could not look up names', error);
          })
          .finally(() => {
            this._lookingUp = false;
            if (failed && failures < LOOK_UP_TRIES - 1) {
              this._lookUpPeople(failures + 1);
            } else if (this._askAgain) {
              this._lookUpPeople();
            }
          });
      },
      failures === 0 ? 100 : 1000 * 2 ** failures
    );
  }

  private _remember(who: Member | User): void {
    this._people.set(who.userId, {
      userId: who.userId,
      name: who.name || who.userId,
      color: who.color,
      avatar_url: who.avatar_url
    });
  }

  private _changed = new Signal<this, void>(this);
  private _documentChanged = new Signal<this, string>(this);
  private _lobbyLease: ChannelLease;
  private _lobbyName: string;
  private _lobbyOff: () => void = () => undefined;
  private _lobbyChanged = new Signal<this, Channel>(this);
  /** Open documents by path: how many views show each, and its channel. */
  private _documents = new Map<
    string,
    { count: number; lease: ChannelLease; off: () => void }
  >();
  private _people = new Map<
    string,
    { userId: string; name: string; color?: string; avatar_url?: string }
  >();
  private _publishTimer: ReturnType<typeof setTimeout> | undefined;
  private _executions = new Map<string, ExecutionEntry[]>();
  private _where = new TrailingThrottle<{ path: string; cell: CellRef }>(
    where => this._sendWhere(where),
    WHERE_INTERVAL
  );
  private _lookingUp = false;
  private _askAgain = false;
}

function readStatus(): Status | undefined {
  try {
    const value = window.localStorage.getItem(STATUS_KEY);
    return value === 'online' || value === 'away' || value === 'busy'
      ? value
      : undefined;
  } catch {
    return undefined; // storage may be disabled; the status then starts online
  }
}

function writeStatus(status: Status): void {
  try {
    window.localStorage.setItem(STATUS_KEY, status);
  } catch {
    // not remembered across reloads, which is all that is lost
  }
}
