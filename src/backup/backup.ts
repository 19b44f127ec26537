import path from "node:path";
import type { Config } from "../config.ts";
import type { TableDump } from "../store/dump.ts";
import { ArchiveError, encryptArchive, writeArchiveFile, type Manifest } from "./archive.ts";
import { collectHsmPart } from "./hsm-part.ts";

export interface BackupSummary {
  file: string;
  bytes: number;
  tables: number;
  rows: number;
  hsm: Manifest["hsm"];
}

/**
 * Writes one encrypted archive of the database and the HSM's part.
 *
 * The tables come in already exported, and the token is read after them on
 * purpose: every key is generated on the token before a row names it, so a
 * token read later than the tables holds every key they name (plus perhaps
 * a newer one, which is harmless). The other order could lose a key.
 */
export async function createBackup(options: {
  config: Config;
  file: string;
  tables: TableDump;
  databaseKind: "postgres" | "pglite";
  passphrase: string;
  /** HSM_CA_BACKUP_HOOK, for a PKCS#11 module other than the embedded SoftHSM2. */
  hook?: string;
  /** The environment a hook runs with. */
  env: NodeJS.ProcessEnv;
}): Promise<BackupSummary> {
  const hsm = await collectHsmPart(options.config, options.hook, options.env);
  const manifest: Manifest = {
    format: "hsm-ca-backup",
    version: 1,
    createdAt: new Date().toISOString(),
    hsm,
    database: { kind: options.databaseKind, tables: options.tables },
  };
  const archive = await encryptArchive(manifest, options.passphrase);
  const file = path.resolve(options.file);
  try {
    writeArchiveFile(file, archive);
  } catch (err) {
    throw new ArchiveError(`cannot write ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  const tables = Object.values(options.tables.tables);
  return { file, bytes: archive.length, tables: tables.length, rows: tables.reduce((n, t) => n + t.rows.length, 0), hsm };
}
