import * as x509 from "@peculiar/x509";
import { buildCaCsr } from "../ca/ca-csr.ts";
import { colonHex, csrKeySha256, sha256Hex } from "../ca/fingerprint.ts";
import type { KeyManager } from "../hsm/key-manager.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import { insertCeremony } from "../store/ceremonies.ts";
import type { Database } from "../store/database.ts";
import { insertPendingCa, waitingPendingCas, type PendingCaRow } from "../store/pending-cas.ts";
import { caKeyFor, type KeyChoice } from "./ca-key.ts";

/**
 * Under an external root, hsm-ca cannot sign its own intermediates: it makes
 * the key in the HSM and a CSR, and waits for the external CA to sign it
 * (`hsm-ca ceremony import-intermediate`). One key waits at a time: while one
 * waits, asking again (a rotation rule that keeps firing, a second `hsm-ca
 * rotate`) returns the waiting one and makes nothing.
 *
 * Call it inside a transaction that holds the hierarchy lock.
 */
export async function awaitExternalSignature(
  hsm: KeyManager,
  tx: Database,
  next: { subject: string; algorithm: CaKeyAlgorithm; reason: string; keyChoice?: KeyChoice },
): Promise<{ pending: PendingCaRow; prepared: boolean }> {
  const [waiting] = await waitingPendingCas(tx);
  if (waiting) return { pending: waiting, prepared: false };
  const key = await caKeyFor(hsm, "intermediate", next.algorithm, next.keyChoice && { ...next.keyChoice, db: next.keyChoice.db ?? tx });
  const csr = await buildCaCsr({ subject: next.subject, spki: key.spki, signer: hsm.signer(key.label, key.algorithm) });
  const pending = await insertPendingCa(tx, {
    // As the certificate will print it ("CN=x, O=y"), whatever spacing the option had.
    subject: csr.subject,
    keyLabel: key.label,
    keyId: key.id,
    keyAlgorithm: key.algorithm,
    keyOrigin: key.origin,
    csrPem: csr.toString("pem").trim() + "\n",
    reason: next.reason,
  });
  await insertCeremony(tx, "prepare-intermediate", {
    ceremony: "prepare-intermediate",
    at: pending.createdAt.toISOString(),
    token: hsm.status.tokenLabel,
    pending: { id: pending.id, subject: pending.subject, keyLabel: key.label, keyId: key.id, keyAlgorithm: key.algorithm, keyOrigin: key.origin, publicKeySha256: pendingKeySha256(pending) },
    provenance: hsm.status.provenance(key.label),
    reason: next.reason,
  });
  return { pending, prepared: true };
}

/** SHA-256 of the waiting key's SubjectPublicKeyInfo (from its CSR): what an imported certificate must carry. */
export function pendingKeySha256(p: Pick<PendingCaRow, "csrPem">): string {
  return csrKeySha256(p.csrPem);
}

/** What the operator needs to know about a waiting key: which it is, since when, and what to do. */
export function formatPending(p: PendingCaRow, now = new Date()): string {
  const days = Math.floor((now.getTime() - p.createdAt.getTime()) / 86_400_000);
  return [
    `INTERMEDIATE CA awaiting the external root's signature  ${p.subject}`,
    `  waiting since        ${p.createdAt.toISOString()}${days > 0 ? ` (${days} days)` : ""}`,
    `  why                  ${p.reason}`,
    `  key label            ${p.keyLabel}`,
    `  key id (CKA_ID)      ${p.keyId}`,
    `  key algorithm        ${p.keyAlgorithm} (${p.keyOrigin})`,
    `  public key SHA-256   ${colonHex(pendingKeySha256(p))}`,
    `  CSR SHA-256          ${colonHex(sha256Hex(new x509.Pkcs10CertificateRequest(p.csrPem).rawData))}`,
  ].join("\n");
}

/** The steps after a CSR went out, for the terminal. */
export function nextSteps(csrWhere: string): string {
  return [
    "Next:",
    `  1. Have the external root sign the CSR (${csrWhere}) as a CA certificate: basicConstraints CA:TRUE (critical),`,
    "     keyUsage keyCertSign, cRLSign (critical); the root decides the validity and any path length.",
    "  2. hsm-ca ceremony import-intermediate --cert intermediate.pem [--chain chain.pem]",
    "     (--chain: certificates between the root and the new intermediate, if any)",
    "The CSR is shown again by: hsm-ca ceremony pending-csr [--out FILE]",
  ].join("\n");
}
