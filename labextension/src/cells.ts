/**
 * Marks on a notebook's cells: who else has which cell active (their avatar
 * and a bar in their colour) and who last ran it, and when. Redrawn from the
 * model whenever the document's members or executions change, and when cells
 * move, so a mark stays on its cell (matched by id, else by index).
 */
import type { Notebook } from '@jupyterlab/notebook';
import type { Cell } from '@jupyterlab/cells';
import type { IDisposable } from '@lumino/disposable';

import {
  activeCellOf,
  CellRef,
  ExecutionEntry,
  firstLine,
  resolveCell
} from './activity';
import { personOf, renderAvatar } from './avatars';
import { chatTime } from './chatText';
import { effectiveColor } from './colors';
import type { Member } from './client';
import type { RealtimeModel } from './model';

const MARKS_CLASS = 'nyo-cell-marks';
const OTHER_CLASS = 'nyo-cell-others-active';

/** A notebook cell as others can find it. */
export function cellRefOf(notebook: Notebook, cell: Cell): CellRef {
  return {
    id: cell.model.id,
    index: notebook.widgets.indexOf(cell),
    line: firstLine(cell.model.sharedModel.getSource())
  };
}

export function timeOf(ts: number): string {
  return chatTime(ts);
}

export class NotebookMarks implements IDisposable {
  constructor(
    private _model: RealtimeModel,
    private _notebook: Notebook,
    private _path: () => string
  ) {
    _model.documentChanged.connect(this._onDocumentChanged, this);
    _model.changed.connect(this._schedule, this);
    // A cell added, removed or moved: marks follow their cell.
    _notebook.modelContentChanged.connect(this._schedule, this);
    this._schedule();
  }

  get isDisposed(): boolean {
    return this._isDisposed;
  }

  dispose(): void {
    if (this._isDisposed) {
      return;
    }
    this._isDisposed = true;
    this._model.documentChanged.disconnect(this._onDocumentChanged, this);
    this._model.changed.disconnect(this._schedule, this);
    this._notebook.modelContentChanged.disconnect(this._schedule, this);
    if (this._frame !== undefined) {
      clearTimeout(this._frame);
    }
    this._clear();
  }

  /** Draw now; used by tests of the page and by `_schedule`. */
  render(): void {
    if (this._isDisposed) {
      return;
    }
    this._clear();
    const cells = this._notebook.widgets;
    const ids = cells.map(cell => cell.model.id);
    const others = new Map<number, Member[]>();
    for (const member of this._model.othersOn(this._path())) {
      const ref = activeCellOf(member);
      const index = ref ? resolveCell(ref, ids) : -1;
      if (index >= 0) {
        others.set(index, [...(others.get(index) ?? []), member]);
      }
    }
    const lastRun = new Map<number, ExecutionEntry>();
    for (const entry of this._model.executions(this._path())) {
      const index = resolveCell(entry.cell, ids);
      if (index >= 0) {
        lastRun.set(index, entry); // oldest first: the last one wins
      }
    }
    cells.forEach((cell, index) => {
      const here = others.get(index) ?? [];
      const run = lastRun.get(index);
      if (!here.length && !run) {
        return;
      }
      const marks = document.createElement('div');
      marks.className = MARKS_CLASS;
      if (here.length) {
        cell.node.classList.add(OTHER_CLASS);
        // The bar takes the colour of the first of them.
        cell.node.style.setProperty('--nyo-cell-color', effectiveColor(here[0]));
        const faces = document.createElement('span');
        faces.className = 'nyo-cell-presence';
        faces.title = `Here: ${here.map(m => this._model.labelOf(m.userId)).join(', ')}`;
        for (const member of here) {
          faces.appendChild(renderAvatar(personOf(member)));
        }
        marks.appendChild(faces);
      }
      if (run) {
        marks.appendChild(this._ranMark(run));
      }
      cell.node.appendChild(marks);
    });
  }

  private _ranMark(run: ExecutionEntry): HTMLElement {
    const name = this._model.labelOf(run.userId);
    const mark = document.createElement('span');
    mark.className = 'nyo-cell-ran';
    mark.dataset.userId = run.userId ?? '';
    mark.dataset.success = String(run.success);
    const when = timeOf(run.ts);
    mark.title = `Last run by ${name} at ${new Date(run.ts).toLocaleString()}${
      run.success ? '' : ' (failed)'
    }`;
    mark.textContent = `▶ ${name} · ${when}`;
    if (run.userId) {
      mark.style.setProperty(
        '--nyo-cell-color',
        effectiveColor(this._model.personOf(run.userId))
      );
    }
    return mark;
  }

  private _clear(): void {
    for (const node of this._notebook.node.querySelectorAll(`.${MARKS_CLASS}`)) {
      node.remove();
    }
    for (const node of this._notebook.node.querySelectorAll(`.${OTHER_CLASS}`)) {
      node.classList.remove(OTHER_CLASS);
      (node as HTMLElement).style.removeProperty('--nyo-cell-color');
    }
  }

  private _onDocumentChanged(_: RealtimeModel, path: string): void {
    if (path === this._path()) {
      this._schedule();
    }
  }

  /**
   * One redraw per burst of changes. A timer, not an animation frame: a page
   * in the background still keeps its marks current for when it is shown.
   */
  private _schedule(): void {
    if (this._frame === undefined && !this._isDisposed) {
      this._frame = setTimeout(() => {
        this._frame = undefined;
        this.render();
      }, 30);
    }
  }

  private _isDisposed = false;
  private _frame: ReturnType<typeof setTimeout> | undefined;
}
