/**
 * tests/scenarios/client.json replayed with the TypeScript client against a
 * real `nyo-realtime serve`.
 *
 * tests/test_client_scenarios.py replays the same file with the Python client:
 * what the two clients share (docs/protocol.md, "Client behaviour") is written
 * down once, as data. The step and expectation vocabulary is described at the
 * top of the JSON file.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import WebSocket from 'ws';
import { describe, expect, it } from 'vitest';

import {
  Channel,
  ClientOptions,
  ConnectionState,
  Member,
  Message,
  RealtimeClient,
  RetryInfo,
  STATUSES,
  WebSocketLike
} from '../src/client';
import { makeToken, Relay, StandaloneServer } from './harness';

const FILE = path.resolve(__dirname, '..', '..', 'tests', 'scenarios', 'client.json');
const SCENARIOS = JSON.parse(readFileSync(FILE, 'utf8'));
const WRONG_SECRET = 'not-the-secret-but-long-enough-for-hs256';
/** ms an expectation may take, unless it says `within`. */
const WAIT = 10_000;

type Step = Record<string, any>;

const now = () => performance.now();
const sleep = (ms: number) => new Promise(resolve => setTimeout(resolve, ms));

async function eventually<T>(
  predicate: () => T | undefined | null | false,
  what: () => string,
  timeout = WAIT
): Promise<T> {
  const deadline = now() + timeout;
  for (;;) {
    const value = predicate();
    if (value) {
      return value;
    }
    if (now() > deadline) {
      throw new Error(`timed out waiting for ${what()}`);
    }
    await sleep(10);
  }
}

/** `expected` is a subset of `actual`; '$name' strings stand for published ids. */
function matches(actual: any, expected: any, names: Map<string, string>): boolean {
  if (typeof expected === 'string' && expected.startsWith('$')) {
    return actual === names.get(expected.slice(1));
  }
  if (Array.isArray(expected)) {
    return (
      Array.isArray(actual) &&
      actual.length === expected.length &&
      expected.every((e, i) => matches(actual[i], e, names))
    );
  }
  if (expected !== null && typeof expected === 'object') {
    return (
      actual !== null &&
      typeof actual === 'object' &&
      Object.entries(expected).every(
        ([k, v]) => k in actual && matches(actual[k], v, names)
      )
    );
  }
  return actual === expected;
}

const closeTo = (value: number, expected: number) =>
  Math.abs(value - expected) <= 1e-9 + 1e-6 * Math.abs(expected);

function tokenOf(spec: { user: string; valid?: boolean }): string {
  return spec.valid === false
    ? makeToken(spec.user, {}, WRONG_SECRET)
    : makeToken(spec.user);
}

/** One client of a scenario and everything it did and saw. */
class Recorded {
  readonly client: RealtimeClient;
  readonly reconnectDelay: number;
  readonly states: { at: number; state: ConnectionState }[] = [];
  readonly retries: { at: number; info: RetryInfo }[] = [];
  readonly sent: { at: number; frame: any }[] = [];
  readonly received: any[] = [];
  readonly channels = new Map<string, Channel>();
  readonly messages = new Map<string, Message[]>();
  readonly subscribed = new Map<
    string,
    { recovered: boolean; resubscribed: boolean }[]
  >();
  tokenCalls = 0;

  constructor(spec: Step, url: string, defaults: Record<string, any>) {
    const json = { ...defaults, ...spec.options };
    const options: Partial<ClientOptions> = {};
    for (const [name, value] of Object.entries(json)) {
      if (name === 'random') {
        options.random = () => value as number;
      } else if (name === 'maxReconnectAttempts') {
        options.maxReconnectAttempts = value === null ? Infinity : (value as number);
      } else if (
        [
          'reconnectDelay',
          'maxReconnectDelay',
          'heartbeatInterval',
          'requestTimeout'
        ].includes(name)
      ) {
        (options as any)[name] = value;
      } else {
        throw new Error(`unknown client option ${name}`);
      }
    }
    this.reconnectDelay = json.reconnectDelay;
    this.client = new RealtimeClient({
      ...options,
      url,
      token: this._token(spec.token),
      createSocket: this._createSocket
    });
    this.states.push({ at: now(), state: this.client.state });
    this.client.stateChanged.connect(state => this.states.push({ at: now(), state }));
    this.client.retryScheduled.connect(info => this.retries.push({ at: now(), info }));
  }

