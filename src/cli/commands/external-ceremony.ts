import { parseArgs } from "node:util";
import { ExternalCaError } from "../../ceremony/external-ca-error.ts";
import { importIntermediate } from "../../ceremony/import-intermediate.ts";
import { formatTranscript } from "../../ceremony/init-hierarchy.ts";
import { formatPending } from "../../ceremony/pending-intermediate.ts";
import { transcriptDetails } from "../../ceremony/transcript-details.ts";
import { activeCa, isExternal } from "../../store/cas.ts";
import type { Database } from "../../store/database.ts";
import { waitingPendingCas } from "../../store/pending-cas.ts";
import { CliError, type CommandEnv } from "../command-env.ts";
import { ALLOW_WEAK_KEY_OPTION, keyChoiceFrom, keyChoiceOptions, keyChoiceUsage, requireKeyForAllowWeak } from "../key-choice.ts";

export const externalCeremonyUsage = `hsm-ca ceremony import-intermediate --cert FILE [--chain FILE] ${keyChoiceUsage("")} [--allow-weak-key]
  Below an external root (hsm-ca init --external-root): activates the intermediate certificate the
  root signed for the key waiting in the HSM (or for the key named), after checking that it carries
  that key, is a CA that may sign certificates and CRLs, is valid now and chains to the stored root
  (through the --chain certificates). A rotation's new certificate retires the old intermediate.
hsm-ca ceremony pending-csr [--out FILE]
  Prints the CSR of the intermediate key that waits for the external root's signature.`;

/** Root ceremonies that sign with the root have nothing to do below an external root. */
export async function refuseExternalRoot(db: Database, why: string): Promise<void> {
  const root = await activeCa(db, "root");
  if (root && isExternal(root)) throw new CliError(`the root ${root.subject} is external: ${why}`, 1);
}

export async function importIntermediateCommand(args: string[], env: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { "cert-pem": { type: "string" }, "chain-pem": { type: "string" }, ...keyChoiceOptions(""), ...ALLOW_WEAK_KEY_OPTION },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length) throw new CliError(`unexpected argument "${positionals[0]}"; usage:\n${externalCeremonyUsage}`);
  if (values["cert-pem"] === undefined) throw new CliError("give the signed intermediate certificate with --cert FILE");
  const keyChoice = keyChoiceFrom(values, "");
  requireKeyForAllowWeak(values, [keyChoice], "--key-label or --key-id");
  const store = await env.store();
  const hsm = env.hsm();
  const done = await importIntermediate(hsm, store.db, {
    certPem: values["cert-pem"],
    certName: "--cert",
    chainPem: values["chain-pem"],
    chainName: "--chain",
    keyChoice,
  });
  const extra = {
    between: done.between.map((c) => ({ id: c.id, subject: c.subject, certificate_sha256: c.fingerprintSha256 })),
    ...(done.retired ? { retired: { subject: done.retired.subject, key_label: done.retired.keyLabel, serial: done.retired.serial } } : {}),
    ...(done.completed ? { pending_id: done.completed.id, reason: done.completed.reason } : {}),
  };
  env.audit?.record({ kind: "admin.ceremony", actor: "cli", subject: done.row.serial, details: { ...transcriptDetails(done.transcript), ...extra } });
  await env.hierarchyChanged();
  env.out(formatTranscript(done.transcript));
  for (const c of done.between) env.out(`  chain through        ${c.subject} (external, CA #${c.id})`);
  if (done.retired) env.out(`\nRetired ${done.retired.subject}: it no longer issues, and answers for its certificates until they expire.`);
  env.out(`\n${done.row.subject} issues now. The transcript is stored in the database (ceremonies table).`);
  return 0;
}

export async function pendingCsrCommand(args: string[], env: CommandEnv): Promise<number> {
  const { positionals } = parseArgs({ args, options: {}, allowPositionals: true, strict: true });
  if (positionals.length) throw new CliError(`unexpected argument "${positionals[0]}"; usage:\n${externalCeremonyUsage}`);
  const store = await env.store();
  const [pending] = await waitingPendingCas(store.db);
  if (!pending) throw new ExternalCaError("no intermediate key is waiting for the external root's signature");
  // The CSR alone on stdout (for --out FILE or a pipe); what it is, on stderr.
  env.err(formatPending(pending));
  env.out(pending.csrPem.trim());
  return 0;
}
