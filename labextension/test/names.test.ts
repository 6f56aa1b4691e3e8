import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';

import { describe, expect, it } from 'vitest';

import { collide, labelled, skeletons } from '../src/names';

/** The cases nyo_realtime_ext/names.py is held to as well (tests/test_names.py). */
const SHARED = resolve(__dirname, '../../tests/scenarios/names.json');

describe('names that look alike', () => {
  it('agrees with the server on every shared case', () => {
    const cases = JSON.parse(readFileSync(SHARED, 'utf-8')) as {
      pairs: [string, string, boolean][];
    };
    expect(cases.pairs.length).toBeGreaterThan(10);
    for (const [a, b, expected] of cases.pairs) {
      expect([a, b, collide(a, b)]).toEqual([a, b, expected]);
    }
  });

  it('sees through case, homoglyphs and invisible characters', () => {
    for (const twin of [
      'bob',
      '\u0412\u043eb', // Cyrillic Ve and o
      'B\u200bob', // a zero-width space
      'B\u200dob', // a zero-width joiner
      'B\ufe0fob', // a variation selector
      '\uff22\uff4f\uff42' // full-width
    ]) {
      expect(collide(twin, 'Bob')).toBe(true);
    }
    expect(collide('Bob', 'Rob')).toBe(false);
    expect(skeletons('Stra\u00dfe')).toEqual(skeletons('STRASSE'));
  });

  it('labels a name that collides with its user id, and only then', () => {
    const people = [
      { userId: 'bob', name: 'Bob' },
      { userId: 'mallory', name: '\u0412\u043eb' },
      { userId: 'ada', name: 'Ada' }
    ];
    expect(labelled('\u0412\u043eb', 'mallory', people)).toBe(
      '\u0412\u043eb (@mallory)'
    );
    expect(labelled('Bob', 'bob', people)).toBe('Bob (@bob)');
    expect(labelled('Ada', 'ada', people)).toBe('Ada');
    // A name like another's id counts too.
    expect(labelled('ADA', 'eve', [{ userId: 'ada', name: 'Countess' }])).toBe(
      'ADA (@eve)'
    );
  });
});
