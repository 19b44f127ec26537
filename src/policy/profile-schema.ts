import { z } from "zod";
import { parseDuration } from "./duration.ts";

const duration = z.string().refine((s) => parseDuration(s) !== undefined, {
  message: 'expected a duration like "1h", "30d" (units s, m, h, d)',
});

/** Suffixes, trust domains and email domains: no wildcard, which could never match. */
const dnsName = z.string().regex(/^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/, "expected a lower-case DNS name");
const cidr = z.string().regex(/^[0-9a-fA-F:.]+\/[0-9]{1,3}$/, 'expected an address range like "10.0.0.0/8" or "fd00::/8"');

export const KEY_USAGES = [
  "digitalSignature",
  "nonRepudiation",
  "keyEncipherment",
  "dataEncipherment",
  "keyAgreement",
] as const;

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
    keyUsage: z
      .object({
        all: z.array(z.enum(KEY_USAGES)).min(1),
        /** Added when the subject key is RSA (e.g. keyEncipherment for TLS with RSA key transport). */
        rsa: z.array(z.enum(KEY_USAGES)).default([]),
      })
      .strict(),
    extendedKeyUsage: z.array(z.enum(Object.keys(EXTENDED_KEY_USAGES) as [keyof typeof EXTENDED_KEY_USAGES])).min(1),
    /**
     * M-of-N: a request waits until this many distinct admins (never the
     * requester) approve it; 0 issues at once.
     */
    approvals: z
      .object({ required: z.number().int().min(0).max(16) })
      .strict()
      .default({ required: 0 }),
  })
  .strict()
  .refine((p) => parseDuration(p.lifetime.default)! <= parseDuration(p.lifetime.max)!, {
    message: "lifetime.default is longer than lifetime.max",
    path: ["lifetime", "default"],
  });

export type Profile = z.infer<typeof profileSchema>;
