import { AsnConvert } from "@peculiar/asn1-schema";
import {
  AuthorityKeyIdentifier,
  Certificate,
  CertificateList,
  IssuingDistributionPoint,
  SubjectKeyIdentifier,
  id_ce_authorityKeyIdentifier,
  id_ce_cRLNumber,
  id_ce_cRLReasons,
  id_ce_deltaCRLIndicator,
  id_ce_issuingDistributionPoint,
  id_ce_subjectKeyIdentifier,
  type Extension,
} from "@peculiar/asn1-x509";
import type * as x509 from "@peculiar/x509";
import type { CaKeyAlgorithm } from "../hsm/key-algorithms.ts";
import { firstBadEntrySerial, integerContent, signedEnvelope, SIGNATURE_ALGORITHMS, withoutElement } from "./der-envelope.ts";
import { lintEnabled, refuse } from "./gate.ts";
import type { Violation } from "./lint-failure.ts";
import { nameText } from "./names.ts";
import { checkTime } from "./time-encoding.ts";
import { throwawaySignature } from "./throwaway-keys.ts";

export interface CrlLintInput {
  /** The DER tbsCertList about to be signed. */
  tbs: Uint8Array;
  algorithm: CaKeyAlgorithm;
  issuer: x509.X509Certificate;
  crlNumber: bigint;
  /** The number of the last CRL published for this issuer and partition (and kind); the new one must be above it. */
  previousNumber?: bigint;
  /** A delta CRL: the base CRL number it says it is against. */
  deltaOf?: bigint;
  thisUpdate: Date;
  nextUpdate: Date;
  /** The Issuing Distribution Point that was asked for; absent: none may be there. */
  issuingDistributionPoint?: { url: string; onlyContainsUserCerts?: boolean; onlyContainsCACerts?: boolean };
}

/**
 * Entries are decoded into objects up to this size of tbsCertList (about
 * 1,000 entries: asn1js stops at 10,000 nodes, and a million entries as
 * objects would cost many times the build itself). Above it the gate
 * decodes the CRL without its entries, and walks the entries' headers for
 * their serials (positive, at most 20 octets); their dates and reasons are
 * checked as the writer writes them (src/ca/crl.ts).
 */
const FULL_DECODE_LIMIT = 48 << 10;

/** Known critical CRL extensions (RFC 5280 §5.2): the delta indicator and the IDP. */
const KNOWN_CRITICAL = new Set([id_ce_deltaCRLIndicator, id_ce_issuingDistributionPoint]);

/** The gate for CRLs (RFC 5280 §5): throws LintFailure, signing nothing, on the first broken rule. */
export async function lintCrl(input: CrlLintInput): Promise<void> {
  if (!lintEnabled()) return;
  const violations = await crlViolations(input);
  if (violations.length) {
    refuse("crl", violations, { issuer: input.issuer.subject, crl_number: input.crlNumber.toString(), delta_of: input.deltaOf?.toString(), idp: input.issuingDistributionPoint?.url });
  }
}

