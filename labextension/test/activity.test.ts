import { describe, expect, it } from 'vitest';

import {
  activeCellOf,
  CELL_EXECUTED_EVENT,
  executionOf,
  firstLine,
  resolveCell,
  whereOf
} from '../src/activity';
import type { Member, Message } from '../src/client';

const member = (meta: Record<string, unknown>): Member => ({
  userId: 'ada',
  name: 'Ada',
  status: 'online',
  meta,
  joinedAt: 0,
  lastSeen: 0,
  connections: 1
});

const message = (payload: unknown, event = CELL_EXECUTED_EVENT): Message => ({
  channel: 'presence-doc:a.ipynb',
  id: 'm1',
  event,
  payload,
  from: { userId: 'ada', connectionId: 'c-1' },
  ts: 1000
});

describe('cell activity', () => {
  const cell = { id: 'cell-3', index: 2, line: 'third = 3' };

  it('finds a cell by id when this copy has it, else by index', () => {
    expect(resolveCell(cell, ['cell-1', 'cell-2', 'cell-3'])).toBe(2);
    // Someone inserted a cell above: the id still finds it.
    expect(resolveCell(cell, ['cell-0', 'cell-1', 'cell-2', 'cell-3'])).toBe(3);
    // Ids made by each page (a file without ids): only the index is shared.
    expect(resolveCell(cell, ['x', 'y', 'z'])).toBe(2);
    expect(resolveCell(cell, ['x', 'y'])).toBe(-1);
  });

  it('reads only well-formed cells from what other clients send', () => {
    expect(activeCellOf(member({ cell }))).toEqual(cell);
    expect(activeCellOf(member({}))).toBeUndefined();
    expect(activeCellOf(member({ cell: { ...cell, index: -1 } }))).toBeUndefined();
    expect(activeCellOf(member({ cell: { ...cell, index: 1.5 } }))).toBeUndefined();
    expect(activeCellOf(member({ cell: 'cell-3' }))).toBeUndefined();
    expect(whereOf(member({ where: { path: 'a.ipynb', cell } }))).toEqual({
      path: 'a.ipynb',
      cell
    });
    expect(whereOf(member({ where: { path: 3, cell } }))).toBeUndefined();
  });

  it('turns cell:executed messages into entries, and nothing else', () => {
    expect(executionOf(message({ cell, success: false }))).toEqual({
      id: 'm1',
      userId: 'ada',
      cell,
      success: false,
      ts: 1000
    });
    expect(executionOf(message({ cell }))?.success).toBe(true);
    expect(executionOf(message({ cell }, 'chat:message'))).toBeUndefined();
    expect(executionOf(message({ cell: { id: 1 } }))).toBeUndefined();
    expect(executionOf(message(null))).toBeUndefined();
  });

  it('keeps the first line, shortened', () => {
    expect(firstLine('  import os\nimport sys')).toBe('import os');
    expect(firstLine('')).toBe('');
    const long = firstLine('x'.repeat(200));
    expect(long).toHaveLength(80);
    expect(long.endsWith('…')).toBe(true);
  });
});
