import crypto from "node:crypto";
import fs from "node:fs";
import path from "node:path";
import type { Config } from "../config.ts";
import { embeddedTokenPaths } from "../hsm/embedded-softhsm.ts";
import { listCas } from "../store/cas.ts";
import { DatabaseBusyError, openStore } from "../store/database.ts";
import { importTables } from "../store/dump.ts";
import { ArchiveError, decryptArchive, type Manifest } from "./archive.ts";
import { BackupError } from "./errors.ts";
import { restoreWithHook, writeEmbeddedToken } from "./hsm-part.ts";

export class RestoreError extends BackupError {}

export interface RestoreSummary {
  tables: number;
  rows: number;
  database: string;
  /** Where the embedded token now is. */
  hsmDir?: string;
  /** Where the token directory that was there before went (kept, never deleted). */
  previousHsmDir?: string;
  warnings: string[];
}

export async function readArchive(file: string, passphrase: string): Promise<Manifest> {
  let archive: Buffer;
  try {
    archive = fs.readFileSync(file);
  } catch (err) {
    throw new ArchiveError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`);
  }
  return decryptArchive(archive, passphrase);
}

/**
 * Puts a backup in place under config: the tables into its database (one
 * transaction) and the HSM's part onto its token. The real restore and the
 * drill (into a scratch directory) both come through here, so the drill
 * proves the path a real restore takes.
 *
 * Order, so that a failure leaves nothing half-done: the embedded token is
 * written to a staging directory, the tables are imported, and only then
 * is the staging directory renamed into place. A hook restores the HSM
 * first: keys without rows are harmless, rows without keys are not.
 */
export async function restoreBackup(
  manifest: Manifest,
  options: {
    config: Config;
    /** Replace an existing CA (its tables emptied, its token directory moved aside). */
    force: boolean;
    /** False in a drill of a hook backup: the hook writes to a real HSM. */
    restoreHsm: boolean;
    hook?: string;
    env: NodeJS.ProcessEnv;
  },
): Promise<RestoreSummary> {
  const { config, force } = options;
  const warnings = checkCompatible(manifest, options);
  let store;
  try {
    store = await openStore(config);
  } catch (err) {
    // On PGlite the pid lock is how we know the service is running.
    if (err instanceof DatabaseBusyError) throw new RestoreError(`${err.message}: stop the service before restoring`);
    throw err;
  }
  const database = store.kind === "pglite" ? `the embedded database in ${config.dataDir}` : "the PostgreSQL database";
  try {
    const token = embeddedTokenPaths(config.dataDir);
    const hsm = manifest.hsm;
    const restoringToken = options.restoreHsm && hsm.kind === "softhsm2";
    if (!force) {
      if ((await listCas(store.db)).length > 0) throw new RestoreError(`a CA exists already in ${database}: --force replaces it`);
      if (restoringToken && tokenPresent(token.tokensDir)) {
        throw new RestoreError(`a token exists already in ${token.tokensDir}: --force moves it aside and restores the backup's`);
      }
    }
    let staging: string | undefined;
    if (restoringToken) {
      staging = path.join(config.dataDir, `hsm.restoring-${crypto.randomBytes(4).toString("hex")}`);
      fs.mkdirSync(staging, { recursive: true, mode: 0o700 });
      try {
        writeEmbeddedToken(hsm, staging, token.dir);
      } catch (err) {
        fs.rmSync(staging, { recursive: true, force: true });
        throw err;
      }
    }
    if (options.restoreHsm && hsm.kind === "hook") await restoreWithHook(hsm, options.hook!, options.env);
    let counts;
    try {
      counts = await importTables(store.db, manifest.database.tables, { replace: force });
    } catch (err) {
      if (staging) fs.rmSync(staging, { recursive: true, force: true });
      throw err;
    }
    let previousHsmDir: string | undefined;
    if (staging) {
      if (fs.existsSync(token.dir)) {
        previousHsmDir = `${token.dir}.replaced-${new Date().toISOString().replace(/[:.]/g, "")}`;
        fs.renameSync(token.dir, previousHsmDir);
      }
      fs.renameSync(staging, token.dir);
    }
    return { ...counts, database, hsmDir: staging ? token.dir : undefined, previousHsmDir, warnings };
  } finally {
    await store.close();
  }
}

/** Refuses a restore whose HSM part cannot work under this configuration, before anything is written. */
function checkCompatible(manifest: Manifest, options: { config: Config; restoreHsm: boolean; hook?: string }): string[] {
  const { config } = options;
  const hsm = manifest.hsm;
  const warnings: string[] = [];
  if (hsm.kind === "none") {
    warnings.push(`the backup holds no HSM part (${hsm.reason}): only the database is restored; the CA keys must come back from the HSM's own backup`);
    return warnings;
  }
  if (!options.restoreHsm) return warnings;
  if (hsm.kind === "softhsm2") {
    if (!config.hsm.embedded) throw new RestoreError("the backup holds the embedded SoftHSM2 token: restore it with HSM_CA_PKCS11_MODULE unset");
    if (hsm.tokenLabel !== config.hsm.tokenLabel) {
      // The service would not find the restored token and would create an empty one under the configured label.
      throw new RestoreError(`the backup's token is labelled "${hsm.tokenLabel}": set HSM_CA_TOKEN_LABEL=${hsm.tokenLabel}`);
    }
    if (hsm.rootTokenLabel && hsm.rootTokenLabel !== config.hsm.rootToken?.label) {
      warnings.push(`the backup's root key is on token "${hsm.rootTokenLabel}": set HSM_CA_ROOT_TOKEN_LABEL=${hsm.rootTokenLabel}`);
    }
  } else if (config.hsm.embedded) {
    throw new RestoreError("the backup's HSM part was written by HSM_CA_BACKUP_HOOK for a PKCS#11 module: set HSM_CA_PKCS11_MODULE and HSM_CA_BACKUP_HOOK");
  } else if (!options.hook) {
    throw new RestoreError("the backup's HSM part was written by HSM_CA_BACKUP_HOOK: set it to restore");
  }
  return warnings;
}

function tokenPresent(tokensDir: string): boolean {
  try {
    return fs.readdirSync(tokensDir).length > 0;
  } catch {
    return false;
  }
}
