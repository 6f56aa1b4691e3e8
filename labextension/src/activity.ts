/**
 * What happens in a notebook, as others should see it: which cell each person
 * has active (their presence `meta.cell` on the document's channel) and who ran
 * which cell (`cell:executed` messages on the same channel, kept in its history
 * so a reload still shows them). Pure data here; cells.ts draws it.
 */
import type { Member, Message } from './client';

/** The event published on a document's channel when someone runs a cell. */
export const CELL_EXECUTED_EVENT = 'cell:executed';

/** Longest first line carried: enough to recognise the cell in a list. */
export const MAX_LINE = 80;

/** A cell as others can find it: by id when their copy has the same ids, else by index. */
export interface CellRef {
  id: string;
  index: number;
  /** The cell's first line, shortened: what people recognise it by. */
  line: string;
}

export interface ExecutionEntry {
  /** The message id: one entry per execution, whatever the history replays. */
  id: string;
  userId: string | null;
  cell: CellRef;
  success: boolean;
  ts: number;
}

export function firstLine(source: string): string {
  const line = source.split('\n', 1)[0].trim();
  return line.length > MAX_LINE ? `${line.slice(0, MAX_LINE - 1)}…` : line;
}

function isCellRef(value: unknown): value is CellRef {
  const cell = value as Partial<CellRef> | null;
  return (
    !!cell &&
    typeof cell.id === 'string' &&
    typeof cell.index === 'number' &&
    Number.isInteger(cell.index) &&
    cell.index >= 0 &&
    typeof cell.line === 'string'
  );
}

/** The cell a member has active, from their presence meta; others' clients may send anything. */
export function activeCellOf(member: Member): CellRef | undefined {
  const cell = member.meta?.cell;
  return isCellRef(cell) ? cell : undefined;
}

/** Where in which notebook a lobby member is, from the lobby meta. */
export function whereOf(member: Member): { path: string; cell: CellRef } | undefined {
  const where = member.meta?.where as { path?: unknown; cell?: unknown } | undefined;
  return where && typeof where.path === 'string' && isCellRef(where.cell)
    ? { path: where.path, cell: where.cell }
    : undefined;
}

/** A document message as an execution entry, if it is a well-formed one. */
export function executionOf(message: Message): ExecutionEntry | undefined {
  if (message.event !== CELL_EXECUTED_EVENT) {
    return undefined;
  }
  const payload = message.payload as { cell?: unknown; success?: unknown } | null;
  if (!payload || !isCellRef(payload.cell)) {
    return undefined;
  }
  return {
    id: message.id,
    userId: message.from?.userId ?? null,
    cell: payload.cell,
    success: payload.success !== false,
    ts: message.ts
  };
}

/**
 * Which of `cellIds` (the notebook's cells, in order) `ref` means here: the
 * same id if this copy has it, else the same index. Ids are the same for
 * everyone when the file has them (nbformat ≥ 4.5); without, each page makes
 * its own and only the index is shared.
 */
export function resolveCell(ref: CellRef, cellIds: readonly string[]): number {
  const byId = ref.id ? cellIds.indexOf(ref.id) : -1;
  if (byId >= 0) {
    return byId;
  }
  return ref.index < cellIds.length ? ref.index : -1;
}