  private _token(spec: Step): string | (() => string) {
    if (!spec.provider) {
      return tokenOf(spec as any);
    }
    const tokens = (spec.provider as any[]).map(tokenOf);
    return () => tokens[Math.min(++this.tokenCalls, tokens.length) - 1];
  }

  /** A `ws` socket that records every frame each way. */
  private _createSocket = (url: string): WebSocketLike => {
    const inner = new WebSocket(url);
    const outer: WebSocketLike = {
      get readyState() {
        return inner.readyState;
      },
      onopen: null,
      onclose: null,
      onerror: null,
      onmessage: null,
      send: (data: string) => {
        this.sent.push({ at: now(), frame: JSON.parse(data) });
        inner.send(data);
      },
      close: (code?: number, reason?: string) => inner.close(code, reason)
    };
    inner.onopen = event => outer.onopen?.(event);
    inner.onerror = event => outer.onerror?.(event);
    inner.onclose = event => outer.onclose?.(event);
    inner.onmessage = event => {
      this.received.push(JSON.parse(String(event.data)));
      outer.onmessage?.(event);
    };
    return outer;
  };

  stateNames(): ConnectionState[] {
    const names: ConnectionState[] = [];
    for (const { state } of this.states) {
      if (names.at(-1) !== state) {
        names.push(state);
      }
    }
    return names;
  }
}

class Replay {
  private _relay: Relay | undefined;
  private _clients = new Map<string, Recorded>();
  private _names = new Map<string, string>();
  private _marks = new Map<string, number>();

  constructor(
    private _scenario: Step,
    private _server: StandaloneServer
  ) {}

  async run(): Promise<void> {
    try {
      let number = 0;
      for (const step of this._scenario.steps as Step[]) {
        number++;
        try {
          if (step.do) {
            await (this as any)[`do_${step.do}`](step);
          } else {
            await (this as any)[`expect_${step.expect}`](step);
          }
        } catch (error) {
          throw new Error(`step ${number} ${JSON.stringify(step)}: ${error}`);
        }
      }
    } finally {
      for (const recorded of this._clients.values()) {
        recorded.client.close();
      }
      await this._relay?.close();
    }
  }

  private _get(step: Step): Recorded {
    return this._clients.get(step.client)!;
  }

  private _wait(step: Step): number {
    return step.within ?? WAIT;
  }

  // -- steps ------------------------------------------------------------------------

  async do_client(step: Step): Promise<void> {
    let url = this._server.url;
    if (step.via === 'relay') {
      this._relay ??= await new Relay(this._server.port).start();
      url = this._relay.url;
    }
    this._clients.set(step.name, new Recorded(step, url, SCENARIOS.defaults.options));
  }

  async do_connect(step: Step): Promise<void> {
    await this._get(step).client.connect();
  }

  async do_start(step: Step): Promise<void> {
    this._get(step)
      .client.connect()
      .catch(() => undefined);
  }

  async do_subscribe(step: Step): Promise<void> {
    const recorded = this._get(step);
    const name: string = step.channel;
    const channel = recorded.client.channel(name, { history: !!step.history });
    recorded.channels.set(name, channel);
    const messages: Message[] = [];
    recorded.messages.set(name, messages);
    channel.messages.connect(message => messages.push(message));
    const events: { recovered: boolean; resubscribed: boolean }[] = [];
    recorded.subscribed.set(name, events);
    channel.subscribed.connect(event => events.push(event));
    await eventually(
      () => channel.isSubscribed,
      () => `subscribed to ${name}`
    );
  }

  async do_publish(step: Step): Promise<void> {
    const channel = this._get(step).channels.get(step.channel)!;
    const id = await channel.publish(step.event, step.payload ?? null);
    if (step.as) {
      this._names.set(step.as, id);
    }
  }

