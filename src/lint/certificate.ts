import crypto from "node:crypto";
import type * as x509 from "@peculiar/x509";
import type { CertificateLintInput } from "./certificate-expectations.ts";
import { checkCertificateExtensions } from "./certificate-extensions.ts";
import { checkCertificateNames } from "./certificate-names.ts";
import {
  decodeAuthorityKeyIdentifier,
  decodeBasicConstraints,
  decodeExtendedKeyUsage,
  decodeKeyUsage,
  decodeSubjectAltName,
  decodeSubjectKeyIdentifier,
  decodeTbsCertificate,
  type DecodedCertificate,
  type DecodedExtension,
} from "./decoded-certificate.ts";
import { DerError, DerReader, TAGS, readOid } from "./der.ts";
import { signedEnvelope, SIGNATURE_ALGORITHMS } from "./der-envelope.ts";
import { lintEnabled, refuse } from "./gate.ts";
import type { Violation } from "./lint-failure.ts";
import type { NameText } from "./names.ts";
import { checkTime } from "./time-encoding.ts";
import { throwawaySignature } from "./throwaway-keys.ts";

/**
 * The gate for certificates. The TBSCertificate is read by the gate's own
 * strict DER reader (src/lint/der.ts: shortest lengths, DER booleans, no
 * written-out defaults, nothing left over) and checked. The certificates
 * of ceremonies and rotations (roots, intermediates, OCSP responders) are
 * also signed with a throwaway key of the CA key's algorithm and decoded
 * whole by OpenSSL (node:crypto's X509Certificate), which must find them
 * issued by their issuer. Those signed per request (leaves, sub-CAs) skip
 * that second decoder: it costs about 0.2 ms a certificate, more than the
 * gate's every other check (docs/lint.md). Throws LintFailure (nothing may be
 * signed) on the first broken rule; returns when the CA key may sign these
 * exact bytes.
 */
export async function lintCertificate(input: CertificateLintInput): Promise<void> {
  if (!lintEnabled()) return;
  const violations = await certificateViolations(input);
  if (violations.length) refuse("certificate", violations, aboutOf(input));
}

export async function certificateViolations(input: CertificateLintInput): Promise<Violation[]> {
  const out: Violation[] = [];
  let tbs: DecodedCertificate;
  let parsed: ParsedExtensions;
  try {
    tbs = decodeTbsCertificate(input.tbs);
  } catch (err) {
    if (err instanceof DerError) return [{ rule: err.rule, detail: `the TBSCertificate: ${err.message}` }];
    throw err;
  }
  const extensions = checkExtensionList(tbs.extensions, out);
  try {
    parsed = parseExtensions(extensions);
  } catch (err) {
    if (err instanceof DerError) return [...out, { rule: "extension-decode", detail: err.message }];
    throw err;
  }
  if (tbs.version !== 2) out.push({ rule: "version", detail: `version ${tbs.version + 1}, not 3` });
  if (!Buffer.from(tbs.signatureAlgorithm).equals(SIGNATURE_ALGORITHMS[input.algorithm])) {
    out.push({ rule: "signature-algorithm", detail: `the signature algorithm is not the one of a ${input.algorithm} key` });
  }
  checkSerial(tbs.serial, out);
  checkValidity(input, tbs, out);
  const keyType = publicKeyType(tbs.spki, out);
  if (tbs.subject.length === 0 && input.role !== "leaf") out.push({ rule: "subject-empty", detail: `a ${input.role} certificate needs a subject (RFC 5280 §4.1.2.6)` });
  checkCertificateExtensions(input, keyType, parsed, out);
  checkCertificateNames(input, tbs.subject, parsed.san, extensions.get(SAN)?.critical ?? false, out);
  checkIssuerName(input, tbs, out);
  // Leaves and sub-CAs are signed per request; roots, intermediates and responders at ceremonies and rotations.
  if (input.role !== "leaf" && input.role !== "sub-ca") await checkWithOpenSsl(input, out);
  return out;
}

