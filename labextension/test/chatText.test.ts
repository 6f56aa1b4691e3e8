// @vitest-environment jsdom
/** What a chat message becomes before it is shown (src/chatText.ts). */
import { describe, expect, it } from 'vitest';

import {
  chatMarkdown,
  chatTime,
  isLocalUrl,
  withoutRemoteImages
} from '../src/chatText';

describe('chatMarkdown', () => {
  it('makes each newline a line break', () => {
    expect(chatMarkdown('multi line 0\nline 1\nline 2')).toBe(
      'multi line 0  \nline 1  \nline 2'
    );
  });

  it('leaves paragraphs, fenced code and existing breaks alone', () => {
    const text = 'a\n\nb\n```\nx = 1\ny = 2\n```\nc  \nd\\\ne';
    expect(chatMarkdown(text)).toBe('a\n\nb  \n```\nx = 1\ny = 2\n```\nc  \nd\\\ne');
  });

  it('a fence closes only on its own kind, at least as long', () => {
    expect(chatMarkdown('~~~~\n```\nin\n~~~~\nout\nmore')).toBe(
      '~~~~\n```\nin\n~~~~\nout  \nmore'
    );
  });
});

describe('withoutRemoteImages', () => {
  const base = 'http://127.0.0.1:8888/lab';

  it('turns an image from another site into a link to it', () => {
    const out = withoutRemoteImages(
      '<p><img src="https://tracker.example/p.png" alt="cat"></p>',
      base
    );
    const doc = new DOMParser().parseFromString(out, 'text/html');
    expect(doc.querySelector('img')).toBeNull();
    const link = doc.querySelector('a.nyo-chat-image-link') as HTMLAnchorElement;
    expect(link.getAttribute('href')).toBe('https://tracker.example/p.png');
    expect(link.textContent).toContain('cat');
  });

  it('keeps same-origin and data: images, without srcset', () => {
    const out = withoutRemoteImages(
      '<img src="/files/a.png" srcset="https://x.example/b.png 2x">' +
        '<img src="data:image/png;base64,AAAA">',
      base
    );
    const doc = new DOMParser().parseFromString(out, 'text/html');
    const images = [...doc.querySelectorAll('img')];
    expect(images.map(i => i.getAttribute('src'))).toEqual([
      '/files/a.png',
      'data:image/png;base64,AAAA'
    ]);
    expect(images[0].hasAttribute('srcset')).toBe(false);
  });

  it('drops other fetching attributes and styles with url()', () => {
    const out = withoutRemoteImages(
      '<video poster="https://x.example/p.png" src="https://x.example/v.mp4"></video>' +
        '<span style="background: url(https://x.example/b.png)">s</span>',
      base
    );
    expect(out).not.toContain('x.example');
  });

  it('tells local from remote', () => {
    expect(isLocalUrl('files/a.png', base)).toBe(true);
    expect(isLocalUrl('//evil.example/a.png', base)).toBe(false);
    expect(isLocalUrl('http://127.0.0.1:9999/a.png', base)).toBe(false);
    expect(isLocalUrl('data:text/html,<b>', base)).toBe(false);
  });
});

describe('chatTime', () => {
  it("is the locale's own time of day", () => {
    const ts = Date.UTC(2026, 0, 1, 19, 38);
    expect(chatTime(ts)).toBe(
      new Date(ts).toLocaleTimeString(undefined, { hour: 'numeric', minute: '2-digit' })
    );
  });
});
