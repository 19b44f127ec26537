import { parseArgs } from "node:util";
import { transcriptDetails } from "../../ceremony/transcript-details.ts";
import { formatTranscript } from "../../ceremony/init-hierarchy.ts";
import { formatPending, nextSteps } from "../../ceremony/pending-intermediate.ts";
import { requestRotation } from "../../approvals/ca-changes.ts";
import { planRotation, requireRootKey, rotateIntermediate, type RotationPlan } from "../../ceremony/rotate.ts";
import { approvalDepsOfEnv, principalOf } from "../approval-env.ts";
import { CliError, type CommandEnv } from "../command-env.ts";

export const rotateUsage = `hsm-ca rotate [--dry-run]
  Rotates the issuing intermediate now: a new key in the HSM, a certificate from the root,
  and the switch of issuance to it (the old one keeps answering for its certificates).
  With HSM_CA_CA_CHANGE_APPROVALS (default 2) it makes a rotation request instead, which
  rotates once that many admins approve it (hsm-ca approve ID); HSM_CA_TOKEN, if set, names
  the requesting admin. --dry-run prints what would happen and changes nothing.`;

export async function rotateCommand(args: string[], env: CommandEnv): Promise<number> {
  const { values, positionals } = parseArgs({
    args,
    options: { "dry-run": { type: "boolean" }, "token-value": { type: "string" } },
    allowPositionals: true,
    strict: true,
  });
  if (positionals.length) throw new CliError(`unexpected argument "${positionals[0]}"; usage:\n${rotateUsage}`);
  const store = await env.store();
  const plan = await planRotation(store.db, env.config.hierarchy);
  const hsm = env.hsm();
  if (values["dry-run"]) {
    env.out(`Would rotate the issuing intermediate:`);
    env.out(`  retire   ${plan.current.subject}  (key ${plan.current.keyLabel}, valid until ${plan.current.notAfter.toISOString()})`);
    if (plan.root.keyOrigin === "external") {
      env.out(`  prepare  ${plan.subject}  (${plan.algorithm} key on token "${hsm.status.tokenLabel}" and a CSR for the external root ${plan.root.subject} to sign)`);
    } else {
      env.out(`  create   ${plan.subject}  (${plan.algorithm} key on token "${hsm.status.tokenLabel}", ${plan.validityDays} days, signed by ${plan.root.subject})`);
      env.out(`  root key ${hsm.hasKey(plan.root.keyLabel) ? "available" : `NOT available (token "${hsm.status.rootToken.label}")`}`);
    }
    const required = env.config.approvals.caChange;
    if (required > 0) env.out(`  needs    ${required} admin approvals first (HSM_CA_CA_CHANGE_APPROVALS)`);
    env.out("Nothing was changed.");
    return 0;
  }
  if (env.config.approvals.caChange > 0) return requestRotationCommand(env, plan, values["token-value"]);
  const done = await rotateIntermediate(hsm, store.db, env.config.hierarchy, env.revocationUrls(), "hsm-ca rotate");
  if (!done) throw new CliError("the rotation did not happen");
  if (done.awaiting) {
    env.out(formatPending(done.awaiting));
    if (done.prepared) env.audit?.record({ kind: "admin.rotate", actor: "cli", details: { awaiting_signature: { pending_id: done.awaiting.id, subject: done.awaiting.subject, key_label: done.awaiting.keyLabel } } });
    env.out(`\n${done.prepared ? "Prepared the next intermediate's key and CSR" : "A key already waits for the external root's signature; nothing new was made"}. ${plan.current.subject} keeps issuing meanwhile.`);
    env.out(nextSteps("hsm-ca ceremony pending-csr --out next.csr"));
    return 0;
  }
  env.audit?.record({ kind: "admin.rotate", actor: "cli", details: { ...transcriptDetails(done.transcript), retired: { subject: plan.current.subject, key_label: plan.current.keyLabel, serial: plan.current.serial } } });
  await env.hierarchyChanged();
  env.out(formatTranscript(done.transcript));
  env.out(`\nRetired ${plan.current.subject}: it no longer issues, and answers for its certificates until they expire.`);
  return 0;
}

/** The M-of-N gate: a "rotate" request that rotates when enough admins approve it. */
async function requestRotationCommand(env: CommandEnv, plan: RotationPlan, tokenValue: string | undefined): Promise<number> {
  // Refuse now what could not run when approved (no root key): approvers would approve in vain.
  requireRootKey(env.hsm(), plan);
  const principal = tokenValue ? await principalOf(env, tokenValue, ["admin"]) : undefined;
  const required = env.config.approvals.caChange;
  const { request } = await requestRotation(await approvalDepsOfEnv(env), {
    plan,
    requestedBy: principal?.tokenId ?? "cli",
    required,
    ttlMs: env.config.approvals.ttlMs,
  });
  env.out(`Rotation request ${request.id}: retire ${plan.current.subject}, create ${plan.subject} (${plan.algorithm}, ${plan.validityDays} days).`);
  env.out(`It needs ${required} admin approvals${principal ? ` other than ${principal.tokenId}` : ""} before ${request.expiresAt.toISOString()}.`);
  env.out(`Approve with: HSM_CA_TOKEN=<admin token> hsm-ca approve ${request.id}    (list: hsm-ca requests --status pending)`);
  return 0;
}
