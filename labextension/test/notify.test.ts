import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { MentionThrottle } from '../src/notify';

describe('MentionThrottle', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('tells the first mention at once and a flood once per window, with the total', () => {
    const throttle = new MentionThrottle(10_000);
    const told: [string, number][] = [];
    const tell = (text: string, count: number) => told.push([text, count]);
    throttle.add('mallory', '@Bob 0', tell);
    expect(told).toEqual([['@Bob 0', 1]]);
    for (let n = 1; n < 424; n++) {
      throttle.add('mallory', `@Bob ${n}`, tell);
    }
    expect(told).toHaveLength(1); // the flood waits for the window's end
    vi.advanceTimersByTime(10_000);
    expect(told).toEqual([
      ['@Bob 0', 1],
      ['@Bob 423', 424]
    ]);
    // Quiet for a whole window: the run ends, and the next mention is told at once.
    vi.advanceTimersByTime(10_000);
    throttle.add('mallory', 'later @Bob', tell);
    expect(told.at(-1)).toEqual(['later @Bob', 1]);
  });

  it('keeps senders apart: one flood does not hold back another person', () => {
    const throttle = new MentionThrottle(10_000);
    const told: string[] = [];
    for (let n = 0; n < 5; n++) {
      throttle.add('mallory', `spam ${n}`, text => told.push(text));
    }
    throttle.add('ada', 'look @Bob', text => told.push(text));
    expect(told).toEqual(['spam 0', 'look @Bob']);
    vi.advanceTimersByTime(10_000);
    expect(told).toEqual(['spam 0', 'look @Bob', 'spam 4']);
  });
});
