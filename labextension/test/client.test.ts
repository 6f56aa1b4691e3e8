/**
 * The TypeScript client against a real `nyo-realtime serve` subprocess.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import {
  backoffDelay,
  backoffWindow,
  ConnectionState,
  DEFAULTS,
  Message,
  RealtimeClient,
  RealtimeError,
  RetryInfo
} from '../src/client';
import {
  createSocket,
  eventually,
  makeToken,
  Relay,
  StandaloneServer
} from './harness';

let server: StandaloneServer;
const clients: RealtimeClient[] = [];

beforeAll(async () => {
  server = await new StandaloneServer().start();
});

afterAll(async () => {
  await server.dispose();
});

afterEach(() => {
  for (const client of clients.splice(0)) {
    client.close();
  }
});

function client(
  user: string,
  options: { url?: string; claims?: Record<string, unknown>; token?: string } = {}
): RealtimeClient {
  const made = new RealtimeClient({
    url: options.url ?? server.url,
    token: options.token ?? makeToken(user, options.claims),
    createSocket,
    // Short delays keep the tests quick; the shape is what is under test.
    reconnectDelay: 50,
    maxReconnectDelay: 400,
    // Ten quick attempts take a second or two: a busy machine can take longer
    // to restart a server or restore a line, and a client that gave up would
    // fail the test. Giving up is the scenarios' and the hooks' subject.
    maxReconnectAttempts: Infinity
  });
  clients.push(made);
  return made;
}

/** Every state a client goes through, in order. */
function recordStates(c: RealtimeClient): ConnectionState[] {
  const states: ConnectionState[] = [c.state];
  c.stateChanged.connect(state => states.push(state));
  return states;
}

/**
 * Wait until `states` (from `recordStates`) holds `state` at `from` or later;
 * resolves with its index, to look for the next state after it. Recorded, not
 * polled: on a busy machine a state can come and go between two polls.
 */
async function reached(
  states: ConnectionState[],
  state: ConnectionState,
  what: string,
  options: { from?: number; timeout?: number } = {}
): Promise<number> {
  const found = await eventually(
    () => {
      const index = states.indexOf(state, options.from ?? 0);
      return index >= 0 && { index };
    },
    () => `${what} (states: ${states.join(', ')})`,
    options.timeout
  );
  return found.index;
}

function recordMessages(c: RealtimeClient, channel: string): Message[] {
  const seen: Message[] = [];
  c.channel(channel).messages.connect(message => seen.push(message));
  return seen;
}

let counter = 0;
/** A channel name no other test uses (the server is shared). */
function fresh(prefix: string): string {
  return `${prefix}:${++counter}`;
}

describe('presence', () => {
  it('two users see each other arrive, change status and meta, and leave', async () => {
    const room = fresh('room');
    const ada = client('ada');
    const bob = client('bob');
    expect((await ada.connect()).userId).toBe('ada');
    await bob.connect();

    const adaRoom = ada.channel(room);
    await eventually(() => adaRoom.isSubscribed, 'ada subscribed');
    expect([...adaRoom.members.keys()]).toEqual(['ada']);

    bob.channel(room);
    await eventually(() => adaRoom.members.has('bob'), 'ada to see bob join');
    expect(adaRoom.members.get('bob')!.name).toBe('Bob');

    await bob
      .channel(room)
      .setPresence({ status: 'busy', meta: { open: ['a.ipynb'] } });
    await eventually(
      () => adaRoom.members.get('bob')?.status === 'busy',
      'bob busy as seen by ada'
    );
    expect(adaRoom.members.get('bob')!.meta).toEqual({ open: ['a.ipynb'] });

    bob.close();
    await eventually(() => !adaRoom.members.has('bob'), 'bob to leave');
    expect(bob.state).toBe('closed');
  });

  it('a bad status is refused with the server error and changes nothing', async () => {
    const room = fresh('room');
    const ada = client('ada');
    await ada.connect();
    const channel = ada.channel(room);
    await eventually(() => channel.isSubscribed, 'subscribed');
    await expect(
      channel.setPresence({ status: 'sleeping' as 'away' })
    ).rejects.toMatchObject({ code: 'bad_request' });
    expect(channel.members.get('ada')!.status).toBe('online');
  });
});

