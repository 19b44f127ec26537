import fs from "node:fs";
import path from "node:path";
import { hostsOf } from "./postgres-hosts.ts";

/**
 * Which database the service last served from, written by `serve` into its
 * data directory (mode 0600) at every start. The CLI reads it: run without
 * DATABASE_URL beside a service on PostgreSQL, it would otherwise open (and
 * create) the embedded database there, which the service never reads.
 * Where the database is (host, port, name), never who connects to it or how:
 * no user, password or parameters.
 */
export type DatabaseMarker = { kind: "pglite" } | { kind: "postgres"; host?: string; port?: string; database?: string };

export function databaseMarkerPath(dataDir: string): string {
  return path.join(dataDir, "database.json");
}

export function writeDatabaseMarker(dataDir: string, databaseUrl: string | undefined): void {
  const marker: DatabaseMarker = databaseUrl ? { kind: "postgres", ...whereIs(databaseUrl) } : { kind: "pglite" };
  // With PostgreSQL and an external HSM nothing else may live here; the CLI's default is still this directory.
  fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const file = databaseMarkerPath(dataDir);
  const staging = `${file}.${process.pid}`;
  // Whole or not at all: replicas and workers sharing the directory write it at once.
  fs.writeFileSync(staging, JSON.stringify(marker) + "\n", { mode: 0o600 });
  fs.renameSync(staging, file);
}

/** Undefined when no service has written one (never served from here, or a version before the marker). */
export function readDatabaseMarker(dataDir: string): DatabaseMarker | undefined {
  let text: string;
  try {
    text = fs.readFileSync(databaseMarkerPath(dataDir), "utf8");
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw err;
  }
  try {
    const parsed = JSON.parse(text) as DatabaseMarker;
    return parsed.kind === "postgres" || parsed.kind === "pglite" ? parsed : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Host, port and database name of a PostgreSQL URL; nothing when it does not
 * parse as a URL. A URL naming several hosts (a primary and its standbys)
 * gives them all as the host, `h1:p1,h2:p2`.
 */
function whereIs(databaseUrl: string): { host?: string; port?: string; database?: string } {
  const hosts = hostsOf(databaseUrl);
  if (hosts.length > 1) {
    const database = /^[^:]+:\/\/[^/?#]*\/([^?#]+)/.exec(databaseUrl)?.[1];
    return { host: hosts.map((h) => `${h.host}:${h.port}`).join(","), database: database ? decodeURIComponent(database) : undefined };
  }
  try {
    const u = new URL(databaseUrl);
    return {
      host: u.hostname ? decodeURIComponent(u.hostname) : undefined,
      port: u.port || undefined,
      database: u.pathname.length > 1 ? decodeURIComponent(u.pathname.slice(1)) : undefined,
    };
  } catch {
    return {};
  }
}
