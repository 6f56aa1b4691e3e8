// @vitest-environment jsdom
/**
 * The React hooks (src/reactHooks.ts) in jsdom, with React Testing Library, against
 * a real `nyo-realtime serve` subprocess: what a component sees as state, and
 * what another client (a plain `RealtimeClient`) sees of it.
 */
import {
  act,
  cleanup,
  configure,
  render,
  renderHook,
  waitFor
} from '@testing-library/react';
import { Signal } from '@lumino/signaling';
import * as React from 'react';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { Member, Message, RealtimeClient, WebSocketLike } from '../src/client';
import {
  useChannel,
  useLobby,
  usePresence,
  useRealtimeChannel,
  useSharedState,
  useWebSocket,
  UseWebSocketOptions,
  WEBSOCKET_DEFAULTS
} from '../src/reactHooks';
import { peekChannel } from '../src/store';
import { createRealtime } from '../src/tokens';
import {
  createSocket,
  eventually,
  freePort,
  makeToken,
  Relay,
  StandaloneServer
} from './harness';

// Updates here come from a real network, not from anything a test does inside
// `act`; React's act() bookkeeping would only warn about each of them.
(globalThis as { IS_REACT_ACT_ENVIRONMENT?: boolean }).IS_REACT_ACT_ENVIRONMENT = false;

// waitFor's 1 s default is short for a real server on a busy machine: the
// harness's `eventually` bound instead.
configure({ asyncUtilTimeout: 10_000 });

let server: StandaloneServer;
const clients: RealtimeClient[] = [];

beforeAll(async () => {
  server = await new StandaloneServer().start();
});

afterAll(async () => {
  await server.dispose();
});

afterEach(() => {
  // No vitest globals, so Testing Library cannot register its own cleanup.
  cleanup();
  for (const client of clients.splice(0)) {
    client.close();
  }
});

let counter = 0;
function fresh(prefix: string): string {
  return `${prefix}:hooks-${++counter}`;
}

/** Another person: a plain client, outside React. */
async function other(user: string): Promise<RealtimeClient> {
  const client = new RealtimeClient({
    url: server.url,
    token: makeToken(user),
    createSocket,
    reconnectDelay: 50,
    maxReconnectDelay: 400
  });
  clients.push(client);
  await client.connect();
  return client;
}

/** A socket factory that records every socket made and every frame sent. */
function recorder() {
  const sockets: WebSocketLike[] = [];
  const sent: Record<string, any>[] = [];
  const factory = (url: string): WebSocketLike => {
    const socket = createSocket(url);
    const send = socket.send.bind(socket);
    socket.send = (data: string) => {
      sent.push(JSON.parse(data));
      send(data);
    };
    sockets.push(socket);
    return socket;
  };
  const frames = (type: string, channel?: string) =>
    sent.filter(
      f => f.type === type && (channel === undefined || f.channel === channel)
    );
  return { factory, sockets, sent, frames };
}

function options(
  user: string,
  extra: Partial<UseWebSocketOptions> = {}
): UseWebSocketOptions {
  return { url: server.url, token: makeToken(user), createSocket, ...extra };
}

const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

