/**
 * Channel names for the front end: one lobby per server, one presence channel
 * per document path. Every client must derive the same name from the same
 * path, so this is pure and deterministic.
 */

/** The channel everyone in the Jupyter server joins: who is here, and chat. */
export const LOBBY = 'lobby';

/** The `presence-` prefix makes it a presence channel whatever the server's default type. */
export const DOCUMENT_PREFIX = 'presence-doc:';

/** PROTOCOL.md: 1–200 characters of this set. */
const ALLOWED = /[A-Za-z0-9_:.@/+-]/;
const MAX_LENGTH = 200;

/**
 * The presence channel of a document path.
 *
 * Paths may hold any character, channel names only a few: every other UTF-8
 * byte (and `=` itself, the escape) becomes `=XX`, which keeps common paths
 * readable in logs and in the HTTP API. A name that would be too long keeps a
 * readable head and ends with a hash of the whole path.
 */
export function documentChannel(path: string): string {
  let encoded = '';
  for (const char of path) {
    if (ALLOWED.test(char)) {
      encoded += char;
    } else {
      for (const byte of new TextEncoder().encode(char)) {
        encoded += '=' + byte.toString(16).toUpperCase().padStart(2, '0');
      }
    }
  }
  const name = DOCUMENT_PREFIX + encoded;
  if (name.length <= MAX_LENGTH) {
    return name;
  }
  const head = name.slice(0, MAX_LENGTH - 18);
  return `${head}==${fnv1a64(path)}`;
}

/** 64-bit FNV-1a as 16 hex digits: stable in every browser, no async crypto. */
function fnv1a64(text: string): string {
  let hash = 0xcbf29ce484222325n;
  const prime = 0x100000001b3n;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= BigInt(byte);
    hash = (hash * prime) & 0xffffffffffffffffn;
  }
  return hash.toString(16).padStart(16, '0');
}
