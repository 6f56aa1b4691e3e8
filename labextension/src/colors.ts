/**
 * A user's colour when their identity and profile choose none. The server
 * (Python) computes the same one by the same recipe, so a person has one
 * colour in the lab, in kernel widgets and in the HTTP API; the shared
 * vectors in tests/scenarios/colors.json hold both to it.
 */

/** FNV-1a, 32 bits, over the UTF-8 bytes of `text`. */
function fnv1a32(text: string): number {
  let hash = 2166136261;
  for (const byte of new TextEncoder().encode(text)) {
    hash ^= byte;
    hash = Math.imul(hash, 16777619) >>> 0;
  }
  return hash >>> 0;
}

/** Saturation and lightness: dark enough for white initials on it. */
const SATURATION = 0.55;
const LIGHTNESS = 0.42;

/** `#rrggbb` for a user id: a hue from its hash, at a fixed saturation and lightness. */
export function userColor(userId: string): string {
  const hue = fnv1a32(userId) % 360;
  const a = SATURATION * Math.min(LIGHTNESS, 1 - LIGHTNESS);
  const f = (n: number): number => {
    const k = (n + hue / 30) % 12;
    return LIGHTNESS - a * Math.max(-1, Math.min(k - 3, 9 - k, 1));
  };
  return (
    '#' +
    [f(0), f(8), f(4)]
      .map(c =>
        Math.floor(c * 255 + 0.5)
          .toString(16)
          .padStart(2, '0')
      )
      .join('')
  );
}

/** The colour a person is shown in: their own (chosen or from the identity), else theirs by id. */
export function effectiveColor(who: { userId: string; color?: string | null }): string {
  return who.color || userColor(who.userId);
}
