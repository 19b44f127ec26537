import crypto from "node:crypto";
import { AsnConvert } from "@peculiar/asn1-schema";
import {
  AuthorityKeyIdentifier,
  BasicConstraints,
  Certificate,
  ExtendedKeyUsage,
  KeyUsage,
  SubjectAlternativeName,
  SubjectKeyIdentifier,
  id_ce_authorityKeyIdentifier,
  id_ce_basicConstraints,
  id_ce_extKeyUsage,
  id_ce_keyUsage,
  id_ce_subjectAltName,
  id_ce_subjectKeyIdentifier,
  type Extension,
} from "@peculiar/asn1-x509";
import type * as x509 from "@peculiar/x509";
import type { CertificateLintInput } from "./certificate-expectations.ts";
import { checkCertificateExtensions } from "./certificate-extensions.ts";
import { checkCertificateNames } from "./certificate-names.ts";
import { signedEnvelope, SIGNATURE_ALGORITHMS } from "./der-envelope.ts";
import { lintEnabled, refuse } from "./gate.ts";
import type { Violation } from "./lint-failure.ts";
import { checkTime } from "./time-encoding.ts";
import { throwawaySignature } from "./throwaway-keys.ts";

/**
 * The gate for certificates: the TBSCertificate is signed with a throwaway
 * key of the CA key's algorithm, the certificate decoded by OpenSSL
 * (node:crypto's X509Certificate) and by @peculiar/asn1-x509, and checked.
 * Throws LintFailure (nothing may be signed) on the first broken rule;
 * returns when the CA key may sign these exact bytes.
 */
export async function lintCertificate(input: CertificateLintInput): Promise<void> {
  if (!lintEnabled()) return;
  const violations = await certificateViolations(input);
  if (violations.length) refuse("certificate", violations, aboutOf(input));
}

export async function certificateViolations(input: CertificateLintInput): Promise<Violation[]> {
  const out: Violation[] = [];
  const der = signedEnvelope(input.tbs, SIGNATURE_ALGORITHMS[input.algorithm], await throwawaySignature(input.algorithm, input.tbs));
  let openssl: crypto.X509Certificate;
  let cert: Certificate;
  try {
    openssl = new crypto.X509Certificate(der);
  } catch (err) {
    return [{ rule: "der-decode", detail: `OpenSSL cannot parse the certificate: ${(err as Error).message}` }];
  }
  try {
    cert = AsnConvert.parse(der, Certificate);
  } catch (err) {
    return [{ rule: "der-decode", detail: `the certificate does not decode as RFC 5280 ASN.1: ${(err as Error).message}` }];
  }
  const tbs = cert.tbsCertificate;
  // Re-encoding the whole TBSCertificate costs about as much as decoding it: done for CA certificates (rare), not on the issuance hot path.
  if (input.role !== "leaf" && !Buffer.from(AsnConvert.serialize(tbs)).equals(input.tbs)) {
    out.push({ rule: "der-canonical", detail: "the TBSCertificate is not in the one DER form its decoding re-encodes to" });
  }
  if (tbs.version !== 2) out.push({ rule: "version", detail: `version ${tbs.version + 1}, not 3` });
  if (!Buffer.from(AsnConvert.serialize(tbs.signature)).equals(SIGNATURE_ALGORITHMS[input.algorithm])) {
    out.push({ rule: "signature-algorithm", detail: `the signature algorithm ${tbs.signature.algorithm} is not the one of a ${input.algorithm} key` });
  }
  checkSerial(new Uint8Array(tbs.serialNumber), out);
  checkValidity(input, tbs.validity, out);
  checkPublicKey(openssl, out);
  if (tbs.subject.length === 0 && input.role !== "leaf") out.push({ rule: "subject-empty", detail: `a ${input.role} certificate needs a subject (RFC 5280 §4.1.2.6)` });
  const extensions = checkExtensionList(tbs.extensions ?? [], out);
  const parsed = parseExtensions(extensions, out);
  if (out.some((v) => v.rule === "extension-decode")) return out;
  checkCertificateExtensions(input, openssl, parsed, out);
  checkCertificateNames(input, tbs.subject, parsed.san, extensions.get(id_ce_subjectAltName)?.critical ?? false, out);
  if (input.issuer) {
    const issuer = nodeCertificate(input.issuer);
    if (!openssl.checkIssued(issuer)) out.push({ rule: "issuer-name", detail: `OpenSSL does not find it issued by ${input.issuer.subject} (issuer name, key identifier or the issuer's key usage)` });
  } else if (openssl.subject !== openssl.issuer) {
    out.push({ rule: "issuer-name", detail: "a self-signed certificate whose issuer is not its subject" });
  }
  return out;
}

export interface ParsedExtensions {
  basicConstraints?: BasicConstraints;
  keyUsage?: KeyUsage;
  extendedKeyUsage?: string[];
  ski?: Buffer;
  aki?: AuthorityKeyIdentifier;
  san?: SubjectAlternativeName;
  list: Map<string, Extension>;
}

/** RFC 5280 §4.2: each extension at most once; a critical one only when it is one hsm-ca and relying parties process. */
const KNOWN_CRITICAL = new Set([
  "2.5.29.19", // basicConstraints
  "2.5.29.15", // keyUsage
  "2.5.29.17", // subjectAltName
  "2.5.29.30", // nameConstraints
  "2.5.29.37", // extKeyUsage
  "2.5.29.32", // certificatePolicies
  "2.5.29.36", // policyConstraints
  "2.5.29.54", // inhibitAnyPolicy
]);