describe('useRealtimeChannel on its own connection ({url, token})', () => {
  it('messages arrive as state, and send resolves with the acknowledged id', async () => {
    const room = fresh('room');
    const { result } = renderHook(() => useRealtimeChannel(options('ada'), room));
    expect(result.current.connectionState).toBe('connecting');
    await waitFor(() => expect(result.current.isSubscribed).toBe(true));
    expect(result.current.connectionState).toBe('open');

    const bob = await other('bob');
    const bobSees: Message[] = [];
    bob.channel(room).messages.connect(m => bobSees.push(m));
    await eventually(() => bob.channel(room).isSubscribed, 'bob subscribed');
    const fromBob = await bob.channel(room).publish('chat', { text: 'hi ada' });
    await waitFor(() =>
      expect(result.current.messages.map(m => m.id)).toEqual([fromBob])
    );
    expect(result.current.messages[0]).toMatchObject({
      event: 'chat',
      payload: { text: 'hi ada' },
      from: { userId: 'bob' }
    });

    let id = '';
    await act(async () => {
      id = await result.current.send('chat', { text: 'hi bob' });
    });
    expect(id).toMatch(/\S/);
    expect(id).not.toBe(fromBob);
    await waitFor(() =>
      expect(result.current.messages.map(m => m.id)).toEqual([fromBob, id])
    );
    // The id is the server's: the other side got the same message under it.
    await eventually(() => bobSees.find(m => m.id === id), 'bob gets the message');
    expect(bobSees.find(m => m.id === id)!.payload).toEqual({ text: 'hi bob' });
  });

  it('members join and leave, and updateStatus reaches another client', async () => {
    const room = fresh('presence-room');
    const { result } = renderHook(() => useRealtimeChannel(options('ada'), room));
    await waitFor(() =>
      expect(result.current.members.map(m => m.userId)).toEqual(['ada'])
    );

    const bob = await other('bob');
    const bobs = bob.channel(room);
    await waitFor(() =>
      expect(result.current.members.map(m => m.userId).sort()).toEqual(['ada', 'bob'])
    );

    let members: Member[] = [];
    await act(async () => {
      members = await result.current.updateStatus('away', { file: 'a.ipynb' });
    });
    expect(members.find(m => m.userId === 'ada')).toMatchObject({
      status: 'away',
      meta: { file: 'a.ipynb' }
    });
    await eventually(
      () => bobs.members.get('ada')?.status === 'away',
      'bob sees ada away'
    );
    expect(bobs.members.get('ada')!.meta).toEqual({ file: 'a.ipynb' });
    await waitFor(() =>
      expect(result.current.members.find(m => m.userId === 'ada')?.status).toBe('away')
    );

    // The other way: bob's status change is state here.
    await bobs.setPresence({ status: 'busy' });
    await waitFor(() =>
      expect(result.current.members.find(m => m.userId === 'bob')?.status).toBe('busy')
    );

    await bobs.leave();
    await waitFor(() =>
      expect(result.current.members.map(m => m.userId)).toEqual(['ada'])
    );
  });

  it('unmounting unsubscribes and closes the connection it opened', async () => {
    const room = fresh('presence-room');
    const bob = await other('bob');
    const bobs = bob.channel(room);
    const rec = recorder();
    const { result, unmount } = renderHook(() =>
      useRealtimeChannel(options('ada', { createSocket: rec.factory }), room)
    );
    await eventually(() => bobs.members.has('ada'), 'bob sees ada join');
    expect(result.current.isSubscribed).toBe(true);

    unmount();
    await eventually(() => !bobs.members.has('ada'), 'bob sees ada leave');
    expect(rec.sockets[0].readyState).toBeGreaterThanOrEqual(2); // closing or closed
  });
});

describe('the hooks on a shared connection (IRealtime)', () => {
  async function shared(user: string, factory = createSocket) {
    const client = new RealtimeClient({
      url: server.url,
      token: makeToken(user),
      createSocket: factory,
      reconnectDelay: 50,
      maxReconnectDelay: 400
    });
    clients.push(client);
    return createRealtime(client);
  }

  it('follow its state and channels, and unmounting leaves only what nobody else holds', async () => {
    const rec = recorder();
    const realtime = await shared('ada', rec.factory);
    const room = fresh('presence-room');
    const bob = await other('bob');
    const bobs = bob.channel(room);

    // Two components on one channel, and the connection's own state.
    const first = renderHook(() => ({
      ws: useWebSocket(realtime),
      presence: usePresence(realtime, room)
    }));
    const second = renderHook(() => useChannel(realtime, room));
    expect(first.result.current.ws.connectionState).toBe('connecting');
    void realtime.client.connect();
    await waitFor(() => expect(first.result.current.ws.connectionState).toBe('open'));
    expect(first.result.current.ws.user?.userId).toBe('ada');
    await waitFor(() => expect(second.result.current.isSubscribed).toBe(true));
    await waitFor(() =>
      expect(first.result.current.presence.members.map(m => m.userId).sort()).toEqual([
        'ada',
        'bob'
      ])
    );
    // One connection, one subscription for both.
    expect(rec.sockets).toHaveLength(1);
    expect(rec.frames('subscribe', room)).toHaveLength(1);

    // One lets go: the other still holds the channel.
    first.unmount();
    await sleep(200);
    expect(rec.frames('unsubscribe', room)).toHaveLength(0);
    expect(bobs.members.has('ada')).toBe(true);

    // The last lets go: unsubscribed, and the shared connection stays open.
    second.unmount();
    await eventually(() => !bobs.members.has('ada'), 'bob sees ada leave');
    expect(rec.frames('unsubscribe', room)).toHaveLength(1);
    expect(realtime.client.state).toBe('open');
    expect(peekChannel(realtime.client, room)).toBeUndefined();
  });

  it('usePresence(realtime, realtime.lobby) follows the lobby when it moves', async () => {
    const client = new RealtimeClient({
      url: server.url,
      token: makeToken('ada'),
      createSocket,
      reconnectDelay: 50,
      maxReconnectDelay: 400
    });
    clients.push(client);
    const first = fresh('presence-lobby-a');
    const second = fresh('presence-lobby-b');
    // What the plugin does: the lobby's name from the settings, and a signal
    // when the Settings Editor changes it.
    let lobby = first;
    const moved = new Signal<unknown, void>({});
    const realtime = createRealtime(client, '', () => lobby, moved);
    const announced: string[] = [];
    realtime.lobbyChanged.connect((_, name) => announced.push(name));
    await client.connect();
    const bob = await other('bob');
    bob.channel(second);
    await eventually(
      () => bob.channel(second).isSubscribed,
      'bob is in the second lobby'
    );

    // As docs/react.md writes it: nothing re-renders this component but the hooks.
    const { result } = renderHook(() => ({
      lobby: useLobby(realtime),
      members: usePresence(realtime, realtime.lobby).members
    }));
    await waitFor(() =>
      expect(result.current.members.map(m => m.userId)).toEqual(['ada'])
    );
    expect(result.current.lobby).toBe(first);

    lobby = second;
    moved.emit();
    expect(announced).toEqual([second]);
    await waitFor(() =>
      expect(result.current.members.map(m => m.userId).sort()).toEqual(['ada', 'bob'])
    );
    expect(result.current.lobby).toBe(second);
    // The old lobby is let go.
    await eventually(
      () => peekChannel(client, first) === undefined,
      'first lobby released'
    );
  });

  it('a component mounted late gets what the channel already received', async () => {
    const realtime = await shared('ada');
    await realtime.client.connect();
    const room = fresh('room');
    const lease = realtime.openChannel(room);
    await eventually(() => lease.channel.isSubscribed, 'subscribed');
    const bob = await other('bob');
    bob.channel(room);
    await eventually(() => bob.channel(room).isSubscribed, 'bob subscribed');
    const id = await bob.channel(room).publish('note', 1);
    await eventually(() => lease.store.snapshot.messages.length === 1, 'message held');

    const { result } = renderHook(() => useChannel(realtime, room));
    expect(result.current.messages.map(m => m.id)).toEqual([id]);
    expect(result.current.isSubscribed).toBe(true);
    lease.release();
  });
});