describe('messages', () => {
  it('publish resolves with the id every subscriber sees, once and in order', async () => {
    const room = fresh('chat');
    const ada = client('ada');
    const bob = client('bob');
    await Promise.all([ada.connect(), bob.connect()]);
    const adaSeen = recordMessages(ada, room);
    const bobSeen = recordMessages(bob, room);
    await eventually(
      () => ada.channel(room).isSubscribed && bob.channel(room).isSubscribed,
      'both subscribed'
    );

    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      ids.push(await ada.channel(room).publish('chat', { text: `hello ${i}` }));
    }
    await eventually(() => bobSeen.length === 5, 'bob to get 5 messages');
    expect(bobSeen.map(m => m.id)).toEqual(ids);
    expect(bobSeen.map(m => (m.payload as any).text)).toEqual(
      [0, 1, 2, 3, 4].map(i => `hello ${i}`)
    );
    expect(bobSeen[0].from!.userId).toBe('ada');
    // Echo is on by default: the sender sees its own messages, once.
    await eventually(() => adaSeen.length === 5, 'ada to get her echo');
    expect(adaSeen.map(m => m.id)).toEqual(ids);
  });

  it('a channel opened with history gets what was said before, oldest first', async () => {
    const room = fresh('chat');
    const ada = client('ada');
    await ada.connect();
    for (const text of ['first', 'second', 'third']) {
      await ada.channel(room).publish('chat', { text });
    }
    const carol = client('carol');
    await carol.connect();
    const seen: Message[] = [];
    const channel = carol.channel(room, { history: true });
    channel.messages.connect(m => seen.push(m));
    await eventually(() => seen.length === 3, 'history');
    expect(seen.map(m => (m.payload as any).text)).toEqual([
      'first',
      'second',
      'third'
    ]);
  });

  it('publishing to a private channel without access fails with forbidden', async () => {
    const ada = client('ada');
    await ada.connect();
    const errors: RealtimeError[] = [];
    ada.errors.connect(e => errors.push(e));
    ada.channel(fresh('private-room'));
    await eventually(() => errors.length > 0, 'an error');
    expect(errors[0].code).toBe('forbidden');
    // The connection is still good for everything else.
    const open = ada.channel(fresh('room'));
    await eventually(() => open.isSubscribed, 'another subscription');
  });
});

describe('rights withdrawn', () => {
  it('a channel the server puts out is left for good, saying forbidden', async () => {
    const name = fresh('private-ops');
    const api = server.url.replace(/^ws/, 'http').replace(/\/ws$/, '/api/');
    const owner = {
      Authorization: `Bearer ${makeToken('owner', { channels: [name] })}`,
      'Content-Type': 'application/json'
    };
    const made = await fetch(`${api}channels`, {
      method: 'POST',
      headers: owner,
      body: JSON.stringify({ name, type: 'private', members: ['eve'] })
    });
    expect(made.status).toBe(201);
    const eve = client('eve');
    await eve.connect();
    const errors: RealtimeError[] = [];
    eve.errors.connect(e => errors.push(e));
    const channel = eve.channel(name);
    await eventually(() => channel.isSubscribed, 'the subscription');
    const patched = await fetch(`${api}channels/${encodeURIComponent(name)}`, {
      method: 'PATCH',
      headers: owner,
      body: JSON.stringify({ members: [] })
    });
    expect(patched.status).toBe(200);
    await eventually(() => channel.isDisposed, 'the channel to be left');
    expect(channel.isSubscribed).toBe(false);
    expect(errors.map(e => e.code)).toContain('forbidden');
  });
});

