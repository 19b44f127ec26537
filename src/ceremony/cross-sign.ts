import * as x509 from "@peculiar/x509";
import { pemOf } from "../asn1/pem.ts";
import { pathLengthOf, pathLengthUnder } from "../ca/ca-certificate.ts";
import { buildCrossCertificate } from "../ca/cross-certificate.ts";
import { sha256Hex } from "../ca/fingerprint.ts";
import { newSerial } from "../ca/serial.ts";
import type { KeyManager } from "../hsm/key-manager.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import { pointersFor } from "../revocation/pointers.ts";
import type { RevocationUrls } from "../revocation/urls.ts";
import { incomingRoot, type CaRow } from "../store/cas.ts";
import { insertCrossCertificate, type CrossCertificateRow } from "../store/cross-certificates.ts";
import type { Database } from "../store/database.ts";

/** What a transcript records of a cross certificate. */
export interface CrossCertificateEntry {
  /** The CA whose subject and key it carries, and the CA that signed it. */
  subject: string;
  issuer: string;
  serial: string;
  certificateSha256: string;
  pathLength: number | undefined;
  notBefore: string;
  notAfter: string;
}

/** Cross certificates start an hour early, like every CA certificate (init-hierarchy.ts). */
const BACKDATE_MS = 3_600_000;

/**
 * The old root certifies the new root's key: a relying party that trusts
 * only the old root reaches the new one through it. Same path length as
 * the new root's own certificate; valid no longer than the old root.
 */
export async function crossSignRoot(hsm: KeyManager, db: Database, newRoot: CaRow, oldRoot: CaRow, urls: RevocationUrls | undefined): Promise<CrossCertificateRow> {
  const of = new x509.X509Certificate(newRoot.certificatePem);
  const issuer = new x509.X509Certificate(oldRoot.certificatePem);
  return issue(hsm, db, newRoot, oldRoot, {
    of,
    issuer,
    pathLength: pathLengthOf(of) ?? 0,
    notBefore: new Date(Date.now() - BACKDATE_MS),
    notAfter: new Date(Math.min(of.notAfter.getTime(), issuer.notAfter.getTime())),
    revocation: urls && pointersFor(urls, oldRoot.id, null),
  });
}

/**
 * A second certificate for an intermediate, signed by another root (same
 * subject and key): its leaves then chain to that root as well. Its path
 * length is the intermediate's own as far as the root allows; its validity
 * the intermediate's, within the root's.
 */
export async function resignIntermediate(
  hsm: KeyManager,
  db: Database,
  intermediate: CaRow,
  root: CaRow,
  urls: RevocationUrls | undefined,
  fallbackPathLength: number,
): Promise<CrossCertificateRow> {
  const of = new x509.X509Certificate(intermediate.certificatePem);
  const issuer = new x509.X509Certificate(root.certificatePem);
  return issue(hsm, db, intermediate, root, {
    of,
    issuer,
    pathLength: pathLengthUnder(issuer, pathLengthOf(of) ?? fallbackPathLength),
    notBefore: new Date(Math.max(of.notBefore.getTime(), issuer.notBefore.getTime())),
    notAfter: new Date(Math.min(of.notAfter.getTime(), issuer.notAfter.getTime())),
    revocation: urls && pointersFor(urls, root.id, null),
  });
}

export function crossEntryFor(row: CrossCertificateRow): CrossCertificateEntry {
  const cert = new x509.X509Certificate(row.certificatePem);
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    serial: row.serial,
    certificateSha256: row.fingerprintSha256,
    pathLength: pathLengthOf(cert),
    notBefore: row.notBefore.toISOString(),
    notAfter: row.notAfter.toISOString(),
  };
}

async function issue(
  hsm: KeyManager,
  db: Database,
  ca: CaRow,
  signer: CaRow,
  input: Omit<Parameters<typeof buildCrossCertificate>[0], "signer" | "serial">,
): Promise<CrossCertificateRow> {
  const cert = await buildCrossCertificate({ ...input, serial: newSerial(), signer: hsm.signer(signer.keyLabel, signer.keyAlgorithm as CaKeyAlgorithm) });
  return insertCrossCertificate(db, {
    caId: ca.id,
    issuerCaId: signer.id,
    certificatePem: pemOf(cert),
    serial: cert.serialNumber.toLowerCase(),
    fingerprintSha256: sha256Hex(cert.rawData),
    notBefore: cert.notBefore,
    notAfter: cert.notAfter,
  });
}

/**
 * During a root rollover a new intermediate (a rotation) is re-signed
 * under the incoming root too, so that the chain to the new root keeps
 * existing. Without the incoming root's key on a token now (an offline
 * root) it cannot be: the warning says what to do.
 */
export async function resignUnderIncomingRoot(
  hsm: KeyManager,
  db: Database,
  intermediate: CaRow,
  urls: RevocationUrls | undefined,
  fallbackPathLength: number,
): Promise<{ cross?: CrossCertificateEntry; warning?: string }> {
  const incoming = await incomingRoot(db);
  if (!incoming) return {};
  if (!hsm.hasKey(incoming.keyLabel)) {
    return {
      warning:
        `a root rollover is under way but the incoming root's key (${incoming.subject}) is not available: ` +
        `${intermediate.subject} has no certificate under it, so its leaves chain to the old root only; ` +
        `run \`hsm-ca ceremony retire-root\` with the root token present to re-sign it`,
    };
  }
  const row = await resignIntermediate(hsm, db, intermediate, incoming, urls, fallbackPathLength);
  return { cross: crossEntryFor(row) };
}
