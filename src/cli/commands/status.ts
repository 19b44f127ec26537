import { listCas } from "../../store/cas.ts";
import type { CommandEnv } from "../command-env.ts";

export const statusUsage = `hsm-ca status
  Prints the CA hierarchy: each CA's role, state, validity, key and key provenance.`;

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
    env.out(`  key          ${ca.keyLabel}  id ${ca.keyId}  ${ca.keyAlgorithm}`);
    try {
      const p = hsm.provenance(ca.keyLabel);
      env.out(`  provenance   local=${p.local} sensitive=${p.sensitive} extractable=${p.extractable} neverExtractable=${p.neverExtractable}`);
    } catch (err) {
      env.out(`  provenance   unavailable: ${(err as Error).message}`);
    }
    env.out(`  sha256       ${ca.fingerprintSha256}`);
  }
  return 0;
}
