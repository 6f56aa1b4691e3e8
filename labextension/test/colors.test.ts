import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';

import { describe, expect, it } from 'vitest';

import { colorOf } from '../src/avatars';
import { effectiveColor, userColor } from '../src/colors';

/** The vectors the server's Python implementation wrote; both sides must match them. */
const SHARED = resolve(__dirname, '../../tests/scenarios/colors.json');

describe('userColor', () => {
  it('matches the shared vectors of the Python implementation', () => {
    expect(existsSync(SHARED), SHARED).toBe(true);
    const vectors = JSON.parse(readFileSync(SHARED, 'utf-8')) as {
      userId: string;
      color: string;
    }[];
    expect(vectors.length).toBeGreaterThan(0);
    for (const { userId, color } of vectors) {
      expect(userColor(userId), userId).toBe(color);
    }
  });

  it('follows the recipe on ASCII, empty and multi-byte ids', () => {
    // Worked out by hand from the recipe (an independent Python transcription).
    expect(userColor('ada')).toBe('#30a685');
    expect(userColor('bob')).toBe('#8730a6');
    expect(userColor('')).toBe('#a4a630');
    expect(userColor('Ünïcødé')).toBe('#8ea630');
    expect(userColor('日本')).toBe('#7da630');
    expect(userColor('8c1f2e0a7b4d4e2f9a1b3c5d7e9f0a1b')).toBe('#a63044');
  });

  it('is what avatars use unless the person has a colour of their own', () => {
    expect(effectiveColor({ userId: 'ada' })).toBe('#30a685');
    expect(effectiveColor({ userId: 'ada', color: null })).toBe('#30a685');
    expect(effectiveColor({ userId: 'ada', color: '#112233' })).toBe('#112233');
    expect(colorOf({ userId: 'bob', name: 'Bob' })).toBe('#8730a6');
  });
});