function checkExtensionList(list: Extension[], out: Violation[]): Map<string, Extension> {
  const byId = new Map<string, Extension>();
  for (const e of list) {
    if (byId.has(e.extnID)) out.push({ rule: "extension-duplicate", detail: `extension ${e.extnID} appears more than once` });
    byId.set(e.extnID, e);
    if (e.critical && !KNOWN_CRITICAL.has(e.extnID)) out.push({ rule: "extension-unknown-critical", detail: `extension ${e.extnID} is critical and not one relying parties are known to process` });
  }
  return byId;
}

function parseExtensions(list: Map<string, Extension>, out: Violation[]): ParsedExtensions {
  const parsed: ParsedExtensions = { list };
  const parse = <T>(id: string, type: new () => T): T | undefined => {
    const e = list.get(id);
    if (!e) return undefined;
    try {
      return AsnConvert.parse(e.extnValue.buffer, type);
    } catch (err) {
      out.push({ rule: "extension-decode", detail: `extension ${id} does not decode: ${(err as Error).message}` });
      return undefined;
    }
  };
  parsed.basicConstraints = parse(id_ce_basicConstraints, BasicConstraints);
  parsed.keyUsage = parse(id_ce_keyUsage, KeyUsage);
  const eku = parse(id_ce_extKeyUsage, ExtendedKeyUsage);
  if (eku) parsed.extendedKeyUsage = [...eku];
  const ski = parse(id_ce_subjectKeyIdentifier, SubjectKeyIdentifier);
  if (ski) parsed.ski = Buffer.from(ski.buffer);
  parsed.aki = parse(id_ce_authorityKeyIdentifier, AuthorityKeyIdentifier);
  parsed.san = parse(id_ce_subjectAltName, SubjectAlternativeName);
  return parsed;
}

/** RFC 5280 §4.1.2.2: a positive INTEGER of at most 20 octets. */
function checkSerial(bytes: Uint8Array, out: Violation[]): void {
  if (bytes.length === 0) return void out.push({ rule: "serial-positive", detail: "an empty serial number" });
  if (bytes[0]! & 0x80) out.push({ rule: "serial-positive", detail: "a negative serial number" });
  else if (bytes.every((b) => b === 0)) out.push({ rule: "serial-positive", detail: "serial number 0" });
  if (bytes.length > 20) out.push({ rule: "serial-length", detail: `a serial number of ${bytes.length} octets (at most 20)` });
  if (bytes.length > 1 && bytes[0] === 0 && !(bytes[1]! & 0x80)) out.push({ rule: "der-canonical", detail: "a serial number with a leading zero octet" });
}

function checkValidity(input: CertificateLintInput, validity: Certificate["tbsCertificate"]["validity"], out: Violation[]): void {
  const notBefore = checkTime("notBefore", validity.notBefore, out);
  const notAfter = checkTime("notAfter", validity.notAfter, out);
  if (!notBefore || !notAfter) return;
  if (notAfter.getTime() <= notBefore.getTime()) out.push({ rule: "validity-order", detail: `notAfter ${notAfter.toISOString()} is not after notBefore ${notBefore.toISOString()}` });
  const issuer = input.issuer;
  if (issuer && (notBefore < issuer.notBefore || notAfter > issuer.notAfter)) {
    out.push({
      rule: "validity-within-issuer",
      detail: `validity ${notBefore.toISOString()} to ${notAfter.toISOString()} is not inside the issuer's (${issuer.notBefore.toISOString()} to ${issuer.notAfter.toISOString()})`,
    });
  }
  const t = input.template;
  if (t && (notBefore.getTime() !== wholeSeconds(t.notBefore) || notAfter.getTime() !== wholeSeconds(t.notAfter))) {
    out.push({ rule: "template-validity", detail: `validity ${notBefore.toISOString()} to ${notAfter.toISOString()} is not the template's (${t.notBefore.toISOString()} to ${t.notAfter.toISOString()})` });
  }
}

function checkPublicKey(openssl: crypto.X509Certificate, out: Violation[]): void {
  try {
    openssl.publicKey.asymmetricKeyType;
  } catch (err) {
    out.push({ rule: "public-key", detail: `OpenSSL cannot read the subject public key: ${(err as Error).message}` });
  }
}

const nodeCertificates = new WeakMap<x509.X509Certificate, crypto.X509Certificate>();

/** The issuer as OpenSSL reads it, parsed once per issuer certificate object. */
export function nodeCertificate(cert: x509.X509Certificate): crypto.X509Certificate {
  let c = nodeCertificates.get(cert);
  if (!c) nodeCertificates.set(cert, (c = new crypto.X509Certificate(Buffer.from(cert.rawData))));
  return c;
}

function wholeSeconds(d: Date): number {
  return Math.floor(d.getTime() / 1000) * 1000;
}

function aboutOf(input: CertificateLintInput): Record<string, string | undefined> {
  return {
    role: input.role,
    subject: input.template?.subject?.map(([k, v]) => `${k}=${v}`).join(", "),
    serial: input.serial,
    issuer: input.issuer?.subject,
    profile: input.profile?.name,
  };
}
