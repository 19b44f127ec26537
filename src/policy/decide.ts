import net from "node:net";
import type * as x509 from "@peculiar/x509";
import type { RequestedName } from "../csr/general-names.ts";
import type { ParsedCsr } from "../csr/parse-csr.ts";
import { describeKey } from "../csr/subject-key.ts";
import { Rejection } from "../errors.ts";
import { formatDuration, parseDuration } from "./duration.ts";
import { dnsNameProblem, ipInRanges, ipRangeList, ipv4MappedAddress, isDnsName, isSingleLabel, matchesSuffix, spiffeIdProblem } from "./names.ts";
import { caDecision, caKeyUsages, checkIssuerPathLength, type CaDecision, type IssuerPathLengths } from "./ca-profile.ts";
import { EXTENDED_KEY_USAGES, isCaProfile, type Profile } from "./profile-schema.ts";
import { quoted, unsafeCharacterProblem } from "./unsafe-characters.ts";

/** What the certificate will say: everything a profile decides for one CSR. */
export interface Decision {
  /** Subject as (attribute, value) pairs in DN order; empty for no subject. */
  subject: Array<[string, string]>;
  sans: x509.JsonGeneralName[];
  sanCritical: boolean;
  keyUsage: Array<keyof typeof x509.KeyUsageFlags>;
  /** Dotted OIDs; none for a CA certificate. */
  extendedKeyUsage: string[];
  notBefore: Date;
  notAfter: Date;
  /** Present for a CA profile: the certificate is a sub-CA with these constraints. */
  ca?: CaDecision;
}

export interface DecideInput {
  profile: Profile;
  csr: ParsedCsr;
  /** "24h" and the like; the profile's default when absent. */
  validity?: string;
  issuerNotAfter: Date;
  /** The issuer's start: no certificate starts before it (an issuing CA an external root signed a moment ago). */
  issuerNotBefore?: Date;
  /** The path lengths above the new certificate: a CA profile is decided only with them. */
  issuerPathLengths?: IssuerPathLengths;
  now?: Date;
}

/** Certificates start a minute early so that relying parties with slow clocks accept them at once. */
const BACKDATE_MS = 60_000;
const SUBJECT_ORDER = ["C", "ST", "L", "O", "OU"] as const;

export function decide({ profile, csr, validity, issuerNotAfter, issuerNotBefore, issuerPathLengths, now = new Date() }: DecideInput): Decision {
  if (isCaProfile(profile)) {
    // First: no CSR can fix a hierarchy that may not sign CAs, and the operator is told what to change.
    if (!issuerPathLengths) throw new Error(`profile ${profile.name} issues CA certificates: decide() needs the issuer's path lengths`);
    checkIssuerPathLength(profile, issuerPathLengths);
  }
  checkKey(profile, csr);
  checkSubjectText(csr);
  const sans = checkSans(profile, csr);
  const subject = formSubject(profile, csr, sans);
  const { notBefore, notAfter } = lifetime(profile, validity, issuerNotAfter, now, issuerNotBefore);
  if (isCaProfile(profile)) {
    // A CA's subject is never empty (the schema makes CA profiles take the CSR's CN), so its SANs are not critical.
    return { subject, sans, sanCritical: false, keyUsage: caKeyUsages(profile), extendedKeyUsage: [], notBefore, notAfter, ca: caDecision(profile) };
  }
  // The schema requires both for a profile without a ca section.
  const usages = profile.keyUsage!;
  const keyUsage: Decision["keyUsage"] = [...usages.all];
  if (csr.key.type === "rsa") for (const u of usages.rsa) if (!keyUsage.includes(u)) keyUsage.push(u);
  return {
    subject,
    sans,
    sanCritical: subject.length === 0,
    keyUsage,
    extendedKeyUsage: profile.extendedKeyUsage!.map((e) => EXTENDED_KEY_USAGES[e]),
    notBefore,
    notAfter,
  };
}

function checkKey(profile: Profile, { key, rsaPublicExponent }: ParsedCsr): void {
  const k = profile.subjectKeys;
  const ok =
    (key.type === "ecdsa" && k.ecdsaCurves.includes(key.curve)) ||
    (key.type === "rsa" && (k.rsaBits as number[]).includes(key.bits)) ||
    (key.type === "ed25519" && k.ed25519);
  if (ok) {
    if (key.type === "rsa") checkRsaExponent(profile, rsaPublicExponent);
    return;
  }
  const allowed = [
    ...k.ecdsaCurves.map((c) => `ECDSA ${c}`),
    ...k.rsaBits.map((b) => `RSA ${b}`),
    ...(k.ed25519 ? ["Ed25519"] : []),
  ];
  throw new Rejection("bad-public-key", `profile ${profile.name} does not accept ${describeKey(key)} keys; it accepts ${allowed.join(", ")}`);
}

