import net from "node:net";
import type * as x509 from "@peculiar/x509";
import { describeKey, type ParsedCsr, type RequestedName } from "../ca/csr.ts";
import { Rejection } from "../errors.ts";
import { formatDuration, parseDuration } from "./duration.ts";
import { dnsNameProblem, ipInRanges, ipRangeList, isDnsName, matchesSuffix, spiffeIdProblem } from "./names.ts";
import { EXTENDED_KEY_USAGES, type Profile } from "./profile-schema.ts";

/** What the certificate will say: everything a profile decides for one CSR. */
export interface Decision {
  /** Subject as (attribute, value) pairs in DN order; empty for no subject. */
  subject: Array<[string, string]>;
  sans: x509.JsonGeneralName[];
  sanCritical: boolean;
  keyUsage: Profile["keyUsage"]["all"];
  extendedKeyUsage: string[];
  notBefore: Date;
  notAfter: Date;
}

export interface DecideInput {
  profile: Profile;
  csr: ParsedCsr;
  /** "24h" and the like; the profile's default when absent. */
  validity?: string;
  issuerNotAfter: Date;
  now?: Date;
}

/** Certificates start a minute early so that relying parties with slow clocks accept them at once. */
const BACKDATE_MS = 60_000;
const SUBJECT_ORDER = ["C", "ST", "L", "O", "OU"] as const;

export function decide({ profile, csr, validity, issuerNotAfter, now = new Date() }: DecideInput): Decision {
  checkKey(profile, csr);
  const sans = checkSans(profile, csr);
  const subject = formSubject(profile, csr, sans);
  const { notBefore, notAfter } = lifetime(profile, validity, issuerNotAfter, now);
  const keyUsage = [...profile.keyUsage.all];
  if (csr.key.type === "rsa") for (const u of profile.keyUsage.rsa) if (!keyUsage.includes(u)) keyUsage.push(u);
  return {
    subject,
    sans,
    sanCritical: subject.length === 0,
    keyUsage,
    extendedKeyUsage: profile.extendedKeyUsage.map((e) => EXTENDED_KEY_USAGES[e]),
    notBefore,
    notAfter,
  };
}

function checkKey(profile: Profile, { key }: ParsedCsr): void {
  const k = profile.subjectKeys;
  const ok =
    (key.type === "ecdsa" && k.ecdsaCurves.includes(key.curve)) ||
    (key.type === "rsa" && (k.rsaBits as number[]).includes(key.bits)) ||
    (key.type === "ed25519" && k.ed25519);
  if (ok) return;
  const allowed = [
    ...k.ecdsaCurves.map((c) => `ECDSA ${c}`),
    ...k.rsaBits.map((b) => `RSA ${b}`),
    ...(k.ed25519 ? ["Ed25519"] : []),
  ];
  throw new Rejection("bad-public-key", `profile ${profile.name} does not accept ${describeKey(key)} keys; it accepts ${allowed.join(", ")}`);
}

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
    const key = `${san.type}:${san.value}`;
    if (!seen.has(key)) out.push(san as x509.JsonGeneralName); // sanProblem lets only DNS, IP, URI and email through
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
  switch (san.type) {
    case "dns": {
      if (!rules.dns) return refuse("DNS names");
      const problem = dnsNameProblem(san.value, rules.dns.wildcards);
      if (problem) return problem;
      if (!matchesSuffix(san.value, rules.dns.suffixes)) {
        return `DNS name "${san.value}" is outside the names profile ${profile.name} serves (${rules.dns.suffixes.join(", ")})`;
      }
      return undefined;
    }
    case "ip":
      if (!rules.ip || !ipRanges) return refuse("IP addresses");
      if (!ipInRanges(san.value, ipRanges)) {
        return `IP address ${san.value} is outside the ranges profile ${profile.name} serves (${rules.ip.ranges.join(", ")})`;
      }
      return undefined;
    case "url":
      if (!rules.uri) return refuse("URIs");
      return spiffeIdProblem(san.value, rules.uri.spiffeTrustDomains);
    case "email": {
      if (!rules.email) return refuse("email addresses");
      const domain = san.value.split("@")[1]?.toLowerCase() ?? "";
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

function lifetime(profile: Profile, requested: string | undefined, issuerNotAfter: Date, now: Date) {
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
  return { notBefore: new Date(now.getTime() - BACKDATE_MS), notAfter };
}