  async do_status(step: Step): Promise<void> {
    const channel = this._get(step).channels.get(step.channel)!;
    await channel.setPresence({ status: step.status, meta: step.meta });
  }

  async do_raw(step: Step): Promise<void> {
    for (const frame of step.frames) {
      await this._get(step).client.request(frame);
    }
  }

  async do_flood(step: Step): Promise<void> {
    const client = this._get(step).client;
    for (let i = 0; i < step.count; i++) {
      // Dropped unanswered, or cut off: that is the point.
      client.request({ type: 'ping' }).catch(() => undefined);
    }
  }

  async do_cut(): Promise<void> {
    this._relay!.cut();
  }

  async do_restore(): Promise<void> {
    this._relay!.restore();
  }

  async do_freeze(): Promise<void> {
    this._relay!.freeze();
  }

  async do_restart_server(): Promise<void> {
    await this._server.stop(); // SIGTERM: 1001 to every client
    await this._server.start();
  }

  async do_stop_server(): Promise<void> {
    await this._server.stop();
  }

  async do_start_server(): Promise<void> {
    await this._server.start();
  }

  async do_sleep(step: Step): Promise<void> {
    await sleep(step.ms);
  }

  async do_mark(step: Step): Promise<void> {
    this._marks.set(step.name, now());
  }

  // -- expectations -----------------------------------------------------------------

  async expect_state(step: Step): Promise<void> {
    const client = this._get(step).client;
    await eventually(
      () => client.state === step.state,
      () => `state ${step.state} (is ${client.state})`,
      this._wait(step)
    );
  }

  async expect_states(step: Step): Promise<void> {
    expect(this._get(step).stateNames()).toEqual(step.states);
  }

  async expect_closed(step: Step): Promise<void> {
    const client = this._get(step).client;
    await eventually(
      () => client.state === 'closed',
      () => 'closed',
      this._wait(step)
    );
    expect(client.closeReason ?? '').toContain(step.reason_contains);
  }

  async expect_messages(step: Step): Promise<void> {
    const messages = this._get(step).messages.get(step.channel)!;
    await eventually(
      () => messages.length >= step.payloads.length,
      () => `messages ${JSON.stringify(step.payloads)}`,
      this._wait(step)
    );
    await sleep(200); // time for a duplicate to show up, if one were let through
    const payloads = messages.map(m => m.payload);
    expect(
      matches(payloads, step.payloads, this._names),
      JSON.stringify(payloads)
    ).toBe(true);
    const ids = messages.map(m => m.id);
    expect(new Set(ids).size, `an id was delivered twice: ${ids}`).toBe(ids.length);
    if (step.ids) {
      expect(matches(ids, step.ids, this._names), JSON.stringify(ids)).toBe(true);
    }
  }

  async expect_subscribed(step: Step): Promise<void> {
    const events = this._get(step).subscribed.get(step.channel)!;
    const wanted: Step = {};
    for (const key of ['recovered', 'resubscribed']) {
      if (key in step) {
        wanted[key] = step[key];
      }
    }
    await eventually(
      () => events.length > 0 && matches(events.at(-1), wanted, this._names),
      () => `subscribed ${JSON.stringify(wanted)} (events: ${JSON.stringify(events)})`,
      this._wait(step)
    );
  }

  async expect_sent(step: Step): Promise<void> {
    const recorded = this._get(step);
    const since = step.since_mark ? this._marks.get(step.since_mark)! : 0;
    const count = () =>
      recorded.sent.filter(
        ({ at, frame }) => at >= since && matches(frame, step.frame, this._names)
      ).length;
    const least = step.count_at_least ?? 1;
    await eventually(
      () => count() >= least,
      () => `${least} sent like ${JSON.stringify(step.frame)} (got ${count()})`,
      this._wait(step)
    );
  }

  async expect_received(step: Step): Promise<void> {
    const recorded = this._get(step);
    const count = () =>
      recorded.received.filter(frame => matches(frame, step.frame, this._names)).length;
    const least = step.count_at_least ?? 1;
    await eventually(
      () => count() >= least,
      () => `${least} received like ${JSON.stringify(step.frame)} (got ${count()})`,
      this._wait(step)
    );
  }

