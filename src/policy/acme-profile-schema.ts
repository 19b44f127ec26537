import { z } from "zod";
import { parseDuration } from "./duration.ts";

const duration = z.string().refine((s) => parseDuration(s) !== undefined, {
  message: 'expected a duration like "1h", "30d" (units s, m, h, d)',
});
const dnsName = z.string().regex(/^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/, "expected a lower-case DNS name");
const cidr = z.string().regex(/^[0-9a-fA-F:.]+\/[0-9]{1,3}$/, 'expected an address range like "10.0.0.0/8" or "fd00::/8"');
const limit = z.object({ count: z.number().int().positive(), window: duration }).strict();

/** Names that would collide with the ACME resource paths under /acme/. */
const RESERVED = ["directory", "acct", "order", "authz", "chall", "cert", "new-nonce", "new-account", "new-order", "revoke-cert", "key-change", "renewal-info"];

/**
 * An ACME directory, as written in profiles/acme/*.yaml: which certificate
 * profile it issues from and which identifiers it serves. The certificate
 * profile's own rules apply on top.
 */
export const acmeProfileSchema = z
  .object({
    name: z
      .string()
      .regex(/^[a-z0-9][a-z0-9-]*$/, "lower-case letters, digits and dashes")
      .refine((n) => !RESERVED.includes(n), "this name is reserved for an ACME resource path"),
    description: z.string().default(""),
    certificateProfile: z.string().min(1),
    identifiers: z
      .object({
        dns: z.object({ suffixes: z.array(dnsName).min(1), wildcards: z.boolean().default(false) }).strict().optional(),
        ip: z.object({ ranges: z.array(cidr).min(1) }).strict().optional(),
      })
      .strict()
      .refine((i) => i.dns || i.ip, "allow dns or ip identifiers"),
    externalAccountRequired: z.boolean().default(false),
    termsOfService: z.string().url().optional(),
    rateLimits: z
      .object({
        newOrdersPerAccount: limit.default({ count: 300, window: "1h" }),
        ordersPerIdentifier: limit.default({ count: 100, window: "1h" }),
      })
      .strict()
      .default({ newOrdersPerAccount: { count: 300, window: "1h" }, ordersPerIdentifier: { count: 100, window: "1h" } }),
  })
  .strict();

export type AcmeProfile = z.infer<typeof acmeProfileSchema>;
