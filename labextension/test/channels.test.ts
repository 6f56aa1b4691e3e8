/**
 * Document channel names: every client must derive the same valid name from
 * the same path, and different paths must not share a channel.
 */
import { describe, expect, it } from 'vitest';

import { DOCUMENT_PREFIX, documentChannel } from '../src/channels';

/** docs/protocol.md's rule for channel names. */
const VALID = /^[A-Za-z0-9_:.@/=+-]{1,200}$/;

describe('documentChannel', () => {
  it('keeps ordinary paths readable', () => {
    expect(documentChannel('notebooks/demo.ipynb')).toBe(
      'presence-doc:notebooks/demo.ipynb'
    );
  });

  it('escapes what a channel name cannot hold, and the escape itself', () => {
    const name = documentChannel('My Work/α=β.ipynb');
    expect(name).toBe('presence-doc:My=20Work/=CE=B1=3D=CE=B2.ipynb');
    expect(name).toMatch(VALID);
    // Without escaping "=", these two would collide.
    expect(documentChannel('a=20b')).not.toBe(documentChannel('a b'));
  });

  it('shortens long paths to a valid name that still tells them apart', () => {
    const long = 'deep/'.repeat(60) + 'notebook.ipynb';
    const other = 'deep/'.repeat(60) + 'notebook2.ipynb';
    const name = documentChannel(long);
    expect(name).toMatch(VALID);
    expect(name.startsWith(DOCUMENT_PREFIX + 'deep/deep/')).toBe(true);
    expect(documentChannel(other)).toMatch(VALID);
    expect(documentChannel(other)).not.toBe(name);
    expect(documentChannel(long)).toBe(name);
  });

  it("keeps two servers' files of the same path apart, unless they share files", () => {
    const ada = documentChannel('Untitled.ipynb', 'ada');
    const bob = documentChannel('Untitled.ipynb', 'bob');
    expect(ada).toBe('presence-doc@ada:Untitled.ipynb');
    expect(ada).not.toBe(bob);
    expect(documentChannel('Untitled.ipynb', '')).toBe('presence-doc:Untitled.ipynb');
    // A scope cannot end early: "a:b" + "c" is not "a" + "b:c".
    expect(documentChannel('c', 'a:b')).not.toBe(documentChannel('b:c', 'a'));
    expect(documentChannel('x', 'hub user@example.org/server')).toMatch(VALID);
  });
});