  async expect_member(step: Step): Promise<void> {
    const channel = this._get(step).channels.get(step.channel)!;
    const member = (): Member | undefined => channel.members.get(step.user);
    if (step.absent) {
      await eventually(
        () => !member(),
        () => `${step.user} gone`,
        this._wait(step)
      );
      return;
    }
    const wanted: Step = {};
    for (const key of ['status', 'meta']) {
      if (key in step) {
        wanted[key] = step[key];
      }
    }
    await eventually(
      () => member() && matches(member(), wanted, this._names),
      () =>
        `${step.user} with ${JSON.stringify(wanted)} (is ${JSON.stringify(member())})`,
      this._wait(step)
    );
  }

  async expect_retry(step: Step): Promise<void> {
    const recorded = this._get(step);
    const index = step.index ?? 0;
    await eventually(
      () => recorded.retries.length > index,
      () => `retry ${index}`,
      this._wait(step)
    );
    const { at, info } = recorded.retries[index];
    for (const key of ['attempt', 'code'] as const) {
      if (key in step) {
        expect(info[key], JSON.stringify(info)).toBe(step[key]);
      }
    }
    const base = recorded.reconnectDelay;
    if ('window_x' in step) {
      expect(closeTo(info.window, step.window_x * base), JSON.stringify(info)).toBe(
        true
      );
    }
    if ('after_mark' in step) {
      const elapsed = at - this._marks.get(step.after_mark)!;
      expect(elapsed).toBeGreaterThanOrEqual(step.at_least_ms ?? 0);
      expect(elapsed).toBeLessThanOrEqual(step.at_most_ms ?? Infinity);
    }
    if ('waited_at_least_x' in step) {
      const opened = await eventually(
        () => recorded.states.find(s => s.at > at && s.state === 'open'),
        () => 'open after the retry',
        this._wait(step)
      );
      expect(opened.at - at).toBeGreaterThanOrEqual(step.waited_at_least_x * base);
    }
  }

  async expect_retries(step: Step): Promise<void> {
    const recorded = this._get(step);
    const base = recorded.reconnectDelay;
    if (step.exactly) {
      const infos = recorded.retries.map(r => r.info);
      expect(infos.length, JSON.stringify(infos)).toBe(step.exactly.length);
      step.exactly.forEach((wanted: Step, i: number) => {
        expect(infos[i].attempt).toBe(wanted.attempt);
        expect(
          closeTo(infos[i].window, wanted.window_x * base),
          JSON.stringify(infos[i])
        ).toBe(true);
      });
      return;
    }
    await eventually(
      () => recorded.retries.length >= step.at_least,
      () => `${step.at_least} retries`,
      this._wait(step)
    );
    if ('window_x_at_most' in step) {
      for (const { info } of recorded.retries) {
        expect(info.window).toBeLessThanOrEqual(step.window_x_at_most * base + 1e-9);
      }
    }
  }

  async expect_no_retry(step: Step): Promise<void> {
    const recorded = this._get(step);
    const before = recorded.retries.length;
    const state = recorded.client.state;
    await sleep(step.for_ms);
    expect(recorded.retries.length).toBe(before);
    expect(recorded.client.state).toBe(state);
  }

  async expect_token_calls(step: Step): Promise<void> {
    expect(this._get(step).tokenCalls).toBe(step.count);
  }
}

describe('client scenarios (tests/scenarios/client.json)', () => {
  for (const scenario of SCENARIOS.scenarios as Step[]) {
    it(
      scenario.name,
      async () => {
        const server = await new StandaloneServer(scenario.server ?? []).start();
        try {
          await new Replay(scenario, server).run();
        } finally {
          await server.dispose();
        }
      },
      40_000
    );
  }

  it('STATUSES is the protocol’s list, as the server’s OpenAPI document has it', async () => {
    const server = await new StandaloneServer().start();
    try {
      const response = await fetch(`http://127.0.0.1:${server.port}/api/openapi.json`);
      const document = await response.json();
      expect([...STATUSES]).toEqual(document.components.schemas.Status.enum);
    } finally {
      await server.dispose();
    }
  });
});