/** The issuer field is the issuer's subject, octet for octet (a self-signed root: its own). */
function checkIssuerName(input: CertificateLintInput, tbs: DecodedCertificate, out: Violation[]): void {
  if (input.issuer && !Buffer.from(tbs.issuerDer).equals(subjectDerOf(input.issuer))) {
    out.push({ rule: "issuer-name", detail: `the issuer name is not ${input.issuer.subject}, octet for octet` });
  }
}

const subjectDers = new WeakMap<x509.X509Certificate, Buffer>();

/** An issuer's subject Name as its certificate holds it (read once per issuer certificate object). */
function subjectDerOf(cert: x509.X509Certificate): Buffer {
  let der = subjectDers.get(cert);
  if (!der) {
    const certificate = new DerReader(new Uint8Array(cert.rawData), "issuer certificate").next(TAGS.SEQUENCE);
    const tbs = new DerReader(certificate.content, "issuer certificate").next(TAGS.SEQUENCE);
    const r = new DerReader(tbs.content, "issuer TBSCertificate");
    r.optional(0xa0);
    for (let skip = 0; skip < 4; skip++) r.next(); // serial, signature, issuer, validity
    der = Buffer.from(r.next(TAGS.SEQUENCE).der);
    subjectDers.set(cert, der);
  }
  return der;
}

/** CA certificates, whole, through OpenSSL: it must parse them and find them issued by their issuer (or by themselves). */
async function checkWithOpenSsl(input: CertificateLintInput, out: Violation[]): Promise<void> {
  const der = signedEnvelope(input.tbs, SIGNATURE_ALGORITHMS[input.algorithm], await throwawaySignature(input.algorithm, input.tbs));
  let openssl: crypto.X509Certificate;
  try {
    openssl = new crypto.X509Certificate(der);
  } catch (err) {
    out.push({ rule: "der-decode", detail: `OpenSSL cannot parse the certificate: ${(err as Error).message}` });
    return;
  }
  if (input.issuer) {
    if (!openssl.checkIssued(nodeCertificate(input.issuer))) out.push({ rule: "issuer-name", detail: `OpenSSL does not find it issued by ${input.issuer.subject} (issuer name, key identifier or the issuer's key usage)` });
  } else if (openssl.subject !== openssl.issuer) {
    out.push({ rule: "issuer-name", detail: "a self-signed certificate whose issuer is not its subject" });
  }
}

const SAN = "2.5.29.17";

