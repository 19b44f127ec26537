/**
 * For the few hot statements the store writes out instead of building with
 * drizzle (one statement text whatever the batch size): the shapes both
 * drivers give back, and an array parameter both pass as one text value.
 */

/** postgres.js answers an array of rows, PGlite an object holding them. */
export function rowsOf(result: unknown): unknown[] {
  return Array.isArray(result) ? result : ((result as { rows: unknown[] }).rows ?? []);
}

/**
 * A text[] literal of lower-case hex values (serials, SHA-256 digests), for
 * `= any(${literal}::text[])`: hex needs no quoting; anything else is left
 * out, and so matches nothing.
 */
export function hexArrayLiteral(values: string[]): string {
  return `{${values.filter((v) => /^[0-9a-f]{1,128}$/.test(v)).join(",")}}`;
}
