/**
 * The views: the status bar item, the side panel, and the presence badge on
 * each document's toolbar. Plain DOM inside Lumino widgets; each view redraws
 * from the model when the model says something changed.
 */
import { Widget } from '@lumino/widgets';

import { ConnectionState, Member, STATUSES, Status } from './client';
import { personOf, renderAvatar, STATUS_LABELS } from './avatars';
import { ChatEntry, MAX_CHAT_LENGTH, RealtimeModel } from './model';

/** How many avatars the status bar shows before "+N". */
const STATUS_BAR_AVATARS = 5;

const STATE_LABELS: Record<ConnectionState, string> = {
  connecting: 'connecting…',
  open: 'connected',
  reconnecting: 'reconnecting…',
  closed: 'disconnected'
};

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  return node;
}

/** The mark a person sees when the connection is not live. */
function connectionMark(state: ConnectionState): HTMLElement {
  const mark = el('span', `nyo-connection nyo-connection-${state}`, STATE_LABELS[state]);
  mark.dataset.state = state;
  mark.hidden = state === 'open';
  return mark;
}

function statusPicker(model: RealtimeModel): HTMLSelectElement {
  const select = el('select', 'nyo-status-picker');
  select.title = 'Your status';
  select.setAttribute('aria-label', 'Your status');
  for (const status of STATUSES) {
    const option = el('option', undefined, STATUS_LABELS[status]);
    option.value = status;
    select.appendChild(option);
  }
  select.value = model.myStatus;
  select.addEventListener('change', () => {
    void model.setStatus(select.value as Status).catch(error => {
      console.warn('nyo-realtime: could not set status', error);
    });
  });
  return select;
}

/**
 * The status bar item: avatars of who is online in the lobby, how many, and
 * one's own status. Clicking the avatars opens the side panel.
 */
export class PresenceStatus extends Widget {
  constructor(
    private _model: RealtimeModel,
    private _openPanel: () => void
  ) {
    super();
    this.addClass('nyo-statusbar');
    this._model.changed.connect(this._render, this);
    this._render();
  }

  private _render(): void {
    const model = this._model;
    const node = this.node;
    // The picker keeps focus while open: rebuilding it would close it.
    const focused = node.contains(document.activeElement);
    node.replaceChildren();
    node.appendChild(connectionMark(model.state));

    const members = model.members;
    const faces = el('span', 'nyo-statusbar-avatars');
    faces.title = 'Who is here — open the collaborators panel';
    faces.addEventListener('click', () => this._openPanel());
    for (const member of members.slice(0, STATUS_BAR_AVATARS)) {
      faces.appendChild(renderAvatar(personOf(member), { showStatus: true }));
    }
    if (members.length > STATUS_BAR_AVATARS) {
      faces.appendChild(
        el('span', 'nyo-more', `+${members.length - STATUS_BAR_AVATARS}`)
      );
    }
    node.appendChild(faces);
    const count = el(
      'span',
      'nyo-count',
      `${members.length} online`
    );
    count.dataset.count = String(members.length);
    node.appendChild(count);

    if (this._picker && focused) {
      this._picker.value = model.myStatus;
    } else {
      this._picker = statusPicker(model);
    }
    node.appendChild(this._picker);
  }

  private _picker: HTMLSelectElement | undefined;
}

/**
 * The side panel: collaborators (status, what each has open) and the lobby
 * chat with its history. Also where the status picker lives in Notebook 7,
 * which has no status bar.
 */
export class RealtimePanel extends Widget {
  constructor(
    private _model: RealtimeModel,
    private _openPath: (path: string) => void
  ) {
    super();
    this.id = 'nyo-realtime-panel';
    this.addClass('nyo-panel');
    this.title.caption = 'Collaborators and chat';

    const header = el('div', 'nyo-panel-header');
    header.appendChild(el('h2', 'nyo-panel-title', 'Here now'));
    this._state = el('span', 'nyo-connection');
    header.appendChild(this._state);
    this.node.appendChild(header);

    const me = el('div', 'nyo-me');
    this._meName = el('span', 'nyo-me-name');
    me.appendChild(this._meName);
    this._picker = statusPicker(_model);
    me.appendChild(this._picker);
    this.node.appendChild(me);

    this._people = el('ul', 'nyo-people');
    this.node.appendChild(this._people);

    const chat = el('section', 'nyo-chat');
    chat.appendChild(el('h2', 'nyo-panel-title', 'Chat'));
    this._log = el('ol', 'nyo-chat-log');
    this._log.setAttribute('aria-live', 'polite');
    chat.appendChild(this._log);
    const form = el('form', 'nyo-chat-form');
    this._input = el('input', 'nyo-chat-input');
    this._input.type = 'text';
    this._input.maxLength = MAX_CHAT_LENGTH;
    this._input.placeholder = 'Message everyone here';
    this._input.setAttribute('aria-label', 'Chat message');
    const send = el('button', 'nyo-chat-send jp-mod-styled jp-mod-accept', 'Send');
    send.type = 'submit';
    form.append(this._input, send);
    form.addEventListener('submit', event => {
      event.preventDefault();
      this._send();
    });
    this._error = el('div', 'nyo-chat-error');
    chat.append(form, this._error);
    this.node.appendChild(chat);

    _model.changed.connect(this._render, this);
    _model.chatReceived.connect(this._renderChat, this);
    this._render();
    this._renderChat();
  }