export interface ParsedExtensions {
  basicConstraints?: { cA: boolean; pathLenConstraint?: number };
  keyUsage?: string[];
  extendedKeyUsage?: string[];
  ski?: Buffer;
  aki?: { keyIdentifier?: Buffer };
  san?: NameText[];
  list: Map<string, DecodedExtension>;
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

function checkExtensionList(list: DecodedExtension[], out: Violation[]): Map<string, DecodedExtension> {
  const byId = new Map<string, DecodedExtension>();
  for (const e of list) {
    if (byId.has(e.id)) out.push({ rule: "extension-duplicate", detail: `extension ${e.id} appears more than once` });
    byId.set(e.id, e);
    if (e.critical && !KNOWN_CRITICAL.has(e.id)) out.push({ rule: "extension-unknown-critical", detail: `extension ${e.id} is critical and not one relying parties are known to process` });
  }
  return byId;
}

const DECODERS = {
  basicConstraints: ["2.5.29.19", decodeBasicConstraints],
  keyUsage: ["2.5.29.15", decodeKeyUsage],
  extendedKeyUsage: ["2.5.29.37", decodeExtendedKeyUsage],
  ski: ["2.5.29.14", decodeSubjectKeyIdentifier],
  aki: ["2.5.29.35", decodeAuthorityKeyIdentifier],
  san: [SAN, decodeSubjectAltName],
} as const;

/** The extensions the rules read, decoded; a DerError names the one that does not decode. */
function parseExtensions(list: Map<string, DecodedExtension>): ParsedExtensions {
  const parsed: Record<string, unknown> = { list };
  for (const [field, [id, decode]] of Object.entries(DECODERS)) {
    const e = list.get(id);
    if (!e) continue;
    try {
      parsed[field] = decode(e.value);
    } catch (err) {
      if (err instanceof DerError) throw new DerError(err.rule, `extension ${id} does not decode: ${err.message}`);
      throw err;
    }
  }
  return parsed as unknown as ParsedExtensions;
}

const KEY_TYPES: Record<string, string> = {
  "1.2.840.10045.2.1": "ec",
  "1.2.840.113549.1.1.1": "rsa",
  "1.3.101.112": "ed25519",
  "1.3.101.113": "ed448",
};

/** Named curves hsm-ca certifies, and the length of their uncompressed points. */
const EC_POINT_BYTES: Record<string, number> = {
  "1.2.840.10045.3.1.7": 65, // P-256
  "1.3.132.0.34": 97, // P-384
  "1.3.132.0.35": 133, // P-521
};

/**
 * The subject key's type from its SubjectPublicKeyInfo, read by the gate's
 * own reader: OpenSSL's key decoder costs about 0.3 ms a call in OpenSSL
 * 3.0 (docs/lint.md), and the key came from a CSR whose signature OpenSSL
 * already verified with it. An EC key must be an uncompressed point of its
 * curve's size.
 */
function publicKeyType(spki: Uint8Array, out: Violation[]): string {
  try {
    const outer = new DerReader(spki, "SubjectPublicKeyInfo");
    const r = new DerReader(outer.next(TAGS.SEQUENCE).content, "SubjectPublicKeyInfo");
    outer.end();
    const algorithm = new DerReader(r.next(TAGS.SEQUENCE).content, "subject key algorithm");
    const oid = readOid(algorithm.next(), "subject key algorithm");
    const parameters = algorithm.done ? undefined : algorithm.next();
    algorithm.end();
    const key = r.next(TAGS.BIT_STRING).content;
    r.end();
    const type = KEY_TYPES[oid] ?? "unknown";
    if (type === "unknown") out.push({ rule: "public-key", detail: `a subject key of algorithm ${oid}, which hsm-ca does not certify` });
    if (type === "ec") {
      const curve = parameters?.tag === TAGS.OID ? readOid(parameters, "named curve") : undefined;
      const size = curve ? EC_POINT_BYTES[curve] : undefined;
      if (!size) out.push({ rule: "public-key", detail: `an EC key on ${curve ?? "explicit parameters"}, not a named curve hsm-ca certifies` });
      else if (key.length !== size + 1 || key[0] !== 0 || key[1] !== 0x04) out.push({ rule: "public-key", detail: "an EC public key that is not an uncompressed point of its curve's size" });
    }
    return type;
  } catch (err) {
    if (!(err instanceof DerError)) throw err;
    out.push({ rule: "public-key", detail: `the subject public key does not decode: ${err.message}` });
    return "unknown";
  }
}

/** RFC 5280 §4.1.2.2: a positive INTEGER of at most 20 octets. */
function checkSerial(bytes: Uint8Array, out: Violation[]): void {
  if (bytes.length === 0) return void out.push({ rule: "serial-positive", detail: "an empty serial number" });
  if (bytes[0]! & 0x80) out.push({ rule: "serial-positive", detail: "a negative serial number" });
  else if (bytes.every((b) => b === 0)) out.push({ rule: "serial-positive", detail: "serial number 0" });
  if (bytes.length > 20) out.push({ rule: "serial-length", detail: `a serial number of ${bytes.length} octets (at most 20)` });
  if (bytes.length > 1 && bytes[0] === 0 && !(bytes[1]! & 0x80)) out.push({ rule: "der-canonical", detail: "a serial number with a leading zero octet" });
}

function checkValidity(input: CertificateLintInput, tbs: DecodedCertificate, out: Violation[]): void {
  const notBefore = checkTime("notBefore", tbs.notBefore, out);
  const notAfter = checkTime("notAfter", tbs.notAfter, out);
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

const nodeCertificates = new WeakMap<x509.X509Certificate, crypto.X509Certificate>();

/** The issuer as OpenSSL reads it, parsed once per issuer certificate object. */
function nodeCertificate(cert: x509.X509Certificate): crypto.X509Certificate {
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