export async function crlViolations(input: CrlLintInput): Promise<Violation[]> {
  const out: Violation[] = [];
  const full = input.tbs.length <= FULL_DECODE_LIMIT;
  // Large CRLs: the same tbsCertList with the revokedCertificates SEQUENCE taken out (it follows nextUpdate).
  const tbs = full ? input.tbs : withoutElement(input.tbs, 5, 0x30);
  if (!full) {
    const bad = firstBadEntrySerial(input.tbs);
    if (bad) out.push({ rule: "crl-entry-serial", detail: bad });
  }
  const der = signedEnvelope(tbs, SIGNATURE_ALGORITHMS[input.algorithm], await throwawaySignature(input.algorithm, tbs));
  let crl: CertificateList;
  try {
    crl = AsnConvert.parse(der, CertificateList);
  } catch (err) {
    return [{ rule: "der-decode", detail: `the CRL does not decode as RFC 5280 ASN.1: ${(err as Error).message}` }];
  }
  const t = crl.tbsCertList;
  if (t.version !== 1) out.push({ rule: "version", detail: "not a v2 CRL" });
  if (!Buffer.from(AsnConvert.serialize(t.signature)).equals(SIGNATURE_ALGORITHMS[input.algorithm])) out.push({ rule: "signature-algorithm", detail: `the signature algorithm is not the one of a ${input.algorithm} key` });
  const issuerCert = AsnConvert.parse(input.issuer.rawData, Certificate);
  if (!Buffer.from(AsnConvert.serialize(t.issuer)).equals(Buffer.from(AsnConvert.serialize(issuerCert.tbsCertificate.subject)))) {
    out.push({ rule: "issuer-name", detail: `the CRL's issuer is not the subject of ${input.issuer.subject}` });
  }
  const thisUpdate = checkTime("thisUpdate", t.thisUpdate, out);
  const nextUpdate = t.nextUpdate ? checkTime("nextUpdate", t.nextUpdate, out) : undefined;
  if (!t.nextUpdate) out.push({ rule: "crl-times", detail: "no nextUpdate (RFC 5280 §5.1.2.5: conforming CAs include it)" });
  if (thisUpdate && nextUpdate && nextUpdate <= thisUpdate) out.push({ rule: "crl-times", detail: `nextUpdate ${nextUpdate.toISOString()} is not after thisUpdate ${thisUpdate.toISOString()}` });
  if (thisUpdate && thisUpdate.getTime() !== Math.floor(input.thisUpdate.getTime() / 1000) * 1000) out.push({ rule: "crl-times", detail: "thisUpdate is not the one asked for" });

  const exts = new Map<string, Extension>();
  for (const e of t.crlExtensions ?? []) {
    if (exts.has(e.extnID)) out.push({ rule: "extension-duplicate", detail: `CRL extension ${e.extnID} appears more than once` });
    exts.set(e.extnID, e);
    if (e.critical && !KNOWN_CRITICAL.has(e.extnID)) out.push({ rule: "extension-unknown-critical", detail: `CRL extension ${e.extnID} is critical and not one relying parties process` });
  }

  // cRLNumber (§5.2.3): present, not critical, at most 20 octets, the one asked for, above the last one published.
  const numberExt = exts.get(id_ce_cRLNumber);
  if (!numberExt) out.push({ rule: "crl-number", detail: "no cRLNumber" });
  else {
    const n = integerContent(numberExt.extnValue.buffer);
    if (numberExt.critical) out.push({ rule: "crl-number", detail: "cRLNumber is critical" });
    if (!n || n.negative || n.octets > 20) out.push({ rule: "crl-number", detail: "cRLNumber is not a non-negative INTEGER of at most 20 octets" });
    else {
      if (n.value !== input.crlNumber) out.push({ rule: "crl-number", detail: `cRLNumber ${n.value} is not the ${input.crlNumber} asked for` });
      if (input.previousNumber !== undefined && n.value <= input.previousNumber) {
        out.push({ rule: "crl-number-increasing", detail: `cRLNumber ${n.value} is not above the last published ${input.previousNumber}` });
      }
    }
  }
  const delta = exts.get(id_ce_deltaCRLIndicator);
  if (input.deltaOf === undefined && delta) out.push({ rule: "delta-crl", detail: "a full CRL with a delta CRL indicator" });
  if (input.deltaOf !== undefined) {
    const base = delta && integerContent(delta.extnValue.buffer);
    if (!delta || !delta.critical || !base || base.value !== input.deltaOf) out.push({ rule: "delta-crl", detail: `a delta CRL needs a critical delta CRL indicator of base ${input.deltaOf}` });
    else if (base.value >= input.crlNumber) out.push({ rule: "delta-crl", detail: `the base CRL number ${base.value} is not below the delta's ${input.crlNumber}` });
  }

  // AKI = the issuer's SKI (§5.2.1).
  const akiExt = exts.get(id_ce_authorityKeyIdentifier);
  const ski = skiOf(issuerCert);
  const aki = akiExt && AsnConvert.parse(akiExt.extnValue.buffer, AuthorityKeyIdentifier).keyIdentifier;
  if (!aki || !ski || !Buffer.from(aki.buffer).equals(ski)) out.push({ rule: "authority-key-identifier", detail: "the CRL's authorityKeyIdentifier is missing or not the issuer's subjectKeyIdentifier" });

  checkIdp(input, exts.get(id_ce_issuingDistributionPoint), out);

  // Entries (decoded only up to FULL_DECODE_LIMIT).
  const seen = new Set<string>();
  let index = 0;
  for (const entry of full ? (t.revokedCertificates ?? []) : []) {
    const serial = new Uint8Array(entry.userCertificate);
    const hex = Buffer.from(serial).toString("hex");
    if (serial.length === 0 || serial[0]! & 0x80 || serial.length > 20) out.push({ rule: "crl-entry-serial", detail: `entry ${index}: serial ${hex} is not positive or longer than 20 octets` });
    if (seen.has(hex)) out.push({ rule: "crl-entry-duplicate", detail: `serial ${hex} is listed twice` });
    seen.add(hex);
    checkTime(`entry ${index}'s revocationDate`, entry.revocationDate, out);
    for (const e of entry.crlEntryExtensions ?? []) {
      if (e.critical) out.push({ rule: "extension-unknown-critical", detail: `entry ${index}: a critical entry extension ${e.extnID}` });
      if (e.extnID === id_ce_cRLReasons && input.deltaOf === undefined && e.extnValue.buffer.byteLength === 3 && new Uint8Array(e.extnValue.buffer)[2] === 8) {
        out.push({ rule: "crl-entry-reason", detail: `entry ${index}: removeFromCRL in a full CRL` });
      }
    }
    if (out.length > 20) break;
    index++;
  }
  return out;
}

