/**
 * What the chat tells a person who is not looking at it: a JupyterLab
 * notification when someone mentions them, and an unread count on the panel's
 * tab while the panel is hidden. Listens to the lobby itself, so it works
 * with the panel closed.
 */
import type { Message } from './client';
import { mentions } from './mentions';
import { chatEntryOf, RealtimeModel } from './model';

/**
 * Messages older than the page (by this much) are history, replayed on
 * subscribe: read before, or at least not news. Server time against page
 * time, so a little slack for clocks.
 */
const HISTORY_SLACK_MS = 2000;

/**
 * Mentions from one sender within this long of the last alert are gathered into
 * one ("Mallory mentioned you 424 times"): a flood of mentions is one toast,
 * updated at most this often, not one toast each.
 */
export const MENTION_WINDOW_MS = 5_000;

export interface ChatAlerts {
  /**
   * A mention of me: say who, and what (the first of it). `count` is how many
   * `authorId` has sent since this run of alerts began (1 for the first); an
   * alert of the same run replaces the one before it.
   */
  mentioned(authorId: string, author: string, text: string, count: number): void;
  /** One more message I have not seen. */
  unread(): void;
  /** Whether the chat is in view now (then nothing is unread). */
  isChatVisible(): boolean;
}

export class ChatNotifier {
  constructor(
    private _model: RealtimeModel,
    private _alerts: ChatAlerts,
    private _startedAt = Date.now()
  ) {
    this._follow();
    // A new lobby (the setting changed): its messages from now on.
    _model.lobbyChanged.connect(this._follow, this);
  }

  dispose(): void {
    this._off();
    this._model.lobbyChanged.disconnect(this._follow, this);
  }

  private _follow(): void {
    this._off();
    this._off = this._model.lobby.messages.connect(message => this._onMessage(message));
  }

  private _onMessage(message: Message): void {
    const entry = chatEntryOf(message);
    const me = this._model.me;
    if (!entry || !me || entry.userId === me.userId) {
      return;
    }
    if (entry.ts < this._startedAt - HISTORY_SLACK_MS) {
      return;
    }
    if (!this._alerts.isChatVisible()) {
      this._alerts.unread();
    }
    // By the name others see now (a chosen one, through presence), or the id.
    const myself = { userId: me.userId, name: this._model.nameOf(me.userId) };
    if (mentions(entry.text, myself) && entry.userId !== null) {
      const authorId = entry.userId;
      this._mentions.add(authorId, entry.text, (text, count) =>
        this._alerts.mentioned(authorId, this._model.labelOf(authorId), text, count)
      );
    }
  }

  private _mentions = new MentionThrottle();
  private _off: () => void = () => undefined;
}

/**
 * Per sender: the first mention is told at once; those that follow within
 * `MENTION_WINDOW_MS` are counted and told once when it ends, with the total
 * and the latest text, and so on while they keep coming.
 */
export class MentionThrottle {
  constructor(private _windowMs = MENTION_WINDOW_MS) {}

  add(sender: string, text: string, tell: (text: string, count: number) => void): void {
    const run = this._runs.get(sender);
    if (run) {
      run.count += 1;
      run.pending = text;
      run.tell = tell;
      return;
    }
    this._runs.set(sender, { count: 1, pending: null, tell });
    tell(text, 1);
    this._wait(sender);
  }

  private _wait(sender: string): void {
    setTimeout(() => {
      const run = this._runs.get(sender);
      if (!run) {
        return;
      }
      if (run.pending === null) {
        this._runs.delete(sender); // quiet for a whole window: the run is over
        return;
      }
      const text = run.pending;
      run.pending = null;
      run.tell(text, run.count);
      this._wait(sender);
    }, this._windowMs);
  }

  private _runs = new Map<
    string,
    {
      count: number;
      pending: string | null;
      tell: (text: string, count: number) => void;
    }
  >();
}
