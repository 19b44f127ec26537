import { sql } from "drizzle-orm";
import { bigserial, index, integer, jsonb, pgTable, serial, text, timestamp } from "drizzle-orm/pg-core";

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
  },
  (t) => [index("certificates_profile_status_idx").on(t.profile, t.status, t.id)],
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
