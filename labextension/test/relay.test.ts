/**
 * A kernel's ChatWidget asks the page to publish what a person typed (relay.ts);
 * kernels are never counted as people (isPerson).
 */
import { describe, expect, it } from 'vitest';

import { isPerson, RealtimeClient } from '../src/client';
import { PUBLISH_EVENT, PublishRequest, relayPublishes } from '../src/relay';

function fakeClient(published: unknown[][]): RealtimeClient {
  return {
    channel: (name: string) => ({
      publish: (event: string, payload: unknown) => {
        published.push([name, event, payload]);
        return Promise.resolve('m-1');
      }
    })
  } as unknown as RealtimeClient;
}

function ask(target: EventTarget, detail: Partial<PublishRequest>): CustomEvent {
  const request = new CustomEvent(PUBLISH_EVENT, {
    detail: { result: null, ...detail },
    cancelable: true
  });
  target.dispatchEvent(request);
  return request;
}

describe('relayPublishes', () => {
  it('publishes a chat message on the page connection and says so', async () => {
    const published: unknown[][] = [];
    const target = new EventTarget();
    const stop = relayPublishes(fakeClient(published), target);
    const request = ask(target, {
      channel: 'lobby',
      event: 'chat:message',
      payload: { text: 'hi' }
    });
    expect(request.defaultPrevented).toBe(true);
    await expect(request.detail.result).resolves.toBe('m-1');
    expect(published).toEqual([['lobby', 'chat:message', { text: 'hi' }]]);

    // Only chat messages; and nothing once stopped.
    expect(ask(target, { channel: 'lobby', event: 'other' }).defaultPrevented).toBe(
      false
    );
    stop();
    const late = ask(target, { channel: 'lobby', event: 'chat:message', payload: {} });
    expect(late.defaultPrevented).toBe(false);
    expect(published).toHaveLength(1);
  });
});

describe('isPerson', () => {
  it('is a person unless the kind says otherwise', () => {
    expect(isPerson({})).toBe(true);
    expect(isPerson({ kind: 'person' })).toBe(true);
    expect(isPerson({ kind: 'kernel' })).toBe(false);
    expect(isPerson({ kind: 'robot' })).toBe(false);
  });
});
