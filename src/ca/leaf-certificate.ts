import type * as x509 from "@peculiar/x509";
import { integerFromHex, sequence, time, tlv } from "../asn1/der-writer.ts";
import { derToPem } from "../asn1/pem.ts";
import { TAG } from "../asn1/tags.ts";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import type { LintContext } from "../lint/certificate-expectations.ts";
import { lintCertificate } from "../lint/certificate.ts";
import {
  BASIC_CONSTRAINTS_END_ENTITY,
  extendedKeyUsageExtension,
  extensionsField,
  issuerParts,
  keyUsageExtension,
  revocationExtensions,
  subjectKeyIdentifier,
  VERSION_3,
  wholeSeconds,
} from "./certificate-parts.ts";
import type { LeafTemplate } from "./leaf-template.ts";
import type { RevocationPointers } from "./revocation-pointers.ts";
import { signTbs } from "./signature.ts";
import type { Signer } from "../hsm/key-manager.ts";
import { subjectAltName } from "./subject-alt-name.ts";
import { subjectName, subjectString } from "./subject-name.ts";

/**
 * End-entity certificates assembled from DER pieces. What a profile and an
 * issuer fix (basic constraints, key usage, EKU, the issuer's name and key
 * identifier, CRL and OCSP pointers) is encoded once and reused; per
 * request only the serial, validity, subject, key, its identifier and the
 * SANs are written. @peculiar/x509's generator built the same bytes (the
 * tests compare the two TBSCertificates byte for byte) at about a tenth of
 * the rate: an object per ASN.1 node and a schema walk per certificate.
 * Issuance is the hot path docs/benchmarks.md measures ("REST issuance end
 * to end"), which is why this stays hand-written.
 */

export interface LeafInput {
  /** What policy decided the certificate says. */
  decision: LeafTemplate;
  /** SubjectPublicKeyInfo, DER, exactly as the CSR carried it. */
  spki: ArrayBuffer | Uint8Array;
  serial: string;
  issuer: x509.X509Certificate;
  /** The issuing key's algorithm: it names the signature. */
  algorithm: CaKeyAlgorithm;
  signer: Signer;
  revocation?: RevocationPointers;
  /** What the lint gate needs beyond the template: the CAs above the issuer, the profile's name rules. */
  lint?: LintContext;
}

export interface LeafCertificate {
  der: Uint8Array<ArrayBuffer>;
  pem: string;
  /** The subject as @peculiar/x509 writes names ("CN=a, O=b"). */
  subject: string;
  /** Validity as encoded: whole seconds. */
  notBefore: Date;
  notAfter: Date;
}

/** An end-entity certificate exactly as the profile decided it, signed by the issuer's key. */
export async function buildLeafCertificate(input: LeafInput): Promise<LeafCertificate> {
  const { decision } = input;
  const notBefore = wholeSeconds(decision.notBefore);
  const notAfter = wholeSeconds(decision.notAfter);
  const spki = input.spki instanceof Uint8Array ? input.spki : new Uint8Array(input.spki);
  const fixed = issuerParts(input.issuer, input.algorithm);
  const extensions: Uint8Array[] = [
    BASIC_CONSTRAINTS_END_ENTITY,
    keyUsageExtension(decision.keyUsage),
    extendedKeyUsageExtension(decision.extendedKeyUsage),
    subjectKeyIdentifier(spki),
    fixed.authorityKeyIdentifier,
  ];
  if (decision.sans.length > 0) extensions.push(subjectAltName(decision.sans, decision.sanCritical));
  if (input.revocation) extensions.push(revocationExtensions(input.revocation));
  const tbs = sequence(
    VERSION_3,
    integerFromHex(input.serial),
    fixed.signatureAlgorithm,
    fixed.issuerName,
    sequence(time(notBefore), time(notAfter)),
    subjectName(decision.subject),
    spki,
    extensionsField(extensions),
  );
  // Nothing reaches the CA key before the gate passes it (src/lint; docs/lint.md).
  await lintCertificate({ role: "leaf", tbs, algorithm: input.algorithm, serial: input.serial, issuer: input.issuer, template: { ...decision }, ...input.lint });
  const signature = await signTbs(input.signer, input.algorithm, tbs);
  // der.ts allocates plain ArrayBuffers.
  const der = sequence(tbs, fixed.signatureAlgorithm, tlv(TAG.BIT_STRING, Uint8Array.of(0), signature)) as Uint8Array<ArrayBuffer>;
  return { der, pem: derToPem(der, "CERTIFICATE"), subject: subjectString(decision.subject), notBefore, notAfter };
}
