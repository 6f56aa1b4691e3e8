/**
 * nyo-realtime in JupyterLab 4 and Notebook 7: who is here (status bar and
 * side panel), what each has open (lobby meta and a badge on every document),
 * and a chat on the lobby channel.
 *
 * Everything optional is optional: Notebook 7 has no status bar, and a shell
 * without document widgets still gets the panel.
 *
 * For other extensions, the plugin provides `IRealtime`, the page's one
 * connection, and the package exports the client and React hooks
 * (docs/react.md).
 */
import { JupyterFrontEnd, JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Notification } from '@jupyterlab/apputils';
import { IDocumentWidgetOpener } from '@jupyterlab/docmanager';
import { IDocumentWidget } from '@jupyterlab/docregistry';
import { Notebook, NotebookActions } from '@jupyterlab/notebook';
import { IRenderMime, IRenderMimeRegistry, MimeModel } from '@jupyterlab/rendermime';
import { ServerConnection } from '@jupyterlab/services';
import { ISettingRegistry } from '@jupyterlab/settingregistry';
import { IStatusBar } from '@jupyterlab/statusbar';
import { LabIcon } from '@jupyterlab/ui-components';
import type { IDisposable } from '@lumino/disposable';
import { Widget } from '@lumino/widgets';

import { CellRef, resolveCell } from './activity';
import { cellRefOf, NotebookMarks } from './cells';
import { MarkdownRenderer } from './chat';
import { withoutRemoteImages } from './chatText';
import { Member, RealtimeClient } from './client';
import { LOBBY } from './channels';
import { RealtimeModel } from './model';
import { ChatNotifier } from './notify';
import { RealtimePanel } from './panel';
import { profileApi } from './profile';
import { relayPublishes } from './relay';
import { createRealtime, IRealtime } from './tokens';
import { DocumentPresence, PresenceStatus } from './views';

export * from './client';
export * from './reactHooks';
export * from './store';
export * from './tokens';
export { documentChannel, LOBBY } from './channels';
export { CHAT_EVENT, RealtimeModel } from './model';

const PLUGIN_ID = 'nyo-realtime-ext:plugin';

const peopleIcon = new LabIcon({
  name: 'nyo-realtime-ext:people',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16"><g class="jp-icon3" fill="#616161"><circle cx="8" cy="8" r="3.5"/><circle cx="16.5" cy="9" r="2.8"/><path d="M1.5 19c0-3.6 2.9-6 6.5-6s6.5 2.4 6.5 6v1h-13z"/><path d="M15.2 13.3c.4-.1.9-.1 1.3-.1 3.1 0 5.5 2.1 5.5 5.2v1.1h-6v-1c0-2-.3-3.6-.8-5.2z"/></g></svg>'
});

/**
 * `{baseUrl}nyo-realtime/ws`. The browser sends Jupyter's login cookie on the
 * handshake; a token-only login (no cookie) goes as `?token=`, which the
 * server checks as Jupyter's own. Either way the server, not this page,
 * decides who we are.
 */
function socketUrl(settings: ServerConnection.ISettings): string {
  const url = new URL('nyo-realtime/ws', settings.wsUrl);
  if (settings.token) {
    url.searchParams.set('token', settings.token);
  }
  return url.toString();
}

/**
 * Which server's files this page's documents are, from the extension's
 * settings: on JupyterHub every user's `Untitled.ipynb` is a different file.
 */
async function documentScope(settings: ServerConnection.ISettings): Promise<string> {
  const url = new URL('nyo-realtime/settings', settings.baseUrl);
  try {
    const response = await ServerConnection.makeRequest(
      url.toString(),
      { cache: 'default' },
      settings
    );
    if (response.ok) {
      const body = await response.json();
      return typeof body.documentScope === 'string' ? body.documentScope : '';
    }
  } catch (error) {
    console.warn('nyo-realtime: no settings; documents are not scoped', error);
  }
  return '';
}

/** The lobby's members, present and past, from the HTTP API under Jupyter's login. */
async function knownPeople(
  settings: ServerConnection.ISettings,
  lobby: string
): Promise<Member[]> {
  const url = new URL(
    `nyo-realtime/api/channels/${encodeURIComponent(lobby)}/members?include=offline`,
    settings.baseUrl
  );
  // Not the default 'no-store': that appends a cache-busting query parameter,
  // which the API refuses as unknown.
  const response = await ServerConnection.makeRequest(
    url.toString(),
    { cache: 'no-cache' },
    settings
  );
  if (!response.ok) {
    throw new ServerConnection.ResponseError(response);
  }
  const body = (await response.json()) as { members?: Member[] };
  return body.members ?? [];
}

/**
 * Chat as Markdown through JupyterLab's own renderer: untrusted, so its
 * sanitizer strips scripts, event handlers and anything else that could act;
 * code blocks come out highlighted like a notebook's Markdown cells. Images
 * from another site become links before the HTML reaches the page, so that
 * no third party learns who reads the chat, or when.
 */
