import { colonHex } from "../../ca/fingerprint.ts";
import type { KeyChoice } from "../../ceremony/ca-key.ts";
import { initExternalRoot } from "../../ceremony/external-root.ts";
import { formatPending, nextSteps } from "../../ceremony/pending-intermediate.ts";
import type { CaKeyAlgorithm } from "../../hsm/key-algorithms.ts";
import type { CommandEnv } from "../command-env.ts";

/**
 * `hsm-ca init --external-root ROOT.pem`: the root is stored, the issuing
 * intermediate's key made and its CSR printed (--csr-out FILE takes the CSR
 * block off the output into that file, in the CLI's process: local-inputs.ts).
 */
export async function initBelowExternalRoot(env: CommandEnv, input: { rootPem: string; subject: string; algorithm: CaKeyAlgorithm; keyChoice?: KeyChoice }): Promise<number> {
  const store = await env.store();
  const hsm = env.hsm();
  const done = await initExternalRoot(hsm, store.db, { ...input, rootName: "--external-root" });
  const root = done.root;
  if (done.kind === "complete") {
    env.out(`The hierarchy below the external root ${root.subject} exists already; nothing was created.`);
    env.out(`  issuing intermediate ${done.intermediate.subject}  key ${done.intermediate.keyLabel}  sha256 ${done.intermediate.fingerprintSha256}`);
    env.out("Rotate it with hsm-ca rotate (it prepares the next key and CSR).");
    return 0;
  }
  if (done.rootCreated || done.prepared) {
    env.audit?.record({
      kind: "admin.init",
      actor: "cli",
      details: {
        external_root: { subject: root.subject, certificate_sha256: root.fingerprintSha256, stored: done.rootCreated },
        awaiting_signature: { pending_id: done.pending.id, subject: done.pending.subject, key_label: done.pending.keyLabel, key_origin: done.pending.keyOrigin },
      },
    });
  }
  env.out(`EXTERNAL ROOT CA  ${root.subject}${done.rootCreated ? "" : "  (stored before)"}`);
  env.out(`  certificate SHA-256  ${colonHex(root.fingerprintSha256)}`);
  env.out(`  valid                ${root.notBefore.toISOString()} .. ${root.notAfter.toISOString()}`);
  env.out(`  key                  external: hsm-ca never signs with it`);
  env.out("");
  env.out(formatPending(done.pending));
  if (!done.prepared) env.out("  (made before: one key waits at a time; its CSR again)");
  env.out("");
  env.out(done.pending.csrPem.trim());
  env.out("");
  env.out(nextSteps("above, or in the --csr-out file"));
  return 0;
}