describe('re-rendering', () => {
  it('does not resubscribe, reconnect or lose the latest onMessage', async () => {
    const room = fresh('room');
    const rec = recorder();
    const seen: string[] = [];

    function Room(props: { label: string }): React.ReactElement {
      // New option objects and functions on every render, as people write them.
      const ws = useWebSocket({
        url: server.url,
        token: makeToken('ada'),
        createSocket: url => rec.factory(url)
      });
      const { messages, isSubscribed } = useChannel(ws, room, {
        onMessage: message => seen.push(`${props.label}:${message.id}`)
      });
      const { members } = usePresence(ws, room);
      return (
        <div data-testid="room" data-subscribed={String(isSubscribed)}>
          {props.label} {messages.length} {members.length}
        </div>
      );
    }

    const view = render(<Room label="a" />);
    await waitFor(() =>
      expect(view.getByTestId('room').dataset.subscribed).toBe('true')
    );
    for (const label of ['b', 'c', 'd']) {
      view.rerender(<Room label={label} />);
    }
    const bob = await other('bob');
    bob.channel(room);
    await eventually(() => bob.channel(room).isSubscribed, 'bob subscribed');
    const id = await bob.channel(room).publish('note', 'x');
    await waitFor(() => expect(seen).toEqual([`d:${id}`]));
    await waitFor(() => expect(view.getByTestId('room').textContent).toBe('d 1 2'));

    expect(rec.sockets).toHaveLength(1);
    expect(rec.frames('subscribe', room)).toHaveLength(1);
    expect(rec.frames('unsubscribe')).toHaveLength(0);
  });
});

