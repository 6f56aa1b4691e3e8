/**
 * `IRealtime`: the page's one nyo-realtime connection, for other extensions.
 *
 * The nyo-realtime-ext plugin provides it. An extension that requires it opens
 * channels on the same WebSocket as the side panel, as the user Jupyter's login
 * says (never an identity of its own choosing), instead of a second socket.
 * See docs/react.md.
 */
import { Token } from '@lumino/coreutils';
import { ISignal, Signal } from '@lumino/signaling';

import { documentChannel, LOBBY } from './channels';
import type { RealtimeClient } from './client';
import { ChannelLease, openChannel } from './store';

export interface IRealtime {
  /**
   * The connection, authenticated by Jupyter's login (cookie or token). It
   * belongs to the page: do not `close()` it, and do not `unsubscribe` a
   * channel you did not open yourself; use `openChannel` or the hooks, which
   * share channels with the rest of the page.
   */
  readonly client: RealtimeClient;
  /**
   * The channel everyone on this Jupyter server is in: presence and chat. The
   * `lobby` setting may move it while the page is open: read it each time,
   * and follow `lobbyChanged` (the hooks do, for React components).
   */
  readonly lobby: string;
  /** Emits the new `lobby` when it moves (the setting changed in the Settings Editor). */
  readonly lobbyChanged: ISignal<IRealtime, string>;
  /** The presence channel of a document path on this server (scoped on JupyterHub). */
  documentChannel(path: string): string;
  /**
   * Follow a channel, shared with every other holder on this page; call
   * `release()` when done. The hooks do this for React components.
   */
  openChannel(name: string, options?: { history?: boolean }): ChannelLease;
}

export const IRealtime = new Token<IRealtime>(
  'nyo-realtime-ext:IRealtime',
  "The page's one authenticated nyo-realtime connection: open channels, see who is here, chat."
);

/**
 * An `IRealtime` over a client: what the plugin provides, and what a page
 * outside JupyterLab (or a test) can build around a client of its own.
 * `documentScope` is the server's `Realtime.document_scope` ('' when shared);
 * `lobby` says the lobby's current channel name, and `lobbyChanged`, when
 * given, says when that changed (`IRealtime.lobbyChanged` then emits the new name).
 */
export function createRealtime(
  client: RealtimeClient,
  documentScope = '',
  lobby: () => string = () => LOBBY,
  lobbyChanged?: ISignal<unknown, unknown>
): IRealtime {
  const realtime: IRealtime = {
    client,
    // Read each time: the `lobby` setting may move it while the page is open.
    get lobby() {
      return lobby();
    },
    get lobbyChanged() {
      return changed;
    },
    documentChannel: path => documentChannel(path, documentScope),
    openChannel: (name, options) => openChannel(client, name, options)
  };
  const changed = new Signal<IRealtime, string>(realtime);
  let last = lobby();
  lobbyChanged?.connect(() => {
    const now = lobby();
    if (now !== last) {
      last = now;
      changed.emit(now);
    }
  });
  return realtime;
}