describe('reconnection', () => {
  let relay: Relay;

  beforeAll(async () => {
    relay = await new Relay(server.port).start();
  });

  afterAll(async () => {
    await relay.close();
  });

  it('after a cut line it shows reconnecting, resubscribes with since, and misses nothing', async () => {
    const room = fresh('chat');
    const ada = client('ada', { url: relay.url });
    const bob = client('bob');
    await Promise.all([ada.connect(), bob.connect()]);
    const states = recordStates(ada);
    const adaSeen = recordMessages(ada, room);
    await ada.channel(room).setPresence({ status: 'away' });
    const bobRoom = bob.channel(room);
    await eventually(() => ada.channel(room).isSubscribed, 'ada subscribed');
    await eventually(() => bobRoom.isSubscribed, 'bob subscribed');

    await bobRoom.publish('chat', { text: 'before' });
    await eventually(() => adaSeen.length === 1, 'ada to see "before"');

    relay.cut();
    const cut = await reached(states, 'reconnecting', 'reconnecting');
    // The server may take a moment to notice ada's socket is gone; what she
    // misses meanwhile must come back to her.
    await bobRoom.publish('chat', { text: 'while away 1' });
    await bobRoom.publish('chat', { text: 'while away 2' });
    relay.restore();

    await reached(states, 'open', 'open again', { from: cut });
    await eventually(() => adaSeen.length === 3, 'the missed messages');
    await bobRoom.publish('chat', { text: 'after' });
    await eventually(() => adaSeen.length === 4, '"after"');
    // Give any duplicate the time to arrive before checking there is none.
    await new Promise(resolve => setTimeout(resolve, 200));
    expect(adaSeen.map(m => (m.payload as any).text)).toEqual([
      'before',
      'while away 1',
      'while away 2',
      'after'
    ]);
    expect(new Set(adaSeen.map(m => m.id)).size).toBe(4);
    expect(states).toEqual(['open', 'reconnecting', 'open']);
    // Her status came back with her, not reset to online.
    await eventually(
      () => bobRoom.members.get('ada')?.status === 'away',
      'ada away again as seen by bob'
    );
  });

  it('a message sent while reconnecting goes out once, after the resubscription', async () => {
    const room = fresh('chat');
    const ada = client('ada', { url: relay.url });
    const bob = client('bob');
    await Promise.all([ada.connect(), bob.connect()]);
    const states = recordStates(ada);
    const bobSeen = recordMessages(bob, room);
    await eventually(() => ada.channel(room).isSubscribed, 'ada subscribed');
    await eventually(() => bob.channel(room).isSubscribed, 'bob subscribed');

    relay.cut();
    const cut = await reached(states, 'reconnecting', 'reconnecting');
    // The relay refuses every attempt until restored: still reconnecting.
    expect(ada.state).toBe('reconnecting');
    const sent = ada.channel(room).publish('chat', { text: 'typed offline' });
    relay.restore();
    const id = await sent;
    await reached(states, 'open', 'open again', { from: cut });
    await eventually(() => bobSeen.length === 1, 'bob to get it');
    await new Promise(resolve => setTimeout(resolve, 200));
    expect(bobSeen.map(m => m.id)).toEqual([id]);
  });

  it('history asked again after a reconnection shows nothing twice', async () => {
    const room = fresh('chat');
    const bob = client('bob');
    await bob.connect();
    await bob.channel(room).publish('chat', { text: 'old' });
    const ada = client('ada', { url: relay.url });
    await ada.connect();
    const states = recordStates(ada);
    const seen: Message[] = [];
    ada.channel(room, { history: true }).messages.connect(m => seen.push(m));
    await eventually(() => seen.length === 1, 'history');
    relay.cut();
    const cut = await reached(states, 'reconnecting', 'reconnecting');
    relay.restore();
    await reached(states, 'open', 'open again', { from: cut });
    await eventually(() => ada.channel(room).isSubscribed, 'resubscribed');
    await new Promise(resolve => setTimeout(resolve, 200));
    expect(seen.map(m => (m.payload as any).text)).toEqual(['old']);
  });
});

describe('heartbeat', () => {
  it('a link that goes silent without closing is noticed and replaced', async () => {
    // The server advertises its heartbeat; short ones make the test quick.
    const quick = await new StandaloneServer([
      '--heartbeat-interval', '0.3',
      '--heartbeat-timeout', '1'
    ]).start(); // prettier-ignore
    const relay = await new Relay(quick.port).start();
    try {
      const room = fresh('room');
      const ada = client('ada', { url: relay.url });
      await ada.connect();
      const before = ada.connectionId;
      const states = recordStates(ada);
      await eventually(() => ada.channel(room).isSubscribed, 'subscribed');

      relay.freeze();
      const lost = await reached(states, 'reconnecting', 'silence noticed');
      relay.restore();
      await reached(states, 'open', 'open again', { from: lost, timeout: 15_000 });
      expect(ada.connectionId).not.toBe(before);
      expect(states).toEqual(['open', 'reconnecting', 'open']);
      await eventually(() => ada.channel(room).isSubscribed, 'resubscribed');
      expect([...ada.channel(room).members.keys()]).toEqual(['ada']);
    } finally {
      await relay.close();
      await quick.dispose();
    }
  }, 60_000);
});

