import path from "node:path";
import { parseArgs } from "node:util";
import type { Manifest } from "../../backup/archive.ts";
import { runDrill, type KeyCheck } from "../../backup/drill.ts";
import { BackupError } from "../../backup/errors.ts";
import { readPassphrase } from "../../backup/passphrase.ts";
import { readArchive, restoreBackup } from "../../backup/restore.ts";
import { DumpError } from "../../store/dump.ts";
import { CliError, type CommandEnv } from "../command-env.ts";

export const restoreUsage = `hsm-ca restore --verify FILE
  The restore drill: restores the archive into a scratch directory and proves that every CA and
  OCSP responder key still signs there and verifies against its certificate. One line per key;
  exits 0 only if every key passes. Changes nothing outside the scratch directory.
hsm-ca restore FILE [--force]
  Restores the archive into the configured data directory and database. Refuses when a CA or an
  embedded token is already there (--force replaces the tables and moves the token directory aside)
  and while the service runs; stop it first.`;

/** Runs in the CLI's own process (main.ts never forwards it): the drill needs a child process with its own SoftHSM2. */
export async function restoreCommand(args: string[], env: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { verify: { type: "boolean" }, force: { type: "boolean" } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) throw new CliError(`give one archive file; usage:\n${restoreUsage}`);
  if (values.verify && values.force) throw new CliError("--verify changes nothing: --force does not apply");
  const file = path.resolve(positionals[0]!);
  try {
    const manifest = await readArchive(file, readPassphrase(process.env));
    return values.verify ? await drill(file, manifest, env) : await restore(manifest, env, values.force ?? false);
  } catch (err) {
    if (err instanceof BackupError || err instanceof DumpError) throw new CliError(err.message, 1);
    throw err;
  }
}

async function drill(file: string, manifest: Manifest, env: CommandEnv): Promise<number> {
  env.out(`Restore drill of ${file} (made ${manifest.createdAt}): ${describeHsm(manifest)}, tables from ${manifest.database.kind}.`);
  const report = await runDrill(manifest, { config: env.config, env: process.env });
  for (const w of report.warnings) env.err(`WARNING: ${w}`);
  env.out(`Restored ${report.tables} tables (${report.rows} rows) into a scratch directory; each key signs a challenge there:`);
  for (const check of report.checks) env.out(formatCheck(check));
  const checked = report.checks.filter((c) => c.result !== "SKIP");
  const failed = checked.filter((c) => c.result === "FAIL");
  if (checked.length === 0) {
    env.out("FAIL: the backup names no key to check (no CA in its database): it does not restore a CA.");
    return 1;
  }
  if (failed.length > 0) {
    env.out(`FAIL: ${failed.length} of ${checked.length} keys failed: this backup does not restore a working CA.`);
    return 1;
  }
  const where = report.mode === "restored" ? "on the restored token" : "on the configured HSM";
  if (checked.some((c) => c.role === "eab")) {
    env.out(`PASS: all ${checked.length} keys work ${where}: signatures verified against their certificates, EAB keys opened.`);
  } else {
    env.out(`PASS: all ${checked.length} keys signed ${where} and verified against their certificates.`);
  }
  return 0;
}

async function restore(manifest: Manifest, env: CommandEnv, force: boolean): Promise<number> {
  const summary = await restoreBackup(manifest, {
    config: env.config,
    force,
    restoreHsm: true,
    hook: process.env.HSM_CA_BACKUP_HOOK || undefined,
    env: process.env,
  });
  for (const w of summary.warnings) env.err(`WARNING: ${w}`);
  env.out(`Restored ${summary.tables} tables (${summary.rows} rows) into ${summary.database}.`);
  if (summary.hsmDir) env.out(`Restored ${describeHsm(manifest)} into ${summary.hsmDir}.`);
  if (manifest.hsm.kind === "hook") env.out("HSM_CA_BACKUP_HOOK restored the HSM's part.");
  if (summary.previousHsmDir) env.out(`The token directory that was there is kept in ${summary.previousHsmDir}.`);
  env.out("Run `hsm-ca status` to see the CAs and their keys, then start the service.");
  return 0;
}

function describeHsm(manifest: Manifest): string {
  const hsm = manifest.hsm;
  if (hsm.kind === "softhsm2") return `the embedded SoftHSM2 token "${hsm.tokenLabel}"`;
  if (hsm.kind === "hook") return `the HSM_CA_BACKUP_HOOK files of token "${hsm.tokenLabel}"`;
  return "no HSM part (database only)";
}

function formatCheck(c: KeyCheck): string {
  const role = c.status === "active" ? c.role : `${c.role} (${c.status})`;
  const line = `${c.result}  ${role.padEnd(12)}  ${c.subject}  key ${c.keyLabel}  ${c.keyAlgorithm}`;
  return c.reason ? `${line}: ${c.reason}` : line;
}
