import { parseArgs } from "node:util";
import { createBackup } from "../../backup/backup.ts";
import { BackupError } from "../../backup/errors.ts";
import { readPassphrase } from "../../backup/passphrase.ts";
import { sendToRunningService } from "../../control/control-socket.ts";
import { DumpError, exportTables, type TableDump } from "../../store/dump.ts";
import { CliError, type CommandEnv } from "../command-env.ts";

export const backupUsage = `hsm-ca backup FILE
  Writes an encrypted archive (AES-256-GCM, key by scrypt from HSM_CA_BACKUP_PASSPHRASE or
  HSM_CA_BACKUP_PASSPHRASE_FILE) of every database table and the HSM's part: the embedded token's
  files and PINs, or what HSM_CA_BACKUP_HOOK writes for another PKCS#11 module. Works while the
  service runs.`;

/** Internal: the service's half of a backup on PGlite, asked for over the control socket. */
const EXPORT_TABLES = "--export-tables";

/**
 * Runs in the CLI's own process (main.ts never forwards it): the passphrase,
 * the hook and the output path are the invoking operator's, and none of them
 * travels to the service. Only the table export does, on PGlite while the
 * service holds the database.
 */
export async function backupCommand(args: string[], env: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { "export-tables": { type: "boolean" } },
    allowPositionals: true,
    strict: true,
  });
  try {
    if (values["export-tables"]) {
      const store = await env.store();
      env.out(JSON.stringify({ kind: store.kind, tables: await exportTables(store.db) }));
      return 0;
    }
    if (positionals.length !== 1) throw new CliError(`give one archive file; usage:\n${backupUsage}`);
    // Not in Config on purpose: only this process needs it, and it is read before any work is done.
    const passphrase = readPassphrase(process.env);
    const database = await exportDatabase(env);
    const summary = await createBackup({
      config: env.config,
      file: positionals[0]!,
      tables: database.tables,
      databaseKind: database.kind,
      passphrase,
      hook: process.env.HSM_CA_BACKUP_HOOK || undefined,
      env: process.env,
    });
    const hsm =
      summary.hsm.kind === "softhsm2"
        ? `the embedded token "${summary.hsm.tokenLabel}" (${summary.hsm.files.length} files with its PINs)`
        : summary.hsm.kind === "hook"
          ? `${summary.hsm.files.length} files from HSM_CA_BACKUP_HOOK`
          : "NO HSM part";
    env.out(`Wrote ${summary.file} (${summary.bytes} bytes, mode 0600): ${summary.tables} tables with ${summary.rows} rows, and ${hsm}.`);
    if (summary.hsm.kind === "none") {
      env.err(`WARNING: this backup holds only the database, NOT the CA keys: ${summary.hsm.reason}.`);
      env.err("WARNING: set HSM_CA_BACKUP_HOOK to a command that backs up your HSM (`<hook> backup <dir>` / `<hook> restore <dir>`).");
    }
    env.out(`Check it with: hsm-ca restore --verify ${summary.file}`);
    return 0;
  } catch (err) {
    if (err instanceof BackupError || err instanceof DumpError) throw new CliError(err.message, 1);
    throw err;
  }
}

/** The tables, from the running service when it holds the embedded database, else straight from the database. */
async function exportDatabase(env: CommandEnv): Promise<{ kind: "postgres" | "pglite"; tables: TableDump }> {
  if (!env.config.databaseUrl) {
    const remote = await sendToRunningService(env.config.dataDir, ["backup", EXPORT_TABLES]);
    if (remote) {
      if (remote.code !== 0) {
        const reason = remote.stderr.trim().split("\n")[0]!.replace(/^hsm-ca backup: /, "");
        throw new CliError(`the running service could not export the tables: ${reason}`, 1);
      }
      return JSON.parse(remote.stdout) as { kind: "pglite"; tables: TableDump };
    }
  }
  const store = await env.store();
  return { kind: store.kind, tables: await exportTables(store.db) };
}
