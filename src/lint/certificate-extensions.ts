import { AsnConvert } from "@peculiar/asn1-schema";
import { BasicConstraints, Certificate, SubjectKeyIdentifier, id_ce_authorityKeyIdentifier, id_ce_basicConstraints, id_ce_keyUsage, id_ce_nameConstraints, id_ce_subjectKeyIdentifier } from "@peculiar/asn1-x509";
import type * as x509 from "@peculiar/x509";
import type { CertificateLintInput } from "./certificate-expectations.ts";
import type { ParsedExtensions } from "./certificate.ts";
import type { Violation } from "./lint-failure.ts";

/**
 * Extension rules by certificate role (RFC 5280 §4.2.1): basicConstraints
 * and the path length, key usage against the role and the subject key's
 * type, extended key usage, the key identifiers (AKI = the issuer's SKI),
 * criticality, and each against the template.
 */

const OID_ANY_EKU = "2.5.29.37.0";
const OID_OCSP_SIGNING = "1.3.6.1.5.5.7.3.9";

/** `keyType`: the subject key's type as OpenSSL reads it ("ec", "rsa", "ed25519", ...). */
export function checkCertificateExtensions(input: CertificateLintInput, keyType: string, ext: ParsedExtensions, out: Violation[]): void {
  const isCa = input.role === "root" || input.role === "intermediate" || input.role === "sub-ca";
  const critical = (id: string) => ext.list.get(id)?.critical ?? false;

  // basicConstraints
  const bc = ext.basicConstraints;
  if (isCa) {
    if (!bc || !bc.cA) out.push({ rule: "basic-constraints", detail: `a ${input.role} certificate without basicConstraints cA TRUE` });
    else {
      if (!critical(id_ce_basicConstraints)) out.push({ rule: "basic-constraints", detail: "basicConstraints of a CA certificate is not critical (RFC 5280 §4.2.1.9)" });
      const limit = input.issuer ? issuerPathLength(input.issuer) : undefined;
      if (bc.pathLenConstraint === undefined) out.push({ rule: "path-length", detail: "a CA certificate without pathLenConstraint: hsm-ca always sets one" });
      else if (limit !== undefined && bc.pathLenConstraint >= limit) {
        out.push({ rule: "path-length", detail: `pathLen ${bc.pathLenConstraint} is not below the issuer's ${limit}` });
      }
      if (input.template?.pathLength !== undefined && bc.pathLenConstraint !== input.template.pathLength) {
        out.push({ rule: "template-path-length", detail: `pathLen ${bc.pathLenConstraint} is not the template's ${input.template.pathLength}` });
      }
    }
  } else if (bc && (bc.cA || bc.pathLenConstraint !== undefined)) {
    out.push({ rule: "basic-constraints", detail: `a ${input.role} certificate with cA TRUE or a path length` });
  }

  // keyUsage
  const usages = new Set(ext.keyUsage ? ext.keyUsage.map(lower) : []);
  if (!ext.keyUsage || usages.size === 0) out.push({ rule: "key-usage", detail: "no keyUsage (or an empty one)" });
  else {
    if (!critical(id_ce_keyUsage)) out.push({ rule: "key-usage", detail: "keyUsage is not critical" });
    if (isCa && !usages.has("keycertsign")) out.push({ rule: "key-usage", detail: "a CA certificate without keyCertSign" });
    if (!isCa && (usages.has("keycertsign") || usages.has("crlsign"))) out.push({ rule: "key-usage", detail: `a ${input.role} certificate with keyCertSign or cRLSign` });
    if (input.role === "ocsp-responder" && !usages.has("digitalsignature")) out.push({ rule: "key-usage", detail: "an OCSP responder certificate without digitalSignature" });
    if (keyType !== "rsa" && (usages.has("keyencipherment") || usages.has("dataencipherment"))) {
      out.push({ rule: "key-usage-key-type", detail: `keyEncipherment or dataEncipherment for a ${keyType} key, which cannot encrypt` });
    }
    if (keyType !== "ec" && usages.has("keyagreement")) out.push({ rule: "key-usage-key-type", detail: `keyAgreement for a ${keyType} key` });
    const wanted = input.template?.keyUsage;
    if (wanted && !sameSet(usages, new Set(wanted.map(lower)))) {
      out.push({ rule: "template-key-usage", detail: `keyUsage ${[...usages].join(",")} is not the template's ${wanted.join(",")}` });
    }
  }

  // extendedKeyUsage
  const eku = ext.extendedKeyUsage;
  if (isCa && eku) out.push({ rule: "extended-key-usage", detail: "a CA certificate with extendedKeyUsage: it would limit every certificate below it" });
  if (eku?.includes(OID_ANY_EKU)) out.push({ rule: "extended-key-usage", detail: "anyExtendedKeyUsage" });
  if (input.role === "ocsp-responder" && (eku?.length !== 1 || eku[0] !== OID_OCSP_SIGNING)) out.push({ rule: "extended-key-usage", detail: "an OCSP responder certificate's extendedKeyUsage is OCSPSigning alone" });
  if (input.role === "leaf" && !eku?.length) out.push({ rule: "extended-key-usage", detail: "an end-entity certificate without extendedKeyUsage" });
  const wantedEku = input.template?.extendedKeyUsage;
  if (wantedEku && !isCa && (eku ?? []).join(",") !== wantedEku.join(",")) {
    out.push({ rule: "template-extended-key-usage", detail: `extendedKeyUsage ${(eku ?? []).join(",")} is not the template's ${wantedEku.join(",")}` });
  }

  // key identifiers
  if (!ext.ski || ext.ski.length === 0) out.push({ rule: "subject-key-identifier", detail: "no subjectKeyIdentifier" });
  if (critical(id_ce_subjectKeyIdentifier)) out.push({ rule: "subject-key-identifier", detail: "subjectKeyIdentifier is critical (RFC 5280 §4.2.1.2)" });
  if (critical(id_ce_authorityKeyIdentifier)) out.push({ rule: "authority-key-identifier", detail: "authorityKeyIdentifier is critical (RFC 5280 §4.2.1.1)" });
  const expectedAki = input.issuer ? issuerSki(input.issuer) : ext.ski;
  const aki = ext.aki?.keyIdentifier;
  if (input.issuer && !aki) out.push({ rule: "authority-key-identifier", detail: "no authorityKeyIdentifier keyIdentifier" });
  else if (aki && expectedAki && !aki.equals(expectedAki)) {
    out.push({ rule: "authority-key-identifier", detail: `authorityKeyIdentifier ${aki.toString("hex")} is not the issuer's subjectKeyIdentifier ${expectedAki.toString("hex")}` });
  }
  if (input.issuer && !expectedAki) out.push({ rule: "authority-key-identifier", detail: `the issuer ${input.issuer.subject} has no subjectKeyIdentifier` });

  // nameConstraints: only in CA certificates, and critical (§4.2.1.10)
  const nc = ext.list.get(id_ce_nameConstraints);
  if (nc && !isCa) out.push({ rule: "name-constraints", detail: "nameConstraints in a certificate that is not a CA's" });
  if (nc && !nc.critical) out.push({ rule: "name-constraints", detail: "nameConstraints is not critical" });
}

