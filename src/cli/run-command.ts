import { KeyChoiceError } from "../ceremony/ca-key.ts";
import { CaKeyMismatchError } from "../ceremony/check-ca-keys.ts";
import { RotationError } from "../ceremony/rotate.ts";
import { ExternalCaError } from "../ceremony/external-ca-error.ts";
import { ConfigError } from "../config.ts";
import { DataDirError } from "../private-data-dir.ts";
import { Rejection } from "../errors.ts";
import { HsmKeyError, HsmUnavailableError, PinError } from "../hsm/errors.ts";
import { ProfileError } from "../policy/profiles.ts";
import { DatabaseBusyError } from "../store/database.ts";
import { CliError, type CommandEnv } from "./command-env.ts";
import { acmeCommand, acmeUsage } from "./commands/acme.ts";
import { auditCommand, auditUsage } from "./commands/audit.ts";
import { backupCommand, backupUsage } from "./commands/backup.ts";
import { initCommand, initUsage } from "./commands/init.ts";
import { restoreCommand, restoreUsage } from "./commands/restore.ts";
import { revokeCommand, revokeUsage } from "./commands/revoke.ts";
import { rotateCommand, rotateUsage } from "./commands/rotate.ts";
import { ceremonyCommand, ceremonyUsage } from "./commands/ceremony.ts";
import { statusCommand, statusUsage } from "./commands/status.ts";
import { tokenCommand, tokenUsage } from "./commands/token.ts";
import { approveCommand, approveUsage, rejectCommand } from "./commands/approve.ts";
import { issueCommand, issueUsage } from "./commands/issue.ts";
import { requestsCommand, requestsUsage } from "./commands/requests.ts";
import { vaultCommand, vaultUsage } from "./commands/vault.ts";

type Command = (args: string[], env: CommandEnv) => Promise<number>;

/** Commands that run against a CommandEnv, in this process or in the running service. */
export const COMMANDS: Record<string, { run: Command; usage: string }> = {
  init: { run: initCommand, usage: initUsage },
  token: { run: tokenCommand, usage: tokenUsage },
  status: { run: statusCommand, usage: statusUsage },
  acme: { run: acmeCommand, usage: acmeUsage },
  revoke: { run: revokeCommand, usage: revokeUsage },
  backup: { run: backupCommand, usage: backupUsage },
  restore: { run: restoreCommand, usage: restoreUsage },
  rotate: { run: rotateCommand, usage: rotateUsage },
  ceremony: { run: ceremonyCommand, usage: ceremonyUsage },
  audit: { run: auditCommand, usage: auditUsage },
  issue: { run: issueCommand, usage: issueUsage },
  requests: { run: requestsCommand, usage: requestsUsage },
  approve: { run: approveCommand, usage: approveUsage },
  reject: { run: rejectCommand, usage: "" }, // described with approve
  vault: { run: vaultCommand, usage: vaultUsage },
};

export const USAGE = [
  "usage: hsm-ca <command> [options]",
  "",
  "hsm-ca serve\n  Starts the CA service (HTTPS API, plain-HTTP CA material), creating the embedded default CA on first start.",
  ...Object.values(COMMANDS).map((c) => c.usage).filter(Boolean),
].join("\n");

/** Runs one command; errors become one line on stderr and a non-zero exit code. */
export async function runCommand(argv: string[], env: CommandEnv): Promise<number> {
  const [name, ...args] = argv;
  if (!name || name === "help" || name === "--help" || name === "-h") {
    env.out(USAGE);
    return name ? 0 : 2;
  }
  const command = COMMANDS[name];
  if (!command) {
    env.err(`hsm-ca: unknown command "${name}"; run "hsm-ca help"`);
    return 2;
  }
  try {
    return await command.run(args, env);
  } catch (err) {
    env.err(`hsm-ca ${name}: ${oneLine(err)}`);
    return err instanceof CliError ? err.exitCode : 1;
  }
}

const EXPECTED = [KeyChoiceError, ExternalCaError, RotationError, CaKeyMismatchError, CliError, Rejection, ConfigError, ProfileError, PinError, HsmUnavailableError, HsmKeyError, DatabaseBusyError, DataDirError];

export function oneLine(err: unknown): string {
  if (EXPECTED.some((E) => err instanceof E)) return (err as Error).message.split("\n")[0]!;
  // parseArgs errors carry a code and a readable message.
  if (err instanceof TypeError && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS")) return err.message;
  const message = err instanceof Error ? err.message : String(err);
  return `unexpected error: ${message.split("\n")[0]}`;
}
