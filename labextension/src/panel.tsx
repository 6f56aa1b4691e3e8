/**
 * The side panel, in React on the hooks other extensions get (`reactHooks.ts`):
 * the connection (`useWebSocket`), who is here (`usePresence`) and the lobby
 * chat with its history (`useChannel`), all on the page's one connection.
 *
 * The model still provides what the hooks do not know: one's status across
 * the lobby and every open document, names of people who left, and which
 * paths a member has open.
 */
import { ReactWidget } from '@jupyterlab/ui-components';
import type { Message } from '@lumino/messaging';
import * as React from 'react';
import { useEffect, useMemo, useState } from 'react';

import { CellRef, whereOf } from './activity';
import { Avatar } from './avatar';
import { personOf, STATUS_LABELS } from './avatars';
import { timeOf } from './cells';
import { Chat, MarkdownRenderer } from './chat';
import { isPerson, Member, Status } from './client';
import { usePresence, useWebSocket } from './reactHooks';
import { RealtimeModel } from './model';
import { ProfileApi } from './profile';
import { ProfileForm } from './profileForm';
import { IRealtime } from './tokens';
import { PICKER_STATUSES, STATE_LABELS } from './views';

export { Avatar };

const CAPTION = 'Collaborators and chat';

/** Open a document, and in a notebook go to a cell. */
export type OpenPath = (path: string, cell?: CellRef) => void;

/** Re-render whenever the model says something changed. */
function useModel(model: RealtimeModel): void {
  const [, setVersion] = useState(0);
  useEffect(() => {
    const bump = () => setVersion(version => version + 1);
    model.changed.connect(bump);
    return () => {
      model.changed.disconnect(bump);
    };
  }, [model]);
}

function StatusPicker(props: { model: RealtimeModel }): React.ReactElement {
  const { model } = props;
  return (
    <select
      className="nyo-status-picker"
      title="Your status"
      aria-label="Your status"
      value={model.myStatus}
      onChange={event => {
        model.setStatus(event.target.value as Status).catch(error => {
          console.warn('nyo-realtime: could not set status', error);
        });
      }}
    >
      {PICKER_STATUSES.map(status => (
        <option key={status} value={status}>
          {STATUS_LABELS[status]}
        </option>
      ))}
    </select>
  );
}

function PersonRow(props: {
  member: Member;
  isMe: boolean;
  model: RealtimeModel;
  openPath: OpenPath;
}): React.ReactElement {
  const { member, isMe, model, openPath } = props;
  const paths = model.openPaths(member);
  const ours = model.sharesFiles(member);
  const where = whereOf(member);
  return (
    <li
      className={isPerson(member) ? 'nyo-person' : 'nyo-person nyo-kernel'}
      data-user-id={member.userId}
      data-status={member.status}
      data-kind={member.kind ?? 'person'}
    >
      <Avatar person={personOf(member)} size="large" showStatus />
      <div className="nyo-person-text">
        <span className="nyo-person-name">
          {isMe
            ? `${model.labelOf(member.userId)} (you)`
            : model.labelOf(member.userId)}
        </span>
        <span className={`nyo-person-status nyo-status-${member.status}`}>
          {STATUS_LABELS[member.status]}
        </span>
        {paths.length ? (
          <ul className="nyo-person-open" aria-label={`${member.name} has open`}>
            {paths.map(path => {
              const label = path.split('/').pop() || path;
              return (
                <li key={path} className="nyo-open-path">
                  {ours ? (
                    <a
                      href="#"
                      title={`Open ${path}`}
                      data-path={path}
                      onClick={event => {
                        event.preventDefault();
                        openPath(path);
                      }}
                    >
                      {label}
                    </a>
                  ) : (
                    // Their file, on their server: named, not offered to open here.
                    <span title={`${path} in ${member.name}'s files`}>{label}</span>
                  )}
                </li>
              );
            })}
          </ul>
        ) : (
          <span className="nyo-person-idle">nothing open</span>
        )}
        {where && paths.includes(where.path) && (
          <WhereLink member={member} where={where} ours={ours} openPath={openPath} />
        )}
      </div>
    </li>
  );
}