function lower(s: string): string {
  return s.toLowerCase();
}

function sameSet(a: Set<string>, b: Set<string>): boolean {
  return a.size === b.size && [...a].every((x) => b.has(x));
}

const issuerInfo = new WeakMap<x509.X509Certificate, { ski?: Buffer; pathLength?: number }>();

function infoOf(issuer: x509.X509Certificate): { ski?: Buffer; pathLength?: number } {
  let info = issuerInfo.get(issuer);
  if (!info) {
    info = {};
    const cert = AsnConvert.parse(issuer.rawData, Certificate);
    for (const e of cert.tbsCertificate.extensions ?? []) {
      if (e.extnID === id_ce_subjectKeyIdentifier) info.ski = Buffer.from(AsnConvert.parse(e.extnValue.buffer, SubjectKeyIdentifier).buffer);
      if (e.extnID === id_ce_basicConstraints) info.pathLength = AsnConvert.parse(e.extnValue.buffer, BasicConstraints).pathLenConstraint;
    }
    issuerInfo.set(issuer, info);
  }
  return info;
}

function issuerSki(issuer: x509.X509Certificate): Buffer | undefined {
  return infoOf(issuer).ski;
}

function issuerPathLength(issuer: x509.X509Certificate): number | undefined {
  return infoOf(issuer).pathLength;
}
