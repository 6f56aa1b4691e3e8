/**
 * The views: the status bar item and the presence badge on each document's
 * toolbar. Plain DOM inside Lumino widgets; each view redraws from the model
 * when the model says something changed. The side panel is React, on the
 * hooks (panel.tsx).
 */
import { Widget } from '@lumino/widgets';

import { ConnectionState, Member, Status } from './client';
import { personOf, renderAvatar, STATUS_LABELS } from './avatars';
import { RealtimeModel } from './model';

/** How many avatars the status bar shows before "+N". */
const STATUS_BAR_AVATARS = 5;

/** The statuses a person picks; `offline` is what leaving shows. */
export const PICKER_STATUSES: readonly Status[] = ['online', 'away', 'busy'];

export const STATE_LABELS: Record<ConnectionState, string> = {
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
  const mark = el(
    'span',
    `nyo-connection nyo-connection-${state}`,
    STATE_LABELS[state]
  );
  mark.dataset.state = state;
  mark.hidden = state === 'open';
  return mark;
}

function statusPicker(model: RealtimeModel): HTMLSelectElement {
  const select = el('select', 'nyo-status-picker');
  select.title = 'Your status';
  select.setAttribute('aria-label', 'Your status');
  for (const status of PICKER_STATUSES) {
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

/** "2 online, 1 away": how many of `members` have each status. */
export function statusCounts(members: readonly Member[]): string {
  const counts = new Map<Status, number>();
  for (const member of members) {
    counts.set(member.status, (counts.get(member.status) ?? 0) + 1);
  }
  return [...counts]
    .map(([status, n]) => `${n} ${STATUS_LABELS[status]?.toLowerCase() ?? status}`)
    .join(', ');
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

    // Kernels are not people: they are listed in the panel, not counted here.
    const members = model.people;
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
    // Everyone connected is here, whatever their status; the statuses are
    // counted apart ("2 online, 1 away"), not all called online.
    const count = el('span', 'nyo-count', `${members.length} here`);
    count.dataset.count = String(members.length);
    count.title = statusCounts(members);
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