describe('server restart and refusal', () => {
  it('reconnects to a restarted server and keeps its channels and members', async () => {
    const own = await new StandaloneServer().start();
    try {
      const room = fresh('room');
      // However long a busy machine takes to stop and start the server, ada
      // keeps trying (see `client`): ten quick attempts, all refused, would
      // otherwise close her for good before it is back.
      const ada = client('ada', { url: own.url });
      await ada.connect();
      const states = recordStates(ada);
      const adaSeen = recordMessages(ada, room);
      await eventually(() => ada.channel(room).isSubscribed, 'subscribed');

      await own.stop(); // closes with 1001
      const lost = await reached(states, 'reconnecting', 'reconnecting');
      await own.start();
      await reached(states, 'open', 'open again', { from: lost, timeout: 15_000 });
      const bob = client('bob', { url: own.url });
      await bob.connect();
      await bob.channel(room).publish('chat', { text: 'after restart' });
      await eventually(() => adaSeen.length === 1, 'the message after restart');
      expect([...ada.channel(room).members.keys()].sort()).toEqual(['ada', 'bob']);
      expect(states[0]).toBe('open');
      expect(states).toContain('reconnecting');
      expect(states).not.toContain('closed');
      expect(states.at(-1)).toBe('open');
    } finally {
      await own.dispose();
    }
  }, 60_000);

  it('a message waiting for a channel that is left fails instead of hanging', async () => {
    const ada = client('ada', { url: server.url });
    const room = fresh('room');
    const channel = ada.channel(room);
    const sending = channel.publish('chat:message', { text: 'never sent' });
    await channel.leave(); // before the connection even opened
    await expect(sending).rejects.toMatchObject({ code: 'not_subscribed' });
    await ada.connect();
    expect(ada.state).toBe('open');
  });

  it('cut for flooding (4429), it backs off further before coming back', async () => {
    const strict = await new StandaloneServer(['--Realtime.rate_limit=5']).start();
    try {
      const ada = client('ada', { url: strict.url });
      await ada.connect();
      const errors: RealtimeError[] = [];
      ada.errors.connect(e => errors.push(e));
      const retries: RetryInfo[] = [];
      ada.retryScheduled.connect(info => retries.push(info));
      // Recorded, not polled: a jittered delay can be a few ms, shorter than a poll.
      const states = recordStates(ada);
      // Far past the burst of 10: the server warns once, then cuts.
      for (let i = 0; i < 40; i++) {
        ada.request({ type: 'ping' }).catch(() => undefined);
      }
      const cut = await reached(states, 'reconnecting', 'cut for flooding');
      expect(errors.map(e => e.code)).toContain('rate_limited');
      // The first attempt after it waits in the window of attempt 4 (was: the
      // attempt counter jumped to 4; now the window does, and the attempt is 1).
      expect(retries[0]).toMatchObject({ attempt: 1, code: 4429 });
      expect(retries[0].window).toBe(backoffWindow(4, 50, 400));
      // It does come back, and is welcome again.
      await reached(states, 'open', 'back', { from: cut });
    } finally {
      await strict.dispose();
    }
  }, 60_000);

  it('a refused token closes for good, with the reason, and does not retry', async () => {
    const mallory = client('mallory', {
      token: makeToken('mallory', {}, 'not-the-secret-not-the-secret-not-the-secret')
    });
    const states = recordStates(mallory);
    await expect(mallory.connect()).rejects.toMatchObject({ code: 'unauthorized' });
    expect(mallory.state).toBe('closed');
    await new Promise(resolve => setTimeout(resolve, 300));
    expect(states).toEqual(['connecting', 'closed']);
  });

  it('the identity is the token’s: a client cannot name itself', async () => {
    const ada = client('ada', { claims: { name: 'Ada Lovelace', tenant: 'acme' } });
    const user = await ada.connect();
    expect(user).toMatchObject({
      userId: 'ada',
      name: 'Ada Lovelace',
      tenantId: 'acme'
    });
    const room = fresh('room');
    const channel = ada.channel(room);
    await eventually(() => channel.isSubscribed, 'subscribed');
    await channel.setPresence({ meta: { name: 'Grace' } });
    expect(channel.members.get('ada')!.name).toBe('Ada Lovelace');
  });
});

// The policy of docs/protocol.md, "Client behaviour" (was: 0.5 s doubling to 30 s
// without limit, and a `backoff` option with partial jitter; now the Python
// client's numbers, attempts counted from 1).
describe('backoff', () => {
  it('doubles per attempt from 3 s up to the 30 s cap', () => {
    const top = (attempt: number) =>
      backoffDelay(attempt, undefined, undefined, () => 1);
    expect([1, 2, 3, 4, 5].map(top)).toEqual([3000, 6000, 12000, 24000, 30000]);
    expect(top(10)).toBe(30_000);
    expect(top(10_000)).toBe(30_000);
    expect(backoffWindow(DEFAULTS.rateLimitedAttempt)).toBe(24_000);
    expect(DEFAULTS.maxReconnectAttempts).toBe(10);
    expect(DEFAULTS.requestTimeout).toBe(10_000);
  });

  it('draws the delay anywhere in the window (full jitter, like the Python client)', () => {
    expect(backoffDelay(3, 3000, 30_000, () => 0)).toBe(0);
    expect(backoffDelay(3, 3000, 30_000, () => 0.25)).toBe(3000);
    const delays = new Set(Array.from({ length: 50 }, () => backoffDelay(3)));
    expect(delays.size).toBeGreaterThan(40);
    for (const delay of delays) {
      expect(delay).toBeGreaterThanOrEqual(0);
      expect(delay).toBeLessThan(12_000);
    }
  });
});
