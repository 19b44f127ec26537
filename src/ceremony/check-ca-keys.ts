import * as x509 from "@peculiar/x509";
import { sha256Hex } from "../ca/fingerprint.ts";
import type { KeyManager } from "../hsm/key-manager.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import { listCas } from "../store/cas.ts";
import type { Database } from "../store/database.ts";

export class CaKeyMismatchError extends Error {}

/**
 * Refuses to serve when an active CA's key is missing from the token or is
 * not the key its certificate names (a database paired with the wrong HSM).
 * A root key that is not present is an offline root: reported, not fatal.
 * Returns the warnings.
 */
export async function checkCaKeys(hsm: KeyManager, db: Database): Promise<string[]> {
  const warnings: string[] = [];
  for (const ca of await listCas(db)) {
    // An external CA's key is on no token of ours (key_origin "external"): nothing to check.
    if (ca.status !== "active" || ca.keyOrigin === "external") continue;
    if (ca.role === "root" && !hsm.hasKey(ca.keyLabel)) {
      warnings.push(`the root key "${ca.keyLabel}" is not present: an offline root; rotation and the root's CRL need it (hsm-ca ceremony)`);
      continue;
    }
    if (!hsm.hasKey(ca.keyLabel)) {
      throw new CaKeyMismatchError(`the ${ca.role} CA's key "${ca.keyLabel}" is not on token "${hsm.status.tokenLabel}": is this the right HSM for this database?`);
    }
    const spki = await hsm.publicKeySpki(ca.keyLabel, ca.keyAlgorithm as CaKeyAlgorithm);
    const expected = sha256Hex(new x509.X509Certificate(ca.certificatePem).publicKey.rawData);
    if (sha256Hex(spki) !== expected) {
      throw new CaKeyMismatchError(`the key "${ca.keyLabel}" on the token does not match the ${ca.role} CA certificate`);
    }
  }
  return warnings;
}
