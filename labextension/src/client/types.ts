/** The data of docs/protocol.md: statuses, users, members, messages. */

/** The statuses the protocol knows (docs/protocol.md, `presence`): the one list. */
export const STATUSES = ['online', 'away', 'busy', 'offline'] as const;

export type Status = (typeof STATUSES)[number];

export interface User {
  userId: string;
  tenantId: string;
  name: string;
  color?: string;
  avatar_url?: string;
  /** `person` when absent, or `kernel` (docs/protocol.md). */
  kind?: string;
}

export interface Member {
  userId: string;
  name: string;
  status: Status;
  meta: Record<string, unknown>;
  joinedAt: number;
  lastSeen: number;
  connections: number;
  color?: string;
  avatar_url?: string;
  /** `person` when absent; a `kernel` is never counted as a person (docs/protocol.md). */
  kind?: string;
}

/** Whether a member is a person: `kind` absent or "person" (kernels are not). */
export function isPerson(member: { kind?: string }): boolean {
  return (member.kind ?? 'person') === 'person';
}

export interface Message {
  channel: string;
  id: string;
  event: string;
  payload: unknown;
  from: { userId: string; connectionId: string } | null;
  ts: number;
}
