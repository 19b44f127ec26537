/** PostgreSQL's unique_violation, from postgres.js or PGlite, wrapped by drizzle or not. */
export function isUniqueViolation(err: unknown): boolean {
  for (let e = err as { code?: string; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (e.code === "23505") return true;
  }
  return false;
}

/**
 * A database failure in one line, for logs and the audit log: the
 * driver's own message and SQLSTATE, never drizzle's "Failed query"
 * wrapper, which quotes every parameter (a whole certificate, say).
 */
export function databaseErrorText(err: unknown): string {
  let innermost = err as { message?: unknown; code?: unknown; cause?: unknown } | undefined;
  for (let e = innermost; e && typeof e === "object"; e = e.cause as typeof e) innermost = e;
  const message = typeof innermost?.message === "string" ? innermost.message : String(innermost);
  const code = typeof innermost?.code === "string" ? ` (SQLSTATE ${innermost.code})` : "";
  const text = message + code;
  return text.length > 300 ? `${text.slice(0, 300)}...` : text;
}
