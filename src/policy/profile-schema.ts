import net from "node:net";
import { z } from "zod";
import { parseDuration } from "./duration.ts";

const duration = z.string().refine((s) => parseDuration(s) !== undefined, {
  message: 'expected a duration like "1h", "30d" (units s, m, h, d)',
});

/** Suffixes, trust domains and email domains: no wildcard, which could never match. */
const dnsName = z.string().regex(/^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/, "expected a lower-case DNS name");
const cidr = z.string().regex(/^[0-9a-fA-F:.]+\/[0-9]{1,3}$/, 'expected an address range like "10.0.0.0/8" or "fd00::/8"');
/** An address range a name constraint can say exactly: a real address of its family, a prefix that fits it. */
const constraintRange = cidr.refine(isAddressRange, 'expected an address range like "10.0.0.0/8" or "fd00::/8" (prefix 0-32 for IPv4, 0-128 for IPv6)');
/** A URI name constraint (RFC 5280 §4.2.1.10): a host ("example.org": that host only) or a domain (".example.org": hosts under it). */
const uriHost = z
  .string()
  .regex(/^\.?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/, 'expected a lower-case host ("example.org") or domain (".example.org")');

export const KEY_USAGES = [
  "digitalSignature",
  "nonRepudiation",
  "keyEncipherment",
  "dataEncipherment",
  "keyAgreement",
] as const;

/** Key usages a CA profile may add to keyCertSign and cRLSign. */
export const CA_EXTRA_KEY_USAGES = ["digitalSignature"] as const;

/** One side of a name constraint: the names of each type it covers. */
const nameSubtrees = z
  .object({
    /** DNS suffixes: the name itself and every name under it ("cluster.local" covers "a.ns.svc.cluster.local"). */
    dns: z.array(dnsName).default([]),
    /** URI hosts: "example.org" covers spiffe://example.org/<any path>; ".example.org" hosts under it. */
    uri: z.array(uriHost).default([]),
    /** IP address ranges (CIDR). */
    ip: z.array(constraintRange).default([]),
  })
  .strict();

export type NameSubtrees = z.infer<typeof nameSubtrees>;

/**
 * What makes a profile issue CA certificates (sub-CAs such as a service
 * mesh's issuer) instead of end-entity ones: basicConstraints CA:TRUE with
 * this path length, keyCertSign and cRLSign (plus keyUsage), and the name
 * constraints every certificate below it is held to.
 */
const caSection = z
  .object({
    /** How many CA levels may follow the certificate (basicConstraints pathLenConstraint); 0: it signs end-entity certificates only. */
    pathLength: z.number().int().min(0).max(4).default(0),
    /** Added to keyCertSign and cRLSign: digitalSignature for a CA that also signs other things (OCSP responses, tokens) with its key. */
    keyUsage: z.array(z.enum(CA_EXTRA_KEY_USAGES)).default([]),
    /** The nameConstraints extension (critical): names outside permitted, or inside excluded, are refused below the CA. */
    nameConstraints: z
      .object({ permitted: nameSubtrees.default({ dns: [], uri: [], ip: [] }), excluded: nameSubtrees.default({ dns: [], uri: [], ip: [] }) })
      .strict()
      .optional(),
  })
  .strict();

export const EXTENDED_KEY_USAGES = {
  serverAuth: "1.3.6.1.5.5.7.3.1",
  clientAuth: "1.3.6.1.5.5.7.3.2",
  codeSigning: "1.3.6.1.5.5.7.3.3",
  emailProtection: "1.3.6.1.5.5.7.3.4",
  timeStamping: "1.3.6.1.5.5.7.3.8",
} as const;

/**
 * A certificate profile, as written in profiles/*.yaml. Everything a
 * request may get is decided from this; nothing is hard-coded per profile.
 */