/** "On analysis.ipynb, cell 3: import pandas": a click goes there. */
function WhereLink(props: {
  member: Member;
  where: { path: string; cell: CellRef };
  ours: boolean;
  openPath: OpenPath;
}): React.ReactElement {
  const { member, where, ours, openPath } = props;
  const name = where.path.split('/').pop() || where.path;
  const text = `${name}, cell ${where.cell.index + 1}${
    where.cell.line ? `: ${where.cell.line}` : ''
  }`;
  return (
    <div className="nyo-person-where">
      {ours ? (
        <a
          href="#"
          className="nyo-person-cell"
          title={`Go to ${member.name}'s cell in ${where.path}`}
          data-path={where.path}
          data-cell-index={where.cell.index}
          onClick={event => {
            event.preventDefault();
            openPath(where.path, where.cell);
          }}
        >
          {text}
        </a>
      ) : (
        <span className="nyo-person-cell">{text}</span>
      )}
    </div>
  );
}

/** Who ran which cell, in each notebook one has open; newest first. */
function Activity(props: {
  model: RealtimeModel;
  openPath: OpenPath;
}): React.ReactElement {
  const { model, openPath } = props;
  const documents = model.openDocuments.filter(path => model.executions(path).length);
  return (
    <section className="nyo-activity">
      <h2 className="nyo-panel-title">Notebook activity</h2>
      {documents.length === 0 && (
        <div className="nyo-activity-empty">
          No cells run in your open notebooks yet
        </div>
      )}
      {documents.map(path => (
        <div key={path} className="nyo-activity-document" data-path={path}>
          <div className="nyo-activity-path">{path}</div>
          <ol className="nyo-activity-list">
            {[...model.executions(path)]
              .reverse()
              .slice(0, 20)
              .map(entry => (
                <li
                  key={entry.id}
                  className="nyo-activity-entry"
                  data-user-id={entry.userId ?? undefined}
                  data-cell-index={entry.cell.index}
                >
                  <a
                    href="#"
                    onClick={event => {
                      event.preventDefault();
                      openPath(path, entry.cell);
                    }}
                  >
                    <span className="nyo-activity-who">
                      {model.labelOf(entry.userId)}
                    </span>
                    {` ran cell ${entry.cell.index + 1}`}
                    {entry.cell.line && (
                      <code className="nyo-activity-line">{entry.cell.line}</code>
                    )}
                    {!entry.success && (
                      <span className="nyo-activity-failed"> (failed)</span>
                    )}
                  </a>
                  <time
                    className="nyo-activity-time"
                    dateTime={new Date(entry.ts).toISOString()}
                  >
                    {timeOf(entry.ts)}
                  </time>
                </li>
              ))}
          </ol>
        </div>
      ))}
    </section>
  );
}

/** Everything in the side panel. */
/** What the panel can do beyond presence, when the page provides it. */
export interface PanelExtras {
  /** One's own name and colour: the form is there only with it. */
  profile?: ProfileApi;
  /** Chat as Markdown; plain text without. */
  renderMarkdown?: MarkdownRenderer;
  /** Whether the chat is shown (the `showChat` setting); by default it is. */
  showChat?: boolean;
}

