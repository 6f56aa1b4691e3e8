/**
 * Messages typed into a kernel's `ChatWidget` when the kernel is not a person
 * (docs/protocol.md, `kind`): the widget's front end asks, with the DOM event
 * `nyo-realtime:publish` on `document`, that this page's own connection send
 * them, so that they are signed by the person who typed them and not by the
 * kernel. Taking the event (`preventDefault`) tells the widget the extension
 * is here; `detail.result` is then the publish's promise.
 *
 * Only chat messages are relayed. Any script of the page could ask, but any
 * script of the page can already use this connection (it is the page's).
 */
import { RealtimeClient } from './client';

export const PUBLISH_EVENT = 'nyo-realtime:publish';

const RELAYED_EVENTS: ReadonlySet<string> = new Set(['chat:message']);

/** What a widget puts in the event's `detail`; `result` is filled in here. */
export interface PublishRequest {
  channel: string;
  event: string;
  payload: unknown;
  result: Promise<string> | null;
}

/** Relay publish requests to `client`; returns what stops it. */
export function relayPublishes(
  client: RealtimeClient,
  target: EventTarget = document
): () => void {
  const listener = (event: Event): void => {
    const detail = (event as CustomEvent<PublishRequest | null>).detail;
    if (
      !detail ||
      typeof detail.channel !== 'string' ||
      !detail.channel ||
      !RELAYED_EVENTS.has(detail.event)
    ) {
      return;
    }
    event.preventDefault();
    // Followed from now on (a person who chats on a channel is on it); the
    // publish waits for the subscription.
    detail.result = client
      .channel(detail.channel, { history: false })
      .publish(detail.event, detail.payload);
  };
  target.addEventListener(PUBLISH_EVENT, listener);
  return () => target.removeEventListener(PUBLISH_EVENT, listener);
}
