/**
 * Issue 23: a subscription the server answers `unavailable` (its engine busy, or
 * away for a moment) is sent again after a jittered delay that grows, until it
 * is subscribed. Against a scripted socket: the refusals are the server's to make.
 */
import { afterEach, describe, expect, it } from 'vitest';

import { RealtimeClient, RealtimeError, WebSocketLike } from '../src/client';
import { eventually } from './harness';

const OPEN = 1;

/** A socket that answers like a server whose engine refuses the first `refusals` subscribes. */
class Scripted implements WebSocketLike {
  readyState = 0;
  onopen: ((ev: any) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: any) => void) | null = null;
  onmessage: ((ev: { data: any }) => void) | null = null;

  constructor(
    readonly number: number,
    private _server: { refusals: number; subscribes: { socket: number; at: number }[] }
  ) {
    setTimeout(() => {
      this.readyState = OPEN;
      this.onopen?.({});
    }, 1);
  }

  send(data: string): void {
    const frame = JSON.parse(data);
    if (frame.type === 'auth') {
      this._reply({
        type: 'authenticated',
        user: { userId: 'ada' },
        connectionId: 'c'
      });
    } else if (frame.type === 'ping') {
      this._reply({ type: 'pong', ref: frame.ref });
    } else if (frame.type === 'unsubscribe') {
      this._reply({ type: 'unsubscribed', ref: frame.ref, channel: frame.channel });
    } else if (frame.type === 'subscribe') {
      this._server.subscribes.push({ socket: this.number, at: Date.now() });
      if (this.number > 1 && this._server.refusals > 0) {
        this._server.refusals--;
        // As the hub answers a frame without a ref: the channel says which.
        this._reply({
          type: 'error',
          code: 'unavailable',
          message: 'the server is busy',
          channel: frame.channel
        });
      } else {
        this._reply({
          type: 'subscribed',
          channel: frame.channel,
          channelType: 'public'
        });
      }
    }
  }

  close(code = 1000, reason = ''): void {
    if (this.readyState > OPEN) {
      return;
    }
    this.readyState = 3;
    setTimeout(() => this.onclose?.({ code, reason }), 1);
  }

  private _reply(frame: Record<string, unknown>): void {
    setTimeout(() => this.onmessage?.({ data: JSON.stringify(frame) }), 1);
  }
}

const clients: RealtimeClient[] = [];

afterEach(() => {
  clients.splice(0).forEach(client => client.close());
});

describe('a subscription answered unavailable', () => {
  it('is sent again with a growing, jittered delay until it is subscribed', async () => {
    const server = { refusals: 2, subscribes: [] as { socket: number; at: number }[] };
    const sockets: Scripted[] = [];
    const base = 100;
    const client = new RealtimeClient({
      url: 'ws://scripted/ws',
      token: 'token',
      reconnectDelay: 10,
      resubscribeDelay: base,
      random: () => 1, // the jitter at its widest: the windows show whole
      createSocket: () => {
        const socket = new Scripted(sockets.length + 1, server);
        sockets.push(socket);
        return socket;
      }
    });
    clients.push(client);
    const errors: RealtimeError[] = [];
    client.errors.connect(error => errors.push(error));
    const subscribed: boolean[] = [];
    await client.connect();
    const channel = client.channel('room');
    channel.subscribed.connect(({ resubscribed }) => subscribed.push(resubscribed));
    await eventually(() => channel.isSubscribed, 'subscribed');

    sockets[0].close(1001, 'going away'); // the server goes; the client comes back
    await eventually(() => subscribed.length === 2, 'resubscribed');
    expect(subscribed).toEqual([false, true]);
    expect(channel.isSubscribed).toBe(true);
    expect(server.subscribes.map(s => s.socket)).toEqual([1, 2, 2, 2]);
    expect(errors.map(e => [e.code, e.channel])).toEqual([
      ['unavailable', 'room'],
      ['unavailable', 'room']
    ]);
    const at = server.subscribes.map(s => s.at);
    // Waited in the first window, then in one twice as wide.
    expect(at[2] - at[1]).toBeGreaterThanOrEqual(0.9 * base);
    expect(at[3] - at[2]).toBeGreaterThanOrEqual(1.9 * base);
  });

  it('is not retried after the channel is left', async () => {
    const server = { refusals: 1, subscribes: [] as { socket: number; at: number }[] };
    const sockets: Scripted[] = [];
    const client = new RealtimeClient({
      url: 'ws://scripted/ws',
      token: 'token',
      reconnectDelay: 10,
      resubscribeDelay: 50,
      random: () => 1,
      createSocket: () => {
        const socket = new Scripted(sockets.length + 1, server);
        sockets.push(socket);
        return socket;
      }
    });
    clients.push(client);
    await client.connect();
    const channel = client.channel('room');
    await eventually(() => channel.isSubscribed, 'subscribed');
    sockets[0].close(1001, 'going away');
    await eventually(() => server.subscribes.length === 2, 'refused once');
    await client.unsubscribe('room');
    await new Promise(resolve => setTimeout(resolve, 150));
    expect(server.subscribes.length).toBe(2);
  });
});