export function RealtimePanelView(props: {
  realtime: IRealtime;
  model: RealtimeModel;
  openPath: OpenPath;
  extras?: PanelExtras;
}): React.ReactElement {
  const { realtime, model, openPath, extras = {} } = props;
  const [editing, setEditing] = useState(false);
  useModel(model);
  const { connectionState, user } = useWebSocket(realtime);
  const { members } = usePresence(realtime, realtime.lobby);
  // `user` too: `sorted` puts `model.me` first, which changes when we authenticate.
  // eslint-disable-next-line react-hooks/exhaustive-deps
  const sorted = useMemo(() => model.sorted(members), [model, members, user]);
  const people = sorted.filter(isPerson);
  const kernels = sorted.filter(member => !isPerson(member));
  return (
    <>
      <div className="nyo-panel-header">
        <h2 className="nyo-panel-title">Here now</h2>
        <span
          className={`nyo-connection nyo-connection-${connectionState}`}
          data-state={connectionState}
        >
          {STATE_LABELS[connectionState]}
        </span>
      </div>
      <div className="nyo-me">
        <span className="nyo-me-name">
          {/* As others see us: a name chosen since we connected comes with presence. */}
          {user
            ? `You are ${members.find(m => m.userId === user.userId)?.name ?? user.name}`
            : ''}
        </span>
        {extras.profile && user && !editing && (
          <button
            className="nyo-profile-edit jp-mod-styled"
            type="button"
            title="Change your name and colour"
            onClick={() => setEditing(true)}
          >
            Edit
          </button>
        )}
        <StatusPicker model={model} />
      </div>
      {extras.profile && user && editing && (
        <ProfileForm
          api={extras.profile}
          userId={user.userId}
          onDone={() => setEditing(false)}
        />
      )}
      <ul className="nyo-people">
        {people.map(member => (
          <PersonRow
            key={member.userId}
            member={member}
            isMe={member.userId === user?.userId}
            model={model}
            openPath={openPath}
          />
        ))}
      </ul>
      {kernels.length > 0 && (
        <>
          <h3 className="nyo-kernels-title">Kernels</h3>
          <ul className="nyo-kernels">
            {kernels.map(member => (
              <PersonRow
                key={member.userId}
                member={member}
                isMe={false}
                model={model}
                openPath={openPath}
              />
            ))}
          </ul>
        </>
      )}
      <Activity model={model} openPath={openPath} />
      {extras.showChat !== false && (
        <Chat
          realtime={realtime}
          model={model}
          members={members}
          renderMarkdown={extras.renderMarkdown}
        />
      )}
    </>
  );
}

/**
 * The side panel: collaborators (status, what each has open) and the lobby
 * chat with its history. Also where the status picker lives in Notebook 7,
 * which has no status bar.
 */
export class RealtimePanel extends ReactWidget {
  constructor(
    private _realtime: IRealtime,
    private _model: RealtimeModel,
    private _openPath: OpenPath,
    private _extras: PanelExtras = {}
  ) {
    super();
    this.id = 'nyo-realtime-panel';
    this.addClass('nyo-panel');
    this.title.caption = CAPTION;
  }

  /** Whether the chat is shown (the `showChat` setting). */
  set showChat(show: boolean) {
    this._extras = { ...this._extras, showChat: show };
    this.update();
  }

  /** Chat messages that came while the panel was hidden; shown on its tab. */
  get unread(): number {
    return this._unread;
  }

  set unread(count: number) {
    this._unread = count;
    const dataset = { ...this.title.dataset };
    if (count > 0) {
      dataset['nyo-unread'] = count > 99 ? '99+' : String(count);
      this.title.caption = `${CAPTION} (${count} unread)`;
    } else {
      delete dataset['nyo-unread'];
      this.title.caption = CAPTION;
    }
    this.title.dataset = dataset;
  }

  /** Shown again: everything in it is read. */
  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    this.unread = 0;
  }

  /** Opened (attached) for the first time in this page. */
  protected onAfterAttach(msg: Message): void {
    super.onAfterAttach(msg);
    if (this.isVisible) {
      this.unread = 0;
    }
  }

  private _unread = 0;

  protected render(): React.ReactElement {
    return (
      <RealtimePanelView
        realtime={this._realtime}
        model={this._model}
        openPath={this._openPath}
        extras={this._extras}
      />
    );
  }
}
