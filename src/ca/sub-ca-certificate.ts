import crypto from "node:crypto";
import * as x509 from "@peculiar/x509";
import { contextTag, integerFromHex, sequence, time, tlv } from "../asn1/der-writer.ts";
import { derToPem } from "../asn1/pem.ts";
import { TAG } from "../asn1/tags.ts";
import { lintCertificate } from "../lint/certificate.ts";
import { authorityKeyIdentifier } from "./authority-key-identifier.ts";
import { certificateFields, subjectPublicKeyBits } from "./certificate-fields.ts";
import type { LeafCertificate, LeafInput } from "./leaf-certificate.ts";
import { nameConstraintsExtension } from "./name-constraints.ts";
import { revocationExtensions } from "./revocation-pointers.ts";
import { signatureAlgorithmDer, signTbs } from "./signature.ts";
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
 * CRL and OCSP cover it. Written from DER pieces like a leaf, with the
 * issuer's name exactly as its certificate encodes it; not on the hot path,
 * so nothing is cached.
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
  const flags = decision.keyUsage.reduce((f, u) => f | x509.KeyUsageFlags[u], 0);
  const extensions: Uint8Array[] = [
    der(new x509.BasicConstraintsExtension(true, decision.ca.pathLength, true)),
    der(new x509.KeyUsagesExtension(flags, true)),
    subjectKeyIdentifier(spki),
    der(authorityKeyIdentifier(input.issuer)),
  ];
  if (decision.sans.length > 0) extensions.push(subjectAltName(decision.sans, decision.sanCritical));
  if (decision.ca.nameConstraints) extensions.push(der(nameConstraintsExtension(decision.ca.nameConstraints)));
  if (input.revocation) extensions.push(...revocationExtensions(input.revocation).map(der));
  const signatureAlgorithm = signatureAlgorithmDer(input.algorithm);
  const tbs = sequence(
    contextTag(0, true, Uint8Array.of(TAG.INTEGER, 1, 2)),
    integerFromHex(input.serial),
    signatureAlgorithm,
    // Name chaining compares bytes: the issuer's subject exactly as its certificate has it.
    certificateFields(new Uint8Array(input.issuer.rawData)).subject,
    sequence(time(notBefore), time(notAfter)),
    subjectName(decision.subject),
    spki,
    contextTag(3, true, sequence(...extensions)),
  );
  // Nothing reaches the CA key before the gate passes it (src/lint; docs/lint.md).
  await lintCertificate({ role: "sub-ca", tbs, algorithm: input.algorithm, serial: input.serial, issuer: input.issuer, template: { ...decision, pathLength: decision.ca.pathLength }, ...input.lint });
  const signature = await signTbs(input.signer, input.algorithm, tbs);
  const cert = sequence(tbs, signatureAlgorithm, tlv(TAG.BIT_STRING, Uint8Array.of(0), signature)) as Uint8Array<ArrayBuffer>;
  return { der: cert, pem: derToPem(cert, "CERTIFICATE"), subject: subjectString(decision.subject), notBefore, notAfter };
}

function der(ext: x509.Extension): Uint8Array {
  return new Uint8Array(ext.rawData);
}

/** RFC 5280 §4.2.1.2 method 1, as for leaves: SHA-1 of the subjectPublicKey bits. */
function subjectKeyIdentifier(spki: Uint8Array): Uint8Array {
  const id = crypto.createHash("sha1").update(subjectPublicKeyBits(spki)).digest();
  return der(new x509.SubjectKeyIdentifierExtension(id.toString("hex")));
}

function wholeSeconds(d: Date): Date {
  return new Date(Math.floor(d.getTime() / 1000) * 1000);
}
