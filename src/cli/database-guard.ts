import type { Config } from "../config.ts";
import { databaseMarkerPath, readDatabaseMarker } from "../store/database-marker.ts";
import { CliError } from "./command-env.ts";

/**
 * Before the CLI opens a database of its own: without DATABASE_URL it would
 * open the embedded one in the data directory, creating it if need be. When
 * the service serving from that directory uses PostgreSQL, that is never
 * what the admin meant (a token made there is one the service does not
 * know): refuse in one line that says what to set. A data directory no
 * service has served from (first run, `hsm-ca init` on PGlite) is left to
 * the embedded database, as before.
 */
export function refuseEmbeddedBesidePostgres(config: Pick<Config, "dataDir" | "databaseUrl">): void {
  if (config.databaseUrl) return;
  const marker = readDatabaseMarker(config.dataDir);
  if (marker?.kind !== "postgres") return;
  const where = marker.host ? ` (${marker.host}${marker.port ? `:${marker.port}` : ""}${marker.database ? `/${marker.database}` : ""})` : "";
  throw new CliError(
    `the service in ${config.dataDir} uses PostgreSQL${where}: set DATABASE_URL to that database ` +
      `(without it this command would use an embedded database the service does not read; ${databaseMarkerPath(config.dataDir)} says so)`,
  );
}