export const profileSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9-]*$/, "lower-case letters, digits and dashes"),
    description: z.string().default(""),
    subjectKeys: z
      .object({
        ecdsaCurves: z.array(z.enum(["P-256", "P-384"])).default([]),
        rsaBits: z.array(z.union([z.literal(2048), z.literal(3072), z.literal(4096)])).default([]),
        ed25519: z.boolean().default(false),
        /**
         * RSA public exponents from 3 to 65535 (odd). Off: only odd
         * exponents from 65537 below 2^256 (FIPS 186-4), as every current
         * key generator makes; e = 3 is where the known attacks on
         * careless padding live.
         */
        rsaSmallExponents: z.boolean().default(false),
      })
      .strict()
      .refine((k) => k.ecdsaCurves.length + k.rsaBits.length > 0 || k.ed25519, "allow at least one key type"),
    lifetime: z.object({ default: duration, max: duration }).strict(),
    subject: z
      .object({
        /** first-san: CN is the first DNS name or IP; csr: the CSR's CN; none: no CN. */
        commonName: z.enum(["first-san", "csr", "none"]),
        /** The CN is required when commonName is "csr". */
        copyFromCsr: z.array(z.enum(["O", "OU", "C", "L", "ST"])).default([]),
      })
      .strict(),
    sans: z
      .object({
        /** At least one SAN is required. */
        required: z.boolean().default(true),
        /** A CSR with no SAN but a CN that is a DNS name or IP gets it as a SAN. */
        fromCommonName: z.boolean().default(false),
        dns: z
          .object({
            /** A name matches when it equals a suffix or ends with "." + suffix. */
            suffixes: z.array(dnsName).min(1),
            wildcards: z.boolean().default(false),
            /** Names of one label ("test", "localhost", "intranet"): off, as they name a different host on every network. */
            singleLabel: z.boolean().default(false),
          })
          .strict()
          .optional(),
        ip: z
          .object({
            ranges: z.array(cidr).min(1),
            /**
             * IPv4-mapped IPv6 addresses (::ffff:10.0.0.1): off, as they
             * name an IPv4 host while slipping past IPv6-only thinking.
             */
            ipv4Mapped: z.boolean().default(false),
          })
          .strict()
          .optional(),
        uri: z
          .object({
            /** URIs must be spiffe://<one of these>/<path>. */
            spiffeTrustDomains: z.array(dnsName).min(1),
            /** X.509-SVID: exactly one URI SAN. */
            exactlyOne: z.boolean().default(false),
          })
          .strict()
          .optional(),
        email: z.object({ domains: z.array(dnsName).min(1) }).strict().optional(),
      })
      .strict(),
    /** End-entity profiles only (a CA profile's are keyCertSign, cRLSign and ca.keyUsage). */
    keyUsage: z
      .object({
        all: z.array(z.enum(KEY_USAGES)).min(1),
        /** Added when the subject key is RSA (e.g. keyEncipherment for TLS with RSA key transport). */
        rsa: z.array(z.enum(KEY_USAGES)).default([]),
      })
      .strict()
      .optional(),
    /** End-entity profiles only. */
    extendedKeyUsage: z.array(z.enum(Object.keys(EXTENDED_KEY_USAGES) as [keyof typeof EXTENDED_KEY_USAGES])).min(1).optional(),
    /** Present: the profile issues CA certificates (see caSection). */
    ca: caSection.optional(),
    /**
     * M-of-N: a request waits until this many distinct admins (never the
     * requester) approve it; 0 issues at once. Unset: 0, or 2 for a CA
     * profile (a sub-CA can mint certificates of its own).
     */
    approvals: z.object({ required: z.number().int().min(0).max(16) }).strict().optional(),
  })
  .strict()
  .refine((p) => parseDuration(p.lifetime.default)! <= parseDuration(p.lifetime.max)!, {
    message: "lifetime.default is longer than lifetime.max",
    path: ["lifetime", "default"],
  })
  .superRefine((p, ctx) => {
    const problem = (path: Array<string | number>, message: string) => ctx.addIssue({ code: "custom", path, message });
    if (!p.ca) {
      if (!p.keyUsage) problem(["keyUsage"], "required (or a ca section, for a CA profile)");
      else if (!p.extendedKeyUsage) problem(["extendedKeyUsage"], "required (or a ca section, for a CA profile)");
      return;
    }
    if (p.keyUsage) problem(["keyUsage"], "a CA profile's key usages are keyCertSign, cRLSign and ca.keyUsage: remove keyUsage");
    else if (p.extendedKeyUsage) {
      problem(["extendedKeyUsage"], "a CA profile has no extendedKeyUsage (in a CA certificate it would limit every certificate below it): remove it");
    } else if (p.subject.commonName !== "csr") {
      // RFC 5280 §4.1.2.6: a CA's subject is never empty; the CSR names the sub-CA.
      problem(["subject", "commonName"], 'a CA profile takes its CN from the CSR: use "csr"');
    } else if (p.sans.fromCommonName) {
      problem(["sans", "fromCommonName"], "a CA profile does not turn its CN into a SAN: remove fromCommonName");
    } else {
      const nc = p.ca.nameConstraints;
      const permits = nc && nc.permitted.dns.length + nc.permitted.uri.length + nc.permitted.ip.length > 0;
      // Name constraints bind only the name types they mention: permitting DNS names and URIs leaves every IP address open.
      if (nc && permits && nc.permitted.ip.length === 0 && nc.excluded.ip.length === 0) {
        problem(
          ["ca", "nameConstraints", "excluded", "ip"],
          'the permitted names leave every IP address open to this CA: permit its ranges in permitted.ip, or exclude them all with excluded.ip: [0.0.0.0/0, "::/0"]',
        );
      }
    }
  })
  .transform((p) => ({ ...p, approvals: p.approvals ?? { required: p.ca ? 2 : 0 } }));

export type Profile = z.infer<typeof profileSchema>;

/** A profile with a ca section: it issues CA certificates. */
export type CaProfile = Profile & { ca: NonNullable<Profile["ca"]> };

export function isCaProfile(p: Profile): p is CaProfile {
  return p.ca !== undefined;
}

/** "10.0.0.0/8", "fd00::/8": an address of its family and a prefix that fits it. */
function isAddressRange(range: string): boolean {
  const [address, prefix] = range.split("/") as [string, string];
  const family = net.isIP(address);
  return family !== 0 && Number(prefix) <= (family === 4 ? 32 : 128);
}
