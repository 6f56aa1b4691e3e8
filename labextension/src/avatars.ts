/**
 * Avatars: the picture when the identity provider gives one, else initials on
 * a colour. Shared by the status bar, the side panel and document toolbars so
 * a person looks the same everywhere.
 */
import type { Member, Status, User } from './client';
import { effectiveColor } from './colors';

export interface Person {
  userId: string;
  name: string;
  color?: string;
  avatar_url?: string;
  status?: Status;
}

export function personOf(who: Member | User): Person {
  return {
    userId: who.userId,
    name: who.name || who.userId,
    color: who.color,
    avatar_url: who.avatar_url,
    status: 'status' in who ? who.status : undefined
  };
}

/** The same colour for the same user in every browser, kernel and server. */
export function colorOf(person: Person): string {
  return effectiveColor(person);
}

export function initialsOf(name: string): string {
  const words = name.trim().split(/\s+/).filter(Boolean);
  if (words.length === 0) {
    return '?';
  }
  const letters =
    words.length === 1
      ? [...words[0]].slice(0, 2)
      : [[...words[0]][0], [...words[words.length - 1]][0]];
  return letters.join('').toUpperCase();
}

/**
 * The hover text: the name, then the user id, so two people of the same name
 * (two "Anonymous Io"s) can still be told apart; then the status.
 */
export function avatarTitle(person: Person): string {
  const who =
    person.name === person.userId ? person.name : `${person.name} (${person.userId})`;
  return person.status ? `${who} — ${STATUS_LABELS[person.status]}` : who;
}

export const STATUS_LABELS: Record<Status, string> = {
  online: 'Online',
  away: 'Away',
  busy: 'Busy',
  offline: 'Offline'
};

/** One avatar; `data-user-id` and `data-status` let styles and tests find it. */
export function renderAvatar(
  person: Person,
  options: { size?: 'small' | 'large'; showStatus?: boolean } = {}
): HTMLElement {
  const node = document.createElement('span');
  node.className = `nyo-avatar nyo-avatar-${options.size ?? 'small'}`;
  node.dataset.userId = person.userId;
  node.title = avatarTitle(person);
  if (person.avatar_url) {
    const img = document.createElement('img');
    img.src = person.avatar_url;
    img.alt = person.name;
    node.appendChild(img);
  } else {
    node.style.backgroundColor = colorOf(person);
    node.textContent = initialsOf(person.name);
  }
  if (options.showStatus && person.status) {
    node.dataset.status = person.status;
    const dot = document.createElement('span');
    dot.className = `nyo-status-dot nyo-status-${person.status}`;
    node.appendChild(dot);
  }
  return node;
}