function markdownRenderer(rendermime: IRenderMimeRegistry): MarkdownRenderer {
  const base = rendermime.sanitizer;
  const sanitizer: IRenderMime.ISanitizer = {
    sanitize: (dirty, options) =>
      withoutRemoteImages(base.sanitize(dirty, options), document.baseURI),
    getAutolink: () => base.getAutolink?.() ?? true,
    allowNamedProperties: base.allowNamedProperties
  };
  const chat = rendermime.clone({ sanitizer });
  return (text, host) => {
    const renderer = chat.createRenderer('text/markdown');
    const model = new MimeModel({ data: { 'text/markdown': text }, trusted: false });
    // The node only, not `Widget.attach`: React removes the host before its
    // effects clean up, and disposing an attached widget whose node is already
    // out of the document throws ("Widget is not attached"), which would take
    // the whole panel down. Markdown needs no attach messages.
    host.appendChild(renderer.node);
    renderer.renderModel(model).catch(error => {
      console.warn('nyo-realtime: could not render a message', error);
      renderer.node.textContent = text;
    });
    return {
      dispose: () => {
        renderer.node.remove();
        renderer.dispose();
      }
    };
  };
}

/** Open `path` and, in a notebook, make `cell` active and scroll it into view. */
async function openAt(
  app: JupyterFrontEnd,
  path: string,
  cell?: CellRef
): Promise<void> {
  const widget = (await app.commands.execute('docmanager:open', { path })) as
    IDocumentWidget | undefined;
  if (!cell || !widget || !(widget.content instanceof Notebook)) {
    return;
  }
  await widget.context.ready;
  const notebook = widget.content;
  const index = resolveCell(
    cell,
    notebook.widgets.map(c => c.model.id)
  );
  if (index >= 0) {
    notebook.activeCellIndex = index;
    notebook.deselectAll();
    await notebook.scrollToCell(notebook.widgets[index], 'center');
  }
}

/** The user's settings of this plugin (schema/plugin.json). */
interface Options {
  lobby: string;
  showChat: boolean;
}

/** The settings now, and a way to hear of changes; the defaults without a registry. */
async function loadSettings(
  registry: ISettingRegistry | null
): Promise<Options & { changed(listener: (options: Options) => void): void }> {
  const defaults: Options = { lobby: LOBBY, showChat: true };
  const read = (settings: ISettingRegistry.ISettings): Options => {
    const lobby = settings.get('lobby').composite;
    const showChat = settings.get('showChat').composite;
    return {
      lobby: typeof lobby === 'string' && lobby ? lobby : LOBBY,
      showChat: showChat !== false
    };
  };
  if (!registry) {
    return { ...defaults, changed: () => undefined };
  }
  try {
    const settings = await registry.load(PLUGIN_ID);
    return {
      ...read(settings),
      changed: listener => settings.changed.connect(() => listener(read(settings)))
    };
  } catch (error) {
    console.warn('nyo-realtime: settings not loaded; using the defaults', error);
    return { ...defaults, changed: () => undefined };
  }
}

function isDocumentWidget(widget: Widget): widget is IDocumentWidget {
  const candidate = widget as unknown as Partial<IDocumentWidget>;
  return !!candidate.context && !!candidate.toolbar && !!candidate.context.path;
}

/** The path of each notebook we follow, for `NotebookActions.executed`. */
const notebookPaths = new WeakMap<Notebook, () => string>();

/** In a notebook: the cell one has active goes out; others' marks come in. */
function trackNotebook(
  model: RealtimeModel,
  notebook: Notebook,
  path: () => string
): IDisposable {
  notebookPaths.set(notebook, path);
  const marks = new NotebookMarks(model, notebook, path);
  const onActive = () => {
    const cell = notebook.activeCell;
    if (cell) {
      model.setActiveCell(path(), cellRefOf(notebook, cell));
    }
  };
  notebook.activeCellChanged.connect(onActive);
  // Where one starts: the first cell, or the one a restored layout had.
  onActive();
  return {
    get isDisposed() {
      return marks.isDisposed;
    },
    dispose: () => {
      notebook.activeCellChanged.disconnect(onActive);
      marks.dispose();
    }
  };
}

/** Follow one document view: its presence channel, toolbar badge and tab mark. */
function trackDocument(model: RealtimeModel, widget: IDocumentWidget): void {
  const context = widget.context;
  let path = context.path;
  model.openDocument(path);

  const badge = new DocumentPresence(
    model,
    () => path,
    (others: Member[]) => {
      // The tab says it too, through a data attribute the stylesheet shows.
      const dataset = { ...widget.title.dataset };
      if (others.length) {
        dataset['nyo-others'] = String(others.length);
      } else {
        delete dataset['nyo-others'];
      }
      widget.title.dataset = dataset;
    }
  );
  widget.toolbar.addItem('nyo-realtime-presence', badge);
  const cells =
    widget.content instanceof Notebook
      ? trackNotebook(model, widget.content, () => path)
      : undefined;

  const onPathChanged = (_: unknown, newPath: string) => {
    // A rename moves us to the new path's channel: presence follows the file.
    model.closeDocument(path);
    path = newPath;
    model.openDocument(path);
    badge.render();
  };
  context.pathChanged.connect(onPathChanged);
  widget.disposed.connect(() => {
    context.pathChanged.disconnect(onPathChanged);
    cells?.dispose();
    model.closeDocument(path);
    badge.dispose();
  });
}

