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

/**
 * Codes meaning the database could not be reached or did not answer in time,
 * rather than that it refused the statement: connection failures (postgres.js,
 * Node), a connection given up on for silence (DATABASE_NO_ANSWER, see
 * postgres-pool.ts), the server's own statement timeout (57014),
 * PostgreSQL shutting down, restarting or unreachable, and, with a primary
 * and standbys, none of them accepting writes yet (NO_WRITABLE_HOST, see
 * postgres-hosts.ts) or a write that reached a server that is now a
 * standby (25006, read_only_sql_transaction): a failover under way.
 */
const UNAVAILABLE = new Set([
  "ECONNREFUSED",
  "ECONNRESET",
  "ETIMEDOUT",
  "EPIPE",
  "EHOSTUNREACH",
  "CONNECTION_CLOSED",
  "CONNECTION_DESTROYED",
  "CONNECT_TIMEOUT",
  "CONNECTION_ENDED",
  "DATABASE_NO_ANSWER",
  "NO_WRITABLE_HOST",
  "25006",
  "57014",
  "57P01",
  "57P02",
  "57P03",
  "08001",
  "08006",
]);

/** The database is down or not answering (a 503, worth retrying), wrapped by drizzle or not. */
export function isDatabaseUnavailable(err: unknown): boolean {
  for (let e = err as { code?: unknown; cause?: unknown } | undefined; e; e = e.cause as typeof e) {
    if (typeof e.code === "string" && UNAVAILABLE.has(e.code)) return true;
  }
  return false;
}
