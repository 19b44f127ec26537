import { rotationDueAt } from "../../policy/rotation-rule.ts";
import { nextTick } from "../../jobs/next-tick.ts";
import { formatProvenance } from "../../ceremony/init-hierarchy.ts";
import { listCas } from "../../store/cas.ts";
import { waitingPendingCas } from "../../store/pending-cas.ts";
import { formatPending } from "../../ceremony/pending-intermediate.ts";
import type { CommandEnv } from "../command-env.ts";

export const statusUsage = `hsm-ca status
  Prints the CA hierarchy: each CA's role, state, validity, key, where the key came from
  (generated, adopted, external) and what the HSM reports about it, and
  when the issuing intermediate rotates next; below an external root, the key that waits for
  that root's signature, and since when.`;

export async function statusCommand(_args: string[], env: CommandEnv): Promise<number> {
  const store = await env.store();
  const cas = await listCas(store.db);
  if (cas.length === 0) {
    env.out("No CA yet: run `hsm-ca init` (the service creates one on its first start on the embedded default).");
    return 1;
  }
  const hsm = env.hsm();
  for (const ca of cas) {
    env.out(`${ca.role.toUpperCase()} CA (${ca.status})  ${ca.subject}`);
    env.out(`  valid        ${ca.notBefore.toISOString()} .. ${ca.notAfter.toISOString()}`);
    if (ca.keyOrigin === "external") {
      env.out(`  key          external (${ca.keyAlgorithm}): not on this HSM, hsm-ca never signs with it`);
      env.out(`  sha256       ${ca.fingerprintSha256}`);
      continue;
    }
    env.out(`  key          ${ca.keyLabel}  id ${ca.keyId}  ${ca.keyAlgorithm}  ${ca.keyOrigin}`);
    try {
      env.out(`  provenance   ${formatProvenance(hsm.status.provenance(ca.keyLabel))}`);
    } catch (err) {
      env.out(`  provenance   unavailable: ${(err as Error).message}`);
    }
    env.out(`  sha256       ${ca.fingerprintSha256}`);
    if (ca.keyDestroyedAt) env.out(`  key destroyed ${ca.keyDestroyedAt.toISOString()} (its last certificate had expired)`);
    if (ca.revokedAt) env.out(`  revoked      ${ca.revokedAt.toISOString()}`);
    if (ca.role === "intermediate" && ca.status === "active") {
      const r = env.config.rotation;
      const byRule = r.remaining ? rotationDueAt(ca, r.remaining) : undefined;
      const bySchedule = r.schedule ? nextTick(r.schedule, new Date()) : undefined;
      const next = [byRule, bySchedule].filter((d): d is Date => d !== undefined).sort((a, b) => a.getTime() - b.getTime())[0];
      const why = [
        r.remaining ? `when ${"share" in r.remaining ? `${Math.round(r.remaining.share * 100)}%` : `${r.remaining.ms / 86_400_000}d`} of its life remains` : "",
        r.schedule ? `schedule "${r.schedule}"` : "",
      ].filter(Boolean);
      env.out(`  next rotation ${next ? next.toISOString() : "not scheduled"}${why.length ? ` (${why.join("; ")})` : ""}`);
    }
  }
  // Below an external root: the next intermediate's key waits for that root's signature.
  for (const p of await waitingPendingCas(store.db)) {
    env.out(formatPending(p));
    env.out(`  CSR          hsm-ca ceremony pending-csr --out FILE; then hsm-ca ceremony import-intermediate --cert FILE`);
  }
  const root = hsm.status.rootToken;
  if (root.label !== hsm.status.tokenLabel) env.out(`Root token "${root.label}": ${root.present ? "present" : "not present (offline root)"}`);
  return 0;
}