const plugin: JupyterFrontEndPlugin<IRealtime> = {
  id: PLUGIN_ID,
  description: 'Who is here, what they have open, and chat, through nyo-realtime.',
  autoStart: true,
  provides: IRealtime,
  optional: [IStatusBar, IDocumentWidgetOpener, IRenderMimeRegistry, ISettingRegistry],
  activate: async (
    app: JupyterFrontEnd,
    statusBar: IStatusBar | null,
    opener: IDocumentWidgetOpener | null,
    rendermime: IRenderMimeRegistry | null,
    settingRegistry: ISettingRegistry | null
  ): Promise<IRealtime> => {
    const settings = app.serviceManager.serverSettings;
    // The page's one connection: the panel, the badges and every extension
    // that requires IRealtime share it. Identity: Jupyter's login.
    // The page's one connection: a tab left open recovers by itself, so it
    // never gives up (at the 30 s cap).
    const client = new RealtimeClient({
      url: () => socketUrl(settings),
      maxReconnectAttempts: Infinity
    });
    const scope = await documentScope(settings);
    const options = await loadSettings(settingRegistry);
    const model: RealtimeModel = new RealtimeModel(client, {
      knownPeople: (): Promise<Member[]> => knownPeople(settings, model.lobbyName),
      documentScope: scope,
      lobby: options.lobby
    });
    const realtime = createRealtime(
      client,
      scope,
      () => model.lobbyName,
      model.lobbyChanged
    );
    client.errors.connect(error => {
      console.warn(`nyo-realtime: ${error.code}: ${error.message}`);
    });
    // A kernel's ChatWidget sends what a person types through this page (relay.ts).
    relayPublishes(client);

    const panel = new RealtimePanel(
      realtime,
      model,
      (path, cell) => {
        void openAt(app, path, cell);
      },
      {
        profile: profileApi(settings),
        renderMarkdown: rendermime ? markdownRenderer(rendermime) : undefined,
        showChat: options.showChat
      }
    );
    // Edited in the Settings Editor: applied at once, no reload.
    options.changed(({ lobby, showChat }) => {
      model.setLobby(lobby);
      panel.showChat = showChat;
    });
    panel.title.icon = peopleIcon;
    app.shell.add(panel, 'left', { rank: 1000 });

    // Mentions and unread messages reach a person with the panel closed too.
    const mentionToasts = new Map<string, string>();
    new ChatNotifier(model, {
      isChatVisible: () => panel.isVisible,
      unread: () => {
        panel.unread += 1;
      },
      mentioned: (authorId, author, text, count) => {
        const first = text.length > 140 ? `${text.slice(0, 139)}…` : text;
        const message =
          count === 1
            ? `${author} mentioned you: ${first}`
            : `${author} mentioned you ${count} times; the latest: ${first}`;
        const options = {
          autoClose: 10_000,
          actions: [
            {
              label: 'Open chat',
              callback: () => app.shell.activateById(panel.id)
            }
          ]
        };
        // One toast per run of mentions from one sender: updated while shown.
        const shown = mentionToasts.get(authorId);
        if (
          count === 1 ||
          shown === undefined ||
          !Notification.update({ id: shown, message, ...options })
        ) {
          mentionToasts.set(authorId, Notification.info(message, options));
        }
      }
    });

    if (statusBar) {
      const item = new PresenceStatus(model, () => app.shell.activateById(panel.id));
      statusBar.registerStatusItem(PLUGIN_ID, {
        item,
        align: 'left',
        rank: 100
      });
    }

    // Who ran which cell: everyone with the notebook open sees it.
    NotebookActions.executed.connect((_, { notebook, cell, success }) => {
      const path = notebookPaths.get(notebook);
      if (path && cell.model.type === 'code') {
        model
          .cellExecuted(path(), cellRefOf(notebook, cell), success)
          .catch(error => console.warn('nyo-realtime: could not share a run', error));
      }
    });

    const tracked = new WeakSet<Widget>();
    const track = (widget: Widget) => {
      if (!tracked.has(widget) && isDocumentWidget(widget)) {
        tracked.add(widget);
        trackDocument(model, widget);
      }
    };
    opener?.opened.connect((_, widget) => track(widget));
    // Views the opener announced before we were listening (a restored layout).
    void app.restored.then(() => {
      for (const widget of app.shell.widgets('main')) {
        track(widget);
      }
    });

    void client.connect().catch(error => {
      console.warn('nyo-realtime: not connected', error);
    });
    // Back on the network: try now rather than wait out the backoff.
    window.addEventListener('online', () => {
      if (client.state === 'reconnecting') {
        client.reconnect();
      }
    });
    return realtime;
  }
};

export default plugin;
