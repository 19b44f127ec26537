/**
 * A backup or restore refused or failed for a reason the operator can act
 * on. The message is one line and never holds the passphrase or a PIN.
 */
export class BackupError extends Error {}
