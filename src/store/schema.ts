import { sql } from "drizzle-orm";
import { bigserial, boolean, index, integer, jsonb, pgTable, serial, smallint, text, timestamp, uniqueIndex } from "drizzle-orm/pg-core";

/** Root and intermediate CAs. Keys stay on the HSM; rows name them by label and CKA_ID. */
export const cas = pgTable("cas", {
  id: serial("id").primaryKey(),
  role: text("role", { enum: ["root", "intermediate"] }).notNull(),
  status: text("status", { enum: ["active", "retired"] }).notNull().default("active"),
  subject: text("subject").notNull(),
  keyLabel: text("key_label").notNull().unique(),
  keyId: text("key_id").notNull(),
  keyAlgorithm: text("key_algorithm").notNull(),
  certificatePem: text("certificate_pem").notNull(),
  serial: text("serial").notNull(),
  fingerprintSha256: text("fingerprint_sha256").notNull(),
  spkiSha256: text("spki_sha256").notNull(),
  parentId: integer("parent_id"),
  notBefore: timestamp("not_before", { withTimezone: true }).notNull(),
  notAfter: timestamp("not_after", { withTimezone: true }).notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

/** Every certificate that ever left the CA. The serial is unique by constraint. */
export const certificates = pgTable(
  "certificates",
  {
    id: bigserial("id", { mode: "number" }).primaryKey(),
    serial: text("serial").notNull().unique(),
    issuerId: integer("issuer_id").notNull().references(() => cas.id),
    profile: text("profile").notNull(),
    subject: text("subject").notNull(),
    sans: jsonb("sans").$type<string[]>().notNull(),
    status: text("status", { enum: ["valid", "revoked"] }).notNull().default("valid"),
    notBefore: timestamp("not_before", { withTimezone: true }).notNull(),
    notAfter: timestamp("not_after", { withTimezone: true }).notNull(),
    certificatePem: text("certificate_pem").notNull(),
    fingerprintSha256: text("fingerprint_sha256").notNull(),
    spkiSha256: text("spki_sha256").notNull(),
    requestedBy: text("requested_by"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
    revokedAt: timestamp("revoked_at", { withTimezone: true }),
    /** RFC 5280 CRLReason code. */
    revocationReason: smallint("revocation_reason"),
  },
  (t) => [index("certificates_profile_status_idx").on(t.profile, t.status, t.id), index("certificates_spki_idx").on(t.spkiSha256)],
);

/** API bearer tokens: only a SHA-256 of the secret is kept. */
export const apiTokens = pgTable("api_tokens", {
  id: text("id").primaryKey(),
  secretSha256: text("secret_sha256").notNull().unique(),
  role: text("role", { enum: ["admin", "issuer", "auditor"] }).notNull(),
  profiles: jsonb("profiles").$type<string[]>().notNull().default(sql`'[]'::jsonb`),
  description: text("description"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  revokedAt: timestamp("revoked_at", { withTimezone: true }),
});

/** Key ceremonies (init, later rotation and root ceremonies) and what they printed. */
export const ceremonies = pgTable("ceremonies", {
  id: serial("id").primaryKey(),
  kind: text("kind").notNull(),
  transcript: jsonb("transcript").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

/** ACME nonces: shared by every replica through the database, each used once. */
export const acmeNonces = pgTable("acme_nonces", {
  value: text("value").primaryKey(),
  expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
});

/** ACME accounts, one per key per directory. */
export const acmeAccounts = pgTable(
  "acme_accounts",
  {
    id: text("id").primaryKey(),
    directory: text("directory").notNull(),
    keyThumbprint: text("key_thumbprint").notNull(),
    jwk: jsonb("jwk").$type<Record<string, string>>().notNull(),
    contact: jsonb("contact").$type<string[]>().notNull().default(sql`'[]'::jsonb`),
    status: text("status", { enum: ["valid", "deactivated", "revoked"] }).notNull().default("valid"),
    eabKid: text("eab_kid"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex("acme_accounts_directory_key_idx").on(t.directory, t.keyThumbprint)],
);

/** External Account Binding keys made by `hsm-ca acme eab create`; each binds one account. */
export const acmeEabKeys = pgTable("acme_eab_keys", {
  kid: text("kid").primaryKey(),
  hmacKey: text("hmac_key").notNull(),
  directory: text("directory").notNull(),
  description: text("description"),
  accountId: text("account_id"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  boundAt: timestamp("bound_at", { withTimezone: true }),
});

export type AcmeIdentifierJson = { type: "dns" | "ip"; value: string };
export type ProblemJson = { type: string; detail: string; status: number; subproblems?: unknown[] };

export const acmeOrders = pgTable(
  "acme_orders",
  {
    id: text("id").primaryKey(),
    accountId: text("account_id").notNull().references(() => acmeAccounts.id),
    directory: text("directory").notNull(),
    status: text("status", { enum: ["pending", "ready", "processing", "valid", "invalid"] }).notNull(),
    identifiers: jsonb("identifiers").$type<AcmeIdentifierJson[]>().notNull(),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    error: jsonb("error").$type<ProblemJson>(),
    certificateSerial: text("certificate_serial"),
    /** ARI (RFC 9773): the certificate this order replaces. */
    replaces: text("replaces"),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("acme_orders_account_created_idx").on(t.accountId, t.createdAt), index("acme_orders_expires_idx").on(t.expiresAt)],
);

export const acmeAuthorizations = pgTable(
  "acme_authorizations",
  {
    id: text("id").primaryKey(),
    orderId: text("order_id").notNull().references(() => acmeOrders.id, { onDelete: "cascade" }),
    accountId: text("account_id").notNull(),
    identifierType: text("identifier_type", { enum: ["dns", "ip"] }).notNull(),
    identifierValue: text("identifier_value").notNull(),
    wildcard: boolean("wildcard").notNull().default(false),
    status: text("status", { enum: ["pending", "valid", "invalid", "deactivated", "expired", "revoked"] }).notNull(),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("acme_authz_order_idx").on(t.orderId), index("acme_authz_identifier_idx").on(t.identifierValue, t.createdAt)],
);

export const acmeChallenges = pgTable(
  "acme_challenges",
  {
    id: text("id").primaryKey(),
    authorizationId: text("authorization_id").notNull().references(() => acmeAuthorizations.id, { onDelete: "cascade" }),
    type: text("type", { enum: ["http-01", "dns-01", "tls-alpn-01"] }).notNull(),
    token: text("token").notNull(),
    status: text("status", { enum: ["pending", "processing", "valid", "invalid"] }).notNull(),
    validated: timestamp("validated", { withTimezone: true }),
    error: jsonb("error").$type<ProblemJson>(),
  },
  (t) => [index("acme_challenges_authz_idx").on(t.authorizationId)],
);
