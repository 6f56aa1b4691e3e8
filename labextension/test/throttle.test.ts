import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';

import { TrailingThrottle } from '../src/throttle';

describe('TrailingThrottle', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('sends a burst as one call with the last value, at the end of the window', () => {
    const sent: number[] = [];
    const throttle = new TrailingThrottle<number>(value => sent.push(value), 250);
    for (let cell = 0; cell < 10; cell++) {
      throttle.push(cell);
      vi.advanceTimersByTime(10);
    }
    expect(sent).toEqual([]); // 100 ms in: still within the window
    vi.advanceTimersByTime(150);
    expect(sent).toEqual([9]);
    vi.advanceTimersByTime(1000);
    expect(sent).toEqual([9]); // nothing new, nothing sent
  });

  it('never sends more than four times a second however fast values come', () => {
    const sent: number[] = [];
    const throttle = new TrailingThrottle<number>(value => sent.push(value), 250);
    for (let ms = 0; ms < 1000; ms += 5) {
      throttle.push(ms);
      vi.advanceTimersByTime(5);
    }
    expect(sent.length).toBeLessThanOrEqual(4);
    expect(sent.length).toBeGreaterThanOrEqual(3);
    vi.advanceTimersByTime(250);
    // Where the burst ended is always sent in the end.
    expect(sent[sent.length - 1]).toBe(995);
  });

  it('sends a lone change within one window', () => {
    const sent: string[] = [];
    const throttle = new TrailingThrottle<string>(value => sent.push(value), 250);
    throttle.push('cell 3');
    vi.advanceTimersByTime(249);
    expect(sent).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(sent).toEqual(['cell 3']);
  });

  it('flushes at once on demand, and cancel drops what waits', () => {
    const sent: number[] = [];
    const throttle = new TrailingThrottle<number>(value => sent.push(value), 250);
    throttle.push(1);
    expect(throttle.pending).toBe(true);
    throttle.flush();
    expect(sent).toEqual([1]);
    expect(throttle.pending).toBe(false);
    throttle.push(2);
    throttle.cancel();
    vi.advanceTimersByTime(1000);
    expect(sent).toEqual([1]);
  });
});
