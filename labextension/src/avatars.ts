/**
 * Avatars: the picture when the identity provider gives one, else initials on
 * a colour. Shared by the status bar, the side panel and document toolbars so
 * a person looks the same everywhere.
 */
import type { Member, Status, User } from './client';

/** Colours for users whose identity has none; readable with white initials. */
const PALETTE = [
  '#1f77b4',
  '#d62728',
  '#2ca02c',
  '#9467bd',
  '#8c564b',
  '#e377c2',
  '#17becf',
  '#bcbd22',
  '#ff7f0e',
  '#7f7f7f'
];

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

/** The same colour for the same user in every browser. */
export function colorOf(person: Person): string {
  if (person.color) {
    return person.color;
  }
  let hash = 0;
  for (const char of person.userId) {
    hash = (hash * 31 + char.codePointAt(0)!) >>> 0;
  }
  return PALETTE[hash % PALETTE.length];
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
  node.title = person.status
    ? `${person.name} — ${STATUS_LABELS[person.status]}`
    : person.name;
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
