import { integerFromHex, sequence, time, tlv } from "../asn1/der-writer.ts";
import { derToPem } from "../asn1/pem.ts";
import { TAG } from "../asn1/tags.ts";
import { lintCertificate } from "../lint/certificate.ts";
import {
  caBasicConstraintsExtension,
  cachedNameConstraintsExtension,
  extensionsField,
  issuerParts,
  keyUsageExtension,
  revocationExtensions,
  subjectKeyIdentifier,
  VERSION_3,
  wholeSeconds,
} from "./certificate-parts.ts";
import type { LeafCertificate, LeafInput } from "./leaf-certificate.ts";
import { signTbs } from "./signature.ts";
import type { SubCaTemplate } from "./sub-ca-template.ts";
import { subjectAltName } from "./subject-alt-name.ts";
import { subjectName, subjectString } from "./subject-name.ts";

/** What building a leaf takes, with a CA profile's decision in place of a leaf's. */
export type SubCaInput = Omit<LeafInput, "decision"> & {
  /** What policy decided the CA certificate says (a CA profile's decision). */
  decision: SubCaTemplate;
};

/**
 * A CA certificate for a sub-CA (a service mesh's issuer, say), signed by
 * the issuing intermediate and stored like any certificate it signs, so its
 * CRL and OCSP cover it. Written from the same DER pieces as a leaf
 * (src/ca/certificate-parts.ts, cached per issuer and profile), with the
 * issuer's name exactly as its certificate encodes it.
 *
 * Extensions: basicConstraints CA:TRUE with the decided pathLen (critical),
 * keyUsage keyCertSign + cRLSign (+ what the profile adds; critical), the
 * key identifiers, the SANs the CSR asked for, nameConstraints (critical,
 * RFC 5280 §4.2.1.10) and the CRL and OCSP pointers. No extendedKeyUsage:
 * in a CA certificate it would limit every certificate below it.
 */
export async function buildSubCaCertificate(input: SubCaInput): Promise<LeafCertificate> {
  const { decision } = input;
  const notBefore = wholeSeconds(decision.notBefore);
  const notAfter = wholeSeconds(decision.notAfter);
  const spki = input.spki instanceof Uint8Array ? input.spki : new Uint8Array(input.spki);
  if (decision.subject.length === 0) throw new Error("a CA certificate needs a subject (RFC 5280 §4.1.2.6)");
  const fixed = issuerParts(input.issuer, input.algorithm);
  const extensions: Uint8Array[] = [caBasicConstraintsExtension(decision.ca.pathLength), keyUsageExtension(decision.keyUsage), subjectKeyIdentifier(spki), fixed.authorityKeyIdentifier];
  if (decision.sans.length > 0) extensions.push(subjectAltName(decision.sans, decision.sanCritical));
  if (decision.ca.nameConstraints) extensions.push(cachedNameConstraintsExtension(decision.ca.nameConstraints));
  if (input.revocation) extensions.push(revocationExtensions(input.revocation));
  const tbs = sequence(
    VERSION_3,
    integerFromHex(input.serial),
    fixed.signatureAlgorithm,
    // Name chaining compares bytes: the issuer's subject exactly as its certificate has it.
    fixed.issuerName,
    sequence(time(notBefore), time(notAfter)),
    subjectName(decision.subject),
    spki,
    extensionsField(extensions),
  );
  // Nothing reaches the CA key before the gate passes it (src/lint; docs/lint.md).
  await lintCertificate({ role: "sub-ca", tbs, algorithm: input.algorithm, serial: input.serial, issuer: input.issuer, template: { ...decision, pathLength: decision.ca.pathLength }, ...input.lint });
  const signature = await signTbs(input.signer, input.algorithm, tbs);
  const cert = sequence(tbs, fixed.signatureAlgorithm, tlv(TAG.BIT_STRING, Uint8Array.of(0), signature)) as Uint8Array<ArrayBuffer>;
  return { der: cert, pem: derToPem(cert, "CERTIFICATE"), subject: subjectString(decision.subject), notBefore, notAfter };
}