/** FIPS 186-4 §B.3.1: 2^16 < e < 2^256, odd. */
const MIN_RSA_EXPONENT = 65537n;
const RSA_EXPONENT_LIMIT = 2n ** 256n;

/**
 * An even exponent (or one below 3) is no RSA key at all, and one of 2^256
 * or more is beyond every standard: both refused whatever the profile says.
 * Odd exponents from 3 to 65535 only where the profile allows them.
 */
function checkRsaExponent(profile: Profile, e: bigint | undefined): void {
  if (e === undefined) return;
  const shown = e < 2n ** 64n ? e.toString() : `of ${e.toString(2).length} bits`;
  if (e < 3n || e % 2n === 0n) throw new Rejection("bad-public-key", `RSA public exponent ${shown} is not valid: it must be odd and at least 3 (use 65537)`);
  if (e >= RSA_EXPONENT_LIMIT) throw new Rejection("bad-public-key", `RSA public exponent ${shown} is too large: it must be below 2^256 (use 65537)`);
  if (e < MIN_RSA_EXPONENT && !profile.subjectKeys.rsaSmallExponents) {
    throw new Rejection("bad-public-key", `profile ${profile.name} does not accept RSA public exponent ${shown}: it accepts exponents from 65537 (use 65537)`);
  }
}

/**
 * Every attribute of the CSR's subject, copied or not, must be text a
 * person can read as it is: no NUL, control or bidi character (see
 * unsafe-characters.ts). Checked before anything is signed, for every door.
 */
function checkSubjectText(csr: ParsedCsr): void {
  for (const { type, value } of csr.subject.entries()) {
    const problem = unsafeCharacterProblem(value);
    if (problem) throw new Rejection("bad-subject", `the CSR's subject ${type} ${quoted(value)} contains ${problem}`);
  }
}

const SAN_TYPE_NAMES: Record<string, string> = { dns: "DNS name", ip: "IP address", url: "URI", email: "email address (rfc822Name)" };

function checkSans(profile: Profile, csr: ParsedCsr): x509.JsonGeneralName[] {
  const rules = profile.sans;
  let sans: RequestedName[] = csr.sans.map((n) => ({ ...n }));
  const cn = csr.subject.field("CN")[0];
  if (sans.length === 0 && rules.fromCommonName && cn) {
    if (net.isIP(cn)) sans = [{ type: "ip", value: cn }];
    else if (isDnsName(cn.toLowerCase()) || (cn.startsWith("*.") && isDnsName(cn.slice(2).toLowerCase()))) {
      sans = [{ type: "dns", value: cn.toLowerCase() }];
    }
  }
  if (sans.length === 0 && rules.required) {
    throw new Rejection("rejected-identifier", `profile ${profile.name} needs at least one subjectAltName in the CSR`);
  }
  const ipRanges = rules.ip ? ipRangeList(rules.ip.ranges) : undefined;
  const seen = new Set<string>();
  const out: x509.JsonGeneralName[] = [];
  for (const san of sans) {
    const problem = sanProblem(profile, san, ipRanges);
    if (problem) throw new Rejection("rejected-identifier", problem);
    // An IPv4-mapped address the profile allows is written as RFC 5952 §5 says: ::ffff:10.0.0.1, never ::ffff:a00:1.
    const mapped = san.type === "ip" ? ipv4MappedAddress(san.value) : undefined;
    const value = mapped ? `::ffff:${mapped}` : san.value;
    const key = `${san.type}:${value}`;
    if (!seen.has(key)) out.push({ ...san, value } as x509.JsonGeneralName); // sanProblem lets only DNS, IP, URI and email through
    seen.add(key);
  }
  const uris = out.filter((s) => s.type === "url").length;
  if (rules.uri?.exactlyOne && uris !== 1) {
    throw new Rejection("rejected-identifier", `profile ${profile.name} needs exactly one URI SAN (the SPIFFE ID); the CSR has ${uris}`);
  }
  return out;
}

