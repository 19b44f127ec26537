import fs from "node:fs";
import { BackupError } from "./errors.ts";

export class PassphraseError extends BackupError {}

/** The variables that carry the backup passphrase, kept from hooks and child processes. */
export const PASSPHRASE_VARIABLES = ["HSM_CA_BACKUP_PASSPHRASE", "HSM_CA_BACKUP_PASSPHRASE_FILE"] as const;

/**
 * The backup passphrase, from HSM_CA_BACKUP_PASSPHRASE or the file named by
 * HSM_CA_BACKUP_PASSPHRASE_FILE (its trailing newline dropped, so that
 * `echo secret > file` and the variable give the same key). Errors name the
 * variable or file, never the passphrase.
 */
export function readPassphrase(env: NodeJS.ProcessEnv): string {
  const direct = env.HSM_CA_BACKUP_PASSPHRASE;
  const file = env.HSM_CA_BACKUP_PASSPHRASE_FILE;
  if (direct && file) throw new PassphraseError("set HSM_CA_BACKUP_PASSPHRASE or HSM_CA_BACKUP_PASSPHRASE_FILE, not both");
  if (direct) return direct;
  if (!file) {
    throw new PassphraseError("no backup passphrase: set HSM_CA_BACKUP_PASSPHRASE_FILE (a file with the passphrase) or HSM_CA_BACKUP_PASSPHRASE");
  }
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (err) {
    throw new PassphraseError(`cannot read HSM_CA_BACKUP_PASSPHRASE_FILE ${file}: ${(err as NodeJS.ErrnoException).code ?? "error"}`);
  }
  const passphrase = text.replace(/\r?\n$/, "");
  if (!passphrase) throw new PassphraseError(`the backup passphrase file ${file} is empty`);
  return passphrase;
}
