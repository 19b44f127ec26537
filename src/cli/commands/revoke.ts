import { parseArgs } from "node:util";
import { parseReason, reasonName, SUBSCRIBER_REASONS } from "../../revocation/reasons.ts";
import { revoke } from "../../revocation/revoke.ts";
import { listCas, revokeCa } from "../../store/cas.ts";
import { CliError, type CommandEnv } from "../command-env.ts";

export const revokeUsage = `hsm-ca revoke SERIAL [--reason NAME] [--invalidity-date ISO-8601]
  Revokes a certificate (reasons: ${SUBSCRIBER_REASONS.map(reasonName).join(", ")}). keyCompromise also bars
  its key from future certificates. An intermediate CA's serial revokes that CA (--reason
  cACompromise, superseded, cessationOfOperation...): the root's CRL then lists it.`;

export async function revokeCommand(args: string[], env: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { reason: { type: "string" }, "invalidity-date": { type: "string" } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length !== 1) throw new CliError(`give one serial; usage:\n${revokeUsage}`);
  const serial = positionals[0]!.toLowerCase().replace(/:/g, "");
  if (!/^[0-9a-f]{1,40}$/.test(serial)) throw new CliError(`"${positionals[0]}" is not a hex serial number`);
  const reason = parseReason(values.reason ?? "unspecified");
  if (reason === undefined) throw new CliError(`unknown reason "${values.reason}"`);
  const invalidityDate = values["invalidity-date"] ? new Date(values["invalidity-date"]) : undefined;
  if (invalidityDate && Number.isNaN(invalidityDate.getTime())) throw new CliError(`--invalidity-date "${values["invalidity-date"]}" is not a date`);
  const store = await env.store();

  const ca = (await listCas(store.db)).find((c) => c.serial === serial);
  if (ca) {
    if (ca.role === "root") throw new CliError("the root CA cannot be revoked: retire the hierarchy instead");
    if (ca.keyOrigin === "external") throw new CliError(`${ca.subject} is an external CA: revoke it at the CA that issued it`, 1);
    const row = await revokeCa(store.db, ca.id, reason, new Date());
    if (row) env.audit?.record({ kind: "admin.revoke", actor: "cli", subject: ca.serial, details: { target: "intermediate", subject: ca.subject, key_label: ca.keyLabel, reason: reasonName(reason) } });
    env.out(row ? `Revoked intermediate CA ${ca.subject} (${reasonName(reason)}); it no longer issues.` : `Intermediate CA ${ca.subject} was already revoked.`);
    const parent = ca.parentId === null ? undefined : (await listCas(store.db)).find((c) => c.id === ca.parentId);
    if (row && parent?.keyOrigin === "external") env.out(`Its issuer ${parent.subject} is external: have that CA revoke it too, so that its CRL and OCSP say so.`);
    await env.hierarchyChanged();
    return 0;
  }
  const outcome = await revoke({ db: store.db, now: () => new Date(), audit: env.audit, metrics: env.metrics }, { serial, reason, invalidityDate, by: "cli" });
  const r = outcome.row;
  env.out(
    outcome.alreadyRevoked
      ? `Already revoked at ${r.revokedAt!.toISOString()} (${reasonName(r.revocationReason ?? 0)}); nothing changed.`
      : `Revoked ${r.serial} (${r.subject || r.sans.join(", ")}) at ${r.revokedAt!.toISOString()}: ${reasonName(reason)}.`,
  );
  return 0;
}
