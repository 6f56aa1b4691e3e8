import { describe, expect, it } from 'vitest';

import {
  completeMention,
  mentionCandidates,
  mentionQuery,
  mentions
} from '../src/mentions';

const ada = { userId: 'u-ada', name: 'Ada Lovelace' };
const adam = { userId: 'u-adam', name: 'Adam' };
const bob = { userId: 'u-bob', name: 'Bob' };

describe('mentions', () => {
  it('finds the name being typed after an @ that starts a word', () => {
    expect(mentionQuery('hi @Ad', 6)).toEqual({ start: 3, query: 'Ad' });
    expect(mentionQuery('@', 1)).toEqual({ start: 0, query: '' });
    expect(mentionQuery('hi @Ada Lo', 10)).toEqual({ start: 3, query: 'Ada Lo' });
    expect(mentionQuery('mail ada@example.org', 20)).toBeUndefined();
    expect(mentionQuery('@Ada\nmore', 9)).toBeUndefined();
    expect(mentionQuery('no mention', 10)).toBeUndefined();
  });

  it('offers people by name or id, not oneself', () => {
    const people = [bob, adam, ada];
    expect(mentionCandidates(people, 'ad', 'u-bob')).toEqual([ada, adam]);
    expect(mentionCandidates(people, 'ada ', 'u-bob')).toEqual([ada]);
    expect(mentionCandidates(people, 'u-b', 'u-ada')).toEqual([bob]);
    expect(mentionCandidates(people, 'b', 'u-bob')).toEqual([]);
  });

  it('completes the whole name and puts the caret after it', () => {
    expect(completeMention('hi @Ad and', 3, 6, ada)).toEqual({
      text: 'hi @Ada Lovelace  and',
      caret: 17
    });
  });

  it('tells who is mentioned, whole names only', () => {
    expect(mentions('look @Ada Lovelace!', ada)).toBe(true);
    expect(mentions('@ada lovelace, see', ada)).toBe(true);
    expect(mentions('ping @u-ada', ada)).toBe(true);
    expect(mentions('@Adam, see', ada)).toBe(false);
    expect(mentions('@Ada Lovelaces', ada)).toBe(false);
    expect(mentions('ada@Ada Lovelace.org', ada)).toBe(false);
    expect(mentions('@Adam, see', adam)).toBe(true);
    expect(mentions('Ada Lovelace without an at', ada)).toBe(false);
  });
});
