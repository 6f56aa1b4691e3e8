/**
 * `@name` mentions in the lobby chat. Names may have spaces ("Anonymous
 * Io"), so a mention is `@` followed by a person's whole name (or their user
 * id), not a single word; completion inserts the whole name.
 */

export interface Mentionable {
  userId: string;
  name: string;
}

/** Longest text after `@` still taken as a name being typed. */
const MAX_QUERY = 40;

/**
 * The name being typed at the caret: the text from the last `@` to `caret`,
 * if that `@` starts a word and no line break came since. Undefined when the
 * caret is not in a mention.
 */
export function mentionQuery(
  text: string,
  caret: number
): { start: number; query: string } | undefined {
  const before = text.slice(0, caret);
  const at = before.lastIndexOf('@');
  if (at < 0 || (at > 0 && !/\s/.test(before[at - 1]))) {
    return undefined; // an e-mail address, not a mention
  }
  const query = before.slice(at + 1);
  if (query.length > MAX_QUERY || /[\n\r]/.test(query) || /\s\s/.test(query)) {
    return undefined;
  }
  return { start: at, query };
}

/** People whose name (or id) starts with `query`, by name; not oneself. */
export function mentionCandidates(
  people: readonly Mentionable[],
  query: string,
  me?: string
): Mentionable[] {
  const q = query.toLocaleLowerCase();
  return people
    .filter(
      p =>
        p.userId !== me &&
        (p.name.toLocaleLowerCase().startsWith(q) ||
          p.userId.toLocaleLowerCase().startsWith(q))
    )
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** `text` with the mention being typed at `start..caret` completed; and the new caret. */
export function completeMention(
  text: string,
  start: number,
  caret: number,
  person: Mentionable
): { text: string; caret: number } {
  const inserted = `@${person.name} `;
  return {
    text: text.slice(0, start) + inserted + text.slice(caret),
    caret: start + inserted.length
  };
}

/**
 * Whether `text` mentions `who`: `@` and their name or id, not followed by
 * more of a word (so `@Ada` does not mention "Adam"), case-insensitively.
 */
export function mentions(text: string, who: Mentionable): boolean {
  const lower = text.toLocaleLowerCase();
  for (const handle of new Set([who.name, who.userId])) {
    if (!handle) {
      continue;
    }
    const needle = `@${handle.toLocaleLowerCase()}`;
    let from = 0;
    for (;;) {
      const at = lower.indexOf(needle, from);
      if (at < 0) {
        break;
      }
      const after = lower[at + needle.length];
      const startsWord = at === 0 || /\s|[([{]/.test(lower[at - 1]);
      if (startsWord && (after === undefined || !/[\p{L}\p{N}_-]/u.test(after))) {
        return true;
      }
      from = at + 1;
    }
  }
  return false;
}
