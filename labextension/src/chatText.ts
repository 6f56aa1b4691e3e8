/**
 * What a chat message becomes before it is shown, the same in the side panel
 * and in the Python `ChatWidget` (nyo_realtime_ext/chat_render.py mirrors it):
 *
 * - a newline is a line break (`chatMarkdown`), as one typed it with Shift+Enter;
 * - Markdown only up to `MAX_MARKDOWN_LENGTH`: past it, plain text, since a
 *   Markdown parser can take minutes on a hostile message (`*a` repeated);
 * - no image from another site (`withoutRemoteImages`): it would tell a third
 *   party who reads the chat and when; it shows as a link instead;
 * - times in the browser's locale (`chatTime`).
 */

/** Longer messages show as plain text, collapsed: no Markdown parser sees them. */
export const MAX_MARKDOWN_LENGTH = 16 * 1024;

const FENCE = /^ {0,3}(`{3,}|~{3,})/;

/**
 * Markdown in which every newline is a line break: a hard break (two trailing
 * spaces) at the end of each line followed by another line of the same
 * paragraph. Fenced code is left as it is.
 */
export function chatMarkdown(text: string): string {
  const lines = text.split(/\r\n|\r|\n/);
  let fence: string | undefined;
  return lines
    .map((line, index) => {
      const marker = FENCE.exec(line)?.[1];
      if (fence !== undefined) {
        if (marker && marker[0] === fence[0] && marker.length >= fence.length) {
          fence = undefined;
        }
        return line;
      }
      if (marker) {
        fence = marker;
        return line;
      }
      const next = lines[index + 1];
      if (
        next === undefined ||
        !line.trim() ||
        !next.trim() ||
        / {2}$|\\$/.test(line)
      ) {
        return line;
      }
      return `${line}  `;
    })
    .join('\n');
}

/** The attributes through which an element fetches something by itself. */
const FETCHING = ['src', 'srcset', 'poster', 'background', 'data'];

/** Whether `url` (as written, relative to `base`) may be fetched for every reader. */
export function isLocalUrl(url: string, base: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url.trim(), base);
  } catch {
    return false;
  }
  if (parsed.protocol === 'data:') {
    return /^data:image\//i.test(url.trim());
  }
  return parsed.origin === new URL(base).origin;
}

/**
 * Sanitized HTML without anything that would load from another site: an
 * `<img>` from elsewhere becomes a link to it; other such attributes go, as
 * do inline styles that could name a URL. Parsed in an inert document, so
 * nothing here loads anything itself.
 */
export function withoutRemoteImages(html: string, base: string): string {
  if (!/<(img|source|video|audio|input|image|picture|track)|style=|url\(/i.test(html)) {
    return html;
  }
  const doc = new DOMParser().parseFromString(`<body>${html}</body>`, 'text/html');
  for (const node of Array.from(doc.body.querySelectorAll('*'))) {
    if (/url\(/i.test(node.getAttribute('style') ?? '')) {
      node.removeAttribute('style');
    }
    if (node.localName === 'img') {
      const src = node.getAttribute('src') ?? '';
      node.removeAttribute('srcset');
      if (src && !isLocalUrl(src, base)) {
        const link = doc.createElement('a');
        link.className = 'nyo-chat-image-link';
        link.href = src;
        link.target = '_blank';
        link.rel = 'noopener noreferrer';
        link.title = `An image from another site, not loaded: ${src}`;
        link.textContent = `🖼 ${node.getAttribute('alt') || src}`;
        node.replaceWith(link);
      }
      continue;
    }
    for (const name of FETCHING) {
      const value = node.getAttribute(name);
      if (value !== null && !isLocalUrl(value.split(/[\s,]/)[0] ?? '', base)) {
        node.removeAttribute(name);
      }
    }
    if (node.localName === 'source' || node.localName === 'track') {
      node.removeAttribute('srcset');
    }
  }
  return doc.body.innerHTML;
}

const TIME = { hour: 'numeric', minute: '2-digit' } as const;

/** A time of day as the browser's locale writes it ("7:38 PM", "19:38"). */
export function chatTime(ts: number): string {
  return new Date(ts).toLocaleTimeString(undefined, TIME);
}
