import { sha256Hex } from "../ca/fingerprint.ts";
import type { KeyManager } from "../hsm/key-manager.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import { activeCa, insertCa, isExternal, type CaRow, type NewCaRow } from "../store/cas.ts";
import type { Database } from "../store/database.ts";
import { LOCKS, withAdvisoryLock } from "../store/locks.ts";
import type { PendingCaRow } from "../store/pending-cas.ts";
import type { KeyChoice } from "./ca-key.ts";
import { isSelfSigned, keyAlgorithmOf, readCertificates, requireCa, requireValidNow, spkiSha256, type CertificateFile } from "./certificate-checks.ts";
import { ExternalCaError } from "./external-ca-error.ts";
import { awaitExternalSignature } from "./pending-intermediate.ts";

/**
 * hsm-ca as the issuing CA below a root it does not hold (an enterprise
 * root, AD CS, an offline root elsewhere): the root is stored as a CA row
 * whose key is "external" (hsm-ca never signs with it), and the issuing
 * intermediate's key is made in the HSM with a CSR for that root to sign.
 */

export type ExternalInitResult =
  | { kind: "waiting"; root: CaRow; rootCreated: boolean; pending: PendingCaRow; prepared: boolean }
  /** Nothing to do: an intermediate issues under this root already. */
  | { kind: "complete"; root: CaRow; intermediate: CaRow };

/** The root file: one self-signed CA certificate, valid now. */
export function readExternalRoot(pem: string, name: string, now: Date): CertificateFile {
  const certs = readCertificates(pem, name);
  if (certs.length !== 1) {
    throw new ExternalCaError(`${name} holds ${certs.length} certificates: give the root alone (the certificates between it and hsm-ca's intermediate go to import-intermediate --chain)`);
  }
  const root = certs[0]!;
  if (!isSelfSigned(root)) throw new ExternalCaError(`${name} (${root.cert.subject}) is not a self-signed root: it is issued by ${root.cert.issuer}`);
  requireCa(root);
  requireValidNow(root, now);
  return root;
}

export async function initExternalRoot(
  hsm: KeyManager,
  db: Database,
  input: { rootPem: string; rootName: string; subject: string; algorithm: CaKeyAlgorithm; keyChoice?: KeyChoice; now?: Date },
): Promise<ExternalInitResult> {
  const file = readExternalRoot(input.rootPem, input.rootName, input.now ?? new Date());
  const fingerprint = sha256Hex(file.cert.rawData);
  return withAdvisoryLock(db, LOCKS.hierarchy, async (tx) => {
    let root = await activeCa(tx, "root");
    if (root && !isExternal(root)) {
      throw new ExternalCaError(`an active hierarchy with its own root exists already (${root.subject}): it cannot be made subordinate to ${file.cert.subject}`);
    }
    if (root && root.fingerprintSha256 !== fingerprint) {
      throw new ExternalCaError(`another external root is stored already: ${root.subject} (sha256 ${root.fingerprintSha256})`);
    }
    const intermediate = await activeCa(tx, "intermediate");
    if (root && intermediate) return { kind: "complete", root, intermediate };
    const rootCreated = !root;
    root ??= await insertCa(tx, externalCaRow("root", file, null));
    const { pending, prepared } = await awaitExternalSignature(hsm, tx, { subject: input.subject, algorithm: input.algorithm, reason: "init", keyChoice: input.keyChoice });
    return { kind: "waiting", root, rootCreated, pending, prepared };
  });
}

/**
 * A CA row for a certificate whose key hsm-ca does not hold: key_origin
 * "external", key_label "external:<SPKI SHA-256>" (which names no object
 * on any token), no CKA_ID.
 */
export function externalCaRow(role: CaRow["role"], file: CertificateFile, parentId: number | null): NewCaRow {
  const spki = spkiSha256(file.cert.publicKey);
  return {
    role,
    status: "active",
    subject: file.cert.subject,
    keyLabel: `external:${spki}`,
    keyOrigin: "external",
    keyId: "",
    keyAlgorithm: keyAlgorithmOf(file.cert.publicKey),
    certificatePem: file.cert.toString("pem").trim() + "\n",
    serial: file.cert.serialNumber.toLowerCase(),
    fingerprintSha256: sha256Hex(file.cert.rawData),
    spkiSha256: spki,
    parentId,
    notBefore: file.cert.notBefore,
    notAfter: file.cert.notAfter,
  };
}