/** Why the profile refuses this SAN, or undefined when it allows it. */
export function sanProblem(
  profile: Profile,
  san: RequestedName,
  ipRanges: net.BlockList | undefined = profile.sans.ip ? ipRangeList(profile.sans.ip.ranges) : undefined,
): string | undefined {
  const rules = profile.sans;
  const refuse = (what: string) => `profile ${profile.name} does not allow ${what}`;
  const unsafe = unsafeCharacterProblem(san.value);
  if (unsafe) return `the CSR's ${SAN_TYPE_NAMES[san.type] ?? san.type} SAN ${quoted(san.value)} contains ${unsafe}`;
  switch (san.type) {
    case "dns": {
      if (!rules.dns) return refuse("DNS names");
      const problem = dnsNameProblem(san.value, rules.dns.wildcards);
      if (problem) return problem;
      if (isSingleLabel(san.value) && !rules.dns.singleLabel) {
        return `DNS name "${san.value}" is a single label: profile ${profile.name} does not allow single-label names, which name a different host on every network; ask for a fully qualified name`;
      }
      if (!matchesSuffix(san.value, rules.dns.suffixes)) {
        return `DNS name "${san.value}" is outside the names profile ${profile.name} serves (${rules.dns.suffixes.join(", ")})`;
      }
      return undefined;
    }
    case "ip": {
      if (!rules.ip || !ipRanges) return refuse("IP addresses");
      const mapped = ipv4MappedAddress(san.value);
      if (mapped && !rules.ip.ipv4Mapped) {
        return `IP address ${san.value} is an IPv4-mapped IPv6 address (of ${mapped}): profile ${profile.name} does not allow those; ask for ${mapped} itself`;
      }
      if (!ipInRanges(san.value, ipRanges)) {
        return `IP address ${san.value} is outside the ranges profile ${profile.name} serves (${rules.ip.ranges.join(", ")})`;
      }
      return undefined;
    }
    case "url":
      if (!rules.uri) return refuse("URIs");
      // A sub-CA of a trust domain names the trust domain itself (spiffe://example.org, as SPIRE's CAs do), never a workload.
      return spiffeIdProblem(san.value, rules.uri.spiffeTrustDomains, { trustDomainOnly: isCaProfile(profile) });
    case "email": {
      if (!rules.email) return refuse("email addresses");
      const domain = san.value.split("@")[1]?.toLowerCase() ?? "";
      // rfc822Name is an IA5String: ASCII only (RFC 5280 §4.2.1.6; internationalised addresses need SmtpUTF8Mailbox, RFC 9598).
      if (/[^\x00-\x7f]/.test(san.value)) return `email address ${quoted(san.value)} is not ASCII; profile ${profile.name} issues only ASCII addresses`;
      if (!/^[^@\s]+@[^@\s]+$/.test(san.value) || !rules.email.domains.includes(domain)) {
        return `email address "${san.value}" is outside the domains profile ${profile.name} serves`;
      }
      return undefined;
    }
    default:
      return refuse(`${san.type} names`);
  }
}

function formSubject(profile: Profile, csr: ParsedCsr, sans: x509.JsonGeneralName[]): Array<[string, string]> {
  const name = csr.subject;
  const subject: Array<[string, string]> = [];
  for (const attr of SUBJECT_ORDER) {
    if (!profile.subject.copyFromCsr.includes(attr)) continue;
    for (const value of name.field(attr)) subject.push([attr, value]);
  }
  if (profile.subject.commonName === "csr") {
    const cn = name.field("CN")[0];
    if (!cn) throw new Rejection("bad-subject", `profile ${profile.name} takes the subject's CN from the CSR, and the CSR has none`);
    if (cn.length > 64) throw new Rejection("bad-subject", "the CSR's CN is longer than 64 characters");
    subject.push(["CN", cn]);
  } else if (profile.subject.commonName === "first-san") {
    const first = sans.find((s) => s.type === "dns" || s.type === "ip");
    if (first && first.value.length <= 64) subject.push(["CN", first.value]);
  }
  return subject;
}

function lifetime(profile: Profile, requested: string | undefined, issuerNotAfter: Date, now: Date, issuerNotBefore?: Date) {
  const max = parseDuration(profile.lifetime.max)!;
  let ms = parseDuration(profile.lifetime.default)!;
  if (requested !== undefined) {
    const asked = parseDuration(requested);
    if (asked === undefined) throw new Rejection("bad-validity", `validity "${requested}" is not a duration like "24h" or "30d"`);
    if (asked > max) {
      throw new Rejection("bad-validity", `validity ${requested} is longer than profile ${profile.name} allows (${formatDuration(max)})`);
    }
    ms = asked;
  }
  if (issuerNotAfter.getTime() <= now.getTime()) throw new Rejection("ca-not-ready", "the issuing CA has expired");
  const notAfter = new Date(Math.min(now.getTime() + ms, issuerNotAfter.getTime()));
  // Nested inside the issuer's validity (RFC 5280 path validation checks each certificate's own; the lint gate refuses otherwise).
  const notBefore = Math.max(now.getTime() - BACKDATE_MS, issuerNotBefore?.getTime() ?? -Infinity);
  return { notBefore: new Date(notBefore), notAfter };
}