describe('client options', () => {
  it('has the documented defaults', () => {
    expect(WEBSOCKET_DEFAULTS).toEqual({
      autoConnect: true,
      reconnect: true,
      reconnectDelay: 3000,
      maxReconnectAttempts: 10,
      heartbeatInterval: 25_000
    });
  });

  it('autoConnect false: no connection until connect()', async () => {
    const rec = recorder();
    const room = fresh('room');
    const { result } = renderHook(() =>
      useRealtimeChannel(
        options('ada', { autoConnect: false, createSocket: rec.factory }),
        room
      )
    );
    await sleep(300);
    expect(rec.sockets).toHaveLength(0);
    expect(result.current.connectionState).toBe('closed');
    expect(result.current.isSubscribed).toBe(false);

    const ws = renderHook(() =>
      useWebSocket(options('ada', { autoConnect: false, createSocket: rec.factory }))
    );
    await act(async () => {
      await ws.result.current.connect();
    });
    expect(ws.result.current.connectionState).toBe('open');
    expect(rec.sockets).toHaveLength(1);
  });

  it('reconnect false: a dropped connection stays closed', async () => {
    const relay = await new Relay(server.port).start();
    try {
      const rec = recorder();
      const { result } = renderHook(() =>
        useWebSocket({
          url: relay.url,
          token: makeToken('ada'),
          createSocket: rec.factory,
          reconnect: false,
          reconnectDelay: 20
        })
      );
      await waitFor(() => expect(result.current.connectionState).toBe('open'));
      relay.cut();
      relay.restore();
      await waitFor(() => expect(result.current.connectionState).toBe('closed'));
      await sleep(400);
      expect(result.current.connectionState).toBe('closed');
      expect(rec.sockets).toHaveLength(1);
    } finally {
      await relay.close();
    }
  });

  it('reconnect true: a dropped connection comes back', async () => {
    const relay = await new Relay(server.port).start();
    try {
      const rec = recorder();
      // Every state the component renders, in order: recorded, not polled, as
      // a state can come and go between two polls on a busy machine.
      const rendered: string[] = [];
      const { result } = renderHook(() => {
        const ws = useWebSocket({
          url: relay.url,
          token: makeToken('ada'),
          createSocket: rec.factory,
          reconnectDelay: 20
        });
        if (rendered.at(-1) !== ws.connectionState) {
          rendered.push(ws.connectionState);
        }
        return ws;
      });
      await waitFor(() => expect(rendered).toContain('open'));
      relay.cut();
      await waitFor(() => expect(rendered).toContain('reconnecting'));
      const cut = rendered.indexOf('reconnecting');
      relay.restore();
      await waitFor(() => expect(rendered.slice(cut)).toContain('open'));
      expect(result.current.connectionState).toBe('open');
      expect(rec.sockets.length).toBeGreaterThan(1);
    } finally {
      await relay.close();
    }
  });

  it('maxReconnectAttempts: that many attempts after the first, then closed', async () => {
    const rec = recorder();
    const nobody = `ws://127.0.0.1:${await freePort()}/ws`;
    const { result } = renderHook(() =>
      useWebSocket({
        url: nobody,
        token: makeToken('ada'),
        createSocket: rec.factory,
        reconnectDelay: 10,
        maxReconnectAttempts: 3
      })
    );
    await waitFor(() => expect(result.current.connectionState).toBe('closed'), {
      timeout: 10_000
    });
    expect(rec.sockets).toHaveLength(4);
    await sleep(400);
    expect(rec.sockets).toHaveLength(4);

    // connect() starts over, with the same limit.
    await act(async () => {
      await result.current.connect().catch(() => undefined);
    });
    expect(result.current.connectionState).toBe('closed');
    expect(rec.sockets).toHaveLength(8);
  });

  it('maxReconnectAttempts Infinity: keeps trying past the default limit', async () => {
    const rec = recorder();
    const nobody = `ws://127.0.0.1:${await freePort()}/ws`;
    const { result } = renderHook(() =>
      useWebSocket({
        url: nobody,
        token: makeToken('ada'),
        createSocket: rec.factory,
        reconnectDelay: 1,
        maxReconnectAttempts: Infinity
      })
    );
    await eventually(
      () => rec.sockets.length > WEBSOCKET_DEFAULTS.maxReconnectAttempts + 2,
      'more attempts than the default limit',
      15_000
    );
    expect(result.current.connectionState).not.toBe('closed');
  });

  it('heartbeatInterval: pings at that interval', async () => {
    const rec = recorder();
    const { result } = renderHook(() =>
      useWebSocket(
        options('ada', { createSocket: rec.factory, heartbeatInterval: 100 })
      )
    );
    await waitFor(() => expect(result.current.connectionState).toBe('open'));
    await sleep(550);
    const pings = rec.frames('ping').length;
    expect(pings).toBeGreaterThanOrEqual(3);
    expect(pings).toBeLessThanOrEqual(6);
  });
});

describe('useSharedState', () => {
  it('shows the state as it changes anywhere, and writes through the server', async () => {
    const room = fresh('state');
    const bob = await other('bob');
    const bobs = bob.sharedState(room);
    await eventually(() => bobs.isLoaded, 'bob has the snapshot');
    await bobs.set('params', { epochs: 10 });

    const { result } = renderHook(() => {
      const ws = useWebSocket(options('ada'));
      return useSharedState(ws, room);
    });
    // A component mounted late starts from the current state.
    await waitFor(() =>
      expect(result.current.state).toEqual({ params: { epochs: 10 } })
    );
    expect(result.current.loaded).toBe(true);

    await bobs.set('slider', 3);
    await waitFor(() => expect(result.current.state.slider).toBe(3));
    const version = await result.current.set('slider', 4);
    await eventually(() => bobs.get('slider') === 4, 'bob sees 4');
    expect(result.current.version('slider')).toBe(version);
    const stale = await result.current
      .compareAndSet('slider', 5, 'nope-1')
      .catch(error => error);
    expect(stale.code).toBe('conflict');
    await result.current.remove('params');
    await waitFor(() => expect(result.current.state).toEqual({ slider: 4 }));
  });
});
