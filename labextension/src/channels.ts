/**
 * Channel names for the front end: one lobby per server, one presence channel
 * per document path. Every client must derive the same name from the same
 * path, so this is pure and deterministic.
 */

/** The channel everyone in the Jupyter server joins: who is here, and chat. */
export const LOBBY = 'lobby';

/** The `presence-` prefix makes it a presence channel whatever the server's default type. */
export const DOCUMENT_PREFIX = 'presence-doc:';

/**
 * The prefix of a document channel scoped to one server: `presence-doc@<scope>:`.
 * On JupyterHub each user's server has a home of its own, so the same path
 * (`Untitled.ipynb`) is a different file on each; the server says which scope
 * its documents are in (`Realtime.document_scope`), '' when users share files.
 */
export const SCOPED_DOCUMENT_PREFIX = 'presence-doc@';

/** docs/protocol.md: 1–200 characters of this set. */
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
export function documentChannel(path: string, scope = ''): string {
  const name = scope
    ? `${SCOPED_DOCUMENT_PREFIX}${escape(scope, SCOPE_ALLOWED)}:${escape(path, ALLOWED)}`
    : DOCUMENT_PREFIX + escape(path, ALLOWED);
  if (name.length <= MAX_LENGTH) {
    return name;
  }
  const head = name.slice(0, MAX_LENGTH - 18);
  return `${head}==${fnv1a64(`${scope}\n${path}`)}`;
}

/** A scope keeps no `:` or `@`, so where it ends is never in doubt. */
const SCOPE_ALLOWED = /[A-Za-z0-9_.-]/;

/** Every UTF-8 byte of a character outside `allowed` (and `=`) becomes `=XX`. */
function escape(text: string, allowed: RegExp): string {
  let encoded = '';
  for (const char of text) {
    if (allowed.test(char)) {
      encoded += char;
    } else {
      for (const byte of new TextEncoder().encode(char)) {
        encoded += '=' + byte.toString(16).toUpperCase().padStart(2, '0');
      }
    }
  }
  return encoded;
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
