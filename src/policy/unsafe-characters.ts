/**
 * Characters no name in a certificate may hold, whatever the profile:
 * - NUL: C strings end there (the "paypal.com\0.evil.com" attack), and
 *   PostgreSQL text cannot hold it, so a certificate signed with one could
 *   never be stored;
 * - other C0 and C1 control characters (and DEL): no name needs them, and
 *   they rewrite what a terminal or a log viewer shows;
 * - bidirectional overrides and isolates (U+202A-202E, U+2066-2069): they
 *   make a name display as another ("Trojan Source");
 * - unpaired surrogates (from a BMPString): not Unicode, so not the same
 *   text once stored as UTF-8.
 */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** What is wrong with the first unsafe character of `value`, e.g. "a NUL character (U+0000)"; undefined when there is none. */
export function unsafeCharacterProblem(value: string): string | undefined {
  const m = UNSAFE.exec(value);
  if (!m) return undefined;
  const cp = m[0].charCodeAt(0);
  const code = `U+${cp.toString(16).toUpperCase().padStart(4, "0")}`;
  if (cp === 0) return `a NUL character (${code})`;
  if (cp <= 0x9f) return `a control character (${code})`;
  if (cp >= 0xd800 && cp <= 0xdfff) return `an unpaired surrogate (${code}), which is not Unicode`;
  return `a bidirectional override or isolate character (${code})`;
}

/** Longest excerpt of a refused value quoted back in a refusal. */
const MAX_QUOTED = 80;

/**
 * A value quoted for a refusal's detail: every unsafe or non-ASCII character
 * escaped as \uXXXX, so that the detail shows what was sent and cannot
 * itself carry a control or bidi character to the reader.
 */
export function quoted(value: string): string {
  const cut = value.length > MAX_QUOTED ? value.slice(0, MAX_QUOTED) : value;
  const escaped = cut.replace(/[\\"]|[^\x20-\x7e]/g, (c) => (c === "\\" || c === '"' ? `\\${c}` : `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`));
  return `"${escaped}${cut.length < value.length ? "..." : ""}"`;
}