function checkIdp(input: CrlLintInput, ext: Extension | undefined, out: Violation[]): void {
  const asked = input.issuingDistributionPoint;
  if (!asked) {
    if (ext) out.push({ rule: "crl-idp", detail: "an Issuing Distribution Point nobody asked for" });
    return;
  }
  if (!ext) return void out.push({ rule: "crl-idp", detail: `no Issuing Distribution Point (asked: ${asked.url})` });
  if (!ext.critical) out.push({ rule: "crl-idp", detail: "the Issuing Distribution Point is not critical (RFC 5280 §5.2.5)" });
  const idp = AsnConvert.parse(ext.extnValue.buffer, IssuingDistributionPoint);
  const names = (idp.distributionPoint?.fullName ?? []).map(nameText);
  if (names.length !== 1 || names[0]!.type !== "url" || names[0]!.value !== asked.url) {
    out.push({ rule: "crl-idp", detail: `the Issuing Distribution Point names ${names.map((n) => n.value).join(", ") || "nothing"}, not ${asked.url}` });
  }
  if (idp.onlyContainsUserCerts !== !!asked.onlyContainsUserCerts || idp.onlyContainsCACerts !== !!asked.onlyContainsCACerts) {
    out.push({ rule: "crl-idp", detail: "the Issuing Distribution Point's onlyContains flags are not the ones asked for" });
  }
  if (idp.onlyContainsUserCerts && idp.onlyContainsCACerts) out.push({ rule: "crl-idp", detail: "onlyContainsUserCerts and onlyContainsCACerts both set" });
}

const skis = new WeakMap<Certificate, Buffer | undefined>();
function skiOf(cert: Certificate): Buffer | undefined {
  if (!skis.has(cert)) {
    const e = cert.tbsCertificate.extensions?.find((x) => x.extnID === id_ce_subjectKeyIdentifier);
    skis.set(cert, e && Buffer.from(AsnConvert.parse(e.extnValue.buffer, SubjectKeyIdentifier).buffer));
  }
  return skis.get(cert);
}