  private _send(): void {
    const text = this._input.value;
    if (!text.trim()) {
      return;
    }
    this._input.value = '';
    this._error.textContent = '';
    // While reconnecting the client holds the message and sends it, once,
    // when the lobby is subscribed again.
    this._model.sendChat(text).catch(error => {
      this._input.value ||= text;
      this._error.textContent = `Not sent: ${error.message ?? error}`;
    });
  }

  private _render(): void {
    const model = this._model;
    const state = model.state;
    this._state.className = `nyo-connection nyo-connection-${state}`;
    this._state.dataset.state = state;
    this._state.textContent = STATE_LABELS[state];
    this._meName.textContent = model.me ? `You are ${model.me.name}` : '';
    if (document.activeElement !== this._picker) {
      this._picker.value = model.myStatus;
    }

    this._people.replaceChildren();
    for (const member of model.members) {
      this._people.appendChild(this._renderMember(member));
    }
    // Names of people in the log may have become known.
    this._renderChat();
  }

  private _renderMember(member: Member): HTMLElement {
    const model = this._model;
    const item = el('li', 'nyo-person');
    item.dataset.userId = member.userId;
    item.dataset.status = member.status;
    item.appendChild(renderAvatar(personOf(member), { size: 'large', showStatus: true }));
    const text = el('div', 'nyo-person-text');
    const isMe = member.userId === model.me?.userId;
    text.appendChild(
      el('span', 'nyo-person-name', isMe ? `${member.name} (you)` : member.name)
    );
    text.appendChild(
      el('span', `nyo-person-status nyo-status-${member.status}`, STATUS_LABELS[member.status])
    );
    const paths = model.openPaths(member);
    if (paths.length) {
      const open = el('ul', 'nyo-person-open');
      open.setAttribute('aria-label', `${member.name} has open`);
      const ours = model.sharesFiles(member);
      for (const path of paths) {
        const entry = el('li', 'nyo-open-path');
        const label = path.split('/').pop() || path;
        if (ours) {
          const link = el('a', undefined, label);
          link.href = '#';
          link.title = `Open ${path}`;
          link.dataset.path = path;
          link.addEventListener('click', event => {
            event.preventDefault();
            this._openPath(path);
          });
          entry.appendChild(link);
        } else {
          // Their file, on their server: named, not offered to open here.
          const name = el('span', undefined, label);
          name.title = `${path} in ${member.name}'s files`;
          entry.appendChild(name);
        }
        open.appendChild(entry);
      }
      text.appendChild(open);
    } else {
      text.appendChild(el('span', 'nyo-person-idle', 'nothing open'));
    }
    item.appendChild(text);
    return item;
  }

  private _renderChat(): void {
    const model = this._model;
    const atBottom =
      this._log.scrollHeight - this._log.scrollTop - this._log.clientHeight < 20;
    this._log.replaceChildren();
    for (const entry of model.chat) {
      this._log.appendChild(this._renderEntry(entry));
    }
    if (atBottom) {
      this._log.scrollTop = this._log.scrollHeight;
    }
  }

  private _renderEntry(entry: ChatEntry): HTMLElement {
    const model = this._model;
    const item = el('li', 'nyo-chat-entry');
    item.dataset.messageId = entry.id;
    if (entry.userId) {
      item.dataset.userId = entry.userId;
      item.appendChild(renderAvatar(model.personOf(entry.userId)));
    }
    const body = el('div', 'nyo-chat-body');
    const head = el('div', 'nyo-chat-head');
    head.appendChild(el('span', 'nyo-chat-author', model.nameOf(entry.userId)));
    const time = el('time', 'nyo-chat-time', new Date(entry.ts).toLocaleTimeString([], {
      hour: '2-digit',
      minute: '2-digit'
    }));
    time.dateTime = new Date(entry.ts).toISOString();
    head.appendChild(time);
    body.appendChild(head);
    // textContent, never HTML: chat is what other people typed.
    body.appendChild(el('div', 'nyo-chat-text', entry.text));
    item.appendChild(body);
    return item;
  }

  private _state: HTMLElement;
  private _meName: HTMLElement;
  private _picker: HTMLSelectElement;
  private _people: HTMLUListElement;
  private _log: HTMLOListElement;
  private _input: HTMLInputElement;
  private _error: HTMLElement;
}

/** On a document's toolbar: who else has this path open. */
export class DocumentPresence extends Widget {
  constructor(
    private _model: RealtimeModel,
    private _path: () => string,
    private _onOthers: (others: Member[]) => void
  ) {
    super();
    this.addClass('nyo-doc-presence');
    _model.documentChanged.connect(this._onDocumentChanged, this);
    _model.changed.connect(this.render, this);
    this.render();
  }

  render(): void {
    const path = this._path();
    const others = this._model.othersOn(path);
    this.node.replaceChildren();
    this.node.dataset.path = path;
    this.node.dataset.count = String(others.length);
    this.node.title = others.length
      ? `Also here: ${others.map(m => m.name).join(', ')}`
      : 'Nobody else has this open';
    for (const member of others) {
      this.node.appendChild(renderAvatar(personOf(member), { showStatus: true }));
    }
    this._onOthers(others);
  }

  private _onDocumentChanged(_: RealtimeModel, path: string): void {
    if (path === this._path()) {
      this.render();
    }
  }
}
