import { sql } from "drizzle-orm";
import { bigint, bigserial, boolean, customType, index, integer, jsonb, pgTable, primaryKey, serial, smallint, text, timestamp, uniqueIndex } from "drizzle-orm/pg-core";

/** bytea as a Buffer from both drivers (postgres.js gives Buffers, PGlite Uint8Arrays). */
const bytea = customType<{ data: Buffer; driverData: Uint8Array }>({
  dataType: () => "bytea",
  fromDriver: (v) => (Buffer.isBuffer(v) ? v : Buffer.from(v.buffer, v.byteOffset, v.byteLength)),
  toDriver: (v) => v,
});

/**
 * Root and intermediate CAs. Keys stay on the HSM; rows name them by label and CKA_ID.
 * An external root (an enterprise root hsm-ca is subordinate to) has no key here:
 * its key_origin is "external" and its key_label "external:<SPKI SHA-256>", which
 * names no object on any token.
 */
export const cas = pgTable("cas", {
  id: serial("id").primaryKey(),
  role: text("role", { enum: ["root", "intermediate"] }).notNull(),
  /** incoming: a new root during a rollover, trusted beside the active one until it takes over. */
  status: text("status", { enum: ["active", "incoming", "retired", "revoked"] }).notNull().default("active"),
  subject: text("subject").notNull(),
  keyLabel: text("key_label").notNull().unique(),
  /** generated: made by hsm-ca on the token; adopted: found on the token (a vendor ceremony); external: not ours. */
  keyOrigin: text("key_origin", { enum: ["generated", "adopted", "external"] }).notNull().default("generated"),
  keyId: text("key_id").notNull(),
  keyAlgorithm: text("key_algorithm").notNull(),
  certificatePem: text("certificate_pem").notNull(),
  serial: text("serial").notNull(),
  fingerprintSha256: text("fingerprint_sha256").notNull(),
  spkiSha256: text("spki_sha256").notNull(),
  parentId: integer("parent_id"),
  /** Set when the CA itself is revoked; its parent's CRL lists it. */
  revokedAt: timestamp("revoked_at", { withTimezone: true }),
  revocationReason: smallint("revocation_reason"),
  /** When its key was destroyed on the HSM: after its last certificate expired. */
  keyDestroyedAt: timestamp("key_destroyed_at", { withTimezone: true }),
  notBefore: timestamp("not_before", { withTimezone: true }).notNull(),
  notAfter: timestamp("not_after", { withTimezone: true }).notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

/**
 * Further certificates for a CA's key, signed by another CA: a new root
 * cross-signed by the old one, an intermediate re-signed under the new root.
 * They give relying parties a second path during a root rollover.
 */
export const caCrossCertificates = pgTable("ca_cross_certificates", {
  id: serial("id").primaryKey(),
  /** The CA whose key and subject the certificate carries. */
  caId: integer("ca_id").notNull().references(() => cas.id),
  /** The CA that signed it. */
  issuerCaId: integer("issuer_ca_id").notNull().references(() => cas.id),
  certificatePem: text("certificate_pem").notNull(),
  serial: text("serial").notNull(),
  fingerprintSha256: text("fingerprint_sha256").notNull(),
  notBefore: timestamp("not_before", { withTimezone: true }).notNull(),
  notAfter: timestamp("not_after", { withTimezone: true }).notNull(),
  revokedAt: timestamp("revoked_at", { withTimezone: true }),
  revocationReason: smallint("revocation_reason"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

/**
 * An intermediate key made in the HSM whose certificate an external root
 * must still sign: the CSR went out, the certificate has not come back.
 * `ceremony import-intermediate` completes it (completed_ca_id).
 */
export const pendingCas = pgTable("pending_cas", {
  id: serial("id").primaryKey(),
  subject: text("subject").notNull(),
  keyLabel: text("key_label").notNull().unique(),
  keyId: text("key_id").notNull(),
  keyAlgorithm: text("key_algorithm").notNull(),
  keyOrigin: text("key_origin", { enum: ["generated", "adopted"] }).notNull().default("generated"),
  csrPem: text("csr_pem").notNull(),
  /** Why it was made: "init" or the rotation that fired. */
  reason: text("reason").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  completedCaId: integer("completed_ca_id").references(() => cas.id),
  completedAt: timestamp("completed_at", { withTimezone: true }),
});

/** Scheduled rotation ticks already handled: replicas firing the same tick rotate once. */
export const rotationTicks = pgTable("rotation_ticks", {
  tick: timestamp("tick", { withTimezone: true }).primaryKey(),
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
    /** When the key is known or suspected to have been compromised, if the revoker said. */
    invalidityDate: timestamp("invalidity_date", { withTimezone: true }),
    /** Who revoked it: an API token id, acme:<account>, or cli. */
    revokedBy: text("revoked_by"),
    /** The CRL partition named in its CRL Distribution Point; null when CRLs are not partitioned. */
    crlPartition: integer("crl_partition"),
    /**
     * Its stored OCSP response is missing or says the wrong status: true
     * from issuance (the default) and again at revocation, false once the
     * leader has stored a response (src/revocation/ocsp-upkeep.ts). The
     * partial index below holds only these rows, so finding them costs
     * nothing however many certificates are stored.
     */
    ocspPending: boolean("ocsp_pending").notNull().default(true),
  },
  (t) => [
    index("certificates_profile_status_idx").on(t.profile, t.status, t.id),
    index("certificates_spki_idx").on(t.spkiSha256),
    index("certificates_revoked_idx").on(t.issuerId, t.revokedAt),
    // Every replica asks every few seconds what was revoked lately, of any issuer (src/revocation/revocation-watcher.ts):
    // only revoked rows, so that question reads a few index entries, not the whole table (measured: 5.5 ms per poll at
    // 10k certificates, growing with the table, without it).
    index("certificates_revoked_at_idx").on(t.revokedAt).where(sql`${t.revokedAt} is not null`),
    index("certificates_ocsp_pending_idx").on(t.id).where(sql`${t.ocspPending}`),
  ],
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

/** Public keys that must never be certified again (revoked for keyCompromise). */
export const blockedKeys = pgTable("blocked_keys", {
  spkiSha256: text("spki_sha256").primaryKey(),
  reason: text("reason").notNull(),
  serial: text("serial"),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

/** One CRL number sequence per issuer, shared by full, delta and partitioned CRLs (RFC 5280 §5.2.3). */
export const crlNumbers = pgTable("crl_numbers", {
  issuerId: integer("issuer_id").primaryKey().references(() => cas.id),
  last: bigint("last", { mode: "bigint" }).notNull(),
});

/** The latest CRLs, as served: every replica reads them from here. */
export const crls = pgTable(
  "crls",
  {
    issuerId: integer("issuer_id").notNull().references(() => cas.id),
    /** -1: the whole issuer (no partitioning). */
    partition: integer("partition").notNull(),
    kind: text("kind", { enum: ["full", "delta"] }).notNull(),
    crlNumber: bigint("crl_number", { mode: "bigint" }).notNull(),
    /** For a delta: the full CRL number it is based on. */
    baseCrlNumber: bigint("base_crl_number", { mode: "bigint" }),
    /** Revocations up to this instant are in it. */
    coversUntil: timestamp("covers_until", { withTimezone: true }).notNull(),
    thisUpdate: timestamp("this_update", { withTimezone: true }).notNull(),
    nextUpdate: timestamp("next_update", { withTimezone: true }).notNull(),
    entries: integer("entries").notNull(),
    der: bytea("der").notNull(),
  },
  (t) => [primaryKey({ columns: [t.issuerId, t.partition, t.kind] })],
);

/** Delegated OCSP signing certificates, one active per issuer; keys on the HSM. */
export const ocspResponders = pgTable("ocsp_responders", {
  id: serial("id").primaryKey(),
  issuerId: integer("issuer_id").notNull().references(() => cas.id),
  status: text("status", { enum: ["active", "retired"] }).notNull().default("active"),
  keyLabel: text("key_label").notNull().unique(),
  keyAlgorithm: text("key_algorithm").notNull(),
  certificatePem: text("certificate_pem").notNull(),
  notBefore: timestamp("not_before", { withTimezone: true }).notNull(),
  notAfter: timestamp("not_after", { withTimezone: true }).notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
});

/** Pre-signed OCSP responses, one per certificate, refreshed before nextUpdate. */
export const ocspResponses = pgTable(
  "ocsp_responses",
  {
    serial: text("serial").primaryKey(),
    issuerId: integer("issuer_id").notNull(),
    status: text("status", { enum: ["good", "revoked"] }).notNull(),
    thisUpdate: timestamp("this_update", { withTimezone: true }).notNull(),
    nextUpdate: timestamp("next_update", { withTimezone: true }).notNull(),
    der: bytea("der").notNull(),
  },
  (t) => [index("ocsp_responses_next_update_idx").on(t.nextUpdate)],
);

/**
 * The tamper-evident audit log: append-only, each entry's hash covers its
 * content and the hash of the one before (seq order).
 */
export const auditLog = pgTable("audit_log", {
  seq: bigint("seq", { mode: "number" }).primaryKey(),
  at: timestamp("at", { withTimezone: true }).notNull(),
  /** e.g. hsm.sign, certificate.issue, certificate.revoke, approval.approve, auth.failure */
  kind: text("kind").notNull(),
  /** Who: an API token id, acme:<account>, cli, or system:<job>. */
  actor: text("actor").notNull(),
  /** What it concerns: a serial, a key label, a request id. */
  subject: text("subject"),
  result: text("result", { enum: ["ok", "error"] }).notNull(),
  details: jsonb("details").$type<Record<string, unknown>>().notNull(),
  prevHash: text("prev_hash").notNull(),
  hash: text("hash").notNull(),
});

/** Signed by the audit key in the HSM: the chain head at a moment. */
export const auditCheckpoints = pgTable("audit_checkpoints", {
  id: serial("id").primaryKey(),
  seq: bigint("seq", { mode: "number" }).notNull(),
  headHash: text("head_hash").notNull(),
  at: timestamp("at", { withTimezone: true }).notNull(),
  keyLabel: text("key_label").notNull(),
  /** SubjectPublicKeyInfo of the audit key, base64, to verify without the HSM. */
  publicKey: text("public_key").notNull(),
  signature: text("signature").notNull(),
});

/** Requests that wait for M-of-N approval: sensitive issuance, unscheduled intermediates, key destruction. */
export const approvalRequests = pgTable("approval_requests", {
  id: text("id").primaryKey(),
  kind: text("kind", { enum: ["issue", "rotate", "destroy-key"] }).notNull(),
  requestedBy: text("requested_by").notNull(),
  status: text("status", { enum: ["pending", "approved", "rejected", "expired", "done", "failed"] }).notNull(),
  required: integer("required").notNull(),
  payload: jsonb("payload").$type<Record<string, unknown>>().notNull(),
  result: jsonb("result").$type<Record<string, unknown>>(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
});

export const approvals = pgTable(
  "approvals",
  {
    requestId: text("request_id").notNull().references(() => approvalRequests.id),
    approver: text("approver").notNull(),
    decision: text("decision", { enum: ["approve", "reject"] }).notNull(),
    at: timestamp("at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ columns: [t.requestId, t.approver] })],
);

/**
 * Vault-compatible AppRoles (src/vault): a role_id and a secret_id (only its
 * SHA-256 kept) that log in at POST /v1/auth/approle/login for a short-lived
 * client token with an issuer token's scope (these profiles).
 */
export const vaultAppRoles = pgTable("vault_approles", {
  id: text("id").primaryKey(),
  name: text("name").notNull(),
  roleId: text("role_id").notNull().unique(),
  secretIdSha256: text("secret_id_sha256").notNull(),
  profiles: jsonb("profiles").$type<string[]>().notNull(),
  /** How long a client token from a login lasts. */
  tokenTtlSeconds: integer("token_ttl_seconds").notNull(),
  createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  revokedAt: timestamp("revoked_at", { withTimezone: true }),
});

/** Client tokens an AppRole login handed out: only a SHA-256 of the secret, valid until expires_at. */
export const vaultClientTokens = pgTable(
  "vault_client_tokens",
  {
    /** The token's accessor: public, names it in logs. */
    id: text("id").primaryKey(),
    secretSha256: text("secret_sha256").notNull().unique(),
    appRoleId: text("approle_id")
      .notNull()
      .references(() => vaultAppRoles.id),
    expiresAt: timestamp("expires_at", { withTimezone: true }).notNull(),
    createdAt: timestamp("created_at", { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [index("vault_client_tokens_expires_idx").on(t.expiresAt)],
);
