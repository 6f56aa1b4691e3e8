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

export interface ChatAlerts {
  /** A mention of me: say who, and what (the first of it). */
  mentioned(author: string, text: string): void;
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
    if (mentions(entry.text, myself)) {
      this._alerts.mentioned(this._model.nameOf(entry.userId), entry.text);
    }
  }

  private _off: () => void = () => undefined;
}
