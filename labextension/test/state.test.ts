/**
 * The TypeScript client's shared state (`RealtimeClient.sharedState`) against a real
 * `nyo-realtime serve` subprocess: a live map, compare-and-set, changes once each,
 * consistent after a reconnection.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';

import { RealtimeClient, RealtimeError, StateChange } from '../src/client';
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

let counter = 0;
const fresh = () => `state:ts-${++counter}`;

async function client(user: string, url = server.url): Promise<RealtimeClient> {
  const made = new RealtimeClient({
    url,
    token: makeToken(user),
    createSocket,
    reconnectDelay: 50,
    maxReconnectDelay: 400,
    maxReconnectAttempts: Infinity
  });
  clients.push(made);
  await made.connect();
  return made;
}

describe('sharedState', () => {
  it('is a live map that every client sees alike, with compare-and-set', async () => {
    const room = fresh();
    const ada = (await client('ada')).sharedState(room);
    const bob = (await client('bob')).sharedState(room);
    await eventually(() => ada.isLoaded && bob.isLoaded, 'both snapshots');
    const heard: StateChange[] = [];
    bob.changed.connect(change => heard.push(change));

    const version = await ada.set('slider', 5);
    expect(ada.get('slider')).toBe(5);
    await eventually(() => bob.get('slider') === 5, 'bob sees 5');
    expect(bob.entries.get('slider')?.version).toBe(version);
    expect(bob.entries.get('slider')?.from?.userId).toBe('ada');

    const newer = await bob.compareAndSet('slider', 6, version);
    const stale = await ada.compareAndSet('slider', 7, version).catch(error => error);
    expect(stale).toBeInstanceOf(RealtimeError);
    expect((stale as RealtimeError).code).toBe('conflict');
    expect(((stale as RealtimeError).entry as { version: string }).version).toBe(newer);
    const forged = await ada.set('~bob/vote', 'x').catch(error => error);
    expect((forged as RealtimeError).code).toBe('forbidden');

    await ada.delete('slider');
    await eventually(() => !bob.entries.has('slider'), 'bob sees it go');
    expect(heard.map(change => change.value)).toEqual([5, 6, null]);
    expect(bob.toObject()).toEqual({});
  });

  it('after a lost connection, holds what was written meanwhile, each change once', async () => {
    const room = fresh();
    const relay = await new Relay(server.port).start();
    try {
      const reader = (await client('bob', relay.url)).sharedState(room);
      const writer = (await client('ada')).sharedState(room);
      await eventually(() => reader.isLoaded && writer.isLoaded, 'snapshots');
      await writer.set('a', 1);
      await eventually(() => reader.get('a') === 1, 'a arrives');
      const versions: string[] = [];
      reader.changed.connect(change => versions.push(change.entry.version));

      relay.cut();
      await writer.set('a', 2);
      await writer.set('b', 'new');
      await writer.delete('a');
      relay.restore();
      await eventually(
        () => reader.get('b') === 'new' && !reader.entries.has('a'),
        'caught up'
      );
      expect(reader.toObject()).toEqual(writer.toObject());
      expect(new Set(versions).size).toBe(versions.length);
    } finally {
      await relay.close();
    }
  });
});
